-- Full-text search (SQLite FTS5). The PostgreSQL twin is ../postgres/0008_search.sql.
--
-- FTS5 indexes integer rowids, and posts and files have text ids whose
-- implicit rowids VACUUM may renumber. search_keys gives every searchable
-- row a stable integer key instead (one table for all sources, so a new
-- source needs no new key scheme). The FTS5 tables are external-content:
-- they hold only the index, and read text back from the *_search_content
-- views (for 'rebuild'), which list exactly the rows that should be
-- indexed: those not deleted.
--
-- Triggers keep the index in step in the transaction of the change:
-- insert indexes, an edit replaces the old text with the new one, a soft
-- delete (deleted_at set) removes it, and a hard delete removes the key.
-- An external-content 'delete' must be given the text that was indexed,
-- which is old.message / old.name while the row was not deleted.
-- unicode61 with remove_diacritics 0 keeps accents, as PostgreSQL's
-- 'simple' configuration does, so both databases find the same rows.

CREATE TABLE search_keys (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL,
    ref_id          TEXT NOT NULL,
    UNIQUE (source, ref_id)
);

CREATE VIEW post_search_content AS
    SELECT k.id AS id, p.message AS message
    FROM search_keys k JOIN posts p ON p.id = k.ref_id
    WHERE k.source = 'post' AND p.deleted_at IS NULL;

CREATE VIRTUAL TABLE post_fts USING fts5(
    message,
    content = 'post_search_content',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 0'
);

CREATE TRIGGER posts_search_insert AFTER INSERT ON posts BEGIN
    INSERT INTO search_keys (source, ref_id) VALUES ('post', new.id);
    INSERT INTO post_fts (rowid, message)
        SELECT id, new.message FROM search_keys
        WHERE source = 'post' AND ref_id = new.id AND new.deleted_at IS NULL;
END;

CREATE TRIGGER posts_search_edit AFTER UPDATE OF message ON posts
WHEN old.deleted_at IS NULL AND new.deleted_at IS NULL AND old.message IS NOT new.message BEGIN
    INSERT INTO post_fts (post_fts, rowid, message)
        SELECT 'delete', id, old.message FROM search_keys WHERE source = 'post' AND ref_id = old.id;
    INSERT INTO post_fts (rowid, message)
        SELECT id, new.message FROM search_keys WHERE source = 'post' AND ref_id = new.id;
END;

CREATE TRIGGER posts_search_soft_delete AFTER UPDATE OF deleted_at ON posts
WHEN old.deleted_at IS NULL AND new.deleted_at IS NOT NULL BEGIN
    INSERT INTO post_fts (post_fts, rowid, message)
        SELECT 'delete', id, old.message FROM search_keys WHERE source = 'post' AND ref_id = old.id;
END;

CREATE TRIGGER posts_search_restore AFTER UPDATE OF deleted_at ON posts
WHEN old.deleted_at IS NOT NULL AND new.deleted_at IS NULL BEGIN
    INSERT INTO post_fts (rowid, message)
        SELECT id, new.message FROM search_keys WHERE source = 'post' AND ref_id = new.id;
END;

CREATE TRIGGER posts_search_hard_delete AFTER DELETE ON posts BEGIN
    INSERT INTO post_fts (post_fts, rowid, message)
        SELECT 'delete', id, old.message FROM search_keys
        WHERE source = 'post' AND ref_id = old.id AND old.deleted_at IS NULL;
    DELETE FROM search_keys WHERE source = 'post' AND ref_id = old.id;
END;

CREATE VIEW file_search_content AS
    SELECT k.id AS id, f.name AS name
    FROM search_keys k JOIN files f ON f.id = k.ref_id
    WHERE k.source = 'file' AND f.deleted_at IS NULL;

CREATE VIRTUAL TABLE file_fts USING fts5(
    name,
    content = 'file_search_content',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 0'
);

CREATE TRIGGER files_search_insert AFTER INSERT ON files BEGIN
    INSERT INTO search_keys (source, ref_id) VALUES ('file', new.id);
    INSERT INTO file_fts (rowid, name)
        SELECT id, new.name FROM search_keys
        WHERE source = 'file' AND ref_id = new.id AND new.deleted_at IS NULL;
END;

CREATE TRIGGER files_search_rename AFTER UPDATE OF name ON files
WHEN old.deleted_at IS NULL AND new.deleted_at IS NULL AND old.name IS NOT new.name BEGIN
    INSERT INTO file_fts (file_fts, rowid, name)
        SELECT 'delete', id, old.name FROM search_keys WHERE source = 'file' AND ref_id = old.id;
    INSERT INTO file_fts (rowid, name)
        SELECT id, new.name FROM search_keys WHERE source = 'file' AND ref_id = new.id;
END;

CREATE TRIGGER files_search_soft_delete AFTER UPDATE OF deleted_at ON files
WHEN old.deleted_at IS NULL AND new.deleted_at IS NOT NULL BEGIN
    INSERT INTO file_fts (file_fts, rowid, name)
        SELECT 'delete', id, old.name FROM search_keys WHERE source = 'file' AND ref_id = old.id;
END;

CREATE TRIGGER files_search_restore AFTER UPDATE OF deleted_at ON files
WHEN old.deleted_at IS NOT NULL AND new.deleted_at IS NULL BEGIN
    INSERT INTO file_fts (rowid, name)
        SELECT id, new.name FROM search_keys WHERE source = 'file' AND ref_id = new.id;
END;

CREATE TRIGGER files_search_hard_delete AFTER DELETE ON files BEGIN
    INSERT INTO file_fts (file_fts, rowid, name)
        SELECT 'delete', id, old.name FROM search_keys
        WHERE source = 'file' AND ref_id = old.id AND old.deleted_at IS NULL;
    DELETE FROM search_keys WHERE source = 'file' AND ref_id = old.id;
END;

-- Rows that exist before this migration.
INSERT INTO search_keys (source, ref_id) SELECT 'post', id FROM posts;
INSERT INTO search_keys (source, ref_id) SELECT 'file', id FROM files;
INSERT INTO post_fts (post_fts) VALUES ('rebuild');
INSERT INTO file_fts (file_fts) VALUES ('rebuild');

-- Filter-only searches (from:, in:, dates) walk posts newest first.
CREATE INDEX posts_user_created ON posts(user_id, created_at);
