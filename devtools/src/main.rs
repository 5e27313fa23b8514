//! `subsidy-dev`: the dev tools' command line — `sample` (a realistic feed with reference
//! data, optionally produced into Kafka) and `bench` (end to end, on history, the core path).
//! The service itself is `subsidy-ingester`; `bench` runs it as a child process, found next
//! to this binary.

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use subsidy_ingester::cli::{BrokerArgs, ClickHouseArgs, DEFAULT_TOPICS};

/// The service's allocator, so that `bench --core` measures the code as `run` runs it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Dev tools of subsidy-ingester: sample feeds and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "subsidy-dev", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic sample feed (reference CSVs and events) and optionally produce it.
    Sample(SampleArgs),
    /// End-to-end benchmark against a bare consumer: events/s, ratio and peak RSS.
    Bench(BenchArgs),
}

/// Order of a produced sample feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SampleOrder {
    /// As generated (months already out of order).
    Generated,
    /// Sorted by event time.
    Time,
    /// Shuffled with the seed.
    Shuffled,
}

/// Flags of `sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Messages to generate.
    #[arg(long, env = "SUBSIDY_SAMPLE_EVENTS", default_value_t = 100_000)]
    pub events: usize,
    /// Seed; the same seed gives the same feed.
    #[arg(long, env = "SUBSIDY_SAMPLE_SEED", default_value_t = 2022)]
    pub seed: u64,
    /// Add one import firm and one rural outlet past their yearly caps (needs ≥ 350,000 events).
    #[arg(long, env = "SUBSIDY_SAMPLE_CAP_CROSSING")]
    pub cap_crossing: bool,
    /// Message order.
    #[arg(
        long,
        value_enum,
        env = "SUBSIDY_SAMPLE_ORDER",
        default_value = "shuffled"
    )]
    pub order: SampleOrder,
    /// Where firms.csv, outlets.csv and zones.csv are written.
    #[arg(long, env = "SUBSIDY_SAMPLE_OUT_DIR", default_value = "sample-data")]
    pub out_dir: PathBuf,
    /// Also write the events' values to this file as NDJSON, one message a line, in the
    /// feed's order (for `subsidy-ingester validate`); values holding a newline are left out.
    #[arg(long, env = "SUBSIDY_SAMPLE_EVENTS_OUT")]
    pub events_out: Option<PathBuf>,
    /// Produce the events into Kafka (topics created if missing).
    #[arg(long)]
    pub produce: bool,
    /// Partitions of each topic created by `--produce`.
    #[arg(long, env = "SUBSIDY_SAMPLE_PARTITIONS", default_value_t = 4)]
    pub partitions: i32,
    #[command(flatten)]
    pub brokers: BrokerArgs,
    /// Topics for takeout orders, import parcels and rural deliveries, in that order.
    #[arg(
        long,
        env = "SUBSIDY_TOPICS",
        value_delimiter = ',',
        num_args = 3,
        default_value = DEFAULT_TOPICS
    )]
    pub topics: Vec<String>,
}

/// Flags of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Events to produce and ingest.
    #[arg(long, env = "SUBSIDY_BENCH_EVENTS", default_value_t = 1_000_000)]
    pub events: usize,
    /// Seed of the sample feed.
    #[arg(long, env = "SUBSIDY_BENCH_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Partitions per topic.
    #[arg(long, env = "SUBSIDY_BENCH_PARTITIONS", default_value_t = 4)]
    pub partitions: i32,
    #[command(flatten)]
    pub brokers: BrokerArgs,
    /// Keep the scratch database (`bench_<millis>`) for inspection.
    #[arg(long)]
    pub keep: bool,
    /// Seed this many units of history first (the rows ingesting them would write), then
    /// measure the analyst queries, a restart and the ingest on top of that history.
    #[arg(long, env = "SUBSIDY_BENCH_HISTORY_UNITS", default_value_t = 0)]
    pub history_units: u64,
    /// Measure only the core path (decode, rules, routing, encoding, the ledger's
    /// decision) on one thread, without Kafka or ClickHouse: ns/event and events/s/core.
    #[arg(long, conflicts_with = "history_units")]
    pub core: bool,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run the ingester with metrics served at this address (e.g. 127.0.0.1:0), to
    /// measure what metrics cost against a run without.
    #[arg(long)]
    pub metrics_addr: Option<String>,
}

