//! The proleptic Gregorian calendar in days since 1970-01-01 (UTC days, as the store keeps
//! them), counted in 400-year eras of 146,097 days from 0000-03-01 (Howard Hinnant's
//! `days_from_civil` and `civil_from_days`): one home for the API's dates and the SQL runner's.

/// Seconds in a UTC day: a block time `t` falls on day `t.div_euclid(DAY)`.
pub const DAY: i64 = 86_400;

/// `YYYY-MM-DD` of a count of days since 1970-01-01.
pub fn date_of_day(days: i64) -> String {
    let (year, month, day) = civil(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// (year, month 1–12, day 1–31) of a count of days since 1970-01-01.
pub fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since 1970-01-01 of a calendar day, or `None` when there is no such day (month 13,
/// 2023-02-30).
pub fn day_of(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (civil(days) == (year, month, day)).then_some(days)
}

/// Days in `month` (1–12) of `year`.
pub fn month_days(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_round_trip() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(date_of_day(-1), "1969-12-31");
        assert_eq!(date_of_day(19_588), "2023-08-19");
        assert_eq!(date_of_day(10_957), "2000-01-01");
        assert_eq!(day_of(2023, 8, 19), Some(19_588));
        assert_eq!(day_of(2000, 2, 29), Some(11_016));
        assert_eq!(day_of(1900, 2, 29), None);
        assert_eq!(day_of(2023, 2, 30), None);
        assert_eq!(day_of(2023, 13, 1), None);
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil(days);
            assert_eq!(day_of(y, m, d), Some(days));
            assert!(d <= month_days(y, m));
        }
    }
}
