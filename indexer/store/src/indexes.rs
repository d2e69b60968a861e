//! The secondary indexes a long backfill drops and builds again at the head (the trades' and the
//! aggregate tables'), and the repair of a trade stored twice meanwhile.

use sqlx::{AssertSqlSafe, Row};
use tracing::info;

use crate::{
    Backend, Error, Result, StoreReader, StoreWriter,
    amount::amount_desc,
    connect::{SQLITE_CACHE_SIZE, SQLITE_TEMP_STORE},
    error::db,
    row::get_i64,
};

impl StoreWriter {
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

    /// Drops the secondary indexes of trades and the aggregate tables, for a long backfill:
    /// keeping them up to date row by row costs more than building them once, sorted, at the end
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
        self.build_indexes(|_| true).await
    }

    async fn build_indexes(&self, which: impl Fn(&str) -> bool) -> Result<usize> {
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
        let built = build_missing(&mut conn, self.backend, which).await;
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
        restored?;
        if self.backend == Backend::Postgres && built > 0 {
            // Tables just filled by a backfill have no statistics until autovacuum gets to them;
            // without them the planner guesses, badly at millions of rows. (SQLite's planner
            // does well without: no ANALYZE there.)
            let started = std::time::Instant::now();
            sqlx::query("ANALYZE")
                .execute(&mut *conn)
                .await
                .map_err(db("analyzing the tables after the index builds"))?;
            info!(target: "indexer::store", secs = started.elapsed().as_secs_f64(), "analyzed the tables");
        }
        Ok(built)
    }
}

impl StoreReader {
    /// Whether every trade is proved stored once: the trades' identity index exists. It is
    /// missing during a long backfill (dropped for speed) until the indexer reaches the head and
    /// builds it, which fails if a provider's answer had a trade stored twice (then repaired).
    /// Per database: the index covers every market it holds.
    pub async fn uniqueness_proved(&self) -> Result<bool> {
        self.has_index(TRADES_IDENTITY).await
    }

    pub(super) async fn has_index(&self, name: &str) -> Result<bool> {
        has_index(&self.pool, self.backend, name).await
    }
}

