//! SEC EDGAR (`data.sec.gov`): the filing index and the XBRL company facts of one filer (CIK),
//! as Arrow tables, from the live API ([`SecClient`]) or the labeled dev source
//! ([`DevSecSource`], small fixtures shipped in the repository).
//!
//! Endpoints (JSON, CIK zero-padded to 10 digits):
//! - `GET {base}/submissions/CIK##########.json`: the filer and its filings (`filings.recent`
//!   is columnar; older filings are listed in `filings.files` and fetched from
//!   `{base}/submissions/{name}`).
//! - `GET {base}/api/xbrl/companyfacts/CIK##########.json`: every XBRL fact of the filer.
//!
//! The SEC's fair-access rules, as the client keeps them:
//! - Every request declares who sends it (`SEC_USER_AGENT`, "Company Name admin@company.com").
//! - One token bucket per client paces requests at ≤ 10 per second; clones share it, and the
//!   binary builds one client per process. Across worker processes, the assets' `sec` pool
//!   caps how many steps call the SEC at once.
//! - A 429, or a 403 "Request Rate Threshold Exceeded" page, pauses *every* request of the
//!   client for the cool-down (default 600 s, as the SEC asks: sending during a block extends
//!   it); the request that met it is sent again after the pause.
//! - Any other 403 fails with the reason the SEC gave (an undeclared tool names the variable).
//! - A 404 means the CIK has no such document (no XBRL data): [`SecError::NotFound`]. Its body
//!   (XML from S3) is never parsed.
//! - 5xx, timeouts and refused connections are retried with exponential backoff and jitter.
//!
//! Values are exact: a fact's `val` is read as its JSON number text and scaled into an
//! `i128` at [`VAL_SCALE`] decimals (Arrow `Decimal128(38, 10)`); a value with more decimals
//! or digits than that fails instead of being rounded. Dates are Arrow `Date32`.
//!
//! What it deliberately doesn't do: deduplicate facts. A fact restated in later filings (same
//! concept, unit and period, another `accn`) is kept as one row per report, as the API lists it;
//! choosing the latest report is a query (`ORDER BY filed DESC`), not a loss at ingestion.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::builder::{Date32Builder, Decimal128Builder, Int32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use serde::de::{MapAccess, Visitor};

use crate::graph_api::describe_reqwest;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use tokio::time::Instant;

/// Decimal places of a fact's `val`: enough for per-share amounts and ratios (`1.52`,
/// `0.0235`), with 28 integer digits left for the largest amounts (`15441881000` shares,
/// trillions of USD).
pub const VAL_SCALE: i8 = 10;
/// Precision of a fact's `val` (the widest `Decimal128`).
pub const VAL_PRECISION: u8 = 38;

