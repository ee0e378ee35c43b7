//! Partitions definitions and the arithmetic on their keys.
//!
//! A time-window partition is addressed by an index (0 = the window that starts at the
//! definition's start), so every operation here is O(1) or O(result): no iteration from the
//! start date. Windows are computed in the definition's IANA time zone, which is how a daily
//! partition in `America/New_York` gets 23 or 25 hours on DST days.
//!
//! This module does not know which keys have been materialized; that is the lineage store's.

use std::collections::HashMap;
use std::fmt;

use chrono::{
    DateTime, Datelike, Days, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike,
    Utc,
};
use serde::Serialize;

use crate::tz::Tz;

pub mod multi;

pub use multi::{Dimension, MultiPartitions};

/// How long a time-window partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    /// One hour, keyed `2025-12-15T02:00`.
    Hourly,
    /// One calendar day, keyed `2025-12-15`.
    Daily,
    /// Seven days from the start's weekday, keyed by the first day `2025-12-15`.
    Weekly,
    /// One calendar month, keyed `2025-12`.
    Monthly,
}

impl Cadence {
    fn name(self) -> &'static str {
        match self {
            Cadence::Hourly => "hourly",
            Cadence::Daily => "daily",
            Cadence::Weekly => "weekly",
            Cadence::Monthly => "monthly",
        }
    }

    fn format_hint(self) -> &'static str {
        match self {
            Cadence::Hourly => "YYYY-MM-DDTHH:00 (e.g. 2025-12-15T02:00; 2025-12-15-02:00 also accepted)",
            Cadence::Daily => "YYYY-MM-DD (e.g. 2025-12-15)",
            Cadence::Weekly => "YYYY-MM-DD, the first day of the week",
            Cadence::Monthly => "YYYY-MM (e.g. 2025-12; 2025-12-01 also accepted)",
        }
    }
}

/// A half-open interval of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TimeWindow {
    /// Inclusive start.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
}

/// Time-window partitions: a cadence, a time zone, a first window and an end offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimeWindowPartitions {
    cadence: Cadence,
    tz: Tz,
    /// The local start of window 0.
    start: NaiveDateTime,
    /// The UTC start of window 0.
    start_utc: DateTime<Utc>,
    /// How many windows past the last closed one also exist (may be negative).
    end_offset: i64,
}

/// A partitions definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PartitionsDef {
    /// Time windows.
    TimeWindow(TimeWindowPartitions),
    /// A fixed list of keys.
    Static(Vec<String>),
    /// Keys added at run time (by sensors or the CLI), stored in the lineage store under `name`.
    Dynamic {
        /// The name the keys are stored under.
        name: String,
        /// How a key as typed becomes canonical (`320193` → `0000320193`), if the set has a format.
        key_format: Option<KeyFormat>,
    },
    /// The product of N dimensions, each a time window, a static set or a dynamic set.
    Multi(MultiPartitions),
}

/// Turns a dynamic key as typed into its canonical form, or says what a valid key is: the SEC's
/// CIKs are 10 digits, zero-padded, so `320193` becomes `0000320193`. Definitions with the same
/// name are equal whatever their formats (a set has one format, given by its definition).
#[derive(Clone, Copy)]
pub struct KeyFormat(pub fn(&str) -> Result<String, String>);

impl fmt::Debug for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFormat")
    }
}

impl PartialEq for KeyFormat {
    fn eq(&self, _: &KeyFormat) -> bool {
        true
    }
}

impl Eq for KeyFormat {}

impl std::hash::Hash for KeyFormat {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// What key listing needs besides the definition: the clock and the dynamic keys.
#[derive(Debug, Clone, Default)]
pub struct PartitionsContext {
    /// The time at which partitions are evaluated ("does this window exist yet").
    pub now: DateTime<Utc>,
    /// Keys of each dynamic partitions definition, by name, in insertion order.
    pub dynamic: HashMap<String, Vec<String>>,
}

impl PartitionsContext {
    /// A context at `now` with no dynamic keys.
    pub fn at(now: DateTime<Utc>) -> PartitionsContext {
        PartitionsContext { now, dynamic: HashMap::new() }
    }

