//! `validate FILE|-`: tells a producer, before it sends, what `run` would make of each
//! message of an NDJSON file — accepted (program and unit key) or rejected (reason and
//! detail) — then a summary by reason. No Kafka, no ClickHouse.
//!
//! ## One implementation of the rules
//!
//! Each line goes through exactly the functions the admit stage calls per message
//! ([`crate::ingest::process`]): [`decode`] (SPEC §5 steps 1–4), then [`evaluate`]
//! (steps 5–6) over the reference data and the editions. Step 7, `duplicate`, is the
//! ledger stage's [`decide`], keyed like the ledger by [`key_hash`] of (program, unit key):
//! validate sees no history, so it judges each line against the lines before it — an
//! *empty history*. As in the ledger, a void (`unit_voided`) and a revocation
//! (`subsidy_revoked`) are records of their own keyed by their own unit key: a second void
//! of the same record, or the same revocation twice, is a `duplicate`; a void does not make
//! the record it names a duplicate, nor the other way round.
//!
//! Without reference data (none of `--firms`, `--outlets`, `--zones`) validate stops after
//! the schema checks: [`decode`] and the one step-4 check that needs only the editions
//! ([`check_district`]). Each line is then `schema ok` or its schema reason, and no
//! duplicates are judged (whether a repeat is a duplicate depends on whether the first copy
//! passes the program checks).
//!
//! ## Lines are messages
//!
//! A line's bytes, without its terminating `\n`, are the Kafka message value `run` would
//! receive — nothing is trimmed or re-encoded, so the outcome is `run`'s for the same bytes:
//! - a trailing `\r` (CRLF files) stays; JSON counts it as whitespace, so such a line
//!   decodes exactly like the line without it (a line that is only `\r` is `malformed_json`);
//! - an empty line is an empty message: `malformed_json` ("empty payload"); the `\n` that
//!   ends the last line does not start another one, and a last line without `\n` counts;
//! - invalid UTF-8 is `malformed_json`, as in `run`;
//! - a line longer than [`LINE_BYTES_MAX`] (64 MiB, far above what any broker carries:
//!   Kafka's default `message.max.bytes` is 1 MiB) stops validate with an input error, so
//!   its memory stays bounded; any shorter line is judged whatever its size.
//!
//! ## Speed
//!
//! One reused line buffer read through a 1 MiB [`BufReader`], output through a 1 MiB
//! [`BufWriter`]; JSON is written by `serde_json` straight into the writer from borrowed
//! fields. The per-line allocations left are the ones `run` makes too (composite unit
//! keys, rejection details).

use crate::decode::decode;
use crate::dedup::Seen;
use crate::domain::{Program, Reason, Rejection};
use crate::edition::Editions;
use crate::ledger::decide::{decide, Decision};
use crate::ledger::state::KeyHashBuilder;
use crate::refdata::RefData;
use crate::route::{key_hash, UnitRecord};
use crate::rules::{check_district, evaluate};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

/// Longest line judged, in bytes (without its `\n`): 64 MiB. Longer lines stop validate
/// with an input error, so its memory is bounded.
pub const LINE_BYTES_MAX: usize = 64 << 20;

/// Read buffer: 1 MiB, so reads are few and large.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// Write buffer: 1 MiB.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Exit code when a line would be rejected.
pub const EXIT_REJECTED: i32 = 1;

/// Exit code for bad input: an unreadable file, bad reference data, a line too long.
/// (clap uses 2 for a bad command line too.)
pub const EXIT_BAD_INPUT: i32 = 2;

/// Output format of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValidateFormat {
    /// One aligned text line per input line, then the summary.
    Table,
    /// One JSON object per input line, then one summary object (README: the json shape).
    Json,
}

/// What `validate` reads and how it answers.
#[derive(Debug, Clone)]
pub struct ValidateSettings {
    /// The NDJSON file; `-` is stdin.
    pub input: PathBuf,
    /// Reference data files, parsed like `refdata load` (none given: schema checks only).
    pub files: crate::store::refdata_store::RefdataFiles,
    pub format: ValidateFormat,
}

/// What a line would become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A ledger record (a unit, a zero-pay record, an accepted void or revocation).
    Accepted,
    /// Schema checks passed; program checks not run (no reference data).
    SchemaOk,
    /// A row of `rejected_events` with this reason.
    Rejected(Rejection),
}

