//! The command line: one binary, `subsidy-ingester`, with a subcommand per job.
//! Every flag has an environment fallback (`SUBSIDY_…`), shown in `--help`.

use crate::ingest::batch::BatchLimits;
use crate::ingest::{self, RunSettings};
use crate::kafka::properties::{self as kafka_properties, KafkaProperties, PropertyError};
use crate::kafka::KafkaConfig;
use crate::report::{self, Format, Grouping, ReportQuery};
use crate::secret::{Secret, SecretError, SecretSource};
use crate::store::{migrate, refdata_store, Store, StoreConfig};
use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Exit code when `run` could not flush within `shutdown_timeout_ms` after a signal.
pub use crate::ingest::EXIT_SHUTDOWN_TIMEOUT;

/// The SPEC's default source topics: takeout orders, import parcels, rural deliveries.
pub const DEFAULT_TOPICS: &str =
    "subsidy.takeout.orders,subsidy.import.parcels,subsidy.rural.deliveries";

/// Turns delivery platforms' Kafka feeds into exact Hangzhou 2022 logistics subsidy totals
/// in ClickHouse.
#[derive(Debug, Parser)]
#[command(name = "subsidy-ingester", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub edition: EditionArgs,
    /// Log format on stderr: `text` for people, `json` (one object per line) for log
    /// shippers.
    #[arg(
        long,
        value_enum,
        env = "SUBSIDY_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

/// Where ClickHouse is.
#[derive(Debug, Clone, Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP URL.
    #[arg(
        long,
        env = "SUBSIDY_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123",
        global = true
    )]
    pub clickhouse_url: String,
    /// Database holding every object of the service.
    #[arg(
        long,
        env = "SUBSIDY_CLICKHOUSE_DATABASE",
        default_value = "subsidy",
        global = true
    )]
    pub clickhouse_database: String,
    /// ClickHouse user; the server's `default` user when unset.
    #[arg(long, env = "SUBSIDY_CLICKHOUSE_USER", global = true)]
    pub clickhouse_user: Option<String>,
    /// File whose first line is the ClickHouse password; or set SUBSIDY_CLICKHOUSE_PASSWORD.
    /// The password itself is never a flag (it would show in `ps`); none when neither is set.
    #[arg(
        long,
        env = "SUBSIDY_CLICKHOUSE_PASSWORD_FILE",
        value_name = "FILE",
        global = true
    )]
    pub clickhouse_password_file: Option<PathBuf>,
    /// Refused with what to use instead: kept (hidden) only to say so. A [`Secret`], so
    /// even a `Debug` of the command line does not print it.
    #[arg(long, hide = true, global = true, value_parser = refused_secret)]
    pub clickhouse_password: Option<Secret>,
    /// PEM file of the CA(s) that signed the server's certificate, trusted besides the
    /// system's for an `https://` URL.
    #[arg(
        long,
        env = "SUBSIDY_CLICKHOUSE_CA_FILE",
        value_name = "PEM",
        global = true
    )]
    pub clickhouse_ca_file: Option<PathBuf>,
    /// How long one ClickHouse request may take, milliseconds.
    #[arg(
        long,
        env = "SUBSIDY_CLICKHOUSE_TIMEOUT_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub clickhouse_timeout_ms: u64,
}

/// Keeps a value given where a secret is refused out of sight until it is refused.
fn refused_secret(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(text))
}

/// Where the ClickHouse password comes from.
pub const CLICKHOUSE_PASSWORD: SecretSource = SecretSource {
    what: "ClickHouse password",
    env: "SUBSIDY_CLICKHOUSE_PASSWORD",
    file_flag: "--clickhouse-password-file",
};

impl ClickHouseArgs {
    /// The store configuration these flags describe, the password read from
    /// SUBSIDY_CLICKHOUSE_PASSWORD or `--clickhouse-password-file`.
    ///
    /// # Errors
    ///
    /// `--clickhouse-password` was given, both sources are set, or the file is unreadable.
    pub fn store_config(&self) -> Result<StoreConfig, SecretError> {
        if self.clickhouse_password.is_some() {
            return Err(SecretError::OnCommandLine {
                flag: "--clickhouse-password",
                env: CLICKHOUSE_PASSWORD.env,
                file_flag: CLICKHOUSE_PASSWORD.file_flag,
            });
        }
        Ok(StoreConfig {
            url: self.clickhouse_url.clone(),
            database: self.clickhouse_database.clone(),
            user: self.clickhouse_user.clone(),
            password: CLICKHOUSE_PASSWORD
                .from_env_or_file(self.clickhouse_password_file.as_deref())?,
            ca_file: self.clickhouse_ca_file.clone(),
            request_timeout_ms: self.clickhouse_timeout_ms,
        })
    }
}

