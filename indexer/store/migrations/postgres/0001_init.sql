-- keymarket indexer schema (PostgreSQL). Amounts: <name>_gwei, <name>_rem BIGINT pairs, value =
-- gwei * 1e9 + rem wei (see indexer/src/amount.rs). Addresses and hashes: lowercase 0x hex.

CREATE TABLE chains (
    chain_id     BIGINT PRIMARY KEY,
    genesis_hash TEXT NOT NULL
);

CREATE TABLE markets (
    id          BIGSERIAL PRIMARY KEY,
    chain_id    BIGINT NOT NULL REFERENCES chains (chain_id),
    address     TEXT NOT NULL,
    start_block BIGINT NOT NULL,
    -- checkpoint: every block below next_block is indexed
    next_block  BIGINT NOT NULL,
    UNIQUE (chain_id, address)
);

-- Hashes of the most recent indexed blocks (the unfinalized window), for reorg detection.
CREATE TABLE blocks (
    market_id BIGINT NOT NULL,
    number    BIGINT NOT NULL,
    hash      TEXT NOT NULL,
    PRIMARY KEY (market_id, number)
);

CREATE TABLE trades (
    chain_id       BIGINT NOT NULL,
    tx_hash        TEXT NOT NULL,
    log_index      BIGINT NOT NULL,
    market_id      BIGINT NOT NULL,
    block_number   BIGINT NOT NULL,
    block_hash     TEXT NOT NULL,
    block_time     BIGINT NOT NULL,
    trader         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    is_buy         BIGINT NOT NULL,
    share_amount   BIGINT NOT NULL,
    eth_gwei       BIGINT NOT NULL,
    eth_rem        BIGINT NOT NULL,
    protocol_gwei  BIGINT NOT NULL,
    protocol_rem   BIGINT NOT NULL,
    subject_gwei   BIGINT NOT NULL,
    subject_rem    BIGINT NOT NULL,
    supply         BIGINT NOT NULL,
    PRIMARY KEY (chain_id, tx_hash, log_index)
);
CREATE INDEX trades_market_block ON trades (market_id, block_number, log_index);
CREATE INDEX trades_market_subject ON trades (market_id, subject, block_number);
CREATE INDEX trades_market_trader ON trades (market_id, trader, block_number);

CREATE TABLE stats_daily (
    market_id        BIGINT NOT NULL,
    day              BIGINT NOT NULL, -- days since 1970-01-01 (UTC)
    trades           BIGINT NOT NULL,
    buys             BIGINT NOT NULL,
    sells            BIGINT NOT NULL,
    buy_volume_gwei  BIGINT NOT NULL,
    buy_volume_rem   BIGINT NOT NULL,
    sell_volume_gwei BIGINT NOT NULL,
    sell_volume_rem  BIGINT NOT NULL,
    protocol_gwei    BIGINT NOT NULL,
    protocol_rem     BIGINT NOT NULL,
    subject_gwei     BIGINT NOT NULL,
    subject_rem      BIGINT NOT NULL,
    active_traders   BIGINT NOT NULL,
    new_traders      BIGINT NOT NULL,
    new_subjects     BIGINT NOT NULL,
    PRIMARY KEY (market_id, day)
);

CREATE TABLE subjects (
    market_id     BIGINT NOT NULL,
    subject       TEXT NOT NULL,
    supply        BIGINT NOT NULL,
    holders       BIGINT NOT NULL,
    trades        BIGINT NOT NULL,
    volume_gwei   BIGINT NOT NULL,
    volume_rem    BIGINT NOT NULL,
    fees_gwei     BIGINT NOT NULL,
    fees_rem      BIGINT NOT NULL,
    first_time    BIGINT NOT NULL,
    PRIMARY KEY (market_id, subject)
);

CREATE TABLE traders (
    market_id     BIGINT NOT NULL,
    trader        TEXT NOT NULL,
    trades        BIGINT NOT NULL,
    volume_gwei   BIGINT NOT NULL,
    volume_rem    BIGINT NOT NULL,
    fees_gwei     BIGINT NOT NULL,
    fees_rem      BIGINT NOT NULL,
    first_time    BIGINT NOT NULL,
    PRIMARY KEY (market_id, trader)
);
CREATE INDEX traders_first_time ON traders (market_id, first_time);

CREATE TABLE holdings (
    market_id BIGINT NOT NULL,
    subject   TEXT NOT NULL,
    trader    TEXT NOT NULL,
    balance   BIGINT NOT NULL,
    PRIMARY KEY (market_id, subject, trader)
);

CREATE TABLE daily_traders (
    market_id BIGINT NOT NULL,
    day       BIGINT NOT NULL,
    trader    TEXT NOT NULL,
    trades    BIGINT NOT NULL,
    PRIMARY KEY (market_id, day, trader)
);
