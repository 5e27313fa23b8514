//! The `monthly_nominal` aggregates against a full recompute from the ledger: the check
//! `conservation` runs, and the repair `repair aggregates` makes.
//!
//! The aggregates are fed by a materialized view in the same INSERT as the units, so they
//! can disagree with the ledger only if the server failed between the two writes (or
//! someone wrote to either table by hand). The difference per cell is
//! `ledger − aggregates`; the repair inserts exactly those differences as signed rows,
//! which SummingMergeTree adds in, so the cell then equals the recompute.
//!
//! The recompute reads the whole ledger (an operator's check, seconds per 10⁷ units); run
//! the repair while no `run` is writing, or a unit landing meanwhile may be counted into
//! the difference and then added twice.

use super::client::{Store, StoreError};

/// One cell where the aggregates and the ledger disagree.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize, serde::Serialize)]
pub struct CellDifference {
    /// First day of the month, as ClickHouse `Date` days.
    pub month: u16,
    pub program: String,
    pub recipient_id: String,
    pub district_code: String,
    /// Units in the ledger minus units in the aggregates.
    pub units_missing: i64,
    /// Nominal fen in the ledger minus nominal fen in the aggregates.
    pub fen_missing: i64,
}

impl std::fmt::Display for CellDifference {
    /// `2024-02-01  import_parcel  sf-express  330109  units +4  nominal 4.00`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}  {}  {}  {}  units {:+}  nominal {}",
            super::outcomes::date_from_days(self.month),
            self.program,
            self.recipient_id,
            self.district_code,
            self.units_missing,
            crate::policy::fen_to_yuan(self.fen_missing)
        )
    }
}

/// The per-cell difference `ledger − aggregates`, only where it is not zero.
const DIFFERENCES_SQL: &str = "\
SELECT month AS month, program AS program, recipient_id AS recipient_id, district_code AS district_code, \
       sum(u) AS units_missing, sum(f) AS fen_missing \
FROM \
( \
    SELECT toStartOfMonth(local_date) AS month, program, recipient_id, district_code, toInt64(1) AS u, amount_fen AS f \
    FROM {db}.unit_decisions WHERE reason = '' \
    UNION ALL \
    SELECT month, program, recipient_id, district_code, -units AS u, -nominal_fen AS f \
    FROM {db}.monthly_nominal \
) \
GROUP BY month, program, recipient_id, district_code \
HAVING units_missing != 0 OR fen_missing != 0 \
ORDER BY month, program, recipient_id, district_code";

/// Every cell where the aggregates disagree with a recompute from the ledger.
pub async fn differences(store: &Store) -> Result<Vec<CellDifference>, StoreError> {
    store.fetch_all(&store.sql(DIFFERENCES_SQL)).await
}

/// Adds the differences into the aggregates; returns the cells corrected.
pub async fn repair(store: &Store) -> Result<Vec<CellDifference>, StoreError> {
    let cells = differences(store).await?;
    if cells.is_empty() {
        return Ok(cells);
    }
    let statement = store.sql(&format!(
        "INSERT INTO {{db}}.monthly_nominal (month, program, recipient_id, district_code, units, nominal_fen) \
         SELECT month, program, recipient_id, district_code, units_missing, fen_missing FROM ({DIFFERENCES_SQL})"
    ));
    store.execute(&statement).await?;
    Ok(cells)
}