    /// A context at `now` with the current keys of every dynamic partitions definition that
    /// `assets` use (every asset of the graph when `None`), read from the store: the one loader
    /// of dynamic keys. A long-running process loads it per pass or per step, so keys a sensor
    /// adds after it started are seen.
    pub async fn load(
        store: &dyn lineage::LineageStore,
        graph: &crate::graph::AssetGraph,
        assets: Option<&[crate::graph::AssetId]>,
        now: DateTime<Utc>,
    ) -> Result<PartitionsContext, lineage::Error> {
        let mut ctx = PartitionsContext::at(now);
        let defs: Vec<&PartitionsDef> = match assets {
            None => graph.assets().iter().filter_map(|a| a.partitions.as_ref()).collect(),
            Some(ids) => ids.iter().filter_map(|id| graph.asset(*id).partitions.as_ref()).collect(),
        };
        let mut names: Vec<&str> = defs.into_iter().flat_map(PartitionsDef::dynamic_names).collect();
        names.sort_unstable();
        names.dedup();
        ctx.dynamic = store.dynamic_partitions_of(&names).await?;
        Ok(ctx)
    }
}

/// Why a partition key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionKeyError {
    /// The key does not have the definition's format.
    #[error("malformed partition key {key:?} for {def} partitions: expected {expected}")]
    Malformed {
        /// The key as given.
        key: String,
        /// The definition, described.
        def: String,
        /// The valid format.
        expected: String,
    },
    /// The key is well-formed but outside the partitions that exist.
    #[error("partition {key:?} is out of range for {def} partitions: {reason}; valid range is {range}")]
    OutOfRange {
        /// The key as given.
        key: String,
        /// The definition, described.
        def: String,
        /// Why (before the start, not closed yet).
        reason: String,
        /// The valid range, or "none yet".
        range: String,
    },
    /// The wall time does not exist in the zone (it falls into a DST gap).
    #[error("partition {key:?} does not exist in {tz}: that wall time is skipped by a daylight-saving change")]
    NonexistentTime {
        /// The key as given.
        key: String,
        /// The zone.
        tz: String,
    },
    /// A range whose first key comes after its last (`--from` later than `--to`).
    #[error(
        "partition range {from:?} to {to:?} is reversed: --from must not come after --to (e.g. --from {to} --to {from})"
    )]
    Reversed {
        /// The first key as given.
        from: String,
        /// The last key as given.
        to: String,
    },
    /// The key is not in a static or dynamic set.
    #[error("unknown partition {key:?} for {def} partitions; valid keys: {valid}")]
    Unknown {
        /// The key as given.
        key: String,
        /// The definition, described.
        def: String,
        /// Some valid keys.
        valid: String,
    },
    /// One dimension's value of a multi-dimensional key was refused.
    #[error("in dimension {dimension}: {source}")]
    Dimension {
        /// The dimension.
        dimension: String,
        /// Why its value was refused.
        source: Box<PartitionKeyError>,
    },
    /// A key was given for an unpartitioned asset.
    #[error("it is not partitioned, so it takes no partition key (got {key:?})")]
    NotPartitioned {
        /// The key as given.
        key: String,
    },
    /// A partitioned asset needs a key.
    #[error("it is partitioned ({def}): give a partition key with --partition or a range with --from/--to")]
    KeyRequired {
        /// The definition, described.
        def: String,
    },
}

/// Turns a local wall time into UTC: the earlier instant when ambiguous (DST fall-back) and the
/// first instant after the gap when it does not exist (DST spring-forward).
fn local_to_utc(tz: &Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    for _ in 0..48 {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(a, _) => return a.with_timezone(&Utc),
            LocalResult::None => {
                // Inside a gap: the first valid instant is the first full hour after it.
                probe = probe.date().and_hms_opt(probe.hour(), 0, 0).expect("valid time") + Duration::hours(1);
            }
        }
    }
    // No zone has a gap longer than 48 hours; fall back to reading the wall time as UTC.
    Utc.from_utc_datetime(&local)
}