/// Why an SEC call failed.
#[derive(Debug, thiserror::Error)]
pub enum SecError {
    /// 404: the SEC has no such document for the CIK (no XBRL data, or no such filer).
    #[error("CIK {cik} has no {what} at the SEC (HTTP 404): it has no XBRL data or is not a filer")]
    NotFound {
        /// The 10-digit CIK.
        cik: String,
        /// Which document (`company facts`, `submissions`).
        what: &'static str,
    },
    /// The dev source has no fixture for the CIK.
    #[error("CIK {cik} has no {what} in the SEC dev source (it holds {known}); set SEC_USER_AGENT to use the live API")]
    NotInDevSource {
        /// The 10-digit CIK.
        cik: String,
        /// Which document.
        what: &'static str,
        /// The CIKs it holds.
        known: String,
    },
    /// A 403 that is not a rate-limit page: the SEC refused, and said why.
    #[error("SEC refused {operation} (HTTP 403): {reason}")]
    Forbidden {
        /// What was asked.
        operation: String,
        /// The reason, from the response page.
        reason: String,
    },
    /// Throttled (429 or the rate-limit 403) on every attempt, each after a cool-down.
    #[error("SEC throttled {operation} {attempts} times (each followed by a {cool_down:?} pause of every SEC request)")]
    Throttled {
        /// What was asked.
        operation: String,
        /// Attempts made.
        attempts: usize,
        /// The cool-down after each.
        cool_down: Duration,
    },
    /// Still failing after every attempt (5xx, timeouts, connection errors).
    #[error("SEC unavailable: {operation} failed {attempts} times; last: {last}")]
    Unavailable {
        /// What was asked.
        operation: String,
        /// Attempts made.
        attempts: usize,
        /// The last cause.
        last: String,
    },
    /// Another 4xx: the request itself is wrong; not retried.
    #[error("SEC refused {operation}: HTTP {status}")]
    Refused {
        /// What was asked.
        operation: String,
        /// The status code.
        status: u16,
    },
    /// The body is not the documented JSON.
    #[error("SEC returned malformed data for {operation}: {detail}")]
    Malformed {
        /// What was asked.
        operation: String,
        /// What was wrong.
        detail: String,
    },
    /// A fact's value does not fit `Decimal128(38, 10)` exactly; nothing is rounded.
    #[error(
        "CIK {cik}: {fact} has val {val}, which does not fit Decimal128({VAL_PRECISION}, {VAL_SCALE}) exactly: {why}"
    )]
    ValueOutOfRange {
        /// The CIK.
        cik: String,
        /// The fact: `taxonomy:concept (unit, accn …)`.
        fact: String,
        /// The value as the SEC wrote it.
        val: String,
        /// Why it does not fit.
        why: String,
    },
    /// The client could not be built (bad URL or User-Agent).
    #[error("SEC client is not usable: {0}")]
    Config(String),
}

impl SecError {
    /// Whether trying again later may succeed: a throttle or an outage may pass; a 404, a
    /// refusal, malformed data, a value that does not fit or a bad configuration will not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SecError::Throttled { .. } | SecError::Unavailable { .. })
    }
}

/// One filer's filing index: one row per filing (see [`submissions_schema`]).
#[derive(Debug, Clone)]
pub struct Submissions {
    /// The filer's name.
    pub name: String,
    /// The filings.
    pub table: RecordBatch,
}

/// One filer's XBRL facts: one row per reported fact (see [`company_facts_schema`]).
#[derive(Debug, Clone)]
pub struct CompanyFacts {
    /// The filer's name (`entityName`).
    pub entity_name: String,
    /// The facts.
    pub table: RecordBatch,
}

/// Where SEC data comes from: the live API or the dev source.
#[async_trait]
pub trait SecSource: Send + Sync + 'static {
    /// Every filing of `cik` (10 digits), newest first as the SEC lists them.
    async fn submissions(&self, cik: &str) -> Result<Submissions, SecError>;
    /// The accession number of the newest filing of `cik`, from its recent filings only (one
    /// request); `None` when it has none.
    async fn latest_accession(&self, cik: &str) -> Result<Option<String>, SecError>;
    /// Every XBRL fact of `cik`.
    async fn company_facts(&self, cik: &str) -> Result<CompanyFacts, SecError>;
    /// `live` or `dev`, for the `source` metadata of outputs.
    fn kind(&self) -> &'static str;
    /// What the source is; dev sources say so.
    fn describe(&self) -> String;
}

/// The schema of `sec_submissions`.
pub fn submissions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("cik", DataType::Utf8, false),
        Field::new("accession_number", DataType::Utf8, false),
        Field::new("form", DataType::Utf8, false),
        Field::new("filing_date", DataType::Date32, false),
        Field::new("report_date", DataType::Date32, true),
        Field::new("primary_document", DataType::Utf8, true),
    ]))
}

/// The schema of `sec_company_facts`; `start` is null for instant facts, `frame` for facts
/// the SEC did not pick for a calendar frame, `fy`/`fp` where the SEC gives none.
pub fn company_facts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("cik", DataType::Utf8, false),
        Field::new("taxonomy", DataType::Utf8, false),
        Field::new("concept", DataType::Utf8, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new("start", DataType::Date32, true),
        Field::new("end", DataType::Date32, false),
        Field::new("val", DataType::Decimal128(VAL_PRECISION, VAL_SCALE), false),
        Field::new("accn", DataType::Utf8, false),
        Field::new("fy", DataType::Int32, true),
        Field::new("fp", DataType::Utf8, true),
        Field::new("form", DataType::Utf8, false),
        Field::new("filed", DataType::Date32, false),
        Field::new("frame", DataType::Utf8, true),
    ]))
}

