//! A deferred build's sums on PostgreSQL, counted inside the database (on SQLite the build's Rust
//! pass measured faster; see `deferred`): one `INSERT … SELECT … GROUP BY … ON
//! CONFLICT DO UPDATE` per table over the deferred trades (holdings, subjects' days, traders'
//! days, traders, the market's days), no row shipped through the driver; then what depends on
//! the rows already there — each subject's holders, each day's active, new traders and new
//! subjects — recounted from the rows it counts, and the holdings emptied removed. What needs the
//! trades one by one in chain order (each sell's cost basis, each subject's latest supply and
//! curve) is the build's Rust pass (`deferred`), which writes the basis back first: the holdings'
//! cost and the traders' realised PnL are summed here from it.
//!
//! Each sum is the one `fold` makes batch by batch (amounts as plain `_gwei`/`_rem` sums; the
//! holdings' cost and the PnL normalised, as `normalised_add` keeps them), so the rows equal a
//! row-by-row backfill's exactly (`tests/it/deferred.rs` compares every table).

use std::time::Instant;

use tracing::info;

use crate::{
    Backend, Result,
    calendar::DAY,
    error::db,
    statements::insert_into,
    upserts::Table,
    write_tx::{Stmt, WriteTx},
};

/// A trade's UTC day (block times are not negative: truncating division is `div_euclid`).
const DAY_OF_TRADE: &str = "block_time / 86400";

/// `SUM(expr)` as a BIGINT (PostgreSQL's `SUM(bigint)` is a NUMERIC).
fn sum(expr: &str) -> String {
    format!("CAST(SUM({expr}) AS BIGINT)")
}

/// `SUM(expr)` over the buys (`buys` true) or the sells.
fn sum_if(buys: bool, expr: &str) -> String {
    let side = if buys { "<>" } else { "=" };
    sum(&format!("CASE WHEN is_buy {side} 0 THEN {expr} ELSE 0 END"))
}

/// An amount column's plain sums, "`SUM(x_gwei)`, `SUM(x_rem)`" (over the buys or the sells
/// when `side` says so).
fn sum_amount(side: Option<bool>, col: &str) -> String {
    let (gwei, rem) = (format!("{col}_gwei"), format!("{col}_rem"));
    match side {
        None => format!("{}, {}", sum(&gwei), sum(&rem)),
        Some(buys) => format!("{}, {}", sum_if(buys, &gwei), sum_if(buys, &rem)),
    }
}

/// A `<col>_gwei`, `<col>_rem` pair of plain sums as the normalised pair (`0 <= rem < 10⁹`,
/// floor division, exact on both databases), as `normalised_add` keeps it.
fn normalised(col: &str) -> String {
    let rem = format!("{col}_rem");
    let modulo = format!("((({rem} % 1000000000) + 1000000000) % 1000000000)");
    format!("{col}_gwei + ({rem} - {modulo}) / 1000000000, {modulo}")
}

