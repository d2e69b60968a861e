//! The market's events other than trades: referral payouts (`ReferralFeePaid`) with their daily
//! and per-referrer sums, and the fee settings' history. Written with their batch and rolled back
//! with their blocks, like trades.

use foldhash::HashMap;

use sqlx::Row;

use crate::{
    Backend, Error, Result, StoreReader,
    amount::Wei,
    calendar::DAY,
    error::db,
    row::{get_i64, wei_at},
    statements::{MAX_PARAMS, big_statement, insert_into, push_placeholders},
    write_tx::{Stmt, WriteTx},
};

/// One `ReferralFeePaid` event: the share of a buy's protocol fee credited to its referrer.
/// Addresses and hashes are lowercase 0x hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralRow {
    /// Transaction hash.
    pub tx_hash: String,
    /// Log index in the block.
    pub log_index: i64,
    /// Block number.
    pub block_number: i64,
    /// Block timestamp, seconds.
    pub block_time: i64,
    /// Who was credited.
    pub referrer: String,
    /// The buyer.
    pub trader: String,
    /// The subject whose keys were bought.
    pub subject: String,
    /// The amount credited.
    pub amount: Wei,
}

/// A fee setting a market's event changed or scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeeSetting {
    /// The protocol fee percent (1e18 = 100%), as a decimal.
    ProtocolFeePercent(String),
    /// The subject fee percent (1e18 = 100%), as a decimal.
    SubjectFeePercent(String),
    /// The referrer's share of the protocol fee, basis points, as a decimal.
    ReferralShareBps(String),
    /// Where protocol fees go.
    FeeDestination(String),
    /// A protocol fee increase to this percent, which may be applied from `effective_at`.
    ProtocolFeeIncrease {
        /// The scheduled percent, as a decimal.
        percent: String,
        /// Unix seconds.
        effective_at: i64,
    },
    /// A subject fee increase, likewise.
    SubjectFeeIncrease {
        /// The scheduled percent, as a decimal.
        percent: String,
        /// Unix seconds.
        effective_at: i64,
    },
}

impl FeeSetting {
    /// (kind, value, effective_at) as stored.
    fn columns(&self) -> (&'static str, &str, i64) {
        match self {
            Self::ProtocolFeePercent(v) => ("protocol_fee_percent", v, 0),
            Self::SubjectFeePercent(v) => ("subject_fee_percent", v, 0),
            Self::ReferralShareBps(v) => ("referral_share_bps", v, 0),
            Self::FeeDestination(v) => ("fee_destination", v, 0),
            Self::ProtocolFeeIncrease {
                percent,
                effective_at,
            } => ("protocol_fee_increase", percent, *effective_at),
            Self::SubjectFeeIncrease {
                percent,
                effective_at,
            } => ("subject_fee_increase", percent, *effective_at),
        }
    }

    fn from_columns(kind: &str, value: String, effective_at: i64) -> Option<Self> {
        Some(match kind {
            "protocol_fee_percent" => Self::ProtocolFeePercent(value),
            "subject_fee_percent" => Self::SubjectFeePercent(value),
            "referral_share_bps" => Self::ReferralShareBps(value),
            "fee_destination" => Self::FeeDestination(value),
            "protocol_fee_increase" => Self::ProtocolFeeIncrease {
                percent: value,
                effective_at,
            },
            "subject_fee_increase" => Self::SubjectFeeIncrease {
                percent: value,
                effective_at,
            },
            _ => return None,
        })
    }
}

/// One fee-setting event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeEventRow {
    /// Transaction hash.
    pub tx_hash: String,
    /// Block number.
    pub block_number: i64,
    /// Log index in the block.
    pub log_index: i64,
    /// Block timestamp, seconds.
    pub block_time: i64,
    /// What it set.
    pub setting: FeeSetting,
}

/// A market's fee settings as its indexed events left them (`None`: no event said).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeeSettings {
    /// The protocol fee percent (1e18 = 100%).
    pub protocol_fee_percent: Option<String>,
    /// The subject fee percent (1e18 = 100%).
    pub subject_fee_percent: Option<String>,
    /// The referrer's share of the protocol fee, basis points.
    pub referral_share_bps: Option<String>,
    /// Where protocol fees go.
    pub fee_destination: Option<String>,
    /// A protocol fee increase scheduled after the last protocol fee change: (percent, from when).
    pub pending_protocol_fee: Option<(String, i64)>,
    /// A subject fee increase scheduled after the last subject fee change.
    pub pending_subject_fee: Option<(String, i64)>,
}

