//! `bench`: end-to-end throughput and memory, measured against a bare consumer in the
//! same run on the same broker.
//!
//! 1. generate N sample events and produce them to fresh topics;
//! 2. read them all with a bare librdkafka consumer that does nothing (the ceiling);
//! 3. run the real `subsidy-ingester run --until-caught-up` as a child process into a fresh
//!    database and read its summary: durable events/s and peak RSS (`VmHWM`);
//! 4. print both rates and their ratio; drop the scratch database unless `--keep`.

use crate::feed;
use crate::sample::{self, FeedOrder, SampleConfig, SampleTopics};
use anyhow::{bail, Context as _};
use rdkafka::consumer::Consumer;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use subsidy_ingester::ingest::RunSummary;
use subsidy_ingester::kafka::KafkaConfig;
use subsidy_ingester::store::{migrate, refdata_store, Store, StoreConfig};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub events: usize,
    pub seed: u64,
    pub partitions: i32,
    pub kafka: KafkaConfig,
    /// ClickHouse; the database name is replaced by a fresh scratch one.
    pub store: StoreConfig,
    /// Keep the scratch database for inspection.
    pub keep: bool,
    /// Units of history to seed first (0: none).
    pub history_units: u64,
    /// The `subsidy-ingester` binary to run as the ingester.
    pub ingester_exe: PathBuf,
    /// Run the ingester with `--metrics-addr` at this address (the metrics' cost); without
    /// metrics when `None`.
    pub metrics_addr: Option<String>,
}

/// Measurements on top of seeded history (`--history-units`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryReport {
    pub units: u64,
    pub messages: u64,
    pub seed_seconds: f64,
    /// `report monthly --year 2024 --by program`, wall time of the command.
    pub report_monthly_year_seconds: f64,
    /// `subsidy_monthly` for one year, grouped by month and program.
    pub monthly_view_year_seconds: f64,
    /// `subsidy_funding_monthly` for one month.
    pub funding_month_seconds: f64,
    /// `rejected_events` by reason for one month.
    pub rejected_month_by_reason_seconds: f64,
    /// Every analyst query above ran with `max_memory_usage` at this limit and succeeded.
    pub query_memory_limit_mib: u64,
    /// First start on the history: the ledger state rebuilt from ClickHouse, to the first
    /// consumed message.
    pub cold_start_seconds: f64,
    /// A restart with the state on disk, to the first consumed message (the measured
    /// run, which then ingests the benchmark's events).
    pub restart_seconds: f64,
    /// The ledger state's size on disk after the first run.
    pub state_disk_mib: f64,
}

/// The measurements.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub events: usize,
    pub produce_events_per_second: u64,
    pub bare_consumer_events_per_second: u64,
    pub ingester_events_per_second: u64,
    pub ingester_ratio_to_bare: f64,
    pub ingester_peak_rss_mib: f64,
    pub ingester_wall_seconds_with_startup: f64,
    /// Whether the ingester served metrics (`--metrics-addr`).
    pub ingester_metrics: bool,
    /// The ingester's CPU time over its whole run (start-up included), seconds.
    pub ingester_cpu_seconds: f64,
    /// Its CPU time per event, microseconds: what the code costs, barely moved by other
    /// work sharing the cores (unlike events/s).
    pub ingester_cpu_us_per_event: f64,
    pub accepted: u64,
    pub rejected: u64,
    pub database: String,
    pub history: Option<HistoryReport>,
}

/// Per-query memory limit the history benchmark's analyst queries run under (1 GiB).
const QUERY_MEMORY_LIMIT_BYTES: u64 = 1 << 30;
/// Events of the cold start's small feed (history only).
const WARM_UP_EVENTS: usize = 10_000;

