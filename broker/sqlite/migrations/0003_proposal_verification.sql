-- Proposals are admitted first and verified by seb's own plan afterwards:
-- the states verifying and refused, and the reason of a refusal. SQLite
-- cannot change a CHECK constraint, so the table is rebuilt; references to
-- it are checked when the migration commits.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE proposals_v3 (
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
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL
) STRICT;

INSERT INTO proposals_v3 (id, workspace, config_digest, vars, rationale, proposer, summary, digest, plan_digest,
	agent_digest, divergence, drift, state, reason, created_at, updated_at)
SELECT id, workspace, config_digest, vars, rationale, proposer, summary, digest, plan_digest,
	agent_digest, divergence, drift, state, '', created_at, updated_at FROM proposals;

DROP TABLE proposals;
ALTER TABLE proposals_v3 RENAME TO proposals;
CREATE INDEX proposals_by_time ON proposals (created_at);
CREATE INDEX proposals_by_workspace ON proposals (workspace, created_at);
CREATE INDEX proposals_by_state ON proposals (state, created_at);
