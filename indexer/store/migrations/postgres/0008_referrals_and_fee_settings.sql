-- Referral payouts (the market's ReferralFeePaid events) and the fee settings' history (its
-- fee events), so that protocol revenue can be reported net of what referrers were paid.
--
-- Past referral payouts can only be read from the chain, so the data indexed before this
-- migration is cleared and each market re-indexes from its start block (as in 0007).
DELETE FROM trades;
DELETE FROM stats_daily;
DELETE FROM subjects;
DELETE FROM traders;
DELETE FROM holdings;
DELETE FROM daily_traders;
DELETE FROM subject_daily;
DELETE FROM blocks;
UPDATE markets SET next_block = start_block;

-- One row per ReferralFeePaid log.
CREATE TABLE referrals (
    market_id   BIGINT NOT NULL,
    block_number BIGINT NOT NULL,
    log_index   BIGINT NOT NULL,
    tx_hash     TEXT NOT NULL,
    block_time  BIGINT NOT NULL,
    referrer    TEXT NOT NULL,
    trader      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    amount_gwei BIGINT NOT NULL,
    amount_rem  BIGINT NOT NULL,
    PRIMARY KEY (market_id, block_number, log_index)
);
-- A log's identity: a provider answering an earlier log again at another block is refused
-- (as trades_identity does for trades).
CREATE UNIQUE INDEX referrals_identity ON referrals (market_id, tx_hash, log_index);

-- Per referrer: payouts and their sum (a plain sum of both parts, as every aggregate).
CREATE TABLE referrers (
    market_id   BIGINT NOT NULL,
    referrer    TEXT NOT NULL,
    referrals   BIGINT NOT NULL,
    amount_gwei BIGINT NOT NULL,
    amount_rem  BIGINT NOT NULL,
    first_time  BIGINT NOT NULL,
    PRIMARY KEY (market_id, referrer)
);
CREATE INDEX referrers_by_amount ON referrers (market_id, (amount_gwei + amount_rem / 1000000000) DESC, (amount_rem % 1000000000) DESC, referrer);

-- Per day: referral payouts (their count and sum).
ALTER TABLE stats_daily ADD COLUMN referrals BIGINT NOT NULL DEFAULT 0;
ALTER TABLE stats_daily ADD COLUMN referral_gwei BIGINT NOT NULL DEFAULT 0;
ALTER TABLE stats_daily ADD COLUMN referral_rem BIGINT NOT NULL DEFAULT 0;

-- One row per fee-setting log: kind is protocol_fee_percent, subject_fee_percent,
-- referral_share_bps or fee_destination (value: the new setting, a decimal or an address), or
-- protocol_fee_increase / subject_fee_increase (value: the scheduled percent, effective_at: when
-- it may be applied, Unix seconds; 0 for the other kinds).
CREATE TABLE fee_events (
    market_id    BIGINT NOT NULL,
    block_number BIGINT NOT NULL,
    log_index    BIGINT NOT NULL,
    tx_hash      TEXT NOT NULL,
    block_time   BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    value        TEXT NOT NULL,
    effective_at BIGINT NOT NULL,
    PRIMARY KEY (market_id, block_number, log_index)
);
CREATE UNIQUE INDEX fee_events_identity ON fee_events (market_id, tx_hash, log_index);