/// Runs the benchmark and returns its report.
pub async fn bench(settings: &BenchSettings) -> anyhow::Result<BenchReport> {
    let tag = format!(
        "bench_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let topics = SampleTopics {
        takeout: format!("{tag}.takeout"),
        import: format!("{tag}.import"),
        rural: format!("{tag}.rural"),
    };
    let topic_list = vec![
        topics.takeout.clone(),
        topics.import.clone(),
        topics.rural.clone(),
    ];

    eprintln!(
        "bench: generating {} events (seed {})…",
        settings.events, settings.seed
    );
    let config = SampleConfig {
        seed: settings.seed,
        events: settings.events,
        topics,
        ..SampleConfig::default()
    };
    let mut generated = sample::generate(&config);
    generated.reorder(FeedOrder::Shuffled {
        seed: settings.seed,
    });

    let mut store_config = settings.store.clone();
    store_config.database = tag.clone();
    let store = Store::connect(&store_config).await?;
    migrate::migrate(&store, &subsidy_ingester::edition::Editions::builtin()).await?;
    refdata_store::save_snapshots(
        &store,
        1,
        Some(("bench", &generated.firms)),
        Some(("bench", &generated.outlets)),
        Some(("bench", &generated.zones)),
    )
    .await?;

    let units_partitions = subsidy_ingester::route::UNITS_PARTITIONS_DEFAULT;
    let seeded = if settings.history_units > 0 {
        eprintln!(
            "bench: seeding {} units of history…",
            settings.history_units
        );
        let firms: Vec<(String, String)> = generated
            .firms
            .iter()
            .map(|f| (f.firm_id.clone(), f.district_code.clone()))
            .collect();
        let outlets: Vec<(String, String)> = generated
            .outlets
            .iter()
            .map(|o| (o.outlet_id.clone(), o.district_code.clone()))
            .collect();
        let recipients = crate::bench_history::Recipients {
            firms: &firms,
            outlets: &outlets,
        };
        let history_topic = format!("{tag}.history");
        let seeded = crate::bench_history::seed(
            &store,
            settings.history_units,
            units_partitions,
            &history_topic,
            &recipients,
        )
        .await?;
        let units_topic = subsidy_ingester::route::default_units_topic(&tag);
        settings
            .kafka
            .ensure_topics(&[units_topic.as_str()], units_partitions as i32)
            .await?;
        let kafka = settings.kafka.clone();
        let counts = seeded.messages_per_partition[..units_partitions as usize].to_vec();
        let filled = tokio::task::spawn_blocking(move || {
            crate::bench_history::fill_units_topic(&kafka, &units_topic, &counts)
        })
        .await??;
        eprintln!("bench: units topic filled to the seeded offsets ({filled} records)");
        wait_for_merges(&store, &tag).await?;
        Some(seeded)
    } else {
        None
    };
    let state_dir = std::env::temp_dir().join("subsidy-bench-state");

    // On history, a first run on a small feed rebuilds the ledger state from ClickHouse
    // (the cold start); the measured run then restarts on the state on disk.
    let restart_topics = SampleTopics {
        takeout: topic_list[0].clone(),
        import: topic_list[1].clone(),
        rural: topic_list[2].clone(),
    };
    let cold = match seeded {
        None => None,
        Some(_) => {
            let warm_feed = sample::generate(&SampleConfig {
                seed: settings.seed + 1,
                events: WARM_UP_EVENTS,
                topics: restart_topics,
                ..SampleConfig::default()
            });
            feed::produce(&settings.kafka, &warm_feed.messages, settings.partitions).await?;
            eprintln!(
                "bench: cold start on the history (the ledger state rebuilt from ClickHouse)…"
            );
            let cold = run_ingester(settings, &store_config, &tag, &topic_list, &state_dir).await?;
            wait_for_merges(&store, &tag).await?;
            Some(cold)
        }
    };
    let already = cold.as_ref().map_or(0, |c| {
        WARM_UP_EVENTS.min((c.accepted + c.rejected) as usize)
    });

    eprintln!(
        "bench: producing to {} partitions per topic…",
        settings.partitions
    );
    let produce_started = Instant::now();
    feed::produce(&settings.kafka, &generated.messages, settings.partitions).await?;
    let produce_rate = rate(settings.events, produce_started.elapsed());
    drop(generated);

    eprintln!("bench: bare consumer…");
    let bare_events_per_second = bare_consumer_rate(
        &settings.kafka,
        &tag,
        &topic_list,
        settings.events + already,
    )?;

    eprintln!("bench: ingester…");
    let started = Instant::now();
    let summary = run_ingester(settings, &store_config, &tag, &topic_list, &state_dir).await?;
    let wall = started.elapsed();
    if (summary.accepted + summary.rejected) as usize != settings.events {
        bail!(
            "ingester landed {} + {} messages, expected {}",
            summary.accepted,
            summary.rejected,
            settings.events
        );
    }
    let history = match (seeded, cold) {
        (Some(seeded), Some(cold)) => {
            let state_disk_mib = dir_bytes(&state_dir.join(&tag)) as f64 / (1 << 20) as f64;
            eprintln!("bench: analyst queries on the history…");
            let report_started = Instant::now();
            let report = tokio::process::Command::new(&settings.ingester_exe)
                .args(["report", "monthly", "--year", "2024", "--by", "program"])
                .env("SUBSIDY_CLICKHOUSE_URL", &store_config.url)
                .env("SUBSIDY_CLICKHOUSE_DATABASE", &tag)
                .stdin(Stdio::null())
                .output()
                .await?;
            let report_seconds = report_started.elapsed().as_secs_f64();
            if !report.status.success() {
                bail!("report failed: {}", String::from_utf8_lossy(&report.stderr));
            }
            let limited = format!(" SETTINGS max_memory_usage = {QUERY_MEMORY_LIMIT_BYTES}");
            let funding_seconds = timed(
                &store,
                &format!("SELECT sum(granted_fen), sum(district_share_fen) FROM {tag}.subsidy_funding_monthly_fen WHERE month = '2024-03-01'{limited}"),
            )
            .await?;
            let rejected_seconds = timed(
                &store,
                &format!("SELECT reason, count() FROM {tag}.rejected_events WHERE received_at >= toDateTime('2024-03-01 00:00:00') AND received_at < toDateTime('2024-04-01 00:00:00') GROUP BY reason{limited}"),
            )
            .await?;
            let monthly_seconds = timed(
                &store,
                &format!("SELECT month, program, sum(granted) FROM {tag}.subsidy_monthly WHERE toYear(month) = 2024 GROUP BY month, program{limited}"),
            )
            .await?;
            Some(HistoryReport {
                units: seeded.units,
                messages: seeded.messages,
                seed_seconds: round1(seeded.seconds),
                report_monthly_year_seconds: round3(report_seconds),
                monthly_view_year_seconds: round3(monthly_seconds),
                funding_month_seconds: round3(funding_seconds),
                rejected_month_by_reason_seconds: round3(rejected_seconds),
                query_memory_limit_mib: QUERY_MEMORY_LIMIT_BYTES >> 20,
                cold_start_seconds: round3(cold.first_message_after_ms as f64 / 1000.0),
                restart_seconds: round3(summary.first_message_after_ms as f64 / 1000.0),
                state_disk_mib: round1(state_disk_mib),
            })
        }
        _ => None,
    };
    if !settings.keep {
        store
            .execute(&format!("DROP DATABASE IF EXISTS {tag}"))
            .await?;
        // The ledger state of the scratch database (gigabytes at 50 M units of history).
        let _ = std::fs::remove_dir_all(state_dir.join(&tag));
    }
    Ok(BenchReport {
        events: settings.events,
        produce_events_per_second: produce_rate,
        bare_consumer_events_per_second: bare_events_per_second,
        ingester_events_per_second: summary.events_per_second,
        ingester_ratio_to_bare: if bare_events_per_second > 0 {
            (summary.events_per_second as f64 / bare_events_per_second as f64 * 1000.0).round()
                / 1000.0
        } else {
            0.0
        },
        ingester_peak_rss_mib: (summary.peak_rss_bytes as f64 / (1 << 20) as f64 * 10.0).round()
            / 10.0,
        ingester_wall_seconds_with_startup: (wall.as_secs_f64() * 10.0).round() / 10.0,
        ingester_metrics: settings.metrics_addr.is_some(),
        ingester_cpu_seconds: (summary.cpu_seconds * 100.0).round() / 100.0,
        ingester_cpu_us_per_event: if settings.events > 0 {
            (summary.cpu_seconds * 1e6 / settings.events as f64 * 100.0).round() / 100.0
        } else {
            0.0
        },
        accepted: summary.accepted,
        rejected: summary.rejected,
        database: tag,
        history,
    })
}

