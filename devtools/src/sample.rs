//! A deterministic sample-feed generator: Hangzhou reference data plus Kafka messages that
//! each carry the outcome SPEC §5 says they must have.
//!
//! [`generate`] turns a [`SampleConfig`] into a [`SampleFeed`]: fixed reference data (40
//! firms, 200 rural outlets, 100 takeout zones, the same for every seed) and exactly
//! `events` messages. Each message knows its [`Expected`] outcome by construction: the
//! generator decides what a message must become and writes it that way. It never calls
//! [`subsidy_ingester::decode`] or [`subsidy_ingester::rules`], which it exists to test, nor [`subsidy_ingester::policy`]:
//! its own few constants state the policy a second time.
//!
//! # The mix
//!
//! Of `events` messages:
//!
//! - **malformed** (`malformed_permille` of all messages, default 15 ‰): a catalogue of every
//!   way to break SPEC §3: empty payload, invalid UTF-8, not JSON, truncated JSON, trailing
//!   garbage, an array/string/number/`null` at top level, `type` missing or not a string,
//!   an unknown `type`, each field of each type missing, mistyped or `null`, timestamps
//!   without offset or date-only or impossible, bad identifiers (space, `/`, 65 characters,
//!   empty, non-ASCII, control characters) and a bad `channel`. Expected reasons follow SPEC
//!   §5: `malformed_json`, `schema_violation` or `unknown_type`.
//! - **ineligible** (`ineligible_permille` of the well-formed messages, default 40 ‰): a
//!   catalogue of every program reason, built so that the intended check is the first to
//!   fail (an `unknown_zone` message has an in-period date …), including the exact boundary
//!   seconds (`2022-06-30T15:59:59Z`, one second outside a zone's window, the first and last
//!   day of a one-year penalty, the day an outlet's three years end) and cases where an
//!   earlier check must win over a later one.
//! - **duplicates** (`duplicate_permille` of all messages, default 30 ‰): re-sends of an
//!   earlier valid unit under a new `event_id` and message key, on another topic one time
//!   in five, with `occurred_at` written with a random offset but the same instant.
//! - **cap crossers** (`import_cap_firm_units`, `rural_cap_outlet_units`): distinct valid
//!   parcels of [`CAP_IMPORT_FIRM_ID`] in [`CAP_IMPORT_YEAR`] and deliveries of
//!   [`CAP_RURAL_OUTLET_ID`] in [`CAP_RURAL_YEAR`], spread over the twelve months.
//! - the rest are **valid units**: takeout orders 40 % (inside active zone windows only),
//!   import parcels 35 %, rural deliveries 25 %, over the whole policy period 2022-07-01 …
//!   2025-12-31, starting with a catalogue of edge cases (local midnight and New Year in UTC,
//!   offsets from −12:00 to +14:00 that put the written date in another month, fractional
//!   seconds, 1- and 64-character identifiers, whitespace around the JSON, fields of other
//!   types as ignored extras).
//!
//! Every catalogue entry appears at least once when `events >=` [`FULL_COVERAGE_EVENTS_MIN`];
//! after the catalogues, kinds are drawn at random, and about 3 % of malformed and ineligible
//! messages are re-sends of an earlier invalid message (they keep its reason: only valid
//! messages can be duplicates). `occurred_at` is written with `Z` (40 %), `+08:00` (45 %) or
//! another offset (15 %); 4 % carry milliseconds; 1 % of valid units and 20 % of duplicates
//! travel on the topic of another type; 8 % of payloads carry an unknown extra field and 35 %
//! list their fields in a shuffled order.
//!
//! # Order and labels
//!
//! [`generate`] returns the messages month by month in a shuffled order of months (never in
//! time order). [`SampleFeed::reorder`] puts them in time order or a seeded random order.
//! Which copy of a unit is the `Unit` and which are `Duplicate`s depends on the order, so
//! every ordering relabels: the first copy in the new order is the unit. Totals never change.
//!
//! # Example
//!
//! ```
//! use subsidy_devtools::sample::{generate, Expected, FeedOrder, SampleConfig};
//!
//! let mut feed = generate(&SampleConfig { events: 2_000, ..SampleConfig::default() });
//! feed.reorder(FeedOrder::TimeOrdered);
//! assert_eq!(feed.messages.len(), 2_000);
//! let units = feed.messages.iter().filter(|m| matches!(m.expected, Expected::Unit(_))).count();
//! assert!(units > 1_500);
//! ```
//!
//! The feed is reproducible for a given seed with the same `rand` version on the same pointer
//! width (`SmallRng` is not portable across either).

use chrono::{DateTime, Datelike, FixedOffset, Months, NaiveDate};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::fmt::Write as _;
use subsidy_ingester::domain::{Program, Reason};
use subsidy_ingester::refdata::{Firm, Outlet, Zone, ZoneType};

/// Default topic of takeout orders (SPEC §3).
pub const DEFAULT_TAKEOUT_TOPIC: &str = "subsidy.takeout.orders";
/// Default topic of import parcels (SPEC §3).
pub const DEFAULT_IMPORT_TOPIC: &str = "subsidy.import.parcels";
/// Default topic of rural deliveries (SPEC §3).
pub const DEFAULT_RURAL_TOPIC: &str = "subsidy.rural.deliveries";

/// Smallest `events` for which every malformed kind, every reason and every edge case of the
/// catalogues is in the feed. Smaller feeds hold a prefix of each catalogue.
pub const FULL_COVERAGE_EVENTS_MIN: usize = 1_000;
/// Import parcels [`SampleConfig::with_cap_crossing`] gives the cap-crossing firm: 201,000
/// parcels at 1.00 yuan cross the 200,000.00 yuan cap in December.
pub const CAP_CROSSING_IMPORT_UNITS: usize = 201_000;
/// Rural deliveries [`SampleConfig::with_cap_crossing`] gives the cap-crossing outlet:
/// 100,500 deliveries at 0.30 yuan are 30,150.00 yuan, past the 30,000.00 yuan cap.
pub const CAP_CROSSING_RURAL_UNITS: usize = 100_500;
/// Smallest `events` [`SampleConfig::with_cap_crossing`] accepts: the two crossers take
/// 301,500 messages and the default shares of duplicates, malformed and ineligible messages
/// need room beside them.
pub const CAP_CROSSING_EVENTS_MIN: usize = 350_000;
/// The import firm that receives `import_cap_firm_units` parcels (菜鸟, district 330110 余杭).
pub const CAP_IMPORT_FIRM_ID: &str = "cainiao";
/// The calendar year (local) of the cap-crossing import parcels.
pub const CAP_IMPORT_YEAR: i32 = 2023;
/// The rural outlet that receives `rural_cap_outlet_units` deliveries (韵达, 330127 淳安).
pub const CAP_RURAL_OUTLET_ID: &str = "RO-330127-002";
/// The calendar year (local) of the cap-crossing rural deliveries.
pub const CAP_RURAL_YEAR: i32 = 2024;

/// Most `events` one feed may hold: order and waybill numbers come from a serial that must
/// stay below 10⁹ to stay unique.
const EVENTS_MAX: usize = 100_000_000;

/// What to generate. `Default` is seed 1, 10,000 messages, the default shares and no cap
/// crossers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleConfig {
    /// Seed of every random choice; the same seed gives the same feed.
    pub seed: u64,
    /// Total messages to generate (exact).
    pub events: usize,
    /// Share of messages that are duplicates of an earlier valid unit under a new event_id,
    /// per mille (default 30).
    pub duplicate_permille: u32,
    /// Share of malformed / schema-violating / unknown-type messages, per mille (default 15).
    /// At least the whole malformed catalogue when `events >= FULL_COVERAGE_EVENTS_MIN`
    /// and the share is not 0.
    pub malformed_permille: u32,
    /// Share of well-formed messages that fail a policy check (outside period, unknown zone,
    /// ...), per mille (default 40). At least the whole catalogue of reasons when
    /// `events >= FULL_COVERAGE_EVENTS_MIN` and the share is not 0.
    pub ineligible_permille: u32,
    /// Import parcels for the one firm that crosses its 200,000.00 yuan yearly cap (0 = no
    /// such firm). Needs > 200_000 to cross.
    pub import_cap_firm_units: usize,
    /// Rural deliveries for the one outlet that crosses its 30,000.00 yuan yearly cap
    /// (0 = none). Needs > 100_000 to cross.
    pub rural_cap_outlet_units: usize,
    /// Topic of each type's messages; `Default` is SPEC §3's default topics.
    pub topics: SampleTopics,
}

impl Default for SampleConfig {
    fn default() -> SampleConfig {
        SampleConfig {
            seed: 1,
            events: 10_000,
            duplicate_permille: 30,
            malformed_permille: 15,
            ineligible_permille: 40,
            import_cap_firm_units: 0,
            rural_cap_outlet_units: 0,
            topics: SampleTopics::default(),
        }
    }
}

impl SampleConfig {
    /// The default mix plus one import firm and one rural outlet that cross their yearly caps
    /// ([`CAP_CROSSING_IMPORT_UNITS`], [`CAP_CROSSING_RURAL_UNITS`]).
    ///
    /// # Panics
    ///
    /// If `events < CAP_CROSSING_EVENTS_MIN` (350,000).
    pub fn with_cap_crossing(events: usize, seed: u64) -> SampleConfig {
        assert!(
            events >= CAP_CROSSING_EVENTS_MIN,
            "SampleConfig::with_cap_crossing needs events >= {CAP_CROSSING_EVENTS_MIN}: the two \
             cap crossers alone take {} messages; got events = {events}",
            CAP_CROSSING_IMPORT_UNITS + CAP_CROSSING_RURAL_UNITS
        );
        SampleConfig {
            seed,
            events,
            import_cap_firm_units: CAP_CROSSING_IMPORT_UNITS,
            rural_cap_outlet_units: CAP_CROSSING_RURAL_UNITS,
            ..SampleConfig::default()
        }
    }
}

/// The topic each type's messages are sent on (any topic may carry any type; about 1 % of
/// valid units travel on another type's topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleTopics {
    pub takeout: String,
    pub import: String,
    pub rural: String,
}

impl Default for SampleTopics {
    fn default() -> SampleTopics {
        SampleTopics {
            takeout: DEFAULT_TAKEOUT_TOPIC.to_owned(),
            import: DEFAULT_IMPORT_TOPIC.to_owned(),
            rural: DEFAULT_RURAL_TOPIC.to_owned(),
        }
    }
}

impl SampleTopics {
    /// The topic of `program`'s messages.
    pub fn for_program(&self, program: Program) -> &str {
        match program {
            Program::TakeoutOrder => &self.takeout,
            Program::ImportParcel => &self.import,
            Program::RuralDelivery => &self.rural,
            other => {
                unreachable!("the sample feed makes only the three per-unit programs, not {other}")
            }
        }
    }
}

/// Reference data and messages, each message with its expected outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleFeed {
    pub firms: Vec<Firm>,
    pub outlets: Vec<Outlet>,
    pub zones: Vec<Zone>,
    pub messages: Vec<SampleMessage>,
}

/// One Kafka message of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleMessage {
    pub topic: String,
    /// Random message key (producers key as they like); may be empty.
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// Event time used for time ordering (Unix seconds); malformed messages get a plausible
    /// one too.
    pub sort_time_unix_s: i64,
    /// What the ingester must make of this message when it reads the feed in its current
    /// order.
    pub expected: Expected,
    /// The number of the distinct valid unit this message carries, shared by the copy that
    /// creates it and all its duplicates; `None` for messages that can never become a unit.
    /// [`SampleFeed::reorder`] uses it to keep the `Unit` label on the first copy.
    pub unit_no: Option<u32>,
    /// Position of this message in the order [`generate`] returned.
    pub generated_index: usize,
}

/// The outcome a message must have (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// A new unit in the ledger.
    Unit(ExpectedUnit),
    /// A row in `rejected_events` with this reason.
    Rejected(Reason),
}

impl Expected {
    /// The unit, if the message must become one.
    pub fn unit(&self) -> Option<&ExpectedUnit> {
        match self {
            Expected::Unit(unit) => Some(unit),
            Expected::Rejected(_) => None,
        }
    }

    /// The reason, if the message must be rejected.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Expected::Unit(_) => None,
            Expected::Rejected(reason) => Some(*reason),
        }
    }
}

/// The unit a valid message creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedUnit {
    pub program: Program,
    /// `platform_id/order_id` for takeout orders, `waybill_no` otherwise.
    pub unit_key: String,
    /// Courier (takeout), firm (import) or outlet (rural).
    pub recipient_id: String,
    /// The zone's, firm's or outlet's district.
    pub district_code: String,
    /// First day of the local (Asia/Shanghai) month of `occurred_at`.
    pub month: NaiveDate,
    /// Nominal amount in fen: 100 for takeout and import, 30 for rural.
    pub amount_fen: i64,
}

/// An order of a feed's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedOrder {
    /// The order [`generate`] returned: months shuffled, each month in generation order.
    AsGenerated,
    /// By `sort_time_unix_s`, ties in generation order.
    TimeOrdered,
    /// A random permutation drawn from `seed`.
    Shuffled { seed: u64 },
}

impl SampleFeed {
    /// Puts the messages in `order` and relabels copies of a unit so the first one in the
    /// new order is the `Unit` and the others are `Duplicate`s.
    pub fn reorder(&mut self, order: FeedOrder) {
        match order {
            FeedOrder::AsGenerated => self.messages.sort_unstable_by_key(|m| m.generated_index),
            FeedOrder::TimeOrdered => self
                .messages
                .sort_unstable_by_key(|m| (m.sort_time_unix_s, m.generated_index)),
            FeedOrder::Shuffled { seed } => {
                self.messages.shuffle(&mut SmallRng::seed_from_u64(seed));
            }
        }
        relabel(&mut self.messages);
    }
}

/// Generates the feed `config` describes.
///
/// # Panics
///
/// If the shares add up to more than 1000 ‰, if the cap crossers and the shares need more
/// messages than `events`, or if `events` exceeds 100,000,000.
pub fn generate(config: &SampleConfig) -> SampleFeed {
    let counts = Counts::of(config);
    let world = World::build();
    let mut plan = counts.plan();
    let mut generator = Generator::new(&world, config);
    plan.shuffle(&mut generator.rng);
    for slot in plan {
        generator.emit(slot);
    }
    let messages = generator.finish();
    SampleFeed {
        firms: world.firms,
        outlets: world.outlets,
        zones: world.zones,
        messages,
    }
}

/// Gives the `Unit` label to the first copy of each unit in `messages` and `Duplicate` to
/// the later ones, by swapping labels between copies (they carry the same unit).
fn relabel(messages: &mut [SampleMessage]) {
    let Some(units) = messages.iter().filter_map(|m| m.unit_no).max() else {
        return;
    };
    let mut unit_position = vec![usize::MAX; units as usize + 1];
    for (position, message) in messages.iter().enumerate() {
        if let (Some(unit_no), Expected::Unit(_)) = (message.unit_no, &message.expected) {
            unit_position[unit_no as usize] = position;
        }
    }
    let mut seen = vec![false; units as usize + 1];
    for position in 0..messages.len() {
        let Some(unit_no) = messages[position].unit_no else {
            continue;
        };
        let unit_no = unit_no as usize;
        if seen[unit_no] {
            continue;
        }
        seen[unit_no] = true;
        let labelled = unit_position[unit_no];
        if labelled != position {
            // The labelled copy comes later: it would have been `seen` otherwise.
            assert!(labelled > position && labelled != usize::MAX);
            let (head, tail) = messages.split_at_mut(labelled);
            std::mem::swap(&mut head[position].expected, &mut tail[0].expected);
            unit_position[unit_no] = position;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Policy numbers, stated independently of `subsidy_ingester::policy`.

/// Nominal fen per takeout order and per imported parcel.
const YUAN_RATE_FEN: i64 = 100;
/// Nominal fen per rural delivery.
const RURAL_RATE_FEN: i64 = 30;
/// Months a major penalty keeps a firm ineligible.
const PENALTY_MONTHS: u32 = 12;
/// Months a rural outlet stays enrolled.
const ENROLLMENT_MONTHS: u32 = 36;

// ---------------------------------------------------------------------------------------
// Time: Unix seconds and Asia/Shanghai (UTC+8, no DST since 1991) civil dates.

const DAY_S: i64 = 86_400;
const SHANGHAI_OFFSET_S: i64 = 8 * 3600;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01 as (year, month, day).
const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = if month <= 2 {
        yoe + era * 400 + 1
    } else {
        yoe + era * 400
    };
    (year, month, day)
}

/// The instant of a Shanghai local wall-clock time, in Unix seconds.
const fn local(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> i64 {
    days_from_civil(year, month, day) * DAY_S + hour * 3600 + minute * 60 + second
        - SHANGHAI_OFFSET_S
}

/// First instant of the policy period: 2022-07-01T00:00:00+08:00.
const PERIOD_FIRST_S: i64 = local(2022, 7, 1, 0, 0, 0);
/// Last whole second of the policy period: 2025-12-31T23:59:59+08:00.
const PERIOD_LAST_S: i64 = local(2026, 1, 1, 0, 0, 0) - 1;

/// The Shanghai local date of an instant.
fn local_date(instant_s: i64) -> NaiveDate {
    let (y, m, d) = civil_from_days((instant_s + SHANGHAI_OFFSET_S).div_euclid(DAY_S));
    NaiveDate::from_ymd_opt(y as i32, m, d).expect("a date within chrono's range")
}

/// First day of the Shanghai local month of an instant.
fn local_month(instant_s: i64) -> NaiveDate {
    local_date(instant_s)
        .with_day(1)
        .expect("every month has a day 1")
}

/// Local midnight at the start of `date`, in Unix seconds.
fn midnight(date: NaiveDate) -> i64 {
    local(
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
        0,
        0,
        0,
    )
}

/// `date` plus whole months, clamped to the month's last day (2024-02-29 + 12 months is
/// 2025-02-28).
fn plus_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months))
        .expect("dates of the sample stay far from chrono's limits")
}