/// How much of a local start a key shows: `2025-12`, `2025-12-15` or `2025-12-15T07:00`.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum KeyUpTo {
    Month,
    Day,
    Minute,
}

/// A key as `format("%Y-%m")`, `("%Y-%m-%d")` or `("%Y-%m-%dT%H:%M")` writes it, digit by digit:
/// `format` parses its pattern again on every call, and status, staleness and backfills format
/// keys by the thousand (a year of hours: half of `status storage_bill`'s instructions,
/// BENCHMARKS.md). Years outside 0..=9999, which `%Y` writes with a sign, go through `format`.
fn key_text(at: NaiveDateTime, up_to: KeyUpTo) -> String {
    let year = at.year();
    if !(0..=9999).contains(&year) {
        let pattern = match up_to {
            KeyUpTo::Month => "%Y-%m",
            KeyUpTo::Day => "%Y-%m-%d",
            KeyUpTo::Minute => "%Y-%m-%dT%H:%M",
        };
        return at.format(pattern).to_string();
    }
    let mut text = String::with_capacity(16);
    push_digits(&mut text, year as u32, 4);
    text.push('-');
    push_digits(&mut text, at.month(), 2);
    if up_to >= KeyUpTo::Day {
        text.push('-');
        push_digits(&mut text, at.day(), 2);
    }
    if up_to == KeyUpTo::Minute {
        text.push('T');
        push_digits(&mut text, at.hour(), 2);
        text.push(':');
        push_digits(&mut text, at.minute(), 2);
    }
    text
}

/// `n`'s last `width` decimal digits, zero-padded.
fn push_digits(text: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        text.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
    }
}

fn months_between(from: NaiveDate, to: NaiveDate) -> i64 {
    (to.year() as i64 * 12 + to.month0() as i64) - (from.year() as i64 * 12 + from.month0() as i64)
}

fn add_months(date: NaiveDate, n: i64) -> NaiveDate {
    if n >= 0 {
        date.checked_add_months(Months::new(n as u32)).expect("date in range")
    } else {
        date.checked_sub_months(Months::new((-n) as u32)).expect("date in range")
    }
}

fn add_days(date: NaiveDate, n: i64) -> NaiveDate {
    if n >= 0 {
        date.checked_add_days(Days::new(n as u64)).expect("date in range")
    } else {
        date.checked_sub_days(Days::new((-n) as u64)).expect("date in range")
    }
}

impl TimeWindowPartitions {
    fn new(cadence: Cadence, start: &str) -> TimeWindowPartitions {
        let date = NaiveDate::parse_from_str(start, "%Y-%m-%d")
            .unwrap_or_else(|_| panic!("partitions start {start:?} must be YYYY-MM-DD"));
        let date = match cadence {
            Cadence::Monthly => date.with_day(1).expect("day 1 exists"),
            _ => date,
        };
        let start = date.and_time(NaiveTime::MIN);
        let tz = Tz::UTC;
        let start_utc = local_to_utc(&tz, start);
        TimeWindowPartitions { cadence, tz, start, start_utc, end_offset: 0 }
    }

    /// The cadence.
    pub fn cadence(&self) -> Cadence {
        self.cadence
    }

    /// The time zone.
    pub fn timezone(&self) -> &Tz {
        &self.tz
    }

    /// The local start of the first window.
    pub fn start(&self) -> NaiveDateTime {
        self.start
    }

