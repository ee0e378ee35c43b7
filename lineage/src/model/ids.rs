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