/// The same instant as a `+08:00` timestamp, as zones are written.
fn shanghai_time(instant_s: i64) -> DateTime<FixedOffset> {
    let offset = FixedOffset::east_opt(SHANGHAI_OFFSET_S as i32).expect("+08:00 is valid");
    DateTime::from_timestamp(instant_s, 0)
        .expect("an instant within chrono's range")
        .with_timezone(&offset)
}

/// The offset an `occurred_at` is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offset {
    /// `Z`.
    Utc,
    /// `+hh:mm` / `-hh:mm`, seconds east of UTC (`+00:00` for 0).
    East(i32),
}

const SHANGHAI: Offset = Offset::East(SHANGHAI_OFFSET_S as i32);
/// Offsets other than `Z` and `+08:00` that producers abroad or misconfigured hosts send.
const OTHER_OFFSETS_S: [i32; 8] = [
    0,
    -5 * 3600,
    9 * 3600,
    5 * 3600 + 1800,
    -(3 * 3600 + 1800),
    14 * 3600,
    -12 * 3600,
    3600,
];

/// Appends the RFC 3339 text of an instant written with `offset`, with milliseconds if
/// `millis` is set, to `text`.
fn write_timestamp(instant_s: i64, millis: Option<u16>, offset: Offset, text: &mut String) {
    let offset_s = match offset {
        Offset::Utc => 0,
        Offset::East(seconds) => i64::from(seconds),
    };
    let wall = instant_s + offset_s;
    let (y, m, d) = civil_from_days(wall.div_euclid(DAY_S));
    let second_of_day = wall.rem_euclid(DAY_S);
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    if let Some(millis) = millis {
        let _ = write!(text, ".{millis:03}");
    }
    match offset {
        Offset::Utc => text.push('Z'),
        Offset::East(seconds) => {
            let sign = if seconds < 0 { '-' } else { '+' };
            let magnitude = seconds.unsigned_abs();
            let _ = write!(
                text,
                "{sign}{:02}:{:02}",
                magnitude / 3600,
                magnitude / 60 % 60
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reference data.

/// The firms, in `firms.csv` order, one per line: id, district, the prefix of its order ids
/// (platforms) or waybill numbers, roles (`P` platform, `I` import, `R` rural), the Article 18
/// flags it fails (`L` legal entity, `C` licence, `M` monitoring, `-` none), its last major
/// penalty (`-` none) and its name.
const FIRM_TABLE: &str = "
meituan            330106 MT  P  - -          美团（杭州）外卖服务有限公司
eleme              330110 ELM P  - -          饿了么（杭州）信息技术有限公司
dada               330102 DD  P  - -          达达同城（杭州）网络科技有限公司
hema               330108 HM  P  - -          盒马（杭州）网络科技有限公司
shansong           330105 SS  P  - -          闪送（杭州）科技有限公司
kuaipao            330113 KP  P  M -          杭州快跑外卖服务有限公司
xiaoman-paotui     330114 XM  P  - 2022-10-10 杭州小满跑腿网络科技有限公司
sf-express         330108 SF  IR - -          顺丰速运（杭州）有限公司
ems                330102 EMS IR - -          中国邮政速递物流股份有限公司杭州市分公司
china-post         330105 CP  IR - -          中国邮政集团有限公司杭州市分公司
zto                330109 ZT  IR - -          杭州中通快递有限公司
yto                330110 YT  IR - -          杭州圆通速递有限公司
sto                330113 ST  R  - -          杭州申通快递有限公司
yunda              330109 YD  R  - -          杭州韵达快递服务有限公司
jd-logistics       330110 JD  IR - -          杭州京邦达物流科技有限公司
jtexpress          330114 JT  R  - -          杭州极兔速递有限公司
deppon             330106 DPK R  - -          德邦物流（杭州）有限公司
best-express       330110 BX  R  - -          杭州百世快递有限公司
cainiao            330110 LP  I  - -          浙江菜鸟供应链管理有限公司
zjs                330105 ZJS R  - -          杭州宅急送快运有限公司
kye                330108 KY  I  - -          杭州跨越速运有限公司
anneng             330111 AN  R  - -          杭州安能聚创物流有限公司
dhl-sinotrans      330109 DHL I  - -          中外运－敦豪国际航空快件有限公司杭州分公司
fedex              330109 FX  I  - -          联邦快递（中国）有限公司杭州分公司
ups                330109 1Z  I  - -          优比速包裹运送（广东）有限公司杭州分公司
hz-crossborder     330109 KJ  I  - -          杭州综试区跨境物流有限公司
yimi               330111 YM  R  - -          杭州壹米滴答供应链管理有限公司
chunan-cunyou      330127 CA  R  - -          淳安县千岛湖村邮快递服务有限公司
tonglu-xiangcun    330122 TL  R  - -          桐庐县乡村物流服务有限公司
jiande-nongwu      330182 JA  R  - -          建德市农村物流有限公司
linan-gongpei      330112 LA  R  - -          杭州市临安区农村快递共配有限公司
fuyang-xiangcun    330111 FY  R  - -          杭州市富阳区乡村快递服务有限公司
xiaoshan-cunyou    330109 XS  R  - -          杭州市萧山区村邮物流有限公司
qiantang-express   330114 QT  IR - 2021-06-01 杭州钱塘速运有限公司
xinghuo-express    330112 XH  IR L -          杭州星火快运有限公司
qianjiang-kuaidi   330102 QJ  IR C -          杭州钱江快递有限公司
xixi-courier       330106 XX  IR M -          杭州西溪速递有限公司
gongshu-quick      330105 GS  R  LC -         杭州拱墅快捷物流有限公司
yuanhang-logistics 330112 YH  IR - 2023-05-20 杭州远航物流有限公司
fuchun-express     330111 FC  IR - 2024-02-29 杭州富春快递有限公司
";

/// One row of [`FIRM_TABLE`].
struct FirmRow {
    firm: Firm,
    /// Prefix of the firm's order ids or waybill numbers.
    code: &'static str,
    /// `P`, `I` and/or `R`.
    roles: &'static str,
}

fn firm_rows() -> Vec<FirmRow> {
    FIRM_TABLE
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let columns: Vec<&'static str> = line.split_whitespace().collect();
            let &[id, district, code, roles, fails, penalty, name] = columns.as_slice() else {
                panic!("FIRM_TABLE: 7 columns expected in {line:?}");
            };
            let firm = Firm {
                firm_id: id.to_owned(),
                name: name.to_owned(),
                credit_code: credit_code(district, id),
                district_code: district.to_owned(),
                legal_entity: !fails.contains('L'),
                licensed: !fails.contains('C'),
                in_monitoring: !fails.contains('M'),
                last_major_penalty_on: (penalty != "-").then(|| {
                    penalty
                        .parse()
                        .expect("FIRM_TABLE: a YYYY-MM-DD penalty date")
                }),
            };
            FirmRow { firm, code, roles }
        })
        .collect()
}

/// The 13 district codes of SPEC §2.
const DISTRICTS: [&str; 13] = [
    "330102", "330105", "330106", "330108", "330109", "330110", "330111", "330112", "330113",
    "330114", "330122", "330127", "330182",
];

/// A firm id that is in no reference data, used by the outlet [`GHOST_OUTLET_ID`].
const GHOST_FIRM_ID: &str = "tonglu-ghost-kuaidi";
/// The outlet whose firm is not in `firms.csv`.
const GHOST_OUTLET_ID: &str = "RO-330122-900";
/// A zone whose window starts before the policy period (2022-06-25 … 2022-07-05).
const EARLY_ZONE_ID: &str = "Z-330106-0001";
/// A zone active around the first day of `xiaoman-paotui`'s penalty (2022-10-05 … 10-15).
const PENALTY_ZONE_ID: &str = "Z-330114-0001";
/// A zone whose first and last second carry valid units.
const EDGE_ZONE_ID: &str = "Z-330102-0001";
const EDGE_ZONE_FROM_S: i64 = local(2022, 11, 20, 6, 0, 0);
const EDGE_ZONE_TO_S: i64 = local(2022, 11, 27, 18, 0, 0);
/// Platform ids that are in no reference data.
const UNKNOWN_PLATFORMS: [&str; 3] = ["nobody-waimai", "meituan-hz", "ele.me"];
/// Firm ids that are in no reference data.
const UNKNOWN_FIRMS: [&str; 3] = ["global-post", "sf-express-intl", "dhl"];
/// Rural firms that deliver for outlets all over the city.
const NATIONAL_RURAL_FIRMS: [&str; 14] = [
    "zto",
    "yto",
    "sto",
    "yunda",
    "jtexpress",
    "best-express",
    "china-post",
    "ems",
    "yimi",
    "zjs",
    "anneng",
    "deppon",
    "sf-express",
    "jd-logistics",
];
/// Firms failing Article 18 that some random outlets belong to.
const INELIGIBLE_RURAL_FIRMS: [&str; 6] = [
    "xinghuo-express",
    "qianjiang-kuaidi",
    "xixi-courier",
    "gongshu-quick",
    "yuanhang-logistics",
    "fuchun-express",
];
/// Village delivery firms and their home district.
const VILLAGE_FIRMS: [(&str, &str); 6] = [
    ("330127", "chunan-cunyou"),
    ("330122", "tonglu-xiangcun"),
    ("330182", "jiande-nongwu"),
    ("330112", "linan-gongpei"),
    ("330111", "fuyang-xiangcun"),
    ("330109", "xiaoshan-cunyou"),
];
/// Districts of random outlets, with weights (the rural counties weigh most).
const OUTLET_DISTRICTS: [(&str, u32); 10] = [
    ("330127", 5),
    ("330122", 5),
    ("330182", 5),
    ("330112", 4),
    ("330111", 4),
    ("330109", 2),
    ("330110", 2),
    ("330113", 1),
    ("330114", 1),
    ("330106", 1),
];
/// Outlets with a role in the catalogues: id, firm, district, enrollment date.
/// An outlet of [`SPECIAL_OUTLETS`]: id, firm, district, enrollment date.
type SpecialOutlet = (&'static str, &'static str, &'static str, Ymd);

const SPECIAL_OUTLETS: [SpecialOutlet; 8] = [
    // Enrolled 2022-03-15: its last eligible day is 2025-03-14.
    ("RO-330127-001", "zto", "330127", (2022, 3, 15)),
    // The rural cap crosser, enrolled for all of 2023-06 … 2026-05.
    (CAP_RURAL_OUTLET_ID, "yunda", "330127", (2023, 6, 1)),
    // Enrolled inside the period.
    ("RO-330182-001", "yto", "330182", (2023, 9, 1)),
    // Enrolled 2019-10-08: its three years end 2022-10-07, inside the period.
    ("RO-330122-001", "tonglu-xiangcun", "330122", (2019, 10, 8)),
    // A firm that is not a legal entity, enrolled inside the period.
    ("RO-330112-001", "xinghuo-express", "330112", (2023, 3, 1)),
    // A firm with a penalty 2023-05-20 … 2024-05-19.
    (
        "RO-330112-002",
        "yuanhang-logistics",
        "330112",
        (2022, 1, 10),
    ),
    // A firm with a penalty on a leap day.
    ("RO-330111-001", "fuchun-express", "330111", (2023, 11, 20)),
    (GHOST_OUTLET_ID, GHOST_FIRM_ID, "330122", (2022, 5, 1)),
];
/// Random outlets besides [`SPECIAL_OUTLETS`].
const RANDOM_OUTLETS: usize = 192;
/// Random zones besides the three special ones.
const RANDOM_ZONES: usize = 97;
/// Seed of the reference data, which is the same for every feed.
const REFDATA_SEED: u64 = 0x4841_4e47_5a48_4f55; // "HANGZHOU"
/// Couriers per platform.
const COURIERS_PER_PLATFORM: u32 = 3_000;

/// Unified social credit code (GB 32100) characters and check weights.
const CREDIT_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const CREDIT_WEIGHTS: [usize; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// An 18-character credit code: `91` (enterprise), the district, 9 characters derived from
/// the firm id, and a valid GB 32100 check character.
fn credit_code(district: &str, id: &str) -> String {
    let mut hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut code = format!("91{district}");
    for _ in 0..9 {
        code.push(char::from(CREDIT_CHARS[(hash % 31) as usize]));
        hash /= 31;
    }
    let sum: usize = code
        .bytes()
        .zip(CREDIT_WEIGHTS)
        .map(|(c, w)| CREDIT_CHARS.iter().position(|&x| x == c).unwrap_or(0) * w)
        .sum();
    let check = (31 - sum % 31) % 31;
    code.push(char::from(CREDIT_CHARS[check]));
    code
}

/// A date as (year, month, day).
type Ymd = (i32, u32, u32);

fn ymd((y, m, d): Ymd) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid constant date")
}

/// A uniformly random day in `[first, last]`.
fn random_day(rng: &mut SmallRng, first: NaiveDate, last: NaiveDate) -> NaiveDate {
    let span = (last - first).num_days();
    first + chrono::Duration::days(rng.gen_range(0..=span))
}

/// Reference data plus the indices and lists the generator draws from.
struct World {
    firms: Vec<Firm>,
    outlets: Vec<Outlet>,
    zones: Vec<Zone>,
    /// `[active_from, active_to]` of each zone, Unix seconds.
    zone_spans: Vec<(i64, i64)>,
    /// Prefix of each firm's order ids or waybill numbers.
    codes: Vec<&'static str>,
    firm_index: HashMap<String, usize>,
    outlet_index: HashMap<String, usize>,
    zone_index: HashMap<String, usize>,
    /// Platforms valid takeout orders are drawn from, repeated by weight.
    platform_draw: Vec<usize>,
    /// Firms valid import parcels are drawn from (eligible except during a penalty).
    import_firms: Vec<usize>,
    /// Outlets valid deliveries are drawn from: known firm with all flags, enrolled for
    /// part of the period.
    rural_outlets: Vec<usize>,
    /// Outlets of firms failing an Article 18 flag.
    flagged_outlets: Vec<usize>,
    /// Zones active during `xiaoman-paotui`'s penalty.
    penalty_zones: Vec<usize>,
    /// Local month starts 2020-01 … 2027-12, Unix seconds.
    month_starts: Vec<i64>,
}

impl World {
    fn build() -> World {
        let rows = firm_rows();
        let firm_index: HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| (row.firm.firm_id.clone(), i))
            .collect();
        let all_flags = |f: &Firm| f.legal_entity && f.licensed && f.in_monitoring;
        let import_firms = (0..rows.len())
            .filter(|&i| rows[i].roles.contains('I') && all_flags(&rows[i].firm))
            .collect();
        let codes = rows.iter().map(|row| row.code).collect();
        let firms: Vec<Firm> = rows.into_iter().map(|row| row.firm).collect();
        let mut rng = SmallRng::seed_from_u64(REFDATA_SEED);
        let outlets = build_outlets(&mut rng);
        let zones = build_zones(&mut rng);
        let zone_spans: Vec<(i64, i64)> = zones
            .iter()
            .map(|z| (z.active_from.timestamp(), z.active_to.timestamp()))
            .collect();
        let outlet_index = outlets
            .iter()
            .enumerate()
            .map(|(i, o)| (o.outlet_id.clone(), i))
            .collect();
        let zone_index = zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.zone_id.clone(), i))
            .collect();
        let platform_draw = [
            ("meituan", 40),
            ("eleme", 35),
            ("dada", 8),
            ("hema", 7),
            ("shansong", 6),
            ("xiaoman-paotui", 4),
        ]
        .iter()
        .flat_map(|&(id, weight)| std::iter::repeat_n(firm_index[id], weight))
        .collect();
        let firm_of = |o: &Outlet| firm_index.get(o.firm_id.as_str()).map(|&i| &firms[i]);
        let rural_outlets = (0..outlets.len())
            .filter(|&i| {
                let o = &outlets[i];
                let (from, to) = enrollment_span(o);
                firm_of(o).is_some_and(all_flags) && from <= PERIOD_LAST_S && to >= PERIOD_FIRST_S
            })
            .collect();
        let flagged_outlets = (0..outlets.len())
            .filter(|&i| firm_of(&outlets[i]).is_some_and(|f| !all_flags(f)))
            .collect();
        let (penalty_from, penalty_to) = penalty_span(ymd((2022, 10, 10)));
        let penalty_zones = (0..zones.len())
            .filter(|&i| zone_spans[i].0 <= penalty_to && zone_spans[i].1 >= penalty_from)
            .collect();
        let month_starts = (2020..2028)
            .flat_map(|y| (1..=12).map(move |m| local(y, m, 1, 0, 0, 0)))
            .collect();
        World {
            firms,
            outlets,
            zones,
            zone_spans,
            codes,
            firm_index,
            outlet_index,
            zone_index,
            platform_draw,
            import_firms,
            rural_outlets,
            flagged_outlets,
            penalty_zones,
            month_starts,
        }
    }

    fn firm(&self, id: &str) -> usize {
        self.firm_index[id]
    }

    fn outlet(&self, id: &str) -> usize {
        self.outlet_index[id]
    }

    fn zone(&self, id: &str) -> usize {
        self.zone_index[id]
    }

    /// Prefix of a firm's ids; `X` for firms not in the reference data.
    fn code_of(&self, firm_id: &str) -> &'static str {
        self.firm_index.get(firm_id).map_or("X", |&i| self.codes[i])
    }

    /// Returns true if and only if firm `firm` passes Article 18 at `instant_s`.
    fn firm_eligible(&self, firm: usize, instant_s: i64) -> bool {
        let f = &self.firms[firm];
        let flags = f.legal_entity && f.licensed && f.in_monitoring;
        let penalized = f.last_major_penalty_on.is_some_and(|p| {
            let (from, to) = penalty_span(p);
            (from..=to).contains(&instant_s)
        });
        flags && !penalized
    }

    /// The instants an outlet's deliveries are subsidized, clipped to the policy period.
    fn eligible_span(&self, outlet: usize) -> (i64, i64) {
        let (from, to) = enrollment_span(&self.outlets[outlet]);
        (from.max(PERIOD_FIRST_S), to.min(PERIOD_LAST_S))
    }
}

