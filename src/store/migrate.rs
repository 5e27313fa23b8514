//! `migrate`: creates and upgrades the database objects, idempotently.
//!
//! Migrations are the numbered files in `schemas/clickhouse/`, compiled into the binary, of
//! two kinds (the split Flyway calls versioned and repeatable migrations):
//!
//! - **Tables** ([`Kind::Versioned`]) hold data. Each file is applied once and recorded in
//!   `schema_migrations` with a checksum; every statement in it is itself idempotent
//!   (`IF NOT EXISTS`), so a migration interrupted half-way is simply applied again. An
//!   applied file is never edited: a change is a new file.
//! - **Views** ([`Kind::Repeatable`]) hold no data, only definitions. The file is applied
//!   again whenever its checksum differs from the one recorded last: every view it defines
//!   is dropped (in reverse order, dependants first) and created anew. So a build that
//!   changes a view upgrades existing databases with the same `migrate`, and there is one
//!   copy of each view's SQL.
//!
//! A second `migrate` with the same build changes nothing.

use super::client::{Store, StoreError};
use crate::edition::Editions;

/// How a migration is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Applied once; its statements are all `CREATE … IF NOT EXISTS`.
    Versioned,
    /// Re-applied whenever its text changes; its statements are all
    /// `CREATE VIEW IF NOT EXISTS {db}.name AS …`.
    Repeatable,
}

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; migrations apply in ascending order.
    pub version: u32,
    /// File name, for logs and `schema_migrations.name`.
    pub name: &'static str,
    /// Whether it is applied once or whenever it changes.
    pub kind: Kind,
    /// The file: statements separated by `;`, `{db}` standing for the database and
    /// `{policy.NAME}` for the policy's numbers.
    pub template: &'static str,
}

/// Every migration this build knows, in the order they apply: the versioned ones by
/// version, then the repeatable ones (Flyway's rule: views over the tables come last).
pub const MIGRATIONS: [Migration; 4] = [
    Migration {
        version: 1,
        name: "0001_tables.sql",
        kind: Kind::Versioned,
        template: include_str!("../../schemas/clickhouse/0001_tables.sql"),
    },
    Migration {
        version: 3,
        name: "0003_ledger.sql",
        kind: Kind::Versioned,
        template: include_str!("../../schemas/clickhouse/0003_ledger.sql"),
    },
    Migration {
        version: 4,
        name: "0004_actions.sql",
        kind: Kind::Versioned,
        template: include_str!("../../schemas/clickhouse/0004_actions.sql"),
    },
    Migration {
        version: 2,
        name: "0002_views.sql",
        kind: Kind::Repeatable,
        template: include_str!("../../schemas/clickhouse/0002_views.sql"),
    },
];

/// What one `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Names of migrations applied now (repeatable ones included when they changed).
    pub applied: Vec<String>,
    /// Names of migrations found already applied, unchanged.
    pub already_applied: Vec<String>,
}

/// The last recorded application of one migration version.
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

/// The object a `CREATE VIEW IF NOT EXISTS {db}.name AS …` statement defines (`{db}.name`),
/// or `None` for any other statement.
pub fn view_name(statement: &str) -> Option<&str> {
    let rest = statement.strip_prefix("CREATE VIEW IF NOT EXISTS ")?;
    let name = rest.split_whitespace().next()?;
    name.starts_with("{db}.").then_some(name)
}

impl Migration {
    /// The SQL to apply: the file with the policy's numbers in place of its
    /// `{policy.NAME}` placeholders ([`Editions::sql_placeholders`]); `{db}` stays.
    pub fn sql(&self, editions: &Editions) -> String {
        editions
            .sql_placeholders()
            .iter()
            .fold(self.template.to_string(), |sql, (name, value)| {
                sql.replace(name, value)
            })
    }
}

/// A stable checksum of a migration's text (hex of xxh3-64), to notice edited migrations.
pub fn checksum(sql: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(sql.as_bytes()))
}

