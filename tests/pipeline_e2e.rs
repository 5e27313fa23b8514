//! End to end through the real broker and the real ClickHouse, at scale: hundreds of
//! thousands of generated events (random keys, ≥ 2 % duplicates under new event ids, every
//! kind of malformed message, months out of order, one firm past its import cap and one
//! outlet past its rural cap) are produced, ingested by the real binary, and the analyst
//! views are compared with totals computed independently from the generator's intent by
//! `tests/common/oracle.rs` (which shares no code with the rules).

mod common;
mod harness;

use common::oracle::{self, Expectation};
use common::views::{self, expected_funding, expected_monthly, expected_rejections};
use harness::{require_services, World};
use std::time::{Duration, Instant};
use subsidy_devtools::sample::{FeedOrder, SampleFeed};

/// Events per feed: enough for one firm past 200,000 units and one outlet past 100,000.
const EVENTS: usize = 400_000;
const PARTITIONS: i32 = 4;

/// Migrates the world's database, loads the feed's reference data and produces the feed.
async fn land(world: &World, feed: &SampleFeed) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    world.migrate_and_load_refdata(feed, dir.path());
    let kafka = harness::kafka_config("producer");
    subsidy_devtools::feed::produce(&kafka, &feed.messages, PARTITIONS)
        .await
        .expect("produce the feed");
    dir
}

async fn monthly_view(world: &World) -> Vec<Vec<String>> {
    world.query(views::MONTHLY_SQL).await
}

async fn funding_view(world: &World) -> Vec<Vec<String>> {
    world.query(views::FUNDING_SQL).await
}

async fn rejected_by_reason(world: &World) -> Vec<Vec<String>> {
    world.query(views::REJECTED_BY_REASON_SQL).await
}

/// Asserts every view equals the oracle, and messages = units + rejected rows.
async fn assert_views_match(world: &World, expectation: &Expectation) {
    let monthly = monthly_view(world).await;
    let expected = expected_monthly(expectation);
    assert_eq!(monthly.len(), expected.len(), "subsidy_monthly row count");
    for (got, want) in monthly.iter().zip(&expected) {
        assert_eq!(got, want, "subsidy_monthly row");
    }
    assert_eq!(
        funding_view(world).await,
        expected_funding(expectation),
        "subsidy_funding_monthly"
    );
    assert_eq!(
        rejected_by_reason(world).await,
        expected_rejections(expectation),
        "rejected_events by reason"
    );
    let counts = world
        .query("SELECT (SELECT count() FROM {db}.ledger), (SELECT count() FROM {db}.rejected_events), (SELECT count() FROM (SELECT DISTINCT topic, partition, offset FROM {db}.outcomes))")
        .await;
    let units: u64 = counts[0][0].parse().unwrap();
    let rejected: u64 = counts[0][1].parse().unwrap();
    let messages: u64 = counts[0][2].parse().unwrap();
    assert_eq!(units, expectation.accepted_units, "ledger units");
    assert_eq!(
        messages, expectation.messages,
        "every produced message has an outcome"
    );
    assert_eq!(
        units + rejected,
        messages,
        "messages = accepted units + rejected rows"
    );
    let unbalanced = world
        .query("SELECT topic, partition FROM {db}.conservation WHERE NOT balanced")
        .await;
    assert!(
        unbalanced.is_empty(),
        "conservation fails for {unbalanced:?}"
    );
}

