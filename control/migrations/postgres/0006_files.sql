-- Files: what an upload made besides the original (a thumbnail and a
-- preview for images), and the image's size. Keys are NULL when there is
-- no such object. Every key a row names is kept by the cleanup job; any
-- other object under the files prefix is an orphan once old enough.
ALTER TABLE files ADD COLUMN thumbnail_key TEXT;
ALTER TABLE files ADD COLUMN preview_key TEXT;
ALTER TABLE files ADD COLUMN width BIGINT;
ALTER TABLE files ADD COLUMN height BIGINT;
-- Where the file stands among its post's files (the order the author gave).
ALTER TABLE files ADD COLUMN post_position BIGINT;

-- The cleanup job looks for uploads never attached, oldest first.
CREATE INDEX files_unattached ON files(created_at) WHERE post_id IS NULL;
