-- The trades' identity (chain id, tx hash, log index) becomes a unique index instead of the
-- primary key, so that a long backfill can drop it and build it again at its end like the other
-- secondary indexes (see DEFERRABLE_INDEXES in src/store.rs).
ALTER TABLE trades DROP CONSTRAINT trades_pkey;
CREATE UNIQUE INDEX trades_identity ON trades (chain_id, tx_hash, log_index);
