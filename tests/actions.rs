//! Voids and clawback (SPEC §8) through the real broker and ClickHouse: a void after its
//! unit and one before it, a void that moves a capped firm's later parcel up under the
//! cap, a second void of one unit, and two overlapping revocations across a year's end
//! that claw back by booking date — in two arrival orders that must give the same views.
//!
//! The cap is made small by an edition file written here (import parcels capped at 3.00
//! yuan a firm and year), so a handful of parcels cross it: editions are data.

mod harness;

use harness::{produce_raw, require_services, World};

const MONTHLY: &str = "SELECT toString(month), program, recipient_id, district_code, toString(units), toString(voided_units), toString(nominal_fen), toString(granted_fen), toString(clawed_back_fen), toString(net_fen) FROM {db}.subsidy_monthly_fen ORDER BY month, program, recipient_id, district_code";
const FUNDING: &str = "SELECT toString(month), district_code, program, toString(granted_fen), toString(district_share_fen), toString(city_share_fen), toString(clawed_back_fen), toString(net_fen), toString(district_share_net_fen), toString(city_share_net_fen) FROM {db}.subsidy_funding_monthly_fen ORDER BY month, district_code, program";
const REVOCATIONS: &str = "SELECT event_id, firm_id, toString(period_from), toString(period_to), toString(revoked_on), reason, revoked_by, toString(units), toString(clawed_back_fen) FROM {db}.revocations ORDER BY event_id";
const REJECTED: &str =
    "SELECT reason, program, unit_key FROM {db}.rejected_events ORDER BY reason, program, unit_key";

