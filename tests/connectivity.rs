//! Production connectivity with the real binary: ClickHouse over HTTPS with a private CA and
//! a password, librdkafka properties from the command line and the environment, and
//! secrets that never show in output, `--help` or errors.
//!
//! The HTTPS test starts a ClickHouse 18.16 server of its own (Debian's `clickhouse-server`,
//! as `scripts/services.sh` runs the shared one) in a temporary directory, on free ports,
//! with `https_port`, an `<openSSL><server>` section and a `default` user with a password;
//! the CA and the server certificate are made in the test with the `openssl` CLI. The
//! server is killed when the test ends (a Drop guard, also when an assertion fails). Only
//! 18.16 can run here as a TLS server: the 26.9 chDB stand-in speaks plain HTTP, so
//! `scripts/test.sh` runs this file only in its 18.16 pass. The broker is the shared one
//! (plaintext: Tansu has no TLS), with unique topic names.

mod harness;

use harness::{
    free_ports, produce_raw, require_services, write_file, World, FIRMS, OUTLETS, ZONES,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The ClickHouse password of the private server; must appear in no output.
const CLICKHOUSE_PASSWORD: &str = "ch-pw-Quokka-7731";
/// A Kafka SASL password handed to every client (unused by the plaintext broker); must
/// appear in no output either.
const KAFKA_PASSWORD: &str = "kafka-pw-Wombat-4419";
/// How long the private server may take to answer over HTTPS.
const START_WAIT: Duration = Duration::from_secs(60);
/// The `client.id` given with `--kafka-property`; librdkafka's statistics name it.
const CLIENT_ID: &str = "subsidy-connectivity-test";

/// Runs `openssl ARGS` in `dir`, panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the `openssl` CLI (Debian package openssl) makes the test certificates");
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test CA (`ca.pem`) and a server certificate it signed for `localhost` and
/// 127.0.0.1 (`server.pem`, key `server.key`), all in `dir`; valid for two days.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=subsidy test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    write_file(
        dir,
        "server.ext",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// A ClickHouse 18.16 server of this test's own with HTTPS and a password; killed (and its
/// directory deleted) when dropped.
struct TlsClickHouse {
    child: Child,
    dir: tempfile::TempDir,
    https_port: u16,
}

impl TlsClickHouse {
    /// Makes the certificates and the config, starts the server and waits until it
    /// answers `/ping` over HTTPS.
    fn start() -> TlsClickHouse {
        let dir = tempfile::tempdir().expect("temporary directory");
        make_certificates(dir.path());
        let [http_port, https_port, tcp_port] = free_ports::<3>();
        let config = write_config(dir.path(), http_port, https_port, tcp_port);
        let log = std::fs::File::create(dir.path().join("stdout.log")).expect("stdout.log");
        let child = Command::new("clickhouse-server")
            .arg(format!("--config-file={}", config.display()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect(
                "clickhouse-server (Debian package clickhouse-server; scripts/services.sh install)",
            );
        let server = TlsClickHouse {
            child,
            dir,
            https_port,
        };
        server.wait_until_up();
        server
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The HTTPS URL, by the name the certificate carries.
    fn url(&self) -> String {
        format!("https://localhost:{}", self.https_port)
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline {
            let ping = Command::new("curl")
                .args(["-sf", "--max-time", "2", "--cacert"])
                .arg(self.ca_file())
                .arg(format!("{}/ping", self.url()))
                .output()
                .expect("curl");
            if ping.status.success() && ping.stdout.starts_with(b"Ok.") {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let log =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        panic!(
            "the private TLS ClickHouse did not answer on {} within {START_WAIT:?}\nstdout:\n{}\nerror log:\n{}",
            self.url(),
            log("stdout.log"),
            log("log/clickhouse-server.err.log")
        );
    }

    /// The binary with the world's environment, pointed at this server over HTTPS with
    /// the CA and both passwords, logging at debug.
    fn command(&self, world: &World) -> Command {
        let mut command = world.command();
        command
            .env("SUBSIDY_CLICKHOUSE_URL", self.url())
            .env("SUBSIDY_CLICKHOUSE_CA_FILE", self.ca_file())
            .env("SUBSIDY_CLICKHOUSE_PASSWORD", CLICKHOUSE_PASSWORD)
            .env("SUBSIDY_KAFKA_SASL_PASSWORD", KAFKA_PASSWORD)
            .env("SUBSIDY_LOG", "debug");
        command
    }
}

impl Drop for TlsClickHouse {
    fn drop(&mut self) {
        // Best effort, also while unwinding from a failed assertion.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes config.xml and users.xml for 18.16: HTTP, HTTPS and native ports on 127.0.0.1,
/// the server certificate, and a `default` user that needs [`CLICKHOUSE_PASSWORD`].
fn write_config(dir: &Path, http_port: u16, https_port: u16, tcp_port: u16) -> PathBuf {
    let d = dir.display();
    for sub in ["data", "tmp", "user_files", "format_schemas", "log"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    write_file(
        dir,
        "users.xml",
        &format!(
            r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password>{CLICKHOUSE_PASSWORD}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#
        ),
    );
    write_file(
        dir,
        "config.xml",
        &format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{d}/log/clickhouse-server.log</log>
        <errorlog>{d}/log/clickhouse-server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <https_port>{https_port}</https_port>
    <tcp_port>{tcp_port}</tcp_port>
    <openSSL>
        <server>
            <certificateFile>{d}/server.pem</certificateFile>
            <privateKeyFile>{d}/server.key</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
    <max_connections>64</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>16</max_concurrent_queries>
    <mark_cache_size>67108864</mark_cache_size>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
"#
        ),
    )
}

/// Everything a run printed, for the secret checks.
fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `command` with `args`, panics with its output unless it exits 0, and adds what it
/// printed to `transcript`.
fn run_ok(mut command: Command, args: &[&str], transcript: &mut String) -> String {
    let output = command.args(args).output().expect("spawn subsidy-ingester");
    transcript.push_str(&printed(&output));
    assert!(
        output.status.success(),
        "`subsidy-ingester {}` failed with {}:\n{}",
        args.join(" "),
        output.status,
        printed(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `command` with `args`, expecting exit 1, and returns its stderr.
fn run_fails(mut command: Command, args: &[&str]) -> String {
    let output = command.args(args).output().expect("spawn subsidy-ingester");
    assert_eq!(
        output.status.code(),
        Some(1),
        "`subsidy-ingester {}` should fail:\n{}",
        args.join(" "),
        printed(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_feed_lands_and_reports_over_https_with_a_private_ca_and_no_secret_printed() {
    // Proves: migrate, refdata load, run --until-caught-up and report monthly all work
    // against https://localhost with the CA given by SUBSIDY_CLICKHOUSE_CA_FILE and the
    // password from SUBSIDY_CLICKHOUSE_PASSWORD; a `--kafka-property` reaches librdkafka
    // (its statistics, enabled by one property, name the client.id set by another);
    // without the CA the handshake fails with an error saying what to do; and at debug
    // level nothing any of these printed holds either password.
    require_services().await;
    let server = TlsClickHouse::start();
    let world = World::new("tls");
    let mut transcript = String::new();

    let migrated = run_ok(server.command(&world), &["migrate"], &mut transcript);
    assert!(migrated.contains("applied"), "{migrated}");
    let dir = tempfile::tempdir().unwrap();
    let load = harness::refdata_load_args(dir.path(), FIRMS, OUTLETS, ZONES);
    let load: Vec<&str> = load.iter().map(String::as_str).collect();
    run_ok(server.command(&world), &load, &mut transcript);

    let payloads: Vec<Vec<u8>> = [
        r#"{"type":"takeout_order","event_id":"e1","occurred_at":"2022-09-03T04:00:00Z","platform_id":"meituan","order_id":"MT1","courier_id":"C1","zone_id":"XH-2022-09-01","courier_released":true}"#,
        r#"{"type":"import_parcel","event_id":"e2","occurred_at":"2023-12-31T16:30:00Z","firm_id":"sf-express","waybill_no":"SF1","channel":"express"}"#,
        r#"{"type":"import_parcel","event_id":"e3","occurred_at":"2024-01-20T10:00:00+08:00","firm_id":"sf-express","waybill_no":"SF2","channel":"express"}"#,
        r#"{"type":"rural_delivery","event_id":"e4","occurred_at":"2025-03-14T15:59:59Z","firm_id":"zto","outlet_id":"ZTO-CA-001","waybill_no":"ZR1"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    produce_raw(&world.import_topic, 1, &payloads).await;
    produce_raw(&world.takeout_topic, 1, &[]).await;
    produce_raw(&world.rural_topic, 1, &[]).await;

    let client_id = format!("client.id={CLIENT_ID}");
    let summary = run_ok(
        server.command(&world),
        &[
            "run",
            "--until-caught-up",
            "--kafka-property",
            &client_id,
            "--kafka-property",
            "statistics.interval.ms=200",
        ],
        &mut transcript,
    );
    let summary: serde_json::Value = serde_json::from_str(summary.lines().last().unwrap()).unwrap();
    assert_eq!(summary["accepted"], 4, "{summary}");
    assert!(
        transcript.contains(&format!("client_id: \"{CLIENT_ID}\"")),
        "librdkafka's statistics should name the client.id given with --kafka-property:\n{transcript}"
    );

    let csv = run_ok(
        server.command(&world),
        &["report", "monthly", "--year", "2024", "--format", "csv"],
        &mut transcript,
    );
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    assert_eq!(&rows[0][column("month")], "2024-01-01", "{csv}");
    assert_eq!(&rows[0][column("program")], "import_parcel", "{csv}");
    assert_eq!(&rows[0][column("units")], "2", "{csv}");
    assert_eq!(&rows[0][column("granted")], "2.00", "{csv}");
    let table = run_ok(
        server.command(&world),
        &["report", "monthly", "--by", "district"],
        &mut transcript,
    );
    let total: Vec<&str> = table.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(total[0], "TOTAL", "{table}");
    // 1.00 takeout + 2.00 import + 0.30 rural.
    assert!(total.contains(&"3.30"), "{table}");

    // Without the CA the server's certificate is not trusted, and the message says what to
    // give; that is a configuration error, so it fails at once rather than retrying.
    let mut no_ca = server.command(&world);
    no_ca.env_remove("SUBSIDY_CLICKHOUSE_CA_FILE");
    let started = Instant::now();
    let stderr = run_fails(no_ca, &["report", "monthly"]);
    transcript.push_str(&stderr);
    assert!(
        stderr.contains(&format!(
            "TLS handshake with ClickHouse at {} failed",
            server.url()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    assert!(stderr.contains("--clickhouse-ca-file"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "{stderr}");

    // A wrong password is the server's refusal, which does not echo it.
    let mut wrong = server.command(&world);
    wrong.env("SUBSIDY_CLICKHOUSE_PASSWORD", "not-the-password");
    let stderr = run_fails(wrong, &["report", "monthly"]);
    assert!(
        stderr.contains("193") || stderr.contains("assword"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    // The password from a file works the same.
    let password_file = write_file(
        dir.path(),
        "ch-password",
        &format!("{CLICKHOUSE_PASSWORD}\n"),
    );
    let mut from_file = server.command(&world);
    from_file
        .env_remove("SUBSIDY_CLICKHOUSE_PASSWORD")
        .env("SUBSIDY_CLICKHOUSE_PASSWORD_FILE", &password_file);
    run_ok(from_file, &["report", "monthly"], &mut transcript);

    for secret in [CLICKHOUSE_PASSWORD, KAFKA_PASSWORD] {
        assert!(
            !transcript.contains(secret),
            "a password was printed:\n{transcript}"
        );
    }
    assert!(transcript.contains("DEBUG"), "the runs should log at debug");
}

#[test]
fn kafka_properties_reach_librdkafka_and_reserved_keys_and_secrets_are_refused() {
    // Proves, before any connection (no service needed): librdkafka itself refuses an
    // unknown property and a bad value, naming them; a key the service relies on is
    // refused with why; secrets are refused on the command line without being echoed,
    // and a malformed pair of SUBSIDY_KAFKA_PROPERTIES is named.
    let world = World::new("kprops");
    let run = |properties: &[&str]| {
        let mut args = vec!["run", "--until-caught-up"];
        for property in properties {
            args.extend(["--kafka-property", property]);
        }
        run_fails(world.command(), &args)
    };
    let stderr = run(&["no.such.property=1"]);
    assert!(
        stderr.contains("librdkafka refused `no.such.property`: No such configuration property: \"no.such.property\""),
        "{stderr}"
    );
    let stderr = run(&["statistics.interval.ms=often"]);
    assert!(
        stderr.contains("librdkafka refused `statistics.interval.ms`"),
        "{stderr}"
    );
    let stderr = run(&["enable.auto.commit=true"]);
    assert!(
        stderr.contains("`enable.auto.commit` cannot be overridden: offsets live in ClickHouse"),
        "{stderr}"
    );
    for secret in ["sasl.password=hunter2", "ssl.key.password=hunter2"] {
        let stderr = run(&[secret]);
        assert!(
            stderr.contains("is a secret and is not accepted here"),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    assert!(run(&["sasl.password=hunter2"]).contains("SUBSIDY_KAFKA_SASL_PASSWORD"));
    let stderr = run_fails(
        {
            let mut command = world.command();
            command.env(
                "SUBSIDY_KAFKA_PROPERTIES",
                "security.protocol=PLAINTEXT;oops",
            );
            command
        },
        &["run", "--until-caught-up"],
    );
    assert!(
        stderr.contains("SUBSIDY_KAFKA_PROPERTIES: `oops` is not KEY=VALUE"),
        "{stderr}"
    );
    // The ClickHouse password is not a flag.
    let stderr = run_fails(
        world.command(),
        &["report", "monthly", "--clickhouse-password", "hunter2"],
    );
    assert!(
        stderr.contains("--clickhouse-password is not accepted"),
        "{stderr}"
    );
    assert!(stderr.contains("SUBSIDY_CLICKHOUSE_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // Nor may it hide in the URL.
    let mut in_url = world.command();
    in_url.env(
        "SUBSIDY_CLICKHOUSE_URL",
        "http://default:hunter2@127.0.0.1:1",
    );
    let stderr = run_fails(in_url, &["report", "monthly"]);
    assert!(stderr.contains("carries a password"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn help_shows_the_secret_sources_but_no_secret() {
    // Proves: with every secret set in the environment, no `--help` prints one, and the
    // help names where passwords come from.
    let world = World::new("help");
    let mut all = String::new();
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["replay", "--help"],
        &["conservation", "--help"],
        &["report", "monthly", "--help"],
    ] {
        let mut command = world.command();
        command
            .env("SUBSIDY_CLICKHOUSE_PASSWORD", CLICKHOUSE_PASSWORD)
            .env("SUBSIDY_KAFKA_SASL_PASSWORD", KAFKA_PASSWORD)
            .env(
                "SUBSIDY_KAFKA_PROPERTIES",
                "ssl.key.password=key-pw-Numbat-1234",
            );
        let mut transcript = String::new();
        all.push_str(&run_ok(command, args, &mut transcript));
        for secret in [CLICKHOUSE_PASSWORD, KAFKA_PASSWORD, "key-pw-Numbat-1234"] {
            assert!(!transcript.contains(secret), "{args:?}:\n{transcript}");
        }
    }
    for mention in [
        "--clickhouse-password-file",
        "SUBSIDY_CLICKHOUSE_PASSWORD",
        "--clickhouse-ca-file",
        "--kafka-property",
        "SUBSIDY_KAFKA_PROPERTIES",
        "--kafka-sasl-password-file",
        "SUBSIDY_KAFKA_SASL_PASSWORD",
    ] {
        assert!(all.contains(mention), "no {mention} in the help:\n{all}");
    }
    assert!(!all.contains("--clickhouse-password "), "{all}");
}
