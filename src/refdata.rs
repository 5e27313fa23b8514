//! Reference data: firms, rural outlets and takeout zones (SPEC §4).
//!
//! This module holds the typed records, the in-memory [`RefData`] the rules look things up
//! in, the CSV parsers ([`parse_firms`], [`parse_outlets`], [`parse_zones`] and their
//! `load_*_file` wrappers) and the matching writers ([`firms_to_csv`] …).
//!
//! ## File format
//!
//! UTF-8 CSV (a leading byte-order mark is ignored) with a header row naming the columns.
//! Columns are matched by name, so their order is free; unknown extra columns are ignored;
//! a missing or repeated column is an error. A header-only file holds zero records; a file
//! without even a header is an error. Blank lines are skipped. Surrounding whitespace of
//! every value is trimmed. Values with commas (firm names) must be quoted.
//!
//! - ids (`firm_id`, `outlet_id`, `zone_id`, the outlet's `firm_id`): 1–64 characters of
//!   `[A-Za-z0-9._:-]`, unique within their file;
//! - `district_code`: 6 ASCII digits; `name`, `credit_code`, `village_code`: free text;
//! - booleans: exactly `true` or `false`; dates: `YYYY-MM-DD` (`last_major_penalty_on` may
//!   be empty);
//! - `zone_type`: `sealed`, `controlled` or `prevention`; `active_from` / `active_to`:
//!   RFC 3339 timestamps with an offset or `Z`, and `active_from <= active_to`.
//!
//! ## Errors
//!
//! The first problem found is returned as a [`RefDataError`] naming the file, the 1-based
//! physical line (the header is line 1; a quoted value spanning lines counts them all), the
//! column when one is involved, and what was expected. Any error rejects the whole file:
//! the parsers never return partial data.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// One row of `firms.csv`: a platform, express or postal firm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firm {
    pub firm_id: String,
    pub name: String,
    /// Unified social credit code (统一社会信用代码), kept for audit, not checked.
    pub credit_code: String,
    pub district_code: String,
    /// Article 18: an independent legal entity.
    pub legal_entity: bool,
    /// Article 18: holds its business licence.
    pub licensed: bool,
    /// Article 18: reports into the statistics monitoring platform.
    pub in_monitoring: bool,
    /// Date of the last major penalty; the firm is ineligible for one year from it.
    pub last_major_penalty_on: Option<NaiveDate>,
}

/// One row of `outlets.csv`: a rural delivery outlet of a firm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlet {
    pub outlet_id: String,
    pub firm_id: String,
    pub district_code: String,
    pub village_code: String,
    /// Eligible for deliveries on `enrolled_on <= d < enrolled_on + 3 years`.
    pub enrolled_on: NaiveDate,
}

/// `zone_type` of a takeout zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneType {
    /// 封控区.
    Sealed,
    /// 管控区.
    Controlled,
    /// 防范区.
    Prevention,
}

impl ZoneType {
    /// The CSV spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneType::Sealed => "sealed",
            ZoneType::Controlled => "controlled",
            ZoneType::Prevention => "prevention",
        }
    }
}

/// One row of `zones.csv`: a locked-down zone and the instants it was active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub zone_id: String,
    pub zone_type: ZoneType,
    pub district_code: String,
    /// Active for `active_from <= occurred_at <= active_to` (both inclusive).
    pub active_from: DateTime<FixedOffset>,
    pub active_to: DateTime<FixedOffset>,
}

/// All reference data the rules need, indexed by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefData {
    pub firms: HashMap<String, Firm>,
    pub outlets: HashMap<String, Outlet>,
    pub zones: HashMap<String, Zone>,
}

impl RefData {
    /// Indexes records by their id. The parsers reject duplicate ids; for hand-built lists
    /// with a repeated id, the later record wins.
    pub fn from_records(firms: Vec<Firm>, outlets: Vec<Outlet>, zones: Vec<Zone>) -> RefData {
        RefData {
            firms: firms.into_iter().map(|f| (f.firm_id.clone(), f)).collect(),
            outlets: outlets
                .into_iter()
                .map(|o| (o.outlet_id.clone(), o))
                .collect(),
            zones: zones.into_iter().map(|z| (z.zone_id.clone(), z)).collect(),
        }
    }
}

