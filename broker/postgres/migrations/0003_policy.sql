-- Policy as code: a token's groups (a policy may require approvals from
-- a group), a reviewer's groups when they reviewed, and what the
-- workspace's policy decided of a proposal and of the certificate issued
-- for it (JSON; NULL without a policy).
ALTER TABLE api_tokens ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';
ALTER TABLE reviews ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';
ALTER TABLE proposals ADD COLUMN policy TEXT;
ALTER TABLE certificates ADD COLUMN policy TEXT;
