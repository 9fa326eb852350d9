-- Full-text search (PostgreSQL). The SQLite twin is ../sqlite/0008_search.sql.
--
-- The vectors are generated columns, so an insert or an edit re-indexes the
-- row in the same statement and nothing can fall out of step. 'simple'
-- (lower-case, no stemming, no stop words) matches what SQLite's unicode61
-- tokenizer does, so a query finds the same rows on both databases.
-- ASCII punctuation becomes a space first: PostgreSQL's parser would keep
-- "report.pdf", "a-b" or "ana@example.org" as whole tokens, while the query
-- side (and FTS5) splits words at every character that is not a letter or
-- a digit.
--
-- The GIN indexes leave deleted rows out; searches always ask for
-- deleted_at IS NULL, which lets the planner use them.

ALTER TABLE posts ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig,
        translate(message, '!"#$%&''()*+,-./:;<=>?@[\]^_`{|}~', '                                '))
) STORED;
CREATE INDEX posts_search ON posts USING GIN (search_vector) WHERE deleted_at IS NULL;

ALTER TABLE files ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig,
        translate(name, '!"#$%&''()*+,-./:;<=>?@[\]^_`{|}~', '                                '))
) STORED;
CREATE INDEX files_search ON files USING GIN (search_vector) WHERE deleted_at IS NULL;

-- Filter-only searches (from:, in:, dates) walk posts newest first.
CREATE INDEX posts_user_created ON posts(user_id, created_at);