/// What went wrong, where: file, 1-based line number (the header is line 1), the field
/// (column name) if any, and the reason.
///
/// `file` is the label the caller gave (for the `load_*_file` functions, the path as given).
/// `got` values are the trimmed cell text, cut to 100 characters.
#[derive(Debug, thiserror::Error)]
pub enum RefDataError {
    /// The file could not be opened or read.
    #[error("{file}: cannot read the file: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no header row at all (it is empty or only blank lines).
    #[error("{file} line {line}: no header row (the file is empty); the first line must be the header {expected}")]
    NoHeader {
        file: String,
        line: u64,
        /// The expected header, e.g. `zone_id,zone_type,district_code,active_from,active_to`.
        expected: String,
    },
    /// A required column is not named in the header.
    #[error("{file} line {line}: missing column \"{column}\"; the header must name the columns {expected}")]
    MissingColumn {
        file: String,
        line: u64,
        column: String,
        expected: String,
    },
    /// A required column is named twice in the header, so its value would be ambiguous.
    #[error("{file} line {line}: column \"{column}\" appears more than once in the header; keep only one")]
    DuplicateColumn {
        file: String,
        line: u64,
        column: String,
    },
    /// Bytes that are not valid UTF-8; `field` is `None` in the header row.
    #[error("{file} line {line}{}: not valid UTF-8; save the file as UTF-8", field_part(.field.as_deref()))]
    NotUtf8 {
        file: String,
        line: u64,
        field: Option<String>,
    },
    /// A row has a different number of fields than the header.
    #[error("{file} line {line}: expected {expected} fields (one per header column), got {got}; look for a missing or extra comma, or a value with a comma that is not quoted")]
    FieldCount {
        file: String,
        line: u64,
        expected: usize,
        got: usize,
    },
    /// The CSV reader itself failed (not expected for in-memory data; kept so nothing is lost).
    #[error("{file} line {line}: malformed CSV: {reason}")]
    Csv {
        file: String,
        line: u64,
        reason: String,
    },
    /// A boolean column holds something other than `true` or `false`.
    #[error("{file} line {line}, field \"{field}\": expected true or false, got {got:?}")]
    BadBool {
        file: String,
        line: u64,
        field: String,
        got: String,
    },
    /// A date column holds something other than a valid `YYYY-MM-DD` date (or is empty
    /// where a date is required).
    #[error("{file} line {line}, field \"{field}\": expected {expected}, got {got:?}")]
    BadDate {
        file: String,
        line: u64,
        field: String,
        /// `a date YYYY-MM-DD` or `a date YYYY-MM-DD or empty`.
        expected: &'static str,
        got: String,
    },
    /// A timestamp column holds something that is not an RFC 3339 timestamp.
    #[error("{file} line {line}, field \"{field}\": expected an RFC 3339 timestamp with offset, such as 2022-04-01T08:00:00+08:00 or 2022-04-01T00:00:00Z, got {got:?}")]
    BadTimestamp {
        file: String,
        line: u64,
        field: String,
        got: String,
    },
    /// A timestamp is well formed but has no UTC offset, so its instant is unknown.
    #[error("{file} line {line}, field \"{field}\": timestamp {got:?} has no UTC offset; add one, e.g. +08:00 for Hangzhou local time or Z for UTC")]
    TimestampWithoutOffset {
        file: String,
        line: u64,
        field: String,
        got: String,
    },
    /// `zone_type` is not one of `sealed`, `controlled`, `prevention`.
    #[error("{file} line {line}, field \"{field}\": expected sealed, controlled or prevention, got {got:?}")]
    BadZoneType {
        file: String,
        line: u64,
        field: String,
        got: String,
    },
    /// An id is not 1–64 characters of `[A-Za-z0-9._:-]`.
    #[error("{file} line {line}, field \"{field}\": expected an identifier of 1-64 characters from A-Z a-z 0-9 . _ : -, got {got:?}")]
    BadIdentifier {
        file: String,
        line: u64,
        field: String,
        got: String,
    },
    /// `district_code` is not 6 ASCII digits.
    #[error("{file} line {line}, field \"{field}\": expected a district code of 6 digits such as 330106, got {got:?}")]
    BadDistrict {
        file: String,
        line: u64,
        field: String,
        got: String,
    },
    /// A zone's `active_to` is before its `active_from`; `field` is `active_to`.
    #[error("{file} line {line}, field \"{field}\": active_to {active_to} is before active_from {active_from}; a zone must end at or after its start")]
    ZoneEndsBeforeStart {
        file: String,
        line: u64,
        field: String,
        active_from: String,
        active_to: String,
    },
    /// An id appears on more than one row of the same file.
    #[error("{file} line {line}, field \"{field}\": duplicate id {id:?}, already used on line {first_line}; each id must appear only once")]
    DuplicateId {
        file: String,
        line: u64,
        field: String,
        id: String,
        /// The line where the id first appeared.
        first_line: u64,
    },
}

fn field_part(field: Option<&str>) -> String {
    match field {
        Some(f) => format!(", field \"{f}\""),
        None => String::new(),
    }
}

impl RefDataError {
    /// The file label the error is about.
    pub fn file(&self) -> &str {
        match self {
            RefDataError::Io { file, .. }
            | RefDataError::NoHeader { file, .. }
            | RefDataError::MissingColumn { file, .. }
            | RefDataError::DuplicateColumn { file, .. }
            | RefDataError::NotUtf8 { file, .. }
            | RefDataError::FieldCount { file, .. }
            | RefDataError::Csv { file, .. }
            | RefDataError::BadBool { file, .. }
            | RefDataError::BadDate { file, .. }
            | RefDataError::BadTimestamp { file, .. }
            | RefDataError::TimestampWithoutOffset { file, .. }
            | RefDataError::BadZoneType { file, .. }
            | RefDataError::BadIdentifier { file, .. }
            | RefDataError::BadDistrict { file, .. }
            | RefDataError::ZoneEndsBeforeStart { file, .. }
            | RefDataError::DuplicateId { file, .. } => file,
        }
    }

    /// The 1-based line, or `None` for I/O errors.
    pub fn line(&self) -> Option<u64> {
        match self {
            RefDataError::Io { .. } => None,
            RefDataError::NoHeader { line, .. }
            | RefDataError::MissingColumn { line, .. }
            | RefDataError::DuplicateColumn { line, .. }
            | RefDataError::NotUtf8 { line, .. }
            | RefDataError::FieldCount { line, .. }
            | RefDataError::Csv { line, .. }
            | RefDataError::BadBool { line, .. }
            | RefDataError::BadDate { line, .. }
            | RefDataError::BadTimestamp { line, .. }
            | RefDataError::TimestampWithoutOffset { line, .. }
            | RefDataError::BadZoneType { line, .. }
            | RefDataError::BadIdentifier { line, .. }
            | RefDataError::BadDistrict { line, .. }
            | RefDataError::ZoneEndsBeforeStart { line, .. }
            | RefDataError::DuplicateId { line, .. } => Some(*line),
        }
    }

    /// The column involved, if the error is about one value.
    pub fn field(&self) -> Option<&str> {
        match self {
            RefDataError::NotUtf8 { field, .. } => field.as_deref(),
            RefDataError::BadBool { field, .. }
            | RefDataError::BadDate { field, .. }
            | RefDataError::BadTimestamp { field, .. }
            | RefDataError::TimestampWithoutOffset { field, .. }
            | RefDataError::BadZoneType { field, .. }
            | RefDataError::BadIdentifier { field, .. }
            | RefDataError::BadDistrict { field, .. }
            | RefDataError::ZoneEndsBeforeStart { field, .. }
            | RefDataError::DuplicateId { field, .. } => Some(field),
            _ => None,
        }
    }
}

const FIRM_COLUMNS: &[&str] = &[
    "firm_id",
    "name",
    "credit_code",
    "district_code",
    "legal_entity",
    "licensed",
    "in_monitoring",
    "last_major_penalty_on",
];
const OUTLET_COLUMNS: &[&str] = &[
    "outlet_id",
    "firm_id",
    "district_code",
    "village_code",
    "enrolled_on",
];
const ZONE_COLUMNS: &[&str] = &[
    "zone_id",
    "zone_type",
    "district_code",
    "active_from",
    "active_to",
];

/// Longest `got` value kept in an error, in characters.
const SHOWN_CHARS: usize = 100;

