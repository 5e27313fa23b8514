//! The operator's librdkafka properties (`--kafka-property KEY=VALUE`,
//! `SUBSIDY_KAFKA_PROPERTIES`), checked once and applied to every Kafka client after the
//! service's own settings, so the operator wins — except for the keys in [`RESERVED`],
//! which the service's correctness rests on, and the secrets in [`SECRETS`], which must not
//! be on the command line.
//!
//! The environment form is like Vector's `librdkafka_options`, flattened into one
//! variable: pairs separated by `;` (`security.protocol=SASL_SSL;sasl.mechanism=SCRAM-SHA-512`).
//! `;` is the separator because no non-secret librdkafka value contains one (lists use `,`
//! or `:`, `sasl.oauthbearer.config` spaces), while `,` and `:` do. A password may contain
//! anything, so `sasl.password` is not taken there: it comes from
//! `SUBSIDY_KAFKA_SASL_PASSWORD` or `--kafka-sasl-password-file`.

use crate::secret::{Secret, SecretSource};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

/// The environment variable of the `;`-separated form.
pub const PROPERTIES_ENV: &str = "SUBSIDY_KAFKA_PROPERTIES";

/// Where the SASL password comes from.
pub const SASL_PASSWORD: SecretSource = SecretSource {
    what: "Kafka SASL password",
    env: "SUBSIDY_KAFKA_SASL_PASSWORD",
    file_flag: "--kafka-sasl-password-file",
};

/// Separates the pairs of [`PROPERTIES_ENV`].
pub const SEPARATOR: char = ';';

/// Keys an operator may not set, each with why. They are set (or relied on at their
/// librdkafka default) by the service, and another value breaks what it guarantees, or
/// they have a flag of their own that is checked (aliases included: librdkafka takes both).
pub const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set the brokers with --brokers (SUBSIDY_KAFKA_BROKERS)"),
    ("metadata.broker.list", "set the brokers with --brokers (SUBSIDY_KAFKA_BROKERS)"),
    ("group.id", "the ingesters' group is --group-id (SUBSIDY_GROUP_ID); the probe, replay and tool clients use groups of their own that must never be shared with the ingesters"),
    ("enable.auto.commit", "offsets live in ClickHouse with the outcome rows, and the advisory commit is made only once a batch is durable; an automatic commit would mark messages consumed before they are stored"),
    ("auto.commit.enable", "offsets live in ClickHouse with the outcome rows, and the advisory commit is made only once a batch is durable; an automatic commit would mark messages consumed before they are stored"),
    ("enable.auto.offset.store", "offsets are stored only once a batch is durable in ClickHouse"),
    ("auto.offset.reset", "a partition with nothing stored yet must be read from its start (earliest); another value skips messages, and their subsidies, silently"),
    ("isolation.level", "the librdkafka default read_committed is relied on: read_uncommitted would pay for events of transactions their producer aborted"),
    ("enable.partition.eof", "conservation and replay learn where a partition ends from it, the ingest consumer from the watermarks"),
    ("acks", "dead letters and routed units count as delivered only once every in-sync replica has them (acks=all)"),
    ("request.required.acks", "dead letters and routed units count as delivered only once every in-sync replica has them (acks=all)"),
    ("partition.assignment.strategy", "the consumer assigns eagerly and seeks each assigned partition from ClickHouse; cooperative assignment would hand it partitions it never seeks"),
    ("group.protocol", "the consumer assigns eagerly and seeks each assigned partition from ClickHouse; the consumer protocol assigns incrementally"),
    ("session.timeout.ms", "use --session-timeout-ms (SUBSIDY_SESSION_TIMEOUT_MS), checked against the heartbeat"),
    ("heartbeat.interval.ms", "use --heartbeat-interval-ms (SUBSIDY_HEARTBEAT_INTERVAL_MS), checked against the session"),
];