fn main() {
    subsidy_ingester::cli::start_process(
        subsidy_ingester::cli::QUIET_STORE_INFO,
        subsidy_ingester::cli::LogFormat::Text,
        execute(Cli::parse()),
    );
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sample(args) => sample(args).await,
        Command::Bench(args) if args.core => {
            let (events, seed) = (args.events, args.seed);
            let report = tokio::task::spawn_blocking(move || {
                subsidy_devtools::bench_core::bench_core(events, seed, 3)
            })
            .await?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", subsidy_devtools::bench_core::render(&report));
            }
            Ok(())
        }
        Command::Bench(args) => {
            let settings = subsidy_devtools::bench::BenchSettings {
                events: args.events,
                seed: args.seed,
                partitions: args.partitions,
                kafka: args.brokers.kafka_config()?,
                store: cli.clickhouse.store_config()?,
                keep: args.keep,
                history_units: args.history_units,
                ingester_exe: ingester_exe()?,
                metrics_addr: args.metrics_addr.clone(),
            };
            let report = subsidy_devtools::bench::bench(&settings).await?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", subsidy_devtools::bench::render(&report));
            }
            Ok(())
        }
    }
}

/// The `subsidy-ingester` binary next to this one (`cargo build --release` builds both).
fn ingester_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()
        .context("cannot find this binary")?
        .with_file_name("subsidy-ingester");
    if !exe.is_file() {
        bail!(
            "{} not found: build the service next to this tool (`cargo build --release` in the repository builds both)",
            exe.display()
        );
    }
    Ok(exe)
}

async fn sample(args: SampleArgs) -> anyhow::Result<()> {
    use subsidy_devtools::sample::{FeedOrder, SampleConfig, SampleTopics};
    let mut config = if args.cap_crossing {
        if args.events < subsidy_devtools::sample::CAP_CROSSING_EVENTS_MIN {
            bail!(
                "--cap-crossing needs --events of at least {}",
                subsidy_devtools::sample::CAP_CROSSING_EVENTS_MIN
            );
        }
        SampleConfig::with_cap_crossing(args.events, args.seed)
    } else {
        SampleConfig {
            seed: args.seed,
            events: args.events,
            ..SampleConfig::default()
        }
    };
    config.topics = SampleTopics {
        takeout: args.topics[0].clone(),
        import: args.topics[1].clone(),
        rural: args.topics[2].clone(),
    };
    let mut feed = subsidy_devtools::sample::generate(&config);
    feed.reorder(match args.order {
        SampleOrder::Generated => FeedOrder::AsGenerated,
        SampleOrder::Time => FeedOrder::TimeOrdered,
        SampleOrder::Shuffled => FeedOrder::Shuffled { seed: args.seed },
    });
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let path = args.out_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        "firms.csv",
        subsidy_ingester::refdata::firms_to_csv(&feed.firms),
    )?;
    write(
        "outlets.csv",
        subsidy_ingester::refdata::outlets_to_csv(&feed.outlets),
    )?;
    write(
        "zones.csv",
        subsidy_ingester::refdata::zones_to_csv(&feed.zones),
    )?;
    let mut by_outcome: std::collections::BTreeMap<String, u64> = Default::default();
    for message in &feed.messages {
        let key = match message.expected.reason() {
            Some(reason) => reason.as_str().to_string(),
            None => "accepted".to_string(),
        };
        *by_outcome.entry(key).or_default() += 1;
    }
    println!(
        "sample: {} events, {} firms, {} outlets, {} zones written to {}; expected outcomes {}",
        feed.messages.len(),
        feed.firms.len(),
        feed.outlets.len(),
        feed.zones.len(),
        args.out_dir.display(),
        serde_json::to_string(&by_outcome)?
    );
    if let Some(path) = &args.events_out {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let (written, left_out) = subsidy_devtools::feed::write_ndjson(&feed.messages, &mut out)
            .and_then(|counts| std::io::Write::flush(&mut out).map(|()| counts))
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!(
            "sample: {written} events written to {} as NDJSON; {left_out} left out (their value holds a newline)",
            path.display()
        );
    }
    if args.produce {
        let started = std::time::Instant::now();
        let sent = subsidy_devtools::feed::produce(
            &args.brokers.kafka_config()?,
            &feed.messages,
            args.partitions,
        )
        .await?;
        println!(
            "sample: produced {sent} messages to {} in {:.1} s",
            args.topics.join(", "),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
