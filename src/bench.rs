//! `bench`: end-to-end throughput and memory, measured against a bare consumer in the
//! same run on the same broker.
//!
//! 1. generate N sample events and produce them to fresh topics;
//! 2. read them all with a bare librdkafka consumer that does nothing (the ceiling);
//! 3. run the real `subsidy-ingester run --until-caught-up` as a child process into a fresh
//!    database and read its summary: durable events/s and peak RSS (`VmHWM`);
//! 4. print both rates and their ratio; drop the scratch database unless `--keep`.

use crate::feed;
use crate::ingest::RunSummary;
use crate::kafka::KafkaConfig;
use crate::sample::{self, FeedOrder, SampleConfig, SampleTopics};
use crate::store::{migrate, refdata_store, Store, StoreConfig};
use anyhow::{bail, Context as _};
use rdkafka::consumer::Consumer;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

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
    /// The `subsidy-ingester` binary to run as the ingester.
    pub ingester_exe: PathBuf,
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
    pub accepted: u64,
    pub rejected: u64,
    pub database: String,
}

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
    migrate::migrate(&store).await?;
    refdata_store::save_snapshots(
        &store,
        1,
        Some(("bench", &generated.firms)),
        Some(("bench", &generated.outlets)),
        Some(("bench", &generated.zones)),
    )
    .await?;

    eprintln!(
        "bench: producing to {} partitions per topic…",
        settings.partitions
    );
    let produce_started = Instant::now();
    feed::produce(&settings.kafka, &generated.messages, settings.partitions).await?;
    let produce_rate = rate(settings.events, produce_started.elapsed());
    drop(generated);

    eprintln!("bench: bare consumer…");
    let bare_events_per_second =
        bare_consumer_rate(&settings.kafka, &tag, &topic_list, settings.events)?;

    eprintln!("bench: ingester…");
    let started = Instant::now();
    let output = tokio::process::Command::new(&settings.ingester_exe)
        .arg("run")
        .arg("--until-caught-up")
        .env("SUBSIDY_CLICKHOUSE_URL", &store_config.url)
        .env("SUBSIDY_CLICKHOUSE_DATABASE", &tag)
        .env("SUBSIDY_KAFKA_BROKERS", &settings.kafka.brokers)
        .env("SUBSIDY_TOPICS", topic_list.join(","))
        .env("SUBSIDY_GROUP_ID", format!("{tag}-ingest"))
        .env("SUBSIDY_DLQ_TOPIC", format!("{tag}.rejected"))
        .env("SUBSIDY_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("cannot start the ingester child process")?;
    let wall = started.elapsed();
    if !output.status.success() {
        bail!("ingester exited with {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: RunSummary = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("unreadable ingester summary: {stdout}"))?;
    if (summary.accepted + summary.rejected) as usize != settings.events {
        bail!(
            "ingester landed {} + {} messages, expected {}",
            summary.accepted,
            summary.rejected,
            settings.events
        );
    }
    if !settings.keep {
        store
            .execute(&format!("DROP DATABASE IF EXISTS {tag}"))
            .await?;
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
        accepted: summary.accepted,
        rejected: summary.rejected,
        database: tag,
    })
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
    format!(
        "events:                         {}\n\
         produce rate:                   {} events/s\n\
         bare librdkafka consumer:       {} events/s\n\
         ingester end-to-end (durable):  {} events/s\n\
         ratio ingester / bare consumer: {:.3}\n\
         ingester peak RSS:              {:.1} MiB\n\
         ingester wall time (w/ start):  {:.1} s\n\
         landed:                         {} accepted + {} rejected\n",
        report.events,
        report.produce_events_per_second,
        report.bare_consumer_events_per_second,
        report.ingester_events_per_second,
        report.ingester_ratio_to_bare,
        report.ingester_peak_rss_mib,
        report.ingester_wall_seconds_with_startup,
        report.accepted,
        report.rejected,
    )
}
