//! HTTP input: the query and path extractors (bad input → a 400 with a JSON body), the
//! query-parameter structs, cursors, addresses, dates and page limits.

use std::str::FromStr;

use crate::error::*;
use alloy::primitives::Address;
use axum::{
    extract::{FromRequestParts, Path, rejection::QueryRejection},
    http::request::Parts,
};
use keymarket_store::calendar;
use serde::{Deserialize, de::DeserializeOwned};
use utoipa::IntoParams;

/// Largest page size of any list.
pub const MAX_LIMIT: u32 = 100;

/// Query-string extractor whose rejections are JSON 400s (unknown parameters included).
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Self(q.0)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::BadRequest(e.body_text()))
            }
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// Path extractor whose rejections (e.g. invalid percent-encoding) are JSON 400s.
pub struct P<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Self(p.0)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// A query parameter naming one of a fixed set of choices: an enum deserialized from its names,
/// any other value a JSON 400 (through [`Q`]) that names the parameter and lists the choices.
macro_rules! choice {
    ($(#[$doc:meta])* $name:ident, $param:literal, { $($text:literal => $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        #[serde(try_from = "String")]
        pub(crate) enum $name {
            $(#[doc = $text] $variant),+
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(s: String) -> Result<Self, String> {
                match s.as_str() {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", $param, " {:?}: use {}"),
                        other,
                        one_of(&[$($text),+])
                    )),
                }
            }
        }
    };
}

/// "a, b or c".
fn one_of(names: &[&str]) -> String {
    let (last, rest) = names.split_last().expect("at least one choice");
    if rest.is_empty() {
        last.to_string()
    } else {
        format!("{} or {last}", rest.join(", "))
    }
}

choice!(
    /// `/v1/trades`' `side`.
    TradeSide, "side", { "buy" => Buy, "sell" => Sell }
);
choice!(
    /// `/v1/traders/netflow`'s `side` (default: buyers).
    FlowSide, "side", { "buyers" => Buyers, "sellers" => Sellers }
);
choice!(
    /// `/v1/subjects/top`'s order (default: volume).
    SubjectBy, "`by` value", {
        "volume" => Volume, "fees" => Fees, "holders" => Holders, "supply" => Supply,
        "price" => Price, "trades" => Trades,
    }
);
choice!(
    /// `/v1/traders/top`'s order (default: volume).
    TraderBy, "`by` value", {
        "volume" => Volume, "fees" => Fees, "trades" => Trades, "pnl" => Pnl,
    }
);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MarketQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
}

/// `from`/`to` dates (inclusive, UTC) → a day range, checked.
pub(crate) fn day_range(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), ApiError> {
    let keymarket_store::DayRange { from, to } = keymarket_store::DayRange::between(
        from.map(parse_date).transpose()?,
        to.map(parse_date).transpose()?,
    );
    if from > to {
        return Err(ApiError::BadRequest(
            "inverted range: `from` is after `to`".into(),
        ));
    }
    Ok((from, to))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DailyQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// First UTC day, YYYY-MM-DD (inclusive).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) from: Option<String>,
    /// Last UTC day, YYYY-MM-DD (inclusive).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) to: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PriceIndexQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// How many of the largest subjects by all-time volume the index follows, 1..=50 (default
    /// 10).
    #[param(minimum = 1, maximum = 50)]
    pub(crate) top: Option<u32>,
    /// First UTC day, YYYY-MM-DD (inclusive).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) from: Option<String>,
    /// Last UTC day, YYYY-MM-DD (inclusive).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) to: Option<String>,
}

/// The subjects a price index follows by default.
pub(crate) const DEFAULT_INDEX_TOP: u32 = 10;

