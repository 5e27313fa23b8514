//! The SPEC §8 programs through the real broker and ClickHouse: lockers, ID devices,
//! county centres, village outlets' openings, platform months with an infection, and
//! the new reasons — in two arrival orders that must give identical views.

mod harness;

use harness::{produce_raw, require_services, World};

// In fen: 26.9 prints `Decimal` without trailing zeros, 18.16 with them.
const MONTHLY: &str = "SELECT toString(month), program, recipient_id, district_code, toString(units), toString(nominal_fen), toString(granted_fen) FROM {db}.subsidy_monthly_fen ORDER BY month, program, recipient_id, district_code";
const FUNDING: &str = "SELECT toString(month), district_code, program, toString(granted_fen), toString(district_share_fen), toString(city_share_fen) FROM {db}.subsidy_funding_monthly_fen ORDER BY month, district_code, program";
const REJECTED: &str =
    "SELECT reason, program, unit_key FROM {db}.rejected_events ORDER BY reason, program, unit_key";

/// One message of each case, as JSON text (the small world's firms: meituan in 西湖
/// 330106, sf-express in 萧山 330109, zto in 上城 330102 with a major penalty on
/// 2023-06-01; its sealed zone XH-2022-09-01 in 西湖, 2022-09-01 … 2022-09-07).
fn messages() -> Vec<String> {
    let envelope = |n: usize, kind: &str, at: &str, rest: &str| {
        format!(r#"{{"type":"{kind}","event_id":"v2-{n}","occurred_at":"{at}",{rest}}}"#)
    };
    let lockers = [
        ("LK-1", "2000.00"),
        ("LK-2", "1666.65"),
        ("LK-3", "1666.60"),
        ("LK-4", "1200.00"),
    ];
    let mut out: Vec<String> = lockers
        .iter()
        .enumerate()
        .map(|(n, (serial, price))| {
            envelope(
                n,
                "locker_purchased",
                &format!("2023-04-0{}T10:00:00+08:00", n + 1),
                &format!(r#""purchaser_id":"sf-express","locker_serial":"{serial}","price":"{price}","site_type":"office_building""#),
            )
        })
        .collect();
    out.extend([
        // The same locker sent again under another event_id: a duplicate.
        envelope(10, "locker_purchased", "2023-04-01T10:00:00+08:00", r#""purchaser_id":"sf-express","locker_serial":"LK-1","price":"2000.00","site_type":"office_building""#),
        envelope(11, "id_device_purchased", "2024-01-05T10:00:00+08:00", r#""firm_id":"meituan","device_serial":"DEV-1""#),
        envelope(12, "county_center_opened", "2023-11-30T10:00:00+08:00", r#""firm_id":"sf-express","center_id":"CC-1","district_code":"330127""#),
        envelope(13, "village_outlet_opened", "2022-08-01T10:00:00+08:00", r#""firm_id":"zto","outlet_id":"VO-1","village_code":"330127101001","district_code":"330127""#),
        // 2022-09 is attested complete on 2022-10-03 ...
        envelope(14, "platform_month_attested", "2022-10-03T10:00:00+08:00", r#""platform_id":"meituan","month":"2022-09","prevention_measures":true,"couriers_managed":true,"sites_disinfected":true"#),
        // ... and one of its couriers was infected on 2022-09-20: the month pays 0.
        envelope(15, "courier_infection", "2022-09-20T08:00:00+08:00", r#""platform_id":"meituan","courier_id":"MT-C-7""#),
        envelope(16, "platform_month_attested", "2022-11-02T10:00:00+08:00", r#""platform_id":"meituan","month":"2022-10","prevention_measures":true,"couriers_managed":true,"sites_disinfected":true"#),
        envelope(17, "platform_month_attested", "2022-12-02T10:00:00+08:00", r#""platform_id":"meituan","month":"2022-11","prevention_measures":true,"couriers_managed":false,"sites_disinfected":true"#),
        // zto is penalised from 2023-06-01: its June is judged on 2023-06-30.
        envelope(18, "platform_month_attested", "2023-07-02T10:00:00+08:00", r#""platform_id":"zto","month":"2023-06","prevention_measures":true,"couriers_managed":true,"sites_disinfected":true"#),
        // hangzhou-2022 sets no lost-work allowance.
        envelope(19, "courier_idle_day", "2022-09-05T20:00:00+08:00", r#""platform_id":"meituan","courier_id":"MT-C-7","zone_id":"XH-2022-09-01","date":"2022-09-04""#),
        envelope(20, "locker_purchased", "2023-04-09T10:00:00+08:00", r#""purchaser_id":"sf-express","locker_serial":"LK-9","price":"0.00","site_type":"other""#),
        envelope(21, "county_center_opened", "2023-11-30T10:00:00+08:00", r#""firm_id":"sf-express","center_id":"CC-2","district_code":"330199""#),
    ]);
    out
}

async fn ingest(order: &[usize]) -> (World, Vec<Vec<String>>, Vec<Vec<String>>, Vec<Vec<String>>) {
    let world = World::new("programs");
    let _dir = world.load_small_refdata();
    let all = messages();
    let payloads: Vec<Vec<u8>> = order.iter().map(|&i| all[i].clone().into_bytes()).collect();
    // One partition, so the order given is the order consumed.
    produce_raw(&world.import_topic, 1, &payloads).await;
    produce_raw(&world.takeout_topic, 1, &[]).await;
    produce_raw(&world.rural_topic, 1, &[]).await;
    world.run_ok(&["run", "--until-caught-up"]);
    world.run_ok(&["conservation", "--no-kafka"]);
    let monthly = world.query(MONTHLY).await;
    let funding = world.query(FUNDING).await;
    let rejected = world.query(REJECTED).await;
    (world, monthly, funding, rejected)
}

fn rows(text: &[&str]) -> Vec<Vec<String>> {
    text.iter()
        .map(|row| row.split(' ').map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_new_program_lands_in_the_views_whatever_the_arrival_order() {
    // Proves: lockers pay 30 % half-even up to 500.00 (SPEC §8's four examples), an ID
    // device 5,000.00, a county centre 100,000.00 in the event's district, a village
    // outlet's opening 50,000.00, a platform month 100,000.00 — and 0.00 when an infection
    // of its platform falls in that month, whether the infection arrives after the
    // attestation or before it; zero-pay records have no rows; attestation_incomplete,
    // firm_ineligible (judged on the month's last day), program_not_configured, duplicate
    // and the schema violations of a zero price and an unknown district are rejections;
    // both orders give identical monthly, funding and rejection views.
    require_services().await;
    let count = messages().len();
    let forward: Vec<usize> = (0..count).collect();
    // Reversed: the infection comes before its month's attestation, the duplicate before
    // the locker it repeats.
    let backward: Vec<usize> = (0..count).rev().collect();
    let (first, monthly, funding, rejected) = ingest(&forward).await;
    assert_eq!(
        monthly,
        rows(&[
            "2022-08-01 village_outlet_opened zto 330127 1 5000000 5000000",
            "2022-09-01 platform_month_attested meituan 330106 1 0 0",
            "2022-10-01 platform_month_attested meituan 330106 1 10000000 10000000",
            "2023-04-01 locker_purchased sf-express 330109 4 185998 185998",
            "2023-11-01 county_center_opened sf-express 330127 1 10000000 10000000",
            "2024-01-01 id_device_purchased meituan 330106 1 500000 500000",
            // VO-1's anniversaries: 2023-08-01 falls in zto's penalty year (from
            // 2023-06-01), so it is not due; 2024-08-01 and 2025-08-01 pay 20,000.00.
            "2024-08-01 village_outlet_opened zto 330127 1 2000000 2000000",
            "2025-08-01 village_outlet_opened zto 330127 1 2000000 2000000",
        ]),
    );
    assert!(
        funding.contains(
            &rows(&["2023-11-01 330127 county_center_opened 10000000 7500000 2500000"])[0]
        ),
        "{funding:?}"
    );
    assert!(
        funding.contains(&rows(&["2023-04-01 330109 locker_purchased 185998 139498 46500"])[0]),
        "{funding:?}"
    );
    let mut expected = rows(&[
        "attestation_incomplete platform_month_attested meituan/2022-11",
        "duplicate locker_purchased LK-1",
        "firm_ineligible platform_month_attested zto/2023-06",
        "program_not_configured courier_idle_day meituan/MT-C-7/2022-09-04",
    ]);
    // A bad price fails decoding (no program or key yet); an unknown district is the
    // rules' step-4 check, after the type is known.
    expected.push(vec![
        "schema_violation".into(),
        String::new(),
        String::new(),
    ]);
    expected.extend(rows(&["schema_violation county_center_opened CC-2"]));
    assert_eq!(rejected, expected);
    let (second, monthly_b, funding_b, rejected_b) = ingest(&backward).await;
    assert_eq!(
        monthly_b, monthly,
        "the reversed feed's monthly view differs"
    );
    assert_eq!(funding_b, funding);
    assert_eq!(rejected_b, rejected);
    first.drop_database().await;
    second.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_edition_is_refused_with_file_line_and_key_and_a_second_one_is_used() {
    // Proves: `--edition` with a bad amount exits 1 naming the file, the line and the key,
    // before touching anything; a folder with a second, later edition migrates and its
    // numbers reach the views' SQL (the 2026 cap), while the built-in edition's stay.
    require_services().await;
    let world = World::new("editions");
    let dir = tempfile::tempdir().unwrap();
    let builtin = subsidy_ingester::edition::DEFAULT_EDITION_TOML;
    let bad = builtin.replace("rate = \"0.30\"", "rate = \"0.305\"");
    let bad_line = bad[..bad.find("rate = \"0.305\"").unwrap()]
        .matches('\n')
        .count()
        + 1;
    let bad_file = harness::write_file(dir.path(), "bad.toml", &bad);
    let output = world.run_cli(&["--edition", bad_file.to_str().unwrap(), "migrate"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:{bad_line}: key `rural_delivery.rate`: \"0.305\" is not an amount",
            bad_file.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let folder = dir.path().join("editions");
    std::fs::create_dir(&folder).unwrap();
    harness::write_file(&folder, "hangzhou-2022.toml", builtin);
    let second = builtin
        .replace("name = \"hangzhou-2022\"", "name = \"hangzhou-2026\"")
        .replace("first_day = 2022-07-01", "first_day = 2026-01-01")
        .replace("last_day = 2025-12-31", "last_day = 2026-12-31")
        .replace(
            "cap_per_year = \"200000.00\"",
            "cap_per_year = \"150000.00\"",
        );
    harness::write_file(&folder, "hangzhou-2026.toml", &second);
    world.run_ok(&["--edition", folder.to_str().unwrap(), "migrate"]);
    let definition = world
        .query("SELECT create_table_query FROM system.tables WHERE database = '{db}' AND name = 'subsidy_granted_fen'")
        .await;
    let sql = &definition[0][0];
    assert!(sql.contains("2026") && sql.contains("15000000"), "{sql}");
    assert!(sql.contains("20000000"), "{sql}");
    world.drop_database().await;
}
