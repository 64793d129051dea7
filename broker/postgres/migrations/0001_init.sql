-- The broker's records on PostgreSQL: the schema the SQLite migrations
-- 0001 to 0008 reach, in one step. Times are UTC text in one fixed-width
-- layout (2006-01-02T15:04:05.000000000Z), so they sort as they compare
-- and round-trip to the nanosecond, as on SQLite; JSON columns hold the
-- exact bytes written (text, not jsonb, which would rewrite them). rowid
-- orders rows inserted in the same instant, as SQLite's rowid does.

-- Configuration bundles, addressed by content.
CREATE TABLE bundles (
	digest TEXT PRIMARY KEY,
	data   BYTEA NOT NULL
);

CREATE TABLE proposals (
	rowid         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
	id            TEXT PRIMARY KEY,
	workspace     TEXT NOT NULL,
	config_digest TEXT NOT NULL,
	vars          TEXT NOT NULL,
	rationale     TEXT NOT NULL,
	proposer      TEXT NOT NULL,
	summary       TEXT,           -- planparse canonical JSON; NULL until verified
	digest        TEXT NOT NULL,  -- '' until verified
	plan_digest   TEXT NOT NULL,  -- '' until verified
	agent_digest  TEXT NOT NULL,
	divergence    TEXT,
	drift         TEXT NOT NULL,
	state         TEXT NOT NULL CHECK (state IN ('verifying', 'pending', 'diverged', 'certified', 'rejected', 'refused')),
	reason        TEXT NOT NULL DEFAULT '',
	disclosure    TEXT,
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL
);
CREATE INDEX proposals_by_time ON proposals (created_at, rowid);
CREATE INDEX proposals_by_workspace ON proposals (workspace, created_at);
CREATE INDEX proposals_by_state ON proposals (state, created_at);
CREATE INDEX proposals_by_proposer ON proposals (proposer, created_at);

CREATE TABLE reviews (
	rowid       BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
	proposal_id TEXT NOT NULL REFERENCES proposals (id),
	reviewer    TEXT NOT NULL,
	decision    TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
	comment     TEXT NOT NULL,
	at          TEXT NOT NULL,
	PRIMARY KEY (proposal_id, reviewer)
);

CREATE TABLE certificates (
	id               TEXT PRIMARY KEY,
	workspace        TEXT NOT NULL,
	proposal_id      TEXT NOT NULL REFERENCES proposals (id),
	config_digest    TEXT NOT NULL,
	diff_digest      TEXT NOT NULL,
	plan_digest      TEXT NOT NULL,
	summary          TEXT,
	not_before       TEXT NOT NULL,
	not_after        TEXT NOT NULL,
	policy_epoch     BIGINT NOT NULL,
	revocation_epoch BIGINT NOT NULL,
	approvals        TEXT NOT NULL,  -- JSON array of broker.Approval
	issuer_key_id    TEXT NOT NULL,
	single_use       BOOLEAN NOT NULL,
	envelope         BYTEA NOT NULL,
	revoked_at       TEXT,
	revoked_by       TEXT NOT NULL DEFAULT '',
	-- The execution that used the certificate, set in the transaction that
	-- inserts it (its reference is added below, checked at commit).
	consumed_by      TEXT UNIQUE
);
CREATE INDEX certificates_by_proposal ON certificates (proposal_id);

CREATE TABLE executions (
	rowid          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
	id             TEXT PRIMARY KEY,
	certificate_id TEXT NOT NULL REFERENCES certificates (id),
	workspace      TEXT NOT NULL,
	state          TEXT NOT NULL CHECK (state IN ('queued', 'verifying', 'planning', 'comparing', 'applying',
	                                              'succeeded', 'refused', 'failed', 'interrupted')),
	reason         TEXT NOT NULL,
	divergence     TEXT,  -- JSON of drift.Decision, exact bytes
	plan_log_id    TEXT NOT NULL,
	apply_log_id   TEXT NOT NULL,
	started_at     TEXT NOT NULL,
	updated_at     TEXT NOT NULL
);
CREATE INDEX executions_by_time ON executions (started_at);
CREATE INDEX executions_by_workspace ON executions (workspace, started_at);
CREATE INDEX executions_by_certificate ON executions (certificate_id);
ALTER TABLE certificates ADD FOREIGN KEY (consumed_by) REFERENCES executions (id) DEFERRABLE INITIALLY DEFERRED;

