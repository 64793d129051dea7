-- One word per meaning: a reviewer rejects a proposal; seb refuses an
-- execution whose live plan is not the certified diff. The executions
-- table is rebuilt for its state's new CHECK, its rows kept, 'rejected'
-- renamed 'refused'. certificates.consumed_by points at it, so those
-- references are set aside while it is rebuilt and put back after: a
-- dropped parent would leave deferred violations that rows inserted under
-- another name never clear.
CREATE TEMP TABLE consumed AS SELECT id, consumed_by FROM certificates WHERE consumed_by IS NOT NULL;
UPDATE certificates SET consumed_by = NULL WHERE consumed_by IS NOT NULL;
CREATE TABLE executions_new (
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
) STRICT;
INSERT INTO executions_new (id, certificate_id, workspace, state, reason, divergence, plan_log_id, apply_log_id, started_at, updated_at)
	SELECT id, certificate_id, workspace, CASE state WHEN 'rejected' THEN 'refused' ELSE state END, reason, divergence,
	       plan_log_id, apply_log_id, started_at, updated_at FROM executions;
DROP TABLE executions;
ALTER TABLE executions_new RENAME TO executions;
CREATE INDEX executions_by_time ON executions (started_at);
CREATE INDEX executions_by_workspace ON executions (workspace, started_at);
CREATE INDEX executions_by_certificate ON executions (certificate_id);
UPDATE certificates SET consumed_by = (SELECT c.consumed_by FROM consumed c WHERE c.id = certificates.id)
	WHERE id IN (SELECT id FROM consumed);
DROP TABLE consumed;
