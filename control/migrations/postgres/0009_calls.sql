-- Calls: at most one running per channel. A call lives on one rtcd node
-- (`node`, the media pool's key for it); failover moves it by a
-- conditional update of that column. `version` is bumped by every change
-- of the call or its sessions, which also serialises those changes on
-- PostgreSQL (the bump locks the row).
CREATE TABLE calls (
    id          TEXT PRIMARY KEY,
    channel_id  TEXT NOT NULL REFERENCES channels(id),
    post_id     TEXT NOT NULL REFERENCES posts(id),
    started_by  TEXT NOT NULL REFERENCES users(id),
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    ended_by    TEXT REFERENCES users(id),
    node        TEXT NOT NULL,
    recording   BIGINT NOT NULL DEFAULT 0,
    version     BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX calls_running ON calls(channel_id) WHERE ended_at IS NULL;

-- One participant's media session. `owner` is the control node instance
-- that speaks to rtcd for it (the one holding the client's socket); the
-- flags are what control asked rtcd to enforce. `media_lost_at`: rtcd
-- closed the session and the client has not offered again yet.
CREATE TABLE call_sessions (
    id            TEXT PRIMARY KEY,
    call_id       TEXT NOT NULL REFERENCES calls(id),
    user_id       TEXT NOT NULL REFERENCES users(id),
    owner         TEXT NOT NULL,
    joined_at     BIGINT NOT NULL,
    left_at       BIGINT,
    leave_reason  TEXT,
    host          BIGINT NOT NULL DEFAULT 0,
    muted         BIGINT NOT NULL DEFAULT 0,
    camera        BIGINT NOT NULL DEFAULT 0,
    screen        BIGINT NOT NULL DEFAULT 0,
    hand_raised   BIGINT NOT NULL DEFAULT 0,
    connected     BIGINT NOT NULL DEFAULT 0,
    media_lost_at BIGINT
);
CREATE INDEX call_sessions_live ON call_sessions(call_id) WHERE left_at IS NULL;
CREATE INDEX call_sessions_lost ON call_sessions(owner, media_lost_at) WHERE left_at IS NULL;
-- One screen share per call, whatever races.
CREATE UNIQUE INDEX call_sessions_screen ON call_sessions(call_id) WHERE screen = 1 AND left_at IS NULL;

-- Users a host removed: they cannot join this call again.
CREATE TABLE call_bans (
    call_id     TEXT NOT NULL REFERENCES calls(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (call_id, user_id)
);

-- Who a direct or group call rings, until they join or decline, the ring
-- times out or the call ends.
CREATE TABLE call_rings (
    call_id     TEXT NOT NULL REFERENCES calls(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    end_reason  TEXT,
    PRIMARY KEY (call_id, user_id)
);
CREATE INDEX call_rings_open ON call_rings(started_at) WHERE ended_at IS NULL;
