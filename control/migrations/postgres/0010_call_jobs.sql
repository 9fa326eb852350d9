-- A call's bots (the recorder, the captioner) are receive-only sessions:
-- never hosts, not counted against the call's size, and a call whose
-- last person leaves ends even while a bot is still in it.
ALTER TABLE call_sessions ADD COLUMN bot BIGINT NOT NULL DEFAULT 0;

-- The account the bots act as. It has no password and no membership:
-- its credentials are the per-job tokens below, each good for one call.
INSERT INTO users (id, username, display_name, password_hash, system_role, created_at)
VALUES ('calls-recorder', 'calls-recorder', 'Recording', NULL, 'user', 0);

-- What control asked an offloader to do for a call. `token_hash` admits
-- the job's bot to this call only; it stops working once the job is
-- stopped (`stopped_at`) or the call ends. `offloader_job` is the
-- offloader's id for it, to read progress and cancel; `session_id` the
-- bot's session once it joined, to take it out when the job stops.
CREATE TABLE call_jobs (
    id             TEXT PRIMARY KEY,
    call_id        TEXT NOT NULL REFERENCES calls(id),
    kind           TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,
    started_by     TEXT NOT NULL REFERENCES users(id),
    created_at     BIGINT NOT NULL,
    offloader_job  TEXT,
    session_id     TEXT,
    stopped_at     BIGINT
);
CREATE UNIQUE INDEX call_jobs_running ON call_jobs(call_id, kind) WHERE stopped_at IS NULL;
