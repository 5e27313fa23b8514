//! The Grafana dashboard of the local stack (docker/grafana), checked without Grafana or
//! Prometheus: the provisioning files parse and agree with docker-compose.yml and
//! docker/prometheus/prometheus.yml; every panel, query and template variable names a
//! provisioned data source; every Prometheus query reads only the ingester's metrics
//! ([`metrics`], which README's metrics table lists); and every ClickHouse
//! query, its macros expanded as the `grafana-clickhouse-datasource` plugin expands them,
//! runs on the server `SUBSIDY_TEST_CLICKHOUSE_URL` names against a database a small real
//! run filled, returns at least one row and names every column by an alias.

mod harness;

use chrono::{DateTime, Duration, Utc};
use harness::{require_services, World};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// How a metric is exposed: a histogram is read through `_bucket`, `_sum` and `_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric the ingester exports (its `/metrics` on `--metrics-addr`), from their one
/// home in the library. The dashboard may use these only; README's metrics table lists
/// exactly these.
fn metrics() -> Vec<(&'static str, Kind)> {
    subsidy_ingester::telemetry::metrics::ALL
        .iter()
        .map(|&(name, kind, _)| {
            let kind = match kind {
                "counter" => Kind::Counter,
                "histogram" => Kind::Histogram,
                _ => Kind::Gauge,
            };
            (name, kind)
        })
        .collect()
}

/// The ClickHouse plugin's type name, as the data source provisioning gives it.
const CLICKHOUSE_TYPE: &str = "grafana-clickhouse-datasource";

/// A path in the repository.
fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The one YAML document of a file; panics naming the file when it does not parse.
fn yaml_file(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut documents =
        YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(documents.len(), 1, "{}: one YAML document", path.display());
    documents.remove(0)
}

/// The `*.yaml` / `*.yml` files of a folder, sorted.
fn yaml_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no YAML file", folder.display());
    files
}

/// The provisioned data sources: uid → type.
fn provisioned_datasources() -> BTreeMap<String, String> {
    let mut uids = BTreeMap::new();
    for path in yaml_files(&repo("docker/grafana/provisioning/datasources")) {
        let doc = yaml_file(&path);
        assert_eq!(doc["apiVersion"].as_i64(), Some(1), "{}", path.display());
        for source in doc["datasources"].as_vec().expect("a `datasources` list") {
            let uid = source["uid"]
                .as_str()
                .expect("every data source has a fixed uid");
            let kind = source["type"]
                .as_str()
                .expect("every data source has a type");
            assert!(
                uids.insert(uid.to_owned(), kind.to_owned()).is_none(),
                "{}: uid {uid} twice",
                path.display()
            );
        }
    }
    uids
}

/// The dashboard JSON.
fn dashboard() -> Value {
    let path = repo("docker/grafana/dashboards/subsidy.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel but rows, including those nested in collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

/// Where docker-compose.yml mounts a repository path in a service: the container path.
fn compose_mount(service: &str, source: &str) -> String {
    let compose = yaml_file(&repo("docker-compose.yml"));
    let volumes = compose["services"][service]["volumes"]
        .as_vec()
        .unwrap_or_else(|| panic!("service {service} mounts nothing"));
    volumes
        .iter()
        .filter_map(Yaml::as_str)
        .find_map(|volume| {
            let mut parts = volume.split(':');
            (parts.next() == Some(source)).then(|| parts.next().unwrap().to_owned())
        })
        .unwrap_or_else(|| panic!("service {service} does not mount {source}"))
}

#[test]
fn provisioning_parses_and_every_panel_names_a_provisioned_data_source() {
    // Proves: the provisioning YAML and the dashboard JSON parse; the dashboard provider
    // reads the folder docker-compose.yml mounts the dashboards at, and Grafana mounts the
    // provisioning folder where it reads it; Prometheus scrapes ingester:9464/metrics,
    // where the compose file has the ingester serve them; each panel, query and template
    // variable names a provisioned data source by uid and type; panel ids are unique and
    // every panel has a description (the README's source).
    let sources = provisioned_datasources();
    assert!(
        sources.values().any(|t| t == CLICKHOUSE_TYPE),
        "{sources:?}"
    );
    assert!(sources.values().any(|t| t == "prometheus"), "{sources:?}");

    let dashboards_at = compose_mount("grafana", "./docker/grafana/dashboards");
    for path in yaml_files(&repo("docker/grafana/provisioning/dashboards")) {
        let doc = yaml_file(&path);
        assert_eq!(doc["apiVersion"].as_i64(), Some(1), "{}", path.display());
        for provider in doc["providers"].as_vec().expect("a `providers` list") {
            assert_eq!(provider["type"].as_str(), Some("file"));
            let read_from = provider["options"]["path"].as_str().expect("options.path");
            assert_eq!(
                read_from.trim_end_matches('/'),
                dashboards_at.trim_end_matches('/'),
                "{}: the provider reads where the compose file mounts the dashboards",
                path.display()
            );
        }
    }
    assert_eq!(
        compose_mount("grafana", "./docker/grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let prometheus = yaml_file(&repo("docker/prometheus/prometheus.yml"));
    let job = &prometheus["scrape_configs"][0];
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    assert_eq!(
        job["static_configs"][0]["targets"][0].as_str(),
        Some("ingester:9464")
    );
    let compose = yaml_file(&repo("docker-compose.yml"));
    assert_eq!(
        compose["services"]["ingester"]["environment"]["SUBSIDY_METRICS_ADDR"].as_str(),
        Some("0.0.0.0:9464"),
        "the ingester serves its metrics where Prometheus scrapes them"
    );

    let dashboard = dashboard();
    let check = |what: &str, datasource: &Value| {
        let uid = datasource["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no datasource uid"));
        let kind = sources
            .get(uid)
            .unwrap_or_else(|| panic!("{what}: data source uid {uid} is not provisioned"));
        assert_eq!(datasource["type"].as_str(), Some(kind.as_str()), "{what}");
    };
    let mut ids = BTreeSet::new();
    let all = panels(&dashboard);
    assert!(all.len() >= 10, "{} panels", all.len());
    for panel in &all {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "{title}: id twice"
        );
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title}: no description"
        );
        check(title, &panel["datasource"]);
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            check(
                &format!("{title} / {}", target["refId"]),
                &target["datasource"],
            );
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        check(variable["name"].as_str().unwrap(), &variable["datasource"]);
    }
}

