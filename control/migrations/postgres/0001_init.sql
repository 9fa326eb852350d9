-- Enclave control schema (PostgreSQL). Keep in step with ../sqlite/0001_init.sql:
-- the same tables, columns and meaning; only types and sequences differ.
-- Times are Unix milliseconds (BIGINT); identifiers are random 26-character
-- strings minted by control; flags are 0/1 integers.

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    email           TEXT,
    display_name    TEXT NOT NULL DEFAULT '',
    password_hash   TEXT,
    system_role     TEXT NOT NULL CHECK (system_role IN ('admin', 'user', 'guest')),
    failed_logins   BIGINT NOT NULL DEFAULT 0,
    locked_until    BIGINT,
    created_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    token_hash      TEXT NOT NULL UNIQUE,
    user_id         TEXT NOT NULL REFERENCES users(id),
    csrf_token      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    revoked_at      BIGINT,
    ip              TEXT NOT NULL DEFAULT '',
    user_agent      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE access_tokens (
    id              TEXT PRIMARY KEY,
    token_hash      TEXT NOT NULL UNIQUE,
    user_id         TEXT NOT NULL REFERENCES users(id),
    name            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT,
    revoked_at      BIGINT
);
CREATE INDEX access_tokens_user ON access_tokens(user_id);

CREATE TABLE teams (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);

CREATE TABLE team_members (
    team_id         TEXT NOT NULL REFERENCES teams(id),
    user_id         TEXT NOT NULL REFERENCES users(id),
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member', 'guest')),
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members(user_id);

-- kind: open | private (in a team), direct | group (team_id NULL).
-- A direct channel's name is its two user ids, sorted, joined by "__".
CREATE TABLE channels (
    id              TEXT PRIMARY KEY,
    team_id         TEXT REFERENCES teams(id),
    kind            TEXT NOT NULL CHECK (kind IN ('open', 'private', 'direct', 'group')),
    name            TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    purpose         TEXT NOT NULL DEFAULT '',
    created_by      TEXT NOT NULL REFERENCES users(id),
    created_at      BIGINT NOT NULL,
    deleted_at      BIGINT,
    last_post_at    BIGINT NOT NULL DEFAULT 0,
    total_msg_count BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX channels_team_name ON channels(team_id, name) WHERE team_id IS NOT NULL;
CREATE UNIQUE INDEX channels_dm_name ON channels(name) WHERE team_id IS NULL;

-- Read state lives on the membership: unread = channels.total_msg_count -
-- msg_count_read; mention_count is reset when the member views the channel.
CREATE TABLE channel_members (
    channel_id      TEXT NOT NULL REFERENCES channels(id),
    user_id         TEXT NOT NULL REFERENCES users(id),
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at      BIGINT NOT NULL,
    last_viewed_at  BIGINT NOT NULL DEFAULT 0,
    msg_count_read  BIGINT NOT NULL DEFAULT 0,
    mention_count   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_members_user ON channel_members(user_id);

-- pending_id: the client's id for a post it is sending; a retry with the
-- same one returns the first post instead of a duplicate.
CREATE TABLE posts (
    id              TEXT PRIMARY KEY,
    channel_id      TEXT NOT NULL REFERENCES channels(id),
    user_id         TEXT NOT NULL REFERENCES users(id),
    root_id         TEXT REFERENCES posts(id),
    message         TEXT NOT NULL,
    pending_id      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    edited_at       BIGINT,
    deleted_at      BIGINT,
    is_pinned       BIGINT NOT NULL DEFAULT 0,
    reply_count     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX posts_channel_created ON posts(channel_id, created_at);
CREATE INDEX posts_root ON posts(root_id);
CREATE UNIQUE INDEX posts_pending ON posts(user_id, pending_id) WHERE pending_id IS NOT NULL;

-- Every earlier text of an edited post, newest last.
CREATE TABLE post_edits (
    id              TEXT PRIMARY KEY,
    post_id         TEXT NOT NULL REFERENCES posts(id),
    message         TEXT NOT NULL,
    replaced_at     BIGINT NOT NULL
);
CREATE INDEX post_edits_post ON post_edits(post_id, replaced_at);

CREATE TABLE reactions (
    post_id         TEXT NOT NULL REFERENCES posts(id),
    user_id         TEXT NOT NULL REFERENCES users(id),
    emoji           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (post_id, user_id, emoji)
);

-- Metadata only; the bytes live in the object store under storage_key.
CREATE TABLE files (
    id              TEXT PRIMARY KEY,
    uploader_id     TEXT NOT NULL REFERENCES users(id),
    channel_id      TEXT NOT NULL REFERENCES channels(id),
    post_id         TEXT REFERENCES posts(id),
    name            TEXT NOT NULL,
    mime_type       TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL,
    storage_key     TEXT NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);
CREATE INDEX files_post ON files(post_id);
CREATE INDEX files_channel ON files(channel_id);

-- The replay log. seq grows monotonically and, because writers serialise
-- on it (see db/events), in commit order: a reader that has seen seq n has
-- seen every committed event below n. Exactly one of channel_id, team_id or
-- user_id says who may read the event.
CREATE TABLE events (
    seq             BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL,
    channel_id      TEXT,
    team_id         TEXT,
    user_id         TEXT,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX events_created ON events(created_at);
