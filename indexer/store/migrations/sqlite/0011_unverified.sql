-- Trades stored although they break the curve's arithmetic: the chain itself said the same each
-- time the range was fetched again (see the indexer's curve check). The market and the subject
-- are unverified from that block on; a rollback below the block removes the mark with the data.
CREATE TABLE unverified (
    market_id    BIGINT NOT NULL,
    subject      TEXT   NOT NULL,
    block_number BIGINT NOT NULL,
    reason       TEXT   NOT NULL,
    PRIMARY KEY (market_id, subject, block_number)
);

-- Why the indexer is not progressing on a market, when a provider keeps failing one of its
-- ranges (null: it is not stalled). Shown on /healthz.
ALTER TABLE markets ADD COLUMN stall_reason TEXT;
