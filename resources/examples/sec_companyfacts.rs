//! Benchmark (not a test): generates a companyfacts document of N facts (default 100,000),
//! parses it into the `sec_company_facts` table and writes it as Parquet, the way the asset and
//! the IO manager do; prints the document size, the wall time of parse + encode + write, and
//! the process's peak RSS.
//!
//! ```sh
//! cargo run --release -p resources --example sec_companyfacts [-- FACTS]
//! ```

use std::fmt::Write as _;
use std::time::Instant;

fn document(n_facts: usize) -> String {
    // Like a large filer: ~500 concepts over 4 taxonomies, several units, facts repeated across
    // filings (restatements), instants without `start`, about half without `frame`.
    let taxonomies = ["us-gaap", "dei", "srt", "ifrs-full"];
    let units = ["USD", "shares", "USD/shares", "pure"];
    let per_concept = 200;
    let mut doc = String::with_capacity(n_facts * 170);
    doc.push_str("{\"cik\":320193,\"entityName\":\"Benchmark Inc.\",\"facts\":{");
    let mut written = 0;
    let mut concept = 0;
    let mut first_taxonomy = true;
    for (t, taxonomy) in taxonomies.iter().enumerate() {
        if written >= n_facts {
            break;
        }
        if !first_taxonomy {
            doc.push(',');
        }
        first_taxonomy = false;
        write!(doc, "\"{taxonomy}\":{{").unwrap();
        let mut first_concept = true;
        let share = n_facts.div_ceil(taxonomies.len());
        let stop = (written + share).min(n_facts);
        while written < stop {
            if !first_concept {
                doc.push(',');
            }
            first_concept = false;
            let unit = units[concept % units.len()];
            write!(
                doc,
                "\"Concept{concept}\":{{\"label\":\"Concept number {concept}\",\"description\":\"A generated concept \
                 for the benchmark.\",\"units\":{{\"{unit}\":["
            )
            .unwrap();
            for i in 0..per_concept.min(stop - written) {
                if i > 0 {
                    doc.push(',');
                }
                let year = 2009 + (i / 12) % 16;
                let quarter = i % 4 + 1;
                let end_month = quarter * 3;
                let start = if (concept + t) % 3 == 0 { String::new() } else { format!("\"start\":\"{year}-01-01\",") };
                let val = match unit {
                    "USD/shares" => format!("{}.{:02}", i % 13, i % 100),
                    "pure" => format!("0.{:04}", i % 10_000),
                    _ => format!("{}", 1_000_000_000_i64 + (i as i64) * 7_919_000),
                };
                let frame = if i % 2 == 0 { format!(",\"frame\":\"CY{year}Q{quarter}\"") } else { String::new() };
                write!(
                    doc,
                    "{{{start}\"end\":\"{year}-{end_month:02}-28\",\"val\":{val},\"accn\":\"0000320193-{:02}-{:06}\",\
                     \"fy\":{year},\"fp\":\"Q{quarter}\",\"form\":\"10-Q\",\"filed\":\"{year}-{:02}-15\"{frame}}}",
                    year % 100,
                    i,
                    end_month.min(11) + 1,
                )
                .unwrap();
                written += 1;
            }
            doc.push_str("]}}");
            concept += 1;
        }
        doc.push('}');
    }
    doc.push_str("}}");
    doc
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let n_facts: usize = std::env::args().nth(1).map_or(100_000, |a| a.parse().expect("a number of facts"));
    let doc = document(n_facts);
    let rss_before = peak_rss_mib();
    let path = std::env::temp_dir().join(format!("sec_companyfacts_bench_{}.parquet", std::process::id()));

    let t = Instant::now();
    let facts = resources::sec::parse_company_facts("0000320193", doc.as_bytes()).expect("the document parses");
    let parsed = t.elapsed();
    let (bytes, _) = resources::parquet_io::encode(&facts.table, &[]).expect("the table encodes");
    std::fs::write(&path, &bytes).expect("the file is written");
    let total = t.elapsed();

    println!(
        "document: {:.1} MB, {} facts -> {} rows; parse {:.0} ms, parse + Parquet ({:.1} MB) + write {:.0} ms; \
         peak RSS {:.0} MiB (after generating the document: {:.0} MiB)",
        doc.len() as f64 / 1e6,
        n_facts,
        facts.table.num_rows(),
        parsed.as_secs_f64() * 1e3,
        bytes.len() as f64 / 1e6,
        total.as_secs_f64() * 1e3,
        peak_rss_mib(),
        rss_before,
    );
    std::fs::remove_file(&path).ok();
}
