//! ClickHouse going away under a running ingester, with the real binary and real services.
//!
//! The shared ClickHouse (port 8123) is never touched: each test that needs a server starts
//! its own private one with `scripts/services.sh start-clickhouse` in a temporary state
//! directory on two free ports, points the binary at it with `SUBSIDY_CLICKHOUSE_URL`, stops
//! and restarts it to simulate the outage, and stops it for good when the test ends (a Drop
//! guard, so also when an assertion fails). The broker is the shared one, with unique topic
//! names. The landed views are compared with `tests/common/oracle.rs`.
//!
//! `SUBSIDY_TEST_OUTAGE_S` sets how long ClickHouse stays down (default 20 s to keep the
//! suite fast; 60 s is the soak value the outage issue asks for:
//! `SUBSIDY_TEST_OUTAGE_S=60 cargo test --release --test clickhouse_outage -- --nocapture`).

mod common;
mod harness;

use common::oracle::{self, Expectation};
use common::views::{self, expected_funding, expected_monthly, expected_rejections};
use harness::{free_ports, require_services, World};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use subsidy_devtools::sample::{generate, FeedOrder, SampleConfig, SampleFeed, SampleMessage};
use subsidy_ingester::refdata::{firms_to_csv, outlets_to_csv, zones_to_csv};
use subsidy_ingester::store::{Store, StoreConfig};

/// Events in the outage feed: enough for one firm past its import cap and one outlet past
/// its rural cap.
const EVENTS: usize = 400_000;
const PARTITIONS: i32 = 4;
/// How long ClickHouse stays down unless `SUBSIDY_TEST_OUTAGE_S` says otherwise.
const OUTAGE_S_DEFAULT: u64 = 20;
/// Resident memory the ingester must stay under while ClickHouse is down.
const RSS_LIMIT_BYTES: u64 = 1 << 30;
/// How long the first rows may take to become durable after `run` starts.
const FIRST_ROWS_WAIT: Duration = Duration::from_secs(120);
/// How long the ingester may take to land the whole feed once ClickHouse is back.
const CATCH_UP_WAIT: Duration = Duration::from_secs(240);
/// SIGTERM to exit, at most.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// `run` against a closed port must give up within this.
const FAIL_FAST_WAIT: Duration = Duration::from_secs(30);

/// The outage length in seconds (`SUBSIDY_TEST_OUTAGE_S`, default 20).
fn outage_seconds() -> u64 {
    match std::env::var("SUBSIDY_TEST_OUTAGE_S") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            panic!("SUBSIDY_TEST_OUTAGE_S must be whole seconds, got {text:?}")
        }),
        Err(_) => OUTAGE_S_DEFAULT,
    }
}

/// A ClickHouse server of this test's own, run by `scripts/services.sh` in a temporary
/// state directory; stopped (and its data deleted) when dropped.
struct PrivateClickHouse {
    state_dir: tempfile::TempDir,
    http_port: u16,
    tcp_port: u16,
}

impl PrivateClickHouse {
    /// Starts a fresh server on two free ports and waits until it answers.
    fn start() -> PrivateClickHouse {
        let [http_port, tcp_port] = free_ports::<2>();
        // The guard exists before the first start, so a failed start is cleaned up too.
        let server = PrivateClickHouse {
            state_dir: tempfile::tempdir().expect("temporary state directory"),
            http_port,
            tcp_port,
        };
        server.up();
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Where the output of `scripts/services.sh` goes. Not a pipe: the script leaves a
    /// subshell holding its stdout and stderr for as long as the server runs, so a caller
    /// reading them to the end would wait for the server to stop.
    fn services_log(&self) -> PathBuf {
        self.state_dir.path().join("services.log")
    }

    /// `scripts/services.sh SUBCOMMAND` for this server, output appended to the log.
    fn services_command(&self, subcommand: &str) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.services_log())
            .expect("open services.log");
        let mut command = Command::new("bash");
        command
            .arg(script)
            .arg(subcommand)
            .env("SUBSIDY_SERVICES_DIR", self.state_dir.path())
            .env("SUBSIDY_CH_HTTP_PORT", self.http_port.to_string())
            .env("SUBSIDY_CH_TCP_PORT", self.tcp_port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone services.log"))
            .stderr(log);
        command
    }