// ---------------------------------------------------------------------------------------------
// Parsing (shared by the live client and the dev source).

/// A JSON object read in document order, without hashing.
struct Ordered<K, V>(Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Ordered<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for V_<K, V> {
            type Value = Ordered<K, V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V_(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct FactsDoc<'a> {
    cik: u64,
    #[serde(rename = "entityName", borrow, default)]
    entity_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    facts: Ordered<Cow<'a, str>, Ordered<Cow<'a, str>, Concept<'a>>>,
}

#[derive(Deserialize)]
struct Concept<'a> {
    #[serde(borrow, default = "no_units")]
    units: Ordered<Cow<'a, str>, Vec<Fact<'a>>>,
}

fn no_units<'a>() -> Ordered<Cow<'a, str>, Vec<Fact<'a>>> {
    Ordered(Vec::new())
}

#[derive(Deserialize)]
struct Fact<'a> {
    #[serde(borrow, default)]
    start: Option<&'a str>,
    #[serde(borrow)]
    end: &'a str,
    #[serde(borrow)]
    val: &'a RawValue,
    #[serde(borrow)]
    accn: Cow<'a, str>,
    #[serde(default)]
    fy: Option<i32>,
    #[serde(borrow, default)]
    fp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    form: Cow<'a, str>,
    #[serde(borrow)]
    filed: &'a str,
    #[serde(borrow, default)]
    frame: Option<Cow<'a, str>>,
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn date32(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        s.get(r).filter(|t| t.bytes().all(|c| c.is_ascii_digit()))?.parse().ok()
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    Some((date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32)
}

/// A JSON number's text as an integer count of 10^-`scale`: exact, or an error saying why not.
pub fn parse_decimal(text: &str, scale: u32) -> Result<i128, String> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => {
            let exp: i32 = rest[i + 1..].parse().map_err(|_| "not a number".to_owned())?;
            (&rest[..i], exp)
        }
        None => (rest, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty()
        || !int_part.bytes().all(|c| c.is_ascii_digit())
        || !frac_part.bytes().all(|c| c.is_ascii_digit())
    {
        return Err("not a number".to_owned());
    }
    // digits × 10^(exponent - frac digits), rescaled to `scale` decimals.
    let digits = int_part.bytes().chain(frac_part.bytes());
    let shift = i64::from(exponent) - frac_part.len() as i64 + i64::from(scale);
    let mut value: i128 = 0;
    let overflow = || format!("more than {VAL_PRECISION} digits");
    for c in digits {
        value = value.checked_mul(10).and_then(|v| v.checked_add(i128::from(c - b'0'))).ok_or_else(overflow)?;
    }
    if shift >= 0 {
        for _ in 0..shift {
            if value == 0 {
                break;
            }
            value = value.checked_mul(10).ok_or_else(overflow)?;
        }
    } else {
        for _ in 0..(-shift) {
            if value == 0 {
                break;
            }
            if value % 10 != 0 {
                return Err(format!("more than {scale} decimal places"));
            }
            value /= 10;
        }
    }
    if value >= 10i128.pow(u32::from(VAL_PRECISION)) {
        return Err(overflow());
    }
    Ok(if negative { -value } else { value })
}

fn malformed(operation: &str, detail: impl Into<String>) -> SecError {
    SecError::Malformed { operation: operation.to_owned(), detail: detail.into() }
}

/// Parses a companyfacts document of `cik` (10 digits) into one row per fact, in document order.
pub fn parse_company_facts(cik: &str, body: &[u8]) -> Result<CompanyFacts, SecError> {
    let operation = format!("company facts of CIK {cik}");
    let doc: FactsDoc<'_> = serde_json::from_slice(body).map_err(|e| malformed(&operation, e.to_string()))?;
    if format!("{:010}", doc.cik) != cik {
        return Err(malformed(&operation, format!("answered for CIK {}", doc.cik)));
    }
    let n: usize = doc.facts.0.iter().flat_map(|(_, c)| &c.0).flat_map(|(_, c)| &c.units.0).map(|(_, f)| f.len()).sum();
    let mut cik_b = StringBuilder::with_capacity(n, n * 10);
    let mut taxonomy_b = StringBuilder::with_capacity(n, n * 8);
    let mut concept_b = StringBuilder::with_capacity(n, n * 32);
    let mut unit_b = StringBuilder::with_capacity(n, n * 4);
    let mut start_b = Date32Builder::with_capacity(n);
    let mut end_b = Date32Builder::with_capacity(n);
    let mut val_b = Decimal128Builder::with_capacity(n);
    let mut accn_b = StringBuilder::with_capacity(n, n * 20);
    let mut fy_b = Int32Builder::with_capacity(n);
    let mut fp_b = StringBuilder::with_capacity(n, n * 2);
    let mut form_b = StringBuilder::with_capacity(n, n * 4);
    let mut filed_b = Date32Builder::with_capacity(n);
    let mut frame_b = StringBuilder::with_capacity(n, n * 8);
    let bad_date =
        |field: &str, value: &str| malformed(&operation, format!("{field} {value:?} is not a YYYY-MM-DD date"));
    for (taxonomy, concepts) in &doc.facts.0 {
        for (concept, body) in &concepts.0 {
            for (unit, facts) in &body.units.0 {
                for f in facts {
                    let val =
                        parse_decimal(f.val.get(), VAL_SCALE as u32).map_err(|why| SecError::ValueOutOfRange {
                            cik: cik.to_owned(),
                            fact: format!("{taxonomy}:{concept} ({unit}, accn {})", f.accn),
                            val: f.val.get().to_owned(),
                            why,
                        })?;
                    cik_b.append_value(cik);
                    taxonomy_b.append_value(taxonomy);
                    concept_b.append_value(concept);
                    unit_b.append_value(unit);
                    match f.start {
                        Some(s) => start_b.append_value(date32(s).ok_or_else(|| bad_date("start", s))?),
                        None => start_b.append_null(),
                    }
                    end_b.append_value(date32(f.end).ok_or_else(|| bad_date("end", f.end))?);
                    val_b.append_value(val);
                    accn_b.append_value(&f.accn);
                    fy_b.append_option(f.fy);
                    fp_b.append_option(f.fp.as_deref());
                    form_b.append_value(&f.form);
                    filed_b.append_value(date32(f.filed).ok_or_else(|| bad_date("filed", f.filed))?);
                    frame_b.append_option(f.frame.as_deref());
                }
            }
        }
    }
    let val = val_b
        .finish()
        .with_precision_and_scale(VAL_PRECISION, VAL_SCALE)
        .map_err(|e| malformed(&operation, e.to_string()))?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(cik_b.finish()),
        Arc::new(taxonomy_b.finish()),
        Arc::new(concept_b.finish()),
        Arc::new(unit_b.finish()),
        Arc::new(start_b.finish()),
        Arc::new(end_b.finish()),
        Arc::new(val),
        Arc::new(accn_b.finish()),
        Arc::new(fy_b.finish()),
        Arc::new(fp_b.finish()),
        Arc::new(form_b.finish()),
        Arc::new(filed_b.finish()),
        Arc::new(frame_b.finish()),
    ];
    let table =
        RecordBatch::try_new(company_facts_schema(), columns).map_err(|e| malformed(&operation, e.to_string()))?;
    Ok(CompanyFacts { entity_name: doc.entity_name.map(Cow::into_owned).unwrap_or_default(), table })
}

