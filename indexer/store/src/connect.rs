//! Opening the database: the pool and its per-connection settings, the migrations (one process
//! at a time), the write connection, and the start-up bookkeeping of chains and markets.

use alloy::primitives::{Address, B256};
use sqlx::{
    Executor, Row,
    any::AnyPoolOptions,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
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

/// A transaction left idle for 5 s is ended by the server. The indexer never waits inside a
/// transaction (it fetches, decodes and checks before it begins one), so only a client cut off
/// mid-commit (a network partition) leaves one idle: without this its locks would hold up the
/// process that takes its markets over until TCP gives up on it (hours).
const POSTGRES_IDLE_IN_TRANSACTION: &str = "SET idle_in_transaction_session_timeout = '5s'";

/// The writer's PostgreSQL connections by default (as the readers' pool): one per market a
/// process writes at once.
const POSTGRES_WRITERS: u32 = 4;

/// A reader's connections cannot write (and a PostgreSQL hot standby accepts them).
const POSTGRES_READ_ONLY: &str = "SET default_transaction_read_only = on";

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
        Self::open(url, connections, Access::Write).await
    }

    async fn open(url: &str, connections: Option<u32>, access: Access) -> Result<Self> {
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
        // A reader never creates the file.
        let mode = match access {
            Access::Write => "mode=rwc",
            Access::Read => "mode=rw",
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}{mode}", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        };
        let options = pool_options(backend, connections, access == Access::Read);
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
        if access == Access::Read {
            check_migrated(&pool, migrator, &url).await?;
        } else {
            // Two processes opening one new SQLite file at once would both apply the same
            // migration (sqlx takes no lock on SQLite; it does on PostgreSQL): the second fails
            // with "table … already exists". One at a time, under an exclusive lock on the file
            // (flock: SQLite's own locks are fcntl locks, independent of it).
            let migrating = match backend {
                Backend::Sqlite => lock_for_migrations(&url).await?,
                Backend::Postgres => None,
            };
            migrator
                .run(&pool)
                .await
                .map_err(|e| Error::IncompatibleSchema(e.to_string()))?;
            drop(migrating);
        }
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
        let writer = writer(backend, &url, connections)?;
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
        // Recorded by the first of several processes starting at once; checked by all.
        sqlx::query(
            "INSERT INTO chains (chain_id, genesis_hash) VALUES ($1, $2) ON CONFLICT (chain_id) DO NOTHING",
        )
        .bind(chain_id as i64)
        .bind(&genesis)
        .execute(&self.pool)
        .await
        .map_err(db("writing chains"))?;
        let row = sqlx::query("SELECT genesis_hash FROM chains WHERE chain_id = $1")
            .bind(chain_id as i64)
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading chains"))?;
        let stored: String = row.get(0);
        if stored != genesis {
            return Err(Error::WrongChain(format!(
                "this database indexed chain {chain_id} with genesis {stored}, but the RPC serves chain {chain_id} with genesis {genesis} (a different chain, e.g. a restarted anvil); use a fresh database"
            )));
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
            lease_epoch: None,
        })
    }
}

impl StoreReader {
    /// Opens the store for reading with a pool of `connections` (see
    /// [`StoreWriter::connect_with`]). A reader never writes: it does not migrate (a database
    /// without this binary's schema is refused, [`Error::Unmigrated`]) and its connections are
    /// read-only (PostgreSQL's `default_transaction_read_only`, SQLite's `query_only`) — so it
    /// runs against a PostgreSQL hot standby as well as against the primary.
    pub async fn connect(url: &str, connections: Option<u32>) -> Result<Self> {
        Ok(StoreWriter::open(url, connections, Access::Read)
            .await?
            .reader)
    }
}

/// Whether a connection may write (and migrate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Write,
    Read,
}

/// A reader's check of the schema: every migration of this binary applied, none unknown to it.
async fn check_migrated(pool: &sqlx::AnyPool, migrator: &Migrator, url: &str) -> Result<()> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(v) => v,
            // No migrations table: nothing was ever indexed into it.
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("42P01")
                    || e.message().contains("no such table") =>
            {
                Vec::new()
            }
            Err(source) => {
                return Err(Error::Database {
                    what: "reading the schema's version".into(),
                    source,
                });
            }
        };
    let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    if let Some(newer) = applied.iter().find(|v| !known.contains(v)) {
        return Err(Error::IncompatibleSchema(format!(
            "{} holds migration {newer}, which this keymarket does not know (written by a newer one?)",
            redact(url)
        )));
    }
    let missing = known.iter().filter(|v| !applied.contains(v)).count();
    if missing > 0 {
        return Err(Error::Unmigrated(format!(
            "{} has {} of this keymarket's {} schema migrations",
            redact(url),
            known.len() - missing,
            known.len()
        )));
    }
    Ok(())
}

/// The write path's connection pool (opened at the first write: readers such as the API never
/// open it): native PostgreSQL connections, or SQLite's one native connection.
fn writer(backend: Backend, url: &str, connections: Option<u32>) -> Result<Writer> {
    Ok(match backend {
        Backend::Postgres => {
            let options: PgConnectOptions = url.parse().map_err(|source| Error::Database {
                what: format!("invalid database URL {}", redact(url)),
                source,
            })?;
            let options = sqlx::ConnectOptions::disable_statement_logging(options);
            Writer::Postgres(
                PgPoolOptions::new()
                    .max_connections(connections.unwrap_or(POSTGRES_WRITERS))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(POSTGRES_PLAN_CACHE_MODE).await?;
                            conn.execute(POSTGRES_IDLE_IN_TRANSACTION).await?;
                            Ok(())
                        })
                    })
                    .connect_lazy_with(options),
            )
        }
        // Opened at the first write (readers such as the API never open it).
        Backend::Sqlite => {
            let options: SqliteConnectOptions = url.parse().map_err(|source| Error::Database {
                what: format!("invalid database URL {}", redact(url)),
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
    })
}

/// The pool's options: its size (default: 1 on SQLite — the indexer's single writer — and 4 on
/// PostgreSQL) and each connection's settings, read-only ones for a reader.
fn pool_options(backend: Backend, connections: Option<u32>, read_only: bool) -> AnyPoolOptions {
    let mut options = AnyPoolOptions::new()
        .max_connections(connections.unwrap_or(if backend == Backend::Sqlite { 1 } else { 4 }));
    if backend == Backend::Sqlite {
        options = options.after_connect(move |conn, _| {
            Box::pin(async move {
                for pragma in SQLITE_PRAGMAS {
                    conn.execute(*pragma).await?;
                }
                if read_only {
                    conn.execute("PRAGMA query_only = ON").await?;
                }
                Ok(())
            })
        });
    } else {
        options = options.after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(POSTGRES_PLAN_CACHE_MODE).await?;
                conn.execute(POSTGRES_IDLE_IN_TRANSACTION).await?;
                if read_only {
                    conn.execute(POSTGRES_READ_ONLY).await?;
                }
                Ok(())
            })
        });
    }
    options
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
