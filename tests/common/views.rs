//! The analyst views as rows of text, and the oracle's expectation in the same shape, so
//! every end-to-end test compares them the same way (`assert_eq!` on `Vec<Vec<String>>`).
#![allow(dead_code)]

use super::oracle::Expectation;

/// `subsidy_monthly`, every column as text, in a stable order.
pub const MONTHLY_SQL: &str = "SELECT toString(month), program, recipient_id, district_code, toString(units), nominal, granted FROM {db}.subsidy_monthly ORDER BY month, program, recipient_id, district_code";

/// `subsidy_funding_monthly`, every column as text, in a stable order.
pub const FUNDING_SQL: &str = "SELECT toString(month), district_code, program, granted, district_share, city_share FROM {db}.subsidy_funding_monthly ORDER BY month, district_code, program";

/// `rejected_events` counted by reason.
pub const REJECTED_BY_REASON_SQL: &str =
    "SELECT reason, toString(count()) FROM {db}.rejected_events GROUP BY reason ORDER BY reason";

/// Fen as the decimal text ClickHouse prints for Decimal(18,2).
fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// The oracle's monthly rows, shaped like [`MONTHLY_SQL`]'s result.
pub fn expected_monthly(expectation: &Expectation) -> Vec<Vec<String>> {
    expectation
        .monthly
        .iter()
        .map(|r| {
            vec![
                r.month.to_string(),
                r.program.clone(),
                r.recipient_id.clone(),
                r.district_code.clone(),
                r.units.to_string(),
                yuan(r.nominal_fen),
                yuan(r.granted_fen),
            ]
        })
        .collect()
}

/// The oracle's funding rows, shaped like [`FUNDING_SQL`]'s result.
pub fn expected_funding(expectation: &Expectation) -> Vec<Vec<String>> {
    expectation
        .funding
        .iter()
        .map(|r| {
            vec![
                r.month.to_string(),
                r.district_code.clone(),
                r.program.clone(),
                yuan(r.granted_fen),
                yuan(r.district_share_fen),
                yuan(r.city_share_fen),
            ]
        })
        .collect()
}

/// The oracle's rejections by reason, shaped like [`REJECTED_BY_REASON_SQL`]'s result.
pub fn expected_rejections(expectation: &Expectation) -> Vec<Vec<String>> {
    expectation
        .rejected_by_reason
        .iter()
        .map(|(reason, n)| vec![reason.clone(), n.to_string()])
        .collect()
}
