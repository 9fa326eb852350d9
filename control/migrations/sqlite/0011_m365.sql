-- Microsoft 365. Same text for PostgreSQL and SQLite.

-- People who signed in through the Teams (or Outlook) tab: who may get a
-- Teams activity notification, and where (tenant, oid) it goes. The
-- account binding itself is in identities, as for any Entra sign-in.
CREATE TABLE m365_users (
    user_id         TEXT PRIMARY KEY REFERENCES users(id),
    tenant          TEXT NOT NULL,
    object_id       TEXT NOT NULL,
    -- Which host the tab last ran in (Teams, Outlook, Office).
    host            TEXT NOT NULL,
    first_seen_at   BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX m365_users_identity ON m365_users(tenant, object_id);