/// Secret keys: refused on the command line (it shows in `ps`); redacted wherever a
/// configuration is printed. All but `sasl.password` may be given in
/// [`PROPERTIES_ENV`]; `sasl.password` comes only from [`SASL_PASSWORD`].
pub const SECRETS: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
];

/// Returns true if and only if `key`'s value is a secret ([`SECRETS`]).
pub fn is_secret(key: &str) -> bool {
    SECRETS.contains(&key)
}

/// Where a property came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--kafka-property`.
    Flag,
    /// [`PROPERTIES_ENV`].
    Env,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag => f.write_str("--kafka-property"),
            Origin::Env => f.write_str(PROPERTIES_ENV),
        }
    }
}

/// A property refused, with what to do. No message carries a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum PropertyError {
    /// Not `key=value`.
    #[error("{origin}: `{entry}` is not KEY=VALUE (a librdkafka property such as security.protocol=SASL_SSL{hint})")]
    Malformed {
        origin: Origin,
        entry: String,
        hint: &'static str,
    },
    /// A key of [`RESERVED`].
    #[error("{origin}: `{key}` cannot be overridden: {reason}")]
    Reserved {
        origin: Origin,
        key: String,
        reason: &'static str,
    },
    /// A secret on the command line, or `sasl.password` in the environment list.
    #[error("{origin}: `{key}` is a secret and is not accepted here ({why}); {instead}")]
    Secret {
        origin: Origin,
        key: String,
        why: &'static str,
        instead: &'static str,
    },
    /// librdkafka itself refused the key or value.
    #[error("{origin}: librdkafka refused `{key}`: {detail}; see librdkafka's CONFIGURATION.md for its properties and values")]
    Refused {
        origin: Origin,
        key: String,
        detail: String,
    },
    /// The SASL password could not be read.
    #[error(transparent)]
    Password(#[from] crate::secret::SecretError),
}

/// The operator's properties, in the order they apply (the environment list, then the
/// flags, then `sasl.password`); later ones win. `Debug` redacts secret values.
#[derive(Clone, Default)]
pub struct KafkaProperties {
    pairs: Vec<(String, String)>,
    sasl_password: Option<Secret>,
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.pairs {
            if is_secret(key) {
                map.entry(key, &crate::secret::REDACTED);
            } else {
                map.entry(key, value);
            }
        }
        if let Some(password) = &self.sasl_password {
            map.entry(&"sasl.password", password);
        }
        map.finish()
    }
}

impl KafkaProperties {
    /// Checks and collects the properties: `env_list` (the value of [`PROPERTIES_ENV`]),
    /// then `flags` (each `--kafka-property`), then the SASL password. Every key and value
    /// is offered to librdkafka once here, so an unknown key or a bad value fails at start
    /// with librdkafka's own message, before any client connects.
    ///
    /// # Errors
    ///
    /// The first malformed pair, reserved key, misplaced secret or key librdkafka refuses.
    pub fn resolve(
        env_list: Option<&str>,
        flags: &[String],
        sasl_password: Option<Secret>,
    ) -> Result<KafkaProperties, PropertyError> {
        let mut pairs = Vec::new();
        let env_entries = env_list
            .unwrap_or_default()
            .split(SEPARATOR)
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for entry in env_entries {
            pairs.push((Origin::Env, parse_pair(Origin::Env, entry)?));
        }
        for entry in flags {
            pairs.push((Origin::Flag, parse_pair(Origin::Flag, entry.trim())?));
        }
        for (origin, (key, value)) in &pairs {
            check_with_librdkafka(*origin, key, value)?;
        }
        Ok(KafkaProperties {
            pairs: pairs.into_iter().map(|(_, pair)| pair).collect(),
            sasl_password,
        })
    }

