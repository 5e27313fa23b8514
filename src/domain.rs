//! Domain types shared by every stage of the pipeline: the validated [`Event`], the
//! [`Unit`] a subsidy is paid for, and the [`Reason`] a message is rejected with.
//!
//! These types hold no I/O and no policy numbers (those live in [`crate::policy`]); they are
//! the vocabulary that `decode` → `rules` → `ledger` → sinks speak.

use chrono::{DateTime, FixedOffset, NaiveDate};
use std::borrow::Cow;
use std::fmt;

/// A ledger program: the nine paying programs of Article (十三) (SPEC §2 and §8) and the two
/// zero-pay records that change another program's pay (infections, outlet closings).
/// The order of [`Program::ALL`] is also the program's byte in a unit record (`route`), so
/// new programs are only ever appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Program {
    /// 1 yuan per takeout order delivered by a released courier inside an active zone.
    TakeoutOrder,
    /// 1 yuan per disinfected imported mail/express parcel, capped per firm and year.
    ImportParcel,
    /// 0.3 yuan per rural delivery, capped per outlet and year, for 3 years after enrollment.
    RuralDelivery,
    /// A platform's monthly award for epidemic prevention, cancelled by an infection.
    PlatformMonthAttested,
    /// A courier's infection: pays nothing, cancels the platform's award for its month.
    CourierInfection,
    /// An intelligent locker bought: a share of its price, capped per locker.
    LockerPurchased,
    /// An identity-verification device bought: a fixed amount.
    IdDevicePurchased,
    /// A county-level joint distribution centre opened: a fixed amount.
    CountyCenterOpened,
    /// A village joint outlet opened: an opening award, then one per anniversary.
    VillageOutletOpened,
    /// A village outlet closed: pays nothing, stops its later anniversaries.
    VillageOutletClosed,
    /// A courier's day of lost work in a zone: the edition's allowance, if it sets one.
    CourierIdleDay,
    /// A producer withdraws a ledger record (any program above): pays nothing itself; the
    /// record it names stays in the ledger marked voided and is not paid.
    UnitVoided,
    /// Article 21: a firm's subsidies for a period (and from the revocation on) are
    /// clawed back; pays nothing itself.
    SubsidyRevoked,
}

impl Program {
    /// All programs, in the order reports list them (and their byte in a unit record).
    pub const ALL: [Program; 13] = [
        Program::TakeoutOrder,
        Program::ImportParcel,
        Program::RuralDelivery,
        Program::PlatformMonthAttested,
        Program::CourierInfection,
        Program::LockerPurchased,
        Program::IdDevicePurchased,
        Program::CountyCenterOpened,
        Program::VillageOutletOpened,
        Program::VillageOutletClosed,
        Program::CourierIdleDay,
        Program::UnitVoided,
        Program::SubsidyRevoked,
    ];

    /// The ledger's programs: every one but the two actions on it (voids, revocations).
    /// These are what a void may name and what `report --program` selects.
    pub const LEDGER: [Program; 11] = {
        let mut ledger = [Program::TakeoutOrder; 11];
        let mut i = 0;
        while i < ledger.len() {
            ledger[i] = Program::ALL[i];
            i += 1;
        }
        ledger
    };

    /// True for the actions on the ledger (`unit_voided`, `subsidy_revoked`): accepted,
    /// they are records of their own that pay nothing.
    pub fn is_action(self) -> bool {
        matches!(self, Program::UnitVoided | Program::SubsidyRevoked)
    }

    /// Parses a ledger program's name (what a void may name); `None` for anything else.
    pub fn ledger_from_type(type_name: &str) -> Option<Program> {
        Program::LEDGER
            .into_iter()
            .find(|p| p.as_str() == type_name)
    }

