-- The time of the newest indexed block (Unix seconds; 0: none yet), written with the checkpoint:
-- what "now" is as far as the indexed data goes (a scheduled fee increase is in force once its
-- effectiveAt is at or before it, applied or not).
ALTER TABLE markets ADD COLUMN indexed_time BIGINT NOT NULL DEFAULT 0;