/// The metric names a PromQL expression reads: identifiers that are not functions,
/// keywords, label names in `by (…)`/`{…}`, durations in `[…]` or string contents.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    // PromQL's keywords, and its aggregation operators (which may precede `by (…)`).
    const KEYWORDS: &str = "by without on ignoring group_left group_right bool offset and or \
        unless inf nan sum min max avg group stddev stdvar count count_values bottomk topk \
        quantile limitk limit_ratio";
    // Blank out strings, label matchers and range selectors, which hold no metric name.
    let mut plain = String::with_capacity(expr.len());
    let mut closing: Option<char> = None;
    for c in expr.chars() {
        match closing {
            Some(end) if c == end => {
                closing = None;
                plain.push(' ');
            }
            Some(_) => {}
            None => match c {
                '"' => closing = Some('"'),
                '{' => closing = Some('}'),
                '[' => closing = Some(']'),
                _ => plain.push(c),
            },
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                grouping = next == Some(&'(');
            } else if next != Some(&'(')
                && !grouping
                && !KEYWORDS.split_whitespace().any(|k| k == word)
            {
                names.insert(word);
            }
        } else if c.is_ascii_digit() {
            // A number, exponent included (`1e3` names no metric).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            if c == ')' {
                grouping = false;
            }
            i += 1;
        }
    }
    names
}

/// The exported metric a series name belongs to (a histogram's `_bucket` to the histogram).
fn exported_metric(series: &str) -> Option<&'static str> {
    metrics().into_iter().find_map(|(name, kind)| {
        let matches = series == name
            || (kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| series.strip_suffix(suffix) == Some(name)));
        matches.then_some(name)
    })
}

#[test]
fn prometheus_panels_read_only_the_ingesters_metrics() {
    // Proves: every metric name in every Prometheus query is one the ingester exports;
    // the throughput, lag and insert-latency metrics the issue asks for are all shown; and,
    // README's metrics table (rows starting "| `subsidy_…`") lists exactly the exported
    // metrics.
    assert_eq!(
        promql_metrics(
            "histogram_quantile(0.99, sum by (le, table) (rate(a_bucket{x=\"y\"}[5m]))) / b"
        ),
        BTreeSet::from(["a_bucket".to_owned(), "b".to_owned()]),
        "the extractor itself"
    );
    let sources = provisioned_datasources();
    let dashboard = dashboard();
    let mut used = BTreeSet::new();
    for panel in panels(&dashboard) {
        if sources[panel["datasource"]["uid"].as_str().unwrap()] != "prometheus" {
            continue;
        }
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .expect("a Prometheus query has `expr`");
            let names = promql_metrics(expr);
            assert!(!names.is_empty(), "{}: no metric in {expr}", panel["title"]);
            for name in names {
                let metric = exported_metric(&name).unwrap_or_else(|| {
                    panic!(
                        "{}: `{name}` is not an ingester metric ({expr})",
                        panel["title"]
                    )
                });
                used.insert(metric);
            }
        }
    }
    for wanted in [
        "subsidy_messages_consumed_total",
        "subsidy_messages_accepted_total",
        "subsidy_messages_rejected_total",
        "subsidy_consumer_lag_messages",
        "subsidy_consumer_lag_seconds",
        "subsidy_clickhouse_insert_duration_seconds",
    ] {
        assert!(used.contains(wanted), "no panel shows {wanted}");
    }

    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let documented = readme_metrics_table(&readme);
    let exported: BTreeSet<&str> = metrics().into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        documented, exported,
        "README's metrics table and the exported metrics differ"
    );
}

