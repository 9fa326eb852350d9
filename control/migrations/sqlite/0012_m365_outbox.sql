-- Teams activity notifications waiting for Microsoft Graph. Same text for
-- PostgreSQL and SQLite.

-- One row per recipient and cause, written in the transaction of the post
-- (or the call's rings) that causes it, so a crash loses none; a node's
-- worker claims due rows for a lease, as for webhook deliveries. No text of
-- the message is kept here: the preview, when the operator allows one, is
-- read from the post at send time (an edit or a delete is honoured).
CREATE TABLE m365_outbox (
    id              TEXT PRIMARY KEY,
    -- m365::ACTIVITY_TYPES: mention | direct_message | call_ringing.
    activity        TEXT NOT NULL,
    -- Who is told; their tenant and object id are read from m365_users
    -- when it is sent (a user who left the tab since gets nothing).
    user_id         TEXT NOT NULL REFERENCES users(id),
    -- Who posted or calls.
    actor_id        TEXT NOT NULL REFERENCES users(id),
    channel_id      TEXT NOT NULL REFERENCES channels(id),
    post_id         TEXT REFERENCES posts(id),
    call_id         TEXT REFERENCES calls(id),
    state           TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL
);
CREATE INDEX m365_outbox_due ON m365_outbox(state, next_attempt_at);