impl PriceIndexQuery {
    /// The number of subjects, checked against the store's cap.
    pub(crate) fn top(&self) -> Result<usize, ApiError> {
        let cap = keymarket_store::price_index::MAX_TOP;
        match self.top.unwrap_or(DEFAULT_INDEX_TOP) {
            0 => Err(ApiError::BadRequest("top must be at least 1".into())),
            n if n as usize > cap => Err(ApiError::BadRequest(format!(
                "top {n} is over the cap of {cap} subjects"
            ))),
            n => Ok(n as usize),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct OverviewQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// First UTC day, YYYY-MM-DD (inclusive).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) from: Option<String>,
    /// Last UTC day, YYYY-MM-DD (inclusive).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) to: Option<String>,
    /// Instead of `from`/`to`: the last N days of data, `Nd` with N in 1..=366 (e.g. `7d`,
    /// `30d`), ending at the last UTC day with trades.
    #[param(pattern = r"^[0-9]{1,3}d$")]
    pub(crate) window: Option<String>,
}

/// Longest `window` of the overview, in days.
pub(crate) const MAX_WINDOW_DAYS: i64 = 366;

/// A `window` value (`7d`, `30d`, …) → its number of days, checked.
pub(crate) fn parse_window(w: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "malformed window {w:?}: expected Nd with N in 1..={MAX_WINDOW_DAYS}, e.g. 7d or 30d"
        ))
    };
    let n = w.strip_suffix('d').ok_or_else(bad)?;
    if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match n.parse::<i64>().map_err(|_| bad())? {
        days @ 1..=MAX_WINDOW_DAYS => Ok(days),
        _ => Err(bad()),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RetentionQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// The first cohort: the week (Monday to Sunday, UTC) holding this day, YYYY-MM-DD;
    /// default: the week of the first trade.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) from: Option<String>,
    /// The last week: the one holding this day, YYYY-MM-DD; default: the week of the last trade.
    /// Activity is counted up to the end of that week.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) to: Option<String>,
    /// At most this many weeks, the latest ones, 1..=520 (default: every week of the range).
    #[param(minimum = 1, maximum = 520)]
    pub(crate) weeks: Option<u32>,
}

/// Most weeks of retention cohorts in one answer (ten years).
pub(crate) const MAX_WEEKS: u32 = 520;

impl RetentionQuery {
    /// (first day, last day, weeks), checked.
    pub(crate) fn range(&self) -> Result<(i64, i64, Option<i64>), ApiError> {
        let (from, to) = day_range(self.from.as_deref(), self.to.as_deref())?;
        let weeks = match self.weeks {
            Some(0) => return Err(ApiError::BadRequest("weeks must be at least 1".into())),
            Some(n) if n > MAX_WEEKS => {
                return Err(ApiError::BadRequest(format!(
                    "weeks {n} is over the cap of {MAX_WEEKS}"
                )));
            }
            n => n.map(i64::from),
        };
        Ok((from, to, weeks))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct NetFlowQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// First UTC day, YYYY-MM-DD (inclusive); default: 29 days before `to` (30 days).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) from: Option<String>,
    /// Last UTC day, YYYY-MM-DD (inclusive); default: the last day with trades.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) to: Option<String>,
    /// `buyers` (default): the largest net buyers; `sellers`: the largest net sellers.
    #[param(value_type = Option<String>, pattern = "^(buyers|sellers)$")]
    pub(crate) side: Option<FlowSide>,
    /// Rows, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SeriesQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// First UTC day, YYYY-MM-DD (inclusive); default: the first day with trades.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) from: Option<String>,
    /// Last UTC day, YYYY-MM-DD (inclusive); default: the last day with trades.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) to: Option<String>,
    /// Days with trades per page, 1..=366 (default 366).
    #[param(minimum = 1, maximum = 366)]
    pub(crate) limit: Option<u32>,
    /// The previous page's nextCursor (a YYYY-MM-DD date: the next page starts there).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub(crate) cursor: Option<String>,
}

/// Most days in one page of a daily series (a year).
pub(crate) const MAX_DAYS: u32 = 366;

impl SeriesQuery {
    /// (first day, last day, page size), checked; the cursor moves the first day.
    pub(crate) fn page(&self) -> Result<(i64, i64, i64), ApiError> {
        let (from, to) = day_range(self.from.as_deref(), self.to.as_deref())?;
        let limit = match self.limit.unwrap_or(MAX_DAYS) {
            0 => return Err(ApiError::BadRequest("limit must be at least 1".into())),
            n if n > MAX_DAYS => {
                return Err(ApiError::BadRequest(format!(
                    "limit {n} is over the cap of {MAX_DAYS} days"
                )));
            }
            n => i64::from(n),
        };
        let from = match &self.cursor {
            Some(c) => {
                let at = parse_date(c)
                    .map_err(|_| ApiError::BadRequest(format!("malformed cursor {c:?}")))?;
                if at < from || at > to.saturating_add(1) {
                    return Err(ApiError::BadRequest(format!(
                        "cursor {c:?} is outside the requested range"
                    )));
                }
                at
            }
            None => from,
        };
        Ok((from, to, limit))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TopSubjectsQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// Order: volume (default), fees, trades, holders, supply, price (of the next key).
    #[param(value_type = Option<String>, pattern = "^(volume|fees|trades|holders|supply|price)$")]
    pub(crate) by: Option<SubjectBy>,
    /// Rows, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TopTradersQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// Order: volume (default), fees, trades, pnl (realised).
    #[param(value_type = Option<String>, pattern = "^(volume|fees|trades|pnl)$")]
    pub(crate) by: Option<TraderBy>,
    /// Rows, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LimitQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// Rows, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

pub(crate) fn limit(l: Option<u32>) -> Result<i64, ApiError> {
    match l.unwrap_or(20) {
        0 => Err(ApiError::BadRequest("limit must be at least 1".into())),
        n if n > MAX_LIMIT => Err(ApiError::BadRequest(format!(
            "limit {n} is over the cap of {MAX_LIMIT}"
        ))),
        n => Ok(i64::from(n)),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub(crate) struct TradesQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// Only this subject's trades (an address: mixed case only with a valid EIP-55 checksum).
    #[param(pattern = r"^0x[0-9a-fA-F]{40}$")]
    pub(crate) subject: Option<String>,
    /// Only this trader's trades (an address: mixed case only with a valid EIP-55 checksum).
    #[param(pattern = r"^0x[0-9a-fA-F]{40}$")]
    pub(crate) trader: Option<String>,
    /// `buy` or `sell`.
    #[param(value_type = Option<String>, pattern = "^(buy|sell)$")]
    pub(crate) side: Option<TradeSide>,
    /// From this block (inclusive).
    #[param(minimum = 0)]
    pub(crate) from_block: Option<i64>,
    /// To this block (inclusive).
    #[param(minimum = 0)]
    pub(crate) to_block: Option<i64>,
    /// From this time (inclusive): Unix seconds, or a UTC day `YYYY-MM-DD` (from its start).
    #[param(value_type = Option<String>, pattern = r"^([0-9]+|[0-9]{4}-[0-9]{2}-[0-9]{2})$")]
    pub(crate) from_time: Option<String>,
    /// To this time (inclusive): Unix seconds, or a UTC day `YYYY-MM-DD` (its whole day).
    #[param(value_type = Option<String>, pattern = r"^([0-9]+|[0-9]{4}-[0-9]{2}-[0-9]{2})$")]
    pub(crate) to_time: Option<String>,
    /// Rows, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
    /// The previous page's nextCursor.
    pub(crate) cursor: Option<String>,
}

/// A keyset cursor: the sort key of the last row of the previous page, as `a_b` (opaque to
/// clients).
pub(crate) fn parse_cursor<A: FromStr, B: FromStr>(cursor: &str) -> Result<(A, B), ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "malformed cursor {cursor:?}: pass a nextCursor value"
        ))
    };
    let (a, b) = cursor.split_once('_').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    pub(crate) market: Option<i64>,
    /// Rows, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
    /// The previous page's nextCursor.
    pub(crate) cursor: Option<String>,
}

