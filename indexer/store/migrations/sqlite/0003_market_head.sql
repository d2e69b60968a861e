-- The chain head the indexer last saw, and when (unix seconds): the API reports the lag.
ALTER TABLE markets ADD COLUMN head_block BIGINT NOT NULL DEFAULT 0;
ALTER TABLE markets ADD COLUMN head_seen_at BIGINT NOT NULL DEFAULT 0;
