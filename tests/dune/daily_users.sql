-- Daily active and new traders, the classic Dune "new vs returning users" query over
-- spellbook's social.trades (Trino SQL; runs unchanged in DuckDB, see run_query.py).
WITH first_days AS (
    SELECT trader, min(date_trunc('day', block_time)) AS first_day
    FROM social.trades
    WHERE project = 'keymarket'
    GROUP BY 1
),
active AS (
    SELECT date_trunc('day', block_time) AS day, count(DISTINCT trader) AS active_traders
    FROM social.trades
    WHERE project = 'keymarket'
    GROUP BY 1
),
newcomers AS (
    SELECT first_day AS day, count(*) AS new_traders
    FROM first_days
    GROUP BY 1
)
SELECT
    a.day,
    a.active_traders,
    coalesce(n.new_traders, 0) AS new_traders,
    a.active_traders - coalesce(n.new_traders, 0) AS returning_traders
FROM active a
LEFT JOIN newcomers n ON n.day = a.day
ORDER BY 1
