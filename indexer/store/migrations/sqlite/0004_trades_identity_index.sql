-- Trades become a plain rowid table (rows append in chain order) and their identity (chain id,
-- tx hash, log index) a separate unique index, which a long backfill drops and builds again at
-- its end like the other secondary indexes: inserting 1M random tx hashes into a B-tree keyed on
-- them rewrites most of its pages in every batch. SQLite cannot drop a primary key in place,
-- hence the copy.
CREATE TABLE trades_new (
    chain_id       BIGINT NOT NULL,
    tx_hash        TEXT NOT NULL,
    log_index      BIGINT NOT NULL,
    market_id      BIGINT NOT NULL,
    block_number   BIGINT NOT NULL,
    block_hash     TEXT NOT NULL,
    block_time     BIGINT NOT NULL,
    trader         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    is_buy         BIGINT NOT NULL,
    share_amount   BIGINT NOT NULL,
    eth_gwei       BIGINT NOT NULL,
    eth_rem        BIGINT NOT NULL,
    protocol_gwei  BIGINT NOT NULL,
    protocol_rem   BIGINT NOT NULL,
    subject_gwei   BIGINT NOT NULL,
    subject_rem    BIGINT NOT NULL,
    supply         BIGINT NOT NULL
);
INSERT INTO trades_new SELECT chain_id, tx_hash, log_index, market_id, block_number, block_hash,
    block_time, trader, subject, is_buy, share_amount, eth_gwei, eth_rem, protocol_gwei,
    protocol_rem, subject_gwei, subject_rem, supply
    FROM trades ORDER BY market_id, block_number, log_index;
DROP TABLE trades;
ALTER TABLE trades_new RENAME TO trades;
CREATE UNIQUE INDEX trades_identity ON trades (chain_id, tx_hash, log_index);
CREATE INDEX trades_market_block ON trades (market_id, block_number, log_index);
CREATE INDEX trades_market_subject ON trades (market_id, subject, block_number);
CREATE INDEX trades_market_trader ON trades (market_id, trader, block_number);