/// `filings.recent`, or an older page: parallel arrays, one entry per filing.
#[derive(Deserialize)]
struct Columns<'a> {
    #[serde(rename = "accessionNumber", borrow)]
    accession_number: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    form: Vec<Cow<'a, str>>,
    #[serde(rename = "filingDate", borrow)]
    filing_date: Vec<Cow<'a, str>>,
    #[serde(rename = "reportDate", borrow, default)]
    report_date: Vec<Cow<'a, str>>,
    #[serde(rename = "primaryDocument", borrow, default)]
    primary_document: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct SubmissionsDoc<'a> {
    cik: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    filings: Filings<'a>,
}

#[derive(Deserialize)]
struct Filings<'a> {
    #[serde(borrow)]
    recent: Columns<'a>,
    #[serde(default)]
    files: Vec<OlderPage>,
}

/// One older page of filings, listed in `filings.files`.
#[derive(Deserialize, Debug, Clone)]
struct OlderPage {
    name: String,
}

/// The filings of one filer, parsed page by page.
#[derive(Default)]
struct FilingRows {
    accession_number: StringBuilder,
    form: StringBuilder,
    filing_date: Date32Builder,
    report_date: Date32Builder,
    primary_document: StringBuilder,
    n: usize,
}

impl FilingRows {
    fn add(&mut self, operation: &str, c: &Columns<'_>) -> Result<(), SecError> {
        let n = c.accession_number.len();
        let lens = [c.form.len(), c.filing_date.len()];
        if lens.iter().any(|l| *l != n)
            || (!c.report_date.is_empty() && c.report_date.len() != n)
            || (!c.primary_document.is_empty() && c.primary_document.len() != n)
        {
            return Err(malformed(operation, "the filing columns have different lengths"));
        }
        for i in 0..n {
            self.accession_number.append_value(&c.accession_number[i]);
            self.form.append_value(&c.form[i]);
            let filed = &c.filing_date[i];
            self.filing_date.append_value(
                date32(filed)
                    .ok_or_else(|| malformed(operation, format!("filingDate {filed:?} is not a YYYY-MM-DD date")))?,
            );
            match c.report_date.get(i).map(AsRef::as_ref).filter(|d| !d.is_empty()) {
                Some(d) => self.report_date.append_value(
                    date32(d)
                        .ok_or_else(|| malformed(operation, format!("reportDate {d:?} is not a YYYY-MM-DD date")))?,
                ),
                None => self.report_date.append_null(),
            }
            self.primary_document.append_option(c.primary_document.get(i).map(AsRef::as_ref).filter(|d| !d.is_empty()));
        }
        self.n += n;
        Ok(())
    }

