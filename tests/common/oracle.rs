//! The test oracle: the analyst views (SPEC §6) a sample feed must produce, computed from
//! the generator's labels alone.
//!
//! It shares no code with `subsidy_ingester::rules`, `decode` or `policy`: the policy's
//! numbers are written down here a second time, caps are applied with SPEC §2's formula as
//! written, and the funding split rounds with `rust_decimal`'s banker's rounding rather than
//! the service's integer arithmetic. The nominal amount of each unit comes from the message's
//! [`ExpectedUnit::amount_fen`](subsidy_devtools::sample::ExpectedUnit).
//!
//! [`expect`] takes messages in any order: totals do not depend on it.

use chrono::{Datelike, NaiveDate};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, HashMap};
use subsidy_devtools::sample::{Expected, SampleMessage};

/// Yearly cap of one firm's import parcels: 200,000.00 yuan, in fen.
#[allow(dead_code)]
pub const IMPORT_PARCEL_CAP_FEN: i64 = 20_000_000;
/// Yearly cap of one outlet's rural deliveries: 30,000.00 yuan, in fen.
#[allow(dead_code)]
pub const RURAL_DELIVERY_CAP_FEN: i64 = 3_000_000;
/// Districts and counties paying 75 % locally (Article 20): 萧山, 余杭, 临安, 桐庐, 淳安, 建德.
/// Every other district pays 50 %.
#[allow(dead_code)]
pub const DISTRICTS_PAYING_75_PERCENT: [&str; 6] =
    ["330109", "330110", "330112", "330122", "330127", "330182"];

/// One row of `subsidy_monthly`.
#[allow(dead_code)]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthlyRow {
    /// First day of the local month.
    pub month: NaiveDate,
    pub program: String,
    pub recipient_id: String,
    pub district_code: String,
    pub units: u64,
    pub nominal_fen: i64,
    pub granted_fen: i64,
}

/// One row of `subsidy_funding_monthly`.
#[allow(dead_code)]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FundingRow {
    pub month: NaiveDate,
    pub district_code: String,
    pub program: String,
    pub granted_fen: i64,
    pub district_share_fen: i64,
    pub city_share_fen: i64,
}

/// Everything an ingester must make of a feed.
#[allow(dead_code)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Sorted by (month, program, recipient, district).
    pub monthly: Vec<MonthlyRow>,
    /// Sorted by (month, district, program); one row per group with at least one unit,
    /// also when the caps leave nothing granted.
    pub funding: Vec<FundingRow>,
    /// Messages that become units.
    pub accepted_units: u64,
    /// Rejected messages by reason code (`rejected_events.reason`).
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// All messages: `accepted_units` plus every rejection.
    pub messages: u64,
}

/// The yearly cap of a program per recipient, in fen; `None` for takeout orders.
#[allow(dead_code)]
pub fn cap_fen(program: &str) -> Option<i64> {
    match program {
        "import_parcel" => Some(IMPORT_PARCEL_CAP_FEN),
        "rural_delivery" => Some(RURAL_DELIVERY_CAP_FEN),
        "takeout_order" => None,
        other => panic!("oracle: unknown program {other:?}"),
    }
}

/// The percentage of a granted total a district pays locally.
#[allow(dead_code)]
pub fn district_percent(district_code: &str) -> i64 {
    if DISTRICTS_PAYING_75_PERCENT.contains(&district_code) {
        75
    } else {
        50
    }
}

/// `round_half_even(granted × rate, 0.01)` in yuan, returned in fen.
#[allow(dead_code)]
pub fn district_share_fen(granted_fen: i64, district_code: &str) -> i64 {
    let granted_yuan = Decimal::new(granted_fen, 2);
    let rate = Decimal::new(district_percent(district_code), 2);
    let share_yuan =
        (granted_yuan * rate).round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
    (share_yuan * Decimal::ONE_HUNDRED)
        .to_i64()
        .expect("a share of an i64 amount fits in i64")
}

