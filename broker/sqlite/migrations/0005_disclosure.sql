-- What reviewers cannot read in a proposal's diff: its hidden values (and
-- who hid them) and the values known only after apply (and what their
-- expressions refer to), as JSON; NULL before verification.
ALTER TABLE proposals ADD COLUMN disclosure TEXT;
