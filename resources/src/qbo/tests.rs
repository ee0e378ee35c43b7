use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Decimal128Type;
use proptest::prelude::*;

use super::*;

fn rows(flat: &FlatReport) -> Vec<(String, String, Option<String>, Option<i128>)> {
    let t = &flat.table;
    let path = t.column_by_name("section_path").unwrap().as_string::<i32>();
    let name = t.column_by_name("account_name").unwrap().as_string::<i32>();
    let id = t.column_by_name("account_id").unwrap().as_string::<i32>();
    let amount = t.column_by_name("amount").unwrap().as_primitive::<Decimal128Type>();
    (0..t.num_rows())
        .map(|i| {
            (
                path.value(i).to_owned(),
                name.value(i).to_owned(),
                (!id.is_null(i)).then(|| id.value(i).to_owned()),
                (!amount.is_null(i)).then(|| amount.value(i)),
            )
        })
        .collect()
}

#[test]
fn nested_sections_flatten_to_accounts_and_computed_lines() {
    let report: Value = serde_json::from_str(DEV_PROFIT_AND_LOSS).unwrap();
    let flat = flatten(&report, "9130354", "2025-11").unwrap();
    let rows = rows(&flat);
    let row = |name: &str| rows.iter().find(|r| r.1 == name).unwrap_or_else(|| panic!("{name} in {rows:?}")).clone();
    assert_eq!(row("Consulting"), ("Income/Services".into(), "Consulting".into(), Some("46".into()), Some(1_825_000)));
    assert_eq!(row("Interest Earned").0, "Income");
    assert_eq!(row("Refunds").3, Some(-25_000), "negative amounts stay negative");
    assert_eq!(row("Travel").3, None, "an empty cell is null, not zero");
    assert_eq!(row("Gross Profit"), ("GrossProfit".into(), "Gross Profit".into(), None, Some(5_066_647)));
    assert_eq!(row("Net Income").3, Some(1_391_648));
    assert!(!rows.iter().any(|r| r.1.starts_with("Total ")), "section totals are left out: {rows:?}");
    // The accounts add up to the report's own net income.
    let sum = |section: &str| -> i128 {
        rows.iter().filter(|r| r.0.starts_with(section) && r.2.is_some()).filter_map(|r| r.3).sum()
    };
    assert_eq!(sum("Income") - sum("Cost of Goods Sold") - sum("Expenses"), 1_391_648);
    assert_eq!(flat.header["report_name"], "ProfitAndLoss");
    assert_eq!(flat.header["no_report_data"], false);
    assert_eq!(flat.table.schema().field_with_name("amount").unwrap().data_type(), &DataType::Decimal128(18, 2));
}

#[test]
fn a_balance_sheet_nests_three_deep() {
    let report: Value = serde_json::from_str(DEV_BALANCE_SHEET).unwrap();
    let rows = rows(&flatten(&report, "1", "2025-11").unwrap());
    let checking = rows.iter().find(|r| r.1 == "Checking").unwrap();
    assert_eq!(checking.0, "ASSETS/Current Assets/Bank Accounts");
    let assets: i128 = rows.iter().filter(|r| r.0.starts_with("ASSETS")).filter_map(|r| r.3).sum();
    let rest: i128 = rows.iter().filter(|r| r.0.starts_with("LIABILITIES")).filter_map(|r| r.3).sum();
    assert_eq!(assets, 20_124_512);
    assert_eq!(assets, rest, "assets = liabilities + equity");
}

#[test]
fn no_report_data_is_an_empty_table_and_bad_cells_are_refused() {
    let empty = serde_json::json!({"Header": {"StartPeriod": "2025-11-01", "EndPeriod": "2025-11-30",
        "Option": [{"Name": "NoReportData", "Value": "true"}]}, "Rows": {}});
    let flat = flatten(&empty, "1", "2025-11").unwrap();
    assert_eq!(flat.table.num_rows(), 0);
    assert_eq!(flat.header["no_report_data"], true);
    let bad = serde_json::json!({"Header": {"StartPeriod": "2025-11-01", "EndPeriod": "2025-11-30"},
        "Rows": {"Row": [{"type": "Data", "ColData": [{"value": "Fx"}, {"value": "1.005"}]}]}});
    let err = flatten(&bad, "1", "2025-11").unwrap_err();
    assert!(err.contains("\"1.005\" is not an amount with at most 2 decimals"), "{err}");
    assert!(flatten(&serde_json::json!({}), "1", "2025-11").unwrap_err().contains("no Header"));
}

#[test]
fn faults_are_read_in_both_envelopes() {
    let upper = serde_json::json!({"Fault": {"Error": [{"Message": "message=ThrottleExceeded", "Detail": "slow down", "code": "3001"}], "type": "SERVICE"}});
    assert_eq!(fault_text(&upper).unwrap(), "SERVICE 3001: message=ThrottleExceeded (slow down)");
    let lower = serde_json::json!({"warnings": null, "fault": {"error": [{"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401", "detail": "Token expired", "code": "3200"}], "type": "AUTHENTICATION"}, "report": null});
    assert_eq!(
        fault_text(&lower).unwrap(),
        "AUTHENTICATION 3200: message=AuthenticationFailed; errorCode=003200; statusCode=401 (Token expired)"
    );
    assert!(fault_text(&serde_json::json!({"Header": {}, "fault": null})).is_none());
}

proptest! {
    #[test]
    fn money_round_trips_exactly(cents in -9_999_999_999_999_999i128..9_999_999_999_999_999) {
        prop_assert_eq!(parse_money(&format_money(cents)).unwrap(), Some(cents));
    }
}

#[test]
fn money_text_forms() {
    assert_eq!(parse_money("900").unwrap(), Some(90_000));
    assert_eq!(parse_money("-12.5").unwrap(), Some(-1_250));
    assert_eq!(parse_money(" ").unwrap(), None);
    for bad in ["1,000.00", "1e3", "12.345", "--1", ".5", "abc"] {
        assert!(parse_money(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn the_dev_source_is_labeled_and_varies_by_realm_and_month() {
    let a = DevQbo
        .report(
            "1",
            QboReport::ProfitAndLoss,
            NaiveDate::from_ymd_opt(2025, 11, 1).unwrap(),
            NaiveDate::from_ymd_opt(2025, 11, 30).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(a.source, "dev");
    assert_eq!(a.report["Header"]["StartPeriod"], "2025-11-01");
    let months: std::collections::BTreeSet<String> = futures_months().await;
    assert!(months.len() > 1, "amounts differ between months: {months:?}");
}

async fn futures_months() -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for m in 1..=6 {
        let start = NaiveDate::from_ymd_opt(2025, m, 1).unwrap();
        let r = DevQbo.report("1", QboReport::ProfitAndLoss, start, start).await.unwrap();
        out.insert(r.report["Rows"]["Row"][0]["Rows"]["Row"][1]["ColData"][1]["value"].as_str().unwrap().to_owned());
    }
    out
}
