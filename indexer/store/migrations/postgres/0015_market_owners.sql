-- Which indexer process owns each market: a lease with an expiry, in milliseconds of the
-- database's own clock (no process's clock is trusted). The owner renews it every second and
-- inside each batch's transaction (the write fence: a batch whose owner or epoch no longer
-- matches is rolled back); a standby takes the market over once the lease has expired, with the
-- next epoch. Written on PostgreSQL, where several processes may index one database; on SQLite
-- one process holds the file (a lock file) and this table stays empty.
CREATE TABLE market_owners (
    market_id   BIGINT PRIMARY KEY REFERENCES markets (id),
    owner       TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
-- The indexer processes that are running (owners and standbys), renewed every second: the markets
-- are shared out between the live ones.
CREATE TABLE indexer_processes (
    owner   TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
-- Standbys ready to take a market now (under their share), renewed at each bid: an owner with
-- more than its share hands off only a market someone is bidding for, so none is left unowned.
CREATE TABLE market_bidders (
    market_id BIGINT NOT NULL REFERENCES markets (id),
    owner     TEXT NOT NULL,
    seen_at   BIGINT NOT NULL,
    PRIMARY KEY (market_id, owner)
);
