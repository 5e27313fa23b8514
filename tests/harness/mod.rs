//! Shared plumbing for the integration tests: real services, unique names, the real binary.
//!
//! Tests talk to a real ClickHouse over HTTP and a real Kafka-protocol broker through
//! librdkafka. Addresses come from `SUBSIDY_TEST_CLICKHOUSE_URL` and
//! `SUBSIDY_TEST_KAFKA_BROKERS` (defaults: the local services of `scripts/services.sh`).
//! A missing service fails the test loudly with what to start; nothing is ever skipped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use subsidy_ingester::kafka::KafkaConfig;
use subsidy_ingester::store::{Store, StoreConfig};

/// A small hand-written world's firms: meituan (西湖 330106), sf-express (萧山 330109) and
/// zto (上城 330102, major penalty on 2023-06-01).
pub const FIRMS: &str = "firm_id,name,credit_code,district_code,legal_entity,licensed,in_monitoring,last_major_penalty_on
meituan,美团,91330100MA2XXXXX01,330106,true,true,true,
sf-express,顺丰速运,91330100MA2XXXXX02,330109,true,true,true,
zto,中通快递,91330100MA2XXXXX03,330102,true,true,true,2023-06-01
";
/// The small world's one rural outlet, zto's in 淳安, enrolled 2022-03-15.
pub const OUTLETS: &str = "outlet_id,firm_id,district_code,village_code,enrolled_on
ZTO-CA-001,zto,330127,330127101001,2022-03-15
";
/// The small world's one sealed zone in 西湖, the first week of September 2022.
pub const ZONES: &str = "zone_id,zone_type,district_code,active_from,active_to
XH-2022-09-01,sealed,330106,2022-09-01T00:00:00+08:00,2022-09-07T23:59:59+08:00
";