    /// The program's name as it appears in events (`type`) and in ClickHouse (`program`).
    pub fn as_str(self) -> &'static str {
        match self {
            Program::TakeoutOrder => "takeout_order",
            Program::ImportParcel => "import_parcel",
            Program::RuralDelivery => "rural_delivery",
            Program::PlatformMonthAttested => "platform_month_attested",
            Program::CourierInfection => "courier_infection",
            Program::LockerPurchased => "locker_purchased",
            Program::IdDevicePurchased => "id_device_purchased",
            Program::CountyCenterOpened => "county_center_opened",
            Program::VillageOutletOpened => "village_outlet_opened",
            Program::VillageOutletClosed => "village_outlet_closed",
            Program::CourierIdleDay => "courier_idle_day",
            Program::UnitVoided => "unit_voided",
            Program::SubsidyRevoked => "subsidy_revoked",
        }
    }

    /// Parses an event `type` string; `None` for anything else.
    pub fn from_type(type_name: &str) -> Option<Program> {
        Program::ALL.into_iter().find(|p| p.as_str() == type_name)
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a consumed message did not become a unit (SPEC §5). The first matching check wins,
/// in the order the variants are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Empty, not UTF-8, or not JSON.
    MalformedJson,
    /// Not an object, `type` missing or not a string, or a field of the type missing,
    /// mistyped, a timestamp without offset, or a bad identifier.
    SchemaViolation,
    /// A string `type` other than those of SPEC §3 and §8.
    UnknownType,
    /// Local date of `occurred_at` outside 2022-07-01 … 2025-12-31.
    OutsidePolicyPeriod,
    /// Takeout: `zone_id` not in the zones reference data.
    UnknownZone,
    /// Takeout: `occurred_at` outside the zone's `[active_from, active_to]`.
    ZoneInactive,
    /// Takeout: `courier_released` is false.
    CourierNotReleased,
    /// The firm (the platform for takeout orders) is not in the firms reference data.
    UnknownFirm,
    /// The firm fails Article 18 on the local date of the event.
    FirmIneligible,
    /// Rural: `outlet_id` not in the outlets reference data.
    UnknownOutlet,
    /// Rural: the event's `firm_id` is not the outlet's firm.
    OutletFirmMismatch,
    /// Rural: the local date is outside `[enrolled_on, enrolled_on + 3 years)`.
    OutletNotEnrolled,
    /// A platform month attested with any of its three measures false: pays nothing.
    AttestationIncomplete,
    /// The edition in force sets no amount for the program (or switches it off).
    ProgramNotConfigured,
    /// A valid message whose unit key was already paid.
    Duplicate,
    /// Not a SPEC §5 check: ClickHouse refused the message's outcome row for a reason no
    /// retry can fix, so the message is kept as this rejection, with the server's error,
    /// instead of stalling its partition.
    StorageRefused,
}

impl Reason {
    /// Every reason code the service stores: the SPEC's, then `storage_refused`.
    pub const ALL: [Reason; 16] = {
        let mut all = [Reason::StorageRefused; 16];
        let mut i = 0;
        while i < Reason::SPEC.len() {
            all[i] = Reason::SPEC[i];
            i += 1;
        }
        all
    };

    /// The reason codes of SPEC §5, in the order its checks run.
    pub const SPEC: [Reason; 15] = [
        Reason::MalformedJson,
        Reason::SchemaViolation,
        Reason::UnknownType,
        Reason::OutsidePolicyPeriod,
        Reason::UnknownZone,
        Reason::ZoneInactive,
        Reason::CourierNotReleased,
        Reason::UnknownFirm,
        Reason::FirmIneligible,
        Reason::UnknownOutlet,
        Reason::OutletFirmMismatch,
        Reason::OutletNotEnrolled,
        Reason::AttestationIncomplete,
        Reason::ProgramNotConfigured,
        Reason::Duplicate,
    ];

    /// The stable reason code stored in `rejected_events.reason` and sent to the dead-letter topic.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::SchemaViolation => "schema_violation",
            Reason::UnknownType => "unknown_type",
            Reason::OutsidePolicyPeriod => "outside_policy_period",
            Reason::UnknownZone => "unknown_zone",
            Reason::ZoneInactive => "zone_inactive",
            Reason::CourierNotReleased => "courier_not_released",
            Reason::UnknownFirm => "unknown_firm",
            Reason::FirmIneligible => "firm_ineligible",
            Reason::UnknownOutlet => "unknown_outlet",
            Reason::OutletFirmMismatch => "outlet_firm_mismatch",
            Reason::OutletNotEnrolled => "outlet_not_enrolled",
            Reason::AttestationIncomplete => "attestation_incomplete",
            Reason::ProgramNotConfigured => "program_not_configured",
            Reason::Duplicate => "duplicate",
            Reason::StorageRefused => "storage_refused",
        }
    }

    /// Parses a stored reason code.
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that did not become a unit: the reason code and a human detail that names the
/// field or the reference record involved, so a producer can fix its feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason code (SPEC §5).
    pub reason: Reason,
    /// What exactly was wrong, e.g. `field "occurred_at": timestamp has no UTC offset`.
    pub detail: String,
}

