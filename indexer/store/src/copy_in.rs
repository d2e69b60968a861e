//! A long backfill's raw trades into PostgreSQL with `COPY … FROM STDIN` (text format) instead of
//! multi-row `INSERT`s: no statement of 65,000 parameters to parse, bind and plan per 3,276
//! rows, one stream per batch. Used only while the trades' identity index is absent (a long
//! backfill with the indexes dropped): `COPY` has no `ON CONFLICT`, and without that index no
//! insert checks for a copy anyway (the index's build at the head does, see `indexes`).
//! Also a deferred build's holdings, when the market has none stored (see `deferred`).

use alloy::primitives::Address;

use crate::{
    Error, Result, amount::Wei, cost_basis::wei, error::db, row::TradeRow, write_tx::WriteTx,
};

/// The `COPY` statement whose rows [`trades_text`] writes, columns in its order.
const COPY_TRADES: &str = "COPY trades (chain_id, tx_hash, log_index, block_number, block_hash, block_time, trader, subject, \
     is_buy, share_amount, eth_gwei, eth_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, supply, market_id, \
     basis_gwei, basis_rem) FROM STDIN";

/// The `COPY` statement whose rows [`holdings_text`] writes, columns in its order.
const COPY_HOLDINGS: &str =
    "COPY holdings (market_id, subject, trader, balance, cost_gwei, cost_rem) FROM STDIN";

/// Rows sent to the server at a time: the server parses one piece while the next is written.
const ROWS_PER_SEND: usize = 2_000;

/// A holding's key (subject, trader) and its final (balance, cost in wei).
pub(super) type HoldingRow = ((Address, Address), (i64, i128));

/// Copies `trades` (with their `basis`) into the trades table of the open transaction; an error
/// unless the server took every row.
pub(super) async fn copy_trades(
    tx: &mut WriteTx,
    market_id: i64,
    trades: &[TradeRow],
    basis: &[Wei],
) -> Result<()> {
    let pieces = trades
        .chunks(ROWS_PER_SEND)
        .zip(basis.chunks(ROWS_PER_SEND))
        .map(|(t, b)| trades_text(market_id, t, b));
    let copied = tx
        .copy_in(COPY_TRADES, pieces)
        .await
        .map_err(db("copying trades"))?;
    if copied != trades.len() as u64 {
        return Err(Error::Corrupt(format!(
            "COPY stored {copied} of {} trades",
            trades.len()
        )));
    }
    Ok(())
}

/// Copies `holdings` into the holdings table of the open transaction, which has no row of
/// `market_id` (`COPY` has no `ON CONFLICT`); an error unless the server took every row.
pub(super) async fn copy_holdings(
    tx: &mut WriteTx,
    market_id: i64,
    holdings: &[HoldingRow],
) -> Result<()> {
    let pieces = holdings
        .chunks(ROWS_PER_SEND)
        .map(|h| holdings_text(market_id, h))
        .collect::<Result<Vec<_>>>()?;
    let copied = tx
        .copy_in(COPY_HOLDINGS, pieces.into_iter())
        .await
        .map_err(db("copying holdings"))?;
    if copied != holdings.len() as u64 {
        return Err(Error::Corrupt(format!(
            "COPY stored {copied} of {} holdings",
            holdings.len()
        )));
    }
    Ok(())
}

/// `holdings` as rows of `COPY`'s text format (the columns of [`COPY_HOLDINGS`]), the cost as
/// the normalised pair (`0 <= rem < 10⁹`) the holdings' upserts keep.
pub(super) fn holdings_text(market_id: i64, holdings: &[HoldingRow]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(holdings.len() * 130);
    let mut ints = itoa::Buffer::new();
    for ((subject, trader), (balance, cost)) in holdings {
        let cost = wei(*cost)?;
        push_int(&mut out, &mut ints, market_id, b'\t');
        push_hex(&mut out, subject.as_slice());
        push_hex(&mut out, trader.as_slice());
        push_int(&mut out, &mut ints, *balance, b'\t');
        push_int(&mut out, &mut ints, cost.gwei, b'\t');
        push_int(&mut out, &mut ints, cost.rem, b'\n');
    }
    Ok(out)
}

/// A decimal integer and the byte after it.
fn push_int(out: &mut Vec<u8>, ints: &mut itoa::Buffer, v: i64, end: u8) {
    out.extend_from_slice(ints.format(v).as_bytes());
    out.push(end);
}

