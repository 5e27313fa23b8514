//! The `unit_decisions` table: the ledger stage's decision for every unit record it owns —
//! a unit (`reason = ''`), a `duplicate`, or `storage_refused` — with the record's
//! coordinates in the units topic (the ledger stage's checkpoint, like `outcomes` is the
//! admit stage's) and its source message's.
//!
//! A materialized view adds every unit to the `monthly_nominal` aggregates in the same
//! INSERT, so the analyst views never re-read the ledger.

use super::client::{Store, StoreError};
use super::outcomes::{escape_literal, insert_rows};
use super::rowbinary::{RowBinaryReader, RowBinaryWriter};
use bytes::Bytes;

/// Columns of `unit_decisions`, in table order, with their ClickHouse types.
pub const DECISION_COLUMNS: [(&str, &str); 22] = [
    ("ledger_partition", "UInt32"),
    ("ledger_offset", "UInt64"),
    ("ledger_index", "UInt32"),
    ("topic", "String"),
    ("partition", "UInt32"),
    ("offset", "UInt64"),
    ("received_at", "DateTime"),
    ("decided_at", "DateTime"),
    ("event_id", "String"),
    ("reason", "String"),
    ("detail", "String"),
    ("program", "String"),
    ("unit_key", "String"),
    ("recipient_id", "String"),
    ("district_code", "String"),
    ("occurred_at", "DateTime"),
    ("local_date", "Date"),
    ("amount_fen", "Int64"),
    ("eligible_firm", "String"),
    ("note", "String"),
    ("voided", "UInt8"),
    ("voids_position", "UInt64"),
];

/// One decision, borrowed from its unit record while it is encoded.
#[derive(Debug, Clone, Default)]
pub struct DecisionRow<'a> {
    pub ledger_partition: u32,
    pub ledger_offset: u64,
    /// The record's index in its message's set.
    pub ledger_index: u32,
    pub record: crate::route::UnitRecord<'a>,
    pub decided_at_unix_s: u32,
    /// `""` for a unit, else the reason code.
    pub reason: &'a str,
    pub detail: &'a str,
    /// A record whose void came first: it stays in the ledger, unpaid.
    pub voided: bool,
    /// A void of a record decided before it: 1 + that record's ledger position (same
    /// ledger partition); 0 while the void waits for its record.
    pub voids_position: u64,
}

impl DecisionRow<'_> {
    /// Appends this row in `DECISION_COLUMNS` order. A unit keeps its amount; a rejection
    /// pays nothing.
    pub fn encode(&self, out: &mut RowBinaryWriter) {
        let r = &self.record;
        out.put_u32(self.ledger_partition);
        out.put_u64(self.ledger_offset);
        out.put_u32(self.ledger_index);
        out.put_str(r.source_topic);
        out.put_u32(r.source_partition);
        out.put_u64(r.source_offset);
        out.put_u32(r.received_at_unix_s);
        out.put_u32(self.decided_at_unix_s);
        out.put_str(r.event_id);
        out.put_str(self.reason);
        out.put_str(self.detail);
        out.put_str(r.program.map_or("", |p| p.as_str()));
        out.put_str(r.unit_key);
        out.put_str(r.recipient_id);
        out.put_str(r.district_code);
        out.put_u32(r.occurred_at_unix_s);
        out.put_u16(r.local_date_days);
        out.put_i64(if self.reason.is_empty() {
            r.amount_fen
        } else {
            0
        });
        out.put_str(r.eligible_firm);
        out.put_str(r.note);
        out.put_u8(u8::from(self.voided));
        out.put_u64(self.voids_position);
    }
}

