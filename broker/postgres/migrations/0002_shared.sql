-- What replicas share lives in the store, not in one process: Terraform
-- state versions (on SQLite once files under the data directory, imported
-- at start) and UI sessions (once in memory). A session's id is kept only
-- as its SHA-256.
CREATE TABLE state_versions (
	workspace  TEXT NOT NULL,
	serial     BIGINT NOT NULL CHECK (serial >= 1),
	digest     TEXT NOT NULL,
	data       BYTEA NOT NULL,
	created_at TEXT NOT NULL,
	PRIMARY KEY (workspace, serial)
);

CREATE TABLE sessions (
	id_hash    TEXT PRIMARY KEY,
	token_hash TEXT NOT NULL,
	csrf       TEXT NOT NULL,
	expires    TEXT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires);