/// One line's verdict: the outcome and, once decoding succeeded, what `run` stores with
/// it in `outcomes` (program, unit key, event id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'p> {
    pub outcome: Outcome,
    pub program: Option<Program>,
    pub unit_key: Option<Cow<'p, str>>,
    pub event_id: Option<Cow<'p, str>>,
}

/// Judges lines one after another: the reference data (or none), the editions, and the
/// unit keys seen so far with the line that first had each.
pub struct Validator<'r> {
    refdata: Option<&'r RefData>,
    editions: &'r Editions,
    /// `key_hash(program, unit_key)` → first line (1-based): the empty history plus this
    /// file. Bounded by the file's accepted lines (24 bytes an entry plus the map's slack).
    seen: HashMap<u128, u64, KeyHashBuilder>,
}

impl<'r> Validator<'r> {
    /// A validator with the full rules (`Some` reference data) or the schema checks only.
    pub fn new(refdata: Option<&'r RefData>, editions: &'r Editions) -> Validator<'r> {
        Validator {
            refdata,
            editions,
            seen: HashMap::with_hasher(KeyHashBuilder),
        }
    }

    /// Returns true if and only if the program checks and dedup run (reference data given).
    pub fn full_rules(&self) -> bool {
        self.refdata.is_some()
    }

    /// The verdict on the message `payload`, line `line` (1-based) of the file.
    pub fn judge<'p>(&mut self, line: u64, payload: &'p [u8]) -> Verdict<'p> {
        let event = match decode(payload) {
            Ok(event) => event,
            Err(rejection) => {
                return Verdict {
                    outcome: Outcome::Rejected(rejection),
                    program: None,
                    unit_key: None,
                    event_id: None,
                }
            }
        };
        let program = event.program();
        // `Unit::unit_key` is `Event::unit_key` (rules' contract); taken from the event so
        // the verdict can outlive the unit, which borrows the event.
        let unit_key = event.unit_key();
        let outcome = match self.refdata {
            None => match check_district(&event, self.editions) {
                Ok(()) => Outcome::SchemaOk,
                Err(rejection) => Outcome::Rejected(rejection),
            },
            Some(refdata) => match evaluate(&event, refdata, self.editions) {
                Err(rejection) => Outcome::Rejected(rejection),
                Ok(unit) => {
                    debug_assert_eq!(unit.unit_key, unit_key, "rules keep the event's key");
                    debug_assert_eq!(unit.program, program);
                    self.dedup(line, program, &unit_key)
                }
            },
        };
        Verdict {
            outcome,
            program: Some(program),
            unit_key: Some(unit_key),
            event_id: Some(event.event_id),
        }
    }

    /// SPEC §5 step 7 against the empty history: the ledger's [`decide`], with the first
    /// line of the key as the source it names.
    fn dedup(&mut self, line: u64, program: Program, unit_key: &str) -> Outcome {
        let seen = match self.seen.entry(key_hash(program, unit_key)) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(line);
                Seen::New
            }
            std::collections::hash_map::Entry::Occupied(first) => {
                Seen::DuplicateOf(format!("line {}", first.get()))
            }
        };
        let record = UnitRecord {
            program: Some(program),
            unit_key,
            ..UnitRecord::default()
        };
        match decide(&record, seen) {
            Decision::Unit => Outcome::Accepted,
            Decision::Duplicate(rejection) => Outcome::Rejected(rejection),
            // Every line is a message of its own: none is ever the same message twice.
            Decision::AlreadyDecided => unreachable!("each line is a distinct message"),
        }
    }
}

/// Counts of a run of `validate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub lines: u64,
    /// Accepted (full rules) or schema ok (no reference data).
    pub passed: u64,
    pub rejected: u64,
    /// Lines per reason, indexed like [`Reason::ALL`].
    pub by_reason: [u64; Reason::ALL.len()],
}

impl Tally {
    fn count(&mut self, outcome: &Outcome) {
        self.lines += 1;
        match outcome {
            Outcome::Accepted | Outcome::SchemaOk => self.passed += 1,
            Outcome::Rejected(rejection) => {
                self.rejected += 1;
                // Every reason is in `Reason::ALL`; the fallback only keeps this panic-free.
                let index = Reason::ALL
                    .iter()
                    .position(|r| *r == rejection.reason)
                    .unwrap_or(0);
                self.by_reason[index] += 1;
            }
        }
    }