/// The encoded decision row `row` as a rejection for `reason` with `detail`, everything
/// else as the row said (the amount becomes 0: a rejection pays nothing); `None` if `row`
/// does not read as one decision row. Lets a batch replace a refused row without keeping
/// a second copy of every record it decided.
pub fn rejected_as(row: &[u8], reason: &str, detail: &str) -> Option<Vec<u8>> {
    let mut reader = RowBinaryReader::new(row);
    reader.skip(4 + 8 + 4)?; // ledger_partition, ledger_offset, ledger_index
    reader.skip_string()?; // topic
    reader.skip(4 + 8 + 4 + 4)?; // partition, offset, received_at, decided_at
    reader.skip_string()?; // event_id
    let reason_at = reader.position();
    reader.skip_string()?; // reason
    reader.skip_string()?; // detail
    let rest_at = reader.position();
    for _ in 0..4 {
        reader.skip_string()?; // program, unit_key, recipient_id, district_code
    }
    reader.skip(4 + 2)?; // occurred_at, local_date
    let amount_at = reader.position();
    reader.skip(8)?; // amount_fen
    let tail_at = reader.position();
    reader.skip_string()?; // eligible_firm
    reader.skip_string()?; // note
    reader.skip(1 + 8)?; // voided, voids_position
    if !reader.is_done() {
        return None;
    }
    let mut out = RowBinaryWriter::with_capacity(row.len() + reason.len() + detail.len());
    out.put_raw(&row[..reason_at]);
    out.put_str(reason);
    out.put_str(detail);
    out.put_raw(&row[rest_at..amount_at]);
    out.put_i64(0);
    out.put_raw(&row[tail_at..]);
    Some(out.into_inner())
}

/// Inserts one batch of encoded decision rows with a single INSERT (rows of a partition in
/// offset order, so a partial insert leaves a prefix, as for `outcomes`).
pub async fn insert_decisions(store: &Store, rows: Bytes) -> Result<(), StoreError> {
    insert_rows(store, "unit_decisions", &DECISION_COLUMNS, rows).await
}

/// The last decision stored for a units-topic partition: its offset and source.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct LastDecision {
    pub rows: u64,
    pub last_offset: u64,
    pub source_topic: String,
    pub source_partition: u32,
    pub source_offset: u64,
}

/// The last stored decision of a units-topic partition, or `None` when it has none.
pub async fn last_decision(
    store: &Store,
    ledger_partition: u32,
) -> Result<Option<LastDecision>, StoreError> {
    // argMax over the partition's rows: the primary key (ledger_partition, ledger_offset, …)
    // narrows the read to this partition's granules.
    let position = crate::route::LEDGER_POSITION_SQL;
    let statement = store.sql(&format!(
        "SELECT count() AS rows, max(ledger_offset) AS last_offset, \
                argMax(topic, {position}) AS source_topic, argMax(`partition`, {position}) AS source_partition, \
                argMax(`offset`, {position}) AS source_offset \
         FROM {{db}}.unit_decisions WHERE ledger_partition = {ledger_partition}"
    ));
    let last: LastDecision = store.fetch_one(&statement).await?;
    Ok((last.rows > 0).then_some(last))
}

/// The source of the last decision stored at `ledger_offset` of a units-topic partition
/// (the highest index of that message's set).
pub async fn decision_at(
    store: &Store,
    ledger_partition: u32,
    ledger_offset: u64,
) -> Result<Option<(String, u32, u64)>, StoreError> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct At {
        topic: String,
        partition: u32,
        offset: u64,
    }
    let statement = store.sql(&format!(
        "SELECT topic AS topic, `partition` AS `partition`, `offset` AS `offset` FROM {{db}}.unit_decisions \
         WHERE ledger_partition = {ledger_partition} AND ledger_offset = {ledger_offset} \
         ORDER BY ledger_index DESC LIMIT 1"
    ));
    let rows: Vec<At> = store.fetch_all(&statement).await?;
    Ok(rows
        .into_iter()
        .next()
        .map(|a| (a.topic, a.partition, a.offset)))
}

/// One stored unit of a units-topic partition, for restoring the ledger state.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct StoredDecision {
    pub ledger_offset: u64,
    pub ledger_index: u32,
    /// `''` for a unit, else the rejection.
    pub reason: String,
    pub program: String,
    pub unit_key: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// Streams the decisions of a units-topic partition from `from_offset` on.
