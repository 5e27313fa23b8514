//! Connecting to ClickHouse over HTTP or HTTPS and classifying its errors.
//!
//! The password travels in the `X-ClickHouse-Key` header, never in the URL, and is a
//! [`Secret`] everywhere else; a URL that carries one is refused, so the URL in messages
//! and logs never holds a password.
//!
//! The server version decides the wire options: ClickHouse before 22.x (Debian ships 18.16)
//! understands neither the client's LZ4 framing nor `RowBinaryWithNamesAndTypes`, so those
//! are used only on newer servers, where the server then checks every inserted column's
//! name and type, and the client checks every fetched column's name against the struct it
//! fills: every query that fetches into a struct names its columns with `AS field`.

use crate::secret::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// Where ClickHouse is and which database holds our objects. `Debug` shows no password.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// HTTP(S) URL of the server, e.g. `http://127.0.0.1:8123` or
    /// `https://clickhouse.internal:8443`; no credentials in it.
    pub url: String,
    /// Database for every object the service creates (SPEC default `subsidy`).
    pub database: String,
    /// User name; `default` when unset.
    pub user: Option<String>,
    /// Password; none when unset.
    pub password: Option<Secret>,
    /// PEM file of CAs trusted for an `https://` URL besides the system's; none when unset.
    pub ca_file: Option<PathBuf>,
    /// How long one query or insert may take before it counts as failed.
    pub request_timeout_ms: u64,
}

/// What can go wrong talking to ClickHouse. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The TLS handshake failed: the certificate is not trusted or does not match.
    #[error("TLS handshake with ClickHouse at {url} failed ({detail}); if a private CA signed the server's certificate, give its PEM with --clickhouse-ca-file (SUBSIDY_CLICKHOUSE_CA_FILE), and check that the URL's host is one the certificate names")]
    Tls { url: String, detail: String },
    /// The custom CA file cannot be used.
    #[error(transparent)]
    CaFile(#[from] super::tls::CaFileError),
    /// The URL carries a password.
    #[error("the ClickHouse URL carries a password (user:password@); remove it and set SUBSIDY_CLICKHOUSE_PASSWORD or give --clickhouse-password-file FILE")]
    PasswordInUrl,
    /// The server did not answer at all.
    #[error("ClickHouse at {url} is unreachable ({detail}); start it (scripts/services.sh start) or set SUBSIDY_CLICKHOUSE_URL")]
    Unreachable { url: String, detail: String },
    /// The server answered a statement with an error.
    #[error("ClickHouse refused `{statement}`: {detail}")]
    Query { statement: String, detail: String },
    /// The database lacks objects this version needs.
    #[error(
        "database `{database}` is not migrated ({detail}); run `subsidy-ingester migrate` first"
    )]
    NotMigrated { database: String, detail: String },
    /// The database name is not a plain identifier.
    #[error("database name `{0}` must match [A-Za-z_][A-Za-z0-9_]*")]
    BadDatabaseName(String),
    /// A query or insert did not finish within `request_timeout_ms`.
    #[error("ClickHouse did not answer `{statement}` within {timeout_ms} ms")]
    Timeout { statement: String, timeout_ms: u64 },
}

impl StoreError {
    /// Returns true if and only if trying the same request again later may succeed: the
    /// server was unreachable, timed out, or refused for a reason that is about its state
    /// (memory, too many parts, shutting down) rather than about our data or SQL.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } | StoreError::Timeout { .. } => true,
            StoreError::Query { detail, .. } => is_transient_server_error(detail),
            StoreError::NotMigrated { .. }
            | StoreError::BadDatabaseName(_)
            | StoreError::Tls { .. }
            | StoreError::CaFile(_)
            | StoreError::PasswordInUrl => false,
        }
    }
}

/// Server error codes that describe the server's state, not the request. See ClickHouse's
/// `ErrorCodes.cpp`: 159 TIMEOUT_EXCEEDED, 164 READONLY, 202 TOO_MANY_SIMULTANEOUS_QUERIES,
/// 209 SOCKET_TIMEOUT, 210 NETWORK_ERROR, 241 MEMORY_LIMIT_EXCEEDED, 242 TABLE_IS_READ_ONLY,
/// 252 TOO_MANY_PARTS, 319 UNKNOWN_STATUS_OF_INSERT, 394 QUERY_WAS_CANCELLED, 425 SYSTEM_ERROR.
fn is_transient_server_error(detail: &str) -> bool {
    const TRANSIENT_CODES: [u32; 11] = [159, 164, 202, 209, 210, 241, 242, 252, 319, 394, 425];
    match server_error_code(detail) {
        Some(code) => TRANSIENT_CODES.contains(&code),
        // No code: a proxy or a half-started server answered; worth another try.
        None => true,
    }
}

