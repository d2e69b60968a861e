//! The SQL store: raw trades, the unfinalized block window, checkpoints and the incrementally
//! maintained aggregates, on SQLite (default) or PostgreSQL, with the same SQL on both
//! (placeholders `$n`, `ON CONFLICT … DO UPDATE`, `RETURNING`). Reads go through sqlx's `Any`
//! driver; commits and rollbacks through the write path of `store/writer.rs` (a native
//! connection on SQLite).
//!
//! Every batch — its rows, its aggregate updates, its block hashes and the checkpoint — commits
//! in one transaction, so a process killed at any instant leaves either all of a batch or none
//! of it. Rollbacks (reorgs) subtract exactly what the orphaned trades added, in one transaction.

use std::collections::BTreeMap;

// The batch's aggregates are keyed by addresses, several lookups per trade: foldhash (hashbrown's
// default hasher) instead of SipHash, which was a sixth of the indexer's own thread's work.
use foldhash::HashMap;

use alloy::primitives::{Address, B256};
use sqlx::{
    AnyPool, AssertSqlSafe, Executor, Row,
    any::{AnyPoolOptions, AnyRow},
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};
use tracing::{debug, info};

use crate::{
    Error, Result,
    amount::Wei,
    decode::{TradeRow, hex},
};

mod writer;

use writer::{Stmt, WriteRow, WriteTx, Writer};

/// The page cache of SQLite connections: 64 MiB (the default is 2 MiB); the backfill's upserts
/// touch index pages all over the file.
const SQLITE_CACHE_SIZE: &str = "PRAGMA cache_size=-65536";
/// Temporary tables and statement journals of SQLite connections in memory (index builds switch
/// to files: see [`Store::build_secondary_indexes`]).
const SQLITE_TEMP_STORE: &str = "PRAGMA temp_store=MEMORY";

/// The settings of every SQLite connection. 16 KiB pages (the default is 4 KiB), taking effect
/// when the file is new: a backfill appends rows and index entries, and bigger pages mean fewer
/// page splits, WAL frames and checksums per row (1M-trade backfill: +10-20% end to end, see
/// docs/performance.md). An existing file keeps its page size.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA page_size=16384",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    // The writer copies the WAL into the database every 8,192 pages (128 MiB) instead of 1,000:
    // a backfill rewrites the same aggregate and index pages batch after batch, and each
    // checkpoint copies a page once however often it was rewritten (1M-trade backfill: 5 of 6
    // alternating pairs won, medians ~105k vs ~101k trades/s; docs/performance.md). The WAL
    // file is cut back to 64 MiB when it restarts.
    "PRAGMA wal_autocheckpoint=8192",
    "PRAGMA journal_size_limit=67108864",
    SQLITE_CACHE_SIZE,
    SQLITE_TEMP_STORE,
];

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Most bind parameters in one statement (SQLite allows 32,766, PostgreSQL 65,535).
const MAX_PARAMS: usize = 30_000;

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (WAL mode).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A market's row and checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketState {
    /// The market's id in this database.
    pub id: i64,
    /// The chain id.
    pub chain_id: u64,
    /// The market's address.
    pub address: Address,
    /// Every block below this one is indexed.
    pub next_block: u64,
}

/// One indexed range, committed atomically.
#[derive(Debug, Default)]
pub struct Batch {
    /// The first block of the range (must equal the market's checkpoint).
    pub from: u64,
    /// The last block of the range.
    pub to: u64,
    /// Decoded trades, in chain order.
    pub trades: Vec<TradeRow>,
    /// Hashes of blocks in the range worth keeping for reorg detection (the range's last block and
    /// the blocks with trades, when near the head).
    pub blocks: Vec<(u64, B256)>,
    /// The chain head when the range was fetched (recorded for the lag the API reports).
    pub head: u64,
    /// The block before the range and its hash on the chain the range was fetched from: the
    /// batch is refused ([`Error::Reorged`]) if the store holds another hash for that block.
    pub parent: Option<(u64, B256)>,
    /// `Trade` logs of the range refused because they cannot be stored as they are (an amount
    /// beyond the schema's range): logged and counted, not stored.
    pub refused: u64,
}

/// Totals of a market over all time (from the daily aggregates).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys.
    pub buys: i64,
    /// Sells.
    pub sells: i64,
    /// Σ ethAmount over buys.
    pub buy_volume: U256Str,
    /// Σ ethAmount over sells.
    pub sell_volume: U256Str,
    /// Σ protocolEthAmount.
    pub protocol_fees: U256Str,
    /// Σ subjectEthAmount.
    pub subject_fees: U256Str,
    /// Distinct traders.
    pub traders: i64,
    /// Distinct subjects.
    pub subjects: i64,
}

/// A wei amount as an exact decimal string.
pub type U256Str = String;

