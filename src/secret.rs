//! Secrets — the ClickHouse password, the Kafka SASL password — and where they may come from.
//!
//! A secret is read from an environment variable or from a file, never from a command-line
//! argument: arguments are visible to every user of the machine in `ps` and
//! `/proc/PID/cmdline`, while the environment and a file with mode 0600 are not. Once read,
//! it lives in a [`Secret`], whose `Debug` and `Display` print `<redacted>`, so a config
//! struct that derives `Debug` can be logged or put in an error without leaking it.

use std::path::{Path, PathBuf};

/// A secret value; `Debug` and `Display` show `<redacted>`, [`Secret::expose`] the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that hands it to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What a redacted value prints as.
pub const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A secret that could not be read. No variant carries the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both the environment variable and the file flag are set.
    #[error("both {env} and {flag} are set; give the {what} once, in one of them")]
    Twice {
        what: &'static str,
        env: &'static str,
        flag: &'static str,
    },
    /// The file could not be read.
    #[error("cannot read the {what} file {path} ({source}); give a readable file with the value on its first line")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is empty (or holds only a line end).
    #[error(
        "the {what} file {path} is empty; write the value into it, or leave {flag} unset for none"
    )]
    Empty {
        what: &'static str,
        path: PathBuf,
        flag: &'static str,
    },
    /// The secret was given as a command-line argument.
    #[error("{flag} is not accepted: a value on the command line shows in `ps` to every user of the machine (change that password if it was real); set {env} or give {file_flag} FILE instead")]
    OnCommandLine {
        flag: &'static str,
        env: &'static str,
        file_flag: &'static str,
    },
}

/// Where one secret may come from: an environment variable or a file flag.
#[derive(Debug, Clone, Copy)]
pub struct SecretSource {
    /// What it is, for messages: "ClickHouse password".
    pub what: &'static str,
    /// The environment variable holding the value itself.
    pub env: &'static str,
    /// The flag naming a file that holds the value.
    pub file_flag: &'static str,
}

impl SecretSource {
    /// The secret from `env_value` (the environment variable's value) or the file at
    /// `file`; `None` when neither is set. An empty variable counts as unset (compose files
    /// often pass `VAR=`). A file's one trailing line end (`\n` or `\r\n`) is not part of
    /// the value: `echo secret > file` is the usual way to write one.
    ///
    /// # Errors
    ///
    /// Both set, the file unreadable or empty.
    pub fn resolve(
        &self,
        env_value: Option<String>,
        file: Option<&Path>,
    ) -> Result<Option<Secret>, SecretError> {
        let env_value = env_value.filter(|v| !v.is_empty());
        match (env_value, file) {
            (Some(_), Some(_)) => Err(SecretError::Twice {
                what: self.what,
                env: self.env,
                flag: self.file_flag,
            }),
            (Some(value), None) => Ok(Some(Secret(value))),
            (None, Some(path)) => self.read_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// [`SecretSource::resolve`] with the variable read from this process's environment.
    ///
    /// # Errors
    ///
    /// As [`SecretSource::resolve`].
    pub fn from_env_or_file(&self, file: Option<&Path>) -> Result<Option<Secret>, SecretError> {
        self.resolve(std::env::var(self.env).ok(), file)
    }

    fn read_file(&self, path: &Path) -> Result<Secret, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            what: self.what,
            path: path.to_path_buf(),
            source,
        })?;
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        if value.is_empty() {
            return Err(SecretError::Empty {
                what: self.what,
                path: path.to_path_buf(),
                flag: self.file_flag,
            });
        }
        Ok(Secret(value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: SecretSource = SecretSource {
        what: "test password",
        env: "TEST_PASSWORD",
        file_flag: "--test-password-file",
    };

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
        assert_eq!(secret.expose(), "hunter2");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Config {
            password: Option<Secret>,
        }
        let config = Config {
            password: Some(secret),
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn env_or_file_but_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "from file\n").unwrap();
        assert_eq!(SOURCE.resolve(None, None).unwrap(), None);
        assert_eq!(SOURCE.resolve(Some(String::new()), None).unwrap(), None);
        assert_eq!(
            SOURCE.resolve(Some("env".into()), None).unwrap(),
            Some(Secret::new("env"))
        );
        assert_eq!(
            SOURCE.resolve(None, Some(&file)).unwrap(),
            Some(Secret::new("from file"))
        );
        let twice = SOURCE.resolve(Some("env".into()), Some(&file)).unwrap_err();
        assert!(twice
            .to_string()
            .contains("both TEST_PASSWORD and --test-password-file"));
        assert!(!twice.to_string().contains("env\""));
    }

    #[test]
    fn a_file_keeps_all_but_its_last_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, " a;b=c \r\n").unwrap();
        assert_eq!(
            SOURCE.resolve(None, Some(&file)).unwrap(),
            Some(Secret::new(" a;b=c "))
        );
        std::fs::write(&file, "\n").unwrap();
        let empty = SOURCE.resolve(None, Some(&file)).unwrap_err();
        assert!(empty.to_string().contains("is empty"), "{empty}");
        let missing = SOURCE
            .resolve(None, Some(&dir.path().join("nope")))
            .unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("cannot read the test password file"),
            "{missing}"
        );
    }
}