    /// The end offset.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    fn describe(&self) -> String {
        if self.tz == Tz::UTC {
            self.cadence.name().to_owned()
        } else {
            format!("{} ({})", self.cadence.name(), self.tz.name())
        }
    }

    /// The local start of window `idx`.
    fn local_start(&self, idx: i64) -> NaiveDateTime {
        let date = self.start.date();
        match self.cadence {
            Cadence::Hourly => self.utc_start(idx).with_timezone(&self.tz).naive_local(),
            Cadence::Daily => add_days(date, idx).and_time(NaiveTime::MIN),
            Cadence::Weekly => add_days(date, idx * 7).and_time(NaiveTime::MIN),
            Cadence::Monthly => add_months(date, idx).and_time(NaiveTime::MIN),
        }
    }

    fn utc_start(&self, idx: i64) -> DateTime<Utc> {
        match self.cadence {
            Cadence::Hourly => self.start_utc + Duration::hours(idx),
            _ => local_to_utc(&self.tz, self.local_start(idx)),
        }
    }

    /// The window of partition `idx`.
    pub fn window(&self, idx: i64) -> TimeWindow {
        TimeWindow { start: self.utc_start(idx), end: self.utc_start(idx + 1) }
    }

    /// The index of the window containing `t` (negative before the start).
    pub fn index_containing(&self, t: DateTime<Utc>) -> i64 {
        match self.cadence {
            // Whole seconds, rounded down (not towards zero), so an instant just before the start
            // belongs to window -1.
            Cadence::Hourly => (t.timestamp() - self.start_utc.timestamp()).div_euclid(3600),
            Cadence::Daily | Cadence::Weekly | Cadence::Monthly => {
                let local = t.with_timezone(&self.tz).naive_local();
                let days = (local.date() - self.start.date()).num_days();
                let idx = match self.cadence {
                    Cadence::Daily => days,
                    Cadence::Weekly => days.div_euclid(7),
                    _ => months_between(self.start.date(), local.date()),
                };
                // A window whose local midnight fell into a DST gap starts later than midnight;
                // an instant before that start still belongs to the previous window.
                if t < self.utc_start(idx) { idx - 1 } else { idx }
            }
        }
    }

    /// The index of the last partition that exists at `now`, if any.
    pub fn last_index(&self, now: DateTime<Utc>) -> Option<i64> {
        let last = self.index_containing(now) - 1 + self.end_offset;
        (last >= 0).then_some(last)
    }

    /// The canonical key of partition `idx`.
    pub fn key(&self, idx: i64) -> String {
        let local = self.local_start(idx);
        match self.cadence {
            Cadence::Hourly if self.tz == Tz::UTC => key_text(local, KeyUpTo::Minute),
            Cadence::Hourly => self.utc_start(idx).with_timezone(&self.tz).format("%Y-%m-%dT%H:%M%:z").to_string(),
            Cadence::Daily | Cadence::Weekly => key_text(local, KeyUpTo::Day),
            Cadence::Monthly => key_text(local, KeyUpTo::Month),
        }
    }

    /// For a range's end: a date of a weekly definition is snapped to the start of the week that
    /// contains it (`--from 2025-12-03` of Monday weeks starts with the week of 2025-12-01), as
    /// a range of days covers the weeks it touches. Any other key is returned as it is.
    pub fn week_containing(&self, key: &str) -> String {
        match (self.cadence, NaiveDate::parse_from_str(key, "%Y-%m-%d")) {
            (Cadence::Weekly, Ok(date)) => {
                let days = (date - self.start.date()).num_days();
                (self.start.date() + chrono::Duration::days(days.div_euclid(7) * 7)).format("%Y-%m-%d").to_string()
            }
            _ => key.to_owned(),
        }
    }

    fn malformed(&self, key: &str) -> PartitionKeyError {
        PartitionKeyError::Malformed {
            key: key.to_owned(),
            def: self.describe(),
            expected: self.cadence.format_hint().to_owned(),
        }
    }

    /// Parses a key (canonical or a Dagster-style alias) into its index, without checking that
    /// the partition exists yet.
    pub fn parse_index(&self, key: &str) -> Result<i64, PartitionKeyError> {
        let idx = match self.cadence {
            Cadence::Hourly => {
                let utc = if let Ok(t) = DateTime::parse_from_str(key, "%Y-%m-%dT%H:%M%:z") {
                    t.with_timezone(&Utc)
                } else {
                    let naive = NaiveDateTime::parse_from_str(key, "%Y-%m-%dT%H:%M")
                        .or_else(|_| NaiveDateTime::parse_from_str(key, "%Y-%m-%d-%H:%M"))
                        .map_err(|_| self.malformed(key))?;
                    if self.tz.from_local_datetime(&naive) == LocalResult::None {
                        return Err(PartitionKeyError::NonexistentTime {
                            key: key.to_owned(),
                            tz: self.tz.name().to_owned(),
                        });
                    }
                    local_to_utc(&self.tz, naive)
                };
                if utc.minute() != self.start_utc.minute() || utc.second() != 0 {
                    return Err(self.malformed(key));
                }
                (utc.timestamp() - self.start_utc.timestamp()).div_euclid(3600)
            }
            Cadence::Daily => {
                let date = NaiveDate::parse_from_str(key, "%Y-%m-%d").map_err(|_| self.malformed(key))?;
                (date - self.start.date()).num_days()
            }
            Cadence::Weekly => {
                let date = NaiveDate::parse_from_str(key, "%Y-%m-%d").map_err(|_| self.malformed(key))?;
                let days = (date - self.start.date()).num_days();
                if days.rem_euclid(7) != 0 {
                    let week = self.start.date() + chrono::Duration::days(days.div_euclid(7) * 7);
                    let last = week + chrono::Duration::days(6);
                    let next = week + chrono::Duration::days(7);
                    return Err(PartitionKeyError::Malformed {
                        key: key.to_owned(),
                        def: self.describe(),
                        expected: format!(
                            "a week start, i.e. a {} ({key} is a {}, in the week {week} (a {}) to {last} (a {}); \
                             the next week starts {next})",
                            week.format("%A"),
                            date.format("%A"),
                            week.format("%A"),
                            last.format("%A"),
                        ),
                    });
                }
                days / 7
            }
            Cadence::Monthly => {
                let date = NaiveDate::parse_from_str(&format!("{key}-01"), "%Y-%m-%d")
                    .or_else(|_| NaiveDate::parse_from_str(key, "%Y-%m-%d").ok().filter(|d| d.day() == 1).ok_or(()))
                    .map_err(|_| self.malformed(key))?;
                months_between(self.start.date(), date)
            }
        };
        Ok(idx)
    }

    fn range_text(&self, now: DateTime<Utc>) -> String {
        match self.last_index(now) {
            Some(last) => format!("{} ..= {}", self.key(0), self.key(last)),
            None => format!("none yet (the first partition, {}, has not closed)", self.key(0)),
        }
    }

    /// Parses a key and checks that the partition exists at `now`.
    pub fn resolve(&self, key: &str, now: DateTime<Utc>) -> Result<i64, PartitionKeyError> {
        let idx = self.parse_index(key)?;
        let out_of_range = |reason: String| PartitionKeyError::OutOfRange {
            key: key.to_owned(),
            def: self.describe(),
            reason,
            range: self.range_text(now),
        };
        if idx < 0 {
            return Err(out_of_range(format!("it is before the first partition {}", self.key(0))));
        }
        match self.last_index(now) {
            Some(last) if idx <= last => Ok(idx),
            _ => Err(out_of_range(format!(
                "its window closes at {} and does not exist yet",
                self.window(idx - self.end_offset).end.to_rfc3339()
            ))),
        }
    }
}