/// Applies every migration not yet recorded, and every repeatable one whose text changed.
/// Safe to run any number of times.
pub async fn migrate(store: &Store, editions: &Editions) -> Result<MigrationReport, StoreError> {
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
    let applied = applied_migrations(store).await?;
    let mut report = MigrationReport {
        applied: Vec::new(),
        already_applied: Vec::new(),
    };
    for migration in MIGRATIONS {
        let recorded = applied.iter().find(|r| r.version == migration.version);
        let current = checksum(&migration.sql(editions));
        match (recorded, migration.kind) {
            (Some(row), _) if row.checksum == current => {
                report.already_applied.push(migration.name.to_string());
                continue;
            }
            (Some(_), Kind::Versioned) => {
                tracing::warn!(
                    message = "Applied migration differs from this build's copy; not re-applied. Add a new migration instead of editing an applied one.",
                    migration = migration.name
                );
                report.already_applied.push(migration.name.to_string());
                continue;
            }
            (None, Kind::Versioned) => apply_versioned(store, &migration, editions).await?,
            (_, Kind::Repeatable) => apply_repeatable(store, &migration, editions).await?,
        }
        // Recorded after every earlier record, even if the clock went back, so the last
        // application is the one `argMax(checksum, applied_at)` finds.
        store
            .execute(&store.sql(&format!(
                "INSERT INTO {{db}}.schema_migrations SELECT {}, '{}', '{}', \
                 greatest(now(), (SELECT max(applied_at) FROM {{db}}.schema_migrations) + 1)",
                migration.version, migration.name, current
            )))
            .await?;
        tracing::info!(message = "Applied migration.", migration = migration.name);
        report.applied.push(migration.name.to_string());
    }
    Ok(report)
}

/// The checksum recorded last for each applied version.
async fn applied_migrations(store: &Store) -> Result<Vec<AppliedRow>, StoreError> {
    store
        .fetch_all(&store.sql(
            "SELECT version AS version, argMax(checksum, applied_at) AS checksum \
             FROM {db}.schema_migrations GROUP BY version",
        ))
        .await
}

async fn apply_versioned(
    store: &Store,
    migration: &Migration,
    editions: &Editions,
) -> Result<(), StoreError> {
    for statement in statements(&migration.sql(editions)) {
        if let Some(column) = added_column(&statement) {
            // 18.16 has no `ADD COLUMN IF NOT EXISTS`: ask the catalogue instead.
            if column_exists(store, column).await? {
                continue;
            }
            let plain = statement.replacen(" ADD COLUMN IF NOT EXISTS ", " ADD COLUMN ", 1);
            store.execute(&store.sql(&plain)).await?;
            continue;
        }
        store.execute(&store.sql(&statement)).await?;
    }
    Ok(())
}

/// The (table, column) an `ALTER TABLE {db}.t ADD COLUMN IF NOT EXISTS c …` adds.
pub fn added_column(statement: &str) -> Option<(&str, &str)> {
    let rest = statement.strip_prefix("ALTER TABLE {db}.")?;
    let (table, rest) = rest.split_once(" ADD COLUMN IF NOT EXISTS ")?;
    let column = rest.split_whitespace().next()?;
    Some((table.trim(), column))
}

async fn column_exists(store: &Store, (table, column): (&str, &str)) -> Result<bool, StoreError> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Count {
        columns: u64,
    }
    let statement = store.sql(&format!(
        "SELECT count() AS columns FROM system.columns \
         WHERE database = '{{db}}' AND table = '{}' AND name = '{}'",
        super::outcomes::escape_literal(table),
        super::outcomes::escape_literal(column)
    ));
    let found: Count = store.fetch_one(&statement).await?;
    Ok(found.columns > 0)
}

