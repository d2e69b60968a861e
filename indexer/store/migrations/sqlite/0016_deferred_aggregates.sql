-- A long backfill stores the raw trades only and builds the aggregates once, set-based, when it
-- reaches the head: every trade of the market at or after this block is not yet counted in any
-- aggregate table (stats_daily, subjects, traders, holdings, daily_traders, subject_daily) and
-- has no cost basis yet. NULL: the aggregates count every stored trade.
ALTER TABLE markets ADD COLUMN aggregates_from BIGINT;
