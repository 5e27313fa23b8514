//! `report monthly`: monthly subsidy totals from the analyst views, grouped by program,
//! recipient or district, rendered as an aligned table, CSV or JSON.
//!
//! The numbers come straight from the views behind `subsidy_monthly` and
//! `subsidy_funding_monthly` (their `_fen` twins), so the report shows exactly what an
//! analyst's SQL would. Money travels as integer fen and is printed as yuan with exactly two
//! decimals here, the same on every server version; JSON carries it as strings so no reader
//! turns it into binary floating point.

use crate::domain::Program;
use crate::policy::fen_to_yuan;
use crate::store::{Store, StoreError};
use rust_decimal::Decimal;
use std::fmt::Write as _;

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Grouping {
    /// One row per month and program.
    Program,
    /// One row per month, program, recipient and district (caps visible per recipient).
    Recipient,
    /// One row per month, district and program, with the Article 20 funding split.
    District,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a total line, for people.
    Table,
    /// RFC 4180 CSV with a header, for spreadsheets.
    Csv,
    /// A JSON array of objects; money as decimal strings.
    Json,
}

/// Which rows to report.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    /// Calendar year (local); all years when `None`.
    pub year: Option<i32>,
    /// Month 1–12 within `year`; the whole year when `None`.
    pub month: Option<u32>,
    pub grouping: Grouping,
    /// Only this program, when set.
    pub program: Option<Program>,
    /// Only this recipient (courier, firm or outlet), when set.
    pub recipient: Option<String>,
}

/// Kind of a column, for alignment, totals and JSON typing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Count,
    Money,
}

/// A report's columns: name and kind, in order.
pub type Columns = Vec<(&'static str, ColumnKind)>;

/// A report: named, typed columns and rows of cells as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTable {
    pub columns: Columns,
    pub rows: Vec<Vec<String>>,
}

/// Why a report failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("--month needs --year")]
    MonthWithoutYear,
    #[error("--month must be 1 to 12, got {0}")]
    BadMonth(u32),
    #[error("--recipient {0:?} is not an identifier (1-64 of A-Z a-z 0-9 . _ : -)")]
    BadRecipient(String),
    #[error("--recipient works with --by program or --by recipient (the funding view has no recipients)")]
    RecipientByDistrict,
    #[error("ClickHouse returned an unreadable report row: {0}")]
    BadRow(String),
}

impl ReportQuery {
    fn filter(&self) -> Result<String, ReportError> {
        let mut conditions = vec!["1".to_string()];
        if let Some(year) = self.year {
            conditions.push(format!("toYear(month) = {year}"));
        }
        match (self.year, self.month) {
            (None, Some(_)) => return Err(ReportError::MonthWithoutYear),
            (_, Some(m)) if !(1..=12).contains(&m) => return Err(ReportError::BadMonth(m)),
            (_, Some(m)) => conditions.push(format!("toMonth(month) = {m}")),
            _ => {}
        }
        if let Some(program) = self.program {
            conditions.push(format!("program = '{}'", program.as_str()));
        }
        if let Some(recipient) = &self.recipient {
            if !crate::decode::is_identifier(recipient) {
                return Err(ReportError::BadRecipient(recipient.clone()));
            }
            conditions.push(format!("recipient_id = '{recipient}'"));
        }
        Ok(conditions.join(" AND "))
    }

