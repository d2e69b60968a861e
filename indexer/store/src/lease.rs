//! Which process owns each market, on PostgreSQL: a lease row per market (`market_owners`) with
//! an epoch and an expiry on the database's clock, and a row per running indexer process
//! (`indexer_processes`) so that markets are shared out between the live ones.
//!
//! The owner renews its leases every second ([`StoreWriter::heartbeat`]) and inside each batch's
//! transaction ([`fence`], called by [`StoreWriter::commit`] and [`StoreWriter::rollback`]): a
//! transaction whose lease has been taken over (another epoch) is rolled back, so a process cut
//! off from the database and come back late never writes after its successor. A standby takes a
//! market ([`StoreWriter::try_acquire`]) only once its lease has expired, and bumps the epoch.

use sqlx::Row;

use crate::{
    Backend, Error, MarketState, Result, StoreReader, StoreWriter,
    error::db,
    row::get_i64,
    write_tx::{Stmt, WriteTx},
};

/// How long a lease lasts unless renewed, in milliseconds. The owner renews every second, so a
/// standby takes over at most this long (and a poll) after the owner died or was cut off.
pub const LEASE_TTL_MS: i64 = 5_000;

/// How long a process the pid check says died must also have been silent before its leases are
/// taken without waiting them out (it records itself every second).
pub const DEAD_AFTER_MS: i64 = 2_000;

/// PostgreSQL's SQLSTATE for a lock not granted within `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The database's clock in Unix milliseconds (no process's clock is trusted: the processes may
/// run on different machines).
fn now_ms(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

/// The answer to a standby's bid for a market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bid {
    /// The market is this process's, with this epoch.
    Won {
        /// The lease's epoch (one more than the previous owner's).
        epoch: i64,
    },
    /// Another process holds a live lease.
    Held {
        /// The owner, as it names itself (`host:pid:…`).
        owner: String,
        /// Milliseconds until its lease expires unless it renews it.
        expires_in_ms: i64,
    },
}

/// A market's owner, as `/healthz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRow {
    /// The market's id.
    pub market_id: i64,
    /// The owner, as it names itself (`host:pid:…`).
    pub owner: String,
    /// How many times the market changed hands (1: its first owner).
    pub epoch: i64,
    /// Milliseconds until the lease expires unless renewed (negative: expired; nobody owns it).
    pub expires_in_ms: i64,
}

