//! The HTTP(S) client under the ClickHouse client: plain `http://` and `https://` URLs,
//! with the system's trust store plus an optional custom CA (`--clickhouse-ca-file`).
//!
//! TLS is OpenSSL through `native-tls`, the library librdkafka already links for Kafka's
//! SSL and SASL_SSL: one TLS stack in the binary, Debian's patched libssl, the system CA
//! bundle for both. (rustls with ring would add a second stack and ~1–2 min of build on two
//! cores for the same result; aws-lc-rs, rustls' default, needs cmake and more.) The
//! connector is built here rather than by the clickhouse crate's `native-tls` default only
//! to add the custom CA; the pool and keep-alive settings are the crate's.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// TCP keep-alive of ClickHouse connections (the clickhouse crate's default).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Idle pooled connections are dropped after this, below the server's 3 s keep-alive
/// timeout, so a request never goes out on a connection the server is closing (the crate's
/// default).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// A custom CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// Unreadable.
    #[error("cannot read the ClickHouse CA file {path} ({source}); give the PEM file of the CA that signed the server's certificate")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not PEM certificates.
    #[error("the ClickHouse CA file {path} holds no PEM certificate ({detail}); give the CA's certificate(s), `-----BEGIN CERTIFICATE-----` blocks")]
    Parse { path: PathBuf, detail: String },
    /// OpenSSL could not make a TLS context.
    #[error("cannot set up TLS for ClickHouse: {0}")]
    Tls(String),
}

/// A ClickHouse client whose connections speak `http://` or `https://` as the URL says,
/// trusting the system's CAs and those in `ca_file`.
///
/// # Errors
///
/// The CA file is unreadable or holds no certificate.
pub fn client(ca_file: Option<&Path>) -> Result<clickhouse::Client, CaFileError> {
    let mut tls = native_tls::TlsConnector::builder();
    if let Some(path) = ca_file {
        for certificate in read_certificates(path)? {
            tls.add_root_certificate(certificate);
        }
    }
    let tls = tls.build().map_err(|e| CaFileError::Tls(e.to_string()))?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    // The TLS connector takes `https://`; the plain one would refuse it.
    http.enforce_http(false);
    let connector = hyper_tls::HttpsConnector::from((http, tls.into()));
    let http_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
    Ok(clickhouse::Client::with_http_client(http_client))
}

fn read_certificates(path: &Path) -> Result<Vec<native_tls::Certificate>, CaFileError> {
    let pem = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_error = |detail: String| CaFileError::Parse {
        path: path.to_path_buf(),
        detail,
    };
    let certificates =
        native_tls::Certificate::stack_from_pem(&pem).map_err(|e| parse_error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(parse_error("no certificate found".into()));
    }
    Ok(certificates)
}

/// Returns true if and only if a connection error's text says the TLS handshake failed
/// (OpenSSL's "SSL routines", a certificate not verified), as opposed to a server that is
/// down: the first is fixed by configuration, not by waiting.
pub fn is_tls_failure(detail: &str) -> bool {
    detail.contains("SSL routines") || detail.contains("certificate verify failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = client(Some(&dir.path().join("nope.pem"))).unwrap_err();
        assert!(missing
            .to_string()
            .contains("cannot read the ClickHouse CA file"));
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let error = client(Some(&garbage)).unwrap_err().to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
        assert!(client(None).is_ok());
    }

    #[test]
    fn handshake_failures_are_told_apart_from_outages() {
        assert!(is_tls_failure("error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed"));
        assert!(!is_tls_failure(
            "tcp connect error: Connection refused (os error 111)"
        ));
    }
}
