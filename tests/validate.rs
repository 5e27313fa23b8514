//! `validate` against the real `run`: the same messages, written as NDJSON for `validate
//! --format json` and produced to Kafka for `run --until-caught-up` into a fresh database,
//! must get identical outcomes message by message — accepted with the same program and
//! unit key, or rejected with the same reason (and, once decoded, the same program and
//! key). Plus the command's contract without services: exit codes, the schema-only mode
//! without reference data, stdin, and bad input naming file, line and field.

mod harness;

use harness::{require_services, write_file, World};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use subsidy_devtools::sample::{FeedOrder, SampleConfig, SampleMessage};

/// Messages of the sample feed: every malformed and ineligible case of its catalogues,
/// ~3 % duplicates under new event ids.
const EVENTS: usize = 12_000;

/// Hand-written lines the sample feed lacks: §8 programs, voids and a revocation (with
/// their duplicates), and the line edge cases (CRLF, empty, only `\r`, invalid UTF-8), over
/// the sample world's firms (meituan, zto, sf-express) and outlet RO-330127-001.
fn extra_lines() -> Vec<Vec<u8>> {
    let env = |n: usize, kind: &str, at: &str, rest: &str| {
        format!(r#"{{"type":"{kind}","event_id":"x-{n}","occurred_at":"{at}",{rest}}}"#)
            .into_bytes()
    };
    let parcel = env(
        1,
        "import_parcel",
        "2023-03-01T10:00:00+08:00",
        r#""firm_id":"zto","waybill_no":"VAL-P1","channel":"mail""#,
    );
    let void = env(
        2,
        "unit_voided",
        "2023-03-05T10:00:00+08:00",
        r#""program":"import_parcel","waybill_no":"VAL-P1","void_reason":"sent in error""#,
    );
    let revoke = env(
        3,
        "subsidy_revoked",
        "2026-02-01T10:00:00+08:00",
        r#""firm_id":"zto","period_from":"2023-01-01","period_to":"2023-01-31","reason":"audit 2026-7","revoked_by":"hz-commerce""#,
    );
    let mut crlf = parcel.clone();
    crlf.extend_from_slice(b"\r");
    vec![
        void.clone(),
        parcel.clone(),
        // The same parcel again (CRLF), the same void again, the same revocation twice.
        crlf,
        void,
        revoke.clone(),
        revoke,
        env(
            4,
            "subsidy_revoked",
            "2026-02-01T10:00:00+08:00",
            r#""firm_id":"nobody","period_from":"2023-01-01","period_to":"2023-01-31","reason":"audit","revoked_by":"hz""#,
        ),
        env(
            5,
            "locker_purchased",
            "2023-04-01T10:00:00+08:00",
            r#""purchaser_id":"sf-express","locker_serial":"VAL-LK1","price":"2000.00","site_type":"office_building""#,
        ),
        env(
            6,
            "locker_purchased",
            "2023-04-02T10:00:00+08:00",
            r#""purchaser_id":"sf-express","locker_serial":"VAL-LK1","price":"2000.00","site_type":"other""#,
        ),
        env(
            7,
            "county_center_opened",
            "2023-11-30T10:00:00+08:00",
            r#""firm_id":"sf-express","center_id":"VAL-CC","district_code":"330199""#,
        ),
        env(
            8,
            "courier_idle_day",
            "2022-09-05T20:00:00+08:00",
            r#""platform_id":"meituan","courier_id":"C7","zone_id":"Z-330106-0001","date":"2022-07-01""#,
        ),
        env(
            9,
            "platform_month_attested",
            "2022-10-03T10:00:00+08:00",
            r#""platform_id":"meituan","month":"2022-09","prevention_measures":true,"couriers_managed":false,"sites_disinfected":true"#,
        ),
        Vec::new(),
        b"\r".to_vec(),
        b"\xff\xfe{}".to_vec(),
        b"[1,2]".to_vec(),
    ]
}

/// The feed's one-line values, shuffled, with the extra lines spread through it.
fn lines(world: &World) -> (Vec<Vec<u8>>, subsidy_devtools::sample::SampleFeed) {
    let mut config = SampleConfig {
        seed: 9,
        events: EVENTS,
        ..SampleConfig::default()
    };
    config.topics = world.sample_topics();
    let mut feed = subsidy_devtools::sample::generate(&config);
    feed.reorder(FeedOrder::Shuffled { seed: 9 });
    let mut lines: Vec<Vec<u8>> = feed
        .messages
        .iter()
        .filter(|m| subsidy_devtools::feed::fits_one_line(m))
        .map(|m| m.payload.clone())
        .collect();
    for (i, extra) in extra_lines().into_iter().enumerate() {
        lines.insert((i * 701) % lines.len(), extra);
    }
    (lines, feed)
}

/// The outcome of one message, as validate prints it and as run stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Judged {
    /// `accepted` or the reason code.
    outcome: String,
    program: String,
    unit_key: String,
    event_id: String,
}

