//! The numbers of policy edition `hangzhou-2022` (SPEC §2), in one place.
//!
//! Money is integer fen (1 yuan = 100 fen) everywhere inside the service; it becomes
//! `rust_decimal::Decimal` yuan with 2 places only at the edges (reports, ClickHouse views).
//! Dates are Asia/Shanghai local dates: China has kept UTC+8 without DST since 1991, so a
//! fixed +08:00 offset is exact for the whole policy period.

use crate::domain::Program;
use chrono::{DateTime, FixedOffset, Months, NaiveDate};
use rust_decimal::Decimal;

/// The policy edition these rules implement.
pub const EDITION: &str = "hangzhou-2022";

/// Asia/Shanghai's offset from UTC, in seconds.
pub const SHANGHAI_OFFSET_SECONDS: i32 = 8 * 3600;

/// First local date of the policy period (inclusive).
pub const PERIOD_FIRST_DAY: NaiveDate = NaiveDate::from_ymd_opt(2022, 7, 1).unwrap();
/// Last local date of the policy period (inclusive).
pub const PERIOD_LAST_DAY: NaiveDate = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();

/// Months a major penalty keeps a firm ineligible (Article 18: "one year").
pub const PENALTY_MONTHS: u32 = 12;
/// Months after enrollment a rural outlet stays eligible (Article 13: "3 years").
pub const RURAL_ENROLLMENT_MONTHS: u32 = 36;

/// Districts and counties that pay 75 % of a subsidy locally (Article 20); all others pay 50 %.
pub const DISTRICTS_PAYING_75_PERCENT: [&str; 6] =
    ["330109", "330110", "330112", "330122", "330127", "330182"];
/// Districts that pay 50 % locally (Article 20). Listed for validation and documentation;
/// any district not in [`DISTRICTS_PAYING_75_PERCENT`] pays 50 %.
pub const DISTRICTS_PAYING_50_PERCENT: [&str; 7] = [
    "330102", "330105", "330106", "330108", "330111", "330113", "330114",
];

/// The Asia/Shanghai offset.
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(SHANGHAI_OFFSET_SECONDS).expect("+08:00 is a valid offset")
}

/// The Asia/Shanghai local date of an instant, whatever offset it was written with.
pub fn local_date(instant: &DateTime<FixedOffset>) -> NaiveDate {
    instant.with_timezone(&shanghai()).date_naive()
}

/// Returns true if and only if `date` lies in the policy period (both ends inclusive).
pub fn in_policy_period(date: NaiveDate) -> bool {
    (PERIOD_FIRST_DAY..=PERIOD_LAST_DAY).contains(&date)
}

/// `date` plus whole months, clamping to the month's last day (2024-02-29 + 12 months is
/// 2025-02-28). Saturates at the far future, which can only make a window longer.
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

/// Nominal amount of one unit, in fen.
pub fn rate_fen(program: Program) -> i64 {
    match program {
        Program::TakeoutOrder | Program::ImportParcel => 100,
        Program::RuralDelivery => 30,
    }
}

/// Yearly cap per recipient, in fen; `None` where the program has no cap.
pub fn cap_fen_per_year(program: Program) -> Option<i64> {
    match program {
        Program::TakeoutOrder => None,
        Program::ImportParcel => Some(20_000_000),
        Program::RuralDelivery => Some(3_000_000),
    }
}

/// Percentage of a granted total the districts of [`DISTRICTS_PAYING_75_PERCENT`] pay.
pub const DISTRICT_SHARE_PERCENT_HIGH: i64 = 75;
/// Percentage of a granted total every other district pays.
pub const DISTRICT_SHARE_PERCENT_LOW: i64 = 50;

/// Percentage of a granted total a district pays locally (Article 20).
pub fn district_share_percent(district_code: &str) -> i64 {
    if DISTRICTS_PAYING_75_PERCENT.contains(&district_code) {
        DISTRICT_SHARE_PERCENT_HIGH
    } else {
        DISTRICT_SHARE_PERCENT_LOW
    }
}