/// Parses `firms.csv` content. `file_label` names the file in errors.
///
/// # Errors
///
/// The first problem in the content, as a [`RefDataError`]; nothing is returned then.
pub fn parse_firms(file_label: &str, reader: impl Read) -> Result<Vec<Firm>, RefDataError> {
    let rows = read_rows(file_label, reader, FIRM_COLUMNS)?;
    let mut ids = IdSet::default();
    let mut firms = Vec::with_capacity(rows.len());
    for row in &rows {
        let firm_id = row.cell("firm_id").identifier()?;
        ids.insert(&row.cell("firm_id"), &firm_id)?;
        firms.push(Firm {
            firm_id,
            name: row.cell("name").text(),
            credit_code: row.cell("credit_code").text(),
            district_code: row.cell("district_code").district()?,
            legal_entity: row.cell("legal_entity").boolean()?,
            licensed: row.cell("licensed").boolean()?,
            in_monitoring: row.cell("in_monitoring").boolean()?,
            last_major_penalty_on: row.cell("last_major_penalty_on").optional_date()?,
        });
    }
    Ok(firms)
}

/// Parses `outlets.csv` content. `file_label` names the file in errors.
///
/// # Errors
///
/// The first problem in the content, as a [`RefDataError`]; nothing is returned then.
pub fn parse_outlets(file_label: &str, reader: impl Read) -> Result<Vec<Outlet>, RefDataError> {
    let rows = read_rows(file_label, reader, OUTLET_COLUMNS)?;
    let mut ids = IdSet::default();
    let mut outlets = Vec::with_capacity(rows.len());
    for row in &rows {
        let outlet_id = row.cell("outlet_id").identifier()?;
        ids.insert(&row.cell("outlet_id"), &outlet_id)?;
        outlets.push(Outlet {
            outlet_id,
            firm_id: row.cell("firm_id").identifier()?,
            district_code: row.cell("district_code").district()?,
            village_code: row.cell("village_code").text(),
            enrolled_on: row.cell("enrolled_on").date()?,
        });
    }
    Ok(outlets)
}

/// Parses `zones.csv` content. `file_label` names the file in errors.
///
/// # Errors
///
/// The first problem in the content, as a [`RefDataError`]; nothing is returned then.
pub fn parse_zones(file_label: &str, reader: impl Read) -> Result<Vec<Zone>, RefDataError> {
    let rows = read_rows(file_label, reader, ZONE_COLUMNS)?;
    let mut ids = IdSet::default();
    let mut zones = Vec::with_capacity(rows.len());
    for row in &rows {
        let zone_id = row.cell("zone_id").identifier()?;
        ids.insert(&row.cell("zone_id"), &zone_id)?;
        let zone_type = row.cell("zone_type").zone_type()?;
        let district_code = row.cell("district_code").district()?;
        let from_cell = row.cell("active_from");
        let to_cell = row.cell("active_to");
        let active_from = from_cell.timestamp()?;
        let active_to = to_cell.timestamp()?;
        if active_from > active_to {
            return Err(RefDataError::ZoneEndsBeforeStart {
                file: file_label.to_string(),
                line: row.line,
                field: "active_to".to_string(),
                active_from: shown(from_cell.value),
                active_to: shown(to_cell.value),
            });
        }
        zones.push(Zone {
            zone_id,
            zone_type,
            district_code,
            active_from,
            active_to,
        });
    }
    Ok(zones)
}

/// Reads and parses a firms file; errors name the file by `path` as given.
pub fn load_firms_file(path: &Path) -> Result<Vec<Firm>, RefDataError> {
    let label = path.display().to_string();
    parse_firms(&label, open(&label, path)?)
}

/// Reads and parses an outlets file; errors name the file by `path` as given.
pub fn load_outlets_file(path: &Path) -> Result<Vec<Outlet>, RefDataError> {
    let label = path.display().to_string();
    parse_outlets(&label, open(&label, path)?)
}

/// Reads and parses a zones file; errors name the file by `path` as given.
pub fn load_zones_file(path: &Path) -> Result<Vec<Zone>, RefDataError> {
    let label = path.display().to_string();
    parse_zones(&label, open(&label, path)?)
}

fn open(label: &str, path: &Path) -> Result<std::fs::File, RefDataError> {
    std::fs::File::open(path).map_err(|source| RefDataError::Io {
        file: label.to_string(),
        source,
    })
}

/// Writes firms as CSV (header + one row each), in the format [`parse_firms`] reads.
pub fn firms_to_csv(firms: &[Firm]) -> String {
    write_csv(
        FIRM_COLUMNS,
        firms.iter().map(|f| {
            vec![
                f.firm_id.clone(),
                f.name.clone(),
                f.credit_code.clone(),
                f.district_code.clone(),
                f.legal_entity.to_string(),
                f.licensed.to_string(),
                f.in_monitoring.to_string(),
                f.last_major_penalty_on
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
            ]
        }),
    )
}

/// Writes outlets as CSV (header + one row each), in the format [`parse_outlets`] reads.
pub fn outlets_to_csv(outlets: &[Outlet]) -> String {
    write_csv(
        OUTLET_COLUMNS,
        outlets.iter().map(|o| {
            vec![
                o.outlet_id.clone(),
                o.firm_id.clone(),
                o.district_code.clone(),
                o.village_code.clone(),
                o.enrolled_on.format("%Y-%m-%d").to_string(),
            ]
        }),
    )
}

/// Writes zones as CSV (header + one row each), in the format [`parse_zones`] reads.
pub fn zones_to_csv(zones: &[Zone]) -> String {
    write_csv(
        ZONE_COLUMNS,
        zones.iter().map(|z| {
            vec![
                z.zone_id.clone(),
                z.zone_type.as_str().to_string(),
                z.district_code.clone(),
                z.active_from.to_rfc3339(),
                z.active_to.to_rfc3339(),
            ]
        }),
    )
}

fn write_csv(columns: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail, and the input is all `String`s, so the output is UTF-8.
    w.write_record(columns).expect("CSV write to memory");
    for row in rows {
        w.write_record(&row).expect("CSV write to memory");
    }
    let bytes = w.into_inner().expect("CSV flush to memory");
    String::from_utf8(bytes).expect("CSV of UTF-8 strings is UTF-8")
}

/// One data row: its physical line and the trimmed values of the wanted columns, in the
/// order of `columns`.
struct Row<'a> {
    file: &'a str,
    columns: &'static [&'static str],
    line: u64,
    values: Vec<String>,
}

