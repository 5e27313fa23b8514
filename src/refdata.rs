//! Reference data: firms, rural outlets and takeout zones (SPEC §4).
//!
//! This module holds the typed records, the in-memory [`RefData`] the rules look things up
//! in, and the CSV parsers (`parse_firms_csv` …). A bad row is reported with its file, line
//! and field, and nothing from that file is loaded.

use chrono::{DateTime, FixedOffset, NaiveDate};
use std::collections::HashMap;

/// One row of `firms.csv`: a platform, express or postal firm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firm {
    pub firm_id: String,
    pub name: String,
    /// Unified social credit code (统一社会信用代码), kept for audit, not checked.
    pub credit_code: String,
    pub district_code: String,
    /// Article 18: an independent legal entity.
    pub legal_entity: bool,
    /// Article 18: holds its business licence.
    pub licensed: bool,
    /// Article 18: reports into the statistics monitoring platform.
    pub in_monitoring: bool,
    /// Date of the last major penalty; the firm is ineligible for one year from it.
    pub last_major_penalty_on: Option<NaiveDate>,
}

/// One row of `outlets.csv`: a rural delivery outlet of a firm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlet {
    pub outlet_id: String,
    pub firm_id: String,
    pub district_code: String,
    pub village_code: String,
    /// Eligible for deliveries on `enrolled_on <= d < enrolled_on + 3 years`.
    pub enrolled_on: NaiveDate,
}

/// `zone_type` of a takeout zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneType {
    /// 封控区.
    Sealed,
    /// 管控区.
    Controlled,
    /// 防范区.
    Prevention,
}

impl ZoneType {
    /// The CSV spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneType::Sealed => "sealed",
            ZoneType::Controlled => "controlled",
            ZoneType::Prevention => "prevention",
        }
    }
}

/// One row of `zones.csv`: a locked-down zone and the instants it was active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub zone_id: String,
    pub zone_type: ZoneType,
    pub district_code: String,
    /// Active for `active_from <= occurred_at <= active_to` (both inclusive).
    pub active_from: DateTime<FixedOffset>,
    pub active_to: DateTime<FixedOffset>,
}

/// All reference data the rules need, indexed by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefData {
    pub firms: HashMap<String, Firm>,
    pub outlets: HashMap<String, Outlet>,
    pub zones: HashMap<String, Zone>,
}
