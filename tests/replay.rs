//! `replay` against real services, on small hand-written feeds whose differences are worked
//! out by hand: replaying with unchanged reference data changes nothing; after a reference
//! data fix it lists exactly the messages whose outcome changes and the yuan delta; units
//! paid outside the range stay paid (the seeded dedup index); `--from-time`/`--to-time`
//! resolve to the offsets of the message timestamps; the live database is untouched and
//! the scratch database is dropped unless `--keep-scratch` (and never one replay did not
//! make).

mod harness;

use harness::{kafka_config, require_services, World};
use serde_json::Value;
use std::time::Duration;

const FIRMS: &str = "firm_id,name,credit_code,district_code,legal_entity,licensed,in_monitoring,last_major_penalty_on
meituan,美团,91330100MA2XXXXX01,330106,true,true,true,
sf-express,顺丰速运,91330100MA2XXXXX02,330109,true,true,true,
zto,中通快递,91330100MA2XXXXX03,330102,true,true,true,2023-06-01
";
/// The "fix": sf-express lost its licence, zto's penalty was annulled.
const FIRMS_FIXED: &str = "firm_id,name,credit_code,district_code,legal_entity,licensed,in_monitoring,last_major_penalty_on
meituan,美团,91330100MA2XXXXX01,330106,true,true,true,
sf-express,顺丰速运,91330100MA2XXXXX02,330109,true,false,true,
zto,中通快递,91330100MA2XXXXX03,330102,true,true,true,
";
const OUTLETS: &str = "outlet_id,firm_id,district_code,village_code,enrolled_on
ZTO-CA-001,zto,330127,330127101001,2022-03-15
";
const ZONES: &str = "zone_id,zone_type,district_code,active_from,active_to
XH-2022-09-01,sealed,330106,2022-09-01T00:00:00+08:00,2022-09-07T23:59:59+08:00
";

fn import(event_id: &str, at: &str, firm: &str, waybill: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"import_parcel","event_id":"{event_id}","occurred_at":"{at}","firm_id":"{firm}","waybill_no":"{waybill}","channel":"mail"}}"#
    )
    .into_bytes()
}

/// Partition 0 of the import topic, with each message's live outcome (original firms).
fn partition_0() -> Vec<Vec<u8>> {
    vec![
        // 0: accepted, sf-express 330109, 2024-01 → rejected after the fix
        import("e1", "2024-01-10T10:00:00+08:00", "sf-express", "SF1"),
        // 1: firm_ineligible (zto penalised 2023-06-01 … 2024-05-31) → payable after the fix
        import("e2", "2024-05-31T10:00:00+08:00", "zto", "ZT1"),
        // 2: accepted, zto 330102, 2024-06
        import("e3", "2024-06-01T10:00:00+08:00", "zto", "ZT2"),
        // 3: duplicate of offset 2
        import("e4", "2024-06-02T10:00:00+08:00", "zto", "ZT2"),
        // 4: accepted, sf-express, 2024-02 → rejected after the fix
        import("e5", "2024-02-03T10:00:00+08:00", "sf-express", "SF2"),
        // 5: accepted rural delivery, 0.30 in 330127, 2024-07
        br#"{"type":"rural_delivery","event_id":"e6","occurred_at":"2024-07-01T10:00:00+08:00","firm_id":"zto","outlet_id":"ZTO-CA-001","waybill_no":"ZR1"}"#.to_vec(),
        // 6: malformed_json
        b"not json at all".to_vec(),
        // 7: accepted takeout order, courier C1 in 330106, 2022-09
        br#"{"type":"takeout_order","event_id":"e8","occurred_at":"2022-09-03T04:00:00Z","platform_id":"meituan","order_id":"MT1","courier_id":"C1","zone_id":"XH-2022-09-01","courier_released":true}"#.to_vec(),
    ]
}

/// Partition 1 of the import topic.
fn partition_1() -> Vec<Vec<u8>> {
    vec![
        // 0: accepted, sf-express, 2024-01 → rejected after the fix
        import("e9", "2024-01-20T10:00:00+08:00", "sf-express", "SF9"),
        // 1: firm_ineligible; after the fix the same unit as partition 0 offset 1, so one
        //    of the two is paid and the other is its duplicate
        import("e10", "2024-05-31T11:00:00+08:00", "zto", "ZT1"),
    ]
}