/// The caps land exactly on the cap, and later months are reduced.
async fn assert_caps_hit(world: &World) {
    let capped = world
        .query("SELECT program, recipient_id, toString(toYear(month)), sum(nominal), sum(granted) FROM {db}.subsidy_monthly WHERE program IN ('import_parcel', 'rural_delivery') GROUP BY program, recipient_id, toYear(month) HAVING sum(granted) < sum(nominal) ORDER BY program")
        .await;
    assert_eq!(
        capped.len(),
        2,
        "exactly one import firm and one rural outlet cross their caps: {capped:?}"
    );
    assert_eq!(capped[0][0], "import_parcel");
    assert_eq!(capped[0][4], "200000.00");
    assert_eq!(capped[1][0], "rural_delivery");
    assert_eq!(capped[1][4], "30000.00");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_400k_event_feed_lands_exactly_as_the_oracle_computes() {
    // Proves the whole path: shuffled feed (months out of order) through 4 partitions per
    // topic, one `run`, views equal to the oracle, caps exactly on 200,000.00 / 30,000.00.
    require_services().await;
    let world = World::new("e2e_main");
    let feed = world.cap_crossing_feed(EVENTS, 11, FeedOrder::Shuffled { seed: 5 });
    let expectation = oracle::expect(&feed.messages);
    let duplicates = expectation
        .rejected_by_reason
        .get("duplicate")
        .copied()
        .unwrap_or(0);
    assert!(
        duplicates * 50 >= EVENTS as u64,
        "feed must hold ≥ 2 % duplicates, has {duplicates}"
    );
    assert!(
        expectation.rejected_by_reason.len() >= 13,
        "every reason code: {:?}",
        expectation.rejected_by_reason
    );
    let _dir = land(&world, &feed).await;
    drop(feed);
    let stdout = world.run_ok(&["run", "--until-caught-up"]);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["accepted"].as_u64().unwrap() + summary["rejected"].as_u64().unwrap(),
        EVENTS as u64
    );
    assert_views_match(&world, &expectation).await;
    assert_caps_hit(&world).await;
    world.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_ordered_and_shuffled_feeds_give_identical_views() {
    // Proves order independence: the same feed, once sorted by event time and once
    // shuffled, lands in two databases with identical views (and both equal the oracle).
    require_services().await;
    let ordered = World::new("e2e_ordered");
    let shuffled = World::new("e2e_shuffled");
    let feed_a = ordered.cap_crossing_feed(EVENTS, 23, FeedOrder::TimeOrdered);
    let feed_b = shuffled.cap_crossing_feed(EVENTS, 23, FeedOrder::Shuffled { seed: 99 });
    let expectation = oracle::expect(&feed_a.messages);
    let _a = land(&ordered, &feed_a).await;
    let _b = land(&shuffled, &feed_b).await;
    drop((feed_a, feed_b));
    ordered.run_ok(&["run", "--until-caught-up"]);
    shuffled.run_ok(&["run", "--until-caught-up"]);
    assert_eq!(monthly_view(&ordered).await, monthly_view(&shuffled).await);
    assert_eq!(funding_view(&ordered).await, funding_view(&shuffled).await);
    assert_eq!(
        rejected_by_reason(&ordered).await,
        rejected_by_reason(&shuffled).await
    );
    assert_views_match(&ordered, &expectation).await;
    ordered.drop_database().await;
    shuffled.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_ingest_exits_zero_within_10s_and_a_restart_is_exact() {
    // Proves graceful shutdown: SIGTERM while batches are landing → exit 0 within 10 s;
    // `run` again resumes from the stored offsets and the views equal the oracle (nothing
    // lost, nothing counted twice).
    require_services().await;
    let world = World::new("e2e_sigterm");
    let feed = world.cap_crossing_feed(EVENTS, 31, FeedOrder::Shuffled { seed: 8 });
    let expectation = oracle::expect(&feed.messages);
    let _dir = land(&world, &feed).await;
    drop(feed);
    let mut child = world
        .command()
        .args(["run", "--batch-rows-max", "20000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until part of the feed is durable, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = world
            .query("SELECT toString(count()) FROM {db}.outcomes")
            .await;
        let landed: u64 = rows[0][0].parse().unwrap();
        if landed > 0 && landed < EVENTS as u64 {
            break;
        }
        assert!(
            landed < EVENTS as u64,
            "the whole feed landed before the signal; use a larger feed"
        );
        assert!(Instant::now() < deadline, "nothing landed within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "run did not exit within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(exit.code(), Some(0), "run must exit 0 after SIGTERM");
    let partial: u64 = world
        .query("SELECT toString(count()) FROM {db}.outcomes")
        .await[0][0]
        .parse()
        .unwrap();
    assert!(
        partial < EVENTS as u64,
        "the signal came after everything landed"
    );
    world.run_ok(&["run", "--until-caught-up"]);
    assert_views_match(&world, &expectation).await;
    world.drop_database().await;
}
