//! The `outcomes` table: one row per consumed message, holding both its outcome and its
//! source coordinates (topic, partition, offset).
//!
//! Because the row is the checkpoint, a partition resumes at `max(offset) + 1` from here,
//! and the index of paid unit keys is rebuilt from here at start-up: what is durable in
//! ClickHouse is, by construction, exactly what has been processed.

use super::client::{Store, StoreError};
use super::rowbinary::{names_and_types_header, RowBinaryWriter};
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, NaiveDate};

/// Columns of `outcomes`, in table order, with their ClickHouse types.
pub const OUTCOME_COLUMNS: [(&str, &str); 15] = [
    ("topic", "String"),
    ("partition", "UInt32"),
    ("offset", "UInt64"),
    ("received_at", "DateTime"),
    ("event_id", "String"),
    ("reason", "String"),
    ("detail", "String"),
    ("payload", "String"),
    ("program", "String"),
    ("unit_key", "String"),
    ("recipient_id", "String"),
    ("district_code", "String"),
    ("occurred_at", "DateTime"),
    ("local_date", "Date"),
    ("amount_fen", "Int64"),
];

/// One outcome, borrowed from the message and the rules' result while it is encoded.
#[derive(Debug, Clone, Default)]
pub struct OutcomeRow<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
    /// When the ingester consumed the message, Unix seconds.
    pub received_at_unix_s: u32,
    pub event_id: &'a str,
    /// `""` for an accepted unit, else the reason code.
    pub reason: &'a str,
    pub detail: &'a str,
    /// The raw message, kept for rejections only (producers fix their feed from it).
    pub payload: &'a [u8],
    pub program: &'a str,
    pub unit_key: &'a str,
    pub recipient_id: &'a str,
    pub district_code: &'a str,
    /// `occurred_at` as Unix seconds (0 when the message had none).
    pub occurred_at_unix_s: u32,
    /// Asia/Shanghai local date as days since 1970-01-01 (0 when unknown).
    pub local_date_days: u16,
    pub amount_fen: i64,
}

impl OutcomeRow<'_> {
    /// Appends this row in `OUTCOME_COLUMNS` order.
    pub fn encode(&self, out: &mut RowBinaryWriter) {
        out.put_str(self.topic);
        out.put_u32(self.partition);
        out.put_u64(self.offset);
        out.put_u32(self.received_at_unix_s);
        out.put_str(self.event_id);
        out.put_str(self.reason);
        out.put_str(self.detail);
        out.put_bytes(self.payload);
        out.put_str(self.program);
        out.put_str(self.unit_key);
        out.put_str(self.recipient_id);
        out.put_str(self.district_code);
        out.put_u32(self.occurred_at_unix_s);
        out.put_u16(self.local_date_days);
        out.put_i64(self.amount_fen);
    }
}

/// An instant as ClickHouse `DateTime` seconds, clamped to its range (1970 … 2106).
pub fn datetime_seconds(instant: &DateTime<FixedOffset>) -> u32 {
    instant.timestamp().clamp(0, i64::from(u32::MAX)) as u32
}

/// A date as ClickHouse `Date` days, clamped to its range (1970 … 2149).
pub fn date_days(date: NaiveDate) -> u16 {
    let days = date
        .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
        .num_days();
    days.clamp(0, i64::from(u16::MAX)) as u16
}

/// The date a ClickHouse `Date` holds.
pub fn date_from_days(days: u16) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Days::new(u64::from(days))
}

/// Inserts one batch of encoded rows with a single INSERT.
///
/// Rows must be in consumption order, so each partition's offsets ascend: then even an
/// insert that lands only in part leaves every partition with a gap-free prefix, and
/// resuming at `max(offset) + 1` neither skips nor repeats a message.
pub async fn insert_outcomes(store: &Store, rows: Bytes) -> Result<(), StoreError> {
    insert_rows(store, "outcomes", &OUTCOME_COLUMNS, rows).await
}

