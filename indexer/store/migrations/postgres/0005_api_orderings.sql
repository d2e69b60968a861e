-- Indexes for the API's orderings at friend.tech scale (100k subjects, 500k traders, 12M
-- trades): top-N by every `by` value (the same expressions as the queries' ORDER BY), a
-- subject's holders by balance, and a subject's or trader's trades newest first (log index
-- added). A long backfill drops and rebuilds them (DEFERRABLE_INDEXES in src/store.rs).
DROP INDEX IF EXISTS trades_market_subject;
DROP INDEX IF EXISTS trades_market_trader;
CREATE INDEX subjects_by_volume ON subjects (market_id, (volume_gwei + volume_rem / 1000000000) DESC, (volume_rem % 1000000000) DESC, subject);
CREATE INDEX subjects_by_fees ON subjects (market_id, (fees_gwei + fees_rem / 1000000000) DESC, (fees_rem % 1000000000) DESC, subject);
CREATE INDEX subjects_by_holders ON subjects (market_id, holders DESC, subject);
CREATE INDEX subjects_by_supply ON subjects (market_id, supply DESC, subject);
CREATE INDEX subjects_by_trades ON subjects (market_id, trades DESC, subject);
CREATE INDEX traders_by_volume ON traders (market_id, (volume_gwei + volume_rem / 1000000000) DESC, (volume_rem % 1000000000) DESC, trader);
CREATE INDEX traders_by_fees ON traders (market_id, (fees_gwei + fees_rem / 1000000000) DESC, (fees_rem % 1000000000) DESC, trader);
CREATE INDEX traders_by_trades ON traders (market_id, trades DESC, trader);
CREATE INDEX holdings_by_balance ON holdings (market_id, subject, balance DESC, trader);
CREATE INDEX trades_market_subject ON trades (market_id, subject, block_number, log_index);
CREATE INDEX trades_market_trader ON trades (market_id, trader, block_number, log_index);