impl Rejection {
    /// Builds a rejection from a reason and any displayable detail.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// `channel` of an imported parcel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// International mail.
    Mail,
    /// International express.
    Express,
}

/// An event that passed the schema checks (SPEC §3): typed, identifiers validated,
/// `occurred_at` carrying its original offset. Its strings borrow from the message
/// (owned only where the producer escaped a character), so decoding copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// Producer's id, kept for tracing only; never part of a dedup key.
    pub event_id: Cow<'a, str>,
    /// The instant the unit happened, with the offset the producer sent.
    pub occurred_at: DateTime<FixedOffset>,
    /// The program-specific fields.
    pub body: EventBody<'a>,
}

/// Program-specific fields of an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody<'a> {
    /// `type = "takeout_order"`.
    Takeout {
        platform_id: Cow<'a, str>,
        order_id: Cow<'a, str>,
        courier_id: Cow<'a, str>,
        zone_id: Cow<'a, str>,
        courier_released: bool,
    },
    /// `type = "import_parcel"`.
    Import {
        firm_id: Cow<'a, str>,
        waybill_no: Cow<'a, str>,
        channel: Channel,
    },
    /// `type = "rural_delivery"`.
    Rural {
        firm_id: Cow<'a, str>,
        outlet_id: Cow<'a, str>,
        waybill_no: Cow<'a, str>,
    },
    /// `type = "platform_month_attested"`: booked on the last day of `month`.
    PlatformMonth {
        platform_id: Cow<'a, str>,
        /// The first day of the attested month.
        month: NaiveDate,
        prevention_measures: bool,
        couriers_managed: bool,
        sites_disinfected: bool,
    },
    /// `type = "courier_infection"`.
    Infection {
        platform_id: Cow<'a, str>,
        courier_id: Cow<'a, str>,
    },
    /// `type = "locker_purchased"`.
    Locker {
        purchaser_id: Cow<'a, str>,
        locker_serial: Cow<'a, str>,
        /// The price in fen (> 0).
        price_fen: i64,
        site_type: SiteType,
    },
    /// `type = "id_device_purchased"`.
    IdDevice {
        firm_id: Cow<'a, str>,
        device_serial: Cow<'a, str>,
    },
    /// `type = "county_center_opened"`.
    CountyCenter {
        firm_id: Cow<'a, str>,
        center_id: Cow<'a, str>,
        district_code: Cow<'a, str>,
    },
    /// `type = "village_outlet_opened"`.
    VillageOpened {
        firm_id: Cow<'a, str>,
        outlet_id: Cow<'a, str>,
        village_code: Cow<'a, str>,
        district_code: Cow<'a, str>,
    },
    /// `type = "village_outlet_closed"`.
    VillageClosed {
        firm_id: Cow<'a, str>,
        outlet_id: Cow<'a, str>,
    },
    /// `type = "courier_idle_day"`: booked on `date`.
    IdleDay {
        platform_id: Cow<'a, str>,
        courier_id: Cow<'a, str>,
        zone_id: Cow<'a, str>,
        date: NaiveDate,
    },
    /// `type = "unit_voided"`: withdraws the ledger record `program`/`key`.
    Void {
        /// The voided record's program (a ledger program, never an action).
        program: Program,
        /// The voided record's unit key, as [`Event::unit_key`] builds it.
        key: String,
        void_reason: Cow<'a, str>,
    },
    /// `type = "subsidy_revoked"` (Article 21).
    Revoke {
        firm_id: Cow<'a, str>,
        period_from: NaiveDate,
        period_to: NaiveDate,
        reason: Cow<'a, str>,
        revoked_by: Cow<'a, str>,
    },
}

/// `site_type` of a locker: every site type pays (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteType {
    OfficeBuilding,
    ResidentialCompound,
    Other,
}

impl<'a> Event<'a> {
    /// The program this event claims a subsidy under (or records for).
    pub fn program(&self) -> Program {
        match self.body {
            EventBody::Takeout { .. } => Program::TakeoutOrder,
            EventBody::Import { .. } => Program::ImportParcel,
            EventBody::Rural { .. } => Program::RuralDelivery,
            EventBody::PlatformMonth { .. } => Program::PlatformMonthAttested,
            EventBody::Infection { .. } => Program::CourierInfection,
            EventBody::Locker { .. } => Program::LockerPurchased,
            EventBody::IdDevice { .. } => Program::IdDevicePurchased,
            EventBody::CountyCenter { .. } => Program::CountyCenterOpened,
            EventBody::VillageOpened { .. } => Program::VillageOutletOpened,
            EventBody::VillageClosed { .. } => Program::VillageOutletClosed,
            EventBody::IdleDay { .. } => Program::CourierIdleDay,
            EventBody::Void { .. } => Program::UnitVoided,
            EventBody::Revoke { .. } => Program::SubsidyRevoked,
        }
    }

