-- Dune's `social.trades` over the indexed trades, for SQL over HTTP (POST /v1/sql): an analyst's
-- Dune query runs here unchanged. The same columns and values as `keymarket export trades`,
-- except that SQLite has no exact decimal: the ETH amounts are REAL (a double, as on Dune; the
-- exact wei are in `trades`' *_gwei and *_rem columns). Times are UTC text ('YYYY-MM-DD HH:MM:SS').
CREATE VIEW social_trades AS
SELECT
    CASE t.chain_id
        WHEN 1 THEN 'ethereum' WHEN 10 THEN 'optimism' WHEN 8453 THEN 'base'
        WHEN 42161 THEN 'arbitrum' WHEN 43114 THEN 'avalanche_c' WHEN 31337 THEN 'anvil'
        ELSE CAST(t.chain_id AS TEXT)
    END AS blockchain,
    datetime(t.block_time, 'unixepoch') AS block_time,
    date(t.block_time, 'unixepoch', 'start of month') AS block_month,
    t.block_number,
    'keymarket' AS project,
    t.trader,
    t.subject,
    CASE WHEN t.is_buy = 1 THEN 'buy' ELSE 'sell' END AS trade_side,
    t.eth_gwei / 1e9 + t.eth_rem / 1e18 AS amount_original,
    NULL AS amount_usd,
    t.share_amount,
    t.subject_gwei / 1e9 + t.subject_rem / 1e18 AS subject_fee_amount,
    NULL AS subject_fee_amount_usd,
    t.protocol_gwei / 1e9 + t.protocol_rem / 1e18 AS protocol_fee_amount,
    NULL AS protocol_fee_amount_usd,
    '0x0000000000000000000000000000000000000000' AS currency_contract,
    'ETH' AS currency_symbol,
    t.supply,
    t.tx_hash,
    t.log_index AS evt_index,
    m.address AS contract_address
FROM trades t
JOIN markets m ON m.id = t.market_id;
