//! No single message can stop the line: messages of any size or content the broker
//! accepts each land once, with the SPEC's reason, a readable detail, the payload byte for
//! byte in `rejected_events` and a dead letter the broker accepts; valid messages after
//! them, on the same partition and on other topics, are paid. And `conservation` notices a
//! partition whose messages have no outcome.

mod harness;

use harness::{
    consume_all, kafka_brokers, kafka_config, produce_raw, produce_values, require_services,
    unique, World,
};
use std::time::{Duration, Instant};
use subsidy_ingester::domain::Reason;
use subsidy_ingester::ingest::dead_letter::{
    sha256_hex, DeadLetter, DeadLetterSender, SendTally, ENVELOPE_BYTES_MAX,
};
use subsidy_ingester::kafka::DEAD_LETTER_MESSAGE_BYTES_MAX;

/// One hostile or valid message and what must become of it.
struct Case {
    name: &'static str,
    value: Option<Vec<u8>>,
    /// `None` for a message that must be paid.
    reason: Option<&'static str>,
    /// Texts the rejection's detail must contain.
    detail: &'static [&'static str],
    /// Whether its dead letter must carry a cut payload.
    truncated: bool,
}

fn import(firm_id: &str, waybill_no: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"import_parcel","event_id":"e1","occurred_at":"2023-05-02T10:00:00+08:00","firm_id":"{firm_id}","waybill_no":"{waybill_no}","channel":"express"}}"#
    )
    .into_bytes()
}

