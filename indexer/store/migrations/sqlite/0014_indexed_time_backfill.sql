-- Databases indexed before 0013: the newest stored trade's time stands for the newest indexed
-- block's until the indexer's next commit writes the true one.
UPDATE markets SET indexed_time = COALESCE(
    (SELECT MAX(t.block_time) FROM trades t WHERE t.market_id = markets.id), 0
) WHERE indexed_time = 0;
