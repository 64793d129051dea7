-- What replicas share lives in the store, not in one process: Terraform
-- state versions (before, files under the data directory, imported at
-- start) and UI sessions (before, in memory). A session's id is kept only
-- as its SHA-256.
CREATE TABLE state_versions (
	workspace  TEXT NOT NULL,
	serial     INTEGER NOT NULL CHECK (serial >= 1),
	digest     TEXT NOT NULL,
	data       BLOB NOT NULL,
	created_at TEXT NOT NULL,
	PRIMARY KEY (workspace, serial)
) STRICT;

CREATE TABLE sessions (
	id_hash    TEXT PRIMARY KEY,
	token_hash TEXT NOT NULL,
	csrf       TEXT NOT NULL,
	expires    TEXT NOT NULL
) STRICT;
CREATE INDEX sessions_by_expiry ON sessions (expires);