/// Which policy editions the rules and the views use.
#[derive(Debug, Clone, Args)]
pub struct EditionArgs {
    /// An edition file (TOML), or a folder of them (`*.toml`, one edition each, date ranges
    /// not overlapping); the built-in `hangzhou-2022` when unset. `migrate` fills the views
    /// from the same editions `run` judges by: give both the same value.
    #[arg(long, env = "SUBSIDY_EDITION", global = true)]
    pub edition: Option<PathBuf>,
}

impl EditionArgs {
    /// The editions, loaded and checked.
    ///
    /// # Errors
    ///
    /// A malformed file, with its path, line and key.
    pub fn load(&self) -> Result<crate::edition::Editions, crate::edition::EditionError> {
        match &self.edition {
            Some(path) => crate::edition::Editions::load(path),
            None => Ok(crate::edition::Editions::builtin()),
        }
    }
}

/// Where Kafka is and how to talk to it: the flags every Kafka-facing command flattens in.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    #[arg(long, env = "SUBSIDY_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// A librdkafka property for every Kafka client, e.g. `security.protocol=SASL_SSL`
    /// (repeatable). Applied after the service's own settings and after
    /// SUBSIDY_KAFKA_PROPERTIES (the same pairs, `;`-separated), so the last one wins. Keys
    /// the service's correctness rests on and secrets are refused (README, "Production
    /// connectivity").
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
    /// File whose first line is the SASL password (`sasl.password`); or set
    /// SUBSIDY_KAFKA_SASL_PASSWORD. The password itself is never a flag.
    #[arg(long, env = "SUBSIDY_KAFKA_SASL_PASSWORD_FILE", value_name = "FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
}

impl BrokerArgs {
    /// Settings for a client outside a consumer group's life (producers, checks, tools).
    ///
    /// # Errors
    ///
    /// A property refused ([`KafkaProperties::resolve`]) or the password unreadable.
    pub fn kafka_config(&self) -> Result<KafkaConfig, PropertyError> {
        Ok(KafkaConfig::for_tools(&self.brokers).with_properties(self.properties()?))
    }

    /// The operator's librdkafka properties: SUBSIDY_KAFKA_PROPERTIES, the flags, the
    /// SASL password.
    ///
    /// # Errors
    ///
    /// As [`KafkaProperties::resolve`], or the password unreadable.
    pub fn properties(&self) -> Result<KafkaProperties, PropertyError> {
        let password = kafka_properties::SASL_PASSWORD
            .from_env_or_file(self.kafka_sasl_password_file.as_deref())?;
        let env_list = std::env::var(kafka_properties::PROPERTIES_ENV).ok();
        KafkaProperties::resolve(env_list.as_deref(), &self.kafka_properties, password)
    }
}

/// Where Kafka is and how the consumer group behaves.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    #[command(flatten)]
    pub brokers: BrokerArgs,
    /// Consumer group; ingesters sharing it share the partitions.
    #[arg(long, env = "SUBSIDY_GROUP_ID", default_value = "subsidy-ingester")]
    pub group_id: String,
    /// Consumer session timeout, milliseconds: a dead instance's partitions move after this.
    #[arg(long, env = "SUBSIDY_SESSION_TIMEOUT_MS", default_value_t = 6_000)]
    pub session_timeout_ms: u64,
    /// Heartbeat interval, milliseconds; at most a third of `session_timeout_ms`.
    #[arg(long, env = "SUBSIDY_HEARTBEAT_INTERVAL_MS", default_value_t = 500)]
    pub heartbeat_interval_ms: u64,
}

