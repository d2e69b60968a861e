-- The per-day tables with the day as a date: `day` counts days since 1970-01-01 (UTC), which
-- the API and the store compute with; an analyst reads `date` ('YYYY-MM-DD', UTC) instead.
-- Each view is its table's columns after `date`.
CREATE VIEW stats_daily_dated AS
SELECT date(day * 86400, 'unixepoch') AS date, * FROM stats_daily;

CREATE VIEW subject_daily_dated AS
SELECT date(day * 86400, 'unixepoch') AS date, * FROM subject_daily;

CREATE VIEW daily_traders_dated AS
SELECT date(day * 86400, 'unixepoch') AS date, * FROM daily_traders;
