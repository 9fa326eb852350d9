-- Integrations: bot accounts, incoming and outgoing webhooks, and the
-- outbox that carries outgoing deliveries across restarts. Same text for
-- PostgreSQL and SQLite.

-- A bot is a user row without a password (it cannot log in) plus its owner.
-- Disabling revokes its tokens; the row stays so its posts keep an author.
CREATE TABLE bots (
    user_id         TEXT PRIMARY KEY REFERENCES users(id),
    owner_id        TEXT NOT NULL REFERENCES users(id),
    description     TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    disabled_at     BIGINT
);
CREATE INDEX bots_owner ON bots(owner_id);

-- Posts by bots and webhooks are marked; a webhook may show another name
-- and icon than its creator's.
ALTER TABLE posts ADD COLUMN from_bot BIGINT NOT NULL DEFAULT 0;
ALTER TABLE posts ADD COLUMN override_username TEXT;
ALTER TABLE posts ADD COLUMN override_icon_url TEXT;

-- Only the SHA-256 of the secret URL part is kept: a leaked table gives no
-- usable URL, and lookup by hash compares no secret byte by byte.
CREATE TABLE incoming_webhooks (
    id              TEXT PRIMARY KEY,
    secret_hash     TEXT NOT NULL UNIQUE,
    channel_id      TEXT NOT NULL REFERENCES channels(id),
    creator_id      TEXT NOT NULL REFERENCES users(id),
    display_name    TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    username        TEXT NOT NULL DEFAULT '',
    icon_url        TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);
CREATE INDEX incoming_webhooks_channel ON incoming_webhooks(channel_id);

-- trigger_words and callback_urls are JSON arrays of strings. The token is
-- sent to the receiver with every delivery, so it is kept as is.
CREATE TABLE outgoing_webhooks (
    id              TEXT PRIMARY KEY,
    token           TEXT NOT NULL,
    team_id         TEXT NOT NULL REFERENCES teams(id),
    channel_id      TEXT REFERENCES channels(id),
    creator_id      TEXT NOT NULL REFERENCES users(id),
    display_name    TEXT NOT NULL,
    trigger_words   TEXT NOT NULL,
    trigger_when    TEXT NOT NULL CHECK (trigger_when IN ('exact', 'prefix')),
    callback_urls   TEXT NOT NULL,
    content_type    TEXT NOT NULL CHECK (content_type IN ('json', 'form')),
    reply_in_thread BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);
CREATE INDEX outgoing_webhooks_team ON outgoing_webhooks(team_id);

-- One row per (matching post, callback URL), written in the post's own
-- transaction. state: pending (due at next_attempt_at; claimed by a node
-- until claimed_until), done, failed (attempts used up).
CREATE TABLE webhook_outbox (
    id              TEXT PRIMARY KEY,
    hook_id         TEXT NOT NULL REFERENCES outgoing_webhooks(id),
    post_id         TEXT NOT NULL REFERENCES posts(id),
    url             TEXT NOT NULL,
    trigger_word    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(state, next_attempt_at);
