-- Each proposal counts the proposer's waiting proposals and the bundles it
-- stored in a day: both look proposals up by proposer (PostgreSQL's schema
-- has this index from its start).
CREATE INDEX proposals_by_proposer ON proposals (proposer, created_at);