/// 0x and lower-case hex (as the store writes addresses and hashes everywhere), then a tab.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(b"0x");
    let start = out.len();
    out.resize(start + 2 * bytes.len(), 0);
    alloy::hex::encode_to_slice(bytes, &mut out[start..]).expect("sized for the bytes");
    out.push(b'\t');
}

/// `trades` as rows of `COPY`'s text format: the columns of [`COPY_TRADES`] separated by tabs,
/// one line a row. Every value is a decimal integer or 0x hex, so nothing needs escaping.
pub(super) fn trades_text(market_id: i64, trades: &[TradeRow], basis: &[Wei]) -> Vec<u8> {
    let mut out = Vec::with_capacity(trades.len() * 360);
    let mut ints = itoa::Buffer::new();
    let mut int = |out: &mut Vec<u8>, v: i64, end: u8| push_int(out, &mut ints, v, end);
    let hex = push_hex;
    for (t, b) in trades.iter().zip(basis) {
        int(&mut out, t.chain_id, b'\t');
        hex(&mut out, t.tx_hash.as_slice());
        int(&mut out, t.log_index, b'\t');
        int(&mut out, t.block_number, b'\t');
        hex(&mut out, t.block_hash.as_slice());
        int(&mut out, t.block_time, b'\t');
        hex(&mut out, t.trader.as_slice());
        hex(&mut out, t.subject.as_slice());
        int(&mut out, i64::from(t.is_buy), b'\t');
        int(&mut out, t.share_amount, b'\t');
        for w in [t.eth, t.protocol_fee, t.subject_fee] {
            int(&mut out, w.gwei, b'\t');
            int(&mut out, w.rem, b'\t');
        }
        int(&mut out, t.supply, b'\t');
        int(&mut out, market_id, b'\t');
        int(&mut out, b.gwei, b'\t');
        int(&mut out, b.rem, b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use alloy::primitives::B256;

    use super::*;

    #[test]
    fn holdings_rows_carry_the_normalised_cost() {
        let rows = [
            (
                (Address::repeat_byte(0x22), Address::repeat_byte(0x11)),
                (3, 2_000_000_005_i128),
            ),
            (
                (Address::repeat_byte(0x22), Address::repeat_byte(0x12)),
                (0, -1_i128),
            ),
        ];
        let text = String::from_utf8(holdings_text(4, &rows).unwrap()).unwrap();
        let (s, t1, t2) = ("22".repeat(20), "11".repeat(20), "12".repeat(20));
        assert_eq!(
            text,
            format!("4\t0x{s}\t0x{t1}\t3\t2\t5\n4\t0x{s}\t0x{t2}\t0\t-1\t999999999\n")
        );
        let columns = COPY_HOLDINGS.split(',').count();
        assert!(text.lines().all(|l| l.split('\t').count() == columns));
    }

    #[test]
    fn rows_are_tab_separated_in_the_copy_columns_order() {
        let t = TradeRow {
            chain_id: 31337,
            tx_hash: B256::repeat_byte(0xab),
            log_index: 2,
            block_number: 7,
            block_hash: B256::repeat_byte(0x01),
            block_time: 1_700_000_000,
            trader: Address::repeat_byte(0x11),
            subject: Address::repeat_byte(0x22),
            is_buy: false,
            share_amount: 3,
            eth: Wei { gwei: 5, rem: 6 },
            protocol_fee: Wei { gwei: 0, rem: 7 },
            subject_fee: Wei { gwei: -1, rem: 8 },
            supply: 9,
        };
        let text = trades_text(4, &[t.clone(), t], &[Wei { gwei: 10, rem: 11 }; 2]);
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(text.ends_with('\n'));
        let fields: Vec<&str> = lines[0].split('\t').collect();
        let columns = COPY_TRADES
            .split_once('(')
            .and_then(|(_, c)| c.split_once(')'))
            .map(|(c, _)| c.split(',').count())
            .unwrap();
        assert_eq!(fields.len(), columns);
        assert_eq!(fields[0], "31337");
        assert_eq!(fields[1], format!("0x{}", "ab".repeat(32)));
        assert_eq!(&fields[2..4], ["2", "7"]);
        assert_eq!(fields[6], format!("0x{}", "11".repeat(20)));
        assert_eq!(fields[7], format!("0x{}", "22".repeat(20)));
        assert_eq!(
            &fields[8..],
            [
                "0", "3", "5", "6", "0", "7", "-1", "8", "9", "4", "10", "11"
            ]
        );
    }
}
