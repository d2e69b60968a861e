//! Reads of the indexer's own (checkpoint, window) and of totals, counts and whole-table dumps
//! for the CLI and the tests.

use alloy::primitives::{Address, B256};
use sqlx::Row;

use crate::{
    DayRange, Error, Result, StoreReader, Totals,
    calendar::DAY,
    error::db,
    row::{address_at, get_i64, hex, wei_at},
};

/// A registered market and how far it is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketRow {
    /// The market's id in this database.
    pub id: i64,
    /// The chain id.
    pub chain_id: i64,
    /// The market's address (lowercase 0x hex).
    pub address: String,
    /// The first indexed block.
    pub start_block: i64,
    /// Every block below this one is indexed.
    pub next_block: i64,
    /// The chain head the indexer last recorded (0: never).
    pub head_block: i64,
    /// When it recorded it, Unix seconds (0: never).
    pub head_seen_at: i64,
    /// Why the indexer is stalled on it (a provider that keeps failing a range), if it is.
    pub stall_reason: Option<String>,
    /// The time of the newest indexed block, Unix seconds (0: none yet).
    pub indexed_time: i64,
    /// A long backfill's trades from this block on are stored but not yet counted in the
    /// aggregates (built when the indexer reaches the head); `None`: every trade is counted.
    pub aggregates_from: Option<i64>,
}

