//! Domain types shared by every stage of the pipeline: the validated [`Event`], the
//! [`Unit`] a subsidy is paid for, and the [`Reason`] a message is rejected with.
//!
//! These types hold no I/O and no policy numbers (those live in [`crate::policy`]); they are
//! the vocabulary that `decode` → `rules` → `ledger` → sinks speak.

use chrono::{DateTime, FixedOffset, NaiveDate};
use std::borrow::Cow;
use std::fmt;

/// One of the three per-unit subsidy programs of Article (十三).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Program {
    /// 1 yuan per takeout order delivered by a released courier inside an active zone.
    TakeoutOrder,
    /// 1 yuan per disinfected imported mail/express parcel, capped per firm and year.
    ImportParcel,
    /// 0.3 yuan per rural delivery, capped per outlet and year, for 3 years after enrollment.
    RuralDelivery,
}

impl Program {
    /// All programs, in the order reports list them.
    pub const ALL: [Program; 3] = [
        Program::TakeoutOrder,
        Program::ImportParcel,
        Program::RuralDelivery,
    ];

    /// The program's name as it appears in events (`type`) and in ClickHouse (`program`).
    pub fn as_str(self) -> &'static str {
        match self {
            Program::TakeoutOrder => "takeout_order",
            Program::ImportParcel => "import_parcel",
            Program::RuralDelivery => "rural_delivery",
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
    /// A string `type` other than the three programs.
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
    /// A valid message whose unit key was already paid.
    Duplicate,
    /// Not a SPEC §5 check: ClickHouse refused the message's outcome row for a reason no
    /// retry can fix, so the message is kept as this rejection, with the server's error,
    /// instead of stalling its partition.
    StorageRefused,
}

impl Reason {
    /// Every reason code the service stores: the SPEC's, then `storage_refused`.
    pub const ALL: [Reason; 14] = {
        let mut all = [Reason::StorageRefused; 14];
        let mut i = 0;
        while i < Reason::SPEC.len() {
            all[i] = Reason::SPEC[i];
            i += 1;
        }
        all
    };

    /// The reason codes of SPEC §5, in the order its checks run.
    pub const SPEC: [Reason; 13] = [
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
}

impl<'a> Event<'a> {
    /// The program this event claims a subsidy under.
    pub fn program(&self) -> Program {
        match self.body {
            EventBody::Takeout { .. } => Program::TakeoutOrder,
            EventBody::Import { .. } => Program::ImportParcel,
            EventBody::Rural { .. } => Program::RuralDelivery,
        }
    }

    /// The dedup key of the unit within its program (SPEC §2): `platform_id/order_id` for
    /// takeout orders (identifiers never contain `/`, so the join is unambiguous),
    /// `waybill_no` otherwise.
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
        }
    }
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
}
