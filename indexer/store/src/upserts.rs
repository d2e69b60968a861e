//! The aggregate tables' upserts — each table's columns and what a row already there adds —
//! written once for both ways rows reach them: a batch's folded rows (`VALUES`, see
//! `aggregate_writes`) and a deferred build's sums (`SELECT … GROUP BY`, see `deferred_sums`).

use crate::statements::normalised_add;

/// An aggregate table whose rows are added to, not replaced.
#[derive(Debug, Clone, Copy)]
pub(super) enum Table {
    Holdings,
    Subjects,
    Traders,
    SubjectDaily,
    DailyTraders,
    StatsDaily,
}

impl Table {
    /// "table (columns)", the columns in the order the writes bind them.
    pub(super) fn columns(self) -> &'static str {
        match self {
            Table::Holdings => {
                "holdings (market_id, subject, trader, balance, cost_gwei, cost_rem)"
            }
            Table::Subjects => {
                "subjects (market_id, subject, supply, holders, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, \
                 first_time, curve)"
            }
            Table::Traders => {
                "traders (market_id, trader, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, pnl_gwei, \
                 pnl_rem)"
            }
            Table::SubjectDaily => {
                "subject_daily (market_id, subject, day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, \
                 sell_volume_gwei, sell_volume_rem, fees_gwei, fees_rem)"
            }
            Table::DailyTraders => "daily_traders (market_id, day, trader, trades)",
            Table::StatsDaily => {
                "stats_daily (market_id, day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, \
                 sell_volume_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, active_traders, new_traders, \
                 new_subjects)"
            }
        }
    }

    /// The table's name.
    pub(super) fn name(self) -> &'static str {
        let columns = self.columns();
        &columns[..columns.find(' ').unwrap_or(columns.len())]
    }

    /// " ON CONFLICT … DO UPDATE SET …": a row already there adds the new one's counts and sums
    /// (signed: a rollback's are negative; the holdings' cost and traders' PnL kept normalised),
    /// keeps the earlier first trade; a subject's supply and curve are the latest trade's (when it
    /// has one).
    pub(super) fn on_conflict(self) -> String {
        let add = |table: &str, cols: &[&str]| {
            cols.iter()
                .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let earliest = |table: &str| {
            format!(
                "first_time = CASE WHEN excluded.first_time < {table}.first_time THEN excluded.first_time ELSE {table}.first_time END"
            )
        };
        match self {
            Table::Holdings => format!(
                " ON CONFLICT (market_id, subject, trader) DO UPDATE SET {}, {}",
                add("holdings", &["balance"]),
                normalised_add("holdings", "cost"),
            ),
            Table::Subjects => format!(
                " ON CONFLICT (market_id, subject) DO UPDATE SET \
                 supply = CASE WHEN excluded.trades > 0 THEN excluded.supply ELSE subjects.supply END, {}, {}, \
                 curve = CASE WHEN excluded.curve > 0 THEN excluded.curve ELSE subjects.curve END",
                add(
                    "subjects",
                    &[
                        "holders",
                        "trades",
                        "volume_gwei",
                        "volume_rem",
                        "fees_gwei",
                        "fees_rem"
                    ]
                ),
                earliest("subjects"),
            ),
            Table::Traders => format!(
                " ON CONFLICT (market_id, trader) DO UPDATE SET {}, {}, {}",
                add(
                    "traders",
                    &[
                        "trades",
                        "volume_gwei",
                        "volume_rem",
                        "fees_gwei",
                        "fees_rem"
                    ]
                ),
                earliest("traders"),
                normalised_add("traders", "pnl"),
            ),
            Table::SubjectDaily => format!(
                " ON CONFLICT (market_id, subject, day) DO UPDATE SET {}",
                add(
                    "subject_daily",
                    &[
                        "trades",
                        "buys",
                        "sells",
                        "buy_volume_gwei",
                        "buy_volume_rem",
                        "sell_volume_gwei",
                        "sell_volume_rem",
                        "fees_gwei",
                        "fees_rem",
                    ]
                )
            ),
            Table::DailyTraders => format!(
                " ON CONFLICT (market_id, day, trader) DO UPDATE SET {}",
                add("daily_traders", &["trades"])
            ),
            Table::StatsDaily => format!(
                " ON CONFLICT (market_id, day) DO UPDATE SET {}",
                add(
                    "stats_daily",
                    &[
                        "trades",
                        "buys",
                        "sells",
                        "buy_volume_gwei",
                        "buy_volume_rem",
                        "sell_volume_gwei",
                        "sell_volume_rem",
                        "protocol_gwei",
                        "protocol_rem",
                        "subject_gwei",
                        "subject_rem",
                        "active_traders",
                        "new_traders",
                        "new_subjects",
                    ]
                )
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn names_are_the_tables_written() {
        let names = [
            Table::Holdings,
            Table::Subjects,
            Table::Traders,
            Table::SubjectDaily,
            Table::DailyTraders,
            Table::StatsDaily,
        ]
        .map(Table::name);
        assert_eq!(
            names,
            [
                "holdings",
                "subjects",
                "traders",
                "subject_daily",
                "daily_traders",
                "stats_daily"
            ]
        );
    }
}
