-- Dune's `social.trades` over the indexed trades, for SQL over HTTP (POST /v1/sql): an analyst's
-- Dune query runs here unchanged. The same columns and values as `keymarket export trades`:
-- exact ETH amounts (NUMERIC of scale 18: wei times 1e-18; a division by 1e18 would round
-- amounts of 1 ETH or more to 16 significant digits), UTC timestamps.
CREATE VIEW social_trades AS
SELECT
    CASE t.chain_id
        WHEN 1 THEN 'ethereum' WHEN 10 THEN 'optimism' WHEN 8453 THEN 'base'
        WHEN 42161 THEN 'arbitrum' WHEN 43114 THEN 'avalanche_c' WHEN 31337 THEN 'anvil'
        ELSE t.chain_id::text
    END AS blockchain,
    to_timestamp(t.block_time) AT TIME ZONE 'UTC' AS block_time,
    date_trunc('month', to_timestamp(t.block_time) AT TIME ZONE 'UTC')::date AS block_month,
    t.block_number,
    'keymarket'::text AS project,
    t.trader,
    t.subject,
    CASE WHEN t.is_buy = 1 THEN 'buy' ELSE 'sell' END AS trade_side,
    (t.eth_gwei::numeric * 1000000000 + t.eth_rem) * 0.000000000000000001 AS amount_original,
    NULL::numeric AS amount_usd,
    t.share_amount,
    (t.subject_gwei::numeric * 1000000000 + t.subject_rem) * 0.000000000000000001 AS subject_fee_amount,
    NULL::numeric AS subject_fee_amount_usd,
    (t.protocol_gwei::numeric * 1000000000 + t.protocol_rem) * 0.000000000000000001 AS protocol_fee_amount,
    NULL::numeric AS protocol_fee_amount_usd,
    '0x0000000000000000000000000000000000000000'::text AS currency_contract,
    'ETH'::text AS currency_symbol,
    t.supply,
    t.tx_hash,
    t.log_index AS evt_index,
    m.address AS contract_address
FROM trades t
JOIN markets m ON m.id = t.market_id;
