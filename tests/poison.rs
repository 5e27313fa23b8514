//! Poison isolation: a message whose outcome row ClickHouse refuses must not stall its
//! partition or block good messages. The fault hook `SUBSIDY_FAULT_POISON_MARKER` makes
//! the row of every message containing the marker one that the server refuses ("Too large
//! string size"); the flusher splits the batch down to that row and stores it as a
//! `storage_refused` rejection with the server's error, and the summary counts it.

mod harness;

use harness::{produce_raw, require_services, write_file, World};

const FIRMS: &str = "firm_id,name,credit_code,district_code,legal_entity,licensed,in_monitoring,last_major_penalty_on
sf-express,顺丰速运,91330100MA2XXXXX02,330109,true,true,true,
";

fn parcel(n: usize, extra: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"import_parcel","event_id":"e{n}","occurred_at":"2024-03-0{}T10:00:00+08:00","firm_id":"sf-express","waybill_no":"SF{n:05}","channel":"express"{extra}}}"#,
        1 + n % 9
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_row_is_isolated_and_its_partition_keeps_flowing() {
    // Proves: 2,000 parcels on one partition, two of them poisoned (offsets 500 and 1999,
    // one in the middle of a batch and one last): `run` exits 0, the two land as
    // `storage_refused` with the server's error, every other parcel is a unit (the
    // partition did not stall), the summary counts 2, and conservation holds.
    require_services().await;
    let world = World::new("poison");
    let dir = tempfile::tempdir().unwrap();
    let firms = write_file(dir.path(), "firms.csv", FIRMS);
    world.run_ok(&["migrate"]);
    world.run_ok(&["refdata", "load", "--firms", firms.to_str().unwrap()]);
    let payloads: Vec<Vec<u8>> = (0..2_000)
        .map(|n| {
            if n == 500 || n == 1_999 {
                parcel(n, r#","note":"POISON-PILL""#)
            } else {
                parcel(n, "")
            }
        })
        .collect();
    produce_raw(&world.import_topic, 1, &payloads).await;
    produce_raw(&world.takeout_topic, 1, &[]).await;
    produce_raw(&world.rural_topic, 1, &[]).await;

    let output = world
        .command()
        .env("SUBSIDY_FAULT_POISON_MARKER", "POISON-PILL")
        .args(["run", "--until-caught-up", "--batch-rows-max", "1000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "run failed: {stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["rejected_by_reason"]["storage_refused"], 2,
        "{stdout}"
    );
    assert_eq!(summary["accepted"], 1_998, "{stdout}");
    assert!(
        stderr.contains("ClickHouse refused a message's row"),
        "{stderr}"
    );

    let refused = world
        .query(
            "SELECT toString(`offset`), reason, detail FROM {db}.rejected_events ORDER BY `offset`",
        )
        .await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0][0], "500");
    assert_eq!(refused[1][0], "1999");
    for row in &refused {
        assert_eq!(row[1], "storage_refused");
        assert!(
            row[2].contains("ClickHouse refused the outcome row"),
            "{row:?}"
        );
    }
    let units = world
        .query("SELECT toString(count()) FROM {db}.ledger")
        .await;
    assert_eq!(units[0][0], "1998");
    let unbalanced = world
        .query("SELECT topic FROM {db}.conservation WHERE NOT balanced")
        .await;
    assert!(unbalanced.is_empty(), "{unbalanced:?}");
    world.drop_database().await;
}