/// Inserts encoded rows into `{db}.table` with a single INSERT (the one write path of
/// every table the stages fill): plain RowBinary on 18.16, with a names-and-types header on
/// newer servers so the server checks every column.
pub async fn insert_rows(
    store: &Store,
    table: &str,
    columns: &[(&str, &str)],
    rows: Bytes,
) -> Result<(), StoreError> {
    let column_list = columns
        .iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let (format, body) = if store.version().is_modern() {
        let mut body = names_and_types_header(columns);
        body.extend_from_slice(&rows);
        ("RowBinaryWithNamesAndTypes", Bytes::from(body))
    } else {
        ("RowBinary", rows)
    };
    let statement = store.sql(&format!(
        "INSERT INTO {{db}}.{table} ({column_list}) FORMAT {format}"
    ));
    let mut insert = store.client().insert_formatted_with(statement.clone());
    store.bounded(&statement, insert.send(body)).await?;
    crate::crash::reached("mid_insert");
    store.bounded(&statement, insert.end()).await
}

/// Where a partition resumes: the offset after the highest one stored, or `None` when
/// nothing from it is stored yet.
pub async fn resume_offset(
    store: &Store,
    topic: &str,
    partition: u32,
) -> Result<Option<u64>, StoreError> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Resume {
        rows: u64,
        max_offset: u64,
    }
    let statement = store.sql(&format!(
        "SELECT count() AS rows, max(`offset`) AS max_offset FROM {{db}}.outcomes WHERE topic = '{}' AND `partition` = {partition}",
        escape_literal(topic)
    ));
    let resume: Resume = store.fetch_one(&statement).await?;
    Ok((resume.rows > 0).then_some(resume.max_offset + 1))
}

/// One paid unit as stored: its key and where it came from.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct StoredUnit {
    pub program: String,
    pub unit_key: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// Streams every paid unit (the `ledger`) to `visit` (replay seeds its dedup index so).
pub async fn for_each_stored_unit(
    store: &Store,
    mut visit: impl FnMut(StoredUnit),
) -> Result<u64, StoreError> {
    let statement = store.sql(
        "SELECT program, unit_key, topic, `partition`, `offset` FROM {db}.unit_decisions WHERE reason = ''",
    );
    let mut cursor = store
        .client()
        .query(&statement)
        .fetch::<StoredUnit>()
        .map_err(|e| store.classify(&statement, e))?;
    let mut count = 0u64;
    loop {
        let next = store.bounded(&statement, cursor.next()).await?;
        match next {
            Some(unit) => {
                visit(unit);
                count += 1;
            }
            None => return Ok(count),
        }
    }
}

/// Escapes a value for a single-quoted ClickHouse string literal.
pub fn escape_literal(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_the_migration() {
        let tables = crate::store::migrate::MIGRATIONS[0].template;
        let start = tables
            .find("CREATE TABLE IF NOT EXISTS {db}.outcomes")
            .unwrap();
        let body = &tables[start..];
        let body = &body[body.find('(').unwrap() + 1..body.find("ENGINE").unwrap()];
        let declared: Vec<(String, String)> = body
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .filter(|l| !l.is_empty() && *l != ")")
            .map(|l| {
                let (name, ty) = l.split_once(' ').unwrap();
                (name.trim_matches('`').to_string(), ty.to_string())
            })
            .collect();
        let ours: Vec<(String, String)> = OUTCOME_COLUMNS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(declared, ours);
    }

    #[test]
    fn dates_and_times_clamp_to_clickhouse_ranges() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(date_days(d("1970-01-02")), 1);
        assert_eq!(date_days(d("1900-01-01")), 0);
        assert_eq!(date_from_days(date_days(d("2024-02-29"))), d("2024-02-29"));
        let t = DateTime::parse_from_rfc3339("1969-12-31T23:00:00Z").unwrap();
        assert_eq!(datetime_seconds(&t), 0);
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(escape_literal(r"a'b\c"), r"a\'b\\c");
    }
}