fn validate_json(
    world: &World,
    ndjson: &Path,
    dir: &Path,
) -> (Vec<Judged>, serde_json::Value, Output) {
    let output = world.run_cli(&[
        "validate",
        ndjson.to_str().unwrap(),
        "--firms",
        dir.join("firms.csv").to_str().unwrap(),
        "--outlets",
        dir.join("outlets.csv").to_str().unwrap(),
        "--zones",
        dir.join("zones.csv").to_str().unwrap(),
        "--format",
        "json",
    ]);
    let stdout = String::from_utf8(output.stdout.clone()).expect("validate prints UTF-8");
    let mut judged = Vec::new();
    let mut summary = serde_json::Value::Null;
    for (i, text) in stdout.lines().enumerate() {
        let object: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("line {i}: {e}: {text}"));
        if object.get("summary").is_some() {
            summary = object["summary"].clone();
            continue;
        }
        assert_eq!(object["line"], i as u64 + 1, "{text}");
        let text_of = |field: &str| object[field].as_str().unwrap_or("").to_string();
        judged.push(Judged {
            outcome: match object["outcome"].as_str() {
                Some("accepted") => "accepted".into(),
                Some("rejected") => text_of("reason"),
                other => panic!("unexpected outcome {other:?}: {text}"),
            },
            program: text_of("program"),
            unit_key: text_of("unit_key"),
            event_id: text_of("event_id"),
        });
    }
    (judged, summary, output)
}