    /// The SQL and column layout of this report.
    pub fn sql(&self) -> Result<(String, Columns), ReportError> {
        use ColumnKind::{Count, Money, Text};
        let filter = self.filter()?;
        if self.recipient.is_some() && self.grouping == Grouping::District {
            return Err(ReportError::RecipientByDistrict);
        }
        // Money is read as integer fen from the `_fen` views and turned into yuan here, so
        // every server prints the same two decimals (ClickHouse ≥ 21 drops a Decimal's
        // trailing zeros: `150000` where 18.16 prints `150000.00`).
        Ok(match self.grouping {
            Grouping::Program => (
                format!(
                    "SELECT toString(month), program, toString(sum(units)), toString(sum(voided_units)), toString(sum(nominal_fen)), toString(sum(granted_fen)), \
                            toString(sum(clawed_back_fen)), toString(sum(net_fen)) \
                     FROM {{db}}.subsidy_monthly_fen WHERE {filter} GROUP BY month, program ORDER BY month, program"
                ),
                vec![("month", Text), ("program", Text), ("units", Count), ("voided_units", Count), ("nominal", Money), ("granted", Money), ("clawed_back", Money), ("net", Money)],
            ),
            Grouping::Recipient => (
                format!(
                    "SELECT toString(month), program, recipient_id, district_code, toString(units), toString(voided_units), toString(nominal_fen), toString(granted_fen), \
                            toString(clawed_back_fen), toString(net_fen) \
                     FROM {{db}}.subsidy_monthly_fen WHERE {filter} ORDER BY month, program, recipient_id, district_code"
                ),
                vec![("month", Text), ("program", Text), ("recipient_id", Text), ("district_code", Text), ("units", Count), ("voided_units", Count), ("nominal", Money), ("granted", Money), ("clawed_back", Money), ("net", Money)],
            ),
            // The finance office's export (`--by district --format csv`): Article 20's split
            // of what was granted and of what remains after clawback.
            Grouping::District => (
                format!(
                    "SELECT toString(month), district_code, program, toString(units), toString(nominal_fen), toString(granted_fen), toString(district_share_fen), toString(city_share_fen), \
                            toString(clawed_back_fen), toString(net_fen), toString(district_share_net_fen), toString(city_share_net_fen) \
                     FROM (SELECT * FROM {{db}}.subsidy_funding_monthly_fen WHERE {filter}) AS funding \
                     ANY LEFT JOIN (SELECT month, district_code, program, sum(units) AS units, sum(nominal_fen) AS nominal_fen \
                                    FROM {{db}}.subsidy_monthly_fen WHERE {filter} GROUP BY month, district_code, program) AS monthly \
                     USING (month, district_code, program) \
                     ORDER BY month, district_code, program"
                ),
                vec![("month", Text), ("district_code", Text), ("program", Text), ("units", Count), ("nominal", Money), ("granted", Money), ("district_share", Money), ("city_share", Money),
                     ("clawed_back", Money), ("net", Money), ("district_share_net", Money), ("city_share_net", Money)],
            ),
        })
    }
}

/// Runs the report against ClickHouse.
pub async fn fetch(store: &Store, query: &ReportQuery) -> Result<ReportTable, ReportError> {
    let (sql, columns) = query.sql()?;
    let statement = store.sql(&sql);
    let mut cursor = store
        .client()
        .query(&statement)
        .fetch_bytes("TabSeparated")
        .map_err(|e| store.classify(&statement, e))?;
    let bytes = store.bounded(&statement, cursor.collect()).await?;
    let text = String::from_utf8_lossy(&bytes);
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut cells: Vec<String> = line.split('\t').map(unescape_tsv).collect();
        if cells.len() != columns.len() {
            return Err(ReportError::BadRow(line.to_string()));
        }
        for ((_, kind), cell) in columns.iter().zip(cells.iter_mut()) {
            if *kind == ColumnKind::Money {
                let fen: i64 = cell
                    .parse()
                    .map_err(|_| ReportError::BadRow(line.to_string()))?;
                *cell = fen_to_yuan(fen).to_string();
            }
        }
        rows.push(cells);
    }
    Ok(ReportTable { columns, rows })
}

/// A TabSeparated cell's text: `\t`, `\n`, `\0` and other backslash escapes back to the
/// characters they stand for.
pub fn unescape_tsv(cell: &str) -> String {
    let mut out = String::with_capacity(cell.len());
    let mut chars = cell.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Renders the table in the chosen format.
pub fn render(table: &ReportTable, format: Format) -> String {
    match format {
        Format::Table => render_table(table),
        Format::Csv => render_csv(table),
        Format::Json => render_json(table),
    }
}

fn totals(table: &ReportTable) -> Vec<String> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| match kind {
            ColumnKind::Text if i == 0 => "TOTAL".to_string(),
            ColumnKind::Text => String::new(),
            ColumnKind::Count => table
                .rows
                .iter()
                .map(|r| r[i].parse::<u64>().unwrap_or(0))
                .sum::<u64>()
                .to_string(),
            ColumnKind::Money => {
                let sum: Decimal = table
                    .rows
                    .iter()
                    .map(|r| r[i].parse::<Decimal>().unwrap_or_default())
                    .sum();
                format!("{:.2}", sum)
            }
        })
        .collect()
}