impl PartitionsDef {
    /// Hourly partitions starting at midnight UTC of `start` (`YYYY-MM-DD`).
    ///
    /// # Panics
    /// If `start` is not `YYYY-MM-DD`: definitions are code, so the definitions test catches it.
    pub fn hourly(start: &str) -> PartitionsDef {
        PartitionsDef::TimeWindow(TimeWindowPartitions::new(Cadence::Hourly, start))
    }

    /// Daily partitions starting at `start` (`YYYY-MM-DD`). Panics like [`PartitionsDef::hourly`].
    pub fn daily(start: &str) -> PartitionsDef {
        PartitionsDef::TimeWindow(TimeWindowPartitions::new(Cadence::Daily, start))
    }

    /// Weekly partitions starting at `start` (`YYYY-MM-DD`), each beginning on that weekday.
    /// Panics like [`PartitionsDef::hourly`].
    pub fn weekly(start: &str) -> PartitionsDef {
        PartitionsDef::TimeWindow(TimeWindowPartitions::new(Cadence::Weekly, start))
    }

    /// Monthly partitions starting at the month of `start` (`YYYY-MM-DD`).
    /// Panics like [`PartitionsDef::hourly`].
    pub fn monthly(start: &str) -> PartitionsDef {
        PartitionsDef::TimeWindow(TimeWindowPartitions::new(Cadence::Monthly, start))
    }