/// What run stored per offset of the one-partition topic: ledger rows and rejections.
async fn stored(world: &World, topic: &str) -> BTreeMap<u64, Judged> {
    let mut out = BTreeMap::new();
    let ledger = world
        .query(&format!("SELECT toString(`offset`), program, unit_key, event_id FROM {{db}}.ledger WHERE topic = '{topic}'"))
        .await;
    let rejected = world
        .query(&format!("SELECT toString(`offset`), reason, program, unit_key, event_id FROM {{db}}.rejected_events WHERE topic = '{topic}'"))
        .await;
    let cell = |row: &Vec<String>, i: usize| row.get(i).cloned().unwrap_or_default();
    for row in &ledger {
        let judged = Judged {
            outcome: "accepted".into(),
            program: cell(row, 1),
            unit_key: cell(row, 2),
            event_id: cell(row, 3),
        };
        assert!(
            out.insert(row[0].parse().unwrap(), judged).is_none(),
            "offset {} twice",
            row[0]
        );
    }
    for row in &rejected {
        let judged = Judged {
            outcome: cell(row, 1),
            program: cell(row, 2),
            unit_key: cell(row, 3),
            event_id: cell(row, 4),
        };
        assert!(
            out.insert(row[0].parse().unwrap(), judged).is_none(),
            "offset {} twice",
            row[0]
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_gives_every_message_the_outcome_run_stores() {
    // Proves validate and run share one judgement: ~12,000 sample messages (every
    // malformed and ineligible case of the generator, duplicates under new event ids) plus
    // §8 programs, voids, a revocation, their repeats and the line edge cases are judged
    // by `validate --format json`, then produced in the same order to one single-partition
    // topic and consumed by `run --until-caught-up` into a fresh database. For every
    // message (line n = offset n − 1) the outcome (accepted or the reason), the program,
    // the unit key and the event id must be equal; the summary's counts must add up.
    require_services().await;
    let world = World::new("validate");
    let dir = tempfile::tempdir().unwrap();
    let (lines, feed) = lines(&world);
    let mut ndjson = Vec::new();
    for line in &lines {
        ndjson.extend_from_slice(line);
        ndjson.push(b'\n');
    }
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, &ndjson).unwrap();
    world.migrate_and_load_refdata(&feed, dir.path());

    let (judged, summary, output) = validate_json(&world, &events, dir.path());
    assert_eq!(
        output.status.code(),
        Some(1),
        "some lines are rejected: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(judged.len(), lines.len(), "one object per line");
    assert_eq!(summary["lines"], lines.len() as u64);
    assert_eq!(summary["checks"], "all");
    assert_eq!(summary["history"], "empty");
    let rejected = judged.iter().filter(|j| j.outcome != "accepted").count() as u64;
    assert_eq!(summary["rejected"], rejected);
    assert_eq!(summary["passed"], lines.len() as u64 - rejected);
    let by_reason: u64 = summary["by_reason"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(by_reason, rejected);
    for reason in [
        "malformed_json",
        "schema_violation",
        "unknown_type",
        "outside_policy_period",
        "unknown_zone",
        "zone_inactive",
        "courier_not_released",
        "unknown_firm",
        "firm_ineligible",
        "unknown_outlet",
        "outlet_firm_mismatch",
        "outlet_not_enrolled",
        "attestation_incomplete",
        "program_not_configured",
        "duplicate",
    ] {
        assert!(
            summary["by_reason"][reason].as_u64().unwrap_or(0) > 0,
            "the feed has a {reason}: {summary}"
        );
    }

    // The same bytes as Kafka messages, in line order, on one partition.
    let topic = world.import_topic.clone();
    let messages: Vec<SampleMessage> = lines
        .iter()
        .enumerate()
        .map(|(i, payload)| SampleMessage {
            topic: topic.clone(),
            key: format!("k{i}").into_bytes(),
            payload: payload.clone(),
            // Read by the feed's tests, not by `produce`: a filler.
            sort_time_unix_s: 0,
            expected: subsidy_devtools::sample::Expected::Rejected(
                subsidy_ingester::domain::Reason::Duplicate,
            ),
            unit_no: None,
            generated_index: i,
        })
        .collect();
    subsidy_devtools::feed::produce(&harness::kafka_config("producer"), &messages, 1)
        .await
        .expect("produce the lines");
    world.run_ok(&["run", "--until-caught-up", "--topics", &topic]);

    let stored = stored(&world, &topic).await;
    assert_eq!(
        stored.len(),
        lines.len(),
        "every message has one stored outcome"
    );
    assert_eq!(
        stored.keys().next().copied(),
        Some(0),
        "offsets are the lines"
    );
    let mut differ = Vec::new();
    for (offset, (want, got)) in judged.iter().zip(stored.values()).enumerate() {
        if want != got {
            differ.push(format!(
                "line {}: validate {want:?}, run {got:?}",
                offset + 1
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} message(s) differ, e.g.:\n{}",
        differ.len(),
        differ
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        *stored.keys().last().unwrap(),
        lines.len() as u64 - 1,
        "offsets are the lines"
    );
    world.drop_database().await;
}

/// Runs the binary with `args` (no services needed) and `stdin`.
fn validate(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(harness::binary())
        .arg("validate")
        .args(args)
        .env("SUBSIDY_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start subsidy-ingester");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const GOOD: &str = r#"{"type":"import_parcel","event_id":"e1","occurred_at":"2023-03-01T10:00:00+08:00","firm_id":"sf-express","waybill_no":"SF1","channel":"mail"}"#;
const INELIGIBLE: &str = r#"{"type":"import_parcel","event_id":"e2","occurred_at":"2023-07-01T10:00:00+08:00","firm_id":"zto","waybill_no":"ZT1","channel":"mail"}"#;

fn small_refdata(dir: &Path) -> Vec<String> {
    vec![
        "--firms".into(),
        write_file(dir, "firms.csv", harness::FIRMS)
            .display()
            .to_string(),
        "--outlets".into(),
        write_file(dir, "outlets.csv", harness::OUTLETS)
            .display()
            .to_string(),
        "--zones".into(),
        write_file(dir, "zones.csv", harness::ZONES)
            .display()
            .to_string(),
    ]
}

#[test]
fn exit_code_is_0_when_every_line_passes_and_1_when_one_would_be_rejected() {
    // Proves the exit contract and the table format: two good lines exit 0; one ineligible
    // line (zto, penalised 2023-06-01) makes it 1 and is named with its reason and detail.
    let dir = tempfile::tempdir().unwrap();
    let refdata = small_refdata(dir.path());
    let mut args: Vec<&str> = vec!["-"];
    args.extend(refdata.iter().map(String::as_str));
    let second = GOOD.replace("SF1", "SF2");
    let ok = validate(&args, format!("{GOOD}\n{second}\n").as_bytes());
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let stdout = text(&ok.stdout);
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .contains("accepted                import_parcel SF1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("summary: 2 line(s), 2 accepted, 0 rejected"),
        "{stdout}"
    );

    let bad = validate(&args, format!("{GOOD}\n{INELIGIBLE}\n").as_bytes());
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stderr));
    let stdout = text(&bad.stdout);
    let second = stdout.lines().nth(1).unwrap();
    assert!(
        second.contains("firm_ineligible") && second.contains("zto"),
        "{stdout}"
    );
    assert!(
        stdout.contains("firm_ineligible                  1"),
        "{stdout}"
    );
}

#[test]
fn without_reference_data_only_the_schema_is_checked_and_said_so() {
    // Proves the schema-only mode: no CSVs → a note on stderr and in the summary, lines
    // are `schema_ok` (even an ineligible firm's, and a repeat is no duplicate), a schema
    // violation still fails the run with exit 1.
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "feed.ndjson",
        &format!("{INELIGIBLE}\n{INELIGIBLE}\n"),
    );
    let ok = validate(&[file.to_str().unwrap(), "--format", "json"], b"");
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stderr).contains("schema checks only"),
        "{}",
        text(&ok.stderr)
    );
    let out: Vec<serde_json::Value> = text(&ok.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out[0]["outcome"], "schema_ok");
    assert_eq!(out[1]["outcome"], "schema_ok");
    assert_eq!(out[2]["summary"]["checks"], "schema");
    assert!(out[2]["summary"]["note"]
        .as_str()
        .unwrap()
        .contains("schema checks only"));

    let bad = validate(&["-"], INELIGIBLE.replace("\"mail\"", "\"air\"").as_bytes());
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stdout).contains("schema_violation        field \"channel\""),
        "{}",
        text(&bad.stdout)
    );
}