impl KafkaArgs {
    /// The Kafka configuration these flags describe.
    ///
    /// # Errors
    ///
    /// As [`BrokerArgs::properties`].
    pub fn kafka_config(&self) -> Result<KafkaConfig, PropertyError> {
        Ok(KafkaConfig {
            brokers: self.brokers.brokers.clone(),
            group_id: self.group_id.clone(),
            session_timeout_ms: self.session_timeout_ms,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            properties: self.brokers.properties()?,
        })
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the database objects (idempotent).
    Migrate,
    /// Reference data: firms, outlets, zones.
    Refdata {
        #[command(subcommand)]
        command: RefdataCommand,
    },
    /// Consume the feeds until SIGTERM/SIGINT, then flush, commit and exit 0.
    Run(RunArgs),
    /// List the named crash points (one per line) for `SUBSIDY_CRASH_AT`.
    CrashPoints,
    /// Check per topic and partition that messages = units + rejected rows, without gaps,
    /// and that the monthly aggregates equal a recompute from the ledger; exits 1 if not.
    Conservation(ConservationArgs),
    /// Repairs for operators.
    Repair {
        #[command(subcommand)]
        command: RepairCommand,
    },
    /// Dry run: reprocess a topic range (from an offset or a time) into a scratch database
    /// and show how the outcomes and nominal totals differ from live (audits, rule fixes).
    Replay(ReplayArgs),
    /// Reports for analysts.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Check an NDJSON file of events (one message a line) before sending it: what `run`
    /// would make of each line, then a summary; exits 1 if any line would be rejected.
    Validate(ValidateArgs),
}

/// Flags of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// NDJSON file, one Kafka message value a line; `-` reads stdin.
    pub input: PathBuf,
    /// firms.csv (as `refdata load`); with none of the three files only the schema is checked.
    #[arg(long, env = "SUBSIDY_FIRMS_CSV")]
    pub firms: Option<PathBuf>,
    /// outlets.csv (as `refdata load`).
    #[arg(long, env = "SUBSIDY_OUTLETS_CSV")]
    pub outlets: Option<PathBuf>,
    /// zones.csv (as `refdata load`).
    #[arg(long, env = "SUBSIDY_ZONES_CSV")]
    pub zones: Option<PathBuf>,
    /// Output format: one line per input line, then a summary.
    #[arg(
        long,
        value_enum,
        env = "SUBSIDY_VALIDATE_FORMAT",
        default_value = "table"
    )]
    pub format: crate::validate::ValidateFormat,
}

/// `info`, except the embedded state store's (fjall, lsm-tree) own recovery chatter.
pub const QUIET_STORE_INFO: &str = "info,fjall=warn,lsm_tree=warn";

impl Command {
    /// The log filter when `SUBSIDY_LOG` is unset: `info` for the long-running and
    /// long-working commands operators watch (`run`, `replay`); `warn`
    /// for the ones analysts run in a terminal, whose answer is on stdout. The state
    /// store's own info lines (a few per partition at every start) stay out.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Run(_) | Command::Replay(_) => QUIET_STORE_INFO,
            Command::Migrate
            | Command::Refdata { .. }
            | Command::CrashPoints
            | Command::Conservation(_)
            | Command::Repair { .. }
            | Command::Report { .. }
            | Command::Validate(_) => "warn",
        }
    }
}

/// `refdata` subcommands.
#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Make the `monthly_nominal` aggregates equal a recompute from the ledger, cell by
    /// cell, by adding the differences (run it while no `run` is writing).
    Aggregates,
}

#[derive(Debug, Subcommand)]
pub enum RefdataCommand {
    /// Validate CSV files and store them as the current reference data. Every given file
    /// is checked before anything is stored; one bad row stores nothing.
    Load {
        /// firms.csv: firm_id,name,credit_code,district_code,legal_entity,licensed,in_monitoring,last_major_penalty_on
        #[arg(long, env = "SUBSIDY_FIRMS_CSV")]
        firms: Option<PathBuf>,
        /// outlets.csv: outlet_id,firm_id,district_code,village_code,enrolled_on
        #[arg(long, env = "SUBSIDY_OUTLETS_CSV")]
        outlets: Option<PathBuf>,
        /// zones.csv: zone_id,zone_type,district_code,active_from,active_to
        #[arg(long, env = "SUBSIDY_ZONES_CSV")]
        zones: Option<PathBuf>,
    },
}

/// `report` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Monthly subsidy totals, caps applied, from the `subsidy_monthly` views.
    Monthly(MonthlyArgs),
}

