-- Daily trades, volume and fees by side, as an analyst writes it on Dune over spellbook's
-- social.trades (Trino SQL; runs unchanged in DuckDB, see run_query.py).
SELECT
    date_trunc('day', block_time) AS day,
    trade_side,
    count(*) AS trades,
    sum(amount_original) AS volume,
    sum(protocol_fee_amount) AS protocol_fees,
    sum(subject_fee_amount) AS subject_fees
FROM social.trades
WHERE project = 'keymarket'
GROUP BY 1, 2
ORDER BY 1, 2
