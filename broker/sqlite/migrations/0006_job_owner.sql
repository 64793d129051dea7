-- Who asked for a job: the proposer of a verification, the agent of a
-- speculative plan ('' for executions). A runner leases a verify or plan
-- job only when its owner holds no other lease, so one agent's slow plans
-- hold at most one slot.
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_by_owner ON jobs (owner, state);