/// A 0x-prefixed 20-byte hex address. As wallets check addresses (EIP-55):
/// all-lowercase or all-uppercase hex is taken as it is, mixed case only with a valid checksum —
/// a wrong one (a mistyped character, most likely) is a 400 naming the checksummed form.
pub(crate) fn parse_address(s: &str) -> Result<Address, ApiError> {
    let hex = s.strip_prefix("0x").unwrap_or("");
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(format!(
            "malformed address {s:?}: expected 0x and 40 hex digits"
        )));
    }
    let mixed =
        hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && Address::parse_checksummed(s, None).is_err() {
        let address: Address = s
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("malformed address {s:?}")))?;
        return Err(ApiError::BadRequest(format!(
            "address {s} has a wrong EIP-55 checksum (a mistyped character?); the checksummed form of these digits is {}, but check the address itself before using it",
            address.to_checksum(None)
        )));
    }
    s.parse()
        .map_err(|_| ApiError::BadRequest(format!("malformed address {s:?}")))
}

/// A path's `{address}`, checked as [`parse_address`] checks it (a JSON 400 otherwise).
pub(crate) struct AddressPath(pub(crate) Address);

impl<S: Send + Sync> FromRequestParts<S> for AddressPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let P(address) = P::<String>::from_request_parts(parts, state).await?;
        parse_address(&address).map(Self)
    }
}

/// An address as the API writes it: lowercase 0x hex, as stored.
pub(crate) fn lower(address: Address) -> String {
    keymarket_store::hex(address.as_slice())
}