    fn services(&self, subcommand: &str) {
        if let Err(error) = run_services(self.services_command(subcommand), &self.services_log()) {
            panic!(
                "`scripts/services.sh {subcommand}` (private ClickHouse, http {} / tcp {}) {error}",
                self.http_port, self.tcp_port
            );
        }
    }

    /// Starts the server (again); the data under the state directory persists.
    fn up(&self) {
        self.services("start-clickhouse");
    }

    async fn store(&self, database: &str) -> Store {
        Store::connect(&StoreConfig {
            url: self.url(),
            database: database.into(),
            user: None,
            password: None,
            ca_file: None,
            request_timeout_ms: 60_000,
        })
        .await
        .unwrap_or_else(|e| panic!("private ClickHouse at {}: {e}", self.url()))
    }

    /// Runs a query (with `{db}` for the world's database) and returns TSV cells.
    async fn query(&self, world: &World, sql: &str) -> Vec<Vec<String>> {
        harness::query_tsv(&self.store(&world.database).await, sql).await
    }

    /// Distinct source coordinates stored in `outcomes`, and all its rows.
    async fn outcome_counts(&self, world: &World) -> (u64, u64) {
        let rows = self
            .query(
                world,
                "SELECT toString(count()), toString((SELECT count() FROM (SELECT DISTINCT topic, `partition`, `offset` FROM {db}.outcomes))) FROM {db}.outcomes",
            )
            .await;
        (rows[0][1].parse().unwrap(), rows[0][0].parse().unwrap())
    }

    /// Messages decided for good: units in `ledger` plus rows of `rejected_events` (an
    /// admitted message counts once the ledger stage decided it).
    async fn decided(&self, world: &World) -> u64 {
        let rows = self
            .query(
                world,
                "SELECT toString((SELECT count() FROM {db}.ledger) + (SELECT count() FROM {db}.rejected_events))",
            )
            .await;
        rows[0][0].parse().unwrap()
    }

    /// The binary with the world's environment, talking to this server.
    fn command(&self, world: &World) -> Command {
        let mut command = world.command();
        command.env("SUBSIDY_CLICKHOUSE_URL", self.url());
        command
    }

    /// Runs the binary against this server and panics with its output unless it exits 0.
    fn run_ok(&self, world: &World, args: &[&str]) {
        let output = self.command(world).args(args).output().expect("spawn");
        assert_success(args, &output);
    }

    /// Writes the feed's reference data as CSV files in `dir` and loads them here.
    fn load_refdata(&self, world: &World, dir: &Path, feed: &SampleFeed) {
        let args = harness::refdata_load_args(
            dir,
            &firms_to_csv(&feed.firms),
            &outlets_to_csv(&feed.outlets),
            &zones_to_csv(&feed.zones),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_ok(world, &args);
    }

    /// Starts `run ARGS` against this server, stdout and stderr into the two files.
    fn spawn_run(&self, world: &World, args: &[&str], stdout: &Path, stderr: &Path) -> ChildGuard {
        ChildGuard(
            self.command(world)
                .env("NO_COLOR", "1")
                .arg("run")
                .args(args)
                .stdout(std::fs::File::create(stdout).unwrap())
                .stderr(std::fs::File::create(stderr).unwrap())
                .spawn()
                .expect("spawn run"),
        )
    }
}

/// Creates the world's three source topics with [`PARTITIONS`] partitions each, before
/// `run` subscribes.
async fn create_topics(world: &World) {
    harness::kafka_config("producer")
        .ensure_topics(
            &[
                world.takeout_topic.as_str(),
                world.import_topic.as_str(),
                world.rural_topic.as_str(),
            ],
            PARTITIONS,
        )
        .await
        .expect("create the topics");
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        // Best effort, also while unwinding from a failed assertion.
        let stop = self.services_command("stop-clickhouse");
        if let Err(error) = run_services(stop, &self.services_log()) {
            eprintln!(
                "warning: stopping the private ClickHouse on port {}: {error}",
                self.http_port
            );
        }
    }
}