#[test]
fn bad_input_names_the_file_line_and_field_and_exits_2() {
    // Proves bad input is an error, not a verdict and never a panic: a bad CSV row is
    // named by file, line and field (as `refdata load` does) and nothing is judged; a
    // missing events file is named; both exit 2.
    let dir = tempfile::tempdir().unwrap();
    let firms = harness::FIRMS.replace("330106,true,true,true,", "330106,true,yes,true,");
    let firms = write_file(dir.path(), "firms.csv", &firms);
    let events = write_file(dir.path(), "feed.ndjson", GOOD);
    let bad_csv = validate(
        &[events.to_str().unwrap(), "--firms", firms.to_str().unwrap()],
        b"",
    );
    assert_eq!(bad_csv.status.code(), Some(2));
    let stderr = text(&bad_csv.stderr);
    assert!(
        stderr
            .contains("firms.csv line 2, field \"licensed\": expected true or false, got \"yes\""),
        "{stderr}"
    );
    assert!(
        bad_csv.stdout.is_empty(),
        "nothing judged: {}",
        text(&bad_csv.stdout)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let missing = dir.path().join("absent.ndjson");
    let absent = validate(&[missing.to_str().unwrap()], b"");
    assert_eq!(absent.status.code(), Some(2));
    assert!(
        text(&absent.stderr).contains("cannot read")
            && text(&absent.stderr).contains("absent.ndjson"),
        "{}",
        text(&absent.stderr)
    );
}