fn render_table(table: &ReportTable) -> String {
    let total = totals(table);
    let mut widths: Vec<usize> = table.columns.iter().map(|(n, _)| n.len()).collect();
    for row in table.rows.iter().chain(std::iter::once(&total)) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String], out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .zip(&table.columns)
            .map(|((cell, w), (_, kind))| match kind {
                ColumnKind::Text => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    let mut out = String::new();
    let header: Vec<String> = table.columns.iter().map(|(n, _)| n.to_string()).collect();
    line(&header, &mut out);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&rule, &mut out);
    for row in &table.rows {
        line(row, &mut out);
    }
    line(&rule, &mut out);
    line(&total, &mut out);
    out
}

fn render_csv(table: &ReportTable) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let _ = writer.write_record(&header);
    for row in &table.rows {
        let _ = writer.write_record(row);
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn render_json(table: &ReportTable) -> String {
    let rows: Vec<serde_json::Value> = table
        .rows
        .iter()
        .map(|row| {
            let object: serde_json::Map<String, serde_json::Value> = table
                .columns
                .iter()
                .zip(row)
                .map(|((name, kind), cell)| {
                    let value = match kind {
                        ColumnKind::Count => cell
                            .parse::<u64>()
                            .map_or_else(|_| cell.clone().into(), Into::into),
                        _ => cell.clone().into(),
                    };
                    (name.to_string(), value)
                })
                .collect();
            serde_json::Value::Object(object)
        })
        .collect();
    let mut out = serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ReportTable {
        ReportTable {
            columns: vec![
                ("month", ColumnKind::Text),
                ("program", ColumnKind::Text),
                ("units", ColumnKind::Count),
                ("granted", ColumnKind::Money),
            ],
            rows: vec![
                vec![
                    "2023-01-01".into(),
                    "import_parcel".into(),
                    "200001".into(),
                    "200000.00".into(),
                ],
                vec![
                    "2023-01-01".into(),
                    "rural_delivery".into(),
                    "3".into(),
                    "0.90".into(),
                ],
            ],
        }
    }

    #[test]
    fn tables_align_and_total_exactly() {
        let text = render(&sample(), Format::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("month"));
        assert!(lines.last().unwrap().starts_with("TOTAL"));
        assert!(lines.last().unwrap().ends_with("200000.90"));
        assert!(lines.last().unwrap().contains("200004"));
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_row() {
        let text = render(&sample(), Format::Csv);
        assert_eq!(text.lines().next(), Some("month,program,units,granted"));
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn json_keeps_money_as_exact_strings() {
        let value: serde_json::Value =
            serde_json::from_str(&render(&sample(), Format::Json)).unwrap();
        assert_eq!(value[0]["granted"], "200000.00");
        assert_eq!(value[0]["units"], 200001);
    }

    #[test]
    fn month_needs_a_year_and_a_valid_number() {
        let mut q = ReportQuery {
            year: None,
            month: Some(3),
            grouping: Grouping::Program,
            program: None,
            recipient: None,
        };
        assert!(matches!(q.sql(), Err(ReportError::MonthWithoutYear)));
        q.year = Some(2024);
        q.month = Some(13);
        assert!(matches!(q.sql(), Err(ReportError::BadMonth(13))));
        q.month = Some(1);
        let (sql, _) = q.sql().unwrap();
        assert!(sql.contains("toYear(month) = 2024 AND toMonth(month) = 1"));
        q.recipient = Some("x' OR 1".into());
        assert!(matches!(q.sql(), Err(ReportError::BadRecipient(_))));
        q.recipient = Some("cainiao".into());
        assert!(q.sql().unwrap().0.contains("recipient_id = 'cainiao'"));
    }
}