    /// Reasons with at least one line, in SPEC check order.
    pub fn reasons(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL
            .into_iter()
            .zip(self.by_reason)
            .filter(|(_, n)| *n > 0)
    }
}

/// Why validate could not judge its input.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("cannot read {file}: {source}")]
    Read { file: String, source: io::Error },
    #[error("{file} line {line}: longer than {LINE_BYTES_MAX} bytes, more than any broker carries in one message; split the file or fix the producer")]
    LineTooLong { file: String, line: u64 },
    #[error("cannot write the output: {0}")]
    Write(io::Error),
}

/// The `validate` command: loads the reference data (if any), judges every line to
/// stdout, and returns the exit code: 0 all pass, [`EXIT_REJECTED`] some would be rejected,
/// [`EXIT_BAD_INPUT`] the input could not be read (the error printed on stderr).
pub fn command(settings: &ValidateSettings, editions: &Editions) -> i32 {
    use crate::store::refdata_store::{validate_files, LoadError};
    let files = &settings.files;
    let given = files.firms.is_some() || files.outlets.is_some() || files.zones.is_some();
    let refdata = if given {
        match validate_files(files) {
            Ok(valid) => {
                let (firms, outlets, zones) = valid.into_records();
                for (kind, missing) in [
                    ("--firms", firms.is_none()),
                    ("--outlets", outlets.is_none()),
                    ("--zones", zones.is_none()),
                ] {
                    if missing {
                        eprintln!("note: no {kind} given: judged as if that file were empty (every such id is unknown)");
                    }
                }
                Some(RefData::from_records(
                    firms.unwrap_or_default(),
                    outlets.unwrap_or_default(),
                    zones.unwrap_or_default(),
                ))
            }
            Err(LoadError::Rejected(errors)) => {
                for error in &errors {
                    eprintln!("error: {error}");
                }
                eprintln!(
                    "error: reference data rejected ({} file(s) with errors); nothing was validated",
                    errors.len()
                );
                return EXIT_BAD_INPUT;
            }
            Err(other) => {
                eprintln!("error: {other}");
                return EXIT_BAD_INPUT;
            }
        }
    } else {
        eprintln!("{SCHEMA_ONLY_NOTE}");
        None
    };
    let label = settings.input.display().to_string();
    let input: Box<dyn Read> = if settings.input.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        match std::fs::File::open(&settings.input) {
            Ok(file) => Box::new(file),
            Err(source) => {
                eprintln!(
                    "error: {}",
                    ValidateError::Read {
                        file: label,
                        source
                    }
                );
                return EXIT_BAD_INPUT;
            }
        }
    };
    let mut validator = Validator::new(refdata.as_ref(), editions);
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, stdout);
    let result = validate_stream(
        &mut validator,
        BufReader::with_capacity(READ_BUFFER_BYTES, input),
        &label,
        settings.format,
        &mut out,
    )
    .and_then(|tally| {
        out.flush().map_err(ValidateError::Write)?;
        Ok(tally)
    });
    match result {
        Ok(tally) if tally.rejected > 0 => EXIT_REJECTED,
        Ok(_) => 0,
        // A reader that went away (`| head`) wants no more: not an input error, and no
        // message to print; the file was not judged whole, so it does not pass (1).
        Err(ValidateError::Write(error)) if error.kind() == io::ErrorKind::BrokenPipe => {
            EXIT_REJECTED
        }
        Err(error) => {
            let _ = out.flush();
            eprintln!("error: {error}");
            EXIT_BAD_INPUT
        }
    }
}

/// Said on stderr and in the summary when no reference data is given.
const SCHEMA_ONLY_NOTE: &str = "note: no reference data given (--firms, --outlets, --zones): schema checks only (SPEC §5 steps 1-4); the policy period, program checks and duplicates are not judged";

