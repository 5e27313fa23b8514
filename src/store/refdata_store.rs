//! Reference data in ClickHouse: `refdata load` appends a snapshot, `run` reads the newest.
//!
//! Snapshots are append-only (`*_history` tables keyed by `load_id`), so an analyst can
//! always see which firms, outlets and zones were in force when; the `firms`, `outlets` and
//! `zones` views show the current snapshot.

use super::client::{Store, StoreError};
use super::outcomes::{date_days, date_from_days, datetime_seconds};
use crate::refdata::{Firm, Outlet, RefData, Zone, ZoneType};
use chrono::DateTime;

#[derive(Debug, Clone, clickhouse::Row, serde::Serialize, serde::Deserialize)]
struct FirmRow {
    load_id: u64,
    source_file: String,
    firm_id: String,
    name: String,
    credit_code: String,
    district_code: String,
    legal_entity: u8,
    licensed: u8,
    in_monitoring: u8,
    last_major_penalty_on: Option<u16>,
}

#[derive(Debug, Clone, clickhouse::Row, serde::Serialize, serde::Deserialize)]
struct OutletRow {
    load_id: u64,
    source_file: String,
    outlet_id: String,
    firm_id: String,
    district_code: String,
    village_code: String,
    enrolled_on: u16,
}

#[derive(Debug, Clone, clickhouse::Row, serde::Serialize, serde::Deserialize)]
struct ZoneRow {
    load_id: u64,
    source_file: String,
    zone_id: String,
    zone_type: String,
    district_code: String,
    active_from: String,
    active_to: String,
    active_from_utc: u32,
    active_to_utc: u32,
}

/// How many records one load stored, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounts {
    pub firms: usize,
    pub outlets: usize,
    pub zones: usize,
}

/// Appends new snapshots. Kinds passed as `None` keep their current snapshot.
pub async fn save_snapshots(
    store: &Store,
    load_id: u64,
    firms: Option<(&str, &[Firm])>,
    outlets: Option<(&str, &[Outlet])>,
    zones: Option<(&str, &[Zone])>,
) -> Result<LoadCounts, StoreError> {
    let mut counts = LoadCounts::default();
    if let Some((file, firms)) = firms {
        let rows = firms.iter().map(|f| FirmRow {
            load_id,
            source_file: file.to_string(),
            firm_id: f.firm_id.clone(),
            name: f.name.clone(),
            credit_code: f.credit_code.clone(),
            district_code: f.district_code.clone(),
            legal_entity: f.legal_entity.into(),
            licensed: f.licensed.into(),
            in_monitoring: f.in_monitoring.into(),
            last_major_penalty_on: f.last_major_penalty_on.map(date_days),
        });
        counts.firms = insert_rows(store, "firms_history", rows).await?;
    }
    if let Some((file, outlets)) = outlets {
        let rows = outlets.iter().map(|o| OutletRow {
            load_id,
            source_file: file.to_string(),
            outlet_id: o.outlet_id.clone(),
            firm_id: o.firm_id.clone(),
            district_code: o.district_code.clone(),
            village_code: o.village_code.clone(),
            enrolled_on: date_days(o.enrolled_on),
        });
        counts.outlets = insert_rows(store, "outlets_history", rows).await?;
    }
    if let Some((file, zones)) = zones {
        let rows = zones.iter().map(|z| ZoneRow {
            load_id,
            source_file: file.to_string(),
            zone_id: z.zone_id.clone(),
            zone_type: z.zone_type.as_str().to_string(),
            district_code: z.district_code.clone(),
            active_from: z.active_from.to_rfc3339(),
            active_to: z.active_to.to_rfc3339(),
            active_from_utc: datetime_seconds(&z.active_from),
            active_to_utc: datetime_seconds(&z.active_to),
        });
        counts.zones = insert_rows(store, "zones_history", rows).await?;
    }
    Ok(counts)
}

async fn insert_rows<T>(
    store: &Store,
    table: &str,
    rows: impl Iterator<Item = T>,
) -> Result<usize, StoreError>
where
    T: clickhouse::Row + clickhouse::RowWrite + for<'a> clickhouse::Row<Value<'a> = T>,
{
    let qualified = format!("{}.{table}", store.database());
    let statement = format!("INSERT INTO {qualified}");
    let mut insert = store
        .bounded(&statement, store.client().insert_unescaped::<T>(&qualified))
        .await?;
    let mut count = 0;
    for row in rows {
        store.bounded(&statement, insert.write(&row)).await?;
        count += 1;
    }
    store.bounded(&statement, insert.end()).await?;
    Ok(count)
}