/// One referrer's payouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerRow {
    /// The referrer (lowercase 0x hex).
    pub referrer: String,
    /// Referral payouts.
    pub referrals: i64,
    /// Their sum.
    pub amount: Wei,
    /// The first payout, Unix seconds.
    pub first_time: i64,
}

/// Stores a batch's referral payouts and fee events and adds the payouts to the daily and
/// per-referrer sums, in the batch's transaction. A log whose identity (transaction, log index)
/// is already stored — a provider answering an earlier log again at another block — refuses the
/// batch with [`Error::AlreadyStored`], as for trades.
pub(super) async fn insert_events(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    referrals: &[ReferralRow],
    fees: &[FeeEventRow],
) -> Result<()> {
    for chunk in referrals.chunks(MAX_PARAMS / 10) {
        let mut sql = insert_into(
            backend,
            "referrals (market_id, block_number, log_index, tx_hash, block_time, referrer, trader, subject, amount_gwei, amount_rem) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 10);
        sql.push_str(IDENTITY_CONFLICT);
        let mut q = big_statement(backend, &sql, chunk.len() * 10);
        for r in chunk {
            q.int(market_id)
                .int(r.block_number)
                .int(r.log_index)
                .text(&r.tx_hash)
                .int(r.block_time)
                .text(&r.referrer)
                .text(&r.trader)
                .text(&r.subject)
                .wei(r.amount);
        }
        let stored = tx
            .execute(q)
            .await
            .map_err(db("storing referral payouts"))?;
        let logs = chunk
            .iter()
            .map(|r| (r.block_number, r.tx_hash.as_str(), r.log_index));
        check_stored(tx, backend, market_id, "referrals", stored, logs).await?;
    }
    add_referrals(tx, backend, market_id, referrals, 1).await?;
    for chunk in fees.chunks(MAX_PARAMS / 8) {
        let mut sql = insert_into(
            backend,
            "fee_events (market_id, block_number, log_index, tx_hash, block_time, kind, value, effective_at) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 8);
        sql.push_str(IDENTITY_CONFLICT);
        let mut q = big_statement(backend, &sql, chunk.len() * 8);
        for f in chunk {
            let (kind, value, effective_at) = f.setting.columns();
            q.int(market_id)
                .int(f.block_number)
                .int(f.log_index)
                .text(&f.tx_hash)
                .int(f.block_time)
                .text(kind)
                .text(value)
                .int(effective_at);
        }
        let stored = tx.execute(q).await.map_err(db("storing fee events"))?;
        let logs = chunk
            .iter()
            .map(|f| (f.block_number, f.tx_hash.as_str(), f.log_index));
        check_stored(tx, backend, market_id, "fee_events", stored, logs).await?;
    }
    Ok(())
}

const IDENTITY_CONFLICT: &str = " ON CONFLICT (market_id, tx_hash, log_index) DO NOTHING";

/// After an insert of `logs` (block, transaction, log index) into `table` that skipped
/// identities already stored: [`Error::AlreadyStored`] unless all were stored, naming the first
/// block that holds a copy.
async fn check_stored<'a>(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    table: &str,
    stored: u64,
    logs: impl Iterator<Item = (i64, &'a str, i64)>,
) -> Result<()> {
    let logs: Vec<_> = logs.collect();
    if stored == logs.len() as u64 {
        return Ok(());
    }
    let (from, to) = (logs[0].0 as u64, logs[logs.len() - 1].0 as u64);
    let mut first = from;
    for (_, hash, index) in &logs {
        let sql = format!(
            "SELECT block_number FROM {table} WHERE market_id = $1 AND tx_hash = $2 AND log_index = $3"
        );
        let mut q = Stmt::new(backend, &sql, 3).persistent(false);
        q.int(market_id).text(hash).int(*index);
        for r in tx
            .fetch_all(q)
            .await
            .map_err(db("finding logs already stored"))?
        {
            first = first.min(r.int(0) as u64);
        }
    }
    Err(Error::AlreadyStored {
        count: logs.len() as u64 - stored,
        from,
        to,
        first,
    })
}

/// Removes the referral payouts and fee events of blocks `first_orphan` and later, subtracting
/// the payouts from the sums. Runs before the trades' rollback, which prunes emptied days.
pub(super) async fn rollback_events(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    first_orphan: u64,
) -> Result<()> {
    let mut q = Stmt::new(
        backend,
        "SELECT tx_hash, log_index, block_number, block_time, referrer, trader, subject, amount_gwei, amount_rem \
         FROM referrals WHERE market_id = $1 AND block_number >= $2",
        2,
    )
    .persistent(false);
    q.int(market_id).int(first_orphan as i64);
    let orphans: Vec<ReferralRow> = tx
        .fetch_all(q)
        .await
        .map_err(db("reading orphaned referral payouts"))?
        .iter()
        .map(|r| ReferralRow {
            tx_hash: r.text(0).to_owned(),
            log_index: r.int(1),
            block_number: r.int(2),
            block_time: r.int(3),
            referrer: r.text(4).to_owned(),
            trader: r.text(5).to_owned(),
            subject: r.text(6).to_owned(),
            amount: r.wei(7),
        })
        .collect();
    add_referrals(tx, backend, market_id, &orphans, -1).await?;
    for table in ["referrals", "fee_events"] {
        let sql = format!("DELETE FROM {table} WHERE market_id = $1 AND block_number >= $2");
        let mut q = Stmt::new(backend, &sql, 2).persistent(false);
        q.int(market_id).int(first_orphan as i64);
        tx.execute(q)
            .await
            .map_err(db("deleting orphaned market events"))?;
    }
    let mut q = Stmt::new(
        backend,
        "DELETE FROM referrers WHERE market_id = $1 AND referrals = 0",
        1,
    );
    q.int(market_id);
    tx.execute(q)
        .await
        .map_err(db("pruning emptied referrers"))?;
    Ok(())
}

/// Adds (`sign` = 1) or subtracts (`sign` = -1) referral payouts to the days and the referrers.
async fn add_referrals(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    referrals: &[ReferralRow],
    sign: i64,
) -> Result<()> {
    if referrals.is_empty() {
        return Ok(());
    }
    let signed = |w: Wei| if sign > 0 { w } else { w.negated() };
    let mut days: HashMap<i64, (i64, Wei)> = HashMap::default();
    let mut referrers: HashMap<&str, (i64, Wei, i64)> = HashMap::default();
    for r in referrals {
        let d = days.entry(r.block_time.div_euclid(DAY)).or_default();
        d.0 += sign;
        d.1 += signed(r.amount);
        let e = referrers
            .entry(r.referrer.as_str())
            .or_insert((0, Wei::ZERO, i64::MAX));
        e.0 += sign;
        e.1 += signed(r.amount);
        e.2 = e.2.min(r.block_time);
    }
    let days: Vec<_> = days.into_iter().collect();
    for chunk in days.chunks(MAX_PARAMS / 5) {
        let mut sql = insert_into(
            backend,
            "stats_daily (market_id, day, referrals, referral_gwei, referral_rem, trades, buys, sells, buy_volume_gwei, \
             buy_volume_rem, sell_volume_gwei, sell_volume_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, \
             active_traders, new_traders, new_subjects) VALUES ",
        );
        push_placeholders_with_zeros(&mut sql, backend, chunk.len(), 5, 14);
        sql.push_str(
            " ON CONFLICT (market_id, day) DO UPDATE SET referrals = stats_daily.referrals + excluded.referrals, \
             referral_gwei = stats_daily.referral_gwei + excluded.referral_gwei, \
             referral_rem = stats_daily.referral_rem + excluded.referral_rem",
        );
        let mut q = big_statement(backend, &sql, chunk.len() * 5);
        for (day, (n, amount)) in chunk {
            q.int(market_id).int(*day).int(*n).wei(*amount);
        }
        tx.execute(q)
            .await
            .map_err(db("adding referral payouts to days"))?;
    }
    let referrers: Vec<_> = referrers.into_iter().collect();
    for chunk in referrers.chunks(MAX_PARAMS / 6) {
        let mut sql = insert_into(
            backend,
            "referrers (market_id, referrer, referrals, amount_gwei, amount_rem, first_time) VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 6);
        // A rollback leaves first_time as it was; a referrer left without payouts is deleted.
        sql.push_str(
            " ON CONFLICT (market_id, referrer) DO UPDATE SET referrals = referrers.referrals + excluded.referrals, \
             amount_gwei = referrers.amount_gwei + excluded.amount_gwei, amount_rem = referrers.amount_rem + excluded.amount_rem",
        );
        let mut q = big_statement(backend, &sql, chunk.len() * 6);
        for (referrer, (n, amount, first)) in chunk {
            q.int(market_id)
                .text(referrer)
                .int(*n)
                .wei(*amount)
                .int(*first);
        }
        tx.execute(q)
            .await
            .map_err(db("adding referral payouts to referrers"))?;
    }
    Ok(())
}

/// `rows` groups of `params` placeholders followed by `zeros` literal zeros.
fn push_placeholders_with_zeros(
    sql: &mut String,
    backend: Backend,
    rows: usize,
    params: usize,
    zeros: usize,
) {
    let mut group = String::new();
    push_placeholders(&mut group, backend, rows, params);
    let tail = ", 0".repeat(zeros);
    sql.push_str(&group.replace(')', &format!("{tail})")));
}

impl StoreReader {
    /// The market's referrers with the largest payouts first (ties by address), at most `limit`.
    pub async fn top_referrers(&self, market_id: i64, limit: i64) -> Result<Vec<ReferrerRow>> {
        let rows = sqlx::query(concat!(
            "SELECT referrer, referrals, amount_gwei, amount_rem, first_time FROM referrers WHERE market_id = $1 \
             ORDER BY ",
            crate::amount::amount_desc!("amount"),
            ", referrer LIMIT $2"
        ),
        )
        .bind(market_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading referrers"))?;
        Ok(rows
            .iter()
            .map(|r| ReferrerRow {
                referrer: r.get(0),
                referrals: get_i64(r, 1),
                amount: wei_at(r, 2),
                first_time: get_i64(r, 4),
            })
            .collect())
    }

    /// The market's fee settings as its indexed events left them: each setting's latest value,
    /// and a scheduled increase when it came after the last change of its fee.
    pub async fn fee_settings(&self, market_id: i64) -> Result<FeeSettings> {
        let rows = sqlx::query(
            "SELECT kind, value, effective_at FROM fee_events WHERE market_id = $1 ORDER BY block_number, log_index",
        )
        .bind(market_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading fee events"))?;
        let mut s = FeeSettings::default();
        for r in &rows {
            let kind: String = r.get(0);
            let Some(setting) = FeeSetting::from_columns(&kind, r.get(1), get_i64(r, 2)) else {
                continue;
            };
            match setting {
                FeeSetting::ProtocolFeePercent(v) => {
                    s.protocol_fee_percent = Some(v);
                    s.pending_protocol_fee = None;
                }
                FeeSetting::SubjectFeePercent(v) => {
                    s.subject_fee_percent = Some(v);
                    s.pending_subject_fee = None;
                }
                FeeSetting::ReferralShareBps(v) => s.referral_share_bps = Some(v),
                FeeSetting::FeeDestination(v) => s.fee_destination = Some(v),
                FeeSetting::ProtocolFeeIncrease {
                    percent,
                    effective_at,
                } => s.pending_protocol_fee = Some((percent, effective_at)),
                FeeSetting::SubjectFeeIncrease {
                    percent,
                    effective_at,
                } => s.pending_subject_fee = Some((percent, effective_at)),
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_settings_round_trip_their_columns() {
        for s in [
            FeeSetting::ProtocolFeePercent("50000000000000000".into()),
            FeeSetting::SubjectFeePercent("1".into()),
            FeeSetting::ReferralShareBps("2000".into()),
            FeeSetting::FeeDestination("0xab".into()),
            FeeSetting::ProtocolFeeIncrease {
                percent: "7".into(),
                effective_at: 9,
            },
            FeeSetting::SubjectFeeIncrease {
                percent: "8".into(),
                effective_at: 10,
            },
        ] {
            let (kind, value, at) = s.columns();
            assert_eq!(FeeSetting::from_columns(kind, value.into(), at), Some(s));
        }
    }

    #[test]
    fn placeholders_with_zeros() {
        let mut sql = String::new();
        push_placeholders_with_zeros(&mut sql, Backend::Postgres, 2, 2, 3);
        assert_eq!(sql, "($1, $2, 0, 0, 0), ($3, $4, 0, 0, 0)");
    }
}