/// Secondary indexes (name, definition) exactly as the migrations create them, that a long
/// backfill drops and builds again at its end. The first is the trades' identity: while it is
/// missing, trades are inserted without the conflict check (exactly-once then rests on the
/// checkpoint, checked in the same transaction), and building it at the end proves no row is
/// there twice.
pub(super) const DEFERRABLE_INDEXES: &[(&str, &str)] = &[
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
        concat!(
            "CREATE INDEX IF NOT EXISTS subjects_by_volume ON subjects (market_id, ",
            amount_desc!("volume"),
            ", subject)"
        ),
    ),
    (
        "subjects_by_fees",
        concat!(
            "CREATE INDEX IF NOT EXISTS subjects_by_fees ON subjects (market_id, ",
            amount_desc!("fees"),
            ", subject)"
        ),
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
        concat!(
            "CREATE INDEX IF NOT EXISTS traders_by_volume ON traders (market_id, ",
            amount_desc!("volume"),
            ", trader)"
        ),
    ),
    (
        "traders_by_fees",
        concat!(
            "CREATE INDEX IF NOT EXISTS traders_by_fees ON traders (market_id, ",
            amount_desc!("fees"),
            ", trader)"
        ),
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
        "subject_daily_by_day",
        "CREATE INDEX IF NOT EXISTS subject_daily_by_day ON subject_daily (market_id, day)",
    ),
    (
        "traders_first_time",
        "CREATE INDEX IF NOT EXISTS traders_first_time ON traders (market_id, first_time)",
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

pub(super) const TRADES_IDENTITY: &str = "trades_identity";

/// Deferrable indexes that a long backfill nevertheless keeps: trades arrive in their order
/// (block, then time), so each insert appends at the index's right edge — cheaper than a sorted
/// build of the whole table at the end. [`Store::build_secondary_indexes`] still creates them
/// where missing (e.g. dropped by an older version).
pub(super) const KEPT_DURING_BACKFILL: &[&str] = &["trades_market_block", "trades_market_time"];

/// Creates the deferrable indexes missing on `conn`; returns how many were built.
pub(super) async fn build_missing(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    which: impl Fn(&str) -> bool,
) -> Result<usize> {
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
        if !which(create) || has_index(&mut *conn, backend, name).await? {
            continue;
        }
        let started = std::time::Instant::now();
        sqlx::query(AssertSqlSafe(*create))
            .execute(&mut *conn)
            .await
            .map_err(|source| {
                if *name == TRADES_IDENTITY && !crate::error::db_error_is_transient(&source) {
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

pub(super) async fn has_index<'c, E>(e: E, backend: Backend, name: &str) -> Result<bool>
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

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::Path};

    use super::*;

    fn tree(backend: &str) -> BTreeMap<String, String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&path).unwrap(),
                )
            })
            .collect()
    }

    /// One line of SQL with its whitespace collapsed and `IF NOT EXISTS` dropped.
    fn normal(sql: &str) -> String {
        sql.replace("IF NOT EXISTS ", "")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The SQLite and PostgreSQL migration trees stay twins: the same files, identical except
    /// for their known differences (the surrogate key's type; 0004, where SQLite must copy the
    /// trades table to drop its primary key).
    #[test]
    fn the_two_migration_trees_do_not_drift_apart() {
        let (sqlite, postgres) = (tree("sqlite"), tree("postgres"));
        assert_eq!(
            sqlite.keys().collect::<Vec<_>>(),
            postgres.keys().collect::<Vec<_>>(),
            "the same migrations on both"
        );
        /// (file, SQLite line, PostgreSQL line) that may differ.
        const KNOWN: &[(&str, &str, &str)] = &[
            (
                "0001_init.sql",
                "-- keymarket indexer schema (SQLite).",
                "-- keymarket indexer schema (PostgreSQL).",
            ),
            (
                "0001_init.sql",
                "id          INTEGER PRIMARY KEY AUTOINCREMENT,",
                "id          BIGSERIAL PRIMARY KEY,",
            ),
            // The day as a date, in each dialect's words.
            (
                "0012_dated_views.sql",
                "SELECT date(day * 86400, 'unixepoch') AS date, *",
                "SELECT to_char(DATE '1970-01-01' + CAST(day AS INTEGER), 'YYYY-MM-DD') AS date, *",
            ),
        ];
        for (name, s) in &sqlite {
            let p = &postgres[name];
            if name == "0004_trades_identity_index.sql" {
                let identity = normal(
                    "CREATE UNIQUE INDEX trades_identity ON trades (chain_id, tx_hash, log_index)",
                );
                assert!(
                    normal(s).contains(&identity),
                    "SQLite 0004 creates the identity"
                );
                assert!(
                    normal(p).contains(&identity),
                    "PostgreSQL 0004 creates the identity"
                );
                continue;
            }
            if name == "0010_social_trades_view.sql" {
                // The view is written in each dialect (dates, decimals): the same columns, in the
                // same order. A column is a select line ending in a comma (or the last one): its
                // alias, or the column it reads.
                let columns = |sql: &str| -> Vec<String> {
                    let select: Vec<&str> = sql
                        .lines()
                        .map(str::trim)
                        .skip_while(|l| *l != "SELECT")
                        .skip(1)
                        .take_while(|l| !l.starts_with("FROM "))
                        .collect();
                    let last = select.len().saturating_sub(1);
                    select
                        .iter()
                        .enumerate()
                        .filter(|(i, l)| l.ends_with(',') || *i == last)
                        .map(|(_, l)| {
                            let l = l.trim_end_matches(',');
                            let name = l.rsplit_once(" AS ").map_or(l, |(_, a)| a);
                            name.rsplit_once('.').map_or(name, |(_, c)| c).to_string()
                        })
                        .collect()
                };
                assert!(
                    s.contains("CREATE VIEW social_trades AS")
                        && p.contains("CREATE VIEW social_trades AS")
                );
                assert_eq!(columns(s), columns(p), "{name}: the same columns on both");
                assert_eq!(columns(s).len(), 21, "{name}: social.trades' 21 columns");
                assert_eq!(columns(s)[0], "blockchain");
                assert_eq!(columns(s)[20], "contract_address");
                continue;
            }
            let (sl, pl): (Vec<&str>, Vec<&str>) = (s.lines().collect(), p.lines().collect());
            assert_eq!(sl.len(), pl.len(), "{name}: as many lines on both");
            for (a, b) in sl.iter().zip(&pl) {
                if a == b {
                    continue;
                }
                assert!(
                    KNOWN.iter().any(|(file, x, y)| *file == name
                        && a.trim().starts_with(x)
                        && b.trim().starts_with(y)),
                    "{name}: an unknown difference:\n  SQLite:     {a}\n  PostgreSQL: {b}"
                );
            }
        }
    }

    /// Each index a long backfill drops is built again exactly as the migrations created it
    /// (else the API's ORDER BY, written for the migrations' expressions, stops using it).
    #[test]
    fn deferred_indexes_are_the_migrations_indexes() {
        for backend in ["sqlite", "postgres"] {
            let all = normal(&tree(backend).into_values().collect::<Vec<_>>().join("\n"));
            for (name, create) in DEFERRABLE_INDEXES {
                let create = normal(create);
                assert!(
                    all.contains(&create.trim_end_matches(';').to_string()),
                    "{backend}: {name} is not created as the migrations create it: {create}"
                );
            }
        }
    }
}