/// Runs a `scripts/services.sh` command; on failure, says how, with the log's tail.
fn run_services(mut command: Command, log: &Path) -> Result<(), String> {
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "failed with {status}; last lines of {}:\n{}",
            log.display(),
            tail(&read_log(log), 30)
        )),
        Err(error) => Err(format!("cannot run: {error}")),
    }
}

fn assert_success(args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "`subsidy-ingester {}` failed with {}:\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A child process that is killed (by its pid) if the test ends before it exited.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Resident memory of a process from `/proc/<pid>/status` (`VmRSS`), bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn read_log(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The last `n` lines of a log, for failure messages.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Panics with the ingester's log if it has exited.
fn assert_alive(child: &mut Child, stderr_log: &Path, when: &str) {
    if let Some(status) = child.try_wait().expect("try_wait") {
        panic!(
            "`run` exited with {status} {when}; it must keep retrying. Last lines of its stderr:\n{}",
            tail(&read_log(stderr_log), 40)
        );
    }
}

async fn produce(messages: &[SampleMessage]) {
    let kafka = harness::kafka_config("producer");
    subsidy_devtools::feed::produce(&kafka, messages, PARTITIONS)
        .await
        .expect("produce the feed");
}

/// Asserts every view on the private server equals the oracle, distinct sources in
/// `outcomes` = produced messages = ledger units + rejected rows, and conservation holds.
async fn assert_views_match(server: &PrivateClickHouse, world: &World, expectation: &Expectation) {
    let monthly = server.query(world, views::MONTHLY_SQL).await;
    let expected = expected_monthly(expectation);
    assert_eq!(monthly.len(), expected.len(), "subsidy_monthly row count");
    for (got, want) in monthly.iter().zip(&expected) {
        assert_eq!(got, want, "subsidy_monthly row");
    }
    let funding = server.query(world, views::FUNDING_SQL).await;
    assert_eq!(
        funding,
        expected_funding(expectation),
        "subsidy_funding_monthly"
    );
    let rejected_by_reason = server.query(world, views::REJECTED_BY_REASON_SQL).await;
    assert_eq!(
        rejected_by_reason,
        expected_rejections(expectation),
        "rejected_events by reason"
    );
    let counts = server
        .query(world, "SELECT toString((SELECT count() FROM {db}.ledger)), toString((SELECT count() FROM {db}.rejected_events)), toString((SELECT count() FROM (SELECT DISTINCT topic, `partition`, `offset` FROM {db}.outcomes)))")
        .await;
    let units: u64 = counts[0][0].parse().unwrap();
    let rejected: u64 = counts[0][1].parse().unwrap();
    let messages: u64 = counts[0][2].parse().unwrap();
    println!(
        "outage: views equal the oracle: {} subsidy_monthly rows, {} funding rows, {} reasons; {units} units + {rejected} rejected = {messages} distinct sources",
        monthly.len(),
        funding.len(),
        rejected_by_reason.len()
    );
    assert_eq!(units, expectation.accepted_units, "ledger units");
    assert_eq!(
        messages, expectation.messages,
        "distinct (topic, partition, offset) in outcomes = produced messages"
    );
    assert_eq!(
        units + rejected,
        messages,
        "messages = accepted units + rejected rows"
    );
    let unbalanced = server
        .query(
            world,
            "SELECT topic, toString(`partition`) FROM {db}.conservation WHERE NOT balanced",
        )
        .await;
    assert!(
        unbalanced.is_empty(),
        "conservation fails for {unbalanced:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_down_mid_stream_is_survived_with_exact_totals() {
    // Proves that a ClickHouse outage in the middle of a stream costs nothing: with a
    // private ClickHouse, a 400,000-event cap-crossing feed is produced in three stages
    // (a quarter before `run` starts, a quarter while ClickHouse is being stopped, half
    // while it is down) so the outage is mid-stream whatever the machine's speed. While
    // ClickHouse is down for SUBSIDY_TEST_OUTAGE_S seconds, `run` stays alive with
    // VmRSS < 1 GiB; after ClickHouse restarts on its old data, `run` lands the whole
    // feed, exits 0 within 10 s of SIGTERM, has logged "retrying", and every view equals
    // the oracle with each message counted exactly once.
    require_services().await;
    let test_started = Instant::now();
    let outage = Duration::from_secs(outage_seconds());
    let server = PrivateClickHouse::start();
    println!(
        "outage: private ClickHouse up at {} (native port {}), state in {}, outage {} s",
        server.url(),
        server.tcp_port,
        server.state_dir.path().display(),
        outage.as_secs()
    );
    let world = World::new("ch_outage");
    let mut config = SampleConfig::with_cap_crossing(EVENTS, 47);
    config.topics = world.sample_topics();
    let mut feed = generate(&config);
    feed.reorder(FeedOrder::Shuffled { seed: 13 });
    let expectation = oracle::expect(&feed.messages);
    let produced = expectation.messages;
    assert_eq!(produced, EVENTS as u64);

    let dir = tempfile::tempdir().unwrap();
    server.run_ok(&world, &["migrate"]);
    server.load_refdata(&world, dir.path(), &feed);
    create_topics(&world).await;
    let (before_run, rest) = feed.messages.split_at(EVENTS / 4);
    let (while_stopping, while_down) = rest.split_at(EVENTS / 4);
    produce(before_run).await;

    let stderr_log: PathBuf = dir.path().join("run.stderr.log");
    let stdout_log: PathBuf = dir.path().join("run.stdout.log");
    let run_started = Instant::now();
    let mut run = server.spawn_run(
        &world,
        &[
            "--batch-rows-max",
            "20000",
            "--retry-backoff-max-ms",
            "2000",
        ],
        &stdout_log,
        &stderr_log,
    );
    let pid = run.0.id();

    // Some rows durable: the stream is flowing. Then ClickHouse goes away mid-stream.
    let durable_before = loop {
        let (distinct, _) = server.outcome_counts(&world).await;
        if distinct > 0 {
            break distinct;
        }
        assert_alive(&mut run.0, &stderr_log, "before any row was durable");
        assert!(
            run_started.elapsed() < FIRST_ROWS_WAIT,
            "no row durable within {FIRST_ROWS_WAIT:?} of starting run; stderr:\n{}",
            tail(&read_log(&stderr_log), 40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "outage: {durable_before} rows durable {:.1} s after `run` started; stopping ClickHouse while producing {} more",
        run_started.elapsed().as_secs_f64(),
        while_stopping.len()
    );
    let stop_started = Instant::now();
    // The stop runs in the blocking pool while this task keeps producing.
    let stop_command = server.services_command("stop-clickhouse");
    let services_log = server.services_log();
    let stop = tokio::task::spawn_blocking(move || run_services(stop_command, &services_log));
    produce(while_stopping).await;
    if let Err(error) = stop.await.expect("stop task") {
        panic!("`scripts/services.sh stop-clickhouse` (private ClickHouse) {error}");
    }
    let down_since = Instant::now();
    println!(
        "outage: ClickHouse stopped ({:.1} s to stop); producing the last {} messages while it is down",
        (down_since - stop_started).as_secs_f64(),
        while_down.len()
    );
    produce(while_down).await;

    // The outage: `run` must stay alive and bounded in memory.
    let mut rss_max = 0u64;
    let mut samples = 0u32;
    while down_since.elapsed() < outage {
        assert_alive(&mut run.0, &stderr_log, "while ClickHouse was down");
        let rss = rss_bytes(pid).expect("VmRSS of run");
        rss_max = rss_max.max(rss);
        samples += 1;
        assert!(
            rss < RSS_LIMIT_BYTES,
            "run's VmRSS is {:.1} MiB while ClickHouse is down (limit 1 GiB)",
            mib(rss)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_alive(&mut run.0, &stderr_log, "at the end of the outage");
    let retries_during_outage = read_log(&stderr_log).matches("retrying").count();
    println!(
        "outage: ClickHouse down {:.1} s; run alive throughout, VmRSS max {:.1} MiB over {samples} samples; {retries_during_outage} \"retrying\" log lines so far",
        down_since.elapsed().as_secs_f64(),
        mib(rss_max)
    );

    // ClickHouse back on its old data: `run` resumes and lands the whole feed.
    let restart_started = Instant::now();
    server.up();
    let up_since = Instant::now();
    println!(
        "outage: ClickHouse restarted in {:.1} s (total down {:.1} s)",
        (up_since - restart_started).as_secs_f64(),
        (up_since - down_since).as_secs_f64()
    );
    let (after_restart, _) = server.outcome_counts(&world).await;
    let mut resumed_after: Option<Duration> = None;
    let (distinct, rows) = loop {
        let (distinct, rows) = server.outcome_counts(&world).await;
        if resumed_after.is_none() && distinct > after_restart {
            resumed_after = Some(up_since.elapsed());
        }
        if distinct >= produced && server.decided(&world).await >= produced {
            break (distinct, rows);
        }
        assert_alive(&mut run.0, &stderr_log, "after ClickHouse came back");
        assert!(
            up_since.elapsed() < CATCH_UP_WAIT,
            "run landed only {distinct} of {produced} messages within {CATCH_UP_WAIT:?} of ClickHouse's restart; stderr:\n{}",
            tail(&read_log(&stderr_log), 40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let caught_up_after = up_since.elapsed();
    println!(
        "outage: {after_restart} distinct sources stored when ClickHouse came back; new rows landing {} after restart; all {distinct} landed {:.1} s after restart ({rows} rows in outcomes)",
        resumed_after.map_or("immediately".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
        caught_up_after.as_secs_f64()
    );
    assert_eq!(
        distinct, produced,
        "distinct sources in outcomes = produced messages"
    );

    // SIGTERM: exit 0 within 10 s.
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(kill.success());
    let exit = loop {
        if let Some(exit) = run.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            signalled.elapsed() < SHUTDOWN_WAIT,
            "run did not exit within 10 s of SIGTERM; stderr:\n{}",
            tail(&read_log(&stderr_log), 40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stderr = read_log(&stderr_log);
    assert_eq!(
        exit.code(),
        Some(0),
        "run must exit 0 after SIGTERM; stderr:\n{}",
        tail(&stderr, 40)
    );
    println!(
        "outage: run exited 0 {:.2} s after SIGTERM",
        signalled.elapsed().as_secs_f64()
    );
    assert!(
        stderr.contains("retrying"),
        "run's log shows no retry although ClickHouse was down:\n{}",
        tail(&stderr, 40)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let retry_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("retrying")).collect();
    println!(
        "outage: {} \"retrying\" lines; first: {}\noutage: last: {}",
        retry_lines.len(),
        retry_lines.first().unwrap_or(&""),
        retry_lines.last().unwrap_or(&"")
    );
    for line in stderr
        .lines()
        .filter(|l| l.contains("succeeded after retries"))
    {
        println!("outage: {line}");
    }
    let stdout = read_log(&stdout_log);
    let summary: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("run printed no summary; stderr:\n{}", tail(&stderr, 40))),
    )
    .expect("run's summary is JSON");
    println!("outage: run summary: {summary}");
    assert_eq!(
        summary["accepted"].as_u64().unwrap() + summary["rejected"].as_u64().unwrap(),
        produced,
        "one run made every message durable exactly once"
    );
    assert!(
        summary["insert_retries"].as_u64().unwrap() > 0,
        "the summary counts no insert retries"
    );

    assert_views_match(&server, &world, &expectation).await;
    println!(
        "outage: test took {:.1} s",
        test_started.elapsed().as_secs_f64()
    );
    // The private server and its data go with `server`; the topics stay on the broker.
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_unreachable_at_start_fails_fast_with_a_clear_message() {
    // Proves that `run` pointed at a ClickHouse that is not there gives up with exit 1
    // within 30 s and a message saying it is unreachable, without a panic: the URL is a
    // port just freed on 127.0.0.1 (checked to refuse connections).
    require_services().await;
    let [port] = free_ports::<1>();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} should be closed"
    );
    let url = format!("http://127.0.0.1:{port}");
    let world = World::new("ch_unreachable");
    let dir = tempfile::tempdir().unwrap();
    let stderr_log = dir.path().join("run.stderr.log");
    let started = Instant::now();
    let mut run = ChildGuard(
        world
            .command()
            .env("SUBSIDY_CLICKHOUSE_URL", &url)
            .env("NO_COLOR", "1")
            .args(["run", "--retry-backoff-max-ms", "2000"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_log).unwrap())
            .spawn()
            .expect("spawn run"),
    );
    let exit = loop {
        if let Some(exit) = run.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < FAIL_FAST_WAIT,
            "run against the closed port {url} did not exit within 30 s; stderr:\n{}",
            tail(&read_log(&stderr_log), 20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = read_log(&stderr_log);
    println!(
        "unreachable: run exited with {exit} after {:.2} s: {}",
        started.elapsed().as_secs_f64(),
        stderr.lines().last().unwrap_or("")
    );
    assert_eq!(exit.code(), Some(1), "exit code; stderr:\n{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(stderr.contains(&url), "the message names the URL: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// One GET to the operations listener: status code and body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Ok(stream) => stream,
        Err(error) => return (0, format!("connect: {error}")),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Samples of one metric in a Prometheus text exposition: (labels, value) per series.
fn samples(exposition: &str, name: &str) -> Vec<(String, f64)> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((metric, labels)) => (metric, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            Some((labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn total(exposition: &str, name: &str) -> u64 {
    samples(exposition, name)
        .iter()
        .map(|(_, v)| *v)
        .sum::<f64>() as u64
}

/// Polls `path` until `accept(status, body)` or `wait` passes; returns the last answer.
async fn wait_for(
    port: u16,
    path: &str,
    wait: Duration,
    accept: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let started = Instant::now();
    loop {
        let (status, body) = http_get(port, path);
        if accept(status, &body) || started.elapsed() > wait {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_summary_lag_falls_to_zero_and_readyz_follows_clickhouse() {
    // Proves, with `run --metrics-addr` against a private ClickHouse: /readyz is 503 naming
    // the missing reference data while `run` waits for it (and /livez is 200), and ready
    // once it is loaded; after a 20,000-message feed lands, consumed = accepted + rejected
    // in /metrics, rejected by reason equals `rejected_events`, and every partition's lag
    // (raw topics and the units topic) falls to 0; while ClickHouse is stopped /readyz is
    // 503 saying it is unreachable, and ready again once it is back; at SIGTERM the
    // summary's counts equal the scraped counters.
    require_services().await;
    let server = PrivateClickHouse::start();
    let world = World::new("ch_metrics");
    let config = SampleConfig {
        events: 20_000,
        seed: 91,
        topics: world.sample_topics(),
        ..SampleConfig::default()
    };
    let feed = generate(&config);
    let dir = tempfile::tempdir().unwrap();
    server.run_ok(&world, &["migrate"]);
    create_topics(&world).await;

    let [port] = free_ports::<1>();
    let stderr_log = dir.path().join("run.stderr.log");
    let stdout_log = dir.path().join("run.stdout.log");
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut run = server.spawn_run(
        &world,
        &[
            "--metrics-addr",
            &metrics_addr,
            "--retry-backoff-max-ms",
            "1000",
        ],
        &stdout_log,
        &stderr_log,
    );
    let (status, body) = wait_for(port, "/readyz", Duration::from_secs(30), |s, b| {
        s == 503 && b.contains("no reference data")
    })
    .await;
    assert_eq!(status, 503, "waiting for reference data: {body}");
    assert!(body.contains("refdata load"), "says what to load: {body}");
    assert_eq!(http_get(port, "/livez").0, 200, "alive while waiting");
    assert_alive(&mut run.0, &stderr_log, "waiting for reference data");

    server.load_refdata(&world, dir.path(), &feed);
    let (status, body) = wait_for(port, "/readyz", Duration::from_secs(60), |s, _| s == 200).await;
    assert_eq!(status, 200, "ready once reference data is loaded: {body}");

    produce(&feed.messages).await;
    let started = Instant::now();
    while server.decided(&world).await < config.events as u64 {
        assert!(
            started.elapsed() < CATCH_UP_WAIT,
            "the feed did not land; stderr:\n{}",
            tail(&read_log(&stderr_log), 20)
        );
        assert_alive(&mut run.0, &stderr_log, "ingesting");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Counters are published once per second by the loops, after each durable batch.
    let (_, metrics) = wait_for(port, "/metrics", Duration::from_secs(15), |_, body| {
        let lags = samples(body, "subsidy_consumer_lag_messages");
        total(body, "subsidy_messages_accepted_total")
            + total(body, "subsidy_messages_rejected_total")
            == config.events as u64
            && !lags.is_empty()
            && lags.iter().all(|(_, v)| *v == 0.0)
            && lags.iter().any(|(l, _)| l.contains(".units"))
    })
    .await;
    let consumed = total(&metrics, "subsidy_messages_consumed_total");
    let accepted = total(&metrics, "subsidy_messages_accepted_total");
    let rejected = total(&metrics, "subsidy_messages_rejected_total");
    assert_eq!(consumed, config.events as u64, "consumed:\n{metrics}");
    assert_eq!(
        consumed,
        accepted + rejected,
        "consumed = accepted + rejected"
    );
    let lags = samples(&metrics, "subsidy_consumer_lag_messages");
    assert_eq!(
        lags.len(),
        3 * PARTITIONS as usize + subsidy_ingester::route::UNITS_PARTITIONS_DEFAULT as usize,
        "raw and units partitions: {lags:?}"
    );
    assert!(
        lags.iter().all(|(_, v)| *v == 0.0),
        "lag falls to 0: {lags:?}"
    );
    let mut by_reason: Vec<(String, u64)> = samples(&metrics, "subsidy_messages_rejected_total")
        .into_iter()
        .fold(Vec::<(String, u64)>::new(), |mut acc, (labels, v)| {
            let reason = labels
                .split(',')
                .find_map(|l| l.strip_prefix("reason=\""))
                .map(|r| r.trim_end_matches('"').to_string())
                .unwrap_or_default();
            match acc.iter_mut().find(|(r, _)| *r == reason) {
                Some(entry) => entry.1 += v as u64,
                None => acc.push((reason, v as u64)),
            }
            acc
        });
    by_reason.sort();
    let stored: Vec<(String, u64)> = server
        .query(
            &world,
            "SELECT reason, toString(count()) FROM {db}.rejected_events GROUP BY reason ORDER BY reason",
        )
        .await
        .into_iter()
        .map(|row| (row[0].clone(), row[1].parse().unwrap()))
        .collect();
    assert_eq!(by_reason, stored, "rejected by reason = rejected_events");
    for name in [
        "subsidy_clickhouse_inserts_total",
        "subsidy_clickhouse_rows_total",
        "subsidy_clickhouse_insert_duration_seconds_count",
        "subsidy_batch_rows_count",
        "subsidy_durable_offset",
        "subsidy_build_info",
    ] {
        assert!(total(&metrics, name) > 0, "{name} exported:\n{metrics}");
    }

    server.services("stop-clickhouse");
    let (status, body) = wait_for(port, "/readyz", Duration::from_secs(20), |s, b| {
        s == 503 && b.contains("ClickHouse unreachable")
    })
    .await;
    assert_eq!(status, 503, "not ready while ClickHouse is stopped: {body}");
    assert!(body.contains(&server.url()), "names the server: {body}");
    assert_eq!(
        http_get(port, "/livez").0,
        200,
        "alive while ClickHouse is down"
    );
    server.up();
    let (status, body) = wait_for(port, "/readyz", Duration::from_secs(30), |s, _| s == 200).await;
    assert_eq!(status, 200, "ready again once ClickHouse is back: {body}");

    // SIGTERM: the summary agrees with the scraped counters.
    let kill = Command::new("kill")
        .args(["-TERM", &run.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(kill.success());
    let exit_started = Instant::now();
    let exit = loop {
        if let Some(exit) = run.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            exit_started.elapsed() < SHUTDOWN_WAIT,
            "run did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        exit.success(),
        "run exit: {exit}; stderr:\n{}",
        tail(&read_log(&stderr_log), 20)
    );
    let summary: serde_json::Value = serde_json::from_str(
        read_log(&stdout_log)
            .lines()
            .last()
            .expect("a summary line"),
    )
    .expect("summary JSON");
    assert_eq!(summary["consumed"].as_u64(), Some(consumed));
    assert_eq!(summary["accepted"].as_u64(), Some(accepted));
    assert_eq!(summary["rejected"].as_u64(), Some(rejected));
    let summary_reasons: Vec<(String, u64)> = summary["rejected_by_reason"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(r, n)| (r.clone(), n.as_u64().unwrap()))
        .collect();
    assert_eq!(
        summary_reasons, by_reason,
        "summary's reasons = the metric's"
    );
}
