//! The incremental aggregates against the ledger: `conservation` catches a `monthly_nominal`
//! cell that disagrees with a recompute from `unit_decisions` (as after a server failure
//! between the ledger write and the aggregate write), and `repair aggregates` fixes it.

mod harness;

use harness::{produce_raw, require_services, World};

const MONTHLY: &str = "SELECT toString(month), program, recipient_id, district_code, toString(units), toString(nominal), toString(granted) FROM {db}.subsidy_monthly ORDER BY month, program, recipient_id, district_code";

#[tokio::test(flavor = "multi_thread")]
async fn conservation_catches_an_aggregate_that_disagrees_and_repair_fixes_it() {
    // Proves: after a clean ingest the aggregates equal the ledger and conservation passes;
    // a cell with units missing and a cell that exists in the aggregates only (both as a
    // failure between the two writes would leave them) make conservation exit 1 naming
    // both cells; `repair aggregates` corrects exactly those two; then conservation passes
    // and `subsidy_monthly` is what it was before the damage.
    require_services().await;
    let world = World::new("aggregates");
    let _dir = world.load_small_refdata();
    let payloads: Vec<Vec<u8>> = (0..30)
        .map(|n| {
            format!(
                r#"{{"type":"import_parcel","event_id":"e{n}","occurred_at":"2024-0{}-10T10:00:00+08:00","firm_id":"sf-express","waybill_no":"SF{n}","channel":"express"}}"#,
                1 + n % 3
            )
            .into_bytes()
        })
        .collect();
    produce_raw(&world.import_topic, 2, &payloads).await;
    produce_raw(&world.takeout_topic, 1, &[]).await;
    produce_raw(&world.rural_topic, 1, &[]).await;
    world.run_ok(&["run", "--until-caught-up"]);
    let before = world.query(MONTHLY).await;
    assert_eq!(before.len(), 3, "{before:?}");
    world.run_ok(&["conservation", "--no-kafka"]);

    world
        .execute("INSERT INTO {db}.monthly_nominal VALUES ('2024-02-01', 'import_parcel', 'sf-express', '330109', -4, -400), ('2023-11-01', 'rural_delivery', 'nobody', '330127', 2, 60)")
        .await;
    let damaged = world.run_cli(&["conservation", "--no-kafka"]);
    let stdout = String::from_utf8_lossy(&damaged.stdout);
    let stderr = String::from_utf8_lossy(&damaged.stderr);
    assert_eq!(damaged.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("2 cell(s) differ"), "{stdout}");
    assert!(
        stdout.contains("2024-02-01  import_parcel  sf-express  330109  units +4  nominal 4.00"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2023-11-01  rural_delivery  nobody  330127  units -2  nominal -0.60"),
        "{stdout}"
    );
    assert!(stderr.contains("repair aggregates"), "{stderr}");
    assert_ne!(world.query(MONTHLY).await, before);

    let repaired = world.run_ok(&["repair", "aggregates"]);
    assert!(
        repaired.contains("2 aggregate cell(s) corrected"),
        "{repaired}"
    );
    world.run_ok(&["conservation", "--no-kafka"]);
    assert_eq!(world.query(MONTHLY).await, before);
    let again = world.run_ok(&["repair", "aggregates"]);
    assert!(again.contains("0 aggregate cell(s) corrected"), "{again}");
    world.drop_database().await;
}