/// The views and counts `messages` must produce, whatever order they arrive in.
#[allow(dead_code)]
pub fn expect(messages: &[SampleMessage]) -> Expectation {
    let mut nominal: BTreeMap<(NaiveDate, String, String, String), (u64, i64)> = BTreeMap::new();
    let mut rejected_by_reason = BTreeMap::new();
    let mut accepted_units = 0;
    for message in messages {
        match &message.expected {
            Expected::Unit(unit) => {
                accepted_units += 1;
                let key = (
                    unit.month,
                    unit.program.as_str().to_owned(),
                    unit.recipient_id.clone(),
                    unit.district_code.clone(),
                );
                let (units, fen) = nominal.entry(key).or_insert((0, 0));
                *units += 1;
                *fen += unit.amount_fen;
            }
            Expected::Rejected(reason) => {
                *rejected_by_reason
                    .entry(reason.as_str().to_owned())
                    .or_insert(0) += 1;
            }
        }
    }
    let monthly = apply_caps(nominal);
    let funding = split_funding(&monthly);
    let expectation = Expectation {
        monthly,
        funding,
        accepted_units,
        rejected_by_reason,
        messages: messages.len() as u64,
    };
    check_invariants(&expectation);
    expectation
}

/// SPEC §2: for one recipient and year, `granted(m) = min(max(cap − Σ_{k<m} N(k), 0), N(m))`.
/// Rows come in (month, program, recipient, district) order, so each recipient's months come
/// in time order. A recipient with two districts in one month (which the sample never has)
/// would have them served in district order.
fn apply_caps(
    nominal: BTreeMap<(NaiveDate, String, String, String), (u64, i64)>,
) -> Vec<MonthlyRow> {
    let mut earlier_nominal_fen: HashMap<(String, String, i32), i64> = HashMap::new();
    nominal
        .into_iter()
        .map(
            |((month, program, recipient_id, district_code), (units, nominal_fen))| {
                let granted_fen = match cap_fen(&program) {
                    None => nominal_fen,
                    Some(cap) => {
                        let key = (program.clone(), recipient_id.clone(), month.year());
                        let earlier = earlier_nominal_fen.entry(key).or_insert(0);
                        let granted = (cap - *earlier).max(0).min(nominal_fen);
                        *earlier += nominal_fen;
                        granted
                    }
                };
                MonthlyRow {
                    month,
                    program,
                    recipient_id,
                    district_code,
                    units,
                    nominal_fen,
                    granted_fen,
                }
            },
        )
        .collect()
}

/// Article 20 per (month, district, program).
fn split_funding(monthly: &[MonthlyRow]) -> Vec<FundingRow> {
    let mut granted: BTreeMap<(NaiveDate, &str, &str), i64> = BTreeMap::new();
    for row in monthly {
        *granted
            .entry((row.month, &row.district_code, &row.program))
            .or_insert(0) += row.granted_fen;
    }
    granted
        .into_iter()
        .map(|((month, district_code, program), granted_fen)| {
            let district_share_fen = district_share_fen(granted_fen, district_code);
            FundingRow {
                month,
                district_code: district_code.to_owned(),
                program: program.to_owned(),
                granted_fen,
                district_share_fen,
                city_share_fen: granted_fen - district_share_fen,
            }
        })
        .collect()
}

/// What must hold of any expectation: a grant never exceeds its nominal amount or the
/// remaining cap, amounts are never negative, and the counts add up.
fn check_invariants(expectation: &Expectation) {
    let mut granted_per_year: HashMap<(&str, &str, i32), i64> = HashMap::new();
    for row in &expectation.monthly {
        assert!(row.units > 0 && row.nominal_fen >= 0, "{row:?}");
        assert!((0..=row.nominal_fen).contains(&row.granted_fen), "{row:?}");
        *granted_per_year
            .entry((&row.program, &row.recipient_id, row.month.year()))
            .or_insert(0) += row.granted_fen;
    }
    for ((program, recipient, year), granted) in granted_per_year {
        if let Some(cap) = cap_fen(program) {
            assert!(
                granted <= cap,
                "{program} {recipient} {year}: {granted} fen granted"
            );
        }
    }
    for row in &expectation.funding {
        assert!(
            row.district_share_fen >= 0 && row.city_share_fen >= 0,
            "{row:?}"
        );
    }
    let units: u64 = expectation.monthly.iter().map(|r| r.units).sum();
    assert_eq!(units, expectation.accepted_units);
    let rejected: u64 = expectation.rejected_by_reason.values().sum();
    assert_eq!(expectation.accepted_units + rejected, expectation.messages);
}