    /// A fixed set of keys.
    pub fn fixed<I: IntoIterator<Item = S>, S: Into<String>>(keys: I) -> PartitionsDef {
        PartitionsDef::Static(keys.into_iter().map(Into::into).collect())
    }

    /// Keys stored in the lineage store under `name`.
    pub fn dynamic(name: &str) -> PartitionsDef {
        PartitionsDef::Dynamic { name: name.to_owned(), key_format: None }
    }

    /// The product of `dims`, each `(name, definition)`: `multi([("realm", dynamic("qbo_realms")),
    /// ("month", monthly("2025-01-01"))])`. Keys are `month=2025-12|realm=123` (see
    /// [`MultiPartitions`]).
    ///
    /// # Panics
    /// Like [`MultiPartitions::new`].
    pub fn multi<I: IntoIterator<Item = (S, PartitionsDef)>, S: Into<String>>(dims: I) -> PartitionsDef {
        PartitionsDef::Multi(MultiPartitions::new(dims.into_iter().map(|(n, d)| (n.into(), d)).collect()))
    }

    /// The multi-dimensional definition, if this is one.
    pub fn as_multi(&self) -> Option<&MultiPartitions> {
        match self {
            PartitionsDef::Multi(m) => Some(m),
            _ => None,
        }
    }

    /// The names of the dynamic partitions this definition reads keys from (its own, or its
    /// dimensions').
    pub fn dynamic_names(&self) -> Vec<&str> {
        match self {
            PartitionsDef::Dynamic { name, .. } => vec![name.as_str()],
            PartitionsDef::Multi(m) => m.dimensions().iter().flat_map(|d| d.def.dynamic_names()).collect(),
            _ => Vec::new(),
        }
    }

    /// The position of a key in time (0 for keys without a time window): the order steps run in.
    pub fn order_index(&self, key: &str) -> i64 {
        match self {
            PartitionsDef::TimeWindow(tw) => tw.parse_index(key).unwrap_or(0),
            PartitionsDef::Multi(m) => m.order_index(key),
            _ => 0,
        }
    }

    /// Gives a dynamic definition a key format: keys are normalized by `format` when added and
    /// when given on the command line, and refused with its message when it refuses them.
    ///
    /// # Panics
    /// If the definition is not dynamic.
    pub fn key_format(self, format: fn(&str) -> Result<String, String>) -> PartitionsDef {
        match self {
            PartitionsDef::Dynamic { name, .. } => PartitionsDef::Dynamic { name, key_format: Some(KeyFormat(format)) },
            other => panic!("key_format() applies to dynamic partitions, not {}", other.describe()),
        }
    }

    /// A dynamic key in canonical form: as given, or as its definition's key format makes it.
    pub fn normalize_key(&self, key: &str) -> Result<String, PartitionKeyError> {
        match self {
            PartitionsDef::Dynamic { key_format: Some(KeyFormat(format)), .. } => format(key).map_err(|expected| {
                PartitionKeyError::Malformed { key: key.to_owned(), def: self.describe(), expected }
            }),
            _ => Ok(key.to_owned()),
        }
    }

    /// The dynamic definition called `name`: this one, or one of its dimensions.
    pub fn dynamic_def(&self, name: &str) -> Option<&PartitionsDef> {
        match self {
            PartitionsDef::Dynamic { name: n, .. } if n == name => Some(self),
            PartitionsDef::Multi(m) => m.dimensions().iter().find_map(|d| d.def.dynamic_def(name)),
            _ => None,
        }
    }