/// Flags of `report monthly`.
#[derive(Debug, Args)]
pub struct MonthlyArgs {
    /// Calendar year (Asia/Shanghai); all years when unset.
    #[arg(long, env = "SUBSIDY_REPORT_YEAR")]
    pub year: Option<i32>,
    /// Month 1–12 of `--year`; the whole year when unset.
    #[arg(long, env = "SUBSIDY_REPORT_MONTH")]
    pub month: Option<u32>,
    /// Grouping of the rows.
    #[arg(
        long,
        visible_alias = "group-by",
        value_enum,
        env = "SUBSIDY_REPORT_BY",
        default_value = "program"
    )]
    pub by: Grouping,
    /// Only this program (any of SPEC §2 and §8, e.g. import_parcel, locker_purchased).
    #[arg(long, env = "SUBSIDY_REPORT_PROGRAM", value_parser = parse_program)]
    pub program: Option<crate::domain::Program>,
    /// Only this recipient: courier, firm or outlet id (with --by program or recipient).
    #[arg(long, env = "SUBSIDY_REPORT_RECIPIENT")]
    pub recipient: Option<String>,
    /// Output format.
    #[arg(
        long,
        value_enum,
        env = "SUBSIDY_REPORT_FORMAT",
        default_value = "table"
    )]
    pub format: Format,
}

fn parse_program(text: &str) -> Result<crate::domain::Program, String> {
    crate::domain::Program::ledger_from_type(text).ok_or_else(|| {
        let names: Vec<&str> = crate::domain::Program::LEDGER
            .iter()
            .map(|p| p.as_str())
            .collect();
        format!("unknown program {text:?}: use one of {}", names.join(", "))
    })
}

/// Flags of `conservation`.
#[derive(Debug, Args)]
pub struct ConservationArgs {
    /// Check storage only; by default every partition is also compared with the broker.
    #[arg(long, env = "SUBSIDY_CONSERVATION_NO_KAFKA")]
    pub no_kafka: bool,
    /// Accepted for scripts written before the broker check became the default.
    #[arg(long, hide = true, conflicts_with = "no_kafka")]
    pub with_kafka: bool,
    #[command(flatten)]
    pub brokers: BrokerArgs,
    /// The source topics: every partition of them must be consumed, besides those found
    /// in storage.
    #[command(flatten)]
    pub source: SourceTopics,
    /// How long a partition behind the broker may take to catch up before the check
    /// fails, milliseconds.
    #[arg(long, env = "SUBSIDY_CONSERVATION_SETTLE_MS", default_value_t = 10_000)]
    pub settle_ms: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `replay`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["from_offset", "from_time"])))]
#[command(group(clap::ArgGroup::new("to").args(["to_offset", "to_time"])))]
pub struct ReplayArgs {
    /// Topic to replay.
    #[arg(long, env = "SUBSIDY_REPLAY_TOPIC")]
    pub topic: String,
    /// Partitions to replay, comma-separated; all of the topic's when unset.
    #[arg(long, env = "SUBSIDY_REPLAY_PARTITIONS", value_delimiter = ',')]
    pub partitions: Option<Vec<i32>>,
    /// Start at this offset in every replayed partition.
    #[arg(long, env = "SUBSIDY_REPLAY_FROM_OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
    pub from_offset: Option<i64>,
    /// Start at the first message stamped at or after this RFC 3339 time (with offset).
    #[arg(long, env = "SUBSIDY_REPLAY_FROM_TIME", value_parser = parse_rfc3339)]
    pub from_time: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Stop before this offset (exclusive); the high watermark at start when no end is given.
    #[arg(long, env = "SUBSIDY_REPLAY_TO_OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
    pub to_offset: Option<i64>,
    /// Stop before the first message stamped at or after this RFC 3339 time.
    #[arg(long, env = "SUBSIDY_REPLAY_TO_TIME", value_parser = parse_rfc3339)]
    pub to_time: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Scratch database (dropped and recreated; never one replay did not make);
    /// default `<live database>_replay`.
    #[arg(long, env = "SUBSIDY_REPLAY_SCRATCH_DATABASE")]
    pub scratch_database: Option<String>,
    /// Keep the scratch database for inspection.
    #[arg(long, env = "SUBSIDY_REPLAY_KEEP_SCRATCH")]
    pub keep_scratch: bool,
    /// Print the report as JSON instead of text.
    #[arg(long, env = "SUBSIDY_REPLAY_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub brokers: BrokerArgs,
}