impl Store {
    /// Connects to `url` (`sqlite:path` or `postgres://…`), creating a SQLite file if needed, and
    /// brings the schema up to date. A database written by an incompatible schema is refused.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, None).await
    }

    /// Like [`Store::connect`], with a pool of `connections` (default: 1 on SQLite — the
    /// indexer's single writer — and 4 on PostgreSQL). Readers such as the API use several: in
    /// WAL mode SQLite readers run concurrently with each other and with the writer.
    pub async fn connect_with(url: &str, connections: Option<u32>) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::Config(format!(
                "unsupported database URL {url:?}: use sqlite:path/to/file.db or postgres://user@host/db"
            )));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(connections.unwrap_or(if backend == Backend::Sqlite { 1 } else { 4 }));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in SQLITE_PRAGMAS {
                        conn.execute(*pragma).await?;
                    }
                    Ok(())
                })
            });
        }
        let connect_options: sqlx::any::AnyConnectOptions =
            url.parse().map_err(|source| Error::Database {
                what: format!("invalid database URL {}", redact(&url)),
                source,
            })?;
        // Statement logging off: batches are tens of thousands of parameters long; the indexer logs
        // its own progress.
        let connect_options = sqlx::ConnectOptions::disable_statement_logging(connect_options);
        let pool = options
            .connect_with(connect_options)
            .await
            .map_err(|source| Error::Database {
                what: format!("cannot open the database {}", redact(&url)),
                source,
            })?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| Error::IncompatibleSchema(e.to_string()))?;
        let writer = match backend {
            Backend::Postgres => Writer::Any(pool.clone()),
            // Opened at the first write (readers such as the API never open it).
            Backend::Sqlite => {
                let options: SqliteConnectOptions =
                    url.parse().map_err(|source| Error::Database {
                        what: format!("invalid database URL {}", redact(&url)),
                        source,
                    })?;
                let options = sqlx::ConnectOptions::disable_statement_logging(options);
                Writer::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                for pragma in SQLITE_PRAGMAS {
                                    conn.execute(*pragma).await?;
                                }
                                Ok(())
                            })
                        })
                        .connect_lazy_with(options),
                )
            }
        };
        Ok(Self {
            pool,
            writer,
            backend,
        })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool (for readers such as the API).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Records the chain's genesis hash, or checks it against the one recorded: a database built
    /// from another chain with the same id is refused.
    pub async fn ensure_chain(&self, chain_id: u64, genesis: B256) -> Result<()> {
        let genesis = hex(genesis.as_slice());
        let row = sqlx::query("SELECT genesis_hash FROM chains WHERE chain_id = $1")
            .bind(chain_id as i64)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading chains"))?;
        match row {
            Some(r) => {
                let stored: String = r.get(0);
                if stored != genesis {
                    return Err(Error::WrongChain(format!(
                        "this database indexed chain {chain_id} with genesis {stored}, but the RPC serves chain {chain_id} with genesis {genesis} (a different chain, e.g. a restarted anvil); use a fresh database"
                    )));
                }
            }
            None => {
                sqlx::query("INSERT INTO chains (chain_id, genesis_hash) VALUES ($1, $2)")
                    .bind(chain_id as i64)
                    .bind(genesis)
                    .execute(&self.pool)
                    .await
                    .map_err(db("writing chains"))?;
            }
        }
        Ok(())
    }

    /// Registers a market (or finds it) and returns its checkpoint.
    pub async fn ensure_market(
        &self,
        chain_id: u64,
        address: Address,
        start_block: u64,
    ) -> Result<MarketState> {
        let addr = hex(address.as_slice());
        sqlx::query(
            "INSERT INTO markets (chain_id, address, start_block, next_block) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (chain_id, address) DO NOTHING",
        )
        .bind(chain_id as i64)
        .bind(&addr)
        .bind(start_block as i64)
        .execute(&self.pool)
        .await
        .map_err(db("registering the market"))?;
        let row = sqlx::query(
            "SELECT id, next_block, start_block FROM markets WHERE chain_id = $1 AND address = $2",
        )
        .bind(chain_id as i64)
        .bind(&addr)
        .fetch_one(&self.pool)
        .await
        .map_err(db("reading the market"))?;
        let stored_start: i64 = row.get(2);
        if stored_start as u64 != start_block {
            info!(target: "indexer::store", stored_start, requested = start_block, "market already registered; keeping its start block");
        }
        Ok(MarketState {
            id: row.get(0),
            chain_id,
            address,
            next_block: row.get::<i64, _>(1) as u64,
        })
    }

    /// The market's current checkpoint.
    pub async fn next_block(&self, market_id: i64) -> Result<u64> {
        let row = sqlx::query("SELECT next_block FROM markets WHERE id = $1")
            .bind(market_id)
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading the checkpoint"))?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    /// Records the chain head seen while the market is caught up (for the lag the API reports).
    pub async fn record_head(&self, market_id: i64, head: u64) -> Result<()> {
        // On the writer: a write on the other SQLite connection would void the writer's page cache.
        let mut tx = self.begin_write().await?;
        let mut q = Stmt::new(
            self.backend,
            "UPDATE markets SET head_block = $1, head_seen_at = $2 WHERE id = $3",
            3,
        );
        q.int(head as i64).int(unix_now()).int(market_id);
        tx.execute(q).await.map_err(db("recording the head"))?;
        tx.commit().await.map_err(db("recording the head"))
    }

    async fn begin_write(&self) -> Result<WriteTx> {
        self.writer
            .begin()
            .await
            .map_err(db("starting a transaction"))
    }

    /// The stored block window, newest first.
    pub async fn window(&self, market_id: i64) -> Result<Vec<(u64, B256)>> {
        let rows = sqlx::query(
            "SELECT number, hash FROM blocks WHERE market_id = $1 ORDER BY number DESC",
        )
        .bind(market_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the block window"))?;
        rows.iter()
            .map(|r| {
                let hash: String = r.get(1);
                Ok((
                    r.get::<i64, _>(0) as u64,
                    hash.parse()
                        .map_err(|_| Error::Corrupt(format!("bad block hash {hash}")))?,
                ))
            })
            .collect()
    }

    /// Commits one indexed range: rows, aggregates, block hashes (keeping `window` blocks) and the
    /// checkpoint, in one transaction. Refuses a batch that does not start at the checkpoint.
    pub async fn commit(&self, market: &MarketState, batch: &Batch, window: u64) -> Result<()> {
        // (On the readers' pool, before the writer's transaction.)
        let checked = self.has_index(TRADES_IDENTITY).await?;
        let backend = self.backend;
        let mut tx = self.begin_write().await?;
        let mut q = Stmt::new(backend, "SELECT next_block FROM markets WHERE id = $1", 1);
        q.int(market.id);
        let next = tx
            .fetch_all(q)
            .await
            .map_err(db("reading the checkpoint"))?
            .first()
            .ok_or_else(|| Error::Corrupt(format!("market {} is not registered", market.id)))?
            .int(0);
        if next as u64 != batch.from {
            return Err(Error::Corrupt(format!(
                "batch starts at block {} but the checkpoint is {next}: another indexer is writing this market?",
                batch.from
            )));
        }
        if let Some((number, hash)) = batch.parent {
            let mut q = Stmt::new(
                backend,
                "SELECT hash FROM blocks WHERE market_id = $1 AND number = $2",
                2,
            );
            q.int(market.id).int(number as i64);
            let stored = tx
                .fetch_all(q)
                .await
                .map_err(db("reading the parent block's hash"))?;
            if stored
                .first()
                .is_some_and(|r| r.text(0) != hex(hash.as_slice()))
            {
                return Err(Error::Reorged { block: number });
            }
        }
        let basis = released_basis(&mut tx, backend, market.id, &batch.trades).await?;
        insert_trades(&mut tx, backend, market, &batch.trades, &basis, checked).await?;
        apply_aggregates(&mut tx, backend, market.id, &batch.trades, &basis, 1).await?;
        let hashes: Vec<String> = batch
            .blocks
            .iter()
            .map(|(_, h)| hex(h.as_slice()))
            .collect();
        for (chunk, hashes) in batch
            .blocks
            .chunks(MAX_PARAMS / 3)
            .zip(hashes.chunks(MAX_PARAMS / 3))
        {
            let mut sql = insert_into(backend, "blocks (market_id, number, hash) VALUES ");
            push_placeholders(&mut sql, backend, chunk.len(), 3);
            sql.push_str(" ON CONFLICT (market_id, number) DO UPDATE SET hash = excluded.hash");
            let mut q = big_statement(backend, &sql, chunk.len() * 3);
            for ((n, _), h) in chunk.iter().zip(hashes) {
                q.int(market.id).int(*n as i64).text(h);
            }
            tx.execute(q).await.map_err(db("storing block hashes"))?;
        }
        let mut q = Stmt::new(
            backend,
            "DELETE FROM blocks WHERE market_id = $1 AND number < $2",
            2,
        );
        q.int(market.id).int(batch.to.saturating_sub(window) as i64);
        tx.execute(q).await.map_err(db("pruning block hashes"))?;
        let mut q = Stmt::new(
            backend,
            "UPDATE markets SET next_block = $1, head_block = $2, head_seen_at = $3 WHERE id = $4",
            4,
        );
        q.int((batch.to + 1) as i64)
            .int(batch.head.max(batch.to) as i64)
            .int(unix_now())
            .int(market.id);
        tx.execute(q).await.map_err(db("moving the checkpoint"))?;
        tx.commit().await.map_err(db("committing a batch"))?;
        debug!(target: "indexer::store", from = batch.from, to = batch.to, trades = batch.trades.len(), "committed");
        Ok(())
    }

    /// Rolls the market back so that `first_orphan` and everything after it are unindexed: the
    /// orphaned trades' contributions are subtracted from every aggregate, their rows and block
    /// hashes deleted and the checkpoint moved, in one transaction.
    pub async fn rollback(&self, market: &MarketState, first_orphan: u64) -> Result<usize> {
        let backend = self.backend;
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT {TRADE_COLUMNS}, basis_gwei, basis_rem FROM trades WHERE market_id = $1 AND block_number >= $2 ORDER BY block_number, log_index"
        );
        let mut q = Stmt::new(backend, &sql, 2).persistent(false);
        q.int(market.id).int(first_orphan as i64);
        let rows = tx
            .fetch_all(q)
            .await
            .map_err(db("reading orphaned trades"))?;
        let orphans: Vec<TradeRow> = rows.iter().map(trade_from_row).collect();
        let basis: Vec<Wei> = rows.iter().map(|r| r.wei(17)).collect();
        apply_aggregates(&mut tx, backend, market.id, &orphans, &basis, -1).await?;
        let mut q = Stmt::new(
            backend,
            "DELETE FROM trades WHERE market_id = $1 AND block_number >= $2",
            2,
        );
        q.int(market.id).int(first_orphan as i64);
        tx.execute(q)
            .await
            .map_err(db("deleting orphaned trades"))?;
        // A subject's supply is that of its latest remaining trade.
        let mut subjects: Vec<&String> = orphans.iter().map(|t| &t.subject).collect();
        subjects.sort();
        subjects.dedup();
        for s in subjects {
            let mut q = Stmt::new(
                backend,
                "UPDATE subjects SET supply = COALESCE((SELECT t.supply FROM trades t WHERE t.market_id = $1 AND t.subject = $2 \
                 AND t.share_amount > 0 ORDER BY t.block_number DESC, t.log_index DESC LIMIT 1), 0) \
                 WHERE market_id = $1 AND subject = $2",
                2,
            );
            q.int(market.id).text(s);
            tx.execute(q).await.map_err(db("restoring supplies"))?;
        }
        let mut q = Stmt::new(
            backend,
            "DELETE FROM blocks WHERE market_id = $1 AND number >= $2",
            2,
        );
        q.int(market.id).int(first_orphan as i64);
        tx.execute(q)
            .await
            .map_err(db("deleting orphaned block hashes"))?;
        let mut q = Stmt::new(
            backend,
            "UPDATE markets SET next_block = $1 WHERE id = $2",
            2,
        );
        q.int(first_orphan as i64).int(market.id);
        tx.execute(q)
            .await
            .map_err(db("moving the checkpoint back"))?;
        tx.commit().await.map_err(db("committing a rollback"))?;
        Ok(orphans.len())
    }

    /// The first block holding a trade that is stored twice (same chain, transaction and log
    /// index), if any: a full scan, for repairing a long backfill whose unique index could not
    /// be built ([`Error::StoredTwice`]).
    pub async fn first_duplicate_block(&self, market_id: i64) -> Result<Option<u64>> {
        let r = sqlx::query(
            "SELECT CAST(MIN(first_block) AS BIGINT) FROM (SELECT MIN(block_number) AS first_block FROM trades \
             WHERE market_id = $1 GROUP BY chain_id, tx_hash, log_index HAVING COUNT(*) > 1) d",
        )
        .bind(market_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db("looking for trades stored twice"))?;
        Ok(r.try_get::<Option<i64>, _>(0)
            .map_err(db("looking for trades stored twice"))?
            .map(|b| b as u64))
    }

    /// Drops the secondary indexes of trades and holdings, for a long backfill: keeping them up to
    /// date row by row costs more than building them once, sorted, at the end
    /// ([`Store::build_secondary_indexes`]). Readers still get right answers meanwhile, slower.
    pub async fn drop_secondary_indexes(&self) -> Result<()> {
        for (name, _) in DEFERRABLE_INDEXES {
            if KEPT_DURING_BACKFILL.contains(name) {
                continue;
            }
            sqlx::query(AssertSqlSafe(format!("DROP INDEX IF EXISTS {name}")))
                .execute(&self.pool)
                .await
                .map_err(db("dropping an index"))?;
        }
        Ok(())
    }

    /// Creates the deferrable secondary indexes that are missing (all present: nothing to do).
    /// Returns how many were built.
    pub async fn build_secondary_indexes(&self) -> Result<usize> {
        // One connection for the builds and their settings (pragmas are per connection).
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db("opening a connection"))?;
        if self.backend == Backend::Sqlite {
            // SQLite sorts an index's keys on several threads only when its temporary files are
            // files (not memory), in chunks of at most cache_size: small sorted runs, merged.
            // On the 1M-trade backfill's identity index: 2.0 s → 0.9 s (docs/performance.md).
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
            for pragma in [
                "PRAGMA temp_store=FILE".to_string(),
                format!("PRAGMA threads={threads}"),
                "PRAGMA cache_size=-4096".to_string(),
            ] {
                sqlx::query(AssertSqlSafe(pragma))
                    .execute(&mut *conn)
                    .await
                    .map_err(db("configuring the index builds"))?;
            }
        }
        let built = build_missing(&mut conn, self.backend).await;
        let mut restored = Ok(());
        if self.backend == Backend::Sqlite {
            for pragma in [SQLITE_TEMP_STORE, "PRAGMA threads=0", SQLITE_CACHE_SIZE] {
                if let Err(e) = sqlx::query(pragma).execute(&mut *conn).await {
                    restored = Err(db("restoring the connection's settings")(e));
                }
            }
        }
        // A failed build's error matters more than a failed restore's.
        let built = built?;
        restored.map(|()| built)
    }

    async fn has_index(&self, name: &str) -> Result<bool> {
        has_index(&self.pool, self.backend, name).await
    }

    /// Totals of a market over all time (`days` = `None`) or over the UTC days `from..=to` (days
    /// since 1970-01-01), summed from the daily aggregates. Distinct traders and subjects: over
    /// all time, the sums of the daily first appearances; over a window, counted from the
    /// per-day traders and from the raw trades.
    pub async fn totals(&self, market_id: i64, days: Option<(i64, i64)>) -> Result<Totals> {
        let (from, to) = days.unwrap_or((i64::MIN / 2, i64::MAX / 2));
        let r = sqlx::query(
            "SELECT CAST(COALESCE(SUM(trades),0) AS BIGINT), CAST(COALESCE(SUM(buys),0) AS BIGINT), CAST(COALESCE(SUM(sells),0) AS BIGINT), CAST(COALESCE(SUM(buy_volume_gwei),0) AS BIGINT), CAST(COALESCE(SUM(buy_volume_rem),0) AS BIGINT), CAST(COALESCE(SUM(sell_volume_gwei),0) AS BIGINT), CAST(COALESCE(SUM(sell_volume_rem),0) AS BIGINT), CAST(COALESCE(SUM(protocol_gwei),0) AS BIGINT), CAST(COALESCE(SUM(protocol_rem),0) AS BIGINT), CAST(COALESCE(SUM(subject_gwei),0) AS BIGINT), CAST(COALESCE(SUM(subject_rem),0) AS BIGINT), \
             CAST(COALESCE(SUM(new_traders),0) AS BIGINT), CAST(COALESCE(SUM(new_subjects),0) AS BIGINT) \
             FROM stats_daily WHERE market_id = $1 AND day >= $2 AND day <= $3",
        )
        .bind(market_id)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await
        .map_err(db("reading totals"))?;
        let w = |i: usize| {
            Wei {
                gwei: get_i64(&r, i),
                rem: get_i64(&r, i + 1),
            }
            .to_u256()
            .to_string()
        };
        let (traders, subjects) = if days.is_none() {
            (get_i64(&r, 11), get_i64(&r, 12))
        } else {
            let t = sqlx::query(
                "SELECT COUNT(DISTINCT trader) FROM daily_traders WHERE market_id = $1 AND day >= $2 AND day <= $3",
            )
            .bind(market_id)
            .bind(from)
            .bind(to)
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting traders"))?;
            let s = sqlx::query(
                "SELECT COUNT(DISTINCT subject) FROM trades WHERE market_id = $1 AND block_time >= $2 AND block_time < $3 AND share_amount <> 0",
            )
            .bind(market_id)
            .bind(from.saturating_mul(DAY))
            .bind(to.saturating_add(1).saturating_mul(DAY))
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting subjects"))?;
            (get_i64(&t, 0), get_i64(&s, 0))
        };
        Ok(Totals {
            trades: get_i64(&r, 0),
            buys: get_i64(&r, 1),
            sells: get_i64(&r, 2),
            buy_volume: w(3),
            sell_volume: w(5),
            protocol_fees: w(7),
            subject_fees: w(9),
            traders,
            subjects,
        })
    }

    /// Rows in the raw trades table of a market (zero-amount trades included). A full count:
    /// not for request paths.
    pub async fn raw_trades(&self, market_id: i64) -> Result<i64> {
        let r = sqlx::query("SELECT COUNT(*) FROM trades WHERE market_id = $1")
            .bind(market_id)
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting trades"))?;
        Ok(get_i64(&r, 0))
    }

    /// Every table's rows for a market, as sorted text lines: for comparing two databases (or a
    /// database against a recomputation) row for row.
    pub async fn dump(&self, market_id: i64) -> Result<BTreeMap<&'static str, Vec<String>>> {
        let mut out = BTreeMap::new();
        for (table, cols) in DUMP_TABLES {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {cols} FROM {table} WHERE market_id = $1"
            )))
            .bind(market_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("dumping"))?;
            let mut lines: Vec<String> = rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            r.try_get::<i64, _>(i)
                                .map(|v| v.to_string())
                                .unwrap_or_else(|_| r.get::<String, _>(i))
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            lines.sort();
            out.insert(*table, lines);
        }
        Ok(out)
    }
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    /// Readers, schema changes and the start-up bookkeeping.
    pool: AnyPool,
    /// Commits and rollbacks.
    writer: Writer,
    backend: Backend,
}

