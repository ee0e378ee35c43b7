//! IANA time zones for chrono: jiff's bundled copy of the tz database behind chrono's
//! [`TimeZone`].
//!
//! The engine reckons in chrono (`DateTime<Utc>` everywhere, croner's schedules); a zone is
//! only asked for the offset at an instant and for the offsets of a wall time. jiff keeps the
//! database as TZif bytes and reads a zone on first use, where a crate of generated tables put
//! every zone's transitions into the binary as data the loader relocates at every start
//! (BENCHMARKS.md: over a quarter of the executable's relocations, on nearly half the pages of
//! its `.data.rel.ro`).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use chrono::{FixedOffset, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone};
use jiff::tz::AmbiguousOffset;

/// An IANA time zone (`America/New_York`, `UTC`), as chrono's [`TimeZone`].
#[derive(Clone)]
pub struct Tz(jiff::tz::TimeZone);

impl Tz {
    /// Coordinated Universal Time.
    pub const UTC: Tz = Tz(jiff::tz::TimeZone::UTC);

    /// Its IANA name, as the database spells it (`America/New_York`).
    pub fn name(&self) -> &str {
        // Every `Tz` comes from `UTC` or a lookup that kept only zones with a name.
        self.0.iana_name().unwrap_or("UTC")
    }

    /// The offset and its abbreviation at `utc`.
    fn at(&self, utc: &NaiveDateTime) -> TzOffset {
        let info = self.0.to_offset_info(timestamp(utc.and_utc().timestamp()));
        TzOffset::new(self, info.offset(), info.abbreviation())
    }
}

/// No time zone of that name in the tz database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTimeZone;

impl fmt::Display for UnknownTimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an IANA time zone")
    }
}

impl std::error::Error for UnknownTimeZone {}

impl FromStr for Tz {
    type Err = UnknownTimeZone;

    /// Looks `name` up, ignoring case (`america/new_york` is `America/New_York`).
    fn from_str(name: &str) -> Result<Tz, UnknownTimeZone> {
        let zone = jiff::tz::TimeZone::get(name).map_err(|_| UnknownTimeZone)?;
        // `Etc/Unknown` is jiff's placeholder, not a zone.
        if zone.iana_name().is_none() {
            return Err(UnknownTimeZone);
        }
        Ok(Tz(zone))
    }
}

impl PartialEq for Tz {
    fn eq(&self, other: &Tz) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Tz {}

impl Hash for Tz {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for Tz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Tz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An offset of a [`Tz`] at some instant, with its abbreviation (`EST`, `EDT`, `+0530`), which
/// is what it displays as (`%Z`).
#[derive(Clone)]
pub struct TzOffset {
    tz: Tz,
    fixed: FixedOffset,
    /// The abbreviation's bytes, inline so that an offset (one per `DateTime<Tz>`) allocates
    /// nothing: the database's are at most 6, longer ones are cut.
    abbreviation: [u8; 8],
    abbreviation_len: u8,
}

impl TzOffset {
    fn new(tz: &Tz, offset: jiff::tz::Offset, abbreviation: &str) -> TzOffset {
        // jiff's offsets are within ±25:59:59 and chrono's within ±24 h; the tz database's stay
        // within ±15 h, so the fallback to UTC is never taken.
        let fixed = FixedOffset::east_opt(offset.seconds()).unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero"));
        let mut bytes = [0; 8];
        let mut len = 0;
        // Whole characters only, so the kept bytes stay UTF-8.
        for c in abbreviation.chars() {
            if len + c.len_utf8() > bytes.len() {
                break;
            }
            c.encode_utf8(&mut bytes[len..]);
            len += c.len_utf8();
        }
        TzOffset { tz: tz.clone(), fixed, abbreviation: bytes, abbreviation_len: len as u8 }
    }

    /// The zone's abbreviation for this offset (`EST`), as the tz database writes it.
    pub fn abbreviation(&self) -> &str {
        std::str::from_utf8(&self.abbreviation[..usize::from(self.abbreviation_len)]).unwrap_or_default()
    }
}

impl Offset for TzOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Debug for TzOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for TzOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.abbreviation() {
            "" => fmt::Display::fmt(&self.fixed, f),
            name => f.write_str(name),
        }
    }
}

/// `seconds` since the epoch as jiff's timestamp, held to jiff's range (years -9999 to 9999):
/// beyond it a zone keeps the offset it has at the bound, which no schedule or partition reaches.
fn timestamp(seconds: i64) -> jiff::Timestamp {
    let (min, max) = (jiff::Timestamp::MIN.as_second(), jiff::Timestamp::MAX.as_second());
    jiff::Timestamp::from_second(seconds.clamp(min, max)).expect("clamped to jiff's range")
}

impl TimeZone for Tz {
    type Offset = TzOffset;

    fn from_offset(offset: &TzOffset) -> Tz {
        offset.tz.clone()
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> LocalResult<TzOffset> {
        self.offset_from_local_datetime(&local.and_hms_opt(0, 0, 0).expect("midnight exists"))
    }

    /// The offsets `local` has here: one; two in a repeated hour (earlier instant first); none
    /// in a skipped one.
    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> LocalResult<TzOffset> {
        use chrono::{Datelike, Timelike};
        // Offsets change on whole seconds: a leap second or a fraction moves nothing.
        let civil = i16::try_from(local.year()).ok().and_then(|year| {
            jiff::civil::DateTime::new(
                year,
                local.month() as i8,
                local.day() as i8,
                local.hour() as i8,
                local.minute() as i8,
                local.second().min(59) as i8,
                0,
            )
            .ok()
        });
        // Outside jiff's years the offset is the one at its bound: a wall time there is unique.
        let Some(civil) = civil else { return LocalResult::Single(self.at(local)) };
        let at = |offset: jiff::tz::Offset| {
            let utc = local.and_utc().timestamp() - i64::from(offset.seconds());
            let info = self.0.to_offset_info(timestamp(utc));
            TzOffset::new(self, offset, info.abbreviation())
        };
        match self.0.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => LocalResult::Single(at(offset)),
            AmbiguousOffset::Gap { .. } => LocalResult::None,
            AmbiguousOffset::Fold { before, after } => LocalResult::Ambiguous(at(before), at(after)),
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> TzOffset {
        self.at(&utc.and_hms_opt(0, 0, 0).expect("midnight exists"))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> TzOffset {
        self.at(utc)
    }
}

#[cfg(test)]
mod tests;