impl ReplayArgs {
    /// The settings of `replay` these flags describe.
    ///
    /// # Errors
    ///
    /// A secret or Kafka property refused.
    pub fn settings(
        &self,
        clickhouse: &ClickHouseArgs,
        editions: crate::edition::Editions,
    ) -> anyhow::Result<crate::replay::ReplaySettings> {
        use crate::replay::{ReplayEnd, ReplayStart};
        let live = clickhouse.store_config()?;
        let start = match (self.from_offset, self.from_time) {
            (_, Some(time)) => ReplayStart::Time(time),
            (offset, None) => ReplayStart::Offset(offset.unwrap_or(0)),
        };
        let end = match (self.to_offset, self.to_time) {
            (_, Some(time)) => Some(ReplayEnd::Time(time)),
            (Some(offset), None) => Some(ReplayEnd::Offset(offset)),
            (None, None) => None,
        };
        Ok(crate::replay::ReplaySettings {
            editions,
            kafka: self.brokers.kafka_config()?,
            scratch_database: self
                .scratch_database
                .clone()
                .unwrap_or_else(|| format!("{}_replay", live.database)),
            live,
            topic: self.topic.clone(),
            partitions: self.partitions.clone(),
            start,
            end,
            keep_scratch: self.keep_scratch,
        })
    }
}

fn parse_rfc3339(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    chrono::DateTime::parse_from_rfc3339(text).map_err(|e| {
        format!("expected an RFC 3339 time with offset, e.g. 2024-05-01T00:00:00+08:00 ({e})")
    })
}

/// The source topics, shared by `run` and `conservation`.
#[derive(Debug, Clone, Args)]
pub struct SourceTopics {
    /// Source topics, comma-separated; any topic may carry any event type.
    #[arg(
        long,
        env = "SUBSIDY_TOPICS",
        value_delimiter = ',',
        default_value = DEFAULT_TOPICS
    )]
    pub topics: Vec<String>,
}

/// Flags of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub source: SourceTopics,
    /// Dead-letter topic for rejected messages (created if missing).
    #[arg(long, env = "SUBSIDY_DLQ_TOPIC", default_value = "subsidy.rejected")]
    pub dlq_topic: String,
    /// Ship a batch at this many messages; at most 1,000,000 (one ClickHouse block).
    #[arg(long, env = "SUBSIDY_BATCH_ROWS_MAX", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_rows_max: u64,
    /// Ship a batch at this many encoded bytes.
    #[arg(long, env = "SUBSIDY_BATCH_BYTES_MAX", default_value_t = 32 << 20)]
    pub batch_bytes_max: usize,
    /// Ship a non-empty batch this long after its first message, milliseconds.
    #[arg(long, env = "SUBSIDY_FLUSH_INTERVAL_MS", default_value_t = 1_000)]
    pub flush_interval_ms: u64,
    /// Finished batches queued for ClickHouse at most (besides the one being written); the
    /// consumer waits beyond that. 0 (the next batch fills while one is written) measured
    /// as fast as 1 and 2, with the lowest peak RSS.
    #[arg(long, env = "SUBSIDY_BATCHES_IN_FLIGHT_MAX", default_value_t = 0)]
    pub batches_in_flight_max: usize,
    /// Cap of the exponential backoff between retries, milliseconds.
    #[arg(long, env = "SUBSIDY_RETRY_BACKOFF_MAX_MS", default_value_t = 5_000)]
    pub retry_backoff_max_ms: u64,
    /// After SIGTERM/SIGINT, exit with code 3 if flushing takes longer, milliseconds.
    #[arg(long, env = "SUBSIDY_SHUTDOWN_TIMEOUT_MS", default_value_t = 8_000)]
    pub shutdown_timeout_ms: u64,
    /// Exit 0 once every assigned partition is consumed to its end (demos, tests, backfills).
    #[arg(long, env = "SUBSIDY_UNTIL_CAUGHT_UP")]
    pub until_caught_up: bool,
    /// Internal topic that routes each valid unit to the owner of its key (created with
    /// `--units-partitions` if missing); default `{database}.units`.
    #[arg(long, env = "SUBSIDY_UNITS_TOPIC")]
    pub units_topic: Option<String>,
    /// Partitions of the units topic: the most instances that can share the ledger work.
    /// Fixed for a deployment's life (a key's owner depends on it).
    #[arg(long, env = "SUBSIDY_UNITS_PARTITIONS", default_value_t = crate::route::UNITS_PARTITIONS_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub units_partitions: u32,
    /// Directory of the ledger stage's on-disk state; one subdirectory per database.
    #[arg(long, env = "SUBSIDY_STATE_DIR", default_value = "state")]
    pub state_dir: std::path::PathBuf,
    /// Serve Prometheus `/metrics`, `/livez` and `/readyz` on this address (e.g.
    /// `127.0.0.1:9464`; `0.0.0.0:9464` in a container); off when unset.
    #[arg(long, env = "SUBSIDY_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Give up (exit non-zero, for the supervisor to restart) after retrying ClickHouse or
    /// the units topic this long, milliseconds.
    #[arg(
        long,
        env = "SUBSIDY_RETRY_GIVE_UP_AFTER_MS",
        default_value_t = 1_800_000
    )]
    pub retry_give_up_after_ms: u64,
}

