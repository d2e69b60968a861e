//! Opening the database: the pool and its per-connection settings, the migrations (one process
//! at a time), the write connection, and the start-up bookkeeping of chains and markets.

use alloy::primitives::{Address, B256};
use sqlx::{
    Executor, Row,
    any::AnyPoolOptions,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};
use tracing::info;

use crate::{
    Backend, MarketState, StoreReader, StoreWriter,
    error::{Error, Result, db},
    row::hex,
    sql,
    write_tx::Writer,
};

/// The page cache of SQLite connections: 64 MiB (the default is 2 MiB); the backfill's upserts
/// touch index pages all over the file.
pub(crate) const SQLITE_CACHE_SIZE: &str = "PRAGMA cache_size=-65536";
/// Temporary tables and statement journals of SQLite connections in memory (index builds switch
/// to files: see [`StoreWriter::build_secondary_indexes`]).
pub(crate) const SQLITE_TEMP_STORE: &str = "PRAGMA temp_store=MEMORY";

/// The settings of every SQLite connection. 16 KiB pages (the default is 4 KiB), taking effect
/// when the file is new: a backfill appends rows and index entries, and bigger pages mean fewer
/// page splits, WAL frames and checksums per row (faster on the 1M-trade backfill; figures in
/// docs/performance.md). An existing file keeps its page size.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA page_size=16384",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    // The writer copies the WAL into the database every 8,192 pages (128 MiB) instead of 1,000:
    // a backfill rewrites the same aggregate and index pages batch after batch, and each
    // checkpoint copies a page once however often it was rewritten (faster on the 1M-trade
    // backfill; the figures are in docs/performance.md). The WAL file is cut back to 64 MiB
    // when it restarts.
    "PRAGMA wal_autocheckpoint=8192",
    "PRAGMA journal_size_limit=67108864",
    SQLITE_CACHE_SIZE,
    SQLITE_TEMP_STORE,
];

/// PostgreSQL plans every execution of a prepared statement for its parameters. The reads filter
/// on one trader or subject, and their row counts differ by orders of magnitude (a whale and a
/// one-trade account): the generic plan PostgreSQL switches to after five executions ignores the
/// value and, on the 12M-trade benchmark, read the trader page through the wrong index (two
/// orders of magnitude slower; docs/performance.md). Planning each time costs well under a
/// millisecond.
const POSTGRES_PLAN_CACHE_MODE: &str = "SET plan_cache_mode = force_custom_plan";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

impl StoreWriter {
    /// Connects to `url` (`sqlite:path` or `postgres://…`), creating a SQLite file if needed, and
    /// brings the schema up to date. A database written by an incompatible schema is refused.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, None).await
    }

    /// Like [`StoreWriter::connect`], with a pool of `connections` (default: 1 on SQLite — the
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
        } else {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(POSTGRES_PLAN_CACHE_MODE).await?;
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
        // Two processes opening one new SQLite file at once (an indexer and a reader) would both
        // apply the same migration (sqlx takes no lock on SQLite; it does on PostgreSQL): the
        // second fails with "table … already exists". One at a time, under an exclusive lock on
        // the file (flock: SQLite's own locks are fcntl locks, independent of it).
        let migrating = match backend {
            Backend::Sqlite => lock_for_migrations(&url).await?,
            Backend::Postgres => None,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| Error::IncompatibleSchema(e.to_string()))?;
        drop(migrating);
        let sql_target = match backend {
            Backend::Sqlite => {
                sql::SqlTarget::Sqlite(url.parse().map_err(|source| Error::Database {
                    what: format!("invalid database URL {}", redact(&url)),
                    source,
                })?)
            }
            Backend::Postgres => {
                sql::SqlTarget::Postgres(url.parse().map_err(|source| Error::Database {
                    what: format!("invalid database URL {}", redact(&url)),
                    source,
                })?)
            }
        };
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
            reader: StoreReader {
                pool,
                backend,
                sql_target,
            },
            writer,
        })
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
}

impl StoreReader {
    /// Opens the store for reading with a pool of `connections` (see
    /// [`StoreWriter::connect_with`]; the schema is brought up to date the same way, so a reader
    /// started before the indexer finds the tables).
    pub async fn connect(url: &str, connections: Option<u32>) -> Result<Self> {
        Ok(StoreWriter::connect_with(url, connections).await?.reader)
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

/// An exclusive lock on the SQLite file of `url` while this process migrates it (released when
/// dropped); `None` for a database without a file.
async fn lock_for_migrations(url: &str) -> Result<Option<std::fs::File>> {
    let options: SqliteConnectOptions = url.parse().map_err(|source| Error::Database {
        what: format!("invalid database URL {}", redact(url)),
        source,
    })?;
    let path = options.get_filename().to_path_buf();
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok(None);
    };
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| Error::Config(format!("locking {} for migrations: {e}", path.display())))?
        .map(Some)
        .map_err(|e| {
            Error::Config(format!(
                "cannot lock the database file for its migrations: {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several connections opening one new SQLite file at once (an indexer process and a reader
    /// polling it, say) all find the schema up to date: the migrations run one at a time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_opens_of_a_new_file_migrate_it_once() {
        for round in 0..5 {
            let path = std::env::temp_dir().join(format!(
                "keymarket-store-migrate-{}-{round}.db",
                std::process::id()
            ));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            let url = format!("sqlite:{}", path.display());
            let opens: Vec<_> = (0..6)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move { StoreWriter::connect(&url).await.map(|_| ()) })
                })
                .collect();
            for open in opens {
                open.await.unwrap().unwrap();
            }
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
}
