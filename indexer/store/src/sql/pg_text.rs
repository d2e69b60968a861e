//! PostgreSQL's binary values that have no exact Rust type here, as the text PostgreSQL itself
//! would print: `NUMERIC`, `DATE`, `TIMESTAMP[TZ]`.

use crate::calendar::date_of_day;

/// PostgreSQL's binary `NUMERIC` as exact decimal text: digit count, weight (of the first
/// base-10000 digit), sign, display scale, then the base-10000 digits.
pub(super) fn numeric_text(b: &[u8]) -> Option<String> {
    let word = |i: usize| {
        b.get(2 * i..2 * i + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i64;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
    let digit = |i: i64| {
        if i >= 0 && (i as usize) < digits.len() {
            digits[i as usize]
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        s.push_str(&digit(0).to_string());
        for i in 1..=weight {
            s.push_str(&format!("{:04}", digit(i)));
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut i = weight + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        fraction.truncate(dscale);
        s.push('.');
        s.push_str(&fraction);
    }
    if s == "-0" || (s.starts_with("-0.") && s[3..].bytes().all(|c| c == b'0')) {
        s.remove(0);
    }
    Some(s)
}

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
pub(super) const PG_EPOCH_DAYS: i64 = 10_957;

/// PostgreSQL's binary `DATE` (days since 2000-01-01, `i32`) or `TIMESTAMP`/`TIMESTAMPTZ`
/// (microseconds since 2000-01-01 00:00 UTC, `i64`) as text: `YYYY-MM-DD`, or
/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (a `TIMESTAMPTZ` in UTC, with `+00`).
pub(super) fn pg_time_text(ty: &str, b: &[u8]) -> Option<String> {
    if ty == "DATE" {
        return Some(match i32::from_be_bytes(b.try_into().ok()?) {
            i32::MAX => "infinity".into(),
            i32::MIN => "-infinity".into(),
            days => date_of_day(days as i64 + PG_EPOCH_DAYS),
        });
    }
    let micros = match i64::from_be_bytes(b.try_into().ok()?) {
        i64::MAX => return Some("infinity".into()),
        i64::MIN => return Some("-infinity".into()),
        m => m,
    };
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let of_day = secs.rem_euclid(86_400);
    let mut s = format!(
        "{} {:02}:{:02}:{:02}",
        date_of_day(secs.div_euclid(86_400) + PG_EPOCH_DAYS),
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    if frac != 0 {
        s.push_str(format!(".{frac:06}").trim_end_matches('0'));
    }
    if ty == "TIMESTAMPTZ" {
        s.push_str("+00");
    }
    Some(s)
}