/// Secondary indexes (name, definition) exactly as the migrations create them, that a long
/// backfill drops and builds again at its end. The first is the trades' identity: while it is
/// missing, trades are inserted without the conflict check (exactly-once then rests on the
/// checkpoint, checked in the same transaction), and building it at the end proves no row is
/// there twice.
const DEFERRABLE_INDEXES: &[(&str, &str)] = &[
    (
        TRADES_IDENTITY,
        "CREATE UNIQUE INDEX IF NOT EXISTS trades_identity ON trades (chain_id, tx_hash, log_index)",
    ),
    (
        "holdings_by_trader",
        "CREATE INDEX IF NOT EXISTS holdings_by_trader ON holdings (market_id, trader, balance DESC, subject)",
    ),
    (
        "trades_market_time",
        "CREATE INDEX IF NOT EXISTS trades_market_time ON trades (market_id, block_time, subject)",
    ),
    (
        "trades_market_block",
        "CREATE INDEX IF NOT EXISTS trades_market_block ON trades (market_id, block_number, log_index)",
    ),
    (
        "subjects_by_volume",
        "CREATE INDEX IF NOT EXISTS subjects_by_volume ON subjects (market_id, (volume_gwei + volume_rem / 1000000000) DESC, (volume_rem % 1000000000) DESC, subject)",
    ),
    (
        "subjects_by_fees",
        "CREATE INDEX IF NOT EXISTS subjects_by_fees ON subjects (market_id, (fees_gwei + fees_rem / 1000000000) DESC, (fees_rem % 1000000000) DESC, subject)",
    ),
    (
        "subjects_by_holders",
        "CREATE INDEX IF NOT EXISTS subjects_by_holders ON subjects (market_id, holders DESC, subject)",
    ),
    (
        "subjects_by_supply",
        "CREATE INDEX IF NOT EXISTS subjects_by_supply ON subjects (market_id, supply DESC, subject)",
    ),
    (
        "subjects_by_trades",
        "CREATE INDEX IF NOT EXISTS subjects_by_trades ON subjects (market_id, trades DESC, subject)",
    ),
    (
        "traders_by_volume",
        "CREATE INDEX IF NOT EXISTS traders_by_volume ON traders (market_id, (volume_gwei + volume_rem / 1000000000) DESC, (volume_rem % 1000000000) DESC, trader)",
    ),
    (
        "traders_by_fees",
        "CREATE INDEX IF NOT EXISTS traders_by_fees ON traders (market_id, (fees_gwei + fees_rem / 1000000000) DESC, (fees_rem % 1000000000) DESC, trader)",
    ),
    (
        "traders_by_trades",
        "CREATE INDEX IF NOT EXISTS traders_by_trades ON traders (market_id, trades DESC, trader)",
    ),
    (
        "traders_by_pnl",
        "CREATE INDEX IF NOT EXISTS traders_by_pnl ON traders (market_id, pnl_gwei DESC, pnl_rem DESC, trader)",
    ),
    (
        "subjects_by_price",
        "CREATE INDEX IF NOT EXISTS subjects_by_price ON subjects (market_id, (curve * supply * supply) DESC, subject)",
    ),
    (
        "holdings_by_balance",
        "CREATE INDEX IF NOT EXISTS holdings_by_balance ON holdings (market_id, subject, balance DESC, trader)",
    ),
    (
        "trades_market_subject",
        "CREATE INDEX IF NOT EXISTS trades_market_subject ON trades (market_id, subject, block_number, log_index)",
    ),
    (
        "trades_market_trader",
        "CREATE INDEX IF NOT EXISTS trades_market_trader ON trades (market_id, trader, block_number, log_index)",
    ),
];

