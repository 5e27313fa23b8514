//! Hand-computed cases for the oracle in `tests/common/oracle.rs`. The end-to-end tests trust
//! it to say what the analyst views must hold, so its cap and rounding arithmetic is checked
//! here against numbers worked out by hand. The oracle takes each unit's nominal amount from
//! its label, so most cases use large amounts per unit to reach the caps with few messages.

mod common;

use chrono::{Datelike, NaiveDate};
use common::oracle::{self, Expectation, FundingRow};
use subsidy_devtools::sample::{
    generate, Expected, ExpectedUnit, FeedOrder, SampleConfig, SampleMessage, CAP_IMPORT_FIRM_ID,
    CAP_IMPORT_YEAR, CAP_RURAL_OUTLET_ID, CAP_RURAL_YEAR,
};
use subsidy_ingester::domain::{Program, Reason};

const IMPORT: Program = Program::ImportParcel;
const RURAL: Program = Program::RuralDelivery;
const TAKEOUT: Program = Program::TakeoutOrder;

fn day(text: &str) -> NaiveDate {
    text.parse().expect("a test date")
}

fn message(expected: Expected) -> SampleMessage {
    SampleMessage {
        topic: "t".to_owned(),
        key: Vec::new(),
        payload: Vec::new(),
        sort_time_unix_s: 0,
        expected,
        unit_no: None,
        generated_index: 0,
    }
}

/// A unit of `amount_fen` for `recipient` in `month`.
fn unit(
    program: Program,
    recipient: &str,
    district: &str,
    month: &str,
    amount_fen: i64,
) -> SampleMessage {
    message(Expected::Unit(ExpectedUnit {
        program,
        unit_key: format!("{recipient}-{month}-{amount_fen}"),
        recipient_id: recipient.to_owned(),
        district_code: district.to_owned(),
        month: day(month),
        amount_fen,
    }))
}

/// (nominal, granted) of one recipient's month.
fn month_of(expectation: &Expectation, recipient: &str, month: &str) -> (i64, i64) {
    let row = expectation
        .monthly
        .iter()
        .find(|r| r.recipient_id == recipient && r.month == day(month))
        .unwrap_or_else(|| panic!("no row for {recipient} {month}"));
    (row.nominal_fen, row.granted_fen)
}

fn funding(
    month: &str,
    district: &str,
    program: &str,
    granted: i64,
    district_share: i64,
) -> FundingRow {
    FundingRow {
        month: day(month),
        district_code: district.to_owned(),
        program: program.to_owned(),
        granted_fen: granted,
        district_share_fen: district_share,
        city_share_fen: granted - district_share,
    }
}

#[test]
fn a_firm_exactly_at_its_cap_keeps_it_all_and_a_later_month_gets_nothing() {
    // 150,000.00 in January and 50,000.00 in March are exactly the 200,000.00 cap; 1.00 in
    // May is past it. 滨江 (330108) pays 50 %.
    let expectation = oracle::expect(&[
        unit(IMPORT, "sf", "330108", "2023-01-01", 15_000_000),
        unit(IMPORT, "sf", "330108", "2023-03-01", 5_000_000),
        unit(IMPORT, "sf", "330108", "2023-05-01", 100),
    ]);
    assert_eq!(
        month_of(&expectation, "sf", "2023-01-01"),
        (15_000_000, 15_000_000)
    );
    assert_eq!(
        month_of(&expectation, "sf", "2023-03-01"),
        (5_000_000, 5_000_000)
    );
    assert_eq!(month_of(&expectation, "sf", "2023-05-01"), (100, 0));
    assert_eq!(
        expectation.funding,
        [
            funding(
                "2023-01-01",
                "330108",
                "import_parcel",
                15_000_000,
                7_500_000
            ),
            funding(
                "2023-03-01",
                "330108",
                "import_parcel",
                5_000_000,
                2_500_000
            ),
            // Nothing granted, but the month had units: a row of zeros.
            funding("2023-05-01", "330108", "import_parcel", 0, 0),
        ]
    );
}