pub async fn for_each_unit_since(
    store: &Store,
    ledger_partition: u32,
    from_offset: u64,
    mut visit: impl FnMut(StoredDecision),
) -> Result<u64, StoreError> {
    let statement = store.sql(&format!(
        "SELECT ledger_offset AS ledger_offset, ledger_index AS ledger_index, reason AS reason, program AS program, unit_key AS unit_key, \
                topic AS topic, `partition` AS `partition`, `offset` AS `offset` \
         FROM {{db}}.unit_decisions \
         WHERE ledger_partition = {ledger_partition} AND ledger_offset >= {from_offset}"
    ));
    let mut cursor = store
        .client()
        .query(&statement)
        .fetch::<StoredDecision>()
        .map_err(|e| store.classify(&statement, e))?;
    let mut count = 0u64;
    while let Some(row) = store.bounded(&statement, cursor.next()).await? {
        visit(row);
        count += 1;
    }
    Ok(count)
}

/// The largest position (`position_sql`: an offset, or a [`crate::route::ledger_position`])
/// stored in `table` for a partition at or after `from_offset`: how much of a batch landed
/// before an insert that failed ambiguously.
pub async fn stored_offsets(
    store: &Store,
    table: &str,
    partition_column: &str,
    position_sql: &str,
    topic: Option<&str>,
    partition: u32,
    from_offset: u64,
) -> Result<Option<u64>, StoreError> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Max {
        rows: u64,
        max_offset: u64,
    }
    let topic_filter = topic
        .map(|t| format!("topic = '{}' AND ", escape_literal(t)))
        .unwrap_or_default();
    let statement = store.sql(&format!(
        "SELECT count() AS rows, max({position_sql}) AS max_offset FROM {{db}}.{table} \
         WHERE {topic_filter}`{partition_column}` = {partition} AND {position_sql} >= {from_offset}"
    ));
    let max: Max = store.fetch_one(&statement).await?;
    Ok((max.rows > 0).then_some(max.max_offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proves_a_rejected_row_is_the_row_encoded_with_the_reason_and_no_amount() {
        let record = crate::route::UnitRecord {
            source_offset: 77,
            ..crate::route::sample_record()
        };
        let row = |reason, detail| {
            let mut out = RowBinaryWriter::default();
            DecisionRow {
                ledger_partition: 5,
                ledger_offset: 9,
                ledger_index: 2,
                record,
                decided_at_unix_s: 1_700_000_100,
                reason,
                detail,
                voided: false,
                voids_position: 3,
            }
            .encode(&mut out);
            out.into_inner()
        };
        let detail = "ClickHouse refused the outcome row: Code: 131";
        assert_eq!(
            rejected_as(&row("", ""), "storage_refused", detail),
            Some(row("storage_refused", detail))
        );
        let unit = row("", "");
        assert_eq!(
            rejected_as(&unit[..unit.len() - 1], "storage_refused", detail),
            None
        );
        let mut longer = unit.clone();
        longer.push(0);
        assert_eq!(rejected_as(&longer, "storage_refused", detail), None);
    }

    #[test]
    fn columns_match_the_migration() {
        let tables = crate::store::migrate::MIGRATIONS
            .iter()
            .find(|m| m.name == "0003_ledger.sql")
            .unwrap()
            .template;
        let start = tables
            .find("CREATE TABLE IF NOT EXISTS {db}.unit_decisions")
            .unwrap();
        let body = &tables[start..];
        let body = &body[body.find('(').unwrap() + 1..body.find("ENGINE").unwrap()];
        let declared: Vec<(String, String)> = body
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .filter(|l| !l.is_empty() && *l != ")" && !l.starts_with("--"))
            .map(|l| {
                let (name, ty) = l.split_once(' ').unwrap();
                (name.trim_matches('`').to_string(), ty.to_string())
            })
            .collect();
        let mut declared = declared;
        let added = crate::store::migrate::MIGRATIONS
            .iter()
            .find(|m| m.name == "0004_actions.sql")
            .unwrap()
            .template;
        for statement in crate::store::migrate::statements(added) {
            if let Some(("unit_decisions", column)) =
                crate::store::migrate::added_column(&statement)
            {
                let ty = statement
                    .split_whitespace()
                    .skip_while(|w| *w != column)
                    .nth(1)
                    .unwrap();
                declared.push((column.to_string(), ty.to_string()));
            }
        }
        let ours: Vec<(String, String)> = DECISION_COLUMNS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(declared, ours);
    }
}
