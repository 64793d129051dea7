-- Terraform runs in runners, which lease jobs from this queue: seb's
-- verification plans, speculative plans for agents, and executions. A
-- lease has an expiry the runner extends by heartbeats, and a fencing
-- token (greater than every earlier one) that every write of the runner
-- must show. Logs arrive in chunks as Terraform writes them.
CREATE TABLE jobs (
	id            TEXT PRIMARY KEY,
	kind          TEXT NOT NULL CHECK (kind IN ('verify', 'plan', 'execute')),
	workspace     TEXT NOT NULL,
	subject       TEXT NOT NULL,  -- proposal (verify) or execution (execute); '' for a plan
	config_digest TEXT NOT NULL,
	vars          TEXT NOT NULL,
	state         TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'failed', 'cancelled')),
	attempts      INTEGER NOT NULL,
	max_attempts  INTEGER NOT NULL,
	runner        TEXT NOT NULL DEFAULT '',
	token         INTEGER NOT NULL DEFAULT 0,
	lease_expires TEXT NOT NULL DEFAULT '',
	not_before    TEXT NOT NULL DEFAULT '',  -- a job tried again waits until then
	phase         TEXT NOT NULL DEFAULT 'plan' CHECK (phase IN ('plan', 'apply')),
	result        BLOB,
	error         TEXT NOT NULL DEFAULT '',
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL
) STRICT;
CREATE INDEX jobs_by_state ON jobs (state, created_at);
CREATE INDEX jobs_by_workspace ON jobs (workspace, kind, state);

CREATE TABLE job_logs (
	job_id TEXT NOT NULL REFERENCES jobs (id),
	seq    INTEGER NOT NULL,
	phase  TEXT NOT NULL CHECK (phase IN ('plan', 'apply')),
	data   BLOB NOT NULL,
	PRIMARY KEY (job_id, seq)
) STRICT;

-- A workspace held for reconciliation: an apply ended without seb being
-- sure its state is complete. Executions are refused until an admin
-- releases it.
CREATE TABLE workspace_holds (
	workspace TEXT PRIMARY KEY,
	execution TEXT NOT NULL,
	reason    TEXT NOT NULL,
	since     TEXT NOT NULL
) STRICT;

-- Runners authenticate with tokens of their own role. SQLite cannot
-- change a CHECK constraint, so the table is rebuilt.
CREATE TABLE api_tokens_v4 (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	role       TEXT NOT NULL CHECK (role IN ('agent', 'reviewer', 'ci', 'admin', 'runner')),
	hash       TEXT NOT NULL UNIQUE,
	created_at TEXT NOT NULL
) STRICT;
INSERT INTO api_tokens_v4 (id, name, role, hash, created_at) SELECT id, name, role, hash, created_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_v4 RENAME TO api_tokens;
