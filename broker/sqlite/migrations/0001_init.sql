-- The broker's records. Times are UTC text in one fixed-width layout
-- (2006-01-02T15:04:05.000000000Z), so they sort as they compare and
-- round-trip to the nanosecond. JSON columns hold the exact bytes written.

-- Configuration bundles, addressed by content. No foreign key points here:
-- a bundle is a blob that may be pruned on its own schedule.
CREATE TABLE bundles (
	digest TEXT PRIMARY KEY,
	data   BLOB NOT NULL
) STRICT;

CREATE TABLE proposals (
	id            TEXT PRIMARY KEY,
	workspace     TEXT NOT NULL,
	config_digest TEXT NOT NULL,
	vars          TEXT NOT NULL,  -- JSON object (or null)
	rationale     TEXT NOT NULL,
	proposer      TEXT NOT NULL,
	summary       TEXT,           -- planparse canonical JSON
	digest        TEXT NOT NULL,
	plan_digest   TEXT NOT NULL,
	agent_digest  TEXT NOT NULL,
	divergence    TEXT,           -- JSON of planparse.Divergence; NULL when the agent's plan matches
	drift         TEXT NOT NULL,  -- JSON list of planparse.ResourceChange: drift seb's plan saw
	state         TEXT NOT NULL CHECK (state IN ('pending', 'diverged', 'certified', 'rejected')),
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL
) STRICT;
CREATE INDEX proposals_by_time ON proposals (created_at);
CREATE INDEX proposals_by_workspace ON proposals (workspace, created_at);

CREATE TABLE reviews (
	proposal_id TEXT NOT NULL REFERENCES proposals (id),
	reviewer    TEXT NOT NULL,
	decision    TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
	comment     TEXT NOT NULL,
	at          TEXT NOT NULL,
	PRIMARY KEY (proposal_id, reviewer)
) STRICT;

CREATE TABLE certificates (
	id               TEXT PRIMARY KEY,
	workspace        TEXT NOT NULL,
	proposal_id      TEXT NOT NULL REFERENCES proposals (id),
	config_digest    TEXT NOT NULL,
	diff_digest      TEXT NOT NULL,
	plan_digest      TEXT NOT NULL,
	summary          TEXT,           -- planparse canonical JSON
	not_before       TEXT NOT NULL,
	not_after        TEXT NOT NULL,
	policy_epoch     INTEGER NOT NULL,
	revocation_epoch INTEGER NOT NULL,
	approvals        TEXT NOT NULL,  -- JSON array of broker.Approval
	issuer_key_id    TEXT NOT NULL,
	single_use       INTEGER NOT NULL CHECK (single_use IN (0, 1)),
	envelope         BLOB NOT NULL,
	revoked_at       TEXT,
	revoked_by       TEXT NOT NULL DEFAULT '',
	-- The execution that used the certificate. Set in the same transaction
	-- that inserts that execution, hence the deferred check.
	consumed_by      TEXT UNIQUE REFERENCES executions (id) DEFERRABLE INITIALLY DEFERRED
) STRICT;
CREATE INDEX certificates_by_proposal ON certificates (proposal_id);

CREATE TABLE executions (
	id             TEXT PRIMARY KEY,
	certificate_id TEXT NOT NULL REFERENCES certificates (id),
	workspace      TEXT NOT NULL,
	state          TEXT NOT NULL CHECK (state IN ('queued', 'verifying', 'planning', 'comparing', 'applying',
	                                              'succeeded', 'rejected', 'failed', 'interrupted')),
	reason         TEXT NOT NULL,
	divergence     TEXT,  -- JSON of drift.Decision, exact bytes
	plan_log_id    TEXT NOT NULL,
	apply_log_id   TEXT NOT NULL,
	started_at     TEXT NOT NULL,
	updated_at     TEXT NOT NULL
) STRICT;
CREATE INDEX executions_by_time ON executions (started_at);
CREATE INDEX executions_by_workspace ON executions (workspace, started_at);
CREATE INDEX executions_by_certificate ON executions (certificate_id);

-- One row per policy epoch: the configuration digest that began it.
CREATE TABLE policy_epochs (
	epoch         INTEGER PRIMARY KEY CHECK (epoch >= 1),
	config_digest TEXT NOT NULL,
	at            TEXT NOT NULL
) STRICT;

CREATE TABLE revocation_epochs (
	workspace  TEXT PRIMARY KEY,
	epoch      INTEGER NOT NULL CHECK (epoch >= 1),
	updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE artifacts (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	digest     TEXT NOT NULL,
	data       BLOB NOT NULL,
	signature  TEXT NOT NULL,
	key_id     TEXT NOT NULL,
	created_at TEXT NOT NULL
) STRICT;

-- The hash-chained audit log. Rows are only ever inserted.
CREATE TABLE audit_log (
	seq            INTEGER PRIMARY KEY CHECK (seq >= 1),
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
) STRICT;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
	SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
	SELECT RAISE(ABORT, 'the audit log is append-only');
END;