    /// The local date the event is booked on: `occurred_at`'s Asia/Shanghai date, except
    /// an attestation (the last day of its month) and an idle day (its `date`).
    pub fn booking_date(&self) -> NaiveDate {
        match &self.body {
            EventBody::PlatformMonth { month, .. } => crate::policy::last_day_of_month(*month),
            EventBody::IdleDay { date, .. } => *date,
            _ => crate::policy::local_date(&self.occurred_at),
        }
    }

    /// The dedup key of the unit within its program (SPEC §2, §8): the key's fields joined
    /// with `/` (identifiers never contain `/`, so the join is unambiguous); dates and
    /// months as `YYYY-MM-DD` / `YYYY-MM`.
    pub fn unit_key(&self) -> Cow<'a, str> {
        match &self.body {
            EventBody::Takeout {
                platform_id,
                order_id,
                ..
            } => Cow::Owned(format!("{platform_id}/{order_id}")),
            EventBody::Import { waybill_no, .. } | EventBody::Rural { waybill_no, .. } => {
                waybill_no.clone()
            }
            EventBody::PlatformMonth {
                platform_id, month, ..
            } => Cow::Owned(format!("{platform_id}/{}", month.format("%Y-%m"))),
            EventBody::Infection {
                platform_id,
                courier_id,
            } => Cow::Owned(format!(
                "{platform_id}/{courier_id}/{}",
                crate::policy::local_date(&self.occurred_at)
            )),
            EventBody::Locker { locker_serial, .. } => locker_serial.clone(),
            EventBody::IdDevice { device_serial, .. } => device_serial.clone(),
            EventBody::CountyCenter { center_id, .. } => center_id.clone(),
            EventBody::VillageOpened { outlet_id, .. }
            | EventBody::VillageClosed { outlet_id, .. } => outlet_id.clone(),
            EventBody::IdleDay {
                platform_id,
                courier_id,
                date,
                ..
            } => Cow::Owned(format!("{platform_id}/{courier_id}/{date}")),
            EventBody::Void { program, key, .. } => Cow::Owned(void_key(*program, key)),
            EventBody::Revoke {
                firm_id,
                period_from,
                period_to,
                ..
            } => Cow::Owned(format!("{firm_id}/{period_from}/{period_to}")),
        }
    }
}

/// The unit key of a void of `program`'s record `key`: `program/key`. Program names hold
/// no `/`, so [`voided_record`] splits it back at the first one.
pub fn void_key(program: Program, key: &str) -> String {
    format!("{}/{key}", program.as_str())
}

/// The record a void's unit key names: its program and key.
pub fn voided_record(void_key: &str) -> Option<(Program, &str)> {
    let (program, key) = void_key.split_once('/')?;
    Some((Program::ledger_from_type(program)?, key))
}

/// One unit a subsidy is paid for: the outcome of the rules for an eligible event, before
/// dedup and caps. Caps are applied per recipient and year over the whole ledger (SPEC §2),
/// never per unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit<'a> {
    /// The program paying for the unit.
    pub program: Program,
    /// The dedup key, see [`Event::unit_key`].
    pub unit_key: Cow<'a, str>,
    /// Courier (takeout), firm (import) or outlet (rural).
    pub recipient_id: &'a str,
    /// The district the subsidy is booked to: zone's, firm's or outlet's.
    pub district_code: &'a str,
    /// The Asia/Shanghai local date of `occurred_at`.
    pub local_date: NaiveDate,
    /// The nominal amount of this unit in fen (1 yuan = 100 fen).
    pub amount_fen: i64,
    /// The firm Article 18 judged and Article 21 revokes: the platform (takeout, idle
    /// days), the outlet's firm (rural), the recipient firm otherwise; for a revocation
    /// the revoked firm; empty for a void.
    pub eligible_firm: &'a str,
    /// Free text kept with the record: a void's `void_reason`; a revocation's
    /// `revoked_by`, a tab, and its `reason` (neither holds a control character).
    pub note: Cow<'a, str>,
}