/// The metric names in README's metrics tables: the first cell (`` `name` `` or
/// `` `name{labels}` ``) of each row of a table whose header row mentions "metric".
fn readme_metrics_table(readme: &str) -> BTreeSet<&str> {
    let mut names = BTreeSet::new();
    let mut in_metrics_table = false;
    let mut previous_was_table = false;
    for line in readme.lines().map(str::trim_start) {
        let is_table = line.starts_with('|');
        if is_table && !previous_was_table {
            in_metrics_table = line.to_lowercase().contains("metric");
        } else if is_table && in_metrics_table {
            let first_cell = line.trim_start_matches('|').trim_start();
            if let Some(name) = first_cell
                .strip_prefix('`')
                .and_then(|rest| rest.split(['`', '{']).next())
                .filter(|name| name.starts_with("subsidy_"))
            {
                names.insert(name);
            }
        }
        previous_was_table = is_table;
    }
    names
}

/// What the ClickHouse plugin knows when it expands a query's macros.
struct Context {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    interval_s: i64,
    /// Template variables and their values (every value: "All" is selected).
    variables: BTreeMap<String, Vec<String>>,
}

/// A panel's time range: its relative override (`timeFrom`, e.g. "6h") or the dashboard's.
fn time_range(
    dashboard: &Value,
    panel: &Value,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    if let Some(relative) = panel["timeFrom"].as_str() {
        let (number, unit) = relative.split_at(relative.len() - 1);
        let number: i64 = number
            .parse()
            .unwrap_or_else(|_| panic!("timeFrom {relative}"));
        let span = match unit {
            "m" => Duration::minutes(number),
            "h" => Duration::hours(number),
            "d" => Duration::days(number),
            _ => panic!("timeFrom {relative}: unit not handled here"),
        };
        return (now - span, now);
    }
    let instant = |key: &str| {
        let text = dashboard["time"][key].as_str().unwrap();
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("dashboard time.{key} {text}: {e} (keep it absolute)"))
            .with_timezone(&Utc)
    };
    (instant("from"), instant("to"))
}

/// The argument text of a macro call starting right after its `(`, and the rest.
fn macro_argument(rest: &str) -> (&str, &str) {
    let close = rest.find(')').expect("a macro's closing parenthesis");
    (rest[..close].trim(), &rest[close + 1..])
}

/// Expands the plugin's macros (the forms of grafana-clickhouse-datasource 4.20,
/// pkg/macros/macros.go) and Grafana's template variables in `sql`; panics on any other `$`.
fn expand(sql: &str, context: &Context) -> String {
    let (from, to) = (context.from.timestamp(), context.to.timestamp());
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$__timeFilter(") {
            let (column, after) = macro_argument(after);
            out.push_str(&format!(
                "{column} >= toDateTime({from}) AND {column} <= toDateTime({to})"
            ));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("$__dateFilter(") {
            let (column, after) = macro_argument(after);
            let date = |t: DateTime<Utc>| format!("toDate('{}')", t.format("%Y-%m-%d"));
            out.push_str(&format!(
                "{column} >= {} AND {column} <= {}",
                date(context.from),
                date(context.to)
            ));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("$__fromTime") {
            out.push_str(&format!("toDateTime({from})"));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("$__toTime") {
            out.push_str(&format!("toDateTime({to})"));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("$__interval_s") {
            out.push_str(&context.interval_s.to_string());
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let close = after.find('}').expect("closing brace of a variable");
            let (name, format) = after[..close]
                .split_once(':')
                .unwrap_or((&after[..close], ""));
            let values = context
                .variables
                .get(name)
                .unwrap_or_else(|| panic!("unknown template variable {name}"));
            assert_eq!(
                format, "singlequote",
                "${{{name}:{format}}}: format not handled here"
            );
            let quoted: Vec<String> = values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "\\'")))
                .collect();
            out.push_str(&quoted.join(","));
            rest = &after[close + 1..];
        } else {
            panic!(
                "a macro or variable this test does not expand: {}",
                &rest[..rest.len().min(40)]
            );
        }
    }
    out.push_str(rest);
    out
}