    /// Sets the IANA time zone of a time-window definition (default UTC).
    ///
    /// # Panics
    /// If `tz` is not an IANA zone name, or the definition is not a time window.
    pub fn timezone(self, tz: &str) -> PartitionsDef {
        let tz: Tz = tz.parse().unwrap_or_else(|_| panic!("{tz:?} is not an IANA time zone"));
        match self {
            PartitionsDef::TimeWindow(mut tw) => {
                tw.start_utc = local_to_utc(&tz, tw.start);
                tw.tz = tz;
                PartitionsDef::TimeWindow(tw)
            }
            other => panic!("timezone() applies to time-window partitions, not {}", other.describe()),
        }
    }

    /// Lets `n` windows past the last closed one exist too (negative: fewer).
    ///
    /// # Panics
    /// If the definition is not a time window.
    pub fn end_offset(self, n: i64) -> PartitionsDef {
        match self {
            PartitionsDef::TimeWindow(mut tw) => {
                tw.end_offset = n;
                PartitionsDef::TimeWindow(tw)
            }
            other => panic!("end_offset() applies to time-window partitions, not {}", other.describe()),
        }
    }

    /// The time-window definition, if this is one.
    pub fn as_time_window(&self) -> Option<&TimeWindowPartitions> {
        match self {
            PartitionsDef::TimeWindow(tw) => Some(tw),
            _ => None,
        }
    }

    /// A short description: `daily`, `hourly (America/New_York)`, `static [a, b]`, `dynamic subscriptions`.
    pub fn describe(&self) -> String {
        match self {
            PartitionsDef::TimeWindow(tw) => tw.describe(),
            PartitionsDef::Static(keys) => format!("static [{}]", keys.join(", ")),
            PartitionsDef::Dynamic { name, .. } => format!("dynamic {name}"),
            PartitionsDef::Multi(m) => m.describe(),
        }
    }

    /// Every key that exists in `ctx`, in order.
    pub fn keys(&self, ctx: &PartitionsContext) -> Vec<String> {
        match self {
            PartitionsDef::TimeWindow(tw) => match tw.last_index(ctx.now) {
                Some(last) => (0..=last).map(|i| tw.key(i)).collect(),
                None => Vec::new(),
            },
            PartitionsDef::Static(keys) => keys.clone(),
            PartitionsDef::Dynamic { name, .. } => ctx.dynamic.get(name).cloned().unwrap_or_default(),
            PartitionsDef::Multi(m) => m.keys(ctx),
        }
    }

    /// The partitions of the latest `windows` time windows that exist in `ctx` (oldest first):
    /// for a multi-dimensional definition, those windows of its time dimension for every key of
    /// the others; for a definition without time, its last key. What a schedule tick requests.
    pub fn latest(&self, ctx: &PartitionsContext, windows: usize) -> Vec<String> {
        let last_windows = |tw: &TimeWindowPartitions| -> Vec<String> {
            match tw.last_index(ctx.now) {
                Some(last) => ((last + 1 - windows.max(1) as i64).max(0)..=last).map(|i| tw.key(i)).collect(),
                None => Vec::new(),
            }
        };
        match self {
            PartitionsDef::TimeWindow(tw) => last_windows(tw),
            PartitionsDef::Multi(m) => match m.time_dimension() {
                Some((t, tw)) => {
                    let per_dim: Vec<Vec<String>> = m
                        .dimensions()
                        .iter()
                        .enumerate()
                        .map(|(i, d)| if i == t { last_windows(tw) } else { d.def.keys(ctx) })
                        .collect();
                    m.product(&per_dim)
                }
                None => self.keys(ctx).pop().into_iter().collect(),
            },
            _ => self.keys(ctx).pop().into_iter().collect(),
        }
    }

    /// How many partitions exist in `ctx`.
    pub fn len(&self, ctx: &PartitionsContext) -> usize {
        match self {
            PartitionsDef::TimeWindow(tw) => tw.last_index(ctx.now).map_or(0, |l| l as usize + 1),
            PartitionsDef::Static(keys) => keys.len(),
            PartitionsDef::Dynamic { name, .. } => ctx.dynamic.get(name).map_or(0, Vec::len),
            PartitionsDef::Multi(m) => m.len(ctx),
        }
    }