/// Extracts `N` from `Code: N, e.displayText() = ...` (18.x) or `Code: N. DB::Exception` (newer).
fn server_error_code(detail: &str) -> Option<u32> {
    let rest = &detail[detail.find("Code: ")? + "Code: ".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// A connected ClickHouse server and our database on it.
#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
    url: String,
    database: String,
    version: ServerVersion,
    request_timeout: Duration,
}

/// `major.minor` of the server, from `SELECT version()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// Parses `18.16.1` or `24.8.4.13`.
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(ServerVersion { major, minor })
    }

    /// Returns true if and only if the server takes LZ4-framed HTTP bodies and
    /// `RowBinaryWithNamesAndTypes` (ClickHouse 22.x and later; 18.16 takes neither).
    pub fn is_modern(self) -> bool {
        self.major >= 22
    }
}

impl Store {
    /// Connects and detects the server version. Does not require the database to exist.
    pub async fn connect(config: &StoreConfig) -> Result<Store, StoreError> {
        if !is_plain_identifier(&config.database) {
            return Err(StoreError::BadDatabaseName(config.database.clone()));
        }
        if url_has_password(&config.url) {
            return Err(StoreError::PasswordInUrl);
        }
        let request_timeout = Duration::from_millis(config.request_timeout_ms);
        let mut base = super::tls::client(config.ca_file.as_deref())?
            .with_url(&config.url)
            .with_compression(clickhouse::Compression::None)
            .with_validation(false);
        match (&config.user, &config.password) {
            (Some(user), _) => base = base.with_user(user),
            // A password alone would go out with an empty user name, which 18.16 calls
            // "Unknown user"; the user the server assumes without one is `default`.
            (None, Some(_)) => base = base.with_user("default"),
            (None, None) => {}
        }
        if let Some(password) = &config.password {
            base = base.with_password(password.expose());
        }
        let probe = Store {
            client: base.clone(),
            url: config.url.clone(),
            database: config.database.clone(),
            version: ServerVersion { major: 0, minor: 0 },
            request_timeout,
        };
        let version_text: String = probe.fetch_one("SELECT version()").await?;
        let version = ServerVersion::parse(&version_text).ok_or_else(|| StoreError::Query {
            statement: "SELECT version()".into(),
            detail: format!("unparseable version {version_text:?}"),
        })?;
        let client = if version.is_modern() {
            base.with_compression(clickhouse::Compression::Lz4)
                .with_validation(true)
                // Decimal(18,2) columns print `150000.00` as 18.16 does, not `150000`
                // (the default since 21.x; 18.16 knows no such setting, so only here).
                .with_setting("output_format_decimal_trailing_zeros", "1")
        } else {
            base
        };
        tracing::info!(message = "Connected to ClickHouse.", url = %config.url, version = %version_text, database = %config.database);
        Ok(Store {
            client,
            version,
            ..probe
        })
    }

    /// The database our objects live in.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The server's version.
    pub fn version(&self) -> ServerVersion {
        self.version
    }

    /// The underlying client, for typed fetches and inserts.
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    /// How long one request may take.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Replaces `{db}` in a statement with our database name.
    pub fn sql(&self, template: &str) -> String {
        template.replace("{db}", &self.database)
    }

    /// Runs a statement that returns nothing.
    pub async fn execute(&self, statement: &str) -> Result<(), StoreError> {
        let query = self.client.query(statement).execute();
        self.bounded(statement, query).await
    }