/// Runs a query in `database`; returns the column names and the rows (TSV), or the error.
async fn run_query(
    client: &clickhouse::Client,
    sql: &str,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut cursor = client
        .query(sql)
        .fetch_bytes("TabSeparatedWithNames")
        .map_err(|e| e.to_string())?;
    let bytes = cursor.collect().await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut lines = text.lines().filter(|l| !l.is_empty()).map(str::to_owned);
    let names = lines
        .next()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .unwrap_or_default();
    Ok((names, lines.collect()))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_clickhouse_query_runs_on_a_filled_database_and_returns_rows() {
    // Proves: on a database filled by a real run (a 3,000-message sample feed through
    // Kafka and `run`, under an edition with tiny import and rural caps so that recipients
    // reach them, with duplicates and malformed messages so that some are rejected), the
    // template variable's query and every ClickHouse panel query — macros and variables
    // expanded as Grafana and the plugin do, the panel's time range and interval — run
    // without error, return at least one row, and name each column by an alias (an
    // unaliased expression would show as e.g. `sum(granted)`).
    require_services().await;
    let world = World::new("dashboard");
    let dir = tempfile::tempdir().unwrap();
    let edition = subsidy_ingester::edition::DEFAULT_EDITION_TOML
        .replace("cap_per_year = \"200000.00\"", "cap_per_year = \"5.00\"")
        .replace("cap_per_year = \"30000.00\"", "cap_per_year = \"0.90\"");
    assert_eq!(
        edition.matches("\"5.00\"").count(),
        1,
        "the import cap line moved"
    );
    assert_eq!(
        edition.matches("\"0.90\"").count(),
        1,
        "the rural cap line moved"
    );
    let edition_file = harness::write_file(dir.path(), "small-caps.toml", &edition);
    let edition_flag = edition_file.to_str().unwrap();
    world.run_ok(&["--edition", edition_flag, "migrate"]);
    let mut config = subsidy_devtools::sample::SampleConfig {
        events: 3_000,
        seed: 9,
        ..Default::default()
    };
    config.topics = world.sample_topics();
    let feed = subsidy_devtools::sample::generate(&config);
    world.load_refdata_csv(
        dir.path(),
        &subsidy_ingester::refdata::firms_to_csv(&feed.firms),
        &subsidy_ingester::refdata::outlets_to_csv(&feed.outlets),
        &subsidy_ingester::refdata::zones_to_csv(&feed.zones),
    );
    subsidy_devtools::feed::produce(&harness::kafka_config("producer"), &feed.messages, 2)
        .await
        .expect("produce the feed");
    world.run_ok(&["--edition", edition_flag, "run", "--until-caught-up"]);

    let client = world
        .store()
        .await
        .client()
        .clone()
        .with_database(&world.database);
    let dashboard = dashboard();
    let now = Utc::now();
    let mut variables = BTreeMap::new();
    let mut failures = Vec::new();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        let sql = variable["query"].as_str().expect("a variable's SQL");
        match run_query(&client, sql).await {
            Ok((_, rows)) if !rows.is_empty() => {
                variables.insert(name.to_owned(), rows);
            }
            Ok(_) => failures.push(format!("variable {name}: no value\n{sql}")),
            Err(e) => failures.push(format!("variable {name}: {e}\n{sql}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    let sources = provisioned_datasources();
    let mut ran = 0;
    for panel in panels(&dashboard) {
        if sources[panel["datasource"]["uid"].as_str().unwrap()] != CLICKHOUSE_TYPE {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        let (from, to) = time_range(&dashboard, panel, now);
        // Grafana's interval is about the range over the panel's width in pixels.
        let interval_s = ((to - from).num_seconds() / 1_000).max(1);
        let context = Context {
            from,
            to,
            interval_s,
            variables: variables.clone(),
        };
        for target in panel["targets"].as_array().unwrap() {
            let sql = expand(target["rawSql"].as_str().expect("rawSql"), &context);
            ran += 1;
            match run_query(&client, &sql).await {
                Err(e) => failures.push(format!("{title}: {e}\n{sql}")),
                Ok((_, rows)) if rows.is_empty() => {
                    failures.push(format!("{title}: no row\n{sql}"))
                }
                Ok((names, _)) => {
                    for name in names.iter().filter(|n| n.contains('(')) {
                        failures.push(format!("{title}: column `{name}` has no alias\n{sql}"));
                    }
                }
            }
        }
    }
    assert!(ran >= 8, "{ran} ClickHouse queries");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    world.drop_database().await;
}