/// The feed, time-ordered: sf-express (萧山 330109, a 75 % district) imports parcels.
fn messages() -> Vec<String> {
    let envelope = |n: usize, kind: &str, at: &str, rest: &str| {
        format!(r#"{{"type":"{kind}","event_id":"act-{n:02}","occurred_at":"{at}",{rest}}}"#)
    };
    let parcel = |n: usize, date: &str, waybill: &str| {
        envelope(
            n,
            "import_parcel",
            &format!("{date}T10:00:00+08:00"),
            &format!(r#""firm_id":"sf-express","waybill_no":"{waybill}","channel":"express""#),
        )
    };
    let void = |n: usize, at: &str, waybill: &str| {
        envelope(
            n,
            "unit_voided",
            at,
            &format!(
                r#""program":"import_parcel","waybill_no":"{waybill}","void_reason":"sent in error: 重复申报""#
            ),
        )
    };
    vec![
        parcel(1, "2022-12-10", "P1"),
        parcel(2, "2022-12-20", "P2"),
        parcel(3, "2023-01-05", "P3"),
        parcel(4, "2023-01-10", "P4"),
        parcel(5, "2023-01-15", "P5"),
        parcel(6, "2023-02-03", "P6"),
        parcel(7, "2023-02-10", "P7"),
        // P4 voided after it was paid: February's P6 moves up under the cap.
        void(8, "2023-02-20T09:00:00+08:00", "P4"),
        // P9's void comes first; P9 then stays in the ledger, voided.
        void(9, "2023-02-25T09:00:00+08:00", "P9"),
        parcel(10, "2023-03-01", "P9"),
        // A second void of P4 is a duplicate.
        void(11, "2023-03-02T09:00:00+08:00", "P4"),
        envelope(
            12,
            "subsidy_revoked",
            "2023-06-01T09:00:00+08:00",
            r#""firm_id":"sf-express","period_from":"2022-12-15","period_to":"2023-01-20","reason":"审计发现虚报 (audit)","revoked_by":"hz-commerce-bureau""#,
        ),
        envelope(
            13,
            "subsidy_revoked",
            "2023-07-01T09:00:00+08:00",
            r#""firm_id":"sf-express","period_from":"2023-01-01","period_to":"2023-01-31","reason":"second audit","revoked_by":"hz-finance""#,
        ),
        // Paid after the revocation's own date: granted and clawed back in full.
        envelope(
            14,
            "id_device_purchased",
            "2023-08-01T10:00:00+08:00",
            r#""firm_id":"sf-express","device_serial":"DEV-9""#,
        ),
        // The same revocation again, under another event id: a duplicate.
        envelope(
            15,
            "subsidy_revoked",
            "2023-07-01T09:00:00+08:00",
            r#""firm_id":"sf-express","period_from":"2023-01-01","period_to":"2023-01-31","reason":"second audit","revoked_by":"hz-finance""#,
        ),
        // Unknown firms are the only check of a revocation; a void names a program.
        envelope(
            16,
            "subsidy_revoked",
            "2027-01-01T09:00:00+08:00",
            r#""firm_id":"nobody","period_from":"2023-01-01","period_to":"2023-01-31","reason":"x","revoked_by":"hz-finance""#,
        ),
        envelope(
            17,
            "unit_voided",
            "2023-03-02T09:00:00+08:00",
            r#""program":"subsidy_revoked","firm_id":"sf-express","void_reason":"no""#,
        ),
    ]
}

fn rows(text: &[&str]) -> Vec<Vec<String>> {
    text.iter()
        .map(|row| row.split(' ').map(str::to_string).collect())
        .collect()
}

struct Views {
    monthly: Vec<Vec<String>>,
    funding: Vec<Vec<String>>,
    revocations: Vec<Vec<String>>,
    rejected: Vec<Vec<String>>,
}

async fn ingest(order: &[usize]) -> Views {
    let world = World::new("actions");
    let _refdata = world.load_small_refdata();
    let dir = tempfile::tempdir().unwrap();
    let edition = subsidy_ingester::edition::DEFAULT_EDITION_TOML
        .replace("cap_per_year = \"200000.00\"", "cap_per_year = \"3.00\"");
    assert!(edition.contains("\"3.00\""), "the import cap line moved");
    let edition_file = harness::write_file(dir.path(), "small-cap.toml", &edition);
    let edition_flag = edition_file.to_str().unwrap();
    world.run_ok(&["--edition", edition_flag, "migrate"]);
    let all = messages();
    let payloads: Vec<Vec<u8>> = order.iter().map(|&i| all[i].clone().into_bytes()).collect();
    // One partition, so the order given is the order consumed.
    produce_raw(&world.import_topic, 1, &payloads).await;
    produce_raw(&world.takeout_topic, 1, &[]).await;
    produce_raw(&world.rural_topic, 1, &[]).await;
    world.run_ok(&["--edition", edition_flag, "run", "--until-caught-up"]);
    world.run_ok(&["--edition", edition_flag, "conservation", "--no-kafka"]);
    let views = Views {
        monthly: world.query(MONTHLY).await,
        funding: world.query(FUNDING).await,
        revocations: world.query(REVOCATIONS).await,
        rejected: world.query(REJECTED).await,
    };
    world.drop_database().await;
    views
}

#[tokio::test(flavor = "multi_thread")]
async fn voids_and_revocations_end_the_same_in_either_order() {
    // Proves: a void after its unit takes it out of nominal and granted and lets the cap
    // move February's parcel up; a void that comes first leaves its unit in the ledger,
    // voided (counted in units and voided_units, paid nothing); a second void of one unit
    // is a duplicate; a revocation claws back, booked in each payment's month, what was
    // attributed to the days of its period (2022-12-15 … 2023-01-20, across a year's end)
    // and every payment from its own date on (net 0); a payment two revocations cover
    // counts for the earlier; net funding shares split `net`; both orders give the same.
    require_services().await;
    let count = messages().len();
    let forward: Vec<usize> = (0..count).collect();
    // Reversed: voids and revocations come before the units they concern.
    let backward: Vec<usize> = (0..count).rev().collect();
    let first = ingest(&forward).await;
    assert_eq!(
        first.monthly,
        rows(&[
            // month program recipient district units voided nominal granted clawed net
            // P1 is before the period, P2 inside it: December's 2.00 is 1.00 clawed.
            "2022-12-01 import_parcel sf-express 330109 2 0 200 200 100 100",
            // P4 voided; P3 and P5 inside the period.
            "2023-01-01 import_parcel sf-express 330109 3 1 200 200 200 0",
            // The cap's last 1.00 goes to P6 (the earlier day), outside every period.
            "2023-02-01 import_parcel sf-express 330109 2 0 200 100 0 100",
            "2023-03-01 import_parcel sf-express 330109 1 1 0 0 0 0",
            "2023-08-01 id_device_purchased sf-express 330109 1 0 500000 500000 500000 0",
        ]),
    );
    assert_eq!(
        first.funding,
        rows(&[
            "2022-12-01 330109 import_parcel 200 150 50 100 100 75 25",
            "2023-01-01 330109 import_parcel 200 150 50 200 0 0 0",
            "2023-02-01 330109 import_parcel 100 75 25 0 100 75 25",
            "2023-03-01 330109 import_parcel 0 0 0 0 0 0 0",
            "2023-08-01 330109 id_device_purchased 500000 375000 125000 500000 0 0 0",
        ]),
    );
    assert_eq!(
        first.revocations,
        vec![
            [
                "act-12",
                "sf-express",
                "2022-12-15",
                "2023-01-20",
                "2023-06-01",
                "审计发现虚报 (audit)",
                "hz-commerce-bureau",
                "4",
                "500300",
            ]
            .map(String::from)
            .to_vec(),
            [
                "act-13",
                "sf-express",
                "2023-01-01",
                "2023-01-31",
                "2023-07-01",
                "second audit",
                "hz-finance",
                "0",
                "0",
            ]
            .map(String::from)
            .to_vec(),
        ]
    );
    let mut expected = rows(&[
        "duplicate subsidy_revoked sf-express/2023-01-01/2023-01-31",
        "duplicate unit_voided import_parcel/P4",
        "unknown_firm subsidy_revoked nobody/2023-01-01/2023-01-31",
    ]);
    // A void naming a revocation fails decoding (no key is built).
    expected.push(vec![
        "schema_violation".into(),
        String::new(),
        String::new(),
    ]);
    expected.sort();
    let mut rejected = first.rejected.clone();
    rejected.sort();
    assert_eq!(rejected, expected);

    let second = ingest(&backward).await;
    assert_eq!(
        second.monthly, first.monthly,
        "monthly view depends on order"
    );
    assert_eq!(
        second.funding, first.funding,
        "funding view depends on order"
    );
    // Reversed, act-15 is the revocation and act-13 its duplicate: all else is equal.
    let without_event_id = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        rows.iter().map(|r| r[1..].to_vec()).collect()
    };
    assert_eq!(
        without_event_id(&second.revocations),
        without_event_id(&first.revocations)
    );
    let mut rejected = second.rejected.clone();
    rejected.sort();
    // Reversed, the other copy of each pair is the duplicate; reasons and keys are equal.
    assert_eq!(rejected, expected);
}