    /// Sets every property on `config`, after whatever it holds, so the operator's win.
    pub fn apply<'c>(&self, config: &'c mut ClientConfig) -> &'c mut ClientConfig {
        for (key, value) in &self.pairs {
            config.set(key, value);
        }
        if let Some(password) = &self.sasl_password {
            config.set("sasl.password", password.expose());
        }
        config
    }

    /// The value the operator gave `key`, if any (the last one wins); `sasl.password` is
    /// not returned.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Returns true if and only if a SASL password was given.
    pub fn has_sasl_password(&self) -> bool {
        self.sasl_password.is_some()
    }
}

/// Splits `key=value` at its first `=` and refuses reserved keys and misplaced secrets.
fn parse_pair(origin: Origin, entry: &str) -> Result<(String, String), PropertyError> {
    let Some((key, value)) = entry.split_once('=') else {
        return Err(malformed(origin, entry));
    };
    let key = key.trim();
    let key_is_plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !key_is_plain {
        return Err(malformed(origin, entry));
    }
    if let Some((_, reason)) = RESERVED.iter().find(|(k, _)| *k == key) {
        return Err(PropertyError::Reserved {
            origin,
            key: key.into(),
            reason,
        });
    }
    if key == "sasl.password" {
        return Err(PropertyError::Secret {
            origin,
            key: key.into(),
            why: match origin {
                Origin::Flag => "the command line shows in `ps` to every user of the machine",
                Origin::Env => "a password may contain the separator `;`",
            },
            instead: "set SUBSIDY_KAFKA_SASL_PASSWORD or give --kafka-sasl-password-file FILE",
        });
    }
    if origin == Origin::Flag && is_secret(key) {
        return Err(PropertyError::Secret {
            origin,
            key: key.into(),
            why: "the command line shows in `ps` to every user of the machine",
            instead: "put it in SUBSIDY_KAFKA_PROPERTIES (the environment), e.g. SUBSIDY_KAFKA_PROPERTIES='ssl.key.location=/run/secrets/client.key;ssl.key.password=…'",
        });
    }
    Ok((key.to_string(), value.to_string()))
}

/// A malformed entry, named — unless it may hold a secret (it mentions a secret key), then
/// only its start.
fn malformed(origin: Origin, entry: &str) -> PropertyError {
    let shown = match SECRETS.iter().find(|s| entry.contains(*s)) {
        Some(secret) => format!("{secret}… (the rest hidden: it may be a secret)"),
        None => entry.to_string(),
    };
    PropertyError::Malformed {
        origin,
        entry: shown,
        hint: if entry.contains(':') && !entry.contains('=') {
            ", with `=` between key and value"
        } else {
            ""
        },
    }
}

