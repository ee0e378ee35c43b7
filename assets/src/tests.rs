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

#[test]
fn ciks_are_padded_to_ten_digits_and_anything_else_says_what_is_valid() {
    let check = |key: &str| sec::normalize_cik(key);
    assert_eq!(check("320193"), Ok("0000320193".to_owned()));
    assert_eq!(check("0000320193"), Ok("0000320193".to_owned()));
    assert_eq!(check("1"), Ok("0000000001".to_owned()));
    let valid = "a CIK is 1 to 10 digits (e.g. 320193 or 0000320193), stored zero-padded to 10";
    for bad in ["", "AAPL", "12345678901", "-320193", "320 193", "３２０１９３"] {
        assert_eq!(check(bad), Err(format!("{bad:?} is not a CIK: {valid}")), "{bad:?}");
    }
}

#[test]
fn the_sec_assets_are_in_group_sec_on_sec_ciks_in_the_sec_pool() {
    let defs = definitions().expect("definitions validate");
    for key in ["sec_submissions", "sec_company_facts"] {
        let asset = defs.graph().asset(defs.graph().lookup(key).unwrap());
        assert_eq!(asset.group, "sec");
        let partitions = asset.partitions.as_ref().unwrap();
        assert_eq!(partitions.dynamic_names(), [sec::SEC_CIKS]);
        assert_eq!(partitions.normalize_key("320193").unwrap(), "0000320193", "the CIK key format pads");
        assert_eq!(asset.pool.as_deref(), Some("sec"));
        assert_eq!(asset.required_resources, [SEC]);
    }
}