/// The numbers the SQL views compute with, as SQL fragments for their `{policy.NAME}`
/// placeholders, so that caps and the funding split in ClickHouse use the numbers of this
/// file and nothing else (`migrate` fills them in; a change re-applies the views):
/// - `{policy.cap_fen}`: the yearly cap in fen of the row's `program`, `-1` for none;
/// - `{policy.districts_paying_high_share}`: the quoted district codes of the 75 % list;
/// - `{policy.district_share_percent_high}`, `{policy.district_share_percent_low}`.
pub fn sql_placeholders() -> [(&'static str, String); 4] {
    let caps: Vec<String> = Program::ALL
        .iter()
        .filter_map(|p| {
            Some(format!(
                "program = '{}', {}",
                p.as_str(),
                cap_fen_per_year(*p)?
            ))
        })
        .collect();
    let districts: Vec<String> = DISTRICTS_PAYING_75_PERCENT
        .iter()
        .map(|d| format!("'{d}'"))
        .collect();
    [
        (
            "{policy.cap_fen}",
            format!("multiIf({}, -1)", caps.join(", ")),
        ),
        ("{policy.districts_paying_high_share}", districts.join(", ")),
        (
            "{policy.district_share_percent_high}",
            DISTRICT_SHARE_PERCENT_HIGH.to_string(),
        ),
        (
            "{policy.district_share_percent_low}",
            DISTRICT_SHARE_PERCENT_LOW.to_string(),
        ),
    ]
}

/// The district's share of `granted_fen`, rounded half-even to the fen:
/// `round_half_even(granted × rate, 0.01)`. The city pays the rest.
pub fn district_share_fen(granted_fen: i64, district_code: &str) -> i64 {
    let scaled = granted_fen * district_share_percent(district_code);
    let quotient = scaled.div_euclid(100);
    let remainder = scaled.rem_euclid(100);
    let rounds_up = remainder > 50 || (remainder == 50 && quotient % 2 != 0);
    quotient + i64::from(rounds_up)
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
    fn policy_period_is_inclusive_at_both_ends() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert!(!in_policy_period(d("2022-06-30")));
        assert!(in_policy_period(d("2022-07-01")));
        assert!(in_policy_period(d("2025-12-31")));
        assert!(!in_policy_period(d("2026-01-01")));
    }

    #[test]
    fn add_months_clamps_leap_days() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(add_months(d("2024-02-29"), 12), d("2025-02-28"));
        assert_eq!(add_months(d("2022-07-15"), 36), d("2025-07-15"));
    }

    #[test]
    fn district_share_rounds_half_even_to_the_fen() {
        // 75 % of 0.02 yuan = 1.5 fen -> 2 fen (2 is even); of 0.06 = 4.5 -> 4.
        assert_eq!(district_share_fen(2, "330109"), 2);
        assert_eq!(district_share_fen(6, "330109"), 4);
        // 50 % of 0.01 = 0.5 fen -> 0; of 0.03 = 1.5 -> 2.
        assert_eq!(district_share_fen(1, "330102"), 0);
        assert_eq!(district_share_fen(3, "330102"), 2);
        // The import cap, 200,000.00 yuan, in a 75 % district.
        assert_eq!(district_share_fen(20_000_000, "330110"), 15_000_000);
        // 0.3 yuan x 7 = 2.10 yuan at 75 % = 157.5 fen -> 158.
        assert_eq!(district_share_fen(210, "330127"), 158);
        assert_eq!(district_share_percent("330106"), 50);
        assert_eq!(district_share_percent("999999"), 50);
    }

    #[test]
    fn rates_and_caps_are_the_policy_numbers() {
        assert_eq!(
            fen_to_yuan(rate_fen(Program::RuralDelivery)).to_string(),
            "0.30"
        );
        assert_eq!(
            fen_to_yuan(rate_fen(Program::ImportParcel)).to_string(),
            "1.00"
        );
        assert_eq!(
            fen_to_yuan(cap_fen_per_year(Program::ImportParcel).unwrap()).to_string(),
            "200000.00"
        );
        assert_eq!(
            fen_to_yuan(cap_fen_per_year(Program::RuralDelivery).unwrap()).to_string(),
            "30000.00"
        );
        assert_eq!(cap_fen_per_year(Program::TakeoutOrder), None);
    }
}
