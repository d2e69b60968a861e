//! The size bounds of a SQL answer: each value's size as it will be written out (JSON, escapes
//! included), one value's cap and the whole answer's budget, charged row by row while the rows
//! stream in — so the memory a query holds is bounded by the budget, whatever its result.

use super::{Cell, SqlError, SqlLimits};

/// What an answer may still take.
pub(crate) struct Budget {
    left: usize,
    max_bytes: usize,
    max_value: usize,
}

impl Budget {
    pub(crate) fn new(limits: &SqlLimits) -> Self {
        Self {
            left: limits.max_bytes,
            max_bytes: limits.max_bytes,
            max_value: limits.max_value_bytes,
        }
    }

    /// Charges row number `n` (from 1); an error naming the limit once a value or the answer
    /// is over it.
    pub(crate) fn charge(&mut self, row: &[Cell], n: usize) -> Result<(), SqlError> {
        // `[`, `]` and the commas.
        let mut size = 2 + row.len();
        for cell in row {
            let len = json_len(cell);
            if len > self.max_value {
                return Err(SqlError::TooLarge(format!(
                    "a value of row {n} takes {} written out, over the limit of {} per value; select a shorter part of it (substr, length)",
                    bytes(len),
                    bytes(self.max_value)
                )));
            }
            size += len;
        }
        match self.left.checked_sub(size) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(SqlError::TooLarge(format!(
                "the answer passes the limit of {} at row {n}; add a LIMIT, or select fewer or shorter columns",
                bytes(self.max_bytes)
            ))),
        }
    }
}

/// A cell's size in JSON: strings with their quotes and escapes, blobs as `"0x…"`.
pub(crate) fn json_len(cell: &Cell) -> usize {
    match cell {
        Cell::Null => 4,
        Cell::Bool(_) => 5,
        Cell::Int(_) => 20,
        Cell::Float(_) => 24,
        Cell::Decimal(t) | Cell::Text(t) => {
            2 + t.len()
                + t.bytes()
                    .map(|b| match b {
                        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
                        0..0x20 => 5,
                        _ => 0,
                    })
                    .sum::<usize>()
        }
        Cell::Blob(b) => 4 + 2 * b.len(),
    }
}

/// A size in words: `16 MiB`, `1 MiB`, `512 KiB`, `100 bytes`.
pub(crate) fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// Sets a SQLite connection's `SQLITE_LIMIT_LENGTH` (the largest string or blob it builds) to
/// `max`: a query building a bigger one fails with `SQLITE_TOOBIG` before it takes the memory.
pub(crate) async fn limit_sqlite_length(
    conn: &mut sqlx::SqliteConnection,
    max: i32,
) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    // SAFETY: the handle is a live connection, locked for this call; sqlite3_limit only reads
    // and sets an integer of it.
    unsafe {
        libsqlite3_sys::sqlite3_limit(
            handle.as_raw_handle().as_ptr(),
            libsqlite3_sys::SQLITE_LIMIT_LENGTH,
            max,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_counts_quotes_and_escapes() {
        assert_eq!(json_len(&Cell::Text("ab".into())), 4);
        assert_eq!(
            serde_json::to_string(&Cell::Text("a\"\n\u{1}".into()))
                .unwrap()
                .len(),
            json_len(&Cell::Text("a\"\n\u{1}".into()))
        );
        assert_eq!(json_len(&Cell::Blob(vec![0; 3])), "\"0x000000\"".len());
    }

    #[test]
    fn the_budget_refuses_a_big_value_and_a_big_answer() {
        let limits = SqlLimits {
            max_bytes: 100,
            max_value_bytes: 20,
            ..SqlLimits::default()
        };
        let mut b = Budget::new(&limits);
        let e = b.charge(&[Cell::Text("x".repeat(30))], 1).unwrap_err();
        assert!(e.to_string().contains("20 bytes per value"), "{e}");
        let row = [Cell::Text("x".repeat(15))];
        for n in 1..=5 {
            b.charge(&row, n).unwrap();
        }
        let e = b.charge(&row, 6).unwrap_err();
        assert!(e.to_string().contains("100 bytes at row 6"), "{e}");
    }

    #[test]
    fn sizes_read_as_words() {
        assert_eq!(bytes(16 << 20), "16 MiB");
        assert_eq!(bytes(512 << 10), "512 KiB");
        assert_eq!(bytes(1_500_000), "1.4 MiB");
        assert_eq!(bytes(100), "100 bytes");
    }
}
