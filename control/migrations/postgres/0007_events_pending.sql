-- PostgreSQL only: writers no longer number events while they hold a lock
-- until their commit. A writing transaction appends its events here; the
-- sequencer (enclave_sequence_events, called by every reader of the log
-- before it reads) moves the committed ones into `events` in one short
-- transaction under the events advisory lock, so seq still follows commit
-- order: whoever has seen seq n has seen every seq below it. Posting
-- transactions commit in parallel (and share fsyncs) instead of one after
-- the other. SQLite keeps numbering at insert: it has one writer anyway.
CREATE TABLE events_pending (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL,
    channel_id      TEXT,
    team_id         TEXT,
    user_id         TEXT,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

-- Moves every committed pending event into the log, oldest first, and
-- returns how many. One statement for the caller, so it costs one round
-- trip; the lock is released when that statement's transaction commits.
-- lock_key is the events advisory lock (db::events::EVENTS_LOCK).
CREATE FUNCTION enclave_sequence_events(lock_key BIGINT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    moved BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    -- A statement after the lock: its snapshot sees every pending row
    -- committed so far, and none that an earlier sequencer moved.
    WITH taken AS (
        DELETE FROM events_pending RETURNING *
    )
    INSERT INTO events (kind, channel_id, team_id, user_id, payload, created_at)
    SELECT kind, channel_id, team_id, user_id, payload, created_at
    FROM taken ORDER BY id;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END
$$;
