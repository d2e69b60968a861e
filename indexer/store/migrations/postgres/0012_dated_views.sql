-- The per-day tables with the day as a date: `day` counts days since 1970-01-01 (UTC), which
-- the API and the store compute with; an analyst reads `date` ('YYYY-MM-DD', UTC) instead.
-- Each view is its table's columns after `date`.
CREATE VIEW stats_daily_dated AS
SELECT to_char(DATE '1970-01-01' + CAST(day AS INTEGER), 'YYYY-MM-DD') AS date, * FROM stats_daily;

CREATE VIEW subject_daily_dated AS
SELECT to_char(DATE '1970-01-01' + CAST(day AS INTEGER), 'YYYY-MM-DD') AS date, * FROM subject_daily;

CREATE VIEW daily_traders_dated AS
SELECT to_char(DATE '1970-01-01' + CAST(day AS INTEGER), 'YYYY-MM-DD') AS date, * FROM daily_traders;
