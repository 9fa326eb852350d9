-- Sign-in through OpenID Connect, and presence. Same text for PostgreSQL
-- and SQLite.

-- An account the operator switched off: no login of any kind.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

-- A local account bound to an identity at a provider. account_key is
-- "tid:<tenant>:<oid or sub>" (Entra) or "iss:<issuer>:<sub>": never the
-- email, which the user or an admin can change.
CREATE TABLE identities (
    account_key     TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id),
    issuer          TEXT NOT NULL,
    tenant          TEXT,
    subject         TEXT NOT NULL,
    email           TEXT,
    created_at      BIGINT NOT NULL,
    last_login_at   BIGINT NOT NULL
);
CREATE INDEX identities_user ON identities(user_id);

-- Logins between the redirect to the provider and its callback, so that
-- any node can finish what another started. state_hash is the SHA-256 of
-- the state; a row is deleted when its callback arrives (single use).
CREATE TABLE oidc_logins (
    state_hash      TEXT PRIMARY KEY,
    nonce           TEXT NOT NULL,
    pkce_verifier   TEXT NOT NULL,
    return_to       TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX oidc_logins_created ON oidc_logins(created_at);

-- Presence. Each control process beats here; its sockets count only while
-- its beat is fresh, so a node that dies takes its users offline.
CREATE TABLE presence_nodes (
    node_id         TEXT PRIMARY KEY,
    heartbeat_at    BIGINT NOT NULL
);

CREATE TABLE presence_conns (
    conn_id         TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id),
    node_id         TEXT NOT NULL,
    connected_at    BIGINT NOT NULL
);
CREATE INDEX presence_conns_user ON presence_conns(user_id);
CREATE INDEX presence_conns_node ON presence_conns(node_id);

-- manual: 'dnd' or 'away' when the user set it, else NULL (automatic).
-- last_status is what was last announced, so exactly one node announces
-- each change.
CREATE TABLE user_status (
    user_id         TEXT PRIMARY KEY REFERENCES users(id),
    manual          TEXT CHECK (manual IN ('dnd', 'away')),
    last_activity_at BIGINT NOT NULL DEFAULT 0,
    last_status     TEXT NOT NULL DEFAULT 'offline'
);
