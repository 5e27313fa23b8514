//! The command line against real services, on small hand-written feeds whose totals are
//! worked out by hand from the policy's numbers: `migrate` is idempotent, bad reference
//! data is refused with file/line/field and loads nothing, unreachable services give a
//! clear error and a non-zero exit (no panic), rejected messages reach the dead-letter
//! topic, and `report monthly` prints the views in every format.

mod harness;

use harness::{produce_raw, require_services, write_file, World, FIRMS, ZONES};

#[tokio::test(flavor = "multi_thread")]
async fn migrate_twice_changes_nothing() {
    // Proves: a second `migrate` applies nothing and leaves the same objects, quietly; a
    // database with another build's views is upgraded by `migrate`.
    require_services().await;
    let world = World::new("cli_migrate");
    let first = world.run_ok(&["migrate"]);
    assert!(first.contains("applied 4 migration(s)"), "{first}");
    let objects = "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name";
    let before = world.query(objects).await;
    let quiet = world
        .command()
        .env_remove("SUBSIDY_LOG")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(quiet.status.success());
    assert!(
        quiet.stderr.is_empty(),
        "migrate logs only warnings by default: {}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let second = world.run_ok(&["migrate"]);
    assert!(second.contains("applied 0 migration(s)"), "{second}");
    assert!(second.contains("4 already applied"), "{second}");
    assert_eq!(world.query(objects).await, before);

    // A database whose views are another build's (recorded under another checksum, one of
    // them missing) gets this build's views from the same `migrate`; tables stay.
    world
        .execute("INSERT INTO {db}.schema_migrations VALUES (2, '0002_views.sql', 'another-build', now() + 60)")
        .await;
    world.execute("DROP TABLE {db}.conservation").await;
    let upgrade = world.run_ok(&["migrate"]);
    assert!(upgrade.contains("applied 1 migration(s)"), "{upgrade}");
    assert_eq!(world.query(objects).await, before);
    let again = world.run_ok(&["migrate"]);
    assert!(again.contains("applied 0 migration(s)"), "{again}");
    let names: Vec<&str> = before.iter().map(|r| r[0].as_str()).collect();
    for view in [
        "subsidy_monthly",
        "subsidy_funding_monthly",
        "rejected_events",
        "ledger",
        "outcomes",
    ] {
        assert!(names.contains(&view), "missing {view} in {names:?}");
    }
    world.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_reference_row_names_file_line_field_and_loads_nothing() {
    // Proves: one bad boolean on line 3 of firms.csv rejects the whole load (all files).
    require_services().await;
    let world = World::new("cli_refdata");
    world.run_ok(&["migrate"]);
    let dir = tempfile::tempdir().unwrap();
    let bad_firms = FIRMS.replace(
        "sf-express,顺丰速运,91330100MA2XXXXX02,330109,true,true",
        "sf-express,顺丰速运,91330100MA2XXXXX02,330109,true,yes",
    );
    let firms = write_file(dir.path(), "firms.csv", &bad_firms);
    let zones = write_file(dir.path(), "zones.csv", ZONES);
    let output = world.run_cli(&[
        "refdata",
        "load",
        "--firms",
        firms.to_str().unwrap(),
        "--zones",
        zones.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("firms.csv line 3"), "{stderr}");
    assert!(stderr.contains("field \"licensed\""), "{stderr}");
    assert!(stderr.contains("nothing was loaded"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for table in ["firms_history", "zones_history"] {
        let rows = world
            .query(&format!("SELECT count() FROM {{db}}.{table}"))
            .await;
        assert_eq!(rows, vec![vec!["0".to_string()]], "{table} must stay empty");
    }
    world.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_services_give_a_clear_error_and_no_panic() {
    // Proves: ClickHouse or broker down → exit 1 with an actionable message, never a panic.
    require_services().await;
    let world = World::new("cli_unreachable");
    let output = world
        .command()
        .env("SUBSIDY_CLICKHOUSE_URL", "http://127.0.0.1:1")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ClickHouse at http://127.0.0.1:1 is unreachable"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let _dir = world.load_small_refdata();
    let output = world
        .command()
        .env("SUBSIDY_KAFKA_BROKERS", "127.0.0.1:1")
        .args(["run", "--until-caught-up"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Kafka broker(s) at 127.0.0.1:1 unreachable"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let fresh = World::new("cli_unmigrated");
    let output = fresh.run_cli(&["run", "--until-caught-up"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("run `subsidy-ingester migrate` first"),
        "{stderr}"
    );
    world.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_feed_lands_with_hand_computed_totals_and_dead_letters() {
    // Proves, with numbers worked out by hand: a valid takeout order in a sealed zone pays
    // 1.00 to the courier in 西湖 (50 %: 0.50/0.50); the same order again under a new
    // event_id is a duplicate; an import parcel at 2023-12-31T16:30Z is January 2024 in
    // 萧山 (75 %); zto is penalised on 2023-06-01 so its parcel on 2024-05-31 is ineligible
    // and on 2024-06-01 eligible; rural deliveries pay 0.30 in 淳安 until 2025-03-14;
    // garbage is malformed_json. Every rejection is also on the dead-letter topic.
    require_services().await;
    let world = World::new("cli_small");
    let _dir = world.load_small_refdata();
    let payloads: Vec<Vec<u8>> = [
        r#"{"type":"takeout_order","event_id":"e1","occurred_at":"2022-09-03T04:00:00Z","platform_id":"meituan","order_id":"MT1","courier_id":"C1","zone_id":"XH-2022-09-01","courier_released":true}"#,
        r#"{"type":"takeout_order","event_id":"e2","occurred_at":"2022-09-03T12:00:00+08:00","platform_id":"meituan","order_id":"MT1","courier_id":"C1","zone_id":"XH-2022-09-01","courier_released":true}"#,
        r#"{"type":"import_parcel","event_id":"e3","occurred_at":"2023-12-31T16:30:00Z","firm_id":"sf-express","waybill_no":"SF1","channel":"express"}"#,
        r#"{"type":"import_parcel","event_id":"e4","occurred_at":"2024-05-31T10:00:00+08:00","firm_id":"zto","waybill_no":"ZT1","channel":"mail"}"#,
        r#"{"type":"import_parcel","event_id":"e5","occurred_at":"2024-06-01T10:00:00+08:00","firm_id":"zto","waybill_no":"ZT2","channel":"mail"}"#,
        r#"{"type":"rural_delivery","event_id":"e6","occurred_at":"2025-03-14T15:59:59Z","firm_id":"zto","outlet_id":"ZTO-CA-001","waybill_no":"ZR1"}"#,
        r#"{"type":"rural_delivery","event_id":"e7","occurred_at":"2025-03-14T16:00:00Z","firm_id":"zto","outlet_id":"ZTO-CA-001","waybill_no":"ZR2"}"#,
        "not json at all",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    produce_raw(&world.import_topic, 1, &payloads).await;
    produce_raw(&world.takeout_topic, 1, &[]).await;
    produce_raw(&world.rural_topic, 1, &[]).await;
    let stdout = world.run_ok(&["run", "--until-caught-up"]);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["accepted"], 4, "{stdout}");
    assert_eq!(summary["rejected"], 4, "{stdout}");

    let monthly = world
        .query("SELECT toString(month), program, recipient_id, district_code, units, nominal, granted FROM {db}.subsidy_monthly ORDER BY month, program")
        .await;
    let expected = vec![
        vec![
            "2022-09-01",
            "takeout_order",
            "C1",
            "330106",
            "1",
            "1.00",
            "1.00",
        ],
        vec![
            "2024-01-01",
            "import_parcel",
            "sf-express",
            "330109",
            "1",
            "1.00",
            "1.00",
        ],
        vec![
            "2024-06-01",
            "import_parcel",
            "zto",
            "330102",
            "1",
            "1.00",
            "1.00",
        ],
        vec![
            "2025-03-01",
            "rural_delivery",
            "ZTO-CA-001",
            "330127",
            "1",
            "0.30",
            "0.30",
        ],
    ];
    assert_eq!(monthly, expected);

    let funding = world
        .query("SELECT toString(month), district_code, program, granted, district_share, city_share FROM {db}.subsidy_funding_monthly ORDER BY month, district_code")
        .await;
    assert_eq!(
        funding,
        vec![
            vec![
                "2022-09-01",
                "330106",
                "takeout_order",
                "1.00",
                "0.50",
                "0.50"
            ],
            vec![
                "2024-01-01",
                "330109",
                "import_parcel",
                "1.00",
                "0.75",
                "0.25"
            ],
            vec![
                "2024-06-01",
                "330102",
                "import_parcel",
                "1.00",
                "0.50",
                "0.50"
            ],
            // 0.30 × 75 % = 0.225 → 0.22 (half-even), city 0.08.
            vec![
                "2025-03-01",
                "330127",
                "rural_delivery",
                "0.30",
                "0.22",
                "0.08"
            ],
        ]
    );

    let rejected = world
        .query("SELECT offset, reason FROM {db}.rejected_events ORDER BY offset")
        .await;
    assert_eq!(
        rejected,
        vec![
            vec!["1", "duplicate"],
            vec!["3", "firm_ineligible"],
            vec!["6", "outlet_not_enrolled"],
            vec!["7", "malformed_json"],
        ]
    );

    let letters = harness::consume_all(&world.dlq_topic, 4);
    assert_eq!(letters.len(), 4, "dead letters: {letters:?}");
    let mut reasons: Vec<(i64, String)> = letters
        .iter()
        .map(|(key, value)| {
            let v: serde_json::Value = serde_json::from_slice(value).unwrap();
            assert_eq!(v["source_topic"], world.import_topic.as_str());
            assert_eq!(v["source_partition"], 0);
            let offset = v["source_offset"].as_i64().unwrap();
            assert_eq!(
                key.as_deref(),
                Some(format!("{}/0/{offset}", world.import_topic).as_bytes())
            );
            (offset, v["reason"].as_str().unwrap().to_string())
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            (1, "duplicate".to_string()),
            (3, "firm_ineligible".to_string()),
            (6, "outlet_not_enrolled".to_string()),
            (7, "malformed_json".to_string()),
        ]
    );

    // The conservation check balances, and nothing is left unconsumed in Kafka.
    let quiet = world
        .command()
        .env_remove("SUBSIDY_LOG")
        .arg("conservation")
        .output()
        .unwrap();
    assert!(quiet.status.success(), "{quiet:?}");
    assert!(
        quiet.stderr.is_empty(),
        "conservation logs only warnings by default (the probe's end of partition is none): {}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let balance = world.run_ok(&["conservation", "--with-kafka"]);
    assert!(
        balance.contains("total: 8 messages = 4 units + 4 rejected; every partition balances"),
        "{balance}"
    );
    let balances: serde_json::Value =
        serde_json::from_str(&world.run_ok(&["conservation", "--with-kafka", "--json"])).unwrap();
    assert_eq!(balances[0]["messages"], 8);
    assert_eq!(balances[0]["gaps"], 0);
    assert_eq!(balances[0]["not_yet_consumed"], 0);

    // The report prints the same views in every format.
    let table = world.run_ok(&["report", "monthly", "--year", "2024", "--by", "district"]);
    assert!(table.contains("330109"), "{table}");
    assert!(
        table.lines().last().unwrap().starts_with("TOTAL"),
        "{table}"
    );
    let csv = world.run_ok(&[
        "report", "monthly", "--year", "2024", "--month", "1", "--format", "csv",
    ]);
    assert_eq!(
        csv,
        "month,program,units,voided_units,nominal,granted,clawed_back,net\n2024-01-01,import_parcel,1,0,1.00,1.00,0.00,1.00\n"
    );
    let json = world.run_ok(&[
        "report",
        "monthly",
        "--by",
        "recipient",
        "--format",
        "json",
        "--program",
        "rural_delivery",
    ]);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[0]["recipient_id"], "ZTO-CA-001");
    assert_eq!(rows[0]["granted"], "0.30");
    assert_every_report_shows_two_decimals(&world);
    world.drop_database().await;
}

/// Every grouping in every format: money has exactly two decimals (on every server), and
/// the totals are the hand-computed ones: 3.30 granted, of which the districts pay 1.97
/// and the city 1.33.
fn assert_every_report_shows_two_decimals(world: &World) {
    let two_decimals = |cell: &str| {
        let (whole, fen) = cell.split_once('.').unwrap_or((cell, ""));
        !whole.is_empty()
            && whole.chars().all(|c| c.is_ascii_digit())
            && fen.len() == 2
            && fen.chars().all(|c| c.is_ascii_digit())
    };
    let money = [
        "nominal",
        "granted",
        "district_share",
        "city_share",
        "clawed_back",
        "net",
        "district_share_net",
        "city_share_net",
    ];
    for by in ["program", "recipient", "district"] {
        let table = world.run_ok(&["report", "monthly", "--by", by]);
        let total: Vec<&str> = table.lines().last().unwrap().split_whitespace().collect();
        let expected_money: &[&str] = match by {
            // nominal granted district city clawed_back net district_net city_net
            "district" => &[
                "3.30", "3.30", "1.97", "1.33", "0.00", "3.30", "1.97", "1.33",
            ],
            // nominal granted clawed_back net
            _ => &["3.30", "3.30", "0.00", "3.30"],
        };
        assert_eq!(total[0], "TOTAL", "--by {by}:\n{table}");
        assert_eq!(
            &total[total.len() - expected_money.len()..],
            expected_money,
            "--by {by}:\n{table}"
        );
        let csv = world.run_ok(&["report", "monthly", "--by", by, "--format", "csv"]);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let header = reader.headers().unwrap().clone();
        let mut rows = 0;
        for record in reader.records() {
            let record = record.unwrap();
            for (name, cell) in header.iter().zip(record.iter()) {
                if money.contains(&name) {
                    assert!(two_decimals(cell), "--by {by} csv {name}={cell:?}:\n{csv}");
                }
            }
            rows += 1;
        }
        assert_eq!(rows, 4, "--by {by}:\n{csv}");
        let json = world.run_ok(&["report", "monthly", "--by", by, "--format", "json"]);
        let parsed: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.len(), 4, "{json}");
        for row in &parsed {
            for (name, value) in row {
                if money.contains(&name.as_str()) {
                    let text = value
                        .as_str()
                        .unwrap_or_else(|| panic!("{name} not a string: {json}"));
                    assert!(two_decimals(text), "--by {by} json {name}={text:?}");
                }
            }
        }
    }
}