    /// Whether no partition exists in `ctx`.
    pub fn is_empty(&self, ctx: &PartitionsContext) -> bool {
        self.len(ctx) == 0
    }

    /// Checks a key and returns it in canonical form.
    pub fn resolve(&self, key: &str, ctx: &PartitionsContext) -> Result<String, PartitionKeyError> {
        match self {
            PartitionsDef::TimeWindow(tw) => tw.resolve(key, ctx.now).map(|i| tw.key(i)),
            PartitionsDef::Multi(m) => m.resolve(key, ctx),
            PartitionsDef::Static(_) | PartitionsDef::Dynamic { .. } => {
                let normalized = self.normalize_key(key)?;
                let key = normalized.as_str();
                let keys = self.keys(ctx);
                if keys.iter().any(|k| k == key) {
                    Ok(key.to_owned())
                } else {
                    let mut valid: Vec<&str> = keys.iter().map(String::as_str).take(10).collect();
                    if keys.len() > 10 {
                        valid.push("…");
                    }
                    Err(PartitionKeyError::Unknown {
                        key: key.to_owned(),
                        def: self.describe(),
                        valid: if valid.is_empty() { "none yet".to_owned() } else { valid.join(", ") },
                    })
                }
            }
        }
    }

    /// The keys from `from` to `to`, both included, in canonical form: O(result).
    pub fn range(&self, from: &str, to: &str, ctx: &PartitionsContext) -> Result<Vec<String>, PartitionKeyError> {
        match self {
            PartitionsDef::TimeWindow(tw) => {
                let a = tw.resolve(&tw.week_containing(from), ctx.now)?;
                let b = tw.resolve(&tw.week_containing(to), ctx.now)?;
                if a > b {
                    return Err(PartitionKeyError::Reversed { from: from.to_owned(), to: to.to_owned() });
                }
                Ok((a..=b).map(|i| tw.key(i)).collect())
            }
            PartitionsDef::Multi(m) => m.range(from, to, ctx),
            _ => {
                let keys = self.keys(ctx);
                let a = self.resolve(from, ctx)?;
                let b = self.resolve(to, ctx)?;
                let ia = keys.iter().position(|k| *k == a).expect("resolved key is listed");
                let ib = keys.iter().position(|k| *k == b).expect("resolved key is listed");
                if ia > ib {
                    return Err(PartitionKeyError::Reversed { from: from.to_owned(), to: to.to_owned() });
                }
                Ok(keys[ia..=ib].to_vec())
            }
        }
    }

    /// The time window of a key: its own for time-window definitions, its time dimension's for
    /// multi-dimensional ones.
    pub fn window_of(&self, key: &str) -> Option<TimeWindow> {
        match self {
            PartitionsDef::TimeWindow(tw) => tw.parse_index(key).ok().map(|i| tw.window(i)),
            PartitionsDef::Multi(m) => m.window_of(key),
            _ => None,
        }
    }
}

impl fmt::Display for PartitionsDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Collapses sorted keys into contiguous ranges for display: `2025-12-01..2025-12-31 (31)`.
///
/// `order` gives each key's position; keys are contiguous when positions are consecutive.
pub fn compress_ranges(def: Option<&PartitionsDef>, keys: &[String]) -> Vec<String> {
    let Some(PartitionsDef::TimeWindow(tw)) = def else {
        return keys.to_vec();
    };
    let mut idx: Vec<(i64, &String)> = keys.iter().filter_map(|k| tw.parse_index(k).ok().map(|i| (i, k))).collect();
    idx.sort();
    let mut out = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && idx[j + 1].0 == idx[j].0 + 1 {
            j += 1;
        }
        if i == j {
            out.push(idx[i].1.clone());
        } else {
            out.push(format!("{}..{} ({})", idx[i].1, idx[j].1, j - i + 1));
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests;