impl Row<'_> {
    /// The cell of column `field`, which must be one of `columns`.
    fn cell(&self, field: &'static str) -> Cell<'_> {
        let i = self
            .columns
            .iter()
            .position(|c| *c == field)
            .expect("cell() is only asked for this file's own columns");
        Cell {
            file: self.file,
            line: self.line,
            field,
            value: &self.values[i],
        }
    }
}

/// One trimmed value with enough context to report an error about it.
struct Cell<'a> {
    file: &'a str,
    line: u64,
    field: &'static str,
    value: &'a str,
}

impl Cell<'_> {
    fn text(&self) -> String {
        self.value.to_string()
    }

    fn identifier(&self) -> Result<String, RefDataError> {
        if is_identifier(self.value) {
            Ok(self.text())
        } else {
            Err(RefDataError::BadIdentifier {
                file: self.file.to_string(),
                line: self.line,
                field: self.field.to_string(),
                got: shown(self.value),
            })
        }
    }

    fn district(&self) -> Result<String, RefDataError> {
        if self.value.len() == 6 && self.value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(self.text())
        } else {
            Err(RefDataError::BadDistrict {
                file: self.file.to_string(),
                line: self.line,
                field: self.field.to_string(),
                got: shown(self.value),
            })
        }
    }

    fn boolean(&self) -> Result<bool, RefDataError> {
        match self.value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(RefDataError::BadBool {
                file: self.file.to_string(),
                line: self.line,
                field: self.field.to_string(),
                got: shown(self.value),
            }),
        }
    }

    fn date(&self) -> Result<NaiveDate, RefDataError> {
        parse_date(self.value).ok_or_else(|| self.bad_date("a date YYYY-MM-DD"))
    }

    fn optional_date(&self) -> Result<Option<NaiveDate>, RefDataError> {
        if self.value.is_empty() {
            return Ok(None);
        }
        parse_date(self.value)
            .map(Some)
            .ok_or_else(|| self.bad_date("a date YYYY-MM-DD or empty"))
    }

    fn bad_date(&self, expected: &'static str) -> RefDataError {
        RefDataError::BadDate {
            file: self.file.to_string(),
            line: self.line,
            field: self.field.to_string(),
            expected,
            got: shown(self.value),
        }
    }

    fn timestamp(&self) -> Result<DateTime<FixedOffset>, RefDataError> {
        if let Ok(t) = DateTime::parse_from_rfc3339(self.value) {
            return Ok(t);
        }
        let (file, line, field, got) = (
            self.file.to_string(),
            self.line,
            self.field.to_string(),
            shown(self.value),
        );
        let without_offset = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .any(|f| NaiveDateTime::parse_from_str(self.value, f).is_ok());
        Err(if without_offset {
            RefDataError::TimestampWithoutOffset {
                file,
                line,
                field,
                got,
            }
        } else {
            RefDataError::BadTimestamp {
                file,
                line,
                field,
                got,
            }
        })
    }

    fn zone_type(&self) -> Result<ZoneType, RefDataError> {
        [ZoneType::Sealed, ZoneType::Controlled, ZoneType::Prevention]
            .into_iter()
            .find(|t| t.as_str() == self.value)
            .ok_or_else(|| RefDataError::BadZoneType {
                file: self.file.to_string(),
                line: self.line,
                field: self.field.to_string(),
                got: shown(self.value),
            })
    }
}

/// Ids seen so far in one file, with the line each was first seen on.
#[derive(Default)]
struct IdSet(HashMap<String, u64>);

impl IdSet {
    fn insert(&mut self, cell: &Cell<'_>, id: &str) -> Result<(), RefDataError> {
        if let Some(&first_line) = self.0.get(id) {
            return Err(RefDataError::DuplicateId {
                file: cell.file.to_string(),
                line: cell.line,
                field: cell.field.to_string(),
                id: id.to_string(),
                first_line,
            });
        }
        self.0.insert(id.to_string(), cell.line);
        Ok(())
    }
}

/// SPEC §3 identifier: 1–64 characters of `[A-Za-z0-9._:-]`.
fn is_identifier(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Strict `YYYY-MM-DD` (chrono alone would also take `2022-5-1` or `+2022-05-01`).
fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape_ok {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// A value as shown in an error: cut to [`SHOWN_CHARS`] characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// Counts physical lines (`\n`, `\r\n` or a lone `\r` end one) while walking forward
/// through the file.
struct LineCounter<'a> {
    data: &'a [u8],
    pos: usize,
    line: u64,
}

impl LineCounter<'_> {
    /// The line of the first byte at or after `start` that is not a line break: where a
    /// record that the CSV reader began reading at `start` really starts (it skips blank
    /// lines and the rest of the previous record's terminator first).
    fn record_line(&mut self, start: usize) -> u64 {
        let mut start = start.min(self.data.len());
        while start < self.data.len() && matches!(self.data[start], b'\r' | b'\n') {
            start += 1;
        }
        self.advance_to(start);
        self.line
    }

    fn advance_to(&mut self, target: usize) {
        while self.pos < target {
            match self.data[self.pos] {
                b'\n' => self.line += 1,
                b'\r' if self.data.get(self.pos + 1) != Some(&b'\n') => self.line += 1,
                _ => {}
            }
            self.pos += 1;
        }
    }
}

