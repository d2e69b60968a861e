-- Cost basis and realised PnL (average-cost method), each subject's curve (current buy and sell
-- prices, top subjects by price) and a per-subject daily series.
--
-- These are derived from every trade since a market's start, so the data indexed before this
-- migration is cleared and each market re-indexes from its start block (the chain is the
-- source of truth; nothing is lost, and nothing is half-computed).
DELETE FROM trades;
DELETE FROM stats_daily;
DELETE FROM subjects;
DELETE FROM traders;
DELETE FROM holdings;
DELETE FROM daily_traders;
DELETE FROM blocks;
UPDATE markets SET next_block = start_block;

-- Sells: the cost basis the sell released (average cost of the keys sold), so a rollback can
-- subtract exactly what the sell changed. Buys: 0.
ALTER TABLE trades ADD COLUMN basis_gwei BIGINT NOT NULL DEFAULT 0;
ALTER TABLE trades ADD COLUMN basis_rem BIGINT NOT NULL DEFAULT 0;
-- What the keys still held cost (buys' price plus fees, less the basis released by sells).
-- Normalised: 0 <= cost_rem < 1e9.
ALTER TABLE holdings ADD COLUMN cost_gwei BIGINT NOT NULL DEFAULT 0;
ALTER TABLE holdings ADD COLUMN cost_rem BIGINT NOT NULL DEFAULT 0;
-- Realised PnL: Σ over sells of (proceeds after fees − basis released). Signed and normalised
-- (0 <= pnl_rem < 1e9), so (pnl_gwei, pnl_rem) orders by value.
ALTER TABLE traders ADD COLUMN pnl_gwei BIGINT NOT NULL DEFAULT 0;
ALTER TABLE traders ADD COLUMN pnl_rem BIGINT NOT NULL DEFAULT 0;
-- The subject's curve as a multiple of friend.tech's s²/16000 (1, or 10 for the steep curve),
-- read off its trades' prices; 0 while unknown (only free first keys traded so far).
ALTER TABLE subjects ADD COLUMN curve BIGINT NOT NULL DEFAULT 0;

CREATE TABLE subject_daily (
    market_id        BIGINT NOT NULL,
    subject          TEXT NOT NULL,
    day              BIGINT NOT NULL, -- days since 1970-01-01 (UTC)
    trades           BIGINT NOT NULL,
    buys             BIGINT NOT NULL,
    sells            BIGINT NOT NULL,
    buy_volume_gwei  BIGINT NOT NULL,
    buy_volume_rem   BIGINT NOT NULL,
    sell_volume_gwei BIGINT NOT NULL,
    sell_volume_rem  BIGINT NOT NULL,
    fees_gwei        BIGINT NOT NULL,
    fees_rem         BIGINT NOT NULL,
    PRIMARY KEY (market_id, subject, day)
);

CREATE INDEX traders_by_pnl ON traders (market_id, pnl_gwei DESC, pnl_rem DESC, trader);
CREATE INDEX subjects_by_price ON subjects (market_id, (curve * supply * supply) DESC, subject);