const TRADES_IDENTITY: &str = "trades_identity";

/// Deferrable indexes that a long backfill nevertheless keeps: trades arrive in their order
/// (block, then time), so each insert appends at the index's right edge — cheaper than a sorted
/// build of the whole table at the end. [`Store::build_secondary_indexes`] still creates them
/// where missing (e.g. dropped by an older version).
const KEPT_DURING_BACKFILL: &[&str] = &["trades_market_block", "trades_market_time"];

/// Creates the deferrable indexes missing on `conn`; returns how many were built.
async fn build_missing(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<usize> {
    let mut built = 0;
    // The identity last: if a trade is stored twice it fails, and the repair
    // ([`Store::first_duplicate_block`], [`Store::rollback`]) then has every other index.
    let identity_last = DEFERRABLE_INDEXES
        .iter()
        .filter(|(name, _)| *name != TRADES_IDENTITY)
        .chain(
            DEFERRABLE_INDEXES
                .iter()
                .filter(|(name, _)| *name == TRADES_IDENTITY),
        );
    for (name, create) in identity_last {
        if has_index(&mut *conn, backend, name).await? {
            continue;
        }
        let started = std::time::Instant::now();
        sqlx::query(AssertSqlSafe(*create))
            .execute(&mut *conn)
            .await
            .map_err(|source| {
                if *name == TRADES_IDENTITY && !crate::db_error_is_transient(&source) {
                    Error::StoredTwice(format!(
                        "building the unique index on (chain id, tx hash, log index) failed: {source}"
                    ))
                } else {
                    Error::Database {
                        what: format!("building the index {name}"),
                        source,
                    }
                }
            })?;
        info!(target: "indexer::store", index = name, secs = started.elapsed().as_secs_f64(), "built index");
        built += 1;
    }
    Ok(built)
}

async fn has_index<'c, E>(e: E, backend: Backend, name: &str) -> Result<bool>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let exists = match backend {
        Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = $1",
        Backend::Postgres => {
            "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1"
        }
    };
    let n = sqlx::query(exists)
        .bind(name)
        .fetch_one(e)
        .await
        .map_err(db("looking up an index"))?;
    Ok(get_i64(&n, 0) > 0)
}

