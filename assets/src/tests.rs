use super::*;

#[test]
fn the_robosystems_definitions_are_valid() {
    let defs = definitions().expect("definitions validate");
    let graph = defs.graph();
    let bill = graph.lookup("storage_bill").unwrap();
    let snapshot = graph.lookup("usage_snapshot").unwrap();
    assert_eq!(graph.upstream(bill).iter().map(|e| e.asset).collect::<Vec<_>>(), [snapshot]);
    assert_eq!(graph.upstream(bill)[0].mapping, engine::PartitionMapping::time_window(0, 0));
}
