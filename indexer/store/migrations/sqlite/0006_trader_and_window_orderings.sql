-- A trader's holdings largest first (the trader page), and a window's trades by time (distinct
-- subjects of a windowed overview): both were scans at 3M trades (docs/performance.md).
-- Deferred during long backfills like the others (DEFERRABLE_INDEXES in src/store.rs).
DROP INDEX IF EXISTS holdings_market_trader;
CREATE INDEX holdings_by_trader ON holdings (market_id, trader, balance DESC, subject);
CREATE INDEX trades_market_time ON trades (market_id, block_time, subject);