/// Tables and columns compared by [`Store::dump`] (everything but surrogate ids).
const DUMP_TABLES: &[(&str, &str)] = &[
    (
        "trades",
        "chain_id, tx_hash, log_index, block_number, block_hash, block_time, trader, subject, is_buy, share_amount, eth_gwei, eth_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, supply, basis_gwei, basis_rem",
    ),
    (
        "stats_daily",
        "day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, sell_volume_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, active_traders, new_traders, new_subjects",
    ),
    (
        "subjects",
        "subject, supply, holders, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, curve",
    ),
    (
        "traders",
        "trader, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, pnl_gwei, pnl_rem",
    ),
    ("holdings", "subject, trader, balance, cost_gwei, cost_rem"),
    ("daily_traders", "day, trader, trades"),
    (
        "subject_daily",
        "subject, day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, sell_volume_rem, fees_gwei, fees_rem",
    ),
];

pub(crate) const TRADE_COLUMNS: &str = "chain_id, tx_hash, log_index, block_number, block_hash, block_time, trader, subject, is_buy, share_amount, \
     eth_gwei, eth_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, supply";

async fn insert_trades(
    tx: &mut WriteTx,
    backend: Backend,
    market: &MarketState,
    trades: &[TradeRow],
    basis: &[Wei],
    checked: bool,
) -> Result<()> {
    const COLS: usize = 20;
    const ROWS: usize = MAX_PARAMS / COLS;
    let chunks: Vec<(&[TradeRow], &[Wei])> = trades.chunks(ROWS).zip(basis.chunks(ROWS)).collect();
    let text = |rows: usize| {
        let mut sql = insert_into(
            backend,
            "trades (chain_id, tx_hash, log_index, block_number, block_hash, block_time, trader, subject, is_buy, \
             share_amount, eth_gwei, eth_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, supply, market_id, basis_gwei, basis_rem) VALUES ",
        );
        push_placeholders(&mut sql, backend, rows, COLS);
        // A row already present would mean a range indexed twice: the count check below turns
        // that into an error instead of double-counted aggregates. (During a long backfill the
        // identity index is absent and its build at the end does that check.)
        if checked {
            sql.push_str(" ON CONFLICT (chain_id, tx_hash, log_index) DO NOTHING");
        }
        sql
    };
    // Two texts at most: full chunks (most of a backfill's) and the last, shorter one.
    let full = (trades.len() >= ROWS).then(|| text(ROWS));
    let last = (!trades.len().is_multiple_of(ROWS)).then(|| text(trades.len() % ROWS));
    let bind = |i: usize| {
        let (chunk, basis) = chunks[i];
        // The full chunks' text is prepared once and cached (two variants at most: with and
        // without the conflict clause).
        let (sql, cached) = if chunk.len() == ROWS {
            (&full, true)
        } else {
            (&last, false)
        };
        let mut q = big_statement(
            backend,
            sql.as_deref().expect("a text for each chunk length"),
            chunk.len() * COLS,
        )
        .persistent(cached);
        for (t, b) in chunk.iter().zip(basis) {
            q.int(t.chain_id)
                .text(&t.tx_hash)
                .int(t.log_index)
                .int(t.block_number)
                .text(&t.block_hash)
                .int(t.block_time)
                .text(&t.trader)
                .text(&t.subject)
                .int(i64::from(t.is_buy))
                .int(t.share_amount)
                .wei(t.eth)
                .wei(t.protocol_fee)
                .wei(t.subject_fee)
                .int(t.supply)
                .int(market.id)
                .wei(*b);
        }
        q
    };
    let mut next = (!chunks.is_empty()).then(|| bind(0));
    for i in 0..chunks.len() {
        let q = next.take().expect("bound ahead");
        // While the database executes chunk i, chunk i + 1 is bound (the binding is this
        // thread's work, the execution the database's).
        let (done, ahead) = futures::join!(tx.execute(q), async {
            (i + 1 < chunks.len()).then(|| bind(i + 1))
        });
        next = ahead;
        let done = done.map_err(db("inserting trades"))?;
        let rows = chunks[i].0.len() as u64;
        if done != rows {
            // The caller's transaction is dropped: nothing of the batch is stored.
            let (from, to) = (
                trades[0].block_number as u64,
                trades[trades.len() - 1].block_number as u64,
            );
            return Err(Error::AlreadyStored {
                count: rows - done,
                from,
                to,
            });
        }
    }
    Ok(())
}

#[derive(Default)]
struct DayAgg {
    trades: i64,
    buys: i64,
    sells: i64,
    buy_volume: Wei,
    sell_volume: Wei,
    protocol: Wei,
    subject: Wei,
    active: i64,
    new_traders: i64,
    new_subjects: i64,
}

#[derive(Default)]
struct PartyAgg {
    trades: i64,
    volume: Wei,
    fees: Wei,
    first_time: i64,
    supply: i64,
    holders: i64,
    /// Subjects: the curve multiple read off the batch's trades (0: not seen).
    curve: i64,
    /// Traders: realised PnL, wei.
    pnl: i128,
}

/// A subject's trades of one UTC day.
#[derive(Default)]
struct SubjectDayAgg {
    trades: i64,
    buys: i64,
    sells: i64,
    buy_volume: Wei,
    sell_volume: Wei,
    fees: Wei,
}

const DAY: i64 = 86_400;

/// (subject, trader).
type HoldingKey<'a> = (&'a str, &'a str);

/// Wei of one key at supply 1 on friend.tech's curve (1 ether / 16000).
const KEY_UNIT: u128 = 62_500_000_000_000;

/// The curve of a trade's subject, as a multiple of friend.tech's s²/16000 per key, from the
/// trade's price: ethAmount = multiple × Σ i² over the keys traded × 1 ether / 16000. `None`
/// when the keys traded are free (the first key) or the price is not on such a curve.
pub fn curve_multiple(t: &TradeRow) -> Option<i64> {
    let n = u128::try_from(t.share_amount).ok()?;
    let supply = u128::try_from(t.supply).ok()?;
    // The keys traded are numbered lo..=hi (a buy ends at the new supply, a sell starts there).
    let lo = if t.is_buy {
        supply.checked_sub(n)?
    } else {
        supply
    };
    let hi = (lo + n).checked_sub(1)?;
    let squares = |k: u128| k * (k + 1) * (2 * k + 1) / 6;
    let sum = squares(hi) - if lo == 0 { 0 } else { squares(lo - 1) };
    let unit = sum.checked_mul(KEY_UNIT)?;
    let eth = u128::try_from(t.eth.to_i128()).ok()?;
    (unit > 0 && eth % unit == 0)
        .then(|| i64::try_from(eth / unit).ok())
        .flatten()
        .filter(|m| *m > 0)
}

