//! Any selection text against a small graph (groups, tags, a diamond): the assets it names, or
//! a clear error. Never a panic.

#![no_main]

use engine::{Definitions, Output, asset, selection};
use libfuzzer_sys::fuzz_target;

fn definitions() -> Definitions {
    let noop = |b: engine::AssetBuilder| b.compute(|_ctx| async { Ok(Output::none()) });
    Definitions::new(vec![
        noop(asset("raw").group("ingest").tag("team", "data")),
        noop(asset("usage").group("billing").tag("team", "billing").dep("raw")),
        noop(asset("costs").group("billing").dep("raw")),
        noop(asset("bill").group("billing").tag("team", "billing").dep("usage").dep("costs")),
        noop(asset("report").group("reports").dep("bill")),
    ])
    .expect("a valid graph")
}

fuzz_target!(|text: &str| {
    let defs = definitions();
    if let Ok(ids) = selection::resolve(defs.graph(), text) {
        assert!(ids.len() <= defs.graph().assets().len());
    }
});