-- One row per policy epoch: the configuration digest that began it.
CREATE TABLE policy_epochs (
	epoch         BIGINT PRIMARY KEY CHECK (epoch >= 1),
	config_digest TEXT NOT NULL,
	at            TEXT NOT NULL
);

CREATE TABLE revocation_epochs (
	workspace  TEXT PRIMARY KEY,
	epoch      BIGINT NOT NULL CHECK (epoch >= 1),
	updated_at TEXT NOT NULL
);

CREATE TABLE artifacts (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	digest     TEXT NOT NULL,
	data       BYTEA NOT NULL,
	signature  TEXT NOT NULL,
	key_id     TEXT NOT NULL,
	created_at TEXT NOT NULL
);

-- The hash-chained audit log. Rows are only ever inserted, in the order
-- of seq, by one writer at a time (the store's write lock).
CREATE TABLE audit_log (
	seq            BIGINT PRIMARY KEY CHECK (seq >= 1),
	time           TEXT NOT NULL,
	actor          TEXT NOT NULL,
	action         TEXT NOT NULL,
	subject        TEXT NOT NULL,
	details_digest TEXT NOT NULL,
	details        TEXT,  -- canonical JSON, exact bytes
	prev_hash      TEXT NOT NULL,
	hash           TEXT NOT NULL,
	signature      TEXT NOT NULL,
	key_id         TEXT NOT NULL
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- API tokens: only their SHA-256 is kept.
CREATE TABLE api_tokens (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	role       TEXT NOT NULL CHECK (role IN ('agent', 'reviewer', 'ci', 'admin', 'runner')),
	hash       TEXT NOT NULL UNIQUE,
	created_at TEXT NOT NULL,
	workspaces TEXT NOT NULL DEFAULT '[]'  -- JSON array; empty: all of them
);

-- The queue runners lease from (see the SQLite migration 0004).
CREATE TABLE jobs (
	id            TEXT PRIMARY KEY,
	kind          TEXT NOT NULL CHECK (kind IN ('verify', 'plan', 'execute')),
	workspace     TEXT NOT NULL,
	subject       TEXT NOT NULL,
	config_digest TEXT NOT NULL,
	vars          TEXT NOT NULL,
	state         TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'failed', 'cancelled')),
	attempts      BIGINT NOT NULL,
	max_attempts  BIGINT NOT NULL,
	runner        TEXT NOT NULL DEFAULT '',
	token         BIGINT NOT NULL DEFAULT 0,
	lease_expires TEXT NOT NULL DEFAULT '',
	not_before    TEXT NOT NULL DEFAULT '',
	phase         TEXT NOT NULL DEFAULT 'plan' CHECK (phase IN ('plan', 'apply')),
	result        BYTEA,
	error         TEXT NOT NULL DEFAULT '',
	owner         TEXT NOT NULL DEFAULT '',
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, created_at);
CREATE INDEX jobs_by_workspace ON jobs (workspace, kind, state);
CREATE INDEX jobs_by_owner ON jobs (owner, state);

CREATE TABLE job_logs (
	job_id TEXT NOT NULL REFERENCES jobs (id),
	seq    BIGINT NOT NULL,
	phase  TEXT NOT NULL CHECK (phase IN ('plan', 'apply')),
	data   BYTEA NOT NULL,
	PRIMARY KEY (job_id, seq)
);

CREATE TABLE workspace_holds (
	workspace TEXT PRIMARY KEY,
	execution TEXT NOT NULL,
	reason    TEXT NOT NULL,
	since     TEXT NOT NULL
);
