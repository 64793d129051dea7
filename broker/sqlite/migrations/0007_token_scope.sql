-- The workspaces a token may act on, as a JSON array; empty: all of them.
ALTER TABLE api_tokens ADD COLUMN workspaces TEXT NOT NULL DEFAULT '[]';