/// Reads the current snapshot of every kind. Fails with a clear message if none was loaded.
pub async fn load_current(store: &Store) -> Result<RefData, StoreError> {
    let firm_rows: Vec<FirmRow> = store
        .fetch_all(&store.sql("SELECT * FROM {db}.firms"))
        .await?;
    let outlet_rows: Vec<OutletRow> = store
        .fetch_all(&store.sql("SELECT * FROM {db}.outlets"))
        .await?;
    let zone_rows: Vec<ZoneRow> = store
        .fetch_all(&store.sql("SELECT * FROM {db}.zones"))
        .await?;
    let firms = firm_rows
        .into_iter()
        .map(|r| Firm {
            firm_id: r.firm_id,
            name: r.name,
            credit_code: r.credit_code,
            district_code: r.district_code,
            legal_entity: r.legal_entity != 0,
            licensed: r.licensed != 0,
            in_monitoring: r.in_monitoring != 0,
            last_major_penalty_on: r.last_major_penalty_on.map(date_from_days),
        })
        .map(|f| (f.firm_id.clone(), f))
        .collect();
    let outlets = outlet_rows
        .into_iter()
        .map(|r| Outlet {
            outlet_id: r.outlet_id,
            firm_id: r.firm_id,
            district_code: r.district_code,
            village_code: r.village_code,
            enrolled_on: date_from_days(r.enrolled_on),
        })
        .map(|o| (o.outlet_id.clone(), o))
        .collect();
    let mut zones = std::collections::HashMap::new();
    for r in zone_rows {
        let bad = |what: &str| StoreError::Query {
            statement: "SELECT * FROM zones".into(),
            detail: format!("stored zone {:?} has an unreadable {what}", r.zone_id),
        };
        let zone = Zone {
            zone_type: match r.zone_type.as_str() {
                "sealed" => ZoneType::Sealed,
                "controlled" => ZoneType::Controlled,
                "prevention" => ZoneType::Prevention,
                _ => return Err(bad("zone_type")),
            },
            active_from: DateTime::parse_from_rfc3339(&r.active_from)
                .map_err(|_| bad("active_from"))?,
            active_to: DateTime::parse_from_rfc3339(&r.active_to).map_err(|_| bad("active_to"))?,
            district_code: r.district_code.clone(),
            zone_id: r.zone_id.clone(),
        };
        zones.insert(r.zone_id, zone);
    }
    Ok(RefData {
        firms,
        outlets,
        zones,
    })
}

/// The reference-data files of one `refdata load`; any subset of the three.
#[derive(Debug, Clone, Default)]
pub struct RefdataFiles {
    pub firms: Option<std::path::PathBuf>,
    pub outlets: Option<std::path::PathBuf>,
    pub zones: Option<std::path::PathBuf>,
}

/// Why a `refdata load` stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("nothing to load: give at least one of --firms, --outlets, --zones")]
    Nothing,
    /// Every file's errors, each naming file, line and field; nothing was stored.
    #[error("reference data rejected ({} file(s) with errors); nothing was loaded", .0.len())]
    Rejected(Vec<crate::refdata::RefDataError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The parsed contents of a `refdata load`'s files, all valid.
#[derive(Debug, Clone)]
pub struct ValidFiles {
    files: RefdataFiles,
    firms: Option<Vec<Firm>>,
    outlets: Option<Vec<Outlet>>,
    zones: Option<Vec<Zone>>,
}

impl ValidFiles {
    /// Rows validated, over every given file.
    pub fn rows(&self) -> usize {
        self.firms.as_ref().map_or(0, Vec::len)
            + self.outlets.as_ref().map_or(0, Vec::len)
            + self.zones.as_ref().map_or(0, Vec::len)
    }

    /// The parsed records of each kind, `None` for a kind whose file was not given
    /// (`validate` judges with them without storing anything).
    #[allow(clippy::type_complexity)]
    pub fn into_records(self) -> (Option<Vec<Firm>>, Option<Vec<Outlet>>, Option<Vec<Zone>>) {
        (self.firms, self.outlets, self.zones)
    }
}

/// Parses every given file and collects every file's errors: the first half of "validate
/// everything, then store", so a bad row is reported even when ClickHouse is away.
pub fn validate_files(files: &RefdataFiles) -> Result<ValidFiles, LoadError> {
    use crate::refdata::{load_firms_file, load_outlets_file, load_zones_file};
    if files.firms.is_none() && files.outlets.is_none() && files.zones.is_none() {
        return Err(LoadError::Nothing);
    }
    let mut errors = Vec::new();
    let firms = files
        .firms
        .as_deref()
        .and_then(|p| load_firms_file(p).map_err(|e| errors.push(e)).ok());
    let outlets = files
        .outlets
        .as_deref()
        .and_then(|p| load_outlets_file(p).map_err(|e| errors.push(e)).ok());
    let zones = files
        .zones
        .as_deref()
        .and_then(|p| load_zones_file(p).map_err(|e| errors.push(e)).ok());
    if !errors.is_empty() {
        return Err(LoadError::Rejected(errors));
    }
    Ok(ValidFiles {
        files: files.clone(),
        firms,
        outlets,
        zones,
    })
}

/// Stores validated files as one new snapshot (`load_id` = now in milliseconds).
pub async fn store_files(
    store: &Store,
    valid: &ValidFiles,
    editions: &crate::edition::Editions,
) -> Result<(u64, LoadCounts), LoadError> {
    super::migrate::ensure_migrated(store, editions).await?;
    let load_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let label = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let files = &valid.files;
    let (firm_label, outlet_label, zone_label) = (
        label(&files.firms),
        label(&files.outlets),
        label(&files.zones),
    );
    let counts = save_snapshots(
        store,
        load_id,
        firm_label.as_deref().zip(valid.firms.as_deref()),
        outlet_label.as_deref().zip(valid.outlets.as_deref()),
        zone_label.as_deref().zip(valid.zones.as_deref()),
    )
    .await?;
    Ok((load_id, counts))
}