/// First and last second a penalty on `penalty_on` makes its firm ineligible.
fn penalty_span(penalty_on: NaiveDate) -> (i64, i64) {
    (
        midnight(penalty_on),
        midnight(plus_months(penalty_on, PENALTY_MONTHS)) - 1,
    )
}

/// First and last second of an outlet's three enrolled years.
fn enrollment_span(outlet: &Outlet) -> (i64, i64) {
    (
        midnight(outlet.enrolled_on),
        midnight(plus_months(outlet.enrolled_on, ENROLLMENT_MONTHS)) - 1,
    )
}

fn build_outlets(rng: &mut SmallRng) -> Vec<Outlet> {
    let village = |rng: &mut SmallRng, district: &str| {
        format!(
            "{district}{:03}{:03}",
            rng.gen_range(100..=125),
            rng.gen_range(200..=240)
        )
    };
    let mut outlets: Vec<Outlet> = SPECIAL_OUTLETS
        .iter()
        .map(|&(id, firm_id, district, enrolled)| Outlet {
            outlet_id: id.to_owned(),
            firm_id: firm_id.to_owned(),
            district_code: district.to_owned(),
            village_code: village(rng, district),
            enrolled_on: ymd(enrolled),
        })
        .collect();
    let weights_total: u32 = OUTLET_DISTRICTS.iter().map(|d| d.1).sum();
    let mut numbers: HashMap<&str, u32> = HashMap::new();
    for _ in 0..RANDOM_OUTLETS {
        let mut pick = rng.gen_range(0..weights_total);
        let district = OUTLET_DISTRICTS
            .iter()
            .find(|d| {
                let hit = pick < d.1;
                pick = pick.saturating_sub(d.1);
                hit
            })
            .expect("pick < total weight")
            .0;
        let number = numbers.entry(district).or_insert(10);
        *number += 1;
        let village_firm = VILLAGE_FIRMS.iter().find(|v| v.0 == district);
        let roll = rng.gen_range(0..100);
        let firm_id = match village_firm {
            Some(v) if roll < 30 => v.1,
            _ if roll >= 92 => {
                INELIGIBLE_RURAL_FIRMS[rng.gen_range(0..INELIGIBLE_RURAL_FIRMS.len())]
            }
            _ => NATIONAL_RURAL_FIRMS[rng.gen_range(0..NATIONAL_RURAL_FIRMS.len())],
        };
        outlets.push(Outlet {
            outlet_id: format!("RO-{district}-{number:03}"),
            firm_id: firm_id.to_owned(),
            district_code: district.to_owned(),
            village_code: village(rng, district),
            enrolled_on: random_day(rng, ymd((2019, 8, 1)), ymd((2024, 9, 30))),
        });
    }
    outlets
}

fn build_zones(rng: &mut SmallRng) -> Vec<Zone> {
    let zone = |id: String, zone_type, district: &str, from_s: i64, to_s: i64| Zone {
        zone_id: id,
        zone_type,
        district_code: district.to_owned(),
        active_from: shanghai_time(from_s),
        active_to: shanghai_time(to_s),
    };
    let mut zones = vec![
        zone(
            EARLY_ZONE_ID.to_owned(),
            ZoneType::Sealed,
            "330106",
            local(2022, 6, 25, 0, 0, 0),
            local(2022, 7, 5, 23, 59, 59),
        ),
        zone(
            PENALTY_ZONE_ID.to_owned(),
            ZoneType::Controlled,
            "330114",
            local(2022, 10, 5, 8, 0, 0),
            local(2022, 10, 15, 20, 0, 0),
        ),
        zone(
            EDGE_ZONE_ID.to_owned(),
            ZoneType::Controlled,
            "330102",
            EDGE_ZONE_FROM_S,
            EDGE_ZONE_TO_S,
        ),
    ];
    let mut numbers: HashMap<&str, u32> = HashMap::new();
    for _ in 0..RANDOM_ZONES {
        let district = DISTRICTS[rng.gen_range(0..DISTRICTS.len())];
        let number = numbers.entry(district).or_insert(1);
        *number += 1;
        let zone_type = match rng.gen_range(0..10) {
            0..=1 => ZoneType::Sealed,
            2..=4 => ZoneType::Controlled,
            _ => ZoneType::Prevention,
        };
        let day = if rng.gen_ratio(85, 100) {
            random_day(rng, ymd((2022, 7, 2)), ymd((2022, 12, 20)))
        } else {
            random_day(rng, ymd((2023, 1, 5)), ymd((2023, 11, 30)))
        };
        let from_s = midnight(day) + rng.gen_range(0..24) * 3600 + rng.gen_range(0..2) * 1800;
        let to_s = from_s + rng.gen_range(3..=14) * DAY_S + rng.gen_range(0..12) * 3600 - 1;
        zones.push(zone(
            format!("Z-{district}-{number:04}"),
            zone_type,
            district,
            from_s,
            to_s,
        ));
    }
    zones
}

// ---------------------------------------------------------------------------------------
// Payloads.

