-- A trader's holdings (the API's trader page). Deferred like the trades indexes during a long
-- backfill (see DEFERRABLE_INDEXES in src/store.rs).
CREATE INDEX holdings_market_trader ON holdings (market_id, trader, subject);
