-- The per-subject daily aggregates by day, for the market's concentration per day
-- (GET /v1/concentration): a day range is one index range scan, not a scan of every subject.
CREATE INDEX subject_daily_by_day ON subject_daily (market_id, day);