/// The cost basis each sell of `trades` releases, average-cost method: the holding's cost × keys
/// sold / keys held, rounded down (all of it when the seller sells everything, or more than the
/// index saw it buy — keys bought before a market's start block). Zero for buys and empty
/// trades. Reads the stored holdings of the (subject, trader) pairs that sell in this batch and
/// replays the batch in chain order.
async fn released_basis(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    trades: &[TradeRow],
) -> Result<Vec<Wei>> {
    let mut index: HashMap<(&str, &str), usize> = HashMap::default();
    for t in trades.iter().filter(|t| !t.is_buy && t.share_amount != 0) {
        let next = index.len();
        index
            .entry((t.subject.as_str(), t.trader.as_str()))
            .or_insert(next);
    }
    if index.is_empty() {
        return Ok(vec![Wei::ZERO; trades.len()]);
    }
    // (balance, cost in wei) of each selling pair, from the database.
    let mut state = vec![(0i64, 0i128); index.len()];
    let pairs: Vec<(&str, &str)> = index.keys().copied().collect();
    for chunk in pairs.chunks(MAX_PARAMS / 2) {
        let mut sql = format!(
            "SELECT subject, trader, balance, cost_gwei, cost_rem FROM holdings WHERE market_id = {market_id} AND (subject, trader) IN (VALUES "
        );
        push_placeholders(&mut sql, backend, chunk.len(), 2);
        sql.push(')');
        let mut q = big_statement(backend, &sql, chunk.len() * 2);
        for (subject, trader) in chunk {
            q.text(subject).text(trader);
        }
        for r in tx.fetch_all(q).await.map_err(db("reading holdings"))? {
            let i = index[&(r.text(0), r.text(1))];
            state[i] = (r.int(2), r.wei(3).to_i128());
        }
    }
    let mut out = Vec::with_capacity(trades.len());
    for t in trades {
        let i = index.get(&(t.subject.as_str(), t.trader.as_str()));
        let (Some(&i), true) = (i, t.share_amount != 0) else {
            out.push(Wei::ZERO);
            continue;
        };
        let (balance, cost) = &mut state[i];
        if t.is_buy {
            *balance += t.share_amount;
            *cost += paid(t);
            out.push(Wei::ZERO);
        } else {
            let released = if *balance > t.share_amount {
                *cost * i128::from(t.share_amount) / i128::from(*balance)
            } else {
                *cost
            };
            *balance -= t.share_amount;
            *cost -= released;
            out.push(wei(released)?);
        }
    }
    Ok(out)
}

/// What a buyer paid: the price and both fees, wei.
fn paid(t: &TradeRow) -> i128 {
    t.eth.to_i128() + t.protocol_fee.to_i128() + t.subject_fee.to_i128()
}

/// What a seller received: the price less both fees, wei.
fn received(t: &TradeRow) -> i128 {
    t.eth.to_i128() - t.protocol_fee.to_i128() - t.subject_fee.to_i128()
}

fn wei(v: i128) -> Result<Wei> {
    Wei::from_i128(v)
        .ok_or_else(|| Error::Corrupt(format!("{v} wei is past the storable range of ±9.2e9 ETH")))
}

/// SQL that adds `excluded`'s `<col>_gwei, <col>_rem` to `table`'s and keeps the pair
/// normalised (`0 <= rem < 10⁹`; floor division, exact on both databases), for signed amounts
/// whose pairs must order by value.
fn normalised_add(table: &str, col: &str) -> String {
    let rem = format!("({table}.{col}_rem + excluded.{col}_rem)");
    let modulo = format!("((({rem} % 1000000000) + 1000000000) % 1000000000)");
    format!(
        "{col}_gwei = {table}.{col}_gwei + excluded.{col}_gwei + ({rem} - {modulo}) / 1000000000, {col}_rem = {modulo}"
    )
}