/// Offers one property to librdkafka on an empty configuration: unknown keys and values
/// it cannot parse fail here with its own message. A secret's value never reaches the
/// message.
fn check_with_librdkafka(origin: Origin, key: &str, value: &str) -> Result<(), PropertyError> {
    let mut config = ClientConfig::new();
    config.set(key, value);
    match config.create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(_, detail, _, _)) => Err(PropertyError::Refused {
            origin,
            key: key.into(),
            detail: if is_secret(key) && !value.is_empty() {
                detail.replace(value, crate::secret::REDACTED)
            } else {
                detail
            },
        }),
        Err(other) => Err(PropertyError::Refused {
            origin,
            key: key.into(),
            detail: if is_secret(key) {
                "invalid value".into()
            } else {
                other.to_string()
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn env_pairs_then_flags_apply_in_order() {
        let properties = KafkaProperties::resolve(
            Some(" security.protocol=SASL_SSL ;sasl.mechanism=SCRAM-SHA-512;;\n client.id=a=b;"),
            &flags(&["client.id=from-flag", "sasl.username=ingester"]),
            Some(Secret::new("hunter2")),
        )
        .unwrap();
        assert_eq!(properties.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(properties.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        // The flag comes after the environment, so it wins.
        assert_eq!(properties.get("client.id"), Some("from-flag"));
        let mut config = ClientConfig::new();
        config.set("client.id", "ours").set("linger.ms", "5");
        properties.apply(&mut config);
        assert_eq!(config.get("client.id"), Some("from-flag"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert!(!format!("{properties:?}").contains("hunter2"));
    }

    #[test]
    fn malformed_pairs_are_named() {
        for entry in ["client.id", "=x", "client id=x", "client.id:x"] {
            let error = KafkaProperties::resolve(None, &flags(&[entry]), None).unwrap_err();
            assert!(matches!(error, PropertyError::Malformed { .. }), "{error}");
            assert!(error.to_string().contains(&format!("`{entry}`")), "{error}");
        }
        let error = KafkaProperties::resolve(Some("client.id=a;oops"), &[], None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "SUBSIDY_KAFKA_PROPERTIES: `oops` is not KEY=VALUE (a librdkafka property such as security.protocol=SASL_SSL)"
        );
        let hidden = KafkaProperties::resolve(None, &flags(&["sasl.password:hunter2"]), None)
            .unwrap_err()
            .to_string();
        assert!(!hidden.contains("hunter2"), "{hidden}");
    }

    #[test]
    fn reserved_keys_are_refused_with_the_reason() {
        for (key, _) in RESERVED {
            let error =
                KafkaProperties::resolve(None, &flags(&[&format!("{key}=x")]), None).unwrap_err();
            assert!(matches!(error, PropertyError::Reserved { .. }), "{error}");
            let error = KafkaProperties::resolve(Some(&format!("{key}=x")), &[], None).unwrap_err();
            assert!(matches!(error, PropertyError::Reserved { .. }), "{error}");
        }
        let error =
            KafkaProperties::resolve(None, &flags(&["enable.auto.commit=true"]), None).unwrap_err();
        assert!(
            error.to_string().contains("offsets live in ClickHouse"),
            "{error}"
        );
    }

    #[test]
    fn secrets_are_refused_on_the_command_line_and_never_echoed() {
        for key in SECRETS {
            let error = KafkaProperties::resolve(None, &flags(&[&format!("{key}=hunter2")]), None)
                .unwrap_err()
                .to_string();
            assert!(error.contains("is a secret"), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        let error = KafkaProperties::resolve(Some("sasl.password=hunter2"), &[], None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("SUBSIDY_KAFKA_SASL_PASSWORD"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        // Other secrets may come from the environment, and are redacted in Debug.
        let properties =
            KafkaProperties::resolve(Some("ssl.key.password=hunter2"), &[], None).unwrap();
        assert_eq!(properties.get("ssl.key.password"), Some("hunter2"));
        assert!(!format!("{properties:?}").contains("hunter2"));
    }

    #[test]
    fn sasl_ssl_clients_are_created_and_their_config_prints_no_password() {
        // librdkafka checks at client creation that it was built with what the
        // properties need (OpenSSL for SSL and SCRAM); no broker is contacted.
        let properties = KafkaProperties::resolve(
            Some("security.protocol=SASL_SSL;sasl.mechanism=SCRAM-SHA-512;sasl.username=ingester"),
            &[],
            Some(Secret::new("hunter2")),
        )
        .unwrap();
        let config =
            crate::kafka::KafkaConfig::for_tools("127.0.0.1:1").with_properties(properties);
        assert!(config.producer().is_ok());
        assert!(config.probe_consumer().is_ok());
        let printed = format!("{config:?}");
        assert!(printed.contains("SCRAM-SHA-512"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn librdkafka_refuses_unknown_keys_and_bad_values_itself() {
        let error = KafkaProperties::resolve(None, &flags(&["no.such.property=1"]), None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("No such configuration property: \"no.such.property\""),
            "{error}"
        );
        let error = KafkaProperties::resolve(None, &flags(&["statistics.interval.ms=often"]), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("statistics.interval.ms"), "{error}");
        assert!(
            KafkaProperties::resolve(None, &flags(&["security.protocol=SASL_SSL"]), None).is_ok(),
            "librdkafka is built with OpenSSL (the rdkafka `ssl` feature)"
        );
    }
}