impl RunArgs {
    /// The settings of `run` these flags describe.
    ///
    /// # Errors
    ///
    /// A secret or Kafka property refused.
    pub fn settings(
        &self,
        clickhouse: &ClickHouseArgs,
        editions: crate::edition::Editions,
    ) -> anyhow::Result<RunSettings> {
        Ok(RunSettings {
            kafka: self.kafka.kafka_config()?,
            store: clickhouse.store_config()?,
            topics: self.source.topics.clone(),
            dlq_topic: self.dlq_topic.clone(),
            limits: BatchLimits {
                rows_max: self.batch_rows_max as usize,
                bytes_max: self.batch_bytes_max,
                flush_interval: Duration::from_millis(self.flush_interval_ms),
            },
            batches_in_flight_max: self.batches_in_flight_max,
            retry_backoff_max: Duration::from_millis(self.retry_backoff_max_ms),
            retry_give_up_after: Duration::from_millis(self.retry_give_up_after_ms),
            until_caught_up: self.until_caught_up,
            units_topic: self.units_topic.clone().unwrap_or_else(|| {
                crate::route::default_units_topic(&clickhouse.clickhouse_database)
            }),
            units_partitions: self.units_partitions,
            state_dir: self.state_dir.join(&clickhouse.clickhouse_database),
            editions,
            metrics_addr: self.metrics_addr.clone(),
        })
    }
}