/// ClickHouse HTTP URL the tests use.
pub fn clickhouse_url() -> String {
    std::env::var("SUBSIDY_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// Kafka bootstrap brokers the tests use.
pub fn kafka_brokers() -> String {
    std::env::var("SUBSIDY_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A name no other test or run uses: `prefix_<pid>_<millis>_<n>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 100_000_000;
    format!(
        "{prefix}_{}_{millis}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Panics with instructions unless ClickHouse and the broker both answer.
pub async fn require_services() {
    let store = StoreConfig {
        url: clickhouse_url(),
        database: "default".into(),
        user: None,
        password: None,
        ca_file: None,
        request_timeout_ms: 10_000,
    };
    if let Err(error) = Store::connect(&store).await {
        panic!("integration tests need ClickHouse at {}: {error}. Start it with `bash scripts/services.sh start`.", clickhouse_url());
    }
    let kafka = kafka_config("probe");
    if let Err(error) = kafka.check_reachable(Duration::from_secs(10)) {
        panic!("integration tests need a Kafka broker at {}: {error}. Start it with `bash scripts/services.sh start`.", kafka_brokers());
    }
}

/// Kafka settings for tests: short sessions so groups form in seconds.
pub fn kafka_config(group_id: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: kafka_brokers(),
        group_id: group_id.into(),
        session_timeout_ms: 6_000,
        heartbeat_interval_ms: 500,
        properties: Default::default(),
    }
}

/// One isolated world: its own database, topics, consumer group and dead-letter topic.
#[derive(Debug, Clone)]
pub struct World {
    pub database: String,
    pub takeout_topic: String,
    pub import_topic: String,
    pub rural_topic: String,
    pub group_id: String,
    pub dlq_topic: String,
}

impl World {
    /// Fresh names for everything.
    pub fn new(prefix: &str) -> World {
        let id = unique(prefix);
        World {
            database: id.clone(),
            takeout_topic: format!("{id}.takeout"),
            import_topic: format!("{id}.import"),
            rural_topic: format!("{id}.rural"),
            group_id: format!("{id}-group"),
            dlq_topic: format!("{id}.rejected"),
        }
    }

    /// The three source topics, comma-separated.
    pub fn topics_csv(&self) -> String {
        format!(
            "{},{},{}",
            self.takeout_topic, self.import_topic, self.rural_topic
        )
    }

    /// The sample generator's topic names for this world.
    pub fn sample_topics(&self) -> subsidy_devtools::sample::SampleTopics {
        subsidy_devtools::sample::SampleTopics {
            takeout: self.takeout_topic.clone(),
            import: self.import_topic.clone(),
            rural: self.rural_topic.clone(),
        }
    }

    /// The binary with this world's environment, ready for arguments.
    pub fn command(&self) -> Command {
        let mut command = Command::new(binary());
        command
            .env("SUBSIDY_CLICKHOUSE_URL", clickhouse_url())
            .env("SUBSIDY_CLICKHOUSE_DATABASE", &self.database)
            .env("SUBSIDY_KAFKA_BROKERS", kafka_brokers())
            .env("SUBSIDY_TOPICS", self.topics_csv())
            .env("SUBSIDY_GROUP_ID", &self.group_id)
            .env("SUBSIDY_DLQ_TOPIC", &self.dlq_topic)
            // The ledger state lives under the temp dir, one subdirectory per database.
            .env(
                "SUBSIDY_STATE_DIR",
                std::env::temp_dir().join("subsidy-test-state"),
            )
            .env("SUBSIDY_LOG", "info")
            .stdin(std::process::Stdio::null());
        command
    }

    /// Runs the binary with `args` to completion.
    pub fn run_cli(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("cannot start subsidy-ingester")
    }

    /// Runs the binary and panics with its output unless it exits 0.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run_cli(args);
        assert!(
            output.status.success(),
            "`subsidy-ingester {}` failed with {}:\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Migrates this world's database and loads the sample feed's reference data through
    /// the CLI (CSV files written into `dir`).
    pub fn migrate_and_load_refdata(
        &self,
        feed: &subsidy_devtools::sample::SampleFeed,
        dir: &Path,
    ) {
        use subsidy_ingester::refdata::{firms_to_csv, outlets_to_csv, zones_to_csv};
        self.run_ok(&["migrate"]);
        self.load_refdata_csv(
            dir,
            &firms_to_csv(&feed.firms),
            &outlets_to_csv(&feed.outlets),
            &zones_to_csv(&feed.zones),
        );
    }

    /// Migrates this world's database and loads [`FIRMS`], [`OUTLETS`] and [`ZONES`]
    /// through the CLI; the CSV files live in the returned directory.
    pub fn load_small_refdata(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        self.run_ok(&["migrate"]);
        self.load_refdata_csv(dir.path(), FIRMS, OUTLETS, ZONES);
        dir
    }

    /// Writes the three CSV texts into `dir` and loads them with `refdata load`.
    pub fn load_refdata_csv(&self, dir: &Path, firms: &str, outlets: &str, zones: &str) {
        let args = refdata_load_args(dir, firms, outlets, zones);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_ok(&args);
    }

    /// A store handle on this world's database.
    pub async fn store(&self) -> Store {
        Store::connect(&StoreConfig {
            url: clickhouse_url(),
            database: self.database.clone(),
            user: None,
            password: None,
            ca_file: None,
            request_timeout_ms: 60_000,
        })
        .await
        .expect("ClickHouse connect")
    }

    /// Runs a statement that returns nothing (with `{db}` for this world's database).
    pub async fn execute(&self, sql: &str) {
        let store = self.store().await;
        let statement = store.sql(sql);
        store
            .execute(&statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    /// Runs a query (with `{db}` for this world's database) and returns TSV cells.
    pub async fn query(&self, sql: &str) -> Vec<Vec<String>> {
        query_tsv(&self.store().await, sql).await
    }

    /// A feed with one import firm and one rural outlet past their yearly caps, on this
    /// world's topics, in the given order.
    pub fn cap_crossing_feed(
        &self,
        events: usize,
        seed: u64,
        order: subsidy_devtools::sample::FeedOrder,
    ) -> subsidy_devtools::sample::SampleFeed {
        let mut config = subsidy_devtools::sample::SampleConfig::with_cap_crossing(events, seed);
        config.topics = self.sample_topics();
        let mut feed = subsidy_devtools::sample::generate(&config);
        feed.reorder(order);
        feed
    }

    /// Drops the database (best effort, at the end of a passing test).
    pub async fn drop_database(&self) {
        let store = self.store().await;
        let _ = store
            .execute(&format!("DROP DATABASE IF EXISTS {}", self.database))
            .await;
    }
}

/// Runs a query (with `{db}` for the store's database) and returns its cells as text
/// (TabSeparated, unescaped).
pub async fn query_tsv(store: &Store, sql: &str) -> Vec<Vec<String>> {
    let statement = store.sql(sql);
    let mut cursor = store
        .client()
        .query(&statement)
        .fetch_bytes("TabSeparated")
        .expect("query");
    let bytes = cursor
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split('\t')
                .map(subsidy_ingester::report::unescape_tsv)
                .collect()
        })
        .collect()
}

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_subsidy-ingester"))
}

/// Ports nobody listens on right now: bound on 127.0.0.1:0 all at once (so they differ),
/// then released, for a private server or listener of a test.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().expect("local addr").port();
    }
    ports
}

/// Writes the three CSV texts into `dir` as firms.csv, outlets.csv and zones.csv and
/// returns the `refdata load` arguments that load them.
pub fn refdata_load_args(dir: &Path, firms: &str, outlets: &str, zones: &str) -> Vec<String> {
    let path = |name: &str, text: &str| write_file(dir, name, text).display().to_string();
    vec![
        "refdata".into(),
        "load".into(),
        "--firms".into(),
        path("firms.csv", firms),
        "--outlets".into(),
        path("outlets.csv", outlets),
        "--zones".into(),
        path("zones.csv", zones),
    ]
}

/// Writes a file into `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

/// Produces raw payloads (in order) to one topic with `partitions` partitions, creating it.
pub async fn produce_raw(topic: &str, partitions: i32, payloads: &[Vec<u8>]) {
    let values: Vec<Option<&[u8]>> = payloads.iter().map(|p| Some(p.as_slice())).collect();
    produce_values(topic, partitions, &values).await;
}

/// Produces message values (in order; `None` is a tombstone, a message without a value) to
/// one topic with `partitions` partitions, creating it. The producer takes values up to
/// the ~1 MiB a broker accepts, beyond librdkafka's default of 1,000,000 bytes.
pub async fn produce_values(topic: &str, partitions: i32, values: &[Option<&[u8]>]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let kafka = kafka_config("producer");
    kafka
        .ensure_topics(&[topic], partitions)
        .await
        .expect("create topic");
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("acks", "all")
        .set("message.max.bytes", "1048576")
        .create()
        .expect("producer");
    for (i, value) in values.iter().enumerate() {
        let key = format!("k{i}");
        let mut record = FutureRecord::<str, [u8]>::to(topic).key(&key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
    }
}

/// Reads every message of a topic from the start until `expected` arrived (or 30 s passed).
pub fn consume_all(topic: &str, expected: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    use rdkafka::consumer::Consumer;
    use rdkafka::Message;
    let consumer = kafka_config("reader")
        .plain_consumer(&unique("reader"))
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or(&[]).to_vec(),
            ));
        }
    }
    out
}