    fn finish(mut self, cik: &str) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(cik, self.n))),
            Arc::new(self.accession_number.finish()),
            Arc::new(self.form.finish()),
            Arc::new(self.filing_date.finish()),
            Arc::new(self.report_date.finish()),
            Arc::new(self.primary_document.finish()),
        ];
        RecordBatch::try_new(submissions_schema(), columns).expect("columns match the schema")
    }
}

/// The header and recent filings of a submissions document.
struct ParsedSubmissions {
    name: String,
    rows: FilingRows,
    older: Vec<String>,
    latest: Option<String>,
}

fn parse_submissions(cik: &str, body: &[u8]) -> Result<ParsedSubmissions, SecError> {
    let operation = format!("submissions of CIK {cik}");
    let doc: SubmissionsDoc<'_> = serde_json::from_slice(body).map_err(|e| malformed(&operation, e.to_string()))?;
    if doc.cik.parse::<u64>().ok().map(|c| format!("{c:010}")).as_deref() != Some(cik) {
        return Err(malformed(&operation, format!("answered for CIK {:?}", doc.cik)));
    }
    let mut rows = FilingRows::default();
    rows.add(&operation, &doc.filings.recent)?;
    // The newest filing: latest filing date, then the highest accession number.
    let recent = &doc.filings.recent;
    let latest = (0..recent.accession_number.len())
        .max_by(|&a, &b| {
            (&recent.filing_date[a], &recent.accession_number[a])
                .cmp(&(&recent.filing_date[b], &recent.accession_number[b]))
        })
        .map(|i| recent.accession_number[i].to_string());
    let older = doc.filings.files.into_iter().map(|f| f.name).collect();
    Ok(ParsedSubmissions { name: doc.name.map(Cow::into_owned).unwrap_or_default(), rows, older, latest })
}

/// An older page's name is a file name the SEC gave (`CIK##########-submissions-001.json`);
/// anything else is refused rather than put into a URL.
fn older_page_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.ends_with(".json")
        && !name.contains("..")
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