/// The import topic's messages, in offset order: the three inputs that halted the service,
/// then other hostile ones, then a valid parcel that must still be paid.
fn import_cases() -> Vec<Case> {
    // 1,040,000 bytes with a waybill number far too long.
    let mut long = import("sf-express", "");
    let pad = 1_040_000 - long.len();
    long = import("sf-express", &"W".repeat(pad));
    assert_eq!(long.len(), 1_040_000);
    // 900 KB of escaped quotes in an id: re-escaped, a letter would be ~1.8 MB.
    let quotes = import(&r#"\""#.repeat(450_000), "SF-Q");
    // 760 KB that is not UTF-8: as base64, a letter would be ~1.01 MB.
    let binary: Vec<u8> = (0..760_000u32).map(|i| 0x80 | (i % 127) as u8).collect();
    vec![
        Case {
            name: "1,040,000 bytes, bad waybill_no",
            value: Some(long),
            reason: Some("schema_violation"),
            detail: &["field \"waybill_no\"", "is not an identifier"],
            truncated: true,
        },
        Case {
            name: "900 KB of quotes in firm_id",
            value: Some(quotes),
            reason: Some("schema_violation"),
            detail: &["field \"firm_id\"", r#""\"\"\""#],
            truncated: true,
        },
        Case {
            name: "760 KB not UTF-8",
            value: Some(binary),
            reason: Some("malformed_json"),
            detail: &["not UTF-8"],
            truncated: true,
        },
        Case {
            name: "a tombstone",
            value: None,
            reason: Some("malformed_json"),
            detail: &["tombstone"],
            truncated: false,
        },
        Case {
            name: "empty",
            value: Some(Vec::new()),
            reason: Some("malformed_json"),
            detail: &["empty payload"],
            truncated: false,
        },
        Case {
            name: "a lone surrogate in waybill_no",
            value: Some(import("sf-express", r"\ud800")),
            reason: Some("malformed_json"),
            detail: &["invalid JSON in field \"waybill_no\"", "at line 1 column"],
            truncated: false,
        },
        Case {
            name: "a NUL in waybill_no",
            value: Some(import("sf-express", r"a\u0000b")),
            reason: Some("schema_violation"),
            detail: &[r#""a\u0000b" is not an identifier"#],
            truncated: false,
        },
        Case {
            name: "100,000 nested arrays",
            value: Some(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes()),
            reason: Some("schema_violation"),
            detail: &["expected a JSON object, got array"],
            truncated: false,
        },
        Case {
            name: "a valid parcel after them all",
            value: Some(import("sf-express", "SF-OK-1")),
            reason: None,
            detail: &[],
            truncated: false,
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn no_message_of_any_size_or_content_stops_its_partition_or_another() {
    // Proves: the three inputs that once made `run` exit 1 for good (a dead letter too
    // large for the producer), and other hostile values, each become one rejection with
    // the payload stored byte for byte and one dead letter under the producer's limit
    // (cut, with the full length and SHA-256); the valid parcel behind them on the same
    // partition and the valid messages on the other topics are paid; `run` exits 0 with
    // no letter given up, and conservation balances with nothing left in Kafka.
    require_services().await;
    let world = World::new("hostile");
    let _dir = world.load_small_refdata();
    let cases = import_cases();
    let values: Vec<Option<&[u8]>> = cases.iter().map(|c| c.value.as_deref()).collect();
    produce_values(&world.import_topic, 1, &values).await;
    let takeout = br#"{"type":"takeout_order","event_id":"t1","occurred_at":"2022-09-03T12:00:00+08:00","platform_id":"meituan","order_id":"MT1","courier_id":"C1","zone_id":"XH-2022-09-01","courier_released":true}"#;
    let rural = br#"{"type":"rural_delivery","event_id":"r1","occurred_at":"2022-10-03T12:00:00+08:00","firm_id":"zto","outlet_id":"ZTO-CA-001","waybill_no":"ZR1"}"#;
    produce_values(&world.takeout_topic, 1, &[Some(takeout.as_slice())]).await;
    produce_values(&world.rural_topic, 1, &[Some(rural.as_slice())]).await;

    let stdout = world.run_ok(&["run", "--until-caught-up"]);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let rejected = cases.iter().filter(|c| c.reason.is_some()).count();
    assert_eq!(summary["accepted"], 3, "{stdout}");
    assert_eq!(summary["rejected"], rejected, "{stdout}");
    assert_eq!(summary["dead_letters"], rejected, "{stdout}");
    assert_eq!(summary["dead_letters_failed"], 0, "{stdout}");
    assert_eq!(
        summary["dead_letters_truncated"],
        cases.iter().filter(|c| c.truncated).count(),
        "{stdout}"
    );

    // Every message has its one outcome, the payload stored byte for byte.
    let stored = world
        .query("SELECT toString(`offset`), reason, detail, hex(payload) FROM {db}.rejected_events ORDER BY `offset`")
        .await;
    let expected: Vec<(usize, &Case)> = cases
        .iter()
        .enumerate()
        .filter(|(_, c)| c.reason.is_some())
        .collect();
    assert_eq!(
        stored.len(),
        expected.len(),
        "rejections: {:?}",
        stored.iter().map(|r| &r[..3]).collect::<Vec<_>>()
    );
    for ((offset, case), row) in expected.iter().zip(&stored) {
        assert_eq!(row[0], offset.to_string(), "{}", case.name);
        assert_eq!(row[1], case.reason.unwrap(), "{}: {}", case.name, row[2]);
        for needle in case.detail {
            assert!(
                row[2].contains(needle),
                "{}: detail {:?} lacks {needle:?}",
                case.name,
                row[2]
            );
        }
        assert!(
            row[2].chars().count() < 400,
            "{}: detail too long to read",
            case.name
        );
        let sent = case.value.clone().unwrap_or_default();
        assert_eq!(
            row[3],
            hex(&sent),
            "{}: payload not stored byte for byte",
            case.name
        );
    }
    let paid = world
        .query("SELECT program, unit_key FROM {db}.ledger ORDER BY program")
        .await;
    assert_eq!(
        paid,
        vec![
            vec!["import_parcel", "SF-OK-1"],
            vec!["rural_delivery", "ZR1"],
            vec!["takeout_order", "meituan/MT1"],
        ]
    );

    // One letter per rejection, each under the limits, cut ones marked and hashed.
    let letters = consume_all(&world.dlq_topic, rejected);
    assert_eq!(letters.len(), rejected);
    for (key, value) in &letters {
        assert!(value.len() <= ENVELOPE_BYTES_MAX && value.len() < DEAD_LETTER_MESSAGE_BYTES_MAX);
        let letter: serde_json::Value = serde_json::from_slice(value).unwrap();
        let offset = letter["source_offset"].as_u64().unwrap() as usize;
        assert_eq!(
            key.as_deref(),
            Some(format!("{}/0/{offset}", world.import_topic).as_bytes())
        );
        let case = &cases[offset];
        assert_eq!(letter["reason"], case.reason.unwrap(), "{}", case.name);
        match &case.value {
            None => assert_eq!(letter["tombstone"], true),
            Some(sent) => {
                assert_eq!(letter["payload_truncated"], case.truncated, "{}", case.name);
                assert_eq!(letter["payload_bytes"], sent.len(), "{}", case.name);
                assert_eq!(letter["payload_sha256"], sha256_hex(sent), "{}", case.name);
                if let Some(text) = letter["payload"].as_str() {
                    assert!(
                        sent.starts_with(text.as_bytes()),
                        "{}: not a prefix",
                        case.name
                    );
                }
            }
        }
    }

    let balance = world.run_ok(&["conservation"]);
    assert!(
        balance.contains("every partition balances; every message in Kafka has an outcome"),
        "{balance}"
    );
    world.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conservation_fails_for_messages_in_kafka_without_an_outcome() {
    // Proves: messages produced after the ingester stopped make `conservation` exit 1
    // after its settle time, naming the partition and how many wait; a configured topic
    // never consumed is listed though it has no stored row; once `run` caught up it
    // passes again; and `--no-kafka` checks storage alone.
    require_services().await;
    let world = World::new("stuck");
    let _dir = world.load_small_refdata();
    let parcel = |n: usize| import("sf-express", &format!("SF-{n}"));
    let first: Vec<Vec<u8>> = (0..4).map(parcel).collect();
    produce_raw(&world.import_topic, 1, &first).await;
    produce_raw(&world.takeout_topic, 1, &[]).await;
    produce_raw(&world.rural_topic, 1, &[]).await;
    world.run_ok(&["run", "--until-caught-up"]);
    world.run_ok(&["conservation", "--settle-ms", "1000"]);

    let later: Vec<Vec<u8>> = (4..9).map(parcel).collect();
    produce_raw(&world.import_topic, 1, &later).await;
    let forgotten = format!("{}.forgotten", world.database);
    produce_raw(&forgotten, 1, &first).await;
    let topics = format!("{},{forgotten}", world.topics_csv());
    let output = world.run_cli(&["conservation", "--settle-ms", "1500", "--topics", &topics]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let import_line = stdout
        .lines()
        .find(|l| l.starts_with(world.import_topic.as_str()))
        .unwrap();
    assert!(import_line.contains("STUCK"), "{stdout}");
    assert!(
        import_line.split_whitespace().any(|w| w == "5"),
        "{import_line}"
    );
    let forgotten_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(&forgotten))
        .collect();
    assert_eq!(forgotten_lines.len(), 1, "{stdout}");
    assert!(
        forgotten_lines.iter().all(|l| l.contains("STUCK")),
        "{stdout}"
    );
    assert!(
        stdout.contains("9 message(s) in Kafka have NO outcome"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("conservation check failed"),
        "{output:?}"
    );
    assert!(world
        .run_ok(&["conservation", "--no-kafka"])
        .contains("Kafka not checked"));

    world.run_ok(&["run", "--until-caught-up"]);
    let balance = world.run_ok(&["conservation", "--settle-ms", "1000"]);
    assert!(
        balance.contains("total: 9 messages = 9 units + 0 rejected"),
        "{balance}"
    );
    assert!(
        balance.contains("every message in Kafka has an outcome"),
        "{balance}"
    );
    world.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_refused_for_good_is_counted_and_the_others_delivered() {
    // Proves, against the real broker: a letter librdkafka refuses for good (here larger
    // than a producer limit of 4,096 bytes) is given up at once and counted, not retried
    // and not fatal, and the letters before and after it are delivered.
    require_services().await;
    let topic = unique("dlq_refused");
    kafka_config("admin")
        .ensure_topics(&[topic.as_str()], 1)
        .await
        .unwrap();
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("message.max.bytes", "4096")
        .create()
        .unwrap();
    let letter = |offset: i64, payload_bytes: usize| DeadLetter {
        topic: "src".into(),
        partition: 0,
        offset,
        reason: Reason::SchemaViolation,
        detail: "field \"waybill_no\": …".into(),
        payload: Some(vec![b'a'; payload_bytes]),
        payload_at_source: false,
        received_at_unix_s: 1,
    };
    let letters = [letter(0, 10), letter(1, 100_000), letter(2, 10)];
    let started = Instant::now();
    let tally = DeadLetterSender {
        producer: &producer,
        topic: &topic,
        retry_backoff_max: Duration::from_secs(1),
    }
    .send_all(&letters)
    .await;
    assert_eq!(
        tally,
        SendTally {
            sent: 2,
            truncated: 0,
            failed: 1
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let mut keys: Vec<Vec<u8>> = consume_all(&topic, 2)
        .into_iter()
        .filter_map(|(key, _)| key)
        .collect();
    keys.sort();
    assert_eq!(keys, vec![b"src/0/0".to_vec(), b"src/0/2".to_vec()]);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