#[test]
fn the_month_that_crosses_the_cap_gets_the_remainder() {
    // 100,001 deliveries at 0.30 in one month: 30,000.30 nominal, 30,000.00 granted; 淳安
    // (330127) pays 75 % of it, 22,500.00.
    let messages: Vec<SampleMessage> = (0..100_001)
        .map(|_| unit(RURAL, "RO-1", "330127", "2024-06-01", 30))
        .collect();
    let expectation = oracle::expect(&messages);
    assert_eq!(expectation.monthly.len(), 1);
    assert_eq!(expectation.monthly[0].units, 100_001);
    assert_eq!(
        month_of(&expectation, "RO-1", "2024-06-01"),
        (3_000_030, 3_000_000)
    );
    assert_eq!(
        expectation.funding,
        [funding(
            "2024-06-01",
            "330127",
            "rural_delivery",
            3_000_000,
            2_250_000
        )]
    );
}

#[test]
fn a_late_unit_for_an_earlier_month_takes_cap_from_a_later_month() {
    // February 29,999.90 and April 0.10 fill the 30,000.00 cap: April gets its 0.10.
    let mut messages = vec![
        unit(RURAL, "RO-2", "330122", "2024-02-01", 2_999_990),
        unit(RURAL, "RO-2", "330122", "2024-04-01", 10),
    ];
    let before = oracle::expect(&messages);
    assert_eq!(
        month_of(&before, "RO-2", "2024-02-01"),
        (2_999_990, 2_999_990)
    );
    assert_eq!(month_of(&before, "RO-2", "2024-04-01"), (10, 10));
    // A late delivery for January (0.50) arrives last. January comes first in the year:
    // January 0.50, February min(30,000.00 − 0.50, 29,999.90) = 29,999.50, April 0.
    messages.push(unit(RURAL, "RO-2", "330122", "2024-01-01", 50));
    let after = oracle::expect(&messages);
    assert_eq!(month_of(&after, "RO-2", "2024-01-01"), (50, 50));
    assert_eq!(
        month_of(&after, "RO-2", "2024-02-01"),
        (2_999_990, 2_999_950)
    );
    assert_eq!(month_of(&after, "RO-2", "2024-04-01"), (10, 0));
    // The order messages arrive in changes nothing.
    messages.reverse();
    assert_eq!(oracle::expect(&messages), after);
}

#[test]
fn caps_start_again_on_new_year() {
    // December 2023: 200,001.00 nominal, 200,000.00 granted. January 2024 is a new year:
    // its 2.00 are granted. (The sample labels 2023-12-31T16:30:00Z as January 2024.)
    let expectation = oracle::expect(&[
        unit(IMPORT, "cainiao", "330110", "2023-12-01", 19_999_900),
        unit(IMPORT, "cainiao", "330110", "2023-12-01", 200),
        unit(IMPORT, "cainiao", "330110", "2024-01-01", 200),
    ]);
    assert_eq!(
        month_of(&expectation, "cainiao", "2023-12-01"),
        (20_000_100, 20_000_000)
    );
    assert_eq!(month_of(&expectation, "cainiao", "2024-01-01"), (200, 200));
}

#[test]
fn takeout_orders_have_no_cap() {
    let expectation = oracle::expect(&[
        unit(
            TAKEOUT,
            "meituan-c00001",
            "330106",
            "2022-08-01",
            30_000_000,
        ),
        unit(
            TAKEOUT,
            "meituan-c00001",
            "330106",
            "2022-09-01",
            30_000_000,
        ),
    ]);
    assert_eq!(
        month_of(&expectation, "meituan-c00001", "2022-09-01"),
        (30_000_000, 30_000_000)
    );
}