// ---------------------------------------------------------------------------------------------
// The live client.

/// How the client behaves (`SEC_API_URL`, `SEC_USER_AGENT`, `SEC_RATE_LIMIT`,
/// `SEC_COOL_DOWN_SECS`).
#[derive(Debug, Clone)]
pub struct SecConfig {
    /// The declared User-Agent: "Company Name admin@company.com".
    pub user_agent: String,
    /// Requests per second, at most 10 (the SEC's limit for all of a sender's traffic).
    pub rate_per_sec: f64,
    /// How long every request pauses after a throttle answer.
    pub cool_down: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per call (the first included), for transient failures and throttles alike.
    pub attempts: usize,
    /// The first retry delay after a transient failure (doubling, with jitter, up to 30 s).
    pub first_delay: Duration,
}

impl SecConfig {
    /// The defaults for `user_agent`: 10 requests/s, a 600 s cool-down, 60 s timeouts, 3
    /// attempts.
    pub fn new(user_agent: impl Into<String>) -> SecConfig {
        SecConfig {
            user_agent: user_agent.into(),
            rate_per_sec: 10.0,
            cool_down: Duration::from_secs(600),
            timeout: Duration::from_secs(60),
            attempts: 3,
            first_delay: Duration::from_millis(500),
        }
    }
}

/// The pace of every request of a client and its clones: a token bucket of one token (requests
/// are spaced by `1 / rate`) and the cool-down every request waits out after a throttle.
#[derive(Debug)]
pub struct Gate {
    interval: Duration,
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    next_slot: Instant,
    paused_until: Option<Instant>,
}

impl Gate {
    /// A gate letting `rate_per_sec` requests through per second.
    pub fn new(rate_per_sec: f64) -> Gate {
        Gate {
            interval: Duration::from_secs_f64(1.0 / rate_per_sec),
            state: Mutex::new(GateState { next_slot: Instant::now(), paused_until: None }),
        }
    }

    /// Waits for this request's turn: after any cool-down, then for the next free slot.
    pub async fn acquire(&self) {
        loop {
            let (until, slot) = {
                let mut s = self.state.lock().expect("gate lock is never poisoned");
                let now = Instant::now();
                match s.paused_until {
                    Some(p) if p > now => (p, false),
                    _ => {
                        let slot = s.next_slot.max(now);
                        s.next_slot = slot + self.interval;
                        (slot, true)
                    }
                }
            };
            tokio::time::sleep_until(until).await;
            if slot && !self.paused() {
                return;
            }
        }
    }

    fn paused(&self) -> bool {
        let s = self.state.lock().expect("gate lock is never poisoned");
        s.paused_until.is_some_and(|p| p > Instant::now())
    }

    /// Pauses every request for `cool_down` from now (a pause already longer stays).
    pub fn pause(&self, cool_down: Duration) {
        let mut s = self.state.lock().expect("gate lock is never poisoned");
        let until = Instant::now() + cool_down;
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }
}

/// The live SEC API over HTTP.
#[derive(Clone)]
pub struct SecClient {
    http: reqwest::Client,
    base: String,
    config: SecConfig,
    gate: Arc<Gate>,
}

impl std::fmt::Debug for SecClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecClient").field("base", &self.base).finish_non_exhaustive()
    }
}

/// What one response meant.
enum Answer {
    Body(bytes::Bytes),
    NotFound,
}