/// Adds (`sign` = 1) or subtracts (`sign` = -1) the contribution of `trades` to every aggregate;
/// `basis[i]` is the cost basis `trades[i]` released (see [`released_basis`]). Zero-amount
/// trades count in none. Counters that depend on the previous state (holders, new and active
/// traders, new subjects) are derived from the rows' values after the update (`RETURNING`).
async fn apply_aggregates(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    trades: &[TradeRow],
    basis: &[Wei],
    sign: i64,
) -> Result<()> {
    let trades: Vec<(&TradeRow, &Wei)> = trades
        .iter()
        .zip(basis)
        .filter(|(t, _)| t.share_amount != 0)
        .collect();
    if trades.is_empty() {
        return Ok(());
    }
    let s = |w: Wei| if sign > 0 { w } else { w.negated() };
    let mut days: BTreeMap<i64, DayAgg> = BTreeMap::new();
    let mut subjects: HashMap<&str, PartyAgg> = HashMap::default();
    let mut traders: HashMap<&str, PartyAgg> = HashMap::default();
    // (balance change, cost change in wei)
    let mut holdings: HashMap<HoldingKey<'_>, (i64, i128)> = HashMap::default();
    let mut day_traders: HashMap<(i64, &str), i64> = HashMap::default();
    let mut subject_days: HashMap<(&str, i64), SubjectDayAgg> = HashMap::default();
    for (t, basis) in &trades {
        let day = t.block_time.div_euclid(DAY);
        let d = days.entry(day).or_default();
        let sd = subject_days.entry((&t.subject, day)).or_default();
        d.trades += sign;
        sd.trades += sign;
        if t.is_buy {
            d.buys += sign;
            d.buy_volume += s(t.eth);
            sd.buys += sign;
            sd.buy_volume += s(t.eth);
        } else {
            d.sells += sign;
            d.sell_volume += s(t.eth);
            sd.sells += sign;
            sd.sell_volume += s(t.eth);
        }
        d.protocol += s(t.protocol_fee);
        d.subject += s(t.subject_fee);
        sd.fees += s(t.subject_fee);
        let sj = subjects.entry(&t.subject).or_insert_with(|| PartyAgg {
            first_time: i64::MAX,
            ..Default::default()
        });
        sj.trades += sign;
        sj.volume += s(t.eth);
        sj.fees += s(t.subject_fee);
        sj.first_time = sj.first_time.min(t.block_time);
        sj.supply = t.supply; // trades are in chain order: the last one wins
        if sign > 0 {
            // A subject's curve never changes: rolling back leaves it as it was.
            sj.curve = curve_multiple(t).unwrap_or(sj.curve);
        }
        let tr = traders.entry(&t.trader).or_insert_with(|| PartyAgg {
            first_time: i64::MAX,
            ..Default::default()
        });
        tr.trades += sign;
        tr.volume += s(t.eth);
        tr.fees += s(t.protocol_fee.plus(t.subject_fee));
        tr.first_time = tr.first_time.min(t.block_time);
        let h = holdings.entry((&t.subject, &t.trader)).or_default();
        let basis = basis.to_i128();
        if t.is_buy {
            h.0 += sign * t.share_amount;
            h.1 += i128::from(sign) * paid(t);
        } else {
            h.0 -= sign * t.share_amount;
            h.1 -= i128::from(sign) * basis;
            tr.pnl += i128::from(sign) * (received(t) - basis);
        }
        *day_traders.entry((day, &t.trader)).or_default() += sign;
    }
    // On rollback the first-trade times must not move: the remaining trades are all older.
    let first = |t: i64| if sign > 0 { t } else { i64::MAX };

    // Holdings → holders per subject.
    let rows: Vec<(HoldingKey<'_>, (i64, i128))> = holdings.into_iter().collect();
    for chunk in rows.chunks(MAX_PARAMS / 6) {
        let mut sql = insert_into(
            backend,
            "holdings (market_id, subject, trader, balance, cost_gwei, cost_rem) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 6);
        sql.push_str(
            " ON CONFLICT (market_id, subject, trader) DO UPDATE SET balance = holdings.balance + excluded.balance, ",
        );
        sql.push_str(&normalised_add("holdings", "cost"));
        sql.push_str(" RETURNING subject, trader, balance");
        let mut q = big_statement(backend, &sql, chunk.len() * 6);
        for ((subject, trader), (delta, cost)) in chunk {
            let cost = wei(*cost)?;
            q.int(market_id)
                .text(subject)
                .text(trader)
                .int(*delta)
                .wei(cost);
        }
        let returned = tx.fetch_all(q).await.map_err(db("updating holdings"))?;
        let deltas: HashMap<(&str, &str), i64> =
            chunk.iter().map(|(k, (delta, _))| (*k, *delta)).collect();
        let mut emptied = Vec::new();
        for r in &returned {
            let (subject, trader) = (r.text(0), r.text(1));
            let new = r.int(2);
            let old = new - deltas[&(subject, trader)];
            let change = i64::from(new > 0) - i64::from(old > 0);
            if change != 0 {
                subjects.get_mut(subject).expect("touched subject").holders += change;
            }
            if new == 0 {
                emptied.push((subject, trader));
            }
        }
        // Holdings that this batch emptied are removed (only those: a scan of the whole table per
        // batch would make the backfill quadratic). An emptied holding's cost basis is zero (its
        // last sell released all of it) — unless a buy brought a negative balance (keys sold that
        // the index never saw bought, or a provider's log at a wrong block) back to zero: that
        // row keeps its cost, so that a rollback restores it exactly.
        for chunk in emptied.chunks(MAX_PARAMS / 2) {
            let mut sql = String::from(
                "DELETE FROM holdings WHERE balance = 0 AND cost_gwei = 0 AND cost_rem = 0 AND market_id = ",
            );
            sql.push_str(&market_id.to_string());
            sql.push_str(" AND (subject, trader) IN (VALUES ");
            push_placeholders(&mut sql, backend, chunk.len(), 2);
            sql.push(')');
            let mut q = big_statement(backend, &sql, chunk.len() * 2);
            for (subject, trader) in chunk {
                q.text(subject).text(trader);
            }
            tx.execute(q).await.map_err(db("pruning holdings"))?;
        }
    }

    // Subjects → new subjects per day.
    let rows: Vec<(&str, PartyAgg)> = subjects.into_iter().collect();
    for chunk in rows.chunks(MAX_PARAMS / 11) {
        let mut sql = insert_into(
            backend,
            "subjects (market_id, subject, supply, holders, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, curve) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 11);
        sql.push_str(
            " ON CONFLICT (market_id, subject) DO UPDATE SET \
             supply = CASE WHEN excluded.trades > 0 THEN excluded.supply ELSE subjects.supply END, \
             holders = subjects.holders + excluded.holders, trades = subjects.trades + excluded.trades, \
             volume_gwei = subjects.volume_gwei + excluded.volume_gwei, volume_rem = subjects.volume_rem + excluded.volume_rem, \
             fees_gwei = subjects.fees_gwei + excluded.fees_gwei, fees_rem = subjects.fees_rem + excluded.fees_rem, \
             first_time = CASE WHEN excluded.first_time < subjects.first_time THEN excluded.first_time ELSE subjects.first_time END, \
             curve = CASE WHEN excluded.curve > 0 THEN excluded.curve ELSE subjects.curve END \
             RETURNING subject, trades, first_time",
        );
        let mut q = big_statement(backend, &sql, chunk.len() * 11);
        for (subject, a) in chunk {
            q.int(market_id)
                .text(subject)
                .int(a.supply)
                .int(a.holders)
                .int(a.trades)
                .wei(a.volume)
                .wei(a.fees)
                .int(first(a.first_time))
                .int(a.curve);
        }
        let returned = tx.fetch_all(q).await.map_err(db("updating subjects"))?;
        for day in appeared_or_vanished(&returned, chunk, sign) {
            days.entry(day).or_default().new_subjects += sign;
        }
    }

    // Traders → new traders per day.
    let rows: Vec<(&str, PartyAgg)> = traders.into_iter().collect();
    for chunk in rows.chunks(MAX_PARAMS / 10) {
        let mut sql = insert_into(
            backend,
            "traders (market_id, trader, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, pnl_gwei, pnl_rem) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 10);
        sql.push_str(
            " ON CONFLICT (market_id, trader) DO UPDATE SET trades = traders.trades + excluded.trades, \
             volume_gwei = traders.volume_gwei + excluded.volume_gwei, volume_rem = traders.volume_rem + excluded.volume_rem, \
             fees_gwei = traders.fees_gwei + excluded.fees_gwei, fees_rem = traders.fees_rem + excluded.fees_rem, \
             first_time = CASE WHEN excluded.first_time < traders.first_time THEN excluded.first_time ELSE traders.first_time END, ",
        );
        sql.push_str(&normalised_add("traders", "pnl"));
        sql.push_str(" RETURNING trader, trades, first_time");
        let mut q = big_statement(backend, &sql, chunk.len() * 10);
        for (trader, a) in chunk {
            let pnl = wei(a.pnl)?;
            q.int(market_id)
                .text(trader)
                .int(a.trades)
                .wei(a.volume)
                .wei(a.fees)
                .int(first(a.first_time))
                .wei(pnl);
        }
        let returned = tx.fetch_all(q).await.map_err(db("updating traders"))?;
        for day in appeared_or_vanished(&returned, chunk, sign) {
            days.entry(day).or_default().new_traders += sign;
        }
    }

    // Each subject's day.
    let rows: Vec<((&str, i64), SubjectDayAgg)> = subject_days.into_iter().collect();
    for chunk in rows.chunks(MAX_PARAMS / 12) {
        let mut sql = insert_into(
            backend,
            "subject_daily (market_id, subject, day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, \
             sell_volume_gwei, sell_volume_rem, fees_gwei, fees_rem) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 12);
        sql.push_str(
            " ON CONFLICT (market_id, subject, day) DO UPDATE SET trades = subject_daily.trades + excluded.trades, \
             buys = subject_daily.buys + excluded.buys, sells = subject_daily.sells + excluded.sells, \
             buy_volume_gwei = subject_daily.buy_volume_gwei + excluded.buy_volume_gwei, buy_volume_rem = subject_daily.buy_volume_rem + excluded.buy_volume_rem, \
             sell_volume_gwei = subject_daily.sell_volume_gwei + excluded.sell_volume_gwei, sell_volume_rem = subject_daily.sell_volume_rem + excluded.sell_volume_rem, \
             fees_gwei = subject_daily.fees_gwei + excluded.fees_gwei, fees_rem = subject_daily.fees_rem + excluded.fees_rem",
        );
        let mut q = big_statement(backend, &sql, chunk.len() * 12);
        for ((subject, day), a) in chunk {
            q.int(market_id)
                .text(subject)
                .int(*day)
                .int(a.trades)
                .int(a.buys)
                .int(a.sells)
                .wei(a.buy_volume)
                .wei(a.sell_volume)
                .wei(a.fees);
        }
        tx.execute(q).await.map_err(db("updating subjects' days"))?;
    }

    // Daily active traders.
    let rows: Vec<((i64, &str), i64)> = day_traders.into_iter().collect();
    for chunk in rows.chunks(MAX_PARAMS / 4) {
        let mut sql = insert_into(
            backend,
            "daily_traders (market_id, day, trader, trades) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 4);
        sql.push_str(
            " ON CONFLICT (market_id, day, trader) DO UPDATE SET trades = daily_traders.trades + excluded.trades \
             RETURNING day, trader, trades",
        );
        let mut q = big_statement(backend, &sql, chunk.len() * 4);
        for ((day, trader), n) in chunk {
            q.int(market_id).int(*day).text(trader).int(*n);
        }
        let returned = tx
            .fetch_all(q)
            .await
            .map_err(db("updating daily traders"))?;
        let deltas: HashMap<(i64, &str), i64> = chunk.iter().copied().collect();
        for r in returned {
            let (day, now) = (r.int(0), r.int(2));
            let delta = deltas[&(day, r.text(1))];
            if (sign > 0 && now == delta) || (sign < 0 && now == 0) {
                days.entry(day).or_default().active += sign;
            }
        }
    }

    // Days.
    let rows: Vec<(i64, DayAgg)> = days.into_iter().collect();
    let mut sql = insert_into(
        backend,
        "stats_daily (market_id, day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, \
         sell_volume_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, active_traders, new_traders, new_subjects) VALUES ",
    );
    push_placeholders(&mut sql, backend, rows.len(), 16);
    sql.push_str(
        " ON CONFLICT (market_id, day) DO UPDATE SET trades = stats_daily.trades + excluded.trades, \
         buys = stats_daily.buys + excluded.buys, sells = stats_daily.sells + excluded.sells, \
         buy_volume_gwei = stats_daily.buy_volume_gwei + excluded.buy_volume_gwei, buy_volume_rem = stats_daily.buy_volume_rem + excluded.buy_volume_rem, \
         sell_volume_gwei = stats_daily.sell_volume_gwei + excluded.sell_volume_gwei, sell_volume_rem = stats_daily.sell_volume_rem + excluded.sell_volume_rem, \
         protocol_gwei = stats_daily.protocol_gwei + excluded.protocol_gwei, protocol_rem = stats_daily.protocol_rem + excluded.protocol_rem, \
         subject_gwei = stats_daily.subject_gwei + excluded.subject_gwei, subject_rem = stats_daily.subject_rem + excluded.subject_rem, \
         active_traders = stats_daily.active_traders + excluded.active_traders, new_traders = stats_daily.new_traders + excluded.new_traders, \
         new_subjects = stats_daily.new_subjects + excluded.new_subjects",
    );
    let mut q = big_statement(backend, &sql, rows.len() * 16);
    for (day, d) in &rows {
        q.int(market_id)
            .int(*day)
            .int(d.trades)
            .int(d.buys)
            .int(d.sells)
            .wei(d.buy_volume)
            .wei(d.sell_volume)
            .wei(d.protocol)
            .wei(d.subject)
            .int(d.active)
            .int(d.new_traders)
            .int(d.new_subjects);
    }
    tx.execute(q).await.map_err(db("updating daily stats"))?;

    if sign < 0 {
        for table in [
            "subjects",
            "traders",
            "daily_traders",
            "stats_daily",
            "subject_daily",
        ] {
            let sql = format!("DELETE FROM {table} WHERE market_id = $1 AND trades = 0");
            let mut q = Stmt::new(backend, &sql, 1);
            q.int(market_id);
            tx.execute(q)
                .await
                .map_err(db("pruning emptied aggregates"))?;
        }
    }
    Ok(())
}

/// The start of a multi-row `INSERT` (`rest`: "table (columns) VALUES …"). On SQLite, `OR FAIL`:
/// a failing row stops the statement without undoing its earlier rows, so SQLite keeps no
/// statement journal (a copy of every page the statement touches, the default `ABORT` needs).
/// Nothing is lost by that: any error rolls the whole transaction back.
fn insert_into(backend: Backend, rest: &str) -> String {
    match backend {
        Backend::Sqlite => format!("INSERT OR FAIL INTO {rest}"),
        Backend::Postgres => format!("INSERT INTO {rest}"),
    }
}

/// From the `RETURNING key, trades, first_time` rows of a subjects/traders upsert: the UTC days
/// (of their first trade) of the parties this batch made appear (`sign` > 0: their trade count
/// equals this batch's) or vanish (`sign` < 0: no trades left).
fn appeared_or_vanished(returned: &[WriteRow], chunk: &[(&str, PartyAgg)], sign: i64) -> Vec<i64> {
    let deltas: HashMap<&str, i64> = chunk.iter().map(|(k, a)| (*k, a.trades)).collect();
    returned
        .iter()
        .filter_map(|r| {
            let (trades_now, first_time) = (r.int(1), r.int(2));
            let delta = deltas[r.text(0)];
            ((sign > 0 && trades_now == delta) || (sign < 0 && trades_now == 0))
                .then(|| first_time.div_euclid(DAY))
        })
        .collect()
}

/// A row of [`TRADE_COLUMNS`].
fn trade_from_row(r: &WriteRow) -> TradeRow {
    TradeRow {
        chain_id: r.int(0),
        tx_hash: r.text(1).to_owned(),
        log_index: r.int(2),
        block_number: r.int(3),
        block_hash: r.text(4).to_owned(),
        block_time: r.int(5),
        trader: r.text(6).to_owned(),
        subject: r.text(7).to_owned(),
        is_buy: r.int(8) != 0,
        share_amount: r.int(9),
        eth: r.wei(10),
        protocol_fee: r.wei(12),
        subject_fee: r.wei(14),
        supply: r.int(16),
    }
}

/// A multi-row statement. Not prepared-and-cached: its text varies with the number of rows, and
/// each cached variant with tens of thousands of parameters would hold megabytes for the life of
/// the connection (memory would grow with the variety of batch sizes). The trades insert caches
/// its full-chunk variant only (`.persistent(true)`), a fixed text.
fn big_statement(backend: Backend, sql: &str, params: usize) -> Stmt<'_> {
    Stmt::new(backend, sql, params).persistent(false)
}

/// Appends `rows` tuples of `cols` placeholders. SQLite gets anonymous `?` (bound by position):
/// with `?NNN` or `$NNN` every bind looks its name up in a linear list (sqlite3VListNumToName),
/// which makes a 30,000-parameter statement quadratic. PostgreSQL gets `$NNN`.
fn push_placeholders(sql: &mut String, backend: Backend, rows: usize, cols: usize) {
    use std::fmt::Write;
    let mut n = 1;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            if backend == Backend::Sqlite {
                sql.push('?');
            } else {
                write!(sql, "${n}").expect("write to string");
            }
            n += 1;
        }
        sql.push(')');
    }
}

/// Reads a BIGINT column (sums are cast to BIGINT in SQL, so PostgreSQL never returns NUMERIC).
fn get_i64(row: &AnyRow, i: usize) -> i64 {
    row.get::<i64, _>(i)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Database {
        what: what.to_string(),
        source,
    }
}

/// Hides a password in a database URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = url[s + 3..at].find(':').unwrap() + s + 3;
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_string(),
    }
}
