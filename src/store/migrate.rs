//! `migrate`: creates and upgrades the database objects, idempotently.
//!
//! Migrations are the numbered files in `schemas/clickhouse/`, compiled into the binary.
//! Each is applied once and recorded in `schema_migrations` with a checksum; every statement
//! in them is itself idempotent (`IF NOT EXISTS`), so a migration interrupted half-way is
//! simply applied again. A second `migrate` changes nothing.

use super::client::{Store, StoreError};

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; migrations apply in ascending order.
    pub version: u32,
    /// File name, for logs and `schema_migrations.name`.
    pub name: &'static str,
    /// The SQL, statements separated by `;`, `{db}` standing for the database.
    pub sql: &'static str,
}

/// Every migration this build knows, in order.
pub const MIGRATIONS: [Migration; 2] = [
    Migration {
        version: 1,
        name: "0001_tables.sql",
        sql: include_str!("../../schemas/clickhouse/0001_tables.sql"),
    },
    Migration {
        version: 2,
        name: "0002_views.sql",
        sql: include_str!("../../schemas/clickhouse/0002_views.sql"),
    },
];

/// What one `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Names of migrations applied now.
    pub applied: Vec<String>,
    /// Names of migrations found already applied.
    pub already_applied: Vec<String>,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct AppliedRow {
    version: u32,
    checksum: String,
}

/// Splits a migration into statements: drops `--` comment lines, splits on `;`.
/// (Our SQL keeps `;` out of comments and string literals.)
pub fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A stable checksum of a migration's text (hex of xxh3-64), to notice edited migrations.
pub fn checksum(sql: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(sql.as_bytes()))
}

/// Applies every migration not yet recorded. Safe to run any number of times.
pub async fn migrate(store: &Store) -> Result<MigrationReport, StoreError> {
    store
        .execute(&store.sql("CREATE DATABASE IF NOT EXISTS {db}"))
        .await?;
    store
        .execute(&store.sql(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations \
             (version UInt32, name String, checksum String, applied_at DateTime) \
             ENGINE = MergeTree ORDER BY version",
        ))
        .await?;
    let applied: Vec<AppliedRow> = store
        .fetch_all(
            &store
                .sql("SELECT version, any(checksum) FROM {db}.schema_migrations GROUP BY version"),
        )
        .await?;
    let mut report = MigrationReport {
        applied: Vec::new(),
        already_applied: Vec::new(),
    };
    for migration in MIGRATIONS {
        if let Some(row) = applied.iter().find(|r| r.version == migration.version) {
            if row.checksum != checksum(migration.sql) {
                tracing::warn!(
                    message = "Applied migration differs from this build's copy; not re-applied. Add a new migration instead of editing an applied one.",
                    migration = migration.name
                );
            }
            report.already_applied.push(migration.name.to_string());
            continue;
        }
        for statement in statements(migration.sql) {
            store.execute(&store.sql(&statement)).await?;
        }
        store
            .execute(&store.sql(&format!(
                "INSERT INTO {{db}}.schema_migrations VALUES ({}, '{}', '{}', now())",
                migration.version,
                migration.name,
                checksum(migration.sql)
            )))
            .await?;
        tracing::info!(message = "Applied migration.", migration = migration.name);
        report.applied.push(migration.name.to_string());
    }
    Ok(report)
}

/// Fails with [`StoreError::NotMigrated`] unless every migration of this build is applied.
pub async fn ensure_migrated(store: &Store) -> Result<(), StoreError> {
    let statement = store.sql("SELECT max(version) FROM {db}.schema_migrations");
    let latest: u32 = store.fetch_one(&statement).await?;
    let wanted = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    if latest < wanted {
        return Err(StoreError::NotMigrated {
            database: store.database().to_string(),
            detail: format!("schema version {latest}, this build needs {wanted}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_drop_comments_and_split_on_semicolons() {
        let sql = "-- a; comment\nCREATE TABLE a (x UInt8);\n\n-- b\nCREATE VIEW b AS SELECT 1;\n";
        assert_eq!(
            statements(sql),
            vec!["CREATE TABLE a (x UInt8)", "CREATE VIEW b AS SELECT 1"]
        );
    }

    #[test]
    fn every_migration_statement_is_idempotent() {
        for migration in MIGRATIONS {
            for statement in statements(migration.sql) {
                assert!(
                    statement.contains("IF NOT EXISTS"),
                    "{}: statement is not idempotent: {statement}",
                    migration.name
                );
            }
        }
    }

    #[test]
    fn funding_view_uses_the_policy_list_of_75_percent_districts() {
        // The SQL cannot import Rust constants; this keeps the two lists equal.
        let views = MIGRATIONS[1].sql;
        let quoted: Vec<String> = crate::policy::DISTRICTS_PAYING_75_PERCENT
            .iter()
            .map(|d| format!("'{d}'"))
            .collect();
        assert!(
            views.contains(&format!("IN ({})", quoted.join(", "))),
            "0002_views.sql must list exactly {quoted:?}"
        );
        assert!(views.contains("program = 'import_parcel', 20000000"));
        assert!(views.contains("program = 'rural_delivery', 3000000"));
    }
}