    /// Runs a query returning exactly one row.
    pub async fn fetch_one<T>(&self, statement: &str) -> Result<T, StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let query = self.client.query(statement).fetch_one::<T>();
        self.bounded(statement, query).await
    }

    /// Runs a query and collects every row.
    pub async fn fetch_all<T>(&self, statement: &str) -> Result<Vec<T>, StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let query = self.client.query(statement).fetch_all::<T>();
        self.bounded(statement, query).await
    }

    /// Awaits a request with the configured timeout and maps its error.
    pub async fn bounded<T>(
        &self,
        statement: &str,
        request: impl std::future::Future<Output = clickhouse::error::Result<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(result) => result.map_err(|error| self.classify(statement, error)),
            Err(_) => Err(StoreError::Timeout {
                statement: statement_head(statement),
                timeout_ms: self.request_timeout.as_millis() as u64,
            }),
        }
    }

    /// Maps a client error to a [`StoreError`] that says what to do.
    pub fn classify(&self, statement: &str, error: clickhouse::error::Error) -> StoreError {
        use clickhouse::error::Error;
        match error {
            Error::Network(source) => {
                // hyper's message is only "client error (Connect)"; the cause is below it.
                let detail = error_chain(source.as_ref());
                if super::tls::is_tls_failure(&detail) {
                    StoreError::Tls {
                        url: self.url.clone(),
                        detail,
                    }
                } else {
                    StoreError::Unreachable {
                        url: self.url.clone(),
                        detail,
                    }
                }
            }
            Error::TimedOut => StoreError::Timeout {
                statement: statement_head(statement),
                timeout_ms: self.request_timeout.as_millis() as u64,
            },
            other => {
                let detail = other.to_string();
                if detail.contains("Code: 81") || detail.contains("Code: 60") {
                    // UNKNOWN_DATABASE / UNKNOWN_TABLE
                    StoreError::NotMigrated {
                        database: self.database.clone(),
                        detail: first_line(&detail),
                    }
                } else {
                    StoreError::Query {
                        statement: statement_head(statement),
                        detail: first_line(&detail),
                    }
                }
            }
        }
    }
}

/// An error and its sources, `: `-separated, each once (wrappers often repeat their cause).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}

/// Returns true if and only if `url` has a password in its authority (`user:pass@host`).
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Returns true if and only if `name` is safe to splice into SQL as a database name.
pub fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

/// The first 120 characters of a statement, on one line, for error messages.
fn statement_head(statement: &str) -> String {
    let flat: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 120 {
        format!("{}…", flat.chars().take(120).collect::<String>())
    } else {
        flat
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_gate_modern_features() {
        assert_eq!(
            ServerVersion::parse("18.16.1"),
            Some(ServerVersion {
                major: 18,
                minor: 16
            })
        );
        assert!(!ServerVersion::parse("18.16.1").unwrap().is_modern());
        assert!(ServerVersion::parse("24.8.4.13").unwrap().is_modern());
        assert_eq!(ServerVersion::parse("garbage"), None);
    }

    #[test]
    fn server_errors_split_into_retry_and_fail() {
        let old = "Code: 252, e.displayText() = DB::Exception: Too many parts";
        let new = "Code: 241. DB::Exception: Memory limit (total) exceeded";
        let bad = "Code: 27, e.displayText() = DB::Exception: Cannot parse input";
        assert!(is_transient_server_error(old));
        assert!(is_transient_server_error(new));
        assert!(!is_transient_server_error(bad));
        assert_eq!(server_error_code(bad), Some(27));
    }

    #[test]
    fn urls_with_a_password_are_told() {
        assert!(url_has_password(
            "https://ingester:hunter2@ch.internal:8443"
        ));
        assert!(url_has_password("http://u:@127.0.0.1:8123/?database=x"));
        assert!(!url_has_password("https://ingester@ch.internal:8443"));
        assert!(!url_has_password("http://127.0.0.1:8123/?q=a:b@c"));
        assert!(!url_has_password("http://[::1]:8123"));
    }

    #[test]
    fn a_password_in_the_url_is_refused_before_any_request() {
        let config = StoreConfig {
            url: "http://default:hunter2@127.0.0.1:1".into(),
            database: "subsidy".into(),
            user: None,
            password: None,
            ca_file: None,
            request_timeout_ms: 1_000,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime
            .block_on(Store::connect(&config))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("carries a password"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn only_plain_database_names_are_accepted() {
        assert!(is_plain_identifier("subsidy"));
        assert!(is_plain_identifier("_scratch_01"));
        assert!(!is_plain_identifier("1db"));
        assert!(!is_plain_identifier("a;DROP"));
        assert!(!is_plain_identifier(""));
    }
}
