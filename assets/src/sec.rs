//! SEC EDGAR (`group:sec`): per filer (dynamic partitions `sec_ciks`, 10-digit zero-padded
//! CIKs), `sec_submissions` (its filing index) and `sec_company_facts` (every XBRL fact it
//! reported), from the SEC resource ([`SEC`]: the live API, or the labeled dev source).
//!
//! `sec_filings_sensor` polls the submissions of every CIK and requests `sec_company_facts`
//! for a CIK when a new accession appears; its cursor (JSON `{cik: last accession}`) is
//! committed with its requests.
//!
//! Both assets share the `sec` pool: `robo-assets pools set sec 1` keeps every worker of a
//! deployment to one SEC step at a time, so the per-process token bucket is the deployment's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use engine::automation::{SensorDef, SensorRequest, SensorResult, sensor};
use engine::{AssetContext, AssetDef, AssetError, NotRetryable, Output, PartitionsDef, RetryPolicy, asset};
use resources::SecSource;
use resources::sec::SecError;

/// Resource key of the SEC source (`Arc<dyn resources::SecSource>`).
pub const SEC: &str = "sec";
/// The dynamic partitions definition of CIKs.
pub const SEC_CIKS: &str = "sec_ciks";
/// The sensor's name.
pub const SENSOR: &str = "sec_filings_sensor";

/// A CIK as a partition key: 1 to 10 digits, zero-padded to 10 (`320193` → `0000320193`).
pub fn normalize_cik(key: &str) -> Result<String, String> {
    let digits = key.trim();
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        let shown: String = key.chars().take(80).collect();
        return Err(format!(
            "{shown:?} is not a CIK: a CIK is 1 to 10 digits (e.g. 320193 or 0000320193), stored zero-padded to 10"
        ));
    }
    Ok(format!("{digits:0>10}"))
}

fn definition(key: &str, description: &str) -> engine::AssetBuilder {
    asset(key)
        .requires(SEC)
        .description(description)
        .group("sec")
        .owner("data@robosystems.ai")
        .tag("team", "data")
        .code_version("1")
        .partitions(PartitionsDef::dynamic(SEC_CIKS).key_format(normalize_cik))
        // The client already retries what is transient (5xx, throttles after the cool-down); a
        // step that still failed on a throttle or an outage is tried again later, twice. A 404,
        // a refusal or a value that does not fit would fail again: those fail at once.
        .retry(RetryPolicy::exponential(3, Duration::from_secs(120)))
        .pool("sec")
}

/// The `sec_submissions` asset.
pub fn submissions() -> AssetDef {
    definition(
        "sec_submissions",
        "The SEC filing index of one filer (CIK): one row per filing, from data.sec.gov submissions (or the dev source).",
    )
    .compute(compute_submissions)
}

/// The `sec_company_facts` asset.
pub fn company_facts() -> AssetDef {
    definition(
        "sec_company_facts",
        "Every XBRL fact one filer (CIK) reported, one row each, exact values; from data.sec.gov companyfacts (or the dev source).",
    )
    .compute(compute_company_facts)
}

/// The step's CIK: its partition key, which must already be in canonical form.
fn cik_of(ctx: &AssetContext) -> Result<String, AssetError> {
    let cik = normalize_cik(&ctx.partition_key)?;
    if cik != ctx.partition_key {
        return Err(format!(
            "partition {:?} is not a canonical CIK: add it as {cik} (robo-assets partitions add {SEC_CIKS} {cik})",
            ctx.partition_key
        )
        .into());
    }
    Ok(cik)
}

/// A client error as a step error: retried by the asset's policy only if trying later may help.
fn step_error(e: SecError) -> AssetError {
    if e.is_retryable() { Box::new(e) } else { Box::new(NotRetryable(e.to_string())) }
}

fn labeled(out: Output, source: &dyn SecSource) -> Output {
    if source.kind() == "dev" {
        tracing::info!(
            message = "SEC data from the dev source (composed fixtures, not real SEC data); set SEC_USER_AGENT for the live API."
        );
    }
    out.with_metadata("source", source.kind()).with_metadata("source_detail", source.describe())
}

async fn compute_submissions(ctx: AssetContext) -> Result<Output, AssetError> {
    let sec: Arc<dyn SecSource> = ctx.resource(SEC)?;
    let cik = cik_of(&ctx)?;
    let subs = sec.submissions(&cik).await.map_err(step_error)?;
    let n = subs.table.num_rows();
    let out = Output::table(subs.table)
        .with_metadata("cik", cik)
        .with_metadata("name", subs.name)
        .with_metadata("filings", n);
    Ok(labeled(out, &*sec))
}

async fn compute_company_facts(ctx: AssetContext) -> Result<Output, AssetError> {
    let sec: Arc<dyn SecSource> = ctx.resource(SEC)?;
    let cik = cik_of(&ctx)?;
    let facts = sec.company_facts(&cik).await.map_err(step_error)?;
    let n = facts.table.num_rows();
    let out = Output::table(facts.table)
        .with_metadata("cik", cik)
        .with_metadata("entity_name", facts.entity_name)
        .with_metadata("facts", n);
    Ok(labeled(out, &*sec))
}

/// `sec_filings_sensor`: every 10 minutes, the newest accession of every CIK in `sec_ciks`;
/// a CIK whose newest accession is not the one in the cursor gets `sec_company_facts`
/// requested (idempotency key `sec_filings_sensor:<cik>:<accession>`). A CIK the SEC does not
/// know (404) is skipped and named; any other failure fails the tick, and the cursor stays.
pub fn filings_sensor() -> SensorDef {
    sensor(SENSOR, Duration::from_secs(600), Duration::from_secs(300), |ctx| async move {
        let sec: Arc<dyn SecSource> = ctx.resources.get(SEC)?;
        let mut cursor: BTreeMap<String, String> = match ctx.cursor.as_deref() {
            None | Some("") => BTreeMap::new(),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| format!("cursor is not JSON {{\"cik\": \"last accession\"}}: {e}"))?,
        };
        let ciks = ctx.dynamic_partitions.get(SEC_CIKS).cloned().unwrap_or_default();
        let mut requests = Vec::new();
        let mut skipped = Vec::new();
        for key in &ciks {
            if normalize_cik(key).as_deref() != Ok(key.as_str()) {
                skipped.push(format!("{key} (not a canonical CIK)"));
                continue;
            }
            let cik = key.clone();
            let latest = match sec.latest_accession(&cik).await {
                Ok(latest) => latest,
                Err(SecError::NotFound { .. } | SecError::NotInDevSource { .. }) => {
                    skipped.push(format!("{cik} (unknown to the SEC source)"));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(latest) = latest else { continue };
            if cursor.get(&cik) == Some(&latest) {
                continue;
            }
            requests.push(SensorRequest {
                asset: "sec_company_facts".to_owned(),
                partition_key: cik.clone(),
                key: format!("{SENSOR}:{cik}:{latest}"),
            });
            cursor.insert(cik, latest);
        }
        let skip_reason = (requests.is_empty()).then(|| {
            let mut why = format!("{} CIKs polled, no new accession", ciks.len());
            if !skipped.is_empty() {
                why.push_str(&format!("; skipped: {}", skipped.join(", ")));
            }
            why
        });
        if !skipped.is_empty() {
            tracing::warn!(message = "CIKs skipped by the SEC sensor.", skipped = ?skipped);
        }
        Ok(SensorResult {
            requests,
            dynamic_partitions: Vec::new(),
            cursor: Some(serde_json::to_string(&cursor).expect("a map of strings serializes")),
            skip_reason,
        })
    })
}