/// Judges every line of `input` into `out` in `format`, then writes the summary; returns
/// the counts.
///
/// # Errors
///
/// Reading fails, a line is longer than [`LINE_BYTES_MAX`], or writing fails.
pub fn validate_stream(
    validator: &mut Validator<'_>,
    mut input: impl BufRead,
    label: &str,
    format: ValidateFormat,
    out: &mut impl Write,
) -> Result<Tally, ValidateError> {
    let mut tally = Tally::default();
    let mut line = Vec::with_capacity(64 << 10);
    loop {
        line.clear();
        let read = (&mut input)
            .take(LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| ValidateError::Read {
                file: label.to_string(),
                source,
            })?;
        if read == 0 {
            break;
        }
        let number = tally.lines + 1;
        let payload = match line.strip_suffix(b"\n") {
            Some(payload) => payload,
            None if line.len() > LINE_BYTES_MAX => {
                return Err(ValidateError::LineTooLong {
                    file: label.to_string(),
                    line: number,
                })
            }
            None => &line[..],
        };
        let verdict = validator.judge(number, payload);
        tally.count(&verdict.outcome);
        match format {
            ValidateFormat::Table => write_table_line(out, number, &verdict),
            ValidateFormat::Json => write_json_line(out, number, &verdict),
        }
        .map_err(ValidateError::Write)?;
    }
    let full = validator.full_rules();
    match format {
        ValidateFormat::Table => write_table_summary(out, &tally, full),
        ValidateFormat::Json => write_json_summary(out, &tally, full),
    }
    .map_err(ValidateError::Write)?;
    Ok(tally)
}

/// `   12  accepted                import_parcel SF-1` /
/// `   13  firm_ineligible         firm "zto" ineligible on …` /
/// `   14  schema ok               import_parcel SF-1`.
fn write_table_line(out: &mut impl Write, line: u64, verdict: &Verdict<'_>) -> io::Result<()> {
    let key = || {
        (
            verdict.program.map_or("", Program::as_str),
            verdict.unit_key.as_deref().unwrap_or(""),
        )
    };
    match &verdict.outcome {
        Outcome::Accepted => {
            let (program, key) = key();
            writeln!(out, "{line:>7}  {:<22}  {program} {key}", "accepted")
        }
        Outcome::SchemaOk => {
            let (program, key) = key();
            writeln!(out, "{line:>7}  {:<22}  {program} {key}", "schema ok")
        }
        Outcome::Rejected(rejection) => writeln!(
            out,
            "{line:>7}  {:<22}  {}",
            rejection.reason.as_str(),
            one_line(&rejection.detail)
        ),
    }
}

/// A detail on one table line: details echo producers' values as JSON strings, so they hold
/// no raw newline; this keeps the table one row per line should one ever slip through.
fn one_line(detail: &str) -> Cow<'_, str> {
    if detail.contains(['\n', '\r']) {
        Cow::Owned(detail.replace(['\n', '\r'], " "))
    } else {
        Cow::Borrowed(detail)
    }
}

fn write_table_summary(out: &mut impl Write, tally: &Tally, full: bool) -> io::Result<()> {
    let passed = if full { "accepted" } else { "schema ok" };
    writeln!(
        out,
        "summary: {} line(s), {} {passed}, {} rejected",
        tally.lines, tally.passed, tally.rejected
    )?;
    if full {
        writeln!(
            out,
            "  duplicates judged within this file, against an empty history"
        )?;
    } else {
        writeln!(out, "  {}", SCHEMA_ONLY_NOTE.trim_start_matches("note: "))?;
    }
    for (reason, lines) in tally.reasons() {
        writeln!(out, "  {:<24}{lines:>10}", reason.as_str())?;
    }
    Ok(())
}

/// One line's JSON object (README: the json shape).
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    line: u64,
    /// `accepted`, `schema_ok` or `rejected`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    program: Option<&'static str>,
    unit_key: Option<&'a str>,
    event_id: Option<&'a str>,
}

fn write_json_line(out: &mut impl Write, line: u64, verdict: &Verdict<'_>) -> io::Result<()> {
    let (outcome, rejection) = match &verdict.outcome {
        Outcome::Accepted => ("accepted", None),
        Outcome::SchemaOk => ("schema_ok", None),
        Outcome::Rejected(rejection) => ("rejected", Some(rejection)),
    };
    let object = JsonLine {
        line,
        outcome,
        reason: rejection.map(|r| r.reason.as_str()),
        detail: rejection.map(|r| r.detail.as_str()),
        program: verdict.program.map(Program::as_str),
        unit_key: verdict.unit_key.as_deref(),
        event_id: verdict.event_id.as_deref(),
    };
    serde_json::to_writer(&mut *out, &object)?;
    out.write_all(b"\n")
}