/// A JSON value as the generator writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Json<'a> {
    /// A string, escaped as needed.
    Str(&'a str),
    Bool(bool),
    /// JSON text written as is (`null`, `1`, `["a"]`, …).
    Raw(&'a str),
}

/// The fields of one payload object, in writing order.
type Fields<'a> = Vec<(&'a str, Json<'a>)>;

fn write_json_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    if !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x00..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

fn write_json_object(fields: &[(&str, Json<'_>)], out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(name, out);
        out.push(b':');
        match value {
            Json::Str(text) => write_json_string(text, out),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Raw(text) => out.extend_from_slice(text.as_bytes()),
        }
    }
    out.push(b'}');
}

/// A change that breaks a well-formed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Drop the field.
    Remove(&'static str),
    /// Replace the field's value, or add the field if it is missing.
    Set(&'static str, Json<'static>),
}

fn apply_fault(fields: &mut Fields<'_>, fault: Fault) {
    match fault {
        Fault::Remove(name) => fields.retain(|(n, _)| *n != name),
        Fault::Set(name, value) => match fields.iter_mut().find(|(n, _)| *n == name) {
            Some(field) => field.1 = value,
            None => fields.push((name, value)),
        },
    }
}

/// Unknown fields producers add; the ingester must ignore them.
const EXTRA_FIELDS: [(&str, Json<'static>); 7] = [
    ("schema_version", Json::Raw("1")),
    ("source", Json::Str("edi-gateway")),
    ("remark", Json::Str("无接触配送")),
    (
        "meta",
        Json::Raw(r#"{"retry":0,"region":"hz","tags":["a","b"]}"#),
    ),
    ("amount", Json::Raw("1.00")),
    ("producer", Json::Str("hz-feed/2.3 (batch)")),
    ("weight_kg", Json::Raw("0.35")),
];

/// Fields of other types, with values that would be invalid there: ignored in an import
/// parcel, whose type does not have them.
const FOREIGN_FIELDS: [(&str, Json<'static>); 3] = [
    ("order_id", Json::Raw("12345")),
    ("courier_released", Json::Str("yes")),
    ("zone_id", Json::Str("not an id")),
];

/// How a valid payload is laid out beyond field order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Plain,
    /// Whitespace before and after the object (valid JSON).
    Whitespace,
    /// [`FOREIGN_FIELDS`] added.
    ForeignFields,
}

/// A well-formed event before it is written: everything but `event_id` and the offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Draft {
    instant_s: i64,
    millis: Option<u16>,
    body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    Takeout {
        platform_id: String,
        order_id: String,
        courier_id: String,
        zone_id: String,
        courier_released: bool,
    },
    Import {
        firm_id: String,
        waybill_no: String,
        channel: &'static str,
    },
    Rural {
        firm_id: String,
        outlet_id: String,
        waybill_no: String,
    },
}

impl Draft {
    fn program(&self) -> Program {
        match self.body {
            Body::Takeout { .. } => Program::TakeoutOrder,
            Body::Import { .. } => Program::ImportParcel,
            Body::Rural { .. } => Program::RuralDelivery,
        }
    }

    /// The order id or waybill number.
    fn unit_id(&self) -> &str {
        match &self.body {
            Body::Takeout { order_id, .. } => order_id,
            Body::Import { waybill_no, .. } | Body::Rural { waybill_no, .. } => waybill_no,
        }
    }

    fn set_unit_id(&mut self, id: &str) {
        match &mut self.body {
            Body::Takeout { order_id, .. } => *order_id = id.to_owned(),
            Body::Import { waybill_no, .. } | Body::Rural { waybill_no, .. } => {
                *waybill_no = id.to_owned();
            }
        }
    }

    fn push_fields<'a>(&'a self, fields: &mut Fields<'a>) {
        match &self.body {
            Body::Takeout {
                platform_id,
                order_id,
                courier_id,
                zone_id,
                courier_released,
            } => fields.extend([
                ("platform_id", Json::Str(platform_id)),
                ("order_id", Json::Str(order_id)),
                ("courier_id", Json::Str(courier_id)),
                ("zone_id", Json::Str(zone_id)),
                ("courier_released", Json::Bool(*courier_released)),
            ]),
            Body::Import {
                firm_id,
                waybill_no,
                channel,
            } => fields.extend([
                ("firm_id", Json::Str(firm_id)),
                ("waybill_no", Json::Str(waybill_no)),
                ("channel", Json::Str(channel)),
            ]),
            Body::Rural {
                firm_id,
                outlet_id,
                waybill_no,
            } => fields.extend([
                ("firm_id", Json::Str(firm_id)),
                ("outlet_id", Json::Str(outlet_id)),
                ("waybill_no", Json::Str(waybill_no)),
            ]),
        }
    }
}

/// A valid unit in 32 bytes, from which its [`Draft`] can be rebuilt for duplicates.
#[derive(Debug, Clone, Copy)]
struct UnitSpec {
    instant_s: i64,
    millis: Option<u16>,
    serial: u64,
    unit_no: u32,
    what: What,
}

#[derive(Debug, Clone, Copy)]
enum What {
    Takeout {
        platform: u16,
        zone: u16,
        courier: u32,
    },
    Import {
        firm: u16,
        mail: bool,
    },
    Rural {
        outlet: u16,
    },
}

// ---------------------------------------------------------------------------------------
// Catalogues.

const TAKEOUT: Program = Program::TakeoutOrder;
const IMPORT_P: Program = Program::ImportParcel;
const RURAL_P: Program = Program::RuralDelivery;
const MALFORMED_JSON: Reason = Reason::MalformedJson;
const SCHEMA: Reason = Reason::SchemaViolation;
const UNKNOWN_TYPE: Reason = Reason::UnknownType;

/// A 64-character identifier: the longest valid one.
const ID_64: &str = concat!(
    "JD",
    "1234567890",
    "1234567890",
    "1234567890",
    "1234567890",
    "1234567890",
    "1234567890",
    "12"
);
/// A 65-character identifier: one too long.
const ID_65: &str = concat!(
    "SF",
    "1234567890",
    "1234567890",
    "1234567890",
    "1234567890",
    "1234567890",
    "1234567890",
    "123"
);
/// A waybill first sent with the wrong firm (`outlet_firm_mismatch`), then corrected.
const CORRECTED_WAYBILL: &str = "ZT-FIX-0001";
const CORRECTED_AT_S: i64 = local(2024, 6, 15, 10, 0, 0);
/// A waybill that is a valid unit and also sent with a date outside the period.
const REUSED_WAYBILL: &str = "SF-FIX-0001";
const UNKNOWN_OUTLET_ID: &str = "RO-330127-999";

/// One way to break SPEC §3 and the reason it must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Malformed {
    /// These exact bytes.
    Bytes(&'static [u8], Reason),
    /// A payload with a `remark` field holding these invalid UTF-8 bytes.
    BadUtf8(&'static [u8]),
    /// A payload cut short.
    Truncated,
    /// A payload followed by this text.
    Trailing(&'static str),
    /// Two payloads back to back.
    Concatenated,
    /// A payload inside a JSON array.
    InArray,
    /// A payload of this type with these faults.
    Fields(Program, &'static [Fault], Reason),
    /// Faults plus a date outside the period: the schema check must win.
    FieldsOutsidePeriod(Program, &'static [Fault]),
}

impl Malformed {
    fn reason(self) -> Reason {
        match self {
            Malformed::Bytes(_, reason) | Malformed::Fields(_, _, reason) => reason,
            Malformed::BadUtf8(_)
            | Malformed::Truncated
            | Malformed::Trailing(_)
            | Malformed::Concatenated => MALFORMED_JSON,
            Malformed::InArray | Malformed::FieldsOutsidePeriod(..) => SCHEMA,
        }
    }
}

/// Shorthands for the catalogue.
const fn set(name: &'static str, value: Json<'static>) -> Fault {
    Fault::Set(name, value)
}
const fn text(value: &'static str) -> Json<'static> {
    Json::Str(value)
}
const fn raw(value: &'static str) -> Json<'static> {
    Json::Raw(value)
}

/// Every malformed kind, in the order the first malformed messages of a feed use them.
const MALFORMED: [Malformed; 74] = {
    use Fault::Remove;
    use Malformed::{Bytes, Fields};
    [
        // 1. malformed_json
        Bytes(b"", MALFORMED_JSON),
        Malformed::BadUtf8(b"\xce\xde\xbd\xd3\xb4\xa5"), // "无接触" in GBK
        Malformed::BadUtf8(b"\xff"),
        Malformed::BadUtf8(b"\xc0\xaf"),     // overlong '/'
        Malformed::BadUtf8(b"\xed\xa0\x80"), // an encoded surrogate
        Bytes(
            b"type=import_parcel&firm_id=sf-express&waybill_no=SF1",
            MALFORMED_JSON,
        ),
        Bytes(
            b"<event><type>rural_delivery</type></event>",
            MALFORMED_JSON,
        ),
        Bytes(b"{type: 'takeout_order', order_id: '1'}", MALFORMED_JSON),
        Bytes(
            b"{\"type\":\"import_parcel\",\"waybill_no\":NaN}",
            MALFORMED_JSON,
        ),
        Malformed::Truncated,
        Malformed::Trailing("garbage"),
        Malformed::Trailing("}"),
        Malformed::Concatenated,
        // 2. schema_violation: not an object, `type` missing or not a string
        Bytes(b"[]", SCHEMA),
        Malformed::InArray,
        Bytes(b"\"takeout_order\"", SCHEMA),
        Bytes(b"42", SCHEMA),
        Bytes(b"null", SCHEMA),
        Bytes(b"true", SCHEMA),
        Bytes(b"{}", SCHEMA),
        Fields(TAKEOUT, &[Remove("type")], SCHEMA),
        Fields(IMPORT_P, &[set("type", raw("1"))], SCHEMA),
        Fields(RURAL_P, &[set("type", raw("null"))], SCHEMA),
        Fields(TAKEOUT, &[set("type", raw(r#"["takeout_order"]"#))], SCHEMA),
        // 3. unknown_type, even with the fields broken too
        Fields(TAKEOUT, &[set("type", text("takeout"))], UNKNOWN_TYPE),
        Fields(
            IMPORT_P,
            &[set("type", text("IMPORT_PARCEL"))],
            UNKNOWN_TYPE,
        ),
        Fields(RURAL_P, &[set("type", text(""))], UNKNOWN_TYPE),
        Fields(
            IMPORT_P,
            &[
                set("type", text("refund")),
                Remove("occurred_at"),
                set("waybill_no", raw("7")),
            ],
            UNKNOWN_TYPE,
        ),
        // 4. schema_violation: each field of each type missing
        Fields(TAKEOUT, &[Remove("event_id")], SCHEMA),
        Fields(TAKEOUT, &[Remove("occurred_at")], SCHEMA),
        Fields(TAKEOUT, &[Remove("platform_id")], SCHEMA),
        Fields(TAKEOUT, &[Remove("order_id")], SCHEMA),
        Fields(TAKEOUT, &[Remove("courier_id")], SCHEMA),
        Fields(TAKEOUT, &[Remove("zone_id")], SCHEMA),
        Fields(TAKEOUT, &[Remove("courier_released")], SCHEMA),
        Fields(IMPORT_P, &[Remove("event_id")], SCHEMA),
        Fields(IMPORT_P, &[Remove("occurred_at")], SCHEMA),
        Fields(IMPORT_P, &[Remove("firm_id")], SCHEMA),
        Fields(IMPORT_P, &[Remove("waybill_no")], SCHEMA),
        Fields(IMPORT_P, &[Remove("channel")], SCHEMA),
        Fields(RURAL_P, &[Remove("event_id")], SCHEMA),
        Fields(RURAL_P, &[Remove("occurred_at")], SCHEMA),
        Fields(RURAL_P, &[Remove("firm_id")], SCHEMA),
        Fields(RURAL_P, &[Remove("outlet_id")], SCHEMA),
        Fields(RURAL_P, &[Remove("waybill_no")], SCHEMA),
        // mistyped
        Fields(TAKEOUT, &[set("courier_released", text("true"))], SCHEMA),
        Fields(TAKEOUT, &[set("courier_released", raw("1"))], SCHEMA),
        Fields(TAKEOUT, &[set("order_id", raw("20230112345"))], SCHEMA),
        Fields(TAKEOUT, &[set("event_id", raw("12345"))], SCHEMA),
        Fields(IMPORT_P, &[set("channel", raw("1"))], SCHEMA),
        Fields(
            IMPORT_P,
            &[set("waybill_no", raw(r#"["SF1234567890"]"#))],
            SCHEMA,
        ),
        Fields(IMPORT_P, &[set("occurred_at", raw("1672531200"))], SCHEMA),
        Fields(
            RURAL_P,
            &[set("outlet_id", raw(r#"{"id":"RO-330127-001"}"#))],
            SCHEMA,
        ),
        Fields(RURAL_P, &[set("firm_id", raw("true"))], SCHEMA),
        // null
        Fields(TAKEOUT, &[set("zone_id", raw("null"))], SCHEMA),
        Fields(TAKEOUT, &[set("courier_released", raw("null"))], SCHEMA),
        Fields(IMPORT_P, &[set("channel", raw("null"))], SCHEMA),
        Fields(RURAL_P, &[set("waybill_no", raw("null"))], SCHEMA),
        Fields(RURAL_P, &[set("occurred_at", raw("null"))], SCHEMA),
        // timestamps: no offset, date only, impossible, not a timestamp
        Fields(
            IMPORT_P,
            &[set("occurred_at", text("2023-03-01T10:00:00"))],
            SCHEMA,
        ),
        Fields(RURAL_P, &[set("occurred_at", text("2023-03-01"))], SCHEMA),
        Fields(
            TAKEOUT,
            &[set("occurred_at", text("2022-09-31T10:00:00+08:00"))],
            SCHEMA,
        ),
        Fields(
            IMPORT_P,
            &[set("occurred_at", text("2023-03-01T25:00:00Z"))],
            SCHEMA,
        ),
        Fields(RURAL_P, &[set("occurred_at", text("yesterday"))], SCHEMA),
        // bad identifiers: space, '/', 65 characters, empty, non-ASCII, control, others
        Fields(TAKEOUT, &[set("order_id", text("MT 2023 0001"))], SCHEMA),
        Fields(TAKEOUT, &[set("platform_id", text("meituan/hz"))], SCHEMA),
        Fields(IMPORT_P, &[set("waybill_no", text(ID_65))], SCHEMA),
        Fields(RURAL_P, &[set("outlet_id", text(""))], SCHEMA),
        Fields(TAKEOUT, &[set("courier_id", text("骑手-0001"))], SCHEMA),
        Fields(
            RURAL_P,
            &[set("waybill_no", text("YT\t1234567890"))],
            SCHEMA,
        ),
        Fields(RURAL_P, &[set("firm_id", text("zto@hz"))], SCHEMA),
        // channel not mail/express
        Fields(IMPORT_P, &[set("channel", text("air"))], SCHEMA),
        Fields(IMPORT_P, &[set("channel", text("Mail"))], SCHEMA),
        // schema_violation wins over outside_policy_period
        Malformed::FieldsOutsidePeriod(IMPORT_P, &[set("waybill_no", text("SF 0001"))]),
    ]
};

/// A message with fixed ids and instant: one edge case of a catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scripted {
    program: Program,
    /// The platform (takeout) or the firm.
    actor: &'static str,
    /// The zone (takeout) or the outlet (rural); empty for imports.
    place: &'static str,
    at_s: i64,
    millis: Option<u16>,
    offset: Offset,
    courier_released: bool,
    /// A fixed order id or waybill number instead of a fresh one.
    unit_id: Option<&'static str>,
    layout: Layout,
    /// Valid edges only: one of the first duplicates re-sends it, written with the other of
    /// `Z` / `+08:00` and on another type's topic (the same instant is the same unit).
    resent: bool,
    /// Ineligible edges only: the reason the message must get.
    reason: Option<Reason>,
}

const fn scripted(
    program: Program,
    actor: &'static str,
    place: &'static str,
    at_s: i64,
    offset: Offset,
) -> Scripted {
    Scripted {
        program,
        actor,
        place,
        at_s,
        millis: None,
        offset,
        courier_released: true,
        unit_id: None,
        layout: Layout::Plain,
        resent: false,
        reason: None,
    }
}

const fn takeout(
    platform: &'static str,
    zone: &'static str,
    at_s: i64,
    offset: Offset,
) -> Scripted {
    scripted(Program::TakeoutOrder, platform, zone, at_s, offset)
}

const fn import(firm: &'static str, at_s: i64, offset: Offset) -> Scripted {
    scripted(Program::ImportParcel, firm, "", at_s, offset)
}

const fn rural(firm: &'static str, outlet: &'static str, at_s: i64, offset: Offset) -> Scripted {
    scripted(Program::RuralDelivery, firm, outlet, at_s, offset)
}

impl Scripted {
    const fn not_released(self) -> Scripted {
        Scripted {
            courier_released: false,
            ..self
        }
    }

    const fn id(self, unit_id: &'static str) -> Scripted {
        Scripted {
            unit_id: Some(unit_id),
            ..self
        }
    }

    const fn millis(self, millis: u16) -> Scripted {
        Scripted {
            millis: Some(millis),
            ..self
        }
    }

    const fn layout(self, layout: Layout) -> Scripted {
        Scripted { layout, ..self }
    }

    const fn rejected(self, reason: Reason) -> Scripted {
        Scripted {
            reason: Some(reason),
            ..self
        }
    }

    const fn resent(self) -> Scripted {
        Scripted {
            resent: true,
            ..self
        }
    }
}

const UTC: Offset = Offset::Utc;
const OUTLET_A: &str = "RO-330127-001";

/// Valid units on an edge: the first valid messages of a feed.
const EDGES: [Scripted; 31] = [
    // SPEC §2's own example: 2023-12-31T16:30:00Z is January 2024.
    import("cainiao", local(2024, 1, 1, 0, 30, 0), UTC).resent(),
    // The first and last second of the policy period.
    takeout("meituan", EARLY_ZONE_ID, PERIOD_FIRST_S, UTC).resent(),
    import("sf-express", PERIOD_FIRST_S, SHANGHAI),
    rural("yunda", CAP_RURAL_OUTLET_ID, PERIOD_LAST_S, UTC),
    import("ems", PERIOD_LAST_S, SHANGHAI),
    // Written in another month than the local one: 2023-05-31T11:10:00-05:00 is June 1,
    // 2023-09-01T05:00:00+14:00 is August 31, 2023-04-30T04:00:00-12:00 is May 1.
    import(
        "jd-logistics",
        local(2023, 6, 1, 0, 10, 0),
        Offset::East(-5 * 3600),
    ),
    import("zto", local(2023, 8, 31, 23, 0, 0), Offset::East(14 * 3600)),
    rural(
        "zto",
        OUTLET_A,
        local(2023, 5, 1, 0, 0, 0),
        Offset::East(-12 * 3600),
    )
    .resent(),
    // 2023-07-31T15:59:59.999Z is still July; 2024-02-29T16:00:00Z is March 1.
    import("yto", local(2023, 7, 31, 23, 59, 59), UTC).millis(999),
    import("yto", local(2024, 3, 1, 0, 0, 0), UTC).resent(),
    // A zone's first and last second (both inclusive).
    takeout("eleme", EDGE_ZONE_ID, EDGE_ZONE_FROM_S, UTC),
    takeout("eleme", EDGE_ZONE_ID, EDGE_ZONE_TO_S, SHANGHAI),
    // The last second before a penalty, the first after one, a penalty long over.
    takeout(
        "xiaoman-paotui",
        PENALTY_ZONE_ID,
        local(2022, 10, 9, 23, 59, 59),
        SHANGHAI,
    ),
    import("yuanhang-logistics", local(2023, 5, 19, 23, 59, 59), UTC),
    import("yuanhang-logistics", local(2024, 5, 20, 0, 0, 0), UTC),
    import("fuchun-express", local(2024, 2, 28, 23, 59, 59), SHANGHAI),
    // 2024-02-29 + 1 year is 2025-02-28 (clamped, as `policy::add_months`): eligible again.
    import("fuchun-express", local(2025, 2, 28, 0, 0, 0), SHANGHAI),
    import("qiantang-express", local(2022, 7, 1, 9, 30, 0), SHANGHAI),
    // An outlet's last and first enrolled day, and the last of one enrolled in 2019.
    rural("zto", OUTLET_A, local(2025, 3, 14, 23, 59, 59), SHANGHAI),
    rural("yto", "RO-330182-001", local(2023, 9, 1, 0, 0, 0), UTC),
    rural(
        "tonglu-xiangcun",
        "RO-330122-001",
        local(2022, 10, 7, 23, 59, 59),
        SHANGHAI,
    ),
    // Waybills also sent invalid: first with the wrong firm, and with a date out of the period.
    rural("zto", OUTLET_A, CORRECTED_AT_S, SHANGHAI).id(CORRECTED_WAYBILL),
    import("sf-express", local(2024, 9, 9, 9, 9, 9), SHANGHAI).id(REUSED_WAYBILL),
    // Identifiers of 64 and 1 characters, and with all the punctuation allowed.
    import("jd-logistics", local(2024, 4, 2, 14, 0, 0), UTC).id(ID_64),
    takeout(
        "dada",
        EDGE_ZONE_ID,
        local(2022, 11, 23, 12, 0, 0),
        SHANGHAI,
    )
    .id("7"),
    rural(
        "yunda",
        CAP_RURAL_OUTLET_ID,
        local(2024, 6, 18, 12, 0, 0),
        SHANGHAI,
    )
    .id("YD:2024.06_18-A"),
    // Whitespace around the object; fields of other types, invalid there, as ignored extras.
    import("ems", local(2023, 2, 14, 8, 0, 0), SHANGHAI).layout(Layout::Whitespace),
    import("dhl-sinotrans", local(2024, 11, 11, 0, 0, 1), UTC).layout(Layout::ForeignFields),
    // The first and last second of the cap years.
    import(CAP_IMPORT_FIRM_ID, local(2023, 1, 1, 0, 0, 0), UTC),
    import(CAP_IMPORT_FIRM_ID, local(2023, 12, 31, 23, 59, 59), UTC),
    rural(
        "yunda",
        CAP_RURAL_OUTLET_ID,
        local(2024, 1, 1, 0, 0, 0),
        UTC,
    ),
];

/// How many [`EDGES`] the first duplicates re-send.
const RESENT_EDGES: usize = {
    let (mut count, mut i) = (0, 0);
    while i < EDGES.len() {
        count += EDGES[i].resent as usize;
        i += 1;
    }
    count
};

/// Ineligible messages on an edge: the first ineligible messages of a feed, before
/// [`INELIGIBLE`].
const FIXED_INELIGIBLE: [Scripted; 17] = {
    use Reason::*;
    const DAY_BEFORE_PERIOD: i64 = PERIOD_FIRST_S - 1;
    const DAY_AFTER_PERIOD: i64 = PERIOD_LAST_S + 1;
    [
        // One second before and after the period: 2022-06-30T15:59:59Z is June 30 local.
        takeout("meituan", EARLY_ZONE_ID, DAY_BEFORE_PERIOD, UTC).rejected(OutsidePolicyPeriod),
        import("sf-express", DAY_BEFORE_PERIOD, SHANGHAI).rejected(OutsidePolicyPeriod),
        import(CAP_IMPORT_FIRM_ID, DAY_AFTER_PERIOD, UTC).rejected(OutsidePolicyPeriod),
        rural("yunda", CAP_RURAL_OUTLET_ID, DAY_AFTER_PERIOD, UTC).rejected(OutsidePolicyPeriod),
        // The period check wins over every program check.
        takeout(
            "nobody-waimai",
            "Z-330106-9999",
            local(2021, 11, 11, 11, 11, 11),
            SHANGHAI,
        )
        .not_released()
        .rejected(OutsidePolicyPeriod),
        // A valid unit's waybill sent again with a date outside the period.
        import("sf-express", local(2026, 3, 1, 9, 0, 0), SHANGHAI)
            .id(REUSED_WAYBILL)
            .rejected(OutsidePolicyPeriod),
        // The first and last second of penalties, one of them from a leap day.
        takeout(
            "xiaoman-paotui",
            PENALTY_ZONE_ID,
            local(2022, 10, 10, 0, 0, 0),
            UTC,
        )
        .rejected(FirmIneligible),
        import("yuanhang-logistics", local(2023, 5, 20, 0, 0, 0), UTC).rejected(FirmIneligible),
        import(
            "yuanhang-logistics",
            local(2024, 5, 19, 23, 59, 59),
            SHANGHAI,
        )
        .rejected(FirmIneligible),
        import("fuchun-express", local(2024, 2, 29, 0, 0, 0), SHANGHAI).rejected(FirmIneligible),
        import("fuchun-express", local(2025, 2, 27, 23, 59, 59), UTC).rejected(FirmIneligible),
        // A valid unit's waybill first sent with the wrong firm.
        rural("yto", OUTLET_A, CORRECTED_AT_S, SHANGHAI)
            .id(CORRECTED_WAYBILL)
            .rejected(OutletFirmMismatch),
        // An unknown outlet wins over an unknown firm; an ineligible firm over enrollment.
        rural(
            "nobody-express",
            "RO-999999-001",
            local(2023, 8, 18, 7, 8, 59),
            UTC,
        )
        .rejected(UnknownOutlet),
        rural(
            "xinghuo-express",
            "RO-330112-001",
            local(2022, 8, 1, 10, 0, 0),
            SHANGHAI,
        )
        .rejected(FirmIneligible),
        // The second before an outlet's enrollment, the first after its three years, and
        // the day after the three years of an outlet enrolled in 2019.
        rural(
            "yto",
            "RO-330182-001",
            local(2023, 8, 31, 23, 59, 59),
            SHANGHAI,
        )
        .rejected(OutletNotEnrolled),
        rural("zto", OUTLET_A, local(2025, 3, 15, 0, 0, 0), UTC).rejected(OutletNotEnrolled),
        rural(
            "tonglu-xiangcun",
            "RO-330122-001",
            local(2022, 10, 8, 0, 0, 0),
            SHANGHAI,
        )
        .rejected(OutletNotEnrolled),
    ]
};

/// Ways a well-formed message fails a policy check with random ids and instants: the
/// ineligible messages after [`FIXED_INELIGIBLE`]. Each is built so that its reason is the
/// first check of SPEC §5 to fail; the `…Wins…` kinds fail later checks too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ineligible {
    OutsideRandom,
    UnknownZone,
    UnknownZoneWinsOverLaterChecks,
    ZoneInactiveSecondBefore,
    ZoneInactiveSecondAfter,
    ZoneInactiveRandom,
    ZoneInactiveWinsOverNotReleased,
    CourierNotReleased,
    NotReleasedWinsOverUnknownPlatform,
    UnknownPlatform,
    PlatformNotMonitored,
    PlatformPenaltyRandom,
    UnknownImportFirm,
    ImportNotLegalEntity,
    ImportNotLicensed,
    ImportNotMonitored,
    ImportPenaltyRandom,
    UnknownOutlet,
    OutletFirmMismatch,
    OutletMismatchWinsOverUnknownFirm,
    RuralUnknownFirm,
    RuralFirmFlagged,
    RuralFirmPenalty,
    NotEnrolledRandom,
}

const INELIGIBLE: [Ineligible; 24] = {
    use Ineligible::*;
    [
        OutsideRandom,
        UnknownZone,
        UnknownZoneWinsOverLaterChecks,
        ZoneInactiveSecondBefore,
        ZoneInactiveSecondAfter,
        ZoneInactiveRandom,
        ZoneInactiveWinsOverNotReleased,
        CourierNotReleased,
        NotReleasedWinsOverUnknownPlatform,
        UnknownPlatform,
        PlatformNotMonitored,
        PlatformPenaltyRandom,
        UnknownImportFirm,
        ImportNotLegalEntity,
        ImportNotLicensed,
        ImportNotMonitored,
        ImportPenaltyRandom,
        UnknownOutlet,
        OutletFirmMismatch,
        OutletMismatchWinsOverUnknownFirm,
        RuralUnknownFirm,
        RuralFirmFlagged,
        RuralFirmPenalty,
        NotEnrolledRandom,
    ]
};

// ---------------------------------------------------------------------------------------
// The generator.

/// Local months 2020-01 … 2027-12, one bucket each; instants outside go to the ends.
const MONTH_BUCKETS: usize = 96;
/// Invalid messages remembered for re-sends.
const RECENT_MAX: usize = 32;
/// Mail waybill prefixes and origin countries (UPU S10 style).
const MAIL_PREFIXES: [&str; 4] = ["RR", "LX", "CP", "EA"];
const MAIL_COUNTRIES: [&str; 7] = ["US", "JP", "DE", "GB", "AU", "KR", "FR"];
/// Multiplier that scrambles serials into order and waybill numbers: odd and not a
/// multiple of 5, so a bijection modulo any power of ten.
const SCRAMBLE_MULTIPLIER: u128 = 6_364_136_223_846_793_007;

/// The kind of one message slot of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Valid,
    CapImport,
    CapRural,
    Duplicate,
    Malformed,
    Ineligible,
}

/// How many messages of each kind a feed holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    valid: usize,
    cap_import: usize,
    cap_rural: usize,
    duplicate: usize,
    malformed: usize,
    ineligible: usize,
}

impl Counts {
    fn of(config: &SampleConfig) -> Counts {
        let events = config.events;
        assert!(
            events <= EVENTS_MAX,
            "SampleConfig: events = {events} exceeds the generator's limit of {EVENTS_MAX}"
        );
        let permille_total = u64::from(config.duplicate_permille)
            + u64::from(config.malformed_permille)
            + u64::from(config.ineligible_permille);
        assert!(
            permille_total <= 1000,
            "SampleConfig: duplicate, malformed and ineligible shares add up to {permille_total} ‰, \
             more than 1000 ‰"
        );
        let full = events >= FULL_COVERAGE_EVENTS_MIN;
        let share = |of: usize, permille: u32, catalogue: usize| {
            let proportional = of * permille as usize / 1000;
            if permille > 0 && full {
                proportional.max(catalogue)
            } else {
                proportional
            }
        };
        let malformed = share(events, config.malformed_permille, MALFORMED.len());
        let ineligible = share(
            events.saturating_sub(malformed),
            config.ineligible_permille,
            FIXED_INELIGIBLE.len() + INELIGIBLE.len(),
        );
        let duplicate = share(events, config.duplicate_permille, RESENT_EDGES);
        let fixed = malformed
            + ineligible
            + duplicate
            + config.import_cap_firm_units
            + config.rural_cap_outlet_units;
        assert!(
            fixed <= events,
            "SampleConfig: {} + {} cap-crossing units, {duplicate} duplicates, {malformed} \
             malformed and {ineligible} ineligible messages do not fit in events = {events}",
            config.import_cap_firm_units,
            config.rural_cap_outlet_units,
        );
        Counts {
            valid: events - fixed,
            cap_import: config.import_cap_firm_units,
            cap_rural: config.rural_cap_outlet_units,
            duplicate,
            malformed,
            ineligible,
        }
    }

    /// One slot per message, in kind order (the caller shuffles).
    fn plan(&self) -> Vec<Slot> {
        [
            (Slot::Valid, self.valid),
            (Slot::CapImport, self.cap_import),
            (Slot::CapRural, self.cap_rural),
            (Slot::Duplicate, self.duplicate),
            (Slot::Malformed, self.malformed),
            (Slot::Ineligible, self.ineligible),
        ]
        .into_iter()
        .flat_map(|(slot, n)| std::iter::repeat_n(slot, n))
        .collect()
    }
}

/// A valid edge unit, kept for scripted and random duplicates.
struct Special {
    draft: Draft,
    unit_no: u32,
    offset: Offset,
    resent: bool,
}

/// A malformed message kept for re-sends.
struct RecentMalformed {
    payload: Vec<u8>,
    reason: Reason,
    instant_s: i64,
    program: Program,
}

struct Generator<'w> {
    world: &'w World,
    config: &'w SampleConfig,
    rng: SmallRng,
    /// Next serial for an order or waybill number; every draft takes a fresh one.
    serial: u64,
    /// Seed-dependent shift of serials, so different seeds give different ids.
    serial_base: u64,
    /// Valid units so far, which is also the next unit number.
    units: u32,
    /// Every random valid unit, for duplicates.
    pool: Vec<UnitSpec>,
    specials: Vec<Special>,
    recent_ineligible: Vec<(Draft, Reason)>,
    recent_malformed: Vec<RecentMalformed>,
    next_edge: usize,
    next_ineligible: usize,
    next_malformed: usize,
    duplicates_planned: usize,
    duplicates_deferred: usize,
    buckets: Vec<Vec<SampleMessage>>,
    /// Buffers [`Generator::render`] reuses for every payload.
    scratch: Vec<u8>,
    event_id: String,
    occurred_at: String,
}

impl<'w> Generator<'w> {
    fn new(world: &'w World, config: &'w SampleConfig) -> Generator<'w> {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let serial_base = rng.gen_range(0..1_000_000_000);
        Generator {
            world,
            config,
            rng,
            serial: 0,
            serial_base,
            units: 0,
            pool: Vec::new(),
            specials: Vec::new(),
            recent_ineligible: Vec::new(),
            recent_malformed: Vec::new(),
            next_edge: 0,
            next_ineligible: 0,
            next_malformed: 0,
            duplicates_planned: 0,
            duplicates_deferred: 0,
            buckets: (0..MONTH_BUCKETS).map(|_| Vec::new()).collect(),
            scratch: Vec::with_capacity(512),
            event_id: String::with_capacity(24),
            occurred_at: String::with_capacity(32),
        }
    }

    fn emit(&mut self, slot: Slot) {
        match slot {
            Slot::Valid => self.valid(),
            Slot::CapImport => {
                let spec = self.cap_import_spec();
                self.emit_spec(spec);
            }
            Slot::CapRural => {
                let spec = self.cap_rural_spec();
                self.emit_spec(spec);
            }
            Slot::Duplicate => {
                self.duplicates_planned += 1;
                // The scripted duplicates wait until every edge unit exists.
                if self.duplicates_planned <= RESENT_EDGES || self.pool.is_empty() {
                    self.duplicates_deferred += 1;
                } else {
                    self.random_duplicate();
                }
            }
            Slot::Malformed => self.malformed(),
            Slot::Ineligible => self.ineligible(),
        }
    }

    /// Emits the deferred duplicates and returns the messages, months shuffled.
    fn finish(mut self) -> Vec<SampleMessage> {
        for i in 0..self.duplicates_deferred {
            let scripted = self.specials.iter().filter(|s| s.resent).nth(i);
            if let Some(special) = scripted {
                let (draft, unit_no) = (special.draft.clone(), special.unit_no);
                let offset = match special.offset {
                    Offset::Utc => SHANGHAI,
                    Offset::East(_) => Offset::Utc,
                };
                self.push_duplicate(&draft, unit_no, offset, 100);
            } else if !self.pool.is_empty() || !self.specials.is_empty() {
                self.random_duplicate();
            } else {
                // Nothing to duplicate: a tiny feed keeps its exact size with a unit.
                self.valid();
            }
        }
        let mut months: Vec<usize> = (0..MONTH_BUCKETS).collect();
        months.shuffle(&mut self.rng);
        let total = self.buckets.iter().map(Vec::len).sum();
        let mut messages = Vec::with_capacity(total);
        for month in months {
            // Moving out frees each bucket at once: the feed is never held twice.
            messages.extend(std::mem::take(&mut self.buckets[month]));
        }
        for (index, message) in messages.iter_mut().enumerate() {
            message.generated_index = index;
        }
        relabel(&mut messages);
        messages
    }

    // --- slots ---

    fn valid(&mut self) {
        if let Some(edge) = EDGES.get(self.next_edge) {
            self.next_edge += 1;
            let draft = self.scripted_draft(edge);
            let unit_no = self.next_unit_no();
            self.push_unit(&draft, unit_no, edge.offset, edge.layout);
            self.specials.push(Special {
                draft,
                unit_no,
                offset: edge.offset,
                resent: edge.resent,
            });
            return;
        }
        let program = match self.rng.gen_range(0..100) {
            0..=39 => Program::TakeoutOrder,
            40..=74 => Program::ImportParcel,
            _ => Program::RuralDelivery,
        };
        let spec = self.random_spec(program);
        self.emit_spec(spec);
    }

    fn emit_spec(&mut self, mut spec: UnitSpec) {
        spec.unit_no = self.next_unit_no();
        self.pool.push(spec);
        let draft = self.draft_of(&spec);
        let offset = self.random_offset();
        self.push_unit(&draft, spec.unit_no, offset, Layout::Plain);
    }

    fn random_duplicate(&mut self) {
        let from_specials =
            self.pool.is_empty() || (!self.specials.is_empty() && self.rng.gen_ratio(1, 20));
        let (draft, unit_no) = if from_specials {
            let special = &self.specials[self.rng.gen_range(0..self.specials.len())];
            (special.draft.clone(), special.unit_no)
        } else {
            let spec = self.pool[self.rng.gen_range(0..self.pool.len())];
            (self.draft_of(&spec), spec.unit_no)
        };
        let offset = self.random_offset();
        self.push_duplicate(&draft, unit_no, offset, 20);
    }

    fn malformed(&mut self) {
        let kind = match MALFORMED.get(self.next_malformed) {
            Some(&kind) => {
                self.next_malformed += 1;
                kind
            }
            None => {
                if !self.recent_malformed.is_empty() && self.rng.gen_ratio(3, 100) {
                    let recent =
                        &self.recent_malformed[self.rng.gen_range(0..self.recent_malformed.len())];
                    let (payload, reason, instant_s, program) = (
                        recent.payload.clone(),
                        recent.reason,
                        recent.instant_s,
                        recent.program,
                    );
                    let topic = self.topic(program, 10);
                    let key = self.key("");
                    self.push(
                        topic,
                        key,
                        payload,
                        instant_s,
                        Expected::Rejected(reason),
                        None,
                    );
                    return;
                }
                MALFORMED[self.rng.gen_range(0..MALFORMED.len())]
            }
        };
        let (payload, program, instant_s) = self.malformed_payload(kind);
        let reason = kind.reason();
        remember(
            &mut self.recent_malformed,
            &mut self.rng,
            RecentMalformed {
                payload: payload.clone(),
                reason,
                instant_s,
                program,
            },
        );
        let topic = self.topic(program, 10);
        let key = self.key("");
        self.push(
            topic,
            key,
            payload,
            instant_s,
            Expected::Rejected(reason),
            None,
        );
    }

    fn malformed_payload(&mut self, kind: Malformed) -> (Vec<u8>, Program, i64) {
        let program = match kind {
            Malformed::Fields(program, ..) | Malformed::FieldsOutsidePeriod(program, _) => program,
            _ => Program::ALL[self.rng.gen_range(0..3)],
        };
        let mut draft = self.any_draft(program);
        if let Malformed::FieldsOutsidePeriod(..) = kind {
            draft.instant_s = self.outside_period();
            draft.millis = None;
        }
        let offset = self.random_offset();
        let payload = match kind {
            Malformed::Bytes(bytes, _) => bytes.to_vec(),
            Malformed::BadUtf8(bad) => {
                let mut payload = self.render(&draft, offset, &[], Layout::Plain);
                payload.pop(); // the closing brace
                payload.extend_from_slice(b",\"remark\":\"");
                payload.extend_from_slice(bad);
                payload.extend_from_slice(b"\"}");
                payload
            }
            Malformed::Truncated => {
                let mut payload = self.render(&draft, offset, &[], Layout::Plain);
                // Every strict prefix of an object is incomplete JSON.
                let cut = self.rng.gen_range(1..payload.len());
                payload.truncate(cut);
                payload
            }
            Malformed::Trailing(garbage) => {
                let mut payload = self.render(&draft, offset, &[], Layout::Plain);
                payload.extend_from_slice(garbage.as_bytes());
                payload
            }
            Malformed::Concatenated => {
                let mut payload = self.render(&draft, offset, &[], Layout::Plain);
                let second = self.render(&draft, offset, &[], Layout::Plain);
                payload.extend_from_slice(&second);
                payload
            }
            Malformed::InArray => {
                let inner = self.render(&draft, offset, &[], Layout::Plain);
                let mut payload = Vec::with_capacity(inner.len() + 2);
                payload.push(b'[');
                payload.extend_from_slice(&inner);
                payload.push(b']');
                payload
            }
            Malformed::Fields(_, faults, _) | Malformed::FieldsOutsidePeriod(_, faults) => {
                self.render(&draft, offset, faults, Layout::Plain)
            }
        };
        (payload, program, draft.instant_s)
    }

    fn ineligible(&mut self) {
        if let Some(edge) = FIXED_INELIGIBLE.get(self.next_ineligible) {
            self.next_ineligible += 1;
            let reason = edge
                .reason
                .expect("every FIXED_INELIGIBLE edge has a reason");
            let draft = self.scripted_draft(edge);
            self.push_rejected(&draft, reason, edge.offset);
            remember(&mut self.recent_ineligible, &mut self.rng, (draft, reason));
            return;
        }
        let catalogue = INELIGIBLE.get(self.next_ineligible - FIXED_INELIGIBLE.len());
        let kind = match catalogue {
            Some(&kind) => {
                self.next_ineligible += 1;
                kind
            }
            None => {
                if !self.recent_ineligible.is_empty() && self.rng.gen_ratio(3, 100) {
                    // A re-send under a new event_id keeps its reason.
                    let (draft, reason) = self.recent_ineligible
                        [self.rng.gen_range(0..self.recent_ineligible.len())]
                    .clone();
                    let offset = self.random_offset();
                    self.push_rejected(&draft, reason, offset);
                    return;
                }
                INELIGIBLE[self.rng.gen_range(0..INELIGIBLE.len())]
            }
        };
        let (draft, reason) = self.ineligible_draft(kind);
        let offset = self.random_offset();
        self.push_rejected(&draft, reason, offset);
        remember(&mut self.recent_ineligible, &mut self.rng, (draft, reason));
    }

    // --- messages ---

    fn push_unit(&mut self, draft: &Draft, unit_no: u32, offset: Offset, layout: Layout) {
        let unit = self.expected_unit(draft);
        let payload = self.render(draft, offset, &[], layout);
        let topic = self.topic(draft.program(), 1);
        let key = self.key(draft.unit_id());
        let expected = Expected::Unit(unit);
        self.push(
            topic,
            key,
            payload,
            draft.instant_s,
            expected,
            Some(unit_no),
        );
    }

    fn push_duplicate(
        &mut self,
        draft: &Draft,
        unit_no: u32,
        offset: Offset,
        other_topic_percent: u32,
    ) {
        let payload = self.render(draft, offset, &[], Layout::Plain);
        let topic = self.topic(draft.program(), other_topic_percent);
        let key = self.key(draft.unit_id());
        let expected = Expected::Rejected(Reason::Duplicate);
        self.push(
            topic,
            key,
            payload,
            draft.instant_s,
            expected,
            Some(unit_no),
        );
    }

    fn push_rejected(&mut self, draft: &Draft, reason: Reason, offset: Offset) {
        let payload = self.render(draft, offset, &[], Layout::Plain);
        let topic = self.topic(draft.program(), 1);
        let key = self.key(draft.unit_id());
        self.push(
            topic,
            key,
            payload,
            draft.instant_s,
            Expected::Rejected(reason),
            None,
        );
    }

    fn push(
        &mut self,
        topic: String,
        key: Vec<u8>,
        payload: Vec<u8>,
        sort_time_unix_s: i64,
        expected: Expected,
        unit_no: Option<u32>,
    ) {
        let (year, month, _) =
            civil_from_days((sort_time_unix_s + SHANGHAI_OFFSET_S).div_euclid(DAY_S));
        let bucket = ((year - 2020) * 12 + i64::from(month) - 1).clamp(0, MONTH_BUCKETS as i64 - 1);
        self.buckets[bucket as usize].push(SampleMessage {
            topic,
            key,
            payload,
            sort_time_unix_s,
            expected,
            unit_no,
            generated_index: 0,
        });
    }

    /// Writes a draft as a compact JSON object with a fresh `event_id`.
    fn render(
        &mut self,
        draft: &Draft,
        offset: Offset,
        faults: &[Fault],
        layout: Layout,
    ) -> Vec<u8> {
        let mut event_id = std::mem::take(&mut self.event_id);
        let mut occurred_at = std::mem::take(&mut self.occurred_at);
        event_id.clear();
        let _ = write!(event_id, "ev-{:016x}", self.rng.gen::<u64>());
        occurred_at.clear();
        write_timestamp(draft.instant_s, draft.millis, offset, &mut occurred_at);
        let mut fields: Fields = Vec::with_capacity(12);
        fields.push(("type", Json::Str(draft.program().as_str())));
        fields.push(("event_id", Json::Str(&event_id)));
        fields.push(("occurred_at", Json::Str(&occurred_at)));
        draft.push_fields(&mut fields);
        if self.rng.gen_ratio(35, 100) {
            fields.shuffle(&mut self.rng);
        }
        if self.rng.gen_ratio(8, 100) {
            let extra = EXTRA_FIELDS[self.rng.gen_range(0..EXTRA_FIELDS.len())];
            let at = self.rng.gen_range(0..=fields.len());
            fields.insert(at, extra);
        }
        if layout == Layout::ForeignFields {
            fields.extend(FOREIGN_FIELDS);
        }
        for &fault in faults {
            apply_fault(&mut fields, fault);
        }
        self.scratch.clear();
        if layout == Layout::Whitespace {
            self.scratch.extend_from_slice(b"\n  ");
        }
        write_json_object(&fields, &mut self.scratch);
        if layout == Layout::Whitespace {
            self.scratch.extend_from_slice(b" \r\n");
        }
        drop(fields);
        (self.event_id, self.occurred_at) = (event_id, occurred_at);
        self.scratch.clone()
    }

    fn expected_unit(&self, draft: &Draft) -> ExpectedUnit {
        let w = self.world;
        let month = local_month(draft.instant_s);
        match &draft.body {
            Body::Takeout {
                platform_id,
                order_id,
                courier_id,
                zone_id,
                ..
            } => ExpectedUnit {
                program: Program::TakeoutOrder,
                unit_key: format!("{platform_id}/{order_id}"),
                recipient_id: courier_id.clone(),
                district_code: w.zones[w.zone(zone_id)].district_code.clone(),
                month,
                amount_fen: YUAN_RATE_FEN,
            },
            Body::Import {
                firm_id,
                waybill_no,
                ..
            } => ExpectedUnit {
                program: Program::ImportParcel,
                unit_key: waybill_no.clone(),
                recipient_id: firm_id.clone(),
                district_code: w.firms[w.firm(firm_id)].district_code.clone(),
                month,
                amount_fen: YUAN_RATE_FEN,
            },
            Body::Rural {
                outlet_id,
                waybill_no,
                ..
            } => ExpectedUnit {
                program: Program::RuralDelivery,
                unit_key: waybill_no.clone(),
                recipient_id: outlet_id.clone(),
                district_code: w.outlets[w.outlet(outlet_id)].district_code.clone(),
                month,
                amount_fen: RURAL_RATE_FEN,
            },
        }
    }

    /// The topic of `program`, or of another type `other_percent` % of the time.
    fn topic(&mut self, program: Program, other_percent: u32) -> String {
        let program = if self.rng.gen_ratio(other_percent, 100) {
            let own = Program::ALL.iter().position(|p| *p == program).unwrap_or(0);
            Program::ALL[(own + self.rng.gen_range(1..3)) % 3]
        } else {
            program
        };
        self.config.topics.for_program(program).to_owned()
    }

    /// A message key: empty, the unit's id, or 8 random bytes.
    fn key(&mut self, unit_id: &str) -> Vec<u8> {
        match self.rng.gen_range(0..100) {
            0..=24 => Vec::new(),
            25..=64 if !unit_id.is_empty() => unit_id.as_bytes().to_vec(),
            _ => self.rng.gen::<u64>().to_le_bytes().to_vec(),
        }
    }

    fn random_offset(&mut self) -> Offset {
        match self.rng.gen_range(0..100) {
            0..=39 => Offset::Utc,
            40..=84 => SHANGHAI,
            _ => Offset::East(OTHER_OFFSETS_S[self.rng.gen_range(0..OTHER_OFFSETS_S.len())]),
        }
    }

    // --- ids and drafts ---

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn next_unit_no(&mut self) -> u32 {
        let unit_no = self.units;
        self.units += 1;
        unit_no
    }

    /// A number below `modulus` (a power of ten), distinct for distinct serials below it.
    fn scramble(&self, serial: u64, modulus: u64) -> u64 {
        let shifted = (u128::from(serial) + u128::from(self.serial_base)) % u128::from(modulus);
        (shifted * SCRAMBLE_MULTIPLIER % u128::from(modulus)) as u64
    }

    fn takeout_body(
        &self,
        platform_id: &str,
        zone_id: &str,
        serial: u64,
        courier: u32,
        released: bool,
    ) -> Body {
        let code = self.world.code_of(platform_id);
        Body::Takeout {
            platform_id: platform_id.to_owned(),
            order_id: format!("{code}{:014}", self.scramble(serial, 100_000_000_000_000)),
            courier_id: format!("{platform_id}-c{courier:05}"),
            zone_id: zone_id.to_owned(),
            courier_released: released,
        }
    }

    fn import_body(&self, firm_id: &str, serial: u64, mail: bool) -> Body {
        let waybill_no = if mail {
            let n = self.scramble(serial, 1_000_000_000);
            format!(
                "{}{n:09}{}",
                MAIL_PREFIXES[(n % 4) as usize],
                MAIL_COUNTRIES[(n / 4 % 7) as usize]
            )
        } else {
            self.express_waybill(firm_id, serial)
        };
        Body::Import {
            firm_id: firm_id.to_owned(),
            waybill_no,
            channel: if mail { "mail" } else { "express" },
        }
    }

    fn rural_body(&self, firm_id: &str, outlet_id: &str, serial: u64) -> Body {
        Body::Rural {
            firm_id: firm_id.to_owned(),
            outlet_id: outlet_id.to_owned(),
            waybill_no: self.express_waybill(firm_id, serial),
        }
    }

    fn express_waybill(&self, firm_id: &str, serial: u64) -> String {
        let code = self.world.code_of(firm_id);
        format!("{code}{:012}", self.scramble(serial, 1_000_000_000_000))
    }

    fn takeout_draft(
        &mut self,
        platform_id: &str,
        zone_id: &str,
        instant_s: i64,
        released: bool,
    ) -> Draft {
        let serial = self.next_serial();
        let courier = self.rng.gen_range(0..COURIERS_PER_PLATFORM);
        Draft {
            instant_s,
            millis: None,
            body: self.takeout_body(platform_id, zone_id, serial, courier, released),
        }
    }

    fn import_draft(&mut self, firm_id: &str, instant_s: i64) -> Draft {
        let serial = self.next_serial();
        let mail = self.mail_for(firm_id);
        Draft {
            instant_s,
            millis: None,
            body: self.import_body(firm_id, serial, mail),
        }
    }

    fn rural_draft(&mut self, firm_id: &str, outlet_id: &str, instant_s: i64) -> Draft {
        let serial = self.next_serial();
        Draft {
            instant_s,
            millis: None,
            body: self.rural_body(firm_id, outlet_id, serial),
        }
    }

    /// Postal firms send mostly international mail, the others express.
    fn mail_for(&mut self, firm_id: &str) -> bool {
        if matches!(firm_id, "ems" | "china-post") {
            self.rng.gen_ratio(85, 100)
        } else {
            self.rng.gen_ratio(3, 100)
        }
    }

    fn draft_of(&self, spec: &UnitSpec) -> Draft {
        let w = self.world;
        let body = match spec.what {
            What::Takeout {
                platform,
                zone,
                courier,
            } => self.takeout_body(
                &w.firms[usize::from(platform)].firm_id,
                &w.zones[usize::from(zone)].zone_id,
                spec.serial,
                courier,
                true,
            ),
            What::Import { firm, mail } => {
                self.import_body(&w.firms[usize::from(firm)].firm_id, spec.serial, mail)
            }
            What::Rural { outlet } => {
                let outlet = &w.outlets[usize::from(outlet)];
                self.rural_body(&outlet.firm_id, &outlet.outlet_id, spec.serial)
            }
        };
        Draft {
            instant_s: spec.instant_s,
            millis: spec.millis,
            body,
        }
    }

    /// A well-formed draft that would be a valid unit (not one of the feed's units).
    fn any_draft(&mut self, program: Program) -> Draft {
        let spec = self.random_spec(program);
        self.draft_of(&spec)
    }

    /// A random valid unit of `program` (its `unit_no` is set when it is emitted).
    fn random_spec(&mut self, program: Program) -> UnitSpec {
        let w = self.world;
        let serial = self.next_serial();
        let (what, instant_s, last_s) = match program {
            Program::TakeoutOrder => {
                let zone = self.rng.gen_range(0..w.zones.len());
                let (from, to) = w.zone_spans[zone];
                let (first, last) = (from.max(PERIOD_FIRST_S), to.min(PERIOD_LAST_S));
                let instant_s = match self.rng.gen_range(0..100) {
                    0 => first,
                    1 => last,
                    _ => self.instant_between(first, last),
                };
                let mut platform = w.platform_draw[self.rng.gen_range(0..w.platform_draw.len())];
                if !w.firm_eligible(platform, instant_s) {
                    platform = w.firm("meituan");
                }
                let what = What::Takeout {
                    platform: platform as u16,
                    zone: zone as u16,
                    courier: self.rng.gen_range(0..COURIERS_PER_PLATFORM),
                };
                (what, instant_s, last)
            }
            Program::ImportParcel => {
                let instant_s = self.instant_between(PERIOD_FIRST_S, PERIOD_LAST_S);
                let mut firm = w.import_firms[self.rng.gen_range(0..w.import_firms.len())];
                if !w.firm_eligible(firm, instant_s) {
                    firm = w.firm("sf-express");
                }
                let mail = self.mail_for(&w.firms[firm].firm_id);
                let what = What::Import {
                    firm: firm as u16,
                    mail,
                };
                (what, instant_s, PERIOD_LAST_S)
            }
            Program::RuralDelivery => {
                let (outlet, instant_s) = self.random_delivery();
                (What::Rural { outlet }, instant_s, PERIOD_LAST_S)
            }
            other => {
                unreachable!("the sample feed makes only the three per-unit programs, not {other}")
            }
        };
        // Milliseconds never push an instant past the last second of a zone's window.
        let millis =
            (instant_s < last_s && self.rng.gen_ratio(4, 100)).then(|| self.rng.gen_range(0..1000));
        UnitSpec {
            instant_s,
            millis,
            serial,
            unit_no: 0,
            what,
        }
    }

    /// An enrolled outlet of an eligible firm and an instant it may deliver at.
    fn random_delivery(&mut self) -> (u16, i64) {
        let w = self.world;
        for _ in 0..16 {
            let outlet = w.rural_outlets[self.rng.gen_range(0..w.rural_outlets.len())];
            let (first, last) = w.eligible_span(outlet);
            let instant_s = self.instant_between(first, last);
            if w.firm_eligible(w.firm(&w.outlets[outlet].firm_id), instant_s) {
                return (outlet as u16, instant_s);
            }
        }
        let outlet = w.outlet(CAP_RURAL_OUTLET_ID);
        let (first, last) = w.eligible_span(outlet);
        (outlet as u16, self.instant_between(first, last))
    }

    fn cap_import_spec(&mut self) -> UnitSpec {
        let year = i64::from(CAP_IMPORT_YEAR);
        let instant_s = self.instant_between(
            local(year, 1, 1, 0, 0, 0),
            local(year + 1, 1, 1, 0, 0, 0) - 1,
        );
        UnitSpec {
            instant_s,
            millis: None,
            serial: self.next_serial(),
            unit_no: 0,
            what: What::Import {
                firm: self.world.firm(CAP_IMPORT_FIRM_ID) as u16,
                mail: false,
            },
        }
    }

    fn cap_rural_spec(&mut self) -> UnitSpec {
        let year = i64::from(CAP_RURAL_YEAR);
        let instant_s = self.instant_between(
            local(year, 1, 1, 0, 0, 0),
            local(year + 1, 1, 1, 0, 0, 0) - 1,
        );
        UnitSpec {
            instant_s,
            millis: None,
            serial: self.next_serial(),
            unit_no: 0,
            what: What::Rural {
                outlet: self.world.outlet(CAP_RURAL_OUTLET_ID) as u16,
            },
        }
    }

    // --- instants ---

    /// A uniform instant in `[first, last]`, or 3 % of the time one at a local month edge
    /// (midnight, one second either side, half an hour either side) when one is in range.
    fn instant_between(&mut self, first: i64, last: i64) -> i64 {
        debug_assert!(first <= last, "empty range {first}..={last}");
        if self.rng.gen_ratio(3, 100) {
            let starts = &self.world.month_starts;
            let start = starts[self.rng.gen_range(0..starts.len())];
            let candidate = start + [0, -1, 1, 1800, -1800][self.rng.gen_range(0..5)];
            if (first..=last).contains(&candidate) {
                return candidate;
            }
        }
        self.rng.gen_range(first..=last)
    }

    /// An instant whose local date is outside the policy period, sometimes by one second.
    fn outside_period(&mut self) -> i64 {
        match self.rng.gen_range(0..10) {
            0 => PERIOD_FIRST_S - 1,
            1 => PERIOD_LAST_S + 1,
            2..=5 => self
                .rng
                .gen_range(local(2021, 1, 1, 0, 0, 0)..PERIOD_FIRST_S),
            _ => self
                .rng
                .gen_range(PERIOD_LAST_S + 1..local(2027, 1, 1, 0, 0, 0)),
        }
    }

    fn in_period(&mut self) -> i64 {
        self.instant_between(PERIOD_FIRST_S, PERIOD_LAST_S)
    }

    /// A zone other than the three special ones: its window lies inside the period, with
    /// room before and after it.
    fn ordinary_zone(&mut self) -> usize {
        self.rng.gen_range(3..self.world.zones.len())
    }

    /// A zone and an in-period instant of its window.
    fn active_zone_instant(&mut self) -> (usize, i64) {
        let zone = self.rng.gen_range(0..self.world.zones.len());
        let (from, to) = self.world.zone_spans[zone];
        (
            zone,
            self.instant_between(from.max(PERIOD_FIRST_S), to.min(PERIOD_LAST_S)),
        )
    }

    fn unknown_zone_id(&mut self) -> String {
        let district = DISTRICTS[self.rng.gen_range(0..DISTRICTS.len())];
        format!("Z-{district}-{}", self.rng.gen_range(9000..10000))
    }

    // --- catalogues ---

    fn scripted_draft(&mut self, edge: &Scripted) -> Draft {
        let mut draft = match edge.program {
            Program::TakeoutOrder => {
                self.takeout_draft(edge.actor, edge.place, edge.at_s, edge.courier_released)
            }
            Program::ImportParcel => self.import_draft(edge.actor, edge.at_s),
            Program::RuralDelivery => self.rural_draft(edge.actor, edge.place, edge.at_s),
            other => unreachable!(
                "the sample feed scripts only the three per-unit programs, not {other}"
            ),
        };
        draft.millis = edge.millis;
        if let Some(unit_id) = edge.unit_id {
            draft.set_unit_id(unit_id);
        }
        draft
    }

    /// A draft of an ineligible kind and its reason.
    fn ineligible_draft(&mut self, kind: Ineligible) -> (Draft, Reason) {
        use Ineligible::*;
        let w = self.world;
        let (penalty_first, penalty_last) = penalty_span(ymd((2023, 5, 20)));
        match kind {
            OutsideRandom => {
                let program = Program::ALL[self.rng.gen_range(0..3)];
                let mut draft = self.any_draft(program);
                draft.instant_s = self.outside_period();
                draft.millis = None;
                (draft, Reason::OutsidePolicyPeriod)
            }
            UnknownZone | UnknownZoneWinsOverLaterChecks => {
                let zone = self.unknown_zone_id();
                let instant_s = self.in_period();
                let draft = if kind == UnknownZone {
                    self.takeout_draft("meituan", &zone, instant_s, true)
                } else {
                    self.takeout_draft("nobody-waimai", &zone, instant_s, false)
                };
                (draft, Reason::UnknownZone)
            }
            ZoneInactiveSecondBefore
            | ZoneInactiveSecondAfter
            | ZoneInactiveRandom
            | ZoneInactiveWinsOverNotReleased => {
                let zone = self.ordinary_zone();
                let (from, to) = w.zone_spans[zone];
                let instant_s = match kind {
                    ZoneInactiveSecondBefore => from - 1,
                    ZoneInactiveRandom if self.rng.gen_bool(0.5) => {
                        self.instant_between(PERIOD_FIRST_S, from - 1)
                    }
                    ZoneInactiveRandom => self.instant_between(to + 1, PERIOD_LAST_S),
                    _ => to + 1,
                };
                let zone_id = &w.zones[zone].zone_id;
                let draft = if kind == ZoneInactiveWinsOverNotReleased {
                    self.takeout_draft("nobody-waimai", zone_id, instant_s, false)
                } else {
                    self.takeout_draft("meituan", zone_id, instant_s, true)
                };
                (draft, Reason::ZoneInactive)
            }
            CourierNotReleased | NotReleasedWinsOverUnknownPlatform => {
                let (zone, instant_s) = self.active_zone_instant();
                let platform = if kind == CourierNotReleased {
                    "eleme"
                } else {
                    "nobody-waimai"
                };
                let draft = self.takeout_draft(platform, &w.zones[zone].zone_id, instant_s, false);
                (draft, Reason::CourierNotReleased)
            }
            UnknownPlatform | PlatformNotMonitored => {
                let (zone, instant_s) = self.active_zone_instant();
                let (platform, reason) = if kind == UnknownPlatform {
                    let unknown = UNKNOWN_PLATFORMS[self.rng.gen_range(0..UNKNOWN_PLATFORMS.len())];
                    (unknown, Reason::UnknownFirm)
                } else {
                    ("kuaipao", Reason::FirmIneligible)
                };
                let draft = self.takeout_draft(platform, &w.zones[zone].zone_id, instant_s, true);
                (draft, reason)
            }
            PlatformPenaltyRandom => {
                let zone = w.penalty_zones[self.rng.gen_range(0..w.penalty_zones.len())];
                let (from, to) = w.zone_spans[zone];
                let (penalty_from, penalty_to) = penalty_span(ymd((2022, 10, 10)));
                let instant_s = self.instant_between(
                    from.max(penalty_from).max(PERIOD_FIRST_S),
                    to.min(penalty_to).min(PERIOD_LAST_S),
                );
                let zone_id = &w.zones[zone].zone_id;
                let draft = self.takeout_draft("xiaoman-paotui", zone_id, instant_s, true);
                (draft, Reason::FirmIneligible)
            }
            UnknownImportFirm | ImportNotLegalEntity | ImportNotLicensed | ImportNotMonitored => {
                let (firm, reason) = match kind {
                    UnknownImportFirm => (
                        UNKNOWN_FIRMS[self.rng.gen_range(0..UNKNOWN_FIRMS.len())],
                        Reason::UnknownFirm,
                    ),
                    ImportNotLegalEntity => ("xinghuo-express", Reason::FirmIneligible),
                    ImportNotLicensed => ("qianjiang-kuaidi", Reason::FirmIneligible),
                    _ => ("xixi-courier", Reason::FirmIneligible),
                };
                let instant_s = self.in_period();
                (self.import_draft(firm, instant_s), reason)
            }
            ImportPenaltyRandom | RuralFirmPenalty => {
                let instant_s = self.instant_between(penalty_first, penalty_last);
                let draft = if kind == ImportPenaltyRandom {
                    self.import_draft("yuanhang-logistics", instant_s)
                } else {
                    // Enrolled 2022-01-10, so enrolled throughout the penalty.
                    self.rural_draft("yuanhang-logistics", "RO-330112-002", instant_s)
                };
                (draft, Reason::FirmIneligible)
            }
            UnknownOutlet => {
                let instant_s = self.in_period();
                let draft = self.rural_draft("zto", UNKNOWN_OUTLET_ID, instant_s);
                (draft, Reason::UnknownOutlet)
            }
            OutletFirmMismatch | OutletMismatchWinsOverUnknownFirm => {
                let outlet = w.rural_outlets[self.rng.gen_range(0..w.rural_outlets.len())];
                let outlet = &w.outlets[outlet];
                let firm = if kind == OutletFirmMismatch {
                    let others: Vec<&str> = NATIONAL_RURAL_FIRMS
                        .into_iter()
                        .filter(|f| *f != outlet.firm_id)
                        .collect();
                    others[self.rng.gen_range(0..others.len())]
                } else {
                    "nobody-express"
                };
                let instant_s = self.in_period();
                let draft = self.rural_draft(firm, &outlet.outlet_id, instant_s);
                (draft, Reason::OutletFirmMismatch)
            }
            RuralUnknownFirm => {
                let (first, last) = w.eligible_span(w.outlet(GHOST_OUTLET_ID));
                let instant_s = self.instant_between(first, last);
                let draft = self.rural_draft(GHOST_FIRM_ID, GHOST_OUTLET_ID, instant_s);
                (draft, Reason::UnknownFirm)
            }
            RuralFirmFlagged => {
                let outlet = w.flagged_outlets[self.rng.gen_range(0..w.flagged_outlets.len())];
                let (first, last) = w.eligible_span(outlet);
                // The firm check comes first: the enrollment window does not matter.
                let instant_s = if first <= last {
                    self.instant_between(first, last)
                } else {
                    self.in_period()
                };
                let outlet = &w.outlets[outlet];
                let draft = self.rural_draft(&outlet.firm_id, &outlet.outlet_id, instant_s);
                (draft, Reason::FirmIneligible)
            }
            NotEnrolledRandom => {
                for _ in 0..32 {
                    let outlet =
                        &w.outlets[w.rural_outlets[self.rng.gen_range(0..w.rural_outlets.len())]];
                    let (from, to) = enrollment_span(outlet);
                    let before = (from > PERIOD_FIRST_S).then_some((PERIOD_FIRST_S, from - 1));
                    let after = (to < PERIOD_LAST_S).then_some((to + 1, PERIOD_LAST_S));
                    let gap = match (before, after) {
                        (Some(b), Some(a)) => Some(if self.rng.gen_bool(0.5) { b } else { a }),
                        (gap, None) | (None, gap) => gap,
                    };
                    let Some((first, last)) = gap else {
                        continue;
                    };
                    let instant_s = self.instant_between(first, last);
                    if w.firm_eligible(w.firm(&outlet.firm_id), instant_s) {
                        let draft = self.rural_draft(&outlet.firm_id, &outlet.outlet_id, instant_s);
                        return (draft, Reason::OutletNotEnrolled);
                    }
                }
                // Three years after an enrollment of 2022-03-15.
                let instant_s = local(2025, 3, 15, 12, 0, 0);
                (
                    self.rural_draft("zto", OUTLET_A, instant_s),
                    Reason::OutletNotEnrolled,
                )
            }
        }
    }
}

/// Keeps `item` among at most [`RECENT_MAX`] recent ones, replacing a random one when full.
fn remember<T>(recent: &mut Vec<T>, rng: &mut SmallRng, item: T) {
    if recent.len() < RECENT_MAX {
        recent.push(item);
    } else {
        let at = rng.gen_range(0..RECENT_MAX);
        recent[at] = item;
    }
}

#[cfg(test)]
mod tests {
    //! The feed's promises, checked from its bytes. The main check is an independent reading
    //! of SPEC §3–§5 (serde_json + chrono, nothing from the generator) that classifies every
    //! message in feed order and must agree with its label.
    use super::*;
    use serde_json::{Map, Value};
    use std::collections::{BTreeMap, HashSet};

    fn feed(events: usize, seed: u64) -> SampleFeed {
        generate(&SampleConfig {
            events,
            seed,
            ..SampleConfig::default()
        })
    }

    fn outcome_name(expected: &Expected) -> &'static str {
        match expected {
            Expected::Unit(_) => "unit",
            Expected::Rejected(reason) => reason.as_str(),
        }
    }

    fn outcome_counts(messages: &[SampleMessage]) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for message in messages {
            *counts.entry(outcome_name(&message.expected)).or_insert(0) += 1;
        }
        counts
    }

    fn format_timestamp(instant_s: i64, millis: Option<u16>, offset: Offset) -> String {
        let mut text = String::new();
        write_timestamp(instant_s, millis, offset, &mut text);
        text
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().expect("a test date")
    }

    /// Returns true if and only if `id` is 1–64 characters of `[A-Za-z0-9._:-]` (SPEC §3).
    fn is_identifier(id: &str) -> bool {
        (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b))
    }

    /// SPEC §3–§5 read a second time, straight from the text.
    struct Reader<'a> {
        firms: HashMap<&'a str, &'a Firm>,
        outlets: HashMap<&'a str, &'a Outlet>,
        zones: HashMap<&'a str, &'a Zone>,
        paid: HashSet<(Program, String)>,
    }

    enum Fields<'v> {
        Takeout {
            platform: &'v str,
            order: &'v str,
            courier: &'v str,
            zone: &'v str,
            released: bool,
        },
        Import {
            firm: &'v str,
            waybill: &'v str,
        },
        Rural {
            firm: &'v str,
            outlet: &'v str,
            waybill: &'v str,
        },
    }

    impl<'a> Reader<'a> {
        fn new(feed: &'a SampleFeed) -> Reader<'a> {
            Reader {
                firms: feed.firms.iter().map(|f| (f.firm_id.as_str(), f)).collect(),
                outlets: feed
                    .outlets
                    .iter()
                    .map(|o| (o.outlet_id.as_str(), o))
                    .collect(),
                zones: feed.zones.iter().map(|z| (z.zone_id.as_str(), z)).collect(),
                paid: HashSet::new(),
            }
        }

        fn read(&mut self, payload: &[u8]) -> Expected {
            use Reason::*;
            let Ok(text) = std::str::from_utf8(payload) else {
                return Expected::Rejected(MalformedJson);
            };
            let Ok(value) = serde_json::from_str::<Value>(text) else {
                return Expected::Rejected(MalformedJson);
            };
            let Some(object) = value.as_object() else {
                return Expected::Rejected(SchemaViolation);
            };
            let Some(type_name) = object.get("type").and_then(Value::as_str) else {
                return Expected::Rejected(SchemaViolation);
            };
            let Some(program) = Program::from_type(type_name) else {
                return Expected::Rejected(UnknownType);
            };
            match self.check(program, object) {
                Err(reason) => Expected::Rejected(reason),
                Ok(unit) if self.paid.insert((program, unit.unit_key.clone())) => {
                    Expected::Unit(unit)
                }
                Ok(_) => Expected::Rejected(Duplicate),
            }
        }

        fn check(
            &self,
            program: Program,
            object: &Map<String, Value>,
        ) -> Result<ExpectedUnit, Reason> {
            use Reason::*;
            let string = |name: &str| {
                object
                    .get(name)
                    .and_then(Value::as_str)
                    .ok_or(SchemaViolation)
            };
            let id = |name: &str| {
                string(name).and_then(|v| {
                    if is_identifier(v) {
                        Ok(v)
                    } else {
                        Err(SchemaViolation)
                    }
                })
            };
            string("event_id")?;
            let at = DateTime::parse_from_rfc3339(string("occurred_at")?)
                .map_err(|_| SchemaViolation)?;
            let fields = match program {
                Program::TakeoutOrder => Fields::Takeout {
                    platform: id("platform_id")?,
                    order: id("order_id")?,
                    courier: id("courier_id")?,
                    zone: id("zone_id")?,
                    released: object
                        .get("courier_released")
                        .and_then(Value::as_bool)
                        .ok_or(SchemaViolation)?,
                },
                Program::ImportParcel => {
                    let fields = Fields::Import {
                        firm: id("firm_id")?,
                        waybill: id("waybill_no")?,
                    };
                    if !["mail", "express"].contains(&string("channel")?) {
                        return Err(SchemaViolation);
                    }
                    fields
                }
                Program::RuralDelivery => Fields::Rural {
                    firm: id("firm_id")?,
                    outlet: id("outlet_id")?,
                    waybill: id("waybill_no")?,
                },
                // The sample feed never writes the SPEC §8 types.
                _ => return Err(UnknownType),
            };
            // Asia/Shanghai is UTC+8 all year.
            let local = DateTime::from_timestamp(at.timestamp() + 8 * 3600, 0)
                .unwrap()
                .date_naive();
            if local < date("2022-07-01") || local > date("2025-12-31") {
                return Err(OutsidePolicyPeriod);
            }
            let eligible = |firm_id: &str| -> Result<&Firm, Reason> {
                let firm = *self.firms.get(firm_id).ok_or(UnknownFirm)?;
                let penalized = firm.last_major_penalty_on.is_some_and(|p| {
                    p <= local && local < p.checked_add_months(Months::new(12)).unwrap()
                });
                if firm.legal_entity && firm.licensed && firm.in_monitoring && !penalized {
                    Ok(firm)
                } else {
                    Err(FirmIneligible)
                }
            };
            let unit =
                |key: String, recipient: &str, district: &str, amount_fen: i64| ExpectedUnit {
                    program,
                    unit_key: key,
                    recipient_id: recipient.to_owned(),
                    district_code: district.to_owned(),
                    month: local.with_day(1).unwrap(),
                    amount_fen,
                };
            match fields {
                Fields::Takeout {
                    platform,
                    order,
                    courier,
                    zone,
                    released,
                } => {
                    let zone = self.zones.get(zone).ok_or(UnknownZone)?;
                    if at < zone.active_from || at > zone.active_to {
                        return Err(ZoneInactive);
                    }
                    if !released {
                        return Err(CourierNotReleased);
                    }
                    eligible(platform)?;
                    Ok(unit(
                        format!("{platform}/{order}"),
                        courier,
                        &zone.district_code,
                        100,
                    ))
                }
                Fields::Import { firm, waybill } => {
                    let district = &eligible(firm)?.district_code;
                    Ok(unit(waybill.to_owned(), firm, district, 100))
                }
                Fields::Rural {
                    firm,
                    outlet,
                    waybill,
                } => {
                    let outlet = self.outlets.get(outlet).ok_or(UnknownOutlet)?;
                    if outlet.firm_id != firm {
                        return Err(OutletFirmMismatch);
                    }
                    eligible(firm)?;
                    let enrolled = outlet.enrolled_on;
                    let ends = enrolled.checked_add_months(Months::new(36)).unwrap();
                    if local < enrolled || local >= ends {
                        return Err(OutletNotEnrolled);
                    }
                    Ok(unit(
                        waybill.to_owned(),
                        &outlet.outlet_id,
                        &outlet.district_code,
                        30,
                    ))
                }
            }
        }
    }

    /// Reads the whole feed in its order and returns the messages whose label disagrees.
    fn disagreements(feed: &SampleFeed) -> Vec<String> {
        let mut reader = Reader::new(feed);
        feed.messages
            .iter()
            .filter_map(|m| {
                let read = reader.read(&m.payload);
                (read != m.expected).then(|| {
                    format!(
                        "{} labelled {:?}, read {:?}",
                        String::from_utf8_lossy(&m.payload),
                        m.expected,
                        read
                    )
                })
            })
            .collect()
    }

    #[test]
    fn every_label_matches_an_independent_reading_in_every_order() {
        // The generator labels by construction; a plain reading of the SPEC must agree on
        // every message, whatever the order (duplicates are relabelled on reorder).
        let mut feed = feed(20_000, 11);
        for order in [
            FeedOrder::AsGenerated,
            FeedOrder::TimeOrdered,
            FeedOrder::Shuffled { seed: 5 },
            FeedOrder::AsGenerated,
        ] {
            feed.reorder(order);
            let wrong = disagreements(&feed);
            assert!(
                wrong.is_empty(),
                "{order:?}: {} wrong, first: {:#?}",
                wrong.len(),
                &wrong[..wrong.len().min(5)]
            );
        }
    }

    #[test]
    fn the_reader_notices_a_wrong_label() {
        // Without this, a reader that agreed with everything would pass the test above.
        let mut feed = feed(2_000, 3);
        let unit = feed
            .messages
            .iter()
            .position(|m| m.expected.unit().is_some())
            .unwrap();
        feed.messages[unit].expected = Expected::Rejected(Reason::Duplicate);
        let inactive = Expected::Rejected(Reason::ZoneInactive);
        let rejected = feed
            .messages
            .iter()
            .position(|m| m.expected == inactive)
            .unwrap();
        feed.messages[rejected].expected = Expected::Rejected(Reason::CourierNotReleased);
        assert_eq!(disagreements(&feed).len(), 2);
    }

    #[test]
    fn small_and_odd_feeds_are_labelled_right_too() {
        // Prefixes of the catalogues, deferred duplicates and no-duplicate fallbacks.
        for (events, seed) in [(1, 1), (3, 2), (40, 3), (999, 4), (1_000, 5), (2_500, 6)] {
            let feed = feed(events, seed);
            let wrong = disagreements(&feed);
            assert!(wrong.is_empty(), "events {events}: {wrong:#?}");
        }
        let odd = generate(&SampleConfig {
            events: 3_000,
            duplicate_permille: 400,
            malformed_permille: 300,
            ineligible_permille: 300,
            ..SampleConfig::default()
        });
        assert!(disagreements(&odd).is_empty());
    }

    #[test]
    fn same_seed_gives_an_identical_feed() {
        let config = SampleConfig {
            events: 5_000,
            seed: 42,
            ..SampleConfig::default()
        };
        assert_eq!(generate(&config), generate(&config));
    }

    #[test]
    fn different_seeds_give_different_feeds() {
        let (a, b) = (feed(5_000, 1), feed(5_000, 2));
        assert_eq!(
            a.firms, b.firms,
            "reference data does not depend on the seed"
        );
        assert_ne!(a.messages, b.messages);
        let payloads_a: HashSet<&[u8]> = a.messages.iter().map(|m| m.payload.as_slice()).collect();
        let shared = b
            .messages
            .iter()
            .filter(|m| payloads_a.contains(m.payload.as_slice()))
            .count();
        // Only fixed-bytes malformed payloads can repeat across seeds.
        assert!(shared < 100, "{shared} identical payloads");
    }

    #[test]
    fn message_count_is_exact() {
        for events in [0, 1, 2, 7, 50, 999, 1_000, 1_001, 12_345] {
            assert_eq!(feed(events, 3).messages.len(), events, "events = {events}");
        }
        let caps = generate(&SampleConfig {
            events: 2_000,
            import_cap_firm_units: 700,
            rural_cap_outlet_units: 600,
            ..SampleConfig::default()
        });
        assert_eq!(caps.messages.len(), 2_000);
    }

    #[test]
    fn default_config_has_at_least_two_percent_duplicates() {
        let feed = generate(&SampleConfig::default());
        let duplicates = feed
            .messages
            .iter()
            .filter(|m| m.expected == Expected::Rejected(Reason::Duplicate))
            .count();
        assert!(
            duplicates * 100 >= 2 * feed.messages.len(),
            "{duplicates} duplicates"
        );
    }

    #[test]
    fn every_reason_appears_at_20000_events() {
        let feed = feed(20_000, 1);
        let counts = outcome_counts(&feed.messages);
        println!("outcomes of 20,000 messages (seed 1): {counts:#?}");
        // The sample feed covers the three per-unit programs; the SPEC §8 reasons belong to
        // the other programs.
        let v2 = [Reason::AttestationIncomplete, Reason::ProgramNotConfigured];
        for reason in Reason::SPEC.into_iter().filter(|r| !v2.contains(r)) {
            assert!(counts.contains_key(reason.as_str()), "no {reason}");
        }
        assert!(counts["unit"] > 17_000);
    }

    #[test]
    fn time_order_is_sorted_and_a_permutation() {
        let mut feed = feed(10_000, 9);
        let before = outcome_counts(&feed.messages);
        feed.reorder(FeedOrder::TimeOrdered);
        assert!(feed
            .messages
            .windows(2)
            .all(|w| w[0].sort_time_unix_s <= w[1].sort_time_unix_s));
        let mut indices: Vec<usize> = feed.messages.iter().map(|m| m.generated_index).collect();
        indices.sort_unstable();
        assert!(indices.iter().copied().eq(0..10_000));
        assert_eq!(
            outcome_counts(&feed.messages),
            before,
            "relabelling keeps every count"
        );
        feed.reorder(FeedOrder::AsGenerated);
        assert!(feed
            .messages
            .iter()
            .enumerate()
            .all(|(i, m)| m.generated_index == i));
    }

    #[test]
    fn generation_order_is_not_time_order() {
        // Months come shuffled, so an ingester cannot rely on event-time order.
        let feed = feed(10_000, 4);
        let months: Vec<NaiveDate> = feed
            .messages
            .iter()
            .map(|m| local_month(m.sort_time_unix_s))
            .collect();
        let backwards = months.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(backwards >= 5, "only {backwards} steps back in time");
    }

    #[test]
    fn copies_of_a_unit_share_the_instant_and_differ_in_event_id() {
        let feed = feed(20_000, 8);
        let mut copies: HashMap<u32, Vec<&SampleMessage>> = HashMap::new();
        for message in &feed.messages {
            if let Some(unit_no) = message.unit_no {
                copies.entry(unit_no).or_default().push(message);
            }
        }
        let mut duplicated = 0;
        let mut offsets_differ = 0;
        for group in copies.values().filter(|g| g.len() > 1) {
            duplicated += 1;
            let parsed: Vec<Value> = group
                .iter()
                .map(|m| serde_json::from_slice(&m.payload).unwrap())
                .collect();
            let instants: HashSet<i64> = parsed
                .iter()
                .map(|v| {
                    let at =
                        DateTime::parse_from_rfc3339(v["occurred_at"].as_str().unwrap()).unwrap();
                    at.timestamp_millis()
                })
                .collect();
            assert_eq!(instants.len(), 1, "{parsed:?}");
            let event_ids: HashSet<&str> = parsed
                .iter()
                .map(|v| v["event_id"].as_str().unwrap())
                .collect();
            assert_eq!(event_ids.len(), group.len());
            let written: HashSet<&str> = parsed
                .iter()
                .map(|v| v["occurred_at"].as_str().unwrap())
                .collect();
            offsets_differ += usize::from(written.len() > 1);
            assert_eq!(
                group.iter().filter(|m| m.expected.unit().is_some()).count(),
                1
            );
        }
        assert!(duplicated > 400, "{duplicated}");
        assert!(
            offsets_differ > duplicated / 3,
            "{offsets_differ} of {duplicated}"
        );
    }

    #[test]
    fn cap_crossing_config_crosses_both_caps() {
        let feed = generate(&SampleConfig::with_cap_crossing(400_000, 7));
        assert_eq!(feed.messages.len(), 400_000);
        let mut per_recipient_year: HashMap<(&str, i32), usize> = HashMap::new();
        let mut import_months = HashSet::new();
        let mut rural_months = HashSet::new();
        for unit in feed.messages.iter().filter_map(|m| m.expected.unit()) {
            *per_recipient_year
                .entry((unit.recipient_id.as_str(), unit.month.year()))
                .or_insert(0) += 1;
            if unit.recipient_id == CAP_IMPORT_FIRM_ID && unit.month.year() == CAP_IMPORT_YEAR {
                import_months.insert(unit.month);
            }
            if unit.recipient_id == CAP_RURAL_OUTLET_ID && unit.month.year() == CAP_RURAL_YEAR {
                rural_months.insert(unit.month);
            }
        }
        assert!(per_recipient_year[&(CAP_IMPORT_FIRM_ID, CAP_IMPORT_YEAR)] > 200_000);
        assert!(per_recipient_year[&(CAP_RURAL_OUTLET_ID, CAP_RURAL_YEAR)] > 100_000);
        assert_eq!((import_months.len(), rural_months.len()), (12, 12));
    }

    #[test]
    #[should_panic(expected = "with_cap_crossing needs events >= 350000")]
    fn cap_crossing_refuses_a_feed_too_small_for_it() {
        let _ = SampleConfig::with_cap_crossing(349_999, 1);
    }

    #[test]
    fn unit_month_is_the_shanghai_month_of_occurred_at() {
        // Computed here with a fixed +8 h, independently of the generator's calendar code.
        let feed = feed(20_000, 12);
        let mut seen_new_year_in_utc = false;
        for message in &feed.messages {
            let Some(unit) = message.expected.unit() else {
                continue;
            };
            let value: Value = serde_json::from_slice(&message.payload).unwrap();
            let written = value["occurred_at"].as_str().unwrap();
            let at = DateTime::parse_from_rfc3339(written).unwrap();
            let local = at.naive_utc() + chrono::Duration::hours(8);
            assert_eq!(unit.month, local.date().with_day(1).unwrap(), "{written}");
            assert_eq!(message.sort_time_unix_s, at.timestamp());
            seen_new_year_in_utc |=
                written == "2023-12-31T16:30:00Z" && unit.month == date("2024-01-01");
        }
        assert!(seen_new_year_in_utc);
    }

    #[test]
    fn payloads_are_compact_objects_of_typical_size() {
        let feed = feed(10_000, 2);
        let sizes: Vec<usize> = feed
            .messages
            .iter()
            .filter(|m| m.expected.unit().is_some())
            .map(|m| m.payload.len())
            .collect();
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((150..=250).contains(&mean), "mean {mean} bytes");
        assert!(sizes.iter().all(|&s| s < 400));
        let shuffled = feed
            .messages
            .iter()
            .filter(|m| m.expected.unit().is_some() && !m.payload.starts_with(b"{\"type\""))
            .count();
        assert!(
            shuffled > sizes.len() / 5,
            "{shuffled} with fields reordered"
        );
        let on_other_topic = feed
            .messages
            .iter()
            .filter_map(|m| m.expected.unit().map(|u| (m, u)))
            .filter(|(m, u)| m.topic != SampleTopics::default().for_program(u.program))
            .count();
        assert!(
            (10..=300).contains(&on_other_topic),
            "{on_other_topic} on another topic"
        );
    }

    #[test]
    fn reference_data_is_realistic_and_consistent() {
        let feed = feed(0, 1);
        assert_eq!(
            (feed.firms.len(), feed.outlets.len(), feed.zones.len()),
            (40, 200, 100)
        );
        let ids = |v: Vec<&str>| {
            let n = v.len();
            assert!(v.iter().all(|id| is_identifier(id)), "{v:?}");
            assert_eq!(v.iter().collect::<HashSet<_>>().len(), n, "duplicate ids");
        };
        ids(feed.firms.iter().map(|f| f.firm_id.as_str()).collect());
        ids(feed.outlets.iter().map(|o| o.outlet_id.as_str()).collect());
        ids(feed.zones.iter().map(|z| z.zone_id.as_str()).collect());
        let districts: HashSet<&str> = feed
            .firms
            .iter()
            .map(|f| f.district_code.as_str())
            .collect();
        assert_eq!(districts, DISTRICTS.into_iter().collect());
        for firm in &feed.firms {
            assert_eq!(firm.credit_code.len(), 18, "{}", firm.credit_code);
            assert!(firm
                .credit_code
                .starts_with(&format!("91{}", firm.district_code)));
            assert!(!firm.name.is_ascii());
        }
        assert!(feed.firms.iter().any(|f| !f.legal_entity));
        assert!(feed.firms.iter().any(|f| !f.licensed));
        assert!(feed.firms.iter().any(|f| !f.in_monitoring));
        assert!(feed
            .firms
            .iter()
            .any(|f| f.last_major_penalty_on == Some(date("2024-02-29"))));
        let firm_ids: HashSet<&str> = feed.firms.iter().map(|f| f.firm_id.as_str()).collect();
        assert_eq!(
            feed.outlets
                .iter()
                .filter(|o| !firm_ids.contains(o.firm_id.as_str()))
                .count(),
            1
        );
        let ending_inside = feed
            .outlets
            .iter()
            .filter(|o| {
                let end = o.enrolled_on.checked_add_months(Months::new(36)).unwrap();
                end > date("2022-07-01") && end <= date("2025-12-31")
            })
            .count();
        assert!(
            ending_inside > 50,
            "{ending_inside} outlets' windows end inside the period"
        );
        for zone in &feed.zones {
            assert!(zone.active_from < zone.active_to);
            assert_eq!(zone.active_from.offset().local_minus_utc(), 8 * 3600);
        }
        let in_2023 = feed
            .zones
            .iter()
            .filter(|z| z.active_from.year() == 2023)
            .count();
        assert!((5..=30).contains(&in_2023), "{in_2023} zones in 2023");
    }

    #[test]
    fn catalogue_constants_are_what_they_claim() {
        assert_eq!((ID_64.len(), ID_65.len()), (64, 65));
        assert!(is_identifier(ID_64) && !is_identifier(ID_65));
        assert_eq!(
            format_timestamp(local(2024, 1, 1, 0, 30, 0), None, Offset::Utc),
            "2023-12-31T16:30:00Z"
        );
        assert_eq!(
            format_timestamp(
                local(2023, 5, 1, 0, 0, 0),
                Some(7),
                Offset::East(-12 * 3600)
            ),
            "2023-04-30T04:00:00.007-12:00"
        );
        assert_eq!(
            format_timestamp(
                local(2023, 6, 1, 0, 10, 0),
                None,
                Offset::East(-(3 * 3600 + 1800))
            ),
            "2023-05-31T12:40:00-03:30"
        );
        assert_eq!(
            format_timestamp(PERIOD_FIRST_S, None, SHANGHAI),
            "2022-07-01T00:00:00+08:00"
        );
        assert_eq!(
            format_timestamp(PERIOD_LAST_S, None, Offset::Utc),
            "2025-12-31T15:59:59Z"
        );
    }

    #[test]
    fn calendar_helpers_agree_with_chrono() {
        let mut day = date("1999-12-25");
        while day < date("2030-03-05") {
            let days = days_from_civil(
                i64::from(day.year()),
                i64::from(day.month()),
                i64::from(day.day()),
            );
            assert_eq!(days, (day - date("1970-01-01")).num_days());
            assert_eq!(
                civil_from_days(days),
                (i64::from(day.year()), day.month(), day.day())
            );
            day += chrono::Duration::days(1);
        }
    }
}