impl SecClient {
    /// A client for `base_url` (`SEC_API_URL`, `https://data.sec.gov` in production).
    pub fn new(base_url: &str, config: SecConfig) -> Result<SecClient, SecError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(SecError::Config(format!("SEC_API_URL {base_url:?} is not an http:// or https:// URL")));
        }
        if !(config.rate_per_sec > 0.0 && config.rate_per_sec <= 10.0) {
            return Err(SecError::Config(format!(
                "a rate of {} requests/s is not in (0, 10]: the SEC allows at most 10",
                config.rate_per_sec
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(config.user_agent.clone())
            .gzip(true)
            .build()
            .map_err(|e| SecError::Config(e.to_string()))?;
        let gate = Arc::new(Gate::new(config.rate_per_sec));
        Ok(SecClient { http, base: base_url.trim_end_matches('/').to_owned(), config, gate })
    }

    /// The gate every request of this client (and its clones) goes through.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// GETs `path`, keeping the SEC's rules (see the module docs).
    async fn get(&self, operation: &str, path: &str) -> Result<Answer, SecError> {
        let url = format!("{}{path}", self.base);
        // The last transient failure; `None` when the last attempt was throttled.
        let mut last: Option<String> = None;
        let mut throttles = 0;
        for attempt in 1..=self.config.attempts.max(1) {
            self.gate.acquire().await;
            let transient = match self.http.get(&url).send().await {
                Err(e) => describe_reqwest(&e),
                Ok(response) => {
                    let status = response.status().as_u16();
                    match status {
                        200..=299 => match response.bytes().await {
                            Ok(body) => return Ok(Answer::Body(body)),
                            Err(e) => describe_reqwest(&e),
                        },
                        404 => return Ok(Answer::NotFound),
                        429 => {
                            self.throttled(operation, status);
                            throttles += 1;
                            last = None;
                            continue;
                        }
                        403 => {
                            let page = response.text().await.unwrap_or_default();
                            if page.contains("Request Rate Threshold Exceeded") {
                                self.throttled(operation, status);
                                throttles += 1;
                                last = None;
                                continue;
                            }
                            return Err(SecError::Forbidden { operation: operation.to_owned(), reason: reason(&page) });
                        }
                        500..=599 => format!("HTTP {status}"),
                        _ => return Err(SecError::Refused { operation: operation.to_owned(), status }),
                    }
                }
            };
            tracing::warn!(message = "SEC request failed.", operation, cause = %transient, attempt);
            last = Some(transient);
            if attempt < self.config.attempts {
                let base =
                    self.config.first_delay.saturating_mul(1 << (attempt - 1).min(16)).min(Duration::from_secs(30));
                let delay = base / 2 + base.mul_f64(fastrand::f64() / 2.0);
                tokio::time::sleep(delay).await;
            }
        }
        match last {
            None => Err(SecError::Throttled {
                operation: operation.to_owned(),
                attempts: throttles,
                cool_down: self.config.cool_down,
            }),
            Some(last) => Err(SecError::Unavailable {
                operation: operation.to_owned(),
                attempts: self.config.attempts.max(1),
                last,
            }),
        }
    }

    fn throttled(&self, operation: &str, status: u16) {
        tracing::warn!(
            message = "SEC throttled a request; pausing every SEC request.",
            operation,
            status,
            cool_down_secs = self.config.cool_down.as_secs()
        );
        self.gate.pause(self.config.cool_down);
    }

    async fn body(&self, cik: &str, what: &'static str, operation: &str, path: &str) -> Result<bytes::Bytes, SecError> {
        match self.get(operation, path).await? {
            Answer::Body(b) => Ok(b),
            Answer::NotFound => Err(SecError::NotFound { cik: cik.to_owned(), what }),
        }
    }

    async fn recent(&self, cik: &str) -> Result<ParsedSubmissions, SecError> {
        let body = self
            .body(
                cik,
                "submissions",
                &format!("GET /submissions/CIK{cik}.json"),
                &format!("/submissions/CIK{cik}.json"),
            )
            .await?;
        parse_submissions(cik, &body)
    }
}

#[async_trait]
impl SecSource for SecClient {
    async fn submissions(&self, cik: &str) -> Result<Submissions, SecError> {
        check_cik(cik)?;
        let mut parsed = self.recent(cik).await?;
        for name in &parsed.older {
            let operation = format!("GET /submissions/{name}");
            if !older_page_name_ok(name) {
                return Err(malformed(&operation, "not a file name"));
            }
            let body = self.body(cik, "older submissions page", &operation, &format!("/submissions/{name}")).await?;
            let page: Columns<'_> = serde_json::from_slice(&body).map_err(|e| malformed(&operation, e.to_string()))?;
            parsed.rows.add(&operation, &page)?;
        }
        Ok(Submissions { name: parsed.name, table: parsed.rows.finish(cik) })
    }

    async fn latest_accession(&self, cik: &str) -> Result<Option<String>, SecError> {
        check_cik(cik)?;
        Ok(self.recent(cik).await?.latest)
    }

    async fn company_facts(&self, cik: &str) -> Result<CompanyFacts, SecError> {
        check_cik(cik)?;
        let path = format!("/api/xbrl/companyfacts/CIK{cik}.json");
        let body = self.body(cik, "company facts", &format!("GET {path}"), &path).await?;
        let cik = cik.to_owned();
        tokio::task::spawn_blocking(move || parse_company_facts(&cik, &body)).await.expect("parsing does not panic")
    }

    fn kind(&self) -> &'static str {
        "live"
    }

    fn describe(&self) -> String {
        format!("SEC EDGAR API at {}", self.base)
    }
}

/// A CIK as URLs need it: exactly 10 digits.
fn check_cik(cik: &str) -> Result<(), SecError> {
    if cik.len() == 10 && cik.bytes().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(SecError::Config(format!("{cik:?} is not a 10-digit CIK")))
    }
}