/// Produces payloads, in order, to one partition of a topic with `partitions` partitions.
async fn produce_to(topic: &str, partitions: i32, partition: i32, payloads: &[Vec<u8>]) {
    use rdkafka::producer::FutureRecord;
    let kafka = kafka_config("producer");
    kafka
        .ensure_topics(&[topic], partitions)
        .await
        .expect("create topic");
    let producer = kafka.producer().expect("producer");
    for (i, payload) in payloads.iter().enumerate() {
        let key = format!("k{i}");
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(&key)
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition}: {e}"));
    }
}

fn load_refdata(world: &World, dir: &std::path::Path, firms: &str) {
    world.load_refdata_csv(dir, firms, OUTLETS, ZONES);
}

/// Runs `replay --json` with `args` and returns the report.
fn replay_json(world: &World, args: &[&str]) -> Value {
    let mut all = vec!["replay", "--json"];
    all.extend_from_slice(args);
    let stdout = world.run_ok(&all);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {stdout}"))
}

/// Everything in the live database, summarised: outcomes rows and a hash of their
/// contents, and the reference-data snapshots.
async fn live_fingerprint(world: &World) -> Vec<Vec<String>> {
    world
        .query(
            "SELECT count(), sum(cityHash64(topic, `partition`, `offset`, reason, detail, unit_key, recipient_id, amount_fen)), \
                    (SELECT count() FROM {db}.firms_history), (SELECT count() FROM {db}.outlets_history), \
                    (SELECT count() FROM {db}.zones_history) \
             FROM {db}.outcomes",
        )
        .await
}

async fn database_exists(world: &World, name: &str) -> bool {
    let rows = world
        .query(&format!(
            "SELECT count() FROM system.databases WHERE name = '{name}'"
        ))
        .await;
    rows == vec![vec!["1".to_string()]]
}

/// `(source, live outcome, replay outcome)` of every listed changed message.
fn changes(report: &Value) -> Vec<(String, String, String)> {
    let label = |o: &Value| match o["outcome"].as_str().unwrap() {
        "rejected" => o["reason"].as_str().unwrap().to_string(),
        other => other.to_string(),
    };
    report["changed_examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["source"].as_str().unwrap().to_string(),
                label(&c["live"]),
                label(&c["replay"]),
            )
        })
        .collect()
}

