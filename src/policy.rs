//! The policy's arithmetic: Asia/Shanghai local dates, calendar months with leap days
//! clamped, exact money in fen and half-even shares. The policy's *numbers* (period, rates,
//! caps, awards, the 75 % list) are data: [`crate::edition`].
//!
//! Money is integer fen (1 yuan = 100 fen) everywhere inside the service; it becomes
//! `rust_decimal::Decimal` yuan with 2 places only at the edges (reports, ClickHouse views).
//! Dates are Asia/Shanghai local dates: China has kept UTC+8 without DST since 1991, so a
//! fixed +08:00 offset is exact for the whole policy period.

use chrono::{DateTime, Datelike, FixedOffset, Months, NaiveDate};
use rust_decimal::Decimal;

/// Asia/Shanghai's offset from UTC, in seconds.
pub const SHANGHAI_OFFSET_SECONDS: i32 = 8 * 3600;

/// The Asia/Shanghai offset.
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(SHANGHAI_OFFSET_SECONDS).expect("+08:00 is a valid offset")
}

/// The Asia/Shanghai local date of an instant, whatever offset it was written with.
pub fn local_date(instant: &DateTime<FixedOffset>) -> NaiveDate {
    instant.with_timezone(&shanghai()).date_naive()
}

/// `date` plus whole months, clamping to the month's last day (2024-02-29 + 12 months is
/// 2025-02-28). Saturates at the far future, which can only make a window longer.
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

/// The last day of `date`'s month.
pub fn last_day_of_month(date: NaiveDate) -> NaiveDate {
    let first = date.with_day(1).expect("day 1 exists");
    add_months(first, 1).pred_opt().unwrap_or(first)
}

/// `round_half_even(amount × percent %, 0.01)` in fen: the district's share of a granted
/// total (Article 20), a locker's share of its price.
pub fn percent_half_even_fen(amount_fen: i64, percent: i64) -> i64 {
    let scaled = amount_fen * percent;
    let quotient = scaled.div_euclid(100);
    let remainder = scaled.rem_euclid(100);
    let rounds_up = remainder > 50 || (remainder == 50 && quotient % 2 != 0);
    quotient + i64::from(rounds_up)
}

/// Parses yuan written as plain digits with at most two decimals (`"0.30"`, `"2000"`) into
/// fen. `None` for anything else (signs, exponents, spaces, a third decimal, overflow).
pub fn parse_yuan_fen(text: &str) -> Option<i64> {
    let (whole, cents) = match text.split_once('.') {
        Some((whole, fraction)) => {
            if fraction.is_empty() || fraction.len() > 2 {
                return None;
            }
            if !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let cents: i64 = fraction.parse().ok()?;
            (
                whole,
                if fraction.len() == 1 {
                    cents * 10
                } else {
                    cents
                },
            )
        }
        None => (text, 0),
    };
    if whole.is_empty() || whole.len() > 15 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)
}

/// Fen as exact yuan with 2 decimal places.
pub fn fen_to_yuan(fen: i64) -> Decimal {
    Decimal::new(fen, 2)
}

#[cfg(test)]
mod tests {
    //! Table tests with the policy's own numbers.
    use super::*;

    #[test]
    fn utc_timestamps_take_the_shanghai_local_date() {
        // 2023-12-31T16:30Z is 2024-01-01 00:30 local: SPEC §2's own example.
        let cases = [
            ("2023-12-31T16:30:00Z", "2024-01-01"),
            ("2023-12-31T15:59:59Z", "2023-12-31"),
            ("2022-06-30T16:00:00Z", "2022-07-01"),
            ("2025-12-31T15:59:59Z", "2025-12-31"),
            ("2025-12-31T16:00:00Z", "2026-01-01"),
            ("2024-03-01T00:00:00+08:00", "2024-03-01"),
            ("2024-02-29T23:00:00-05:00", "2024-03-01"),
        ];
        for (instant, expected) in cases {
            let parsed = DateTime::parse_from_rfc3339(instant).unwrap();
            assert_eq!(local_date(&parsed).to_string(), expected, "{instant}");
        }
    }

    #[test]
    fn add_months_clamps_leap_days() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(add_months(d("2024-02-29"), 12), d("2025-02-28"));
        assert_eq!(add_months(d("2022-07-15"), 36), d("2025-07-15"));
        assert_eq!(last_day_of_month(d("2024-02-10")), d("2024-02-29"));
        assert_eq!(last_day_of_month(d("2022-09-01")), d("2022-09-30"));
        assert_eq!(last_day_of_month(d("2025-12-31")), d("2025-12-31"));
    }

    #[test]
    fn district_share_rounds_half_even_to_the_fen() {
        // 75 % of 0.02 yuan = 1.5 fen -> 2 fen (2 is even); of 0.06 = 4.5 -> 4.
        assert_eq!(percent_half_even_fen(2, 75), 2);
        assert_eq!(percent_half_even_fen(6, 75), 4);
        // 50 % of 0.01 = 0.5 fen -> 0; of 0.03 = 1.5 -> 2.
        assert_eq!(percent_half_even_fen(1, 50), 0);
        assert_eq!(percent_half_even_fen(3, 50), 2);
        // The import cap, 200,000.00 yuan, in a 75 % district.
        assert_eq!(percent_half_even_fen(20_000_000, 75), 15_000_000);
        // 0.3 yuan x 7 = 2.10 yuan at 75 % = 157.5 fen -> 158.
        assert_eq!(percent_half_even_fen(210, 75), 158);
        // Lockers: 30 % of 1,666.65 = 499.995 -> 500.00; of 1,666.60 = 499.98.
        assert_eq!(percent_half_even_fen(166_665, 30), 50_000);
        assert_eq!(percent_half_even_fen(166_660, 30), 49_998);
        assert_eq!(percent_half_even_fen(1, 30), 0);
    }

    #[test]
    fn yuan_strings_become_fen_exactly() {
        let cases = [
            ("0.30", Some(30)),
            ("1", Some(100)),
            ("1.5", Some(150)),
            ("200000.00", Some(20_000_000)),
            ("0.01", Some(1)),
            ("0", Some(0)),
            ("1.234", None),
            ("-1.00", None),
            ("+1", None),
            ("1e3", None),
            (" 1", None),
            ("1.", None),
            (".5", None),
            ("", None),
            ("1,000", None),
            ("9999999999999999", None),
        ];
        for (text, fen) in cases {
            assert_eq!(parse_yuan_fen(text), fen, "{text:?}");
        }
    }
}