#[test]
fn district_shares_round_half_even_to_the_fen() {
    // (granted fen, district, district share fen), each worked out by hand.
    let cases = [
        (3, "330102", 2),     // 0.03 × 50 % = 0.015 → 0.02 (2 is even)
        (1, "330102", 0),     // 0.005 → 0.00
        (5, "330106", 2),     // 0.025 → 0.02
        (7, "330114", 4),     // 0.035 → 0.04
        (6, "330109", 4),     // 0.06 × 75 % = 0.045 → 0.04
        (2, "330110", 2),     // 0.015 → 0.02
        (10, "330182", 8),    // 0.075 → 0.08
        (210, "330127", 158), // 2.10 × 75 % = 1.575 → 1.58
        (101, "330111", 50),  // 富阳 pays 50 %: 0.505 → 0.50
        (20_000_000, "330110", 15_000_000),
    ];
    for (granted, district, share) in cases {
        assert_eq!(
            oracle::district_share_fen(granted, district),
            share,
            "{granted} in {district}"
        );
        let expectation = oracle::expect(&[unit(TAKEOUT, "c", district, "2022-09-01", granted)]);
        assert_eq!(
            expectation.funding,
            [funding(
                "2022-09-01",
                district,
                "takeout_order",
                granted,
                share
            )]
        );
    }
}

#[test]
fn funding_sums_a_districts_recipients_per_program() {
    // Two couriers in 西湖 (330106): 1.00 + 2.01 = 3.01 at 50 % = 1.505 → 1.50, city 1.51.
    // An import firm in the same district and month is a row of its own.
    let expectation = oracle::expect(&[
        unit(TAKEOUT, "c1", "330106", "2022-09-01", 100),
        unit(TAKEOUT, "c2", "330106", "2022-09-01", 201),
        unit(IMPORT, "deppon", "330106", "2022-09-01", 100),
        unit(TAKEOUT, "c1", "330102", "2022-08-01", 100),
    ]);
    assert_eq!(
        expectation.funding,
        [
            funding("2022-08-01", "330102", "takeout_order", 100, 50),
            funding("2022-09-01", "330106", "import_parcel", 100, 50),
            funding("2022-09-01", "330106", "takeout_order", 301, 150),
        ]
    );
}

#[test]
fn rejections_are_counted_by_reason() {
    let expectation = oracle::expect(&[
        unit(IMPORT, "sf", "330108", "2023-01-01", 100),
        message(Expected::Rejected(Reason::Duplicate)),
        message(Expected::Rejected(Reason::Duplicate)),
        message(Expected::Rejected(Reason::MalformedJson)),
        unit(RURAL, "RO-1", "330127", "2023-01-01", 30),
    ]);
    assert_eq!(expectation.accepted_units, 2);
    assert_eq!(expectation.messages, 5);
    let reasons: Vec<(&str, u64)> = expectation
        .rejected_by_reason
        .iter()
        .map(|(reason, n)| (reason.as_str(), *n))
        .collect();
    assert_eq!(reasons, [("duplicate", 2), ("malformed_json", 1)]);
}

#[test]
fn the_cap_crossing_feed_grants_exactly_both_caps_in_any_order() {
    let mut feed = generate(&SampleConfig::with_cap_crossing(350_000, 3));
    let expectation = oracle::expect(&feed.messages);
    let year_total = |recipient: &str, year: i32| {
        expectation
            .monthly
            .iter()
            .filter(|r| r.recipient_id == recipient && r.month.year() == year)
            .fold((0, 0), |(n, g), r| (n + r.nominal_fen, g + r.granted_fen))
    };
    let (nominal, granted) = year_total(CAP_IMPORT_FIRM_ID, CAP_IMPORT_YEAR);
    assert!(nominal > 20_000_000);
    assert_eq!(granted, 20_000_000);
    let (nominal, granted) = year_total(CAP_RURAL_OUTLET_ID, CAP_RURAL_YEAR);
    assert!(nominal > 3_000_000);
    assert_eq!(granted, 3_000_000);
    assert!(expectation.monthly.is_sorted());
    assert!(expectation.funding.is_sorted());
    feed.reorder(FeedOrder::Shuffled { seed: 9 });
    assert_eq!(oracle::expect(&feed.messages), expectation);
}