/// Counts the deferred trades of `market_id` (blocks from `from` on) into holdings (unless the
/// Rust pass copied them: `holdings_copied`), subject_daily, daily_traders, traders and
/// stats_daily, then recounts what depends on the rows already there. Runs after the Rust pass
/// wrote the subjects and the sells' basis.
pub(super) async fn count_sums(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    from: i64,
    holdings_copied: bool,
) -> Result<()> {
    // (work_mem is the build's 256 MB, set with its cursor: the GROUP BYs hold up to a group per
    // holding, ~600k for 1M friend.tech-shaped trades, in memory instead of spilling them.)
    // Zero-amount trades count in no aggregate (as in `fold`).
    let deferred = format!(
        "FROM trades WHERE market_id = {market_id} AND block_number >= {from} AND share_amount <> 0"
    );
    let buys = sum_if(true, "1");
    let sells = sum_if(false, "1");
    let buy_volume = sum_amount(Some(true), "eth");
    let sell_volume = sum_amount(Some(false), "eth");
    let statements = [
        (
            // The cost: what each buy paid (price and both fees) less what each sell released.
            Table::Holdings,
            format!(
                "SELECT market_id, subject, trader, balance, {} FROM (SELECT market_id, subject, trader, \
                 {} AS balance, {} AS cost_gwei, {} AS cost_rem {deferred} GROUP BY market_id, subject, trader) AS h \
                 WHERE true ORDER BY market_id, subject, trader",
                normalised("cost"),
                sum("CASE WHEN is_buy <> 0 THEN share_amount ELSE -share_amount END"),
                sum(
                    "CASE WHEN is_buy <> 0 THEN eth_gwei + protocol_gwei + subject_gwei ELSE -basis_gwei END"
                ),
                sum(
                    "CASE WHEN is_buy <> 0 THEN eth_rem + protocol_rem + subject_rem ELSE -basis_rem END"
                ),
            ),
        ),
        (
            Table::SubjectDaily,
            format!(
                "SELECT market_id, subject, {DAY_OF_TRADE}, COUNT(*), {buys}, {sells}, {buy_volume}, {sell_volume}, \
                 {} {deferred} GROUP BY market_id, subject, {DAY_OF_TRADE} ORDER BY market_id, subject, {DAY_OF_TRADE}",
                sum_amount(None, "subject")
            ),
        ),
        (
            Table::DailyTraders,
            format!(
                "SELECT market_id, {DAY_OF_TRADE}, trader, COUNT(*) {deferred} GROUP BY market_id, {DAY_OF_TRADE}, trader \
                 ORDER BY market_id, {DAY_OF_TRADE}, trader"
            ),
        ),
        (
            // The PnL: what each sell received (price less both fees) less the basis it released.
            Table::Traders,
            format!(
                "SELECT market_id, trader, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, {} \
                 FROM (SELECT market_id, trader, COUNT(*) AS trades, {} AS volume_gwei, {} AS volume_rem, \
                 {} AS fees_gwei, {} AS fees_rem, MIN(block_time) AS first_time, {} AS pnl_gwei, {} AS pnl_rem \
                 {deferred} GROUP BY market_id, trader) AS t WHERE true ORDER BY market_id, trader",
                normalised("pnl"),
                sum("eth_gwei"),
                sum("eth_rem"),
                sum("protocol_gwei + subject_gwei"),
                sum("protocol_rem + subject_rem"),
                sum_if(
                    false,
                    "eth_gwei - protocol_gwei - subject_gwei - basis_gwei"
                ),
                sum_if(false, "eth_rem - protocol_rem - subject_rem - basis_rem"),
            ),
        ),
        (
            Table::StatsDaily,
            format!(
                "SELECT market_id, {DAY_OF_TRADE}, COUNT(*), {buys}, {sells}, {buy_volume}, {sell_volume}, {}, {}, \
                 0, 0, 0 {deferred} GROUP BY market_id, {DAY_OF_TRADE}",
                sum_amount(None, "protocol"),
                sum_amount(None, "subject")
            ),
        ),
    ];
    // Each SELECT's rows come in its table's key order: the upserts walk the primary key's
    // B-tree from one end to the other instead of all over it (holdings of 1M friend.tech-shaped
    // trades, 778,867 rows: 10.1 s against 13.5–15.2 s in hash order).
    for (table, select) in statements {
        if holdings_copied && matches!(table, Table::Holdings) {
            continue;
        }
        let t = Instant::now();
        // A table with no row of the market yet (a backfill deferred from its first trade) gets
        // plain inserts: each row's key is new, so no conflict arbiter probes the primary key
        // before inserting into it (subject-days of 1M friend.tech-shaped trades, psql: 4.2–4.8 s
        // against 6.3–7.1 s with the arbiter and the by-day index).
        // (SQLite needs a WHERE or GROUP BY between an INSERT's SELECT and ON CONFLICT, or it
        // reads ON as a join's: every SELECT here ends with one.)
        let on_conflict = if has_rows(tx, backend, table, market_id).await? {
            table.on_conflict()
        } else {
            String::new()
        };
        let sql = format!(
            "{} {select}{on_conflict}",
            insert_into(backend, table.columns()),
        );
        tx.execute(Stmt::new(backend, &sql, 0).persistent(false))
            .await
            .map_err(db("counting the deferred trades"))?;
        info!(target: "indexer::store", table = ?table, secs = t.elapsed().as_secs_f64(), "counted the deferred trades into a table");
    }
    let t = Instant::now();
    recount(tx, backend, market_id, &deferred).await?;
    info!(target: "indexer::store", secs = t.elapsed().as_secs_f64(), "recounted holders, new and active parties");
    Ok(())
}

/// Whether `table` holds a row of `market_id`.
async fn has_rows(
    tx: &mut WriteTx,
    backend: Backend,
    table: Table,
    market_id: i64,
) -> Result<bool> {
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM {} WHERE market_id = {market_id} LIMIT 1) AS r",
        table.name()
    );
    let rows = tx
        .fetch_all(Stmt::new(backend, &sql, 0).persistent(false))
        .await
        .map_err(db("looking for a table's rows of the market"))?;
    Ok(rows.first().is_some_and(|r| r.int(0) > 0))
}

/// What depends on the rows already there, recounted from the rows it counts: a subject's
/// holders are its holdings with keys (the holdings the build emptied removed first, as a batch
/// removes them), a day's active traders its daily_traders rows, its new traders (new subjects)
/// the traders (subjects) whose first trade fell on it — for the days from the first deferred
/// trade's on (the days before have no deferred trade).
async fn recount(tx: &mut WriteTx, backend: Backend, market_id: i64, deferred: &str) -> Result<()> {
    let first_day = format!("(SELECT MIN({DAY_OF_TRADE}) {deferred})");
    let per_day = |column: &str, count: String| {
        format!(
            "UPDATE stats_daily SET {column} = c.n FROM ({count}) AS c WHERE stats_daily.market_id = {market_id} \
             AND stats_daily.day = c.day"
        )
    };
    let first_days = |table: &str| {
        format!(
            "SELECT first_time / {DAY} AS day, COUNT(*) AS n FROM {table} WHERE market_id = {market_id} \
             AND first_time >= {first_day} * {DAY} GROUP BY first_time / {DAY}"
        )
    };
    let statements = [
        // An emptied holding has no keys and no cost (see `Writes::holdings`), and no other is
        // left so by a batch.
        format!(
            "DELETE FROM holdings WHERE market_id = {market_id} AND balance = 0 AND cost_gwei = 0 AND cost_rem = 0"
        ),
        format!(
            "UPDATE subjects SET holders = (SELECT COUNT(*) FROM holdings WHERE holdings.market_id = {market_id} \
             AND holdings.subject = subjects.subject AND holdings.balance > 0) WHERE market_id = {market_id}"
        ),
        per_day(
            "active_traders",
            format!(
                "SELECT day, COUNT(*) AS n FROM daily_traders WHERE market_id = {market_id} AND day >= {first_day} \
                 GROUP BY day"
            ),
        ),
        per_day("new_traders", first_days("traders")),
        per_day("new_subjects", first_days("subjects")),
    ];
    for sql in statements {
        tx.execute(Stmt::new(backend, &sql, 0).persistent(false))
            .await
            .map_err(db("recounting holders, new and active parties"))?;
    }
    Ok(())
}