/// Runs `subsidy-ingester run --until-caught-up` as a child and returns its summary.
async fn run_ingester(
    settings: &BenchSettings,
    store_config: &StoreConfig,
    tag: &str,
    topic_list: &[String],
    state_dir: &std::path::Path,
) -> anyhow::Result<RunSummary> {
    let mut command = tokio::process::Command::new(&settings.ingester_exe);
    command.arg("run").arg("--until-caught-up");
    match &settings.metrics_addr {
        Some(addr) => command.args(["--metrics-addr", addr]),
        // Not inherited from the bench's own environment: the measurement says which.
        None => command.env_remove("SUBSIDY_METRICS_ADDR"),
    };
    let output = command
        .env("SUBSIDY_CLICKHOUSE_URL", &store_config.url)
        .env("SUBSIDY_CLICKHOUSE_DATABASE", tag)
        .env("SUBSIDY_KAFKA_BROKERS", &settings.kafka.brokers)
        .env("SUBSIDY_TOPICS", topic_list.join(","))
        .env("SUBSIDY_GROUP_ID", format!("{tag}-ingest"))
        .env("SUBSIDY_DLQ_TOPIC", format!("{tag}.rejected"))
        .env("SUBSIDY_STATE_DIR", state_dir)
        .env("SUBSIDY_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("cannot start the ingester child process")?;
    if !output.status.success() {
        bail!("ingester exited with {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("unreadable ingester summary: {stdout}"))
}

/// Waits until ClickHouse has no merge running in `database` (at most 15 minutes): history
/// in production was written long ago and is merged; measuring while the seeded parts
/// still merge would charge that one-off work to the ingester and the analyst queries.
async fn wait_for_merges(store: &Store, database: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let running: u64 = store
            .fetch_one(&format!(
                "SELECT toUInt64(count()) FROM system.merges WHERE database = '{database}'"
            ))
            .await?;
        if running == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            eprintln!("bench: merges still running after 15 min; measuring anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "bench: ClickHouse merges of the history settled ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs a query, discarding its rows; returns its wall time, seconds.
async fn timed(store: &Store, sql: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    store.execute(sql).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Reads `expected` messages with a consumer that does nothing else; events/s measured
/// from the first message to the last.
fn bare_consumer_rate(
    kafka: &KafkaConfig,
    tag: &str,
    topics: &[String],
    expected: usize,
) -> anyhow::Result<u64> {
    let consumer = kafka.plain_consumer(&format!("{tag}-bare"))?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<Instant> = None;
    let mut count = 0usize;
    while count < expected {
        if Instant::now() > deadline {
            bail!("bare consumer read only {count} of {expected} messages in 600 s");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                first.get_or_insert_with(Instant::now);
                count += 1;
            }
            Some(Err(error)) => eprintln!("bench: bare consumer error: {error}"),
            None => {}
        }
    }
    let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok(rate(count, elapsed))
}

fn rate(count: usize, elapsed: Duration) -> u64 {
    if elapsed.is_zero() {
        return 0;
    }
    (count as f64 / elapsed.as_secs_f64()).round() as u64
}

/// The report as people read it.
pub fn render(report: &BenchReport) -> String {
    let mut text = render_run(report);
    if let Some(h) = &report.history {
        text.push_str(&format!(
            "history:                        {} units in {} messages, seeded in {:.1} s\n\
             report monthly --year 2024:     {:.3} s (the command, start to end)\n\
             subsidy_monthly, one year:      {:.3} s\n\
             funding view, one month:        {:.3} s\n\
             rejected by reason, one month:  {:.3} s\n\
             analyst queries ran under:      max_memory_usage {} MiB\n\
             cold start (state rebuilt):     {:.3} s to the first message\n\
             restart (state on disk):        {:.3} s to the first message\n\
             ledger state on disk:           {:.1} MiB\n",
            h.units,
            h.messages,
            h.seed_seconds,
            h.report_monthly_year_seconds,
            h.monthly_view_year_seconds,
            h.funding_month_seconds,
            h.rejected_month_by_reason_seconds,
            h.query_memory_limit_mib,
            h.cold_start_seconds,
            h.restart_seconds,
            h.state_disk_mib,
        ));
    }
    text
}

fn render_run(report: &BenchReport) -> String {
    format!(
        "events:                         {}\n\
         produce rate:                   {} events/s\n\
         bare librdkafka consumer:       {} events/s\n\
         ingester end-to-end (durable):  {} events/s\n\
         ratio ingester / bare consumer: {:.3}\n\
         ingester peak RSS:              {:.1} MiB\n\
         ingester wall time (w/ start):  {:.1} s\n\
         ingester CPU (w/ start):        {:.2} s, {:.2} µs/event (metrics {})\n\
         landed:                         {} accepted + {} rejected\n",
        report.events,
        report.produce_events_per_second,
        report.bare_consumer_events_per_second,
        report.ingester_events_per_second,
        report.ingester_ratio_to_bare,
        report.ingester_peak_rss_mib,
        report.ingester_wall_seconds_with_startup,
        report.ingester_cpu_seconds,
        report.ingester_cpu_us_per_event,
        if report.ingester_metrics { "on" } else { "off" },
        report.accepted,
        report.rejected,
    )
}
