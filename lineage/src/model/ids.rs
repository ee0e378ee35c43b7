//! Ids: UUIDv7 newtypes for runs, requests and backfills; the materialization id is the store's
//! global cursor.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Defines a UUIDv7 id newtype: time-ordered, displayed and parsed as a UUID.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> $name {
                $name(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

uuid_id!(
    /// The id of a run: a UUIDv7, so ids sort by creation time.
    RunId
);

uuid_id!(
    /// The id of a materialization request: a UUIDv7.
    RequestId
);

uuid_id!(
    /// The id of a backfill: a UUIDv7.
    BackfillId
);

/// The id of one recorded materialization; also the store's global, monotonic cursor.
pub type MaterializationId = i64;

/// The kinds of ids a person types: what [`crate::LineageStore::ids_matching`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum IdKind {
    /// A [`RunId`].
    Run,
    /// A [`BackfillId`].
    Backfill,
    /// A [`RequestId`].
    Request,
}

/// How many hex digits the short form of an id has.
pub const SHORT_ID_DIGITS: usize = 8;

/// The short form of an id as listings print it: its last [`SHORT_ID_DIGITS`] hex digits. A
/// UUIDv7 starts with its creation time in milliseconds, so ids made within a minute share their
/// first characters; the end is random.
pub fn short_id(id: &Uuid) -> String {
    let text = id.simple().to_string();
    text[text.len() - SHORT_ID_DIGITS..].to_owned()
}