/// `YYYY-MM-DD` (UTC) → days since 1970-01-01.
pub(crate) fn parse_date(s: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::BadRequest(format!("malformed date {s:?}: expected YYYY-MM-DD"));
    let mut parts = s.splitn(3, '-');
    let mut number =
        || -> Result<i64, ApiError> { parts.next().ok_or_else(bad)?.parse().map_err(|_| bad()) };
    let (y, m, d) = (number()?, number()?, number()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || s.len() != 10 {
        return Err(bad());
    }
    let month_days = calendar::month_days(y, m);
    if d > month_days {
        return Err(ApiError::BadRequest(format!(
            "no such day {s}: {y}-{m:02} has {month_days} days"
        )));
    }
    match calendar::day_of(y, m, d) {
        Some(days) if format_date(days) == s => Ok(days),
        _ => Err(bad()),
    }
}

/// A time filter's value as Unix seconds: seconds as they are, or a UTC day `YYYY-MM-DD` — its
/// first second, or with `end_of_day` its last. `name` is the parameter, for the message.
pub(crate) fn parse_time(s: &str, name: &str, end_of_day: bool) -> Result<i64, ApiError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| {
            ApiError::BadRequest(format!("{name} {s:?} is out of range: Unix seconds"))
        });
    }
    if s.len() == 10 && s.as_bytes()[4] == b'-' {
        let day = parse_date(s)?;
        return Ok(if end_of_day {
            (day + 1) * 86_400 - 1
        } else {
            day * 86_400
        });
    }
    Err(ApiError::BadRequest(format!(
        "malformed {name} {s:?}: Unix seconds (e.g. 1700000000) or a UTC day YYYY-MM-DD"
    )))
}

/// Days since 1970-01-01 → `YYYY-MM-DD`.
pub(crate) fn format_date(days: i64) -> String {
    calendar::date_of_day(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2023-08-10").unwrap(), 19_579);
        assert_eq!(format_date(19_579), "2023-08-10");
        assert!(parse_date("2023-02-30").is_err());
        assert!(parse_date("2024-02-29").is_ok());
        assert_eq!(parse_time("1700000000", "t", false).unwrap(), 1_700_000_000);
        assert_eq!(parse_time("1970-01-02", "t", false).unwrap(), 86_400);
        assert_eq!(parse_time("1970-01-02", "t", true).unwrap(), 2 * 86_400 - 1);
        assert!(parse_time("-5", "t", false).is_err());
        assert!(parse_time("", "t", false).is_err());
        assert!(parse_date("2023-13-01").is_err());
        assert!(parse_date("yesterday").is_err());
    }

    #[test]
    fn windows_are_checked() {
        assert_eq!(parse_window("7d").unwrap(), 7);
        assert_eq!(parse_window("30d").unwrap(), 30);
        assert_eq!(parse_window("366d").unwrap(), 366);
        for bad in [
            "0d", "367d", "7", "d", "-7d", "+7d", "7 d", "1000d", "7w", "07dd",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_checked() {
        // EIP-55's own example, checksummed, and variations of it.
        let valid = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let stored = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
        let wrong = |input: &str, corrected: &str| {
            format!(
                "address {input} has a wrong EIP-55 checksum (a mistyped character?); \
                 the checksummed form of these digits is {corrected}, but check the address \
                 itself before using it"
            )
        };
        for (input, expected) in [
            // A valid checksum.
            (valid, Ok(stored.to_string())),
            (
                "0xCF205808Ed36593aa40a44F10c7f7C2F67d4A4d4",
                Ok("0xcf205808ed36593aa40a44f10c7f7c2f67d4a4d4".into()),
            ),
            // All lowercase, all uppercase: no checksum to check.
            (stored, Ok(stored.to_string())),
            (
                "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED",
                Ok(stored.to_string()),
            ),
            // Digits only: neither case.
            (
                "0x0000000000000000000000000000000000000001",
                Ok("0x0000000000000000000000000000000000000001".into()),
            ),
            // One letter's case flipped (the first A → a).
            (
                "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                Err(wrong("0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed", valid)),
            ),
            // One digit changed (…6053… → …6054…): another address, whose checksum this is not
            // (its checksummed form, as ethers.getAddress gives it too).
            (
                "0x5aAeb6054F3E94C9b9A09f33669435E7Ef1BeAed",
                Err(wrong(
                    "0x5aAeb6054F3E94C9b9A09f33669435E7Ef1BeAed",
                    "0x5aaEb6054F3e94c9b9a09f33669435e7Ef1BEAED",
                )),
            ),
        ] {
            let got = parse_address(input).map(lower).map_err(|e| e.to_string());
            assert_eq!(got, expected, "{input}");
        }
        for malformed in [
            "0x123",
            "CF205808Ed36593aa40a44F10c7f7C2F67d4A4d4",
            "0XCF205808ED36593AA40A44F10C7F7C2F67D4A4D4",
            "0xCF205808Ed36593aa40a44F10c7f7C2F67d4A4dg",
            "0xCF205808Ed36593aa40a44F10c7f7C2F67d4A4d4a",
        ] {
            let e = parse_address(malformed).unwrap_err().to_string();
            assert!(e.contains("malformed address"), "{malformed}: {e}");
        }
    }
}