/// The closing summary object (README: the json shape).
#[derive(serde::Serialize)]
struct JsonSummary<'a> {
    lines: u64,
    /// Accepted (`checks = "all"`) or schema ok (`checks = "schema"`).
    passed: u64,
    rejected: u64,
    /// `all` (reference data given) or `schema` (decode only).
    checks: &'static str,
    /// What duplicates were judged against.
    history: &'static str,
    by_reason: std::collections::BTreeMap<&'static str, u64>,
    note: &'a str,
}

fn write_json_summary(out: &mut impl Write, tally: &Tally, full: bool) -> io::Result<()> {
    let summary = JsonSummary {
        lines: tally.lines,
        passed: tally.passed,
        rejected: tally.rejected,
        checks: if full { "all" } else { "schema" },
        history: if full { "empty" } else { "not judged" },
        by_reason: tally.reasons().map(|(r, n)| (r.as_str(), n)).collect(),
        note: if full {
            "duplicates judged within this file, against an empty history"
        } else {
            SCHEMA_ONLY_NOTE.trim_start_matches("note: ")
        },
    };
    out.write_all(b"{\"summary\":")?;
    serde_json::to_writer(&mut *out, &summary)?;
    out.write_all(b"}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refdata::{parse_firms, parse_outlets, parse_zones};

    const FIRMS: &str = "firm_id,name,credit_code,district_code,legal_entity,licensed,in_monitoring,last_major_penalty_on
sf-express,顺丰速运,91330100MA2XXXXX02,330109,true,true,true,
zto,中通快递,91330100MA2XXXXX03,330102,true,true,true,2023-06-01
";
    const OUTLETS: &str = "outlet_id,firm_id,district_code,village_code,enrolled_on\n";
    const ZONES: &str = "zone_id,zone_type,district_code,active_from,active_to\n";

    fn refdata() -> RefData {
        RefData::from_records(
            parse_firms("firms.csv", FIRMS.as_bytes()).unwrap(),
            parse_outlets("outlets.csv", OUTLETS.as_bytes()).unwrap(),
            parse_zones("zones.csv", ZONES.as_bytes()).unwrap(),
        )
    }

    fn parcel(event_id: &str, firm: &str, waybill: &str) -> String {
        format!(
            r#"{{"type":"import_parcel","event_id":"{event_id}","occurred_at":"2023-03-01T10:00:00+08:00","firm_id":"{firm}","waybill_no":"{waybill}","channel":"mail"}}"#
        )
    }

    fn run_lines(
        refdata: Option<&RefData>,
        input: &str,
        format: ValidateFormat,
    ) -> (Tally, String) {
        let editions = Editions::builtin();
        let mut validator = Validator::new(refdata, &editions);
        let mut out = Vec::new();
        let tally =
            validate_stream(&mut validator, input.as_bytes(), "t", format, &mut out).unwrap();
        (tally, String::from_utf8(out).unwrap())
    }

    fn reasons(tally: &Tally) -> Vec<(&'static str, u64)> {
        tally.reasons().map(|(r, n)| (r.as_str(), n)).collect()
    }

    #[test]
    fn a_repeated_key_is_a_duplicate_of_its_first_line_whatever_the_event_id() {
        // Proves step 7 against the empty history: the second copy of SF1 (new event id) is
        // a duplicate naming line 1, as the ledger's detail names the first source.
        let refdata = refdata();
        let input = format!(
            "{}\n{}\n{}\n",
            parcel("e1", "sf-express", "SF1"),
            parcel("e2", "sf-express", "SF1"),
            parcel("e3", "sf-express", "SF2")
        );
        let (tally, out) = run_lines(Some(&refdata), &input, ValidateFormat::Json);
        assert_eq!((tally.lines, tally.passed, tally.rejected), (3, 2, 1));
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["outcome"], "accepted");
        assert_eq!(lines[0]["unit_key"], "SF1");
        assert_eq!(lines[1]["reason"], "duplicate");
        assert!(
            lines[1]["detail"]
                .as_str()
                .unwrap()
                .ends_with("first recorded at line 1"),
            "{}",
            lines[1]
        );
        assert_eq!(lines[3]["summary"]["by_reason"]["duplicate"], 1);
        assert_eq!(lines[3]["summary"]["history"], "empty");
    }

    #[test]
    fn a_rejected_first_copy_leaves_the_key_free() {
        // Proves only accepted lines enter the history: an ineligible copy then a valid one
        // of the same key give firm_ineligible then accepted (as in run: the rejection
        // never reaches the ledger).
        let refdata = refdata();
        let input = format!(
            "{}\n{}\n",
            parcel("e1", "nobody", "SF1"),
            parcel("e2", "sf-express", "SF1")
        );
        let (tally, _) = run_lines(Some(&refdata), &input, ValidateFormat::Table);
        assert_eq!(reasons(&tally), vec![("unknown_firm", 1)]);
        assert_eq!(tally.passed, 1);
    }

    #[test]
    fn lines_are_messages_byte_for_byte() {
        // Proves the line rules of the module doc: CRLF decodes like LF, an empty line and
        // invalid UTF-8 are malformed_json, the last line without `\n` counts, and the
        // final `\n` opens no extra line.
        let refdata = refdata();
        let ok = parcel("e1", "sf-express", "SF1");
        let mut input = format!("{ok}\r\n\n\r\n").into_bytes();
        input.extend_from_slice(b"\xff\xfe\n");
        input.extend_from_slice(parcel("e2", "sf-express", "SF2").as_bytes());
        let editions = Editions::builtin();
        let mut validator = Validator::new(Some(&refdata), &editions);
        let mut out = Vec::new();
        let tally = validate_stream(
            &mut validator,
            &input[..],
            "t",
            ValidateFormat::Json,
            &mut out,
        )
        .unwrap();
        assert_eq!(tally.lines, 5);
        assert_eq!(tally.passed, 2);
        assert_eq!(reasons(&tally), vec![("malformed_json", 3)]);
        let text = String::from_utf8(out).unwrap();
        let second: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["detail"], "empty payload");
    }

    #[test]
    fn without_reference_data_only_the_schema_is_judged() {
        // Proves the schema-only mode: a valid-looking parcel of an unknown firm is
        // "schema ok", a repeat is not judged a duplicate, and a bad district code (the
        // step-4 check the rules hold) is still a schema_violation.
        let village = r#"{"type":"village_outlet_opened","event_id":"v1","occurred_at":"2023-03-10T10:00:00+08:00","firm_id":"zto","outlet_id":"VO1","village_code":"330127101001","district_code":"999999"}"#;
        let input = format!(
            "{}\n{}\n{village}\n{{\"type\":1}}\n",
            parcel("e1", "nobody", "SF1"),
            parcel("e2", "nobody", "SF1")
        );
        let (tally, out) = run_lines(None, &input, ValidateFormat::Table);
        assert_eq!(tally.passed, 2);
        assert_eq!(reasons(&tally), vec![("schema_violation", 2)]);
        assert!(out.lines().next().unwrap().contains("schema ok"), "{out}");
        assert!(out.contains("schema checks only"), "{out}");
    }

    #[test]
    fn voids_and_revocations_are_keyed_by_their_own_key() {
        // Proves actions as the ledger records them: a void of SF1 is accepted (key
        // `import_parcel/SF1`) and does not make SF1 a duplicate; a second void of it is.
        let refdata = refdata();
        let void = r#"{"type":"unit_voided","event_id":"v1","occurred_at":"2023-03-02T10:00:00+08:00","program":"import_parcel","waybill_no":"SF1","void_reason":"sent in error"}"#;
        let input = format!("{void}\n{}\n{void}\n", parcel("e1", "sf-express", "SF1"));
        let (tally, out) = run_lines(Some(&refdata), &input, ValidateFormat::Json);
        assert_eq!(reasons(&tally), vec![("duplicate", 1)]);
        let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(first["program"], "unit_voided");
        assert_eq!(first["unit_key"], "import_parcel/SF1");
    }

    #[test]
    fn a_line_longer_than_the_limit_is_an_input_error() {
        // Proves the memory bound: a line of LINE_BYTES_MAX + 1 bytes stops validate.
        let editions = Editions::builtin();
        let mut validator = Validator::new(None, &editions);
        let input = vec![b' '; LINE_BYTES_MAX + 1];
        let error = validate_stream(
            &mut validator,
            &input[..],
            "big.ndjson",
            ValidateFormat::Table,
            &mut io::sink(),
        )
        .unwrap_err();
        assert!(
            matches!(error, ValidateError::LineTooLong { line: 1, .. }),
            "{error}"
        );
        assert!(
            error.to_string().starts_with("big.ndjson line 1:"),
            "{error}"
        );
    }
}