/// `(outcome, live, replay)` counts.
fn outcome_counts(report: &Value) -> Vec<(String, u64, u64)> {
    report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["outcome"].as_str().unwrap().to_string(),
                c["live"].as_u64().unwrap(),
                c["replay"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `(month, recipient, live units, replay units, live, replay, delta)` of differing cells.
fn money_cells(report: &Value) -> Vec<(String, String, u64, u64, String, String, String)> {
    report["nominal_differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["month"].as_str().unwrap().to_string(),
                d["recipient_id"].as_str().unwrap().to_string(),
                d["live_units"].as_u64().unwrap(),
                d["replay_units"].as_u64().unwrap(),
                d["live_nominal"].as_str().unwrap().to_string(),
                d["replay_nominal"].as_str().unwrap().to_string(),
                d["delta"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn s(text: &str) -> String {
    text.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_finds_nothing_then_exactly_the_changes_of_a_reference_data_fix() {
    // Proves, with the numbers worked out by hand in `partition_0`/`partition_1`:
    // (a) replaying the whole topic with the reference data live used changes nothing;
    // (b) after a fix (sf-express unlicensed, zto's penalty annulled) exactly 5 messages
    //     change and the nominal falls by 2.00: sf-express loses 2.00 in January and 1.00
    //     in February, zto gains 1.00 in May (ZT1 is sent twice, on both partitions: one is
    //     paid, the other becomes its duplicate);
    //     a range starting at offset 3 keeps offset 3 a duplicate of the unit paid at
    //     offset 2, outside the range (the seeded dedup index), and `--to-offset` ends it;
    // (d) live is unchanged by every replay and the scratch database is dropped unless
    //     `--keep-scratch`; replay refuses the live database or a foreign one as scratch.
    require_services().await;
    let world = World::new("replay_fix");
    let dir = tempfile::tempdir().unwrap();
    world.run_ok(&["migrate"]);
    load_refdata(&world, dir.path(), FIRMS);
    produce_to(&world.import_topic, 2, 0, &partition_0()).await;
    produce_to(&world.import_topic, 2, 1, &partition_1()).await;
    produce_to(&world.takeout_topic, 1, 0, &[]).await;
    produce_to(&world.rural_topic, 1, 0, &[]).await;
    let stdout = world.run_ok(&["run", "--until-caught-up"]);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["accepted"], 6, "{stdout}");
    assert_eq!(summary["rejected"], 4, "{stdout}");
    let live_before = live_fingerprint(&world).await;
    let default_scratch = format!("{}_replay", world.database);

    // (a) Same reference data: no difference at all.
    let report = replay_json(
        &world,
        &["--topic", &world.import_topic, "--from-offset", "0"],
    );
    assert_eq!(report["messages_replayed"], 10, "{report}");
    assert_eq!(report["messages_in_live"], 10, "{report}");
    assert_eq!(report["messages_changed"], 0, "{report}");
    assert_eq!(report["messages_not_in_live"], 0, "{report}");
    assert_eq!(report["messages_not_replayed"], 0, "{report}");
    assert_eq!(report["units_seeded"], 0, "{report}");
    assert_eq!(report["nominal_live"], "5.30", "{report}");
    assert_eq!(report["nominal_replay"], "5.30", "{report}");
    assert_eq!(report["nominal_delta"], "0.00", "{report}");
    assert_eq!(report["nominal_differences"], serde_json::json!([]));
    assert_eq!(report["scratch_database"], default_scratch.as_str());
    assert_eq!(
        outcome_counts(&report),
        vec![
            (s("accepted"), 6, 6),
            (s("malformed_json"), 1, 1),
            (s("firm_ineligible"), 2, 2),
            (s("duplicate"), 1, 1),
        ]
    );
    let partitions: Vec<(i64, i64, i64, u64)> = report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["start_offset"].as_i64().unwrap(),
                p["end_offset"].as_i64().unwrap(),
                p["messages_replayed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(partitions, vec![(0, 0, 8, 8), (1, 0, 2, 2)]);
    assert!(!database_exists(&world, &default_scratch).await);
    assert_eq!(live_fingerprint(&world).await, live_before);

    // (b) The fix. Loading reference data changes the live snapshots, not the outcomes.
    load_refdata(&world, dir.path(), FIRMS_FIXED);
    let live_before = live_fingerprint(&world).await;
    let kept = format!("{}_audit", world.database);
    let report = replay_json(
        &world,
        &[
            "--topic",
            &world.import_topic,
            "--from-offset",
            "0",
            "--scratch-database",
            &kept,
            "--keep-scratch",
        ],
    );
    assert_eq!(report["messages_replayed"], 10, "{report}");
    assert_eq!(report["messages_changed"], 5, "{report}");
    let mut changed = changes(&report);
    // ZT1 is on both partitions: which copy the replay reads first is the unit.
    let zt1: Vec<&(String, String, String)> = changed
        .iter()
        .filter(|c| c.0.ends_with("/0/1") || c.0.ends_with("/1/1"))
        .collect();
    assert_eq!(zt1.len(), 2, "{changed:?}");
    let mut zt1_outcomes: Vec<&str> = zt1.iter().map(|c| c.2.as_str()).collect();
    zt1_outcomes.sort_unstable();
    assert_eq!(zt1_outcomes, vec!["accepted", "duplicate"], "{changed:?}");
    assert!(zt1.iter().all(|c| c.1 == "firm_ineligible"), "{changed:?}");
    changed.retain(|c| !(c.0.ends_with("/0/1") || c.0.ends_with("/1/1")));
    let topic = &world.import_topic;
    assert_eq!(
        changed,
        vec![
            (format!("{topic}/0/0"), s("accepted"), s("firm_ineligible")),
            (format!("{topic}/0/4"), s("accepted"), s("firm_ineligible")),
            (format!("{topic}/1/0"), s("accepted"), s("firm_ineligible")),
        ]
    );
    let first = &report["changed_examples"][0];
    assert_eq!(first["event_id"], "e1");
    assert_eq!(first["live"]["recipient_id"], "sf-express");
    assert_eq!(first["live"]["amount"], "1.00");
    assert_eq!(first["live"]["local_date"], "2024-01-10");
    assert!(
        first["replay"]["detail"]
            .as_str()
            .unwrap()
            .contains("sf-express"),
        "{first}"
    );
    assert_eq!(report["nominal_live"], "5.30", "{report}");
    assert_eq!(report["nominal_replay"], "3.30", "{report}");
    assert_eq!(report["nominal_delta"], "-2.00", "{report}");
    assert_eq!(
        money_cells(&report),
        vec![
            (
                s("2024-01-01"),
                s("sf-express"),
                2,
                0,
                s("2.00"),
                s("0.00"),
                s("-2.00")
            ),
            (
                s("2024-02-01"),
                s("sf-express"),
                1,
                0,
                s("1.00"),
                s("0.00"),
                s("-1.00")
            ),
            (
                s("2024-05-01"),
                s("zto"),
                0,
                1,
                s("0.00"),
                s("1.00"),
                s("1.00")
            ),
        ]
    );
    assert_eq!(
        outcome_counts(&report),
        vec![
            (s("accepted"), 6, 4),
            (s("malformed_json"), 1, 1),
            (s("firm_ineligible"), 2, 3),
            (s("duplicate"), 1, 2),
        ]
    );
    assert_eq!(live_fingerprint(&world).await, live_before);
    // --keep-scratch: the scratch database holds the replayed outcomes, the fixed
    // reference data, and its own views agree with the report.
    assert!(database_exists(&world, &kept).await);
    let scratch = |sql: &str| sql.replace("{scratch}", &kept);
    let rows = world
        .query(&scratch(
            "SELECT (SELECT count() FROM {scratch}.outcomes), \
                    (SELECT licensed FROM {scratch}.firms WHERE firm_id = 'sf-express'), \
                    (SELECT toString(sum(nominal_fen)) FROM {scratch}.subsidy_monthly_fen), \
                    (SELECT count() FROM {scratch}.replay_scratch)",
        ))
        .await;
    // 3.30 yuan nominal, read as fen: `toString(Decimal)` prints `3.3` on current servers.
    assert_eq!(rows, vec![vec![s("10"), s("0"), s("330"), s("1")]]);

    // A second replay into a kept scratch database replaces it (it carries the marker).
    let report = replay_json(
        &world,
        &[
            "--topic",
            &world.import_topic,
            "--partitions",
            "0",
            "--from-offset",
            "3",
            "--scratch-database",
            &kept,
        ],
    );
    assert!(!database_exists(&world, &kept).await);
    // Range [3, 8) of partition 0: offset 3 repeats ZT2, paid at offset 2 outside the
    // range, so it stays a duplicate; only SF2 (offset 4) changes.
    assert_eq!(report["messages_replayed"], 5, "{report}");
    assert_eq!(report["units_seeded"], 3, "{report}");
    assert_eq!(report["messages_in_live"], 5, "{report}");
    assert_eq!(
        changes(&report),
        vec![(format!("{topic}/0/4"), s("accepted"), s("firm_ineligible"))]
    );
    assert_eq!(report["nominal_delta"], "-1.00", "{report}");
    assert_eq!(
        money_cells(&report),
        vec![(
            s("2024-02-01"),
            s("sf-express"),
            1,
            0,
            s("1.00"),
            s("0.00"),
            s("-1.00")
        )]
    );
    assert_eq!(
        outcome_counts(&report),
        vec![
            (s("accepted"), 3, 2),
            (s("malformed_json"), 1, 1),
            (s("firm_ineligible"), 0, 1),
            (s("duplicate"), 1, 1),
        ]
    );

    // `--to-offset` is exclusive: [1, 2) is offset 1 alone, now payable to zto in May
    // (ZT1's other copy, on partition 1, is outside the range and was never paid).
    let report = replay_json(
        &world,
        &[
            "--topic",
            &world.import_topic,
            "--partitions",
            "0",
            "--from-offset",
            "1",
            "--to-offset",
            "2",
        ],
    );
    assert_eq!(report["messages_replayed"], 1, "{report}");
    assert_eq!(report["units_seeded"], 6, "{report}");
    assert_eq!(
        changes(&report),
        vec![(format!("{topic}/0/1"), s("firm_ineligible"), s("accepted"))]
    );
    assert_eq!(report["nominal_delta"], "1.00", "{report}");

    // The text report, for people.
    let text = world.run_ok(&[
        "replay",
        "--topic",
        &world.import_topic,
        "--from-offset",
        "0",
    ]);
    assert!(
        text.contains("changed outcomes: 5 of 10 messages"),
        "{text}"
    );
    assert!(
        text.contains("live 5.30, replay 3.30, delta -2.00"),
        "{text}"
    );
    assert!(text.contains("2024-05-01  import_parcel  zto"), "{text}");
    assert!(text.contains("+1.00"), "{text}");
    assert!(!database_exists(&world, &default_scratch).await);

    // Never the live database, nor one replay did not make, as scratch.
    let output = world.run_cli(&[
        "replay",
        "--topic",
        &world.import_topic,
        "--from-offset",
        "0",
        "--scratch-database",
        &world.database,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("must differ from the live database"),
        "{stderr}"
    );
    let foreign = World::new("replay_foreign");
    foreign.run_ok(&["migrate"]);
    let output = world.run_cli(&[
        "replay",
        "--topic",
        &world.import_topic,
        "--from-offset",
        "0",
        "--scratch-database",
        &foreign.database,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("was not made by `replay`"), "{stderr}");
    assert!(database_exists(&world, &foreign.database).await);
    assert_eq!(live_fingerprint(&world).await, live_before);
    foreign.drop_database().await;
    world.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn from_time_and_to_time_resolve_to_the_offsets_of_message_timestamps() {
    // Proves: messages carry the producer's CreateTime; `--from-time T` starts at the first
    // message stamped at or after T, `--to-time U` ends before the first stamped at or
    // after U; a time after every message replays nothing, one before all starts at 0.
    require_services().await;
    let world = World::new("replay_time");
    let dir = tempfile::tempdir().unwrap();
    world.run_ok(&["migrate"]);
    load_refdata(&world, dir.path(), FIRMS);
    produce_to(&world.takeout_topic, 1, 0, &[]).await;
    produce_to(&world.rural_topic, 1, 0, &[]).await;
    let topic = world.import_topic.clone();
    let shanghai = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let now = || {
        chrono::Utc::now()
            .with_timezone(&shanghai)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
    };
    let batch = |first: usize| -> Vec<Vec<u8>> {
        (first..first + 3)
            .map(|i| {
                import(
                    &format!("t{i}"),
                    "2024-06-10T10:00:00+08:00",
                    "sf-express",
                    &format!("W{i}"),
                )
            })
            .collect()
    };
    let before_all = now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    produce_to(&topic, 1, 0, &batch(0)).await; // offsets 0..3
    tokio::time::sleep(Duration::from_millis(300)).await;
    let middle = now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    produce_to(&topic, 1, 0, &batch(3)).await; // offsets 3..6
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    produce_to(&topic, 1, 0, &batch(6)[..2]).await; // offsets 6..8
    world.run_ok(&["run", "--until-caught-up"]);

    let range = |report: &Value| -> (i64, i64, u64) {
        let p = &report["partitions"][0];
        (
            p["start_offset"].as_i64().unwrap(),
            p["end_offset"].as_i64().unwrap(),
            report["messages_replayed"].as_u64().unwrap(),
        )
    };
    let report = replay_json(&world, &["--topic", &topic, "--from-time", &middle]);
    assert_eq!(range(&report), (3, 8, 5), "{report}");
    assert_eq!(report["messages_changed"], 0, "{report}");
    assert_eq!(report["nominal_delta"], "0.00", "{report}");
    let report = replay_json(
        &world,
        &[
            "--topic",
            &topic,
            "--from-time",
            &middle,
            "--to-time",
            &late,
        ],
    );
    assert_eq!(range(&report), (3, 6, 3), "{report}");
    assert_eq!(report["messages_in_live"], 3, "{report}");
    assert_eq!(report["nominal_live"], "3.00", "{report}");
    let report = replay_json(
        &world,
        &[
            "--topic",
            &topic,
            "--from-time",
            &before_all,
            "--to-time",
            &middle,
        ],
    );
    assert_eq!(range(&report), (0, 3, 3), "{report}");
    let report = replay_json(
        &world,
        &[
            "--topic",
            &topic,
            "--from-time",
            "2099-01-01T00:00:00+08:00",
        ],
    );
    assert_eq!(range(&report), (8, 8, 0), "{report}");
    assert_eq!(report["messages_compared"], 0, "{report}");
    let report = replay_json(
        &world,
        &[
            "--topic",
            &topic,
            "--from-time",
            &middle,
            "--to-time",
            "2099-01-01T00:00:00+08:00",
        ],
    );
    assert_eq!(range(&report), (3, 8, 5), "{report}");

    // Messages live has not processed yet are compared as absent there.
    produce_to(&topic, 1, 0, &batch(10)[..2]).await; // offsets 8..10
    let report = replay_json(&world, &["--topic", &topic, "--from-offset", "6"]);
    assert_eq!(range(&report), (6, 10, 4), "{report}");
    assert_eq!(report["messages_in_live"], 2, "{report}");
    assert_eq!(report["messages_not_in_live"], 2, "{report}");
    assert_eq!(report["messages_changed"], 2, "{report}");
    assert_eq!(report["changed_examples"][0]["live"]["outcome"], "absent");
    assert_eq!(
        report["changed_examples"][0]["replay"]["outcome"],
        "accepted"
    );
    assert_eq!(report["nominal_live"], "2.00", "{report}");
    assert_eq!(report["nominal_replay"], "4.00", "{report}");
    assert_eq!(report["nominal_delta"], "2.00", "{report}");
    // A start time and offsets are exclusive; the start is required.
    let output = world.run_cli(&[
        "replay",
        "--topic",
        &topic,
        "--from-time",
        &middle,
        "--from-offset",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let output = world.run_cli(&["replay", "--topic", &topic]);
    assert_eq!(output.status.code(), Some(2));
    let output = world.run_cli(&[
        "replay",
        "--topic",
        &topic,
        "--from-time",
        "2024-06-01T00:00:00",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("RFC 3339"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    world.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unit_stays_with_the_message_live_paid_across_partitions() {
    // Proves: which of two copies of a unit on different partitions is paid depends on the
    // order they are read in; live paid the copy on partition 1 (read first, behind 500
    // other messages), and the replay, which reads partition 0's copy first, still pays
    // partition 1's and calls partition 0's the duplicate: an unchanged replay of a feed
    // with cross-partition duplicates reports no change.
    require_services().await;
    let world = World::new("replay_order");
    let dir = tempfile::tempdir().unwrap();
    world.run_ok(&["migrate"]);
    load_refdata(&world, dir.path(), FIRMS);
    produce_to(&world.import_topic, 1, 0, &[]).await;
    produce_to(&world.rural_topic, 1, 0, &[]).await;
    let topic = world.takeout_topic.clone();
    let mut first: Vec<Vec<u8>> = (0..500).map(|_| b"filler".to_vec()).collect();
    first.push(import(
        "u1",
        "2024-03-01T10:00:00+08:00",
        "sf-express",
        "SFX",
    ));
    produce_to(&topic, 2, 1, &first).await;
    world.run_ok(&["run", "--until-caught-up"]);
    let copy = import("u2", "2024-03-01T10:00:00+08:00", "sf-express", "SFX");
    produce_to(&topic, 2, 0, &[copy]).await;
    world.run_ok(&["run", "--until-caught-up"]);
    let live = world
        .query("SELECT p, o, r FROM (SELECT toString(`partition`) AS p, toString(`offset`) AS o, '' AS r FROM {db}.ledger UNION ALL SELECT toString(`partition`) AS p, toString(`offset`) AS o, reason AS r FROM {db}.rejected_events WHERE reason = 'duplicate') ORDER BY p")
        .await;
    assert_eq!(
        live,
        vec![
            vec![s("0"), s("0"), s("duplicate")],
            vec![s("1"), s("500"), s("")]
        ]
    );

    let report = replay_json(&world, &["--topic", &topic, "--from-offset", "0"]);
    assert_eq!(report["messages_replayed"], 502, "{report}");
    assert_eq!(report["messages_changed"], 0, "{report}");
    assert_eq!(
        outcome_counts(&report),
        vec![
            (s("accepted"), 1, 1),
            (s("malformed_json"), 500, 500),
            (s("duplicate"), 1, 1),
        ]
    );
    world.drop_database().await;
}