impl StoreWriter {
    /// Bids for `market_id` as `owner` (recorded as a bidder, see [`StoreWriter::bidders`]):
    /// won when nobody holds it, its lease has expired, or `owner` held it last (a process that
    /// gave it up while cut off from the database). A won lease always has a new epoch, so no
    /// write fenced by an older one can pass again.
    ///
    /// Meant for a pool of its own (see the indexer's `Ownership::join`): a bid dropped midway
    /// may leave its connection with a one-second `lock_timeout`.
    pub async fn try_acquire(&self, market_id: i64, owner: &str) -> Result<Bid> {
        let now = now_ms(self.backend);
        let sql = format!(
            "INSERT INTO market_owners (market_id, owner, epoch, acquired_at, expires_at) \
             VALUES ($1, $2, 1, {now}, {now} + $3) \
             ON CONFLICT (market_id) DO UPDATE SET owner = excluded.owner, \
             epoch = market_owners.epoch + 1, acquired_at = excluded.acquired_at, \
             expires_at = excluded.expires_at \
             WHERE market_owners.expires_at < {now} OR market_owners.owner = excluded.owner \
             RETURNING epoch"
        );
        // Each statement commits by itself, so a bidder frozen or cut off between two of them
        // holds no lock on the lease row. The lease row is locked while its owner commits a
        // batch (the fence): a bid waits a second at most for it (`lock_timeout`, set on this
        // connection for the bid), then counts as lost (the owner is alive and committing).
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db("bidding for a market"))?;
        let bidder = format!(
            "INSERT INTO market_bidders (market_id, owner, seen_at) VALUES ($1, $2, {now}) \
             ON CONFLICT (market_id, owner) DO UPDATE SET seen_at = excluded.seen_at"
        );
        sqlx::query(sqlx::AssertSqlSafe(bidder))
            .bind(market_id)
            .bind(owner)
            .execute(&mut *conn)
            .await
            .map_err(db("bidding for a market"))?;
        let postgres = self.backend == Backend::Postgres;
        if postgres {
            sqlx::query("SET lock_timeout = '1s'")
                .execute(&mut *conn)
                .await
                .map_err(db("bidding for a market"))?;
        }
        let won = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(market_id)
            .bind(owner)
            .bind(LEASE_TTL_MS)
            .fetch_optional(&mut *conn)
            .await;
        if postgres {
            sqlx::query("RESET lock_timeout")
                .execute(&mut *conn)
                .await
                .map_err(db("bidding for a market"))?;
        }
        let won = match won {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
                None
            }
            r => r.map_err(db("bidding for a market"))?,
        };
        drop(conn);
        if let Some(row) = won {
            return Ok(Bid::Won {
                epoch: get_i64(&row, 0),
            });
        }
        let sql =
            format!("SELECT owner, expires_at - {now} FROM market_owners WHERE market_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(market_id)
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading a market's owner"))?;
        Ok(Bid::Held {
            owner: row.get(0),
            expires_in_ms: get_i64(&row, 1),
        })
    }

    /// Records `owner` as running and renews the leases it holds (market, epoch); returns the
    /// pairs renewed (a lease missing from them was taken over).
    pub async fn heartbeat(&self, owner: &str, held: &[(i64, i64)]) -> Result<Vec<(i64, i64)>> {
        let now = now_ms(self.backend);
        let sql = format!(
            "INSERT INTO indexer_processes (owner, seen_at) VALUES ($1, {now}) \
             ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(db("recording the process as running"))?;
        let sql = format!(
            "UPDATE market_owners SET expires_at = {now} + $1 WHERE market_id = $2 AND epoch = $3 AND owner = $4"
        );
        let mut renewed = Vec::new();
        for &(market_id, epoch) in held {
            let done = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(LEASE_TTL_MS)
                .bind(market_id)
                .bind(epoch)
                .bind(owner)
                .execute(&self.pool)
                .await
                .map_err(db("renewing a lease"))?;
            if done.rows_affected() == 1 {
                renewed.push((market_id, epoch));
            }
        }
        Ok(renewed)
    }

    /// Gives a market up (a clean stop, or a hand-off to a process with fewer markets): its lease
    /// expires now, so a standby takes it at its next poll. Nothing happens if `epoch` is no
    /// longer the market's.
    pub async fn release(&self, market_id: i64, epoch: i64) -> Result<()> {
        let now = now_ms(self.backend);
        let sql = format!(
            "UPDATE market_owners SET expires_at = {now} WHERE market_id = $1 AND epoch = $2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(market_id)
            .bind(epoch)
            .execute(&self.pool)
            .await
            .map_err(db("releasing a market"))?;
        Ok(())
    }

    /// Forgets `owner` as a running process (a clean stop).
    pub async fn leave(&self, owner: &str) -> Result<()> {
        for sql in [
            "DELETE FROM market_bidders WHERE owner = $1",
            "DELETE FROM indexer_processes WHERE owner = $1",
        ] {
            sqlx::query(sql)
                .bind(owner)
                .execute(&self.pool)
                .await
                .map_err(db("recording the process as stopped"))?;
        }
        Ok(())
    }

    /// Forgets `dead`, a process known to have died (on this machine, its pid gone), once it has
    /// not been seen for [`DEAD_AFTER_MS`]: whether it was.
    pub async fn forget_dead(&self, dead: &str) -> Result<bool> {
        let now = now_ms(self.backend);
        let sql =
            format!("DELETE FROM indexer_processes WHERE owner = $1 AND seen_at < {now} - $2");
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dead)
            .bind(DEAD_AFTER_MS)
            .execute(&self.pool)
            .await
            .map_err(db("forgetting a stopped indexer"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM market_bidders WHERE owner = $1")
            .bind(dead)
            .execute(&self.pool)
            .await
            .map_err(db("forgetting a stopped indexer"))?;
        Ok(true)
    }

    /// Which of `markets` another process than `owner` bid for within a lease's time (a standby
    /// under its share, ready to take it at once).
    pub async fn bidders(&self, owner: &str, markets: &[i64]) -> Result<Vec<i64>> {
        if markets.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms(self.backend);
        let ids: Vec<String> = markets.iter().map(i64::to_string).collect();
        let sql = format!(
            "SELECT DISTINCT market_id FROM market_bidders WHERE owner <> $1 \
             AND seen_at > {now} - $2 AND market_id IN ({})",
            ids.join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(LEASE_TTL_MS)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the markets' bidders"))?;
        Ok(rows.iter().map(|r| get_i64(r, 0)).collect())
    }

    /// Whether `market_id` has gone without a live owner for longer than a lease (or never had
    /// one): a process then bids for it whatever its share, so that no market is left behind.
    pub async fn unowned_for_long(&self, market_id: i64) -> Result<bool> {
        let now = now_ms(self.backend);
        let sql = format!(
            "SELECT COUNT(*) FROM market_owners WHERE market_id = $1 AND expires_at > {now} - $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(market_id)
            .bind(LEASE_TTL_MS)
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading a market's owner"))?;
        Ok(get_i64(&row, 0) == 0)
    }

    /// The indexer processes running (seen within a lease's time), by name.
    pub async fn live_processes(&self) -> Result<Vec<String>> {
        let now = now_ms(self.backend);
        let sql = format!("SELECT owner FROM indexer_processes WHERE seen_at > {now} - $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(LEASE_TTL_MS)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing the running indexers"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Takes `market_id` from `dead`, a process known to have died (its caller checked: on the
    /// same machine, its pid is gone), without waiting for its lease to expire: won with a new
    /// epoch if `dead` still holds it and has not been seen for [`DEAD_AFTER_MS`] (a second
    /// guard, should the pid check be fooled). A dead process sends nothing more, and its last commit,
    /// if one is still in flight, holds the lease row until it ends — so nothing it wrote can
    /// land after this.
    pub async fn take_from_dead(&self, market_id: i64, dead: &str, owner: &str) -> Result<Bid> {
        let now = now_ms(self.backend);
        let sql = format!(
            "UPDATE market_owners SET owner = $1, epoch = epoch + 1, acquired_at = {now}, \
             expires_at = {now} + $2 WHERE market_id = $3 AND owner = $4 \
             AND NOT EXISTS (SELECT 1 FROM indexer_processes p WHERE p.owner = $4 \
             AND p.seen_at > {now} - $5) RETURNING epoch"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(LEASE_TTL_MS)
            .bind(market_id)
            .bind(dead)
            .bind(DEAD_AFTER_MS)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("taking a market over"))?;
        match row {
            Some(row) => Ok(Bid::Won {
                epoch: get_i64(&row, 0),
            }),
            // Taken by another standby first: an ordinary bid says by whom.
            None => self.try_acquire(market_id, owner).await,
        }
    }

    /// Whether `owner` holds a live lease on every registered market (the database-wide bulk
    /// mode, which drops indexes every market's writes use, is allowed only then).
    pub async fn owns_every_market(&self, owner: &str) -> Result<bool> {
        let now = now_ms(self.backend);
        let sql = format!(
            "SELECT COUNT(*) FROM markets m WHERE NOT EXISTS (SELECT 1 FROM market_owners o \
             WHERE o.market_id = m.id AND o.owner = $1 AND o.expires_at > {now})"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .fetch_one(&self.pool)
            .await
            .map_err(db("checking the markets' owners"))?;
        Ok(get_i64(&row, 0) == 0)
    }
}

impl StoreReader {
    /// Every market's owner (markets never owned have no row), by market id.
    pub async fn owners(&self) -> Result<Vec<OwnerRow>> {
        let now = now_ms(self.backend);
        let sql = format!(
            "SELECT market_id, owner, epoch, expires_at - {now} FROM market_owners ORDER BY market_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the markets' owners"))?;
        Ok(rows
            .iter()
            .map(|r| OwnerRow {
                market_id: get_i64(r, 0),
                owner: r.get(1),
                epoch: get_i64(r, 2),
                expires_in_ms: get_i64(r, 3),
            })
            .collect())
    }
}

/// The write fence, inside a batch's or a rollback's transaction (before its commit): the
/// market's lease is renewed if `market` still holds it, else [`Error::NotOwner`] and the
/// transaction is dropped (rolled back). On PostgreSQL the renewal locks the lease row until the
/// commit, so a standby's takeover waits for it and then finds the lease live.
pub(crate) async fn fence(tx: &mut WriteTx, backend: Backend, market: &MarketState) -> Result<()> {
    let Some(epoch) = market.lease_epoch else {
        return Ok(());
    };
    let now = now_ms(backend);
    let sql = format!(
        "UPDATE market_owners SET expires_at = {now} + $1 WHERE market_id = $2 AND epoch = $3"
    );
    let mut q = Stmt::new(backend, &sql, 3).persistent(false);
    q.int(LEASE_TTL_MS).int(market.id).int(epoch);
    let renewed = tx.execute(q).await.map_err(db("renewing the lease"))?;
    if renewed == 0 {
        return Err(Error::NotOwner {
            market_id: market.id,
            epoch,
        });
    }
    Ok(())
}