/// Runs the parsed command line.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    let editions = cli.edition.load()?;
    match cli.command {
        Command::Migrate => {
            let store = Store::connect(&cli.clickhouse.store_config()?).await?;
            let report = migrate::migrate(&store, &editions).await?;
            println!(
                "database {}: applied {} migration(s) {:?}, {} already applied",
                store.database(),
                report.applied.len(),
                report.applied,
                report.already_applied.len()
            );
            Ok(())
        }
        Command::Refdata {
            command:
                RefdataCommand::Load {
                    firms,
                    outlets,
                    zones,
                },
        } => {
            let files = refdata_store::RefdataFiles {
                firms,
                outlets,
                zones,
            };
            load_refdata(&cli.clickhouse, files, &editions).await
        }
        Command::Run(args) => run(&cli.clickhouse, &args, editions).await,
        Command::Validate(args) => validate(args, &editions),
        Command::Replay(args) => {
            let report = crate::replay::replay(&args.settings(&cli.clickhouse, editions)?).await?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", crate::replay::render(&report));
            }
            Ok(())
        }
        Command::Conservation(args) => {
            let store = Store::connect(&cli.clickhouse.store_config()?).await?;
            migrate::ensure_migrated(&store, &editions).await?;
            let options = crate::conservation::CheckOptions {
                kafka: (!args.no_kafka)
                    .then(|| args.brokers.kafka_config())
                    .transpose()?,
                topics: args.source.topics.clone(),
                settle: Duration::from_millis(args.settle_ms),
            };
            let balances = crate::conservation::check(&store, &options).await?;
            let cells = crate::store::aggregates::differences(&store).await?;
            if args.json {
                // The JSON stays the array of partitions scripts read; aggregate cells that
                // differ are named on stderr (and fail the check) in both formats.
                println!("{}", serde_json::to_string(&balances)?);
                if !cells.is_empty() {
                    eprint!("{}", crate::conservation::render_aggregates(&cells));
                }
            } else {
                print!("{}", crate::conservation::render(&balances));
                print!("{}", crate::conservation::render_aggregates(&cells));
            }
            if balances.iter().any(|b| !b.is_ok()) {
                bail!("conservation check failed: see the partitions marked NO, BEHIND or STUCK");
            }
            if !cells.is_empty() {
                bail!("conservation check failed: {} aggregate cell(s) differ from the ledger; run `subsidy-ingester repair aggregates`", cells.len());
            }
            Ok(())
        }
        Command::Repair {
            command: RepairCommand::Aggregates,
        } => {
            let store = Store::connect(&cli.clickhouse.store_config()?).await?;
            migrate::ensure_migrated(&store, &editions).await?;
            let cells = crate::store::aggregates::repair(&store).await?;
            println!(
                "database {}: {} aggregate cell(s) corrected (ledger − aggregates added):",
                store.database(),
                cells.len()
            );
            for cell in &cells {
                println!("  {cell}");
            }
            Ok(())
        }
        Command::CrashPoints => {
            for (name, _) in crate::crash::CRASH_POINTS {
                println!("{name}");
            }
            Ok(())
        }
        Command::Report {
            command: ReportCommand::Monthly(args),
        } => {
            let store = Store::connect(&cli.clickhouse.store_config()?).await?;
            migrate::ensure_migrated(&store, &editions).await?;
            let query = ReportQuery {
                year: args.year,
                month: args.month,
                grouping: args.by,
                program: args.program,
                recipient: args.recipient,
            };
            let table = report::fetch(&store, &query).await?;
            print!("{}", report::render(&table, args.format));
            Ok(())
        }
    }
}

/// `validate`: judged on this thread (no I/O but the files); exits with its code.
fn validate(args: ValidateArgs, editions: &crate::edition::Editions) -> anyhow::Result<()> {
    let settings = crate::validate::ValidateSettings {
        input: args.input,
        files: refdata_store::RefdataFiles {
            firms: args.firms,
            outlets: args.outlets,
            zones: args.zones,
        },
        format: args.format,
    };
    let code = tokio::task::block_in_place(|| crate::validate::command(&settings, editions));
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

async fn load_refdata(
    clickhouse: &ClickHouseArgs,
    files: refdata_store::RefdataFiles,
    editions: &crate::edition::Editions,
) -> anyhow::Result<()> {
    let valid = match refdata_store::validate_files(&files) {
        Ok(valid) => valid,
        Err(refdata_store::LoadError::Rejected(errors)) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            return Err(refdata_store::LoadError::Rejected(errors).into());
        }
        Err(other) => return Err(other.into()),
    };
    let rows = valid.rows();
    let mut progress = crate::telemetry::progress::Progress::new(
        "refdata load: rows validated, storing",
        Some(rows as u64),
    );
    progress.set(rows as u64);
    let store = Store::connect(&clickhouse.store_config()?).await?;
    let (load_id, counts) = refdata_store::store_files(&store, &valid, editions).await?;
    progress.finish();
    println!(
        "loaded reference data {load_id} into {}: {} firms, {} outlets, {} zones",
        store.database(),
        counts.firms,
        counts.outlets,
        counts.zones
    );
    Ok(())
}

async fn run(
    clickhouse: &ClickHouseArgs,
    args: &RunArgs,
    editions: crate::edition::Editions,
) -> anyhow::Result<()> {
    let shutdown_timeout = Duration::from_millis(args.shutdown_timeout_ms);
    let summary =
        ingest::run_until_signal(args.settings(clickhouse, editions)?, shutdown_timeout).await?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Starts a command-line process: logs to stderr in `log_format`, filtered by
/// `SUBSIDY_LOG` (else `default_log_filter`), a two-thread runtime, then `work`; an error
/// is printed and the process exits 1. Shared by `subsidy-ingester` and `subsidy-dev`.
pub fn start_process<F>(default_log_filter: &str, log_format: LogFormat, work: F)
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUBSIDY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_filter));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match log_format {
        LogFormat::Text => logs.init(),
        // Fields flattened into the object, so shippers index `message`, `partition`…
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(work) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