/// Reads the whole input, checks the header against `columns` and every row's shape and
/// encoding, and returns the trimmed values of `columns` for each data row.
fn read_rows<'a>(
    file: &'a str,
    mut reader: impl Read,
    columns: &'static [&'static str],
) -> Result<Vec<Row<'a>>, RefDataError> {
    let mut data = Vec::new();
    reader
        .read_to_end(&mut data)
        .map_err(|source| RefDataError::Io {
            file: file.to_string(),
            source,
        })?;
    let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&data);
    let mut lines = LineCounter {
        data: body,
        pos: 0,
        line: 1,
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut record = csv::ByteRecord::new();
    let mut next = |record: &mut csv::ByteRecord, lines: &mut LineCounter| {
        let start = lines.pos;
        match csv.read_byte_record(record) {
            Ok(true) => {
                let at = record
                    .position()
                    .and_then(|p| usize::try_from(p.byte()).ok())
                    .unwrap_or(start);
                Ok(Some(lines.record_line(at)))
            }
            Ok(false) => Ok(None),
            Err(e) => Err(RefDataError::Csv {
                file: file.to_string(),
                line: lines.record_line(start),
                reason: e.to_string(),
            }),
        }
    };

    let expected = columns.join(",");
    let Some(header_line) = next(&mut record, &mut lines)? else {
        return Err(RefDataError::NoHeader {
            file: file.to_string(),
            line: 1,
            expected,
        });
    };
    let mut header = Vec::with_capacity(record.len());
    for raw in record.iter() {
        let name = std::str::from_utf8(raw).map_err(|_| RefDataError::NotUtf8 {
            file: file.to_string(),
            line: header_line,
            field: None,
        })?;
        header.push(name.trim().to_string());
    }
    let mut index = Vec::with_capacity(columns.len());
    for column in columns {
        let mut found = header.iter().enumerate().filter(|(_, h)| h == column);
        match (found.next(), found.next()) {
            (Some((i, _)), None) => index.push(i),
            (Some(_), Some(_)) => {
                return Err(RefDataError::DuplicateColumn {
                    file: file.to_string(),
                    line: header_line,
                    column: column.to_string(),
                })
            }
            (None, _) => {
                return Err(RefDataError::MissingColumn {
                    file: file.to_string(),
                    line: header_line,
                    column: column.to_string(),
                    expected,
                })
            }
        }
    }

    let mut rows = Vec::new();
    while let Some(line) = next(&mut record, &mut lines)? {
        if record.len() != header.len() {
            return Err(RefDataError::FieldCount {
                file: file.to_string(),
                line,
                expected: header.len(),
                got: record.len(),
            });
        }
        let mut text = Vec::with_capacity(record.len());
        for (raw, name) in record.iter().zip(&header) {
            let value = std::str::from_utf8(raw).map_err(|_| RefDataError::NotUtf8 {
                file: file.to_string(),
                line,
                field: Some(name.clone()),
            })?;
            text.push(value);
        }
        rows.push(Row {
            file,
            columns,
            line,
            values: index.iter().map(|&i| text[i].trim().to_string()).collect(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRM_HEADER: &str = "firm_id,name,credit_code,district_code,legal_entity,licensed,in_monitoring,last_major_penalty_on";
    const OUTLET_HEADER: &str = "outlet_id,firm_id,district_code,village_code,enrolled_on";
    const ZONE_HEADER: &str = "zone_id,zone_type,district_code,active_from,active_to";
    const FIRM_ROW: &str = "F1,顺丰速运,91330100MA2XXXXX1A,330106,true,true,true,";
    const OUTLET_ROW: &str = "O1,F1,330127,330127101,2022-03-01";
    const ZONE_ROW: &str = "Z1,sealed,330106,2022-04-01T00:00:00+08:00,2022-04-14T23:59:59+08:00";

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn ts(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn firm(id: &str, name: &str) -> Firm {
        Firm {
            firm_id: id.to_string(),
            name: name.to_string(),
            credit_code: "91330100MA2XXXXX1A".to_string(),
            district_code: "330106".to_string(),
            legal_entity: true,
            licensed: true,
            in_monitoring: true,
            last_major_penalty_on: None,
        }
    }

    fn firms_err(csv: &str) -> RefDataError {
        parse_firms("firms.csv", csv.as_bytes()).expect_err("firms.csv should be rejected")
    }

    fn outlets_err(csv: &str) -> RefDataError {
        parse_outlets("outlets.csv", csv.as_bytes()).expect_err("outlets.csv should be rejected")
    }

    fn zones_err(csv: &str) -> RefDataError {
        parse_zones("zones.csv", csv.as_bytes()).expect_err("zones.csv should be rejected")
    }

    /// Asserts file, line and field both through the accessors and in the message, and
    /// returns the message for further checks.
    fn check(err: &RefDataError, file: &str, line: u64, field: Option<&str>) -> String {
        let msg = err.to_string();
        assert_eq!(err.file(), file, "{msg}");
        assert_eq!(err.line(), Some(line), "{msg}");
        assert_eq!(err.field(), field, "{msg}");
        let prefix = match field {
            Some(f) => format!("{file} line {line}, field \"{f}\": "),
            None => format!("{file} line {line}: "),
        };
        assert!(
            msg.starts_with(&prefix),
            "{msg:?} should start with {prefix:?}"
        );
        msg
    }

    #[test]
    fn firms_round_trip() {
        let firms = vec![
            Firm {
                last_major_penalty_on: Some(date("2021-09-30")),
                ..firm("F1", "顺丰速运（杭州）有限公司, 西湖分公司")
            },
            Firm {
                legal_entity: false,
                in_monitoring: false,
                credit_code: String::new(),
                ..firm("pdd.express:2", "Quote \"q\" and, comma")
            },
            Firm {
                licensed: false,
                district_code: "330127".to_string(),
                ..firm("F-3_x", "两行\n名称")
            },
        ];
        let csv = firms_to_csv(&firms);
        assert!(csv.starts_with(&format!("{FIRM_HEADER}\n")), "{csv}");
        assert!(
            csv.contains("\"顺丰速运（杭州）有限公司, 西湖分公司\""),
            "{csv}"
        );
        assert_eq!(parse_firms("firms.csv", csv.as_bytes()).unwrap(), firms);
    }

    #[test]
    fn outlets_round_trip() {
        let outlets = vec![
            Outlet {
                outlet_id: "O1".to_string(),
                firm_id: "F1".to_string(),
                district_code: "330127".to_string(),
                village_code: "330127101001".to_string(),
                enrolled_on: date("2022-03-01"),
            },
            Outlet {
                outlet_id: "O2".to_string(),
                firm_id: "F1".to_string(),
                district_code: "330182".to_string(),
                village_code: "下涯村".to_string(),
                enrolled_on: date("2019-12-31"),
            },
        ];
        let csv = outlets_to_csv(&outlets);
        assert!(csv.starts_with(&format!("{OUTLET_HEADER}\n")), "{csv}");
        assert_eq!(
            parse_outlets("outlets.csv", csv.as_bytes()).unwrap(),
            outlets
        );
    }

    #[test]
    fn zones_round_trip() {
        let zones = vec![
            Zone {
                zone_id: "Z1".to_string(),
                zone_type: ZoneType::Sealed,
                district_code: "330106".to_string(),
                active_from: ts("2022-04-01T00:00:00+08:00"),
                active_to: ts("2022-04-14T23:59:59.5+08:00"),
            },
            Zone {
                zone_id: "Z2".to_string(),
                zone_type: ZoneType::Controlled,
                district_code: "330110".to_string(),
                active_from: ts("2022-05-01T00:00:00Z"),
                active_to: ts("2022-05-01T00:00:00Z"),
            },
            Zone {
                zone_id: "Z3".to_string(),
                zone_type: ZoneType::Prevention,
                district_code: "330114".to_string(),
                active_from: ts("2022-06-01T00:00:00-05:00"),
                active_to: ts("2022-12-31T23:59:59+08:00"),
            },
        ];
        let csv = zones_to_csv(&zones);
        assert!(csv.starts_with(&format!("{ZONE_HEADER}\n")), "{csv}");
        let back = parse_zones("zones.csv", csv.as_bytes()).unwrap();
        assert_eq!(back, zones);
        assert_eq!(back[0].active_from.offset().local_minus_utc(), 8 * 3600);
    }

    #[test]
    fn from_records_indexes_by_id() {
        let outlet = Outlet {
            outlet_id: "O1".to_string(),
            firm_id: "F1".to_string(),
            district_code: "330127".to_string(),
            village_code: String::new(),
            enrolled_on: date("2022-03-01"),
        };
        let zone = Zone {
            zone_id: "Z1".to_string(),
            zone_type: ZoneType::Sealed,
            district_code: "330106".to_string(),
            active_from: ts("2022-04-01T00:00:00+08:00"),
            active_to: ts("2022-04-02T00:00:00+08:00"),
        };
        let rd = RefData::from_records(
            vec![firm("F1", "a"), firm("F2", "b")],
            vec![outlet.clone()],
            vec![zone.clone()],
        );
        assert_eq!(rd.firms.len(), 2);
        assert_eq!(rd.firms["F2"].name, "b");
        assert_eq!(rd.outlets["O1"], outlet);
        assert_eq!(rd.zones["Z1"], zone);
        assert_eq!(
            RefData::from_records(vec![], vec![], vec![]),
            RefData::default()
        );
    }

    #[test]
    fn columns_by_name_extra_columns_bom_crlf_and_whitespace() {
        let csv = "\u{FEFF}note, in_monitoring ,licensed,legal_entity,district_code,credit_code,name,firm_id,last_major_penalty_on\r\n\
                   x, true ,false,true,330102,C1,\"杭州, 某公司\", F9 , 2022-01-05 \r\n\
                   \r\n\
                   y,false,true,false,330102,,名,F10,\r\n";
        let firms = parse_firms("firms.csv", csv.as_bytes()).unwrap();
        assert_eq!(
            firms,
            vec![
                Firm {
                    firm_id: "F9".to_string(),
                    name: "杭州, 某公司".to_string(),
                    credit_code: "C1".to_string(),
                    district_code: "330102".to_string(),
                    legal_entity: true,
                    licensed: false,
                    in_monitoring: true,
                    last_major_penalty_on: Some(date("2022-01-05")),
                },
                Firm {
                    firm_id: "F10".to_string(),
                    name: "名".to_string(),
                    credit_code: String::new(),
                    district_code: "330102".to_string(),
                    legal_entity: false,
                    licensed: true,
                    in_monitoring: false,
                    last_major_penalty_on: None,
                },
            ]
        );
        // Line numbers after a BOM, CRLF endings and a blank line are physical lines.
        let bad = format!(
            "\u{FEFF}{FIRM_HEADER}\r\n{FIRM_ROW}\r\n\r\nF2,n,c,330106,true,maybe,true,\r\n"
        );
        check(&firms_err(&bad), "firms.csv", 4, Some("licensed"));
    }

    #[test]
    fn header_only_is_empty_not_an_error() {
        assert_eq!(parse_firms("f", FIRM_HEADER.as_bytes()).unwrap(), vec![]);
        assert_eq!(
            parse_outlets("o", format!("{OUTLET_HEADER}\n").as_bytes()).unwrap(),
            vec![]
        );
        assert_eq!(
            parse_zones("z", format!("\u{FEFF}{ZONE_HEADER}\r\n\r\n").as_bytes()).unwrap(),
            vec![]
        );
    }

    #[test]
    fn empty_file_has_no_header() {
        for content in ["", "\u{FEFF}", "\n\n", "\r\n"] {
            let err = firms_err(content);
            let msg = check(&err, "firms.csv", 1, None);
            assert!(matches!(err, RefDataError::NoHeader { .. }), "{err:?}");
            assert!(msg.contains("no header row"), "{msg}");
            assert!(msg.contains(FIRM_HEADER), "{msg}");
        }
        let err = zones_err("");
        check(&err, "zones.csv", 1, None);
        assert!(err.to_string().contains(ZONE_HEADER));
        check(&outlets_err(""), "outlets.csv", 1, None);
    }

    #[test]
    fn bad_boolean() {
        let mut csv = format!("{FIRM_HEADER}\n");
        for i in 2..7 {
            csv.push_str(&format!("F{i},n,c,330106,true,true,true,\n"));
        }
        csv.push_str("F7,n,c,330106,true,yes,true,\n");
        let err = firms_err(&csv);
        assert!(matches!(err, RefDataError::BadBool { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            r#"firms.csv line 7, field "licensed": expected true or false, got "yes""#
        );
        for (row, field) in [
            ("F1,n,c,330106,TRUE,true,true,", "legal_entity"),
            ("F1,n,c,330106,true,true,1,", "in_monitoring"),
            ("F1,n,c,330106,true,,true,", "licensed"),
        ] {
            check(
                &firms_err(&format!("{FIRM_HEADER}\n{row}\n")),
                "firms.csv",
                2,
                Some(field),
            );
        }
    }

    #[test]
    fn bad_date() {
        for bad in [
            "2022-02-30",
            "2022/01/05",
            "2022-1-5",
            "+2022-01-05",
            "05.01.2022",
        ] {
            let err = firms_err(&format!(
                "{FIRM_HEADER}\n{FIRM_ROW}\nF2,n,c,330106,true,true,true,{bad}\n"
            ));
            let msg = check(&err, "firms.csv", 3, Some("last_major_penalty_on"));
            assert!(matches!(err, RefDataError::BadDate { .. }), "{err:?}");
            assert!(msg.contains("expected a date YYYY-MM-DD or empty"), "{msg}");
            assert!(msg.contains(&format!("got \"{bad}\"")), "{msg}");
        }
        // enrolled_on is required.
        let err = outlets_err(&format!("{OUTLET_HEADER}\nO1,F1,330127,v,\n"));
        let msg = check(&err, "outlets.csv", 2, Some("enrolled_on"));
        assert_eq!(
            msg,
            r#"outlets.csv line 2, field "enrolled_on": expected a date YYYY-MM-DD, got """#
        );
    }

    #[test]
    fn missing_column() {
        let header = FIRM_HEADER.replace(",licensed", "");
        let err = firms_err(&format!("{header}\nF1,n,c,330106,true,true,\n"));
        let msg = check(&err, "firms.csv", 1, None);
        assert!(matches!(err, RefDataError::MissingColumn { .. }), "{err:?}");
        assert!(msg.contains(r#"missing column "licensed""#), "{msg}");
        assert!(msg.contains(FIRM_HEADER), "{msg}");

        let err = zones_err("zone_id,zone_type,district_code,active_from\n");
        let msg = check(&err, "zones.csv", 1, None);
        assert!(msg.contains(r#"missing column "active_to""#), "{msg}");

        // Column names are exact.
        let err = outlets_err("Outlet_ID,firm_id,district_code,village_code,enrolled_on\n");
        let msg = check(&err, "outlets.csv", 1, None);
        assert!(msg.contains(r#"missing column "outlet_id""#), "{msg}");
    }

    #[test]
    fn duplicate_column() {
        let err = outlets_err(&format!("{OUTLET_HEADER},firm_id\n"));
        let msg = check(&err, "outlets.csv", 1, None);
        assert!(
            matches!(err, RefDataError::DuplicateColumn { .. }),
            "{err:?}"
        );
        assert!(
            msg.contains(r#"column "firm_id" appears more than once"#),
            "{msg}"
        );
        // Repeated unknown columns are ignored like any unknown column.
        let csv = format!("{OUTLET_HEADER},note,note\n{OUTLET_ROW},a,b\n");
        assert_eq!(parse_outlets("o", csv.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn bad_zone_type() {
        for bad in ["Sealed", "lockdown", ""] {
            let err = zones_err(&format!(
                "{ZONE_HEADER}\n{ZONE_ROW}\nZ2,{bad},330106,2022-04-01T00:00:00Z,2022-04-02T00:00:00Z\n"
            ));
            let msg = check(&err, "zones.csv", 3, Some("zone_type"));
            assert!(matches!(err, RefDataError::BadZoneType { .. }), "{err:?}");
            assert!(
                msg.contains("expected sealed, controlled or prevention"),
                "{msg}"
            );
        }
    }

    #[test]
    fn timestamp_without_offset() {
        for bad in [
            "2022-04-01T08:00:00",
            "2022-04-01 08:00:00",
            "2022-04-01T08:00:00.250",
        ] {
            let err = zones_err(&format!(
                "{ZONE_HEADER}\nZ1,sealed,330106,2022-04-01T00:00:00Z,{bad}\n"
            ));
            let msg = check(&err, "zones.csv", 2, Some("active_to"));
            assert!(
                matches!(err, RefDataError::TimestampWithoutOffset { .. }),
                "{err:?}"
            );
            assert!(msg.contains("has no UTC offset"), "{msg}");
            assert!(msg.contains("+08:00"), "{msg}");
        }
        for bad in ["2022-04-01", "yesterday", "2022-04-31T00:00:00Z", ""] {
            let err = zones_err(&format!(
                "{ZONE_HEADER}\nZ1,sealed,330106,{bad},2022-04-01T00:00:00Z\n"
            ));
            check(&err, "zones.csv", 2, Some("active_from"));
            assert!(matches!(err, RefDataError::BadTimestamp { .. }), "{err:?}");
        }
    }

    #[test]
    fn zone_must_not_end_before_it_starts() {
        // 2022-04-01T07:00:00Z is 15:00 local, i.e. before 16:00+08:00.
        let err = zones_err(&format!(
            "{ZONE_HEADER}\n{ZONE_ROW}\nZ2,controlled,330110,2022-04-01T16:00:00+08:00,2022-04-01T07:00:00Z\n"
        ));
        let msg = check(&err, "zones.csv", 3, Some("active_to"));
        assert!(
            matches!(err, RefDataError::ZoneEndsBeforeStart { .. }),
            "{err:?}"
        );
        assert!(
            msg.contains("2022-04-01T07:00:00Z is before active_from 2022-04-01T16:00:00+08:00"),
            "{msg}"
        );
        // Equal instants, written with different offsets, are fine.
        let ok = format!(
            "{ZONE_HEADER}\nZ3,prevention,330110,2022-04-01T16:00:00+08:00,2022-04-01T08:00:00Z\n"
        );
        assert_eq!(parse_zones("z", ok.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn duplicate_id_names_both_lines() {
        let err = firms_err(&format!(
            "{FIRM_HEADER}\n{FIRM_ROW}\nF2,n,c,330106,true,true,true,\n{FIRM_ROW}\n"
        ));
        let msg = check(&err, "firms.csv", 4, Some("firm_id"));
        assert!(
            matches!(err, RefDataError::DuplicateId { first_line: 2, .. }),
            "{err:?}"
        );
        assert!(
            msg.contains(r#"duplicate id "F1", already used on line 2"#),
            "{msg}"
        );

        let err = outlets_err(&format!("{OUTLET_HEADER}\n{OUTLET_ROW}\n{OUTLET_ROW}\n"));
        let msg = check(&err, "outlets.csv", 3, Some("outlet_id"));
        assert!(msg.contains("already used on line 2"), "{msg}");

        let err = zones_err(&format!("{ZONE_HEADER}\n\n{ZONE_ROW}\n{ZONE_ROW}\n"));
        let msg = check(&err, "zones.csv", 4, Some("zone_id"));
        assert!(
            msg.contains(r#"duplicate id "Z1", already used on line 3"#),
            "{msg}"
        );

        // Outlets of one firm share its firm_id: that is not a duplicate.
        let ok = format!("{OUTLET_HEADER}\n{OUTLET_ROW}\nO2,F1,330127,v,2022-03-01\n");
        assert_eq!(parse_outlets("o", ok.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn bad_identifier() {
        let long = "a".repeat(65);
        for bad in ["F 1", "", "F/1", "顺丰", long.as_str()] {
            let err = firms_err(&format!(
                "{FIRM_HEADER}\n{bad},n,c,330106,true,true,true,\n"
            ));
            let msg = check(&err, "firms.csv", 2, Some("firm_id"));
            assert!(matches!(err, RefDataError::BadIdentifier { .. }), "{err:?}");
            assert!(
                msg.contains("1-64 characters from A-Z a-z 0-9 . _ : -"),
                "{msg}"
            );
        }
        let max = "A.b_c:d-9".repeat(8)[..64].to_string();
        let ok = format!("{FIRM_HEADER}\n{max},n,c,330106,true,true,true,\n");
        assert_eq!(parse_firms("f", ok.as_bytes()).unwrap()[0].firm_id, max);

        let err = outlets_err(&format!("{OUTLET_HEADER}\nO1,F#1,330127,v,2022-03-01\n"));
        check(&err, "outlets.csv", 2, Some("firm_id"));
        let err = outlets_err(&format!("{OUTLET_HEADER}\nO 1,F1,330127,v,2022-03-01\n"));
        check(&err, "outlets.csv", 2, Some("outlet_id"));
        let err = zones_err(&format!(
            "{ZONE_HEADER}\nZ?,sealed,330106,2022-04-01T00:00:00Z,2022-04-01T00:00:00Z\n"
        ));
        check(&err, "zones.csv", 2, Some("zone_id"));
    }

    #[test]
    fn bad_district() {
        for bad in ["33010", "3301060", "33010a", "３３０１０６", ""] {
            let err = outlets_err(&format!(
                "{OUTLET_HEADER}\n{OUTLET_ROW}\nO2,F1,{bad},v,2022-03-01\n"
            ));
            let msg = check(&err, "outlets.csv", 3, Some("district_code"));
            assert!(matches!(err, RefDataError::BadDistrict { .. }), "{err:?}");
            assert!(msg.contains("6 digits"), "{msg}");
        }
        check(
            &firms_err(&format!("{FIRM_HEADER}\nF1,n,c,HZ,true,true,true,\n")),
            "firms.csv",
            2,
            Some("district_code"),
        );
        check(
            &zones_err(&format!(
                "{ZONE_HEADER}\nZ1,sealed,33,2022-04-01T00:00:00Z,2022-04-01T00:00:00Z\n"
            )),
            "zones.csv",
            2,
            Some("district_code"),
        );
    }

    #[test]
    fn wrong_field_count() {
        // An unquoted comma in a name: one field too many.
        let err = firms_err(&format!(
            "{FIRM_HEADER}\n{FIRM_ROW}\nF2,杭州, 某公司,c,330106,true,true,true,\n"
        ));
        let msg = check(&err, "firms.csv", 3, None);
        assert!(
            matches!(
                err,
                RefDataError::FieldCount {
                    expected: 8,
                    got: 9,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            msg.contains("expected 8 fields (one per header column), got 9"),
            "{msg}"
        );

        // Too few, after a quoted name spanning two lines and a blank line.
        let err = outlets_err(&format!(
            "{OUTLET_HEADER}\nO1,F1,330127,\"村\n名\",2022-03-01\n\n{OUTLET_ROW}\nO3,F1,330127\n"
        ));
        check(&err, "outlets.csv", 6, None);
        assert!(
            matches!(
                err,
                RefDataError::FieldCount {
                    expected: 5,
                    got: 3,
                    ..
                }
            ),
            "{err:?}"
        );

        // A whitespace-only line is a one-field row.
        check(
            &zones_err(&format!("{ZONE_HEADER}\n{ZONE_ROW}\n  \n")),
            "zones.csv",
            3,
            None,
        );
    }

    #[test]
    fn not_utf8() {
        let mut bytes = format!("{FIRM_HEADER}\n{FIRM_ROW}\nF2,").into_bytes();
        bytes.extend_from_slice(b"\xB6\xAB\xB7\xBD"); // GBK, not UTF-8
        bytes.extend_from_slice(b",c,330106,true,true,true,\n");
        let err = parse_firms("firms.csv", bytes.as_slice()).unwrap_err();
        let msg = check(&err, "firms.csv", 3, Some("name"));
        assert!(msg.contains("not valid UTF-8"), "{msg}");

        let mut bytes =
            b"zone_id,zone_type,district_code,active_from,active_to,\xC4\xFA\n".to_vec();
        bytes.extend_from_slice(format!("{ZONE_ROW},x\n").as_bytes());
        let err = parse_zones("zones.csv", bytes.as_slice()).unwrap_err();
        check(&err, "zones.csv", 1, None);
        assert!(
            matches!(err, RefDataError::NotUtf8 { field: None, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(500);
        let err = firms_err(&format!("{FIRM_HEADER}\nF1,n,c,330106,{long},true,true,\n"));
        let msg = check(&err, "firms.csv", 2, Some("legal_entity"));
        assert!(
            msg.contains(&format!("got \"{}…\"", "x".repeat(100))),
            "{msg}"
        );
        assert!(msg.len() < 250, "{msg}");
    }

    #[test]
    fn load_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let firms = dir.path().join("firms.csv");
        let outlets = dir.path().join("outlets.csv");
        let zones = dir.path().join("zones.csv");
        std::fs::write(&firms, firms_to_csv(&[firm("F1", "n")])).unwrap();
        std::fs::write(&outlets, format!("{OUTLET_HEADER}\n{OUTLET_ROW}\n")).unwrap();
        std::fs::write(
            &zones,
            format!("{ZONE_HEADER}\n{ZONE_ROW}\nZ2,x,330106,,\n"),
        )
        .unwrap();

        assert_eq!(load_firms_file(&firms).unwrap(), vec![firm("F1", "n")]);
        assert_eq!(load_outlets_file(&outlets).unwrap()[0].outlet_id, "O1");
        let err = load_zones_file(&zones).unwrap_err();
        check(&err, &zones.display().to_string(), 3, Some("zone_type"));

        let missing = dir.path().join("nope.csv");
        let err = load_firms_file(&missing).unwrap_err();
        assert!(matches!(err, RefDataError::Io { .. }), "{err:?}");
        assert_eq!(err.line(), None);
        assert_eq!(err.file(), missing.display().to_string());
        assert!(err
            .to_string()
            .starts_with(&format!("{}: cannot read the file: ", missing.display())));
    }
}