impl StoreReader {
    /// Every registered market, by id.
    pub async fn markets(&self) -> Result<Vec<MarketRow>> {
        let rows = sqlx::query(
            "SELECT id, chain_id, address, start_block, next_block, head_block, head_seen_at, stall_reason, indexed_time, aggregates_from FROM markets ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the markets"))?;
        Ok(rows
            .iter()
            .map(|r| MarketRow {
                id: get_i64(r, 0),
                chain_id: get_i64(r, 1),
                address: r.get(2),
                start_block: get_i64(r, 3),
                next_block: get_i64(r, 4),
                head_block: get_i64(r, 5),
                head_seen_at: get_i64(r, 6),
                stall_reason: r.get(7),
                indexed_time: get_i64(r, 8),
                aggregates_from: r.get(9),
            })
            .collect())
    }

    /// Whether `subject` has traded in the market.
    pub async fn has_subject(&self, market_id: i64, subject: Address) -> Result<bool> {
        self.has_party(
            "SELECT 1 FROM subjects WHERE market_id = $1 AND subject = $2",
            market_id,
            subject,
        )
        .await
    }

    /// Whether `trader` has traded in the market.
    pub async fn has_trader(&self, market_id: i64, trader: Address) -> Result<bool> {
        self.has_party(
            "SELECT 1 FROM traders WHERE market_id = $1 AND trader = $2",
            market_id,
            trader,
        )
        .await
    }

    async fn has_party(&self, sql: &'static str, market_id: i64, key: Address) -> Result<bool> {
        Ok(sqlx::query(sql)
            .bind(market_id)
            .bind(hex(key.as_slice()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("looking up a subject or trader"))?
            .is_some())
    }

    /// Raw trades (zero-amount ones included) stored for block `number`, of every market.
    pub async fn trades_in_block(&self, number: u64) -> Result<u64> {
        let r = sqlx::query("SELECT COUNT(*) FROM trades WHERE block_number = $1")
            .bind(number as i64)
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting a block's trades"))?;
        Ok(get_i64(&r, 0) as u64)
    }

    /// Trades with a non-zero amount of each market, by market id (from the daily aggregates).
    pub async fn trade_counts(&self) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query(
            "SELECT m.id, (SELECT CAST(COALESCE(SUM(d.trades), 0) AS BIGINT) FROM stats_daily d WHERE d.market_id = m.id) \
             FROM markets m ORDER BY m.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("counting trades"))?;
        Ok(rows
            .iter()
            .map(|r| (get_i64(r, 0), get_i64(r, 1)))
            .collect())
    }

    /// Each subject's supply after its last stored trade and its curve multiple as its stored
    /// trades' prices say (1 or 10; 0 not known): the base the curve check continues.
    pub async fn subject_states(&self, market_id: i64) -> Result<Vec<(Address, i64, i64)>> {
        let rows = sqlx::query("SELECT subject, supply, curve FROM subjects WHERE market_id = $1")
            .bind(market_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the subjects' supplies"))?;
        let mut states: Vec<(Address, i64, i64)> = rows
            .iter()
            .map(|r| Ok((address_at(r, 0)?, get_i64(r, 1), get_i64(r, 2))))
            .collect::<Result<_>>()?;
        if let Some(from) = self.aggregates_from(market_id).await? {
            // A long backfill's raw trades are not in `subjects` yet: their latest trades say.
            self.overlay_deferred(market_id, from, &mut states).await?;
        }
        Ok(states)
    }

    /// `states` (from `subjects`) with each subject's supply after its latest trade stored
    /// since `from` (deferred, see `deferred`) and, where not known yet, the curve that trade's
    /// price shows.
    async fn overlay_deferred(
        &self,
        market_id: i64,
        from: u64,
        states: &mut Vec<(Address, i64, i64)>,
    ) -> Result<()> {
        let rows = sqlx::query(
            "SELECT subject, supply, is_buy, share_amount, eth_gwei, eth_rem FROM ( \
             SELECT subject, supply, is_buy, share_amount, eth_gwei, eth_rem, \
             ROW_NUMBER() OVER (PARTITION BY subject ORDER BY block_number DESC, log_index DESC) AS latest \
             FROM trades WHERE market_id = $1 AND block_number >= $2 AND share_amount > 0) t WHERE latest = 1",
        )
        .bind(market_id)
        .bind(from as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the supplies of deferred trades"))?;
        let mut at: std::collections::HashMap<Address, usize> = states
            .iter()
            .enumerate()
            .map(|(i, (s, _, _))| (*s, i))
            .collect();
        for r in &rows {
            let subject = address_at(r, 0)?;
            let latest = crate::row::TradeRow {
                chain_id: 0,
                tx_hash: B256::ZERO,
                log_index: 0,
                block_number: 0,
                block_hash: B256::ZERO,
                block_time: 0,
                trader: Address::ZERO,
                subject,
                is_buy: get_i64(r, 2) != 0,
                share_amount: get_i64(r, 3),
                eth: wei_at(r, 4),
                protocol_fee: crate::amount::Wei::ZERO,
                subject_fee: crate::amount::Wei::ZERO,
                supply: get_i64(r, 1),
            };
            let curve = crate::aggregates::curve_multiple(&latest).unwrap_or(0);
            let i = *at.entry(subject).or_insert_with(|| {
                states.push((subject, 0, 0));
                states.len() - 1
            });
            let state = &mut states[i];
            state.1 = latest.supply;
            if state.2 == 0 {
                state.2 = curve;
            }
        }
        Ok(())
    }

    /// The block of a subject's last stored trade, if it has one (a repair's starting point).
    pub async fn last_trade_block(&self, market_id: i64, subject: Address) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT CAST(MAX(block_number) AS BIGINT) FROM trades WHERE market_id = $1 AND subject = $2",
        )
        .bind(market_id)
        .bind(hex(subject.as_slice()))
        .fetch_one(&self.pool)
        .await
        .map_err(db("reading a subject's last trade"))?;
        Ok(row
            .try_get::<Option<i64>, _>(0)
            .map_err(db("reading a subject's last trade"))?
            .map(|b| b as u64))
    }

    /// The market's unverified subjects, by first block.
    pub async fn unverified(&self, market_id: i64) -> Result<Vec<crate::Unverified>> {
        let rows = sqlx::query(
            "SELECT subject, block_number, reason FROM unverified WHERE market_id = $1 ORDER BY block_number, subject",
        )
        .bind(market_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the unverified marks"))?;
        rows.iter()
            .map(|r| {
                Ok(crate::Unverified {
                    subject: address_at(r, 0)?,
                    block: get_i64(r, 1),
                    reason: r.get::<String, _>(2),
                })
            })
            .collect()
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

    /// Totals of a market over all time (`days` = `None`) or over the UTC days `from..=to` (days
    /// since 1970-01-01), summed from the daily aggregates. Distinct traders and subjects: over
    /// all time, the sums of the daily first appearances; over a window, counted from the
    /// per-day traders and from the raw trades.
    pub async fn totals(&self, market_id: i64, days: Option<DayRange>) -> Result<Totals> {
        let DayRange { from, to } = days.unwrap_or(DayRange::ALL_TIME);
        let r = sqlx::query(
            "SELECT CAST(COALESCE(SUM(trades),0) AS BIGINT), CAST(COALESCE(SUM(buys),0) AS BIGINT), CAST(COALESCE(SUM(sells),0) AS BIGINT), CAST(COALESCE(SUM(buy_volume_gwei),0) AS BIGINT), CAST(COALESCE(SUM(buy_volume_rem),0) AS BIGINT), CAST(COALESCE(SUM(sell_volume_gwei),0) AS BIGINT), CAST(COALESCE(SUM(sell_volume_rem),0) AS BIGINT), CAST(COALESCE(SUM(protocol_gwei),0) AS BIGINT), CAST(COALESCE(SUM(protocol_rem),0) AS BIGINT), CAST(COALESCE(SUM(subject_gwei),0) AS BIGINT), CAST(COALESCE(SUM(subject_rem),0) AS BIGINT), \
             CAST(COALESCE(SUM(new_traders),0) AS BIGINT), CAST(COALESCE(SUM(new_subjects),0) AS BIGINT), \
             CAST(COALESCE(SUM(referrals),0) AS BIGINT), CAST(COALESCE(SUM(referral_gwei),0) AS BIGINT), CAST(COALESCE(SUM(referral_rem),0) AS BIGINT) \
             FROM stats_daily WHERE market_id = $1 AND day >= $2 AND day <= $3",
        )
        .bind(market_id)
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await
        .map_err(db("reading totals"))?;
        let w = |i: usize| wei_at(&r, i);
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
            referrals: get_i64(&r, 13),
            referral_payouts: w(14),
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
}
