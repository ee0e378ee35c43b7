//! The facts the lineage store records and returns, one module per concept.
//!
//! These are plain data: no behaviour beyond formatting and parsing of ids and states. Every
//! stored state is an enum whose database name is its `snake_case` spelling (strum derives the
//! conversions; serde uses the same names in JSON).

mod automation;
mod backfill;
mod check;
mod ids;
mod materialization;
mod outbox;
mod partition;
mod request;
mod retention;
mod run;

pub use automation::*;
pub use backfill::*;
pub use check::*;
pub use ids::*;
pub use materialization::*;
pub use outbox::*;
pub use partition::*;
pub use request::*;
pub use retention::*;
pub use run::*;