/// The reason a 403 page gives: its text without markup, on one line, at most 200 characters.
fn reason(page: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in page.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = if text.is_empty() { "no reason given".to_owned() } else { text };
    let mut clipped: String = text.chars().take(200).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    if text.contains("Undeclared Automated Tool") {
        clipped.push_str(" (set SEC_USER_AGENT to \"Company Name admin@company.com\")");
    }
    clipped
}

// ---------------------------------------------------------------------------------------------
// The dev source.

/// The labeled dev source: small composed fixtures (not real SEC data) for a few CIKs, shipped
/// in `resources/fixtures/sec/`, parsed by the same code as live answers.
#[derive(Debug, Clone, Default)]
pub struct DevSecSource;

/// The dev source's fixtures: (CIK, submissions, companyfacts).
const DEV_FIXTURES: &[(&str, &[u8], &[u8])] = &[
    (
        "0000320193",
        include_bytes!("../fixtures/sec/submissions/CIK0000320193.json"),
        include_bytes!("../fixtures/sec/companyfacts/CIK0000320193.json"),
    ),
    (
        "0000789019",
        include_bytes!("../fixtures/sec/submissions/CIK0000789019.json"),
        include_bytes!("../fixtures/sec/companyfacts/CIK0000789019.json"),
    ),
];

impl DevSecSource {
    /// The CIKs the dev source holds.
    pub fn ciks() -> Vec<&'static str> {
        DEV_FIXTURES.iter().map(|f| f.0).collect()
    }

    fn fixture(
        cik: &str,
        what: &'static str,
    ) -> Result<&'static (&'static str, &'static [u8], &'static [u8]), SecError> {
        DEV_FIXTURES.iter().find(|f| f.0 == cik).ok_or_else(|| SecError::NotInDevSource {
            cik: cik.to_owned(),
            what,
            known: DevSecSource::ciks().join(", "),
        })
    }
}

#[async_trait]
impl SecSource for DevSecSource {
    async fn submissions(&self, cik: &str) -> Result<Submissions, SecError> {
        let parsed = parse_submissions(cik, DevSecSource::fixture(cik, "submissions")?.1)?;
        Ok(Submissions { name: parsed.name, table: parsed.rows.finish(cik) })
    }

    async fn latest_accession(&self, cik: &str) -> Result<Option<String>, SecError> {
        Ok(parse_submissions(cik, DevSecSource::fixture(cik, "submissions")?.1)?.latest)
    }

    async fn company_facts(&self, cik: &str) -> Result<CompanyFacts, SecError> {
        parse_company_facts(cik, DevSecSource::fixture(cik, "company facts")?.2)
    }

    fn kind(&self) -> &'static str {
        "dev"
    }

    fn describe(&self) -> String {
        format!("SEC dev source: composed fixtures for CIKs {} (not real SEC data)", DevSecSource::ciks().join(", "))
    }
}

#[cfg(test)]
mod tests;