/// Drops every view of the file, dependants first, then creates them in file order.
async fn apply_repeatable(
    store: &Store,
    migration: &Migration,
    editions: &Editions,
) -> Result<(), StoreError> {
    let statements = statements(&migration.sql(editions));
    for statement in statements.iter().rev() {
        if let Some(name) = view_name(statement) {
            store
                .execute(&store.sql(&format!("DROP TABLE IF EXISTS {name}")))
                .await?;
        }
    }
    for statement in &statements {
        store.execute(&store.sql(statement)).await?;
    }
    Ok(())
}

/// Fails with [`StoreError::NotMigrated`] unless every table migration of this build is
/// applied. Views from another build only draw a warning: `run` does not read them.
pub async fn ensure_migrated(store: &Store, editions: &Editions) -> Result<(), StoreError> {
    let applied = applied_migrations(store).await?;
    for migration in MIGRATIONS {
        let recorded = applied.iter().find(|r| r.version == migration.version);
        match (recorded, migration.kind) {
            (None, _) => {
                return Err(StoreError::NotMigrated {
                    database: store.database().to_string(),
                    detail: format!("{} is not applied", migration.name),
                })
            }
            (Some(row), Kind::Repeatable) if row.checksum != checksum(&migration.sql(editions)) => {
                tracing::warn!(
                    message = "The database's views are from another build; run `subsidy-ingester migrate` to update them.",
                    migration = migration.name
                );
            }
            _ => {}
        }
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
            for statement in statements(&migration.sql(&Editions::builtin())) {
                assert!(
                    statement.contains("IF NOT EXISTS"),
                    "{}: statement is not idempotent: {statement}",
                    migration.name
                );
                if migration.kind == Kind::Repeatable {
                    assert!(
                        view_name(&statement).is_some(),
                        "{}: a repeatable migration may only define views: {statement}",
                        migration.name
                    );
                }
            }
        }
    }

    #[test]
    fn added_columns_are_read_from_their_alter_statements() {
        assert_eq!(
            added_column(
                "ALTER TABLE {db}.unit_decisions ADD COLUMN IF NOT EXISTS note String DEFAULT ''"
            ),
            Some(("unit_decisions", "note"))
        );
        assert_eq!(
            added_column("CREATE TABLE IF NOT EXISTS {db}.t (x UInt8)"),
            None
        );
    }

    #[test]
    fn view_names_are_read_from_their_definitions() {
        assert_eq!(
            view_name("CREATE VIEW IF NOT EXISTS {db}.ledger AS\nSELECT 1"),
            Some("{db}.ledger")
        );
        assert_eq!(
            view_name("CREATE TABLE IF NOT EXISTS {db}.t (x UInt8)"),
            None
        );
        assert_eq!(
            view_name("CREATE VIEW IF NOT EXISTS other.v AS SELECT 1"),
            None
        );
    }

    #[test]
    fn the_views_take_the_policy_numbers_from_the_edition_and_hold_no_literal_copy() {
        // Proves: every `{policy.…}` placeholder is filled, the filled SQL holds the numbers
        // of editions/hangzhou-2022.toml, and the file itself repeats none of them.
        let editions = &Editions::builtin();
        let views_migration = MIGRATIONS
            .iter()
            .find(|m| m.name == "0002_views.sql")
            .unwrap();
        let template = views_migration.template;
        let views = views_migration.sql(editions);
        for statement in statements(&views) {
            assert!(!statement.contains("{policy."), "unfilled: {statement}");
        }
        for (name, _) in editions.sql_placeholders() {
            assert!(
                template.contains(name),
                "0002_views.sql does not use {name}"
            );
        }
        assert!(views.contains(
            "multiIf(program = 'import_parcel' AND year >= 2022 AND year <= 2025, 20000000, program = 'rural_delivery' AND year >= 2022 AND year <= 2025, 3000000, year >= 2022 AND year <= 2025, -1, -1)"
        ));
        assert!(views
            .contains("IN ('330109', '330110', '330112', '330122', '330127', '330182'), 75, 50)"));
        for literal in ["20000000", "3000000", "330109", "330182"] {
            assert!(
                !template.contains(literal),
                "0002_views.sql repeats {literal}"
            );
        }
    }
}
