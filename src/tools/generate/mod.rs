//! A deterministic synthetic Sage company, for benchmarks and demos (`jcsync generate`).
//!
//! Writes the five Sage tables exactly as `fixtures/sage/` has them (same headers, the eight
//! excluded columns filled in) plus the matching Procore sandbox seed in `DIR/procore/`, so a
//! generated company can be synced end to end. The same seed gives the same bytes.
//!
//! The transaction table is written as it is generated, one document (an invoice, a payroll
//! batch, an expense batch, a budget entry) at a time, so memory stays flat whatever `N` is. The
//! only state that grows is the set of budget codes used, bounded by jobs × codes.
//!
//! Shape, roughly what a mid-size contractor's books look like:
//! - ~80 % actual costs (AP ~45 %, PR ~28 %, EQ/JC/IV/SM the rest), ~20 % other types
//!   (estimates, commitments, billing, receipts), which the pipeline filters;
//! - AP costs grouped in invoices of 1–6 lines; ~93 % of invoices are in `APM_MASTER__INVOICE`;
//! - payroll batches of 5–40 lines per job and week; a quarter of the jobs have sub jobs (Extra);
//! - keys right-padded to their Sage width on about half of the rows; ~1 % reversals;
//! - about one row in a thousand is bad, one of: an impossible Accounting_Date, a non-numeric
//!   Amount, an unknown Job, or a repeat of the previous row's natural key.
//!
//! This file holds the options, the summary and [`generate`] itself (the dimension tables, the
//! document loop, the sandbox seed); `company` the shape of the company and the row generator;
//! `writer` the CSV and Parquet table writers.

mod company;
mod writer;

use std::collections::BTreeSet;
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{FileFormat, TableNames};
use crate::sandbox::seed::{Credential, SeedCompany, SeedProject, SeedVendor, SeedWbsCode};
use crate::sandbox::{Seed, SeedError};
use company::{
    date_text, f, money_text, pad, pick_doc, transaction_header, Doc, Generator, JobSpec,
    CATEGORIES, COST_CODES, DAYS, FIRST_DAY, PREFIXES,
};
use writer::{io, TableWriter};

/// Why a company could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A table file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A Parquet table could not be written.
    #[error("cannot write {path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: parquet::errors::ParquetError,
    },
    /// The sandbox seed could not be written.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// The options make no company.
    #[error("invalid generator options: {0}")]
    Options(String),
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Rows of the transaction table (bad rows and filtered types included).
    pub transactions: u64,
    /// Jobs (Procore projects).
    pub jobs: u32,
    /// Seed of the generator: the same seed gives the same files.
    pub seed: u64,
    /// Output directory (the Sage tables; the sandbox seed goes to `out/procore`).
    pub out: PathBuf,
    /// `csv` or `parquet` (Parquet columns are all text, as a raw export would write them).
    pub format: FileFormat,
}

/// What was generated: the counts a sync of it must reproduce.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GenerateSummary {
    /// Rows of the transaction table.
    pub transactions: u64,
    /// Good rows of the six cost types (what a clean deep sync plans).
    pub cost_rows: u64,
    /// Rows of other types (filtered by the project stage).
    pub non_cost_rows: u64,
    /// Rows with an impossible Accounting_Date.
    pub bad_date: u64,
    /// Rows whose Amount is not a number.
    pub bad_amount: u64,
    /// Cost rows on a job that is not in the job table.
    pub unknown_job: u64,
    /// Cost rows repeating the previous row's natural key.
    pub duplicate_key: u64,
    /// Rows of `APM_MASTER__INVOICE` (the `.~` template row included).
    pub invoices: u64,
    /// Jobs (= Procore projects).
    pub jobs: u64,
    /// Vendors (= Procore vendors).
    pub vendors: u64,
    /// Budget codes in the sandbox seed.
    pub budget_codes: u64,
}

impl GenerateSummary {
    /// Rows the pipeline quarantines.
    pub fn bad_rows(&self) -> u64 {
        self.bad_date + self.bad_amount + self.unknown_job + self.duplicate_key
    }
}

/// Company id and credentials of the generated sandbox seed.
pub const GENERATED_COMPANY_ID: i64 = 4_294_967_999;
/// OAuth client id in the generated seed.
pub const GENERATED_CLIENT_ID: &str = "bench-client";
/// OAuth client secret in the generated seed.
pub const GENERATED_CLIENT_SECRET: &str = "bench-secret";

/// Generate a company into `options.out`: the five Sage tables and `procore/` (the sandbox seed).
pub fn generate(options: &GenerateOptions) -> Result<GenerateSummary, GenerateError> {
    if options.jobs == 0 || options.jobs > 90_000 {
        return Err(GenerateError::Options(format!(
            "--jobs must be between 1 and 90000, found {}",
            options.jobs
        )));
    }
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let tables = TableNames::default();
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);

    let jobs: Vec<JobSpec> = (0..options.jobs)
        .map(|i| JobSpec {
            number: format!("{}", 1001 + i),
            extras: if rng.random_bool(0.25) {
                (1..=rng.random_range(1..=3u32))
                    .map(|e| e.to_string())
                    .collect()
            } else {
                Vec::new()
            },
            weight: if rng.random_bool(0.1) {
                rng.random_range(20..60)
            } else {
                rng.random_range(1..10)
            },
        })
        .collect();
    // Vendors scale with the company, within what a contractor deals with.
    let vendors = (options.jobs * 8).clamp(20, 5_000);

    // Dimension tables.
    let mut summary = GenerateSummary {
        jobs: u64::from(options.jobs),
        vendors: u64::from(vendors),
        ..GenerateSummary::default()
    };
    {
        let mut w = TableWriter::create(
            out,
            &tables.account_prefix,
            options.format,
            &["Account_Prefix_A", "Account_Prefix_A_Description"],
        )?;
        for (i, (p, d)) in PREFIXES.iter().enumerate() {
            let p = if i % 2 == 0 {
                pad(p, 22)
            } else {
                p.to_string()
            };
            w.row(&[p, d.to_string()])?;
        }
        w.finish()?;
        let mut w = TableWriter::create(
            out,
            &tables.account,
            options.format,
            &["Account", "Account_Title", "Account_Type"],
        )?;
        for (i, (p, d)) in PREFIXES.iter().enumerate() {
            // The last division has no job cost account: its jobs' GL columns stay NULL.
            if i + 1 < PREFIXES.len() {
                w.row(&[
                    pad(&format!("{p}-5000"), 25),
                    format!("Job cost - {}", d.to_lowercase()),
                    "Expense".into(),
                ])?;
            }
            w.row(&[
                format!("{p}-4000"),
                format!("Contract revenue - {}", d.to_lowercase()),
                "Income".into(),
            ])?;
        }
        w.finish()?;
        let mut w = TableWriter::create(
            out,
            &tables.job,
            options.format,
            &[
                "Job",
                "Description",
                "Status",
                "Cost_Account_Prefix",
                "Cost_Account",
            ],
        )?;
        for (i, j) in jobs.iter().enumerate() {
            let (p, _) = PREFIXES[i % PREFIXES.len()];
            let status = ["In progress", "In progress", "Closed", "Unstarted"][i % 4];
            w.row(&[
                pad(&j.number, 10),
                format!("Generated project {}", j.number),
                status.into(),
                p.into(),
                format!("{p}-5000"),
            ])?;
        }
        w.finish()?;
    }

    let header = transaction_header();
    let mut tx = TableWriter::create(out, &tables.transaction, options.format, &header)?;
    let mut inv = TableWriter::create(
        out,
        &tables.invoice,
        options.format,
        &[
            "Vendor",
            "Invoice",
            "Description",
            "Status",
            "Amount",
            "Invoice_Date",
            "Date_Received",
            "Payment_Date",
            "Accounting_Date",
        ],
    )?;
    inv.row(&[
        ".~".into(),
        ".~".into(),
        String::new(),
        String::new(),
        "0".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ])?;
    summary.invoices = 1;

    let job_weight_total = jobs.iter().map(|j| j.weight).sum();
    let mut g = Generator {
        rng,
        jobs,
        job_weight_total,
        vendors,
        row: vec![String::new(); f::COUNT],
        summary,
        budget_codes: BTreeSet::new(),
        run: 1000,
        invoice_no: 10_000,
    };
    let n = options.transactions;
    let mut written = 0u64;
    while written < n {
        let day = FIRST_DAY + ((written as f64 / n as f64) * f64::from(DAYS)) as i32;
        let doc = pick_doc(&mut g.rng);
        let job = g.pick_job();
        g.run += 1;
        let lines = match doc {
            Doc::Ap => g.rng.random_range(1..=6u64),
            Doc::Pr => g.rng.random_range(5..=40),
            Doc::Other(_) => g.rng.random_range(1..=5),
            Doc::NonCost(_) => g.rng.random_range(1..=5),
        }
        .min(n - written);
        let mut period_end = None;
        let batch = match doc {
            Doc::Ap => format!("AP{}", g.run % 100_000),
            Doc::Pr => {
                // Payroll posts for the week ending the Saturday before.
                let saturday = day - 1 - (day + 4).rem_euclid(7);
                period_end = Some(saturday);
                format!("PR{}", g.run % 100_000)
            }
            Doc::Other(t) => format!("{}{}", &t[..2], g.run % 100_000),
            Doc::NonCost(_) => format!("JC{}", g.run % 100_000),
        };
        let vendor_invoice = if matches!(doc, Doc::Ap) {
            g.invoice_no += 1;
            let v = format!("V{:04}", g.rng.random_range(0..g.vendors) + 100);
            let number = if g.rng.random_bool(0.5) {
                format!("INV-{}", g.invoice_no)
            } else {
                g.invoice_no.to_string()
            };
            Some((v, number))
        } else {
            None
        };
        let mut invoice_cents = 0i64;
        for seq in 1..=lines {
            if written >= n {
                break;
            }
            let vi = vendor_invoice
                .as_ref()
                .map(|(v, i)| (v.as_str(), i.as_str()));
            g.line(doc, job, day, &batch, seq, vi, period_end);
            invoice_cents += (g.row[f::AMOUNT].parse::<f64>().unwrap_or(0.0) * 100.0) as i64;
            written += 1;
            let cost = !matches!(doc, Doc::NonCost(_));
            let mut emit = true;
            // About one row in a thousand is bad (only cost rows, so each is quarantined, not
            // filtered).
            if cost && g.rng.random_bool(0.001) {
                match g.rng.random_range(0..4u32) {
                    0 => {
                        g.set(f::ACCOUNTING_DATE, "2024-02-30");
                        g.summary.bad_date += 1;
                    }
                    1 => {
                        g.set(f::AMOUNT, "12.3O");
                        g.summary.bad_amount += 1;
                    }
                    2 => {
                        g.set(f::JOB, "99999");
                        g.summary.unknown_job += 1;
                    }
                    _ => {
                        // The row as it is, then once more: the repeat is the bad row.
                        tx.row(&g.row)?;
                        g.summary.cost_rows += 1;
                        if written < n {
                            written += 1;
                            g.summary.duplicate_key += 1;
                        } else {
                            emit = false;
                        }
                    }
                }
            } else if cost {
                g.summary.cost_rows += 1;
            } else {
                g.summary.non_cost_rows += 1;
            }
            if emit {
                tx.row(&g.row)?;
            }
        }
        // Most AP invoices are in the invoice table; the rest load with the transaction's date.
        if let Some((v, number)) = vendor_invoice {
            if g.rng.random_bool(0.93) {
                let status = ["Paid", "Paid", "Paid", "Open", "Voided"][g.rng.random_range(0..5)];
                let paid = status == "Paid";
                let invoice_day = day - g.rng.random_range(0..10);
                inv.row(&[
                    if g.rng.random_bool(0.5) {
                        pad(&v, 10)
                    } else {
                        v.clone()
                    },
                    pad(&number, 15),
                    format!("Invoice {number}"),
                    status.into(),
                    money_text(invoice_cents),
                    date_text(invoice_day),
                    date_text(invoice_day + 2),
                    if paid {
                        date_text(day + 30)
                    } else {
                        String::new()
                    },
                    date_text(day),
                ])?;
                g.summary.invoices += 1;
            }
        }
    }
    tx.finish()?;
    inv.finish()?;
    g.summary.transactions = written;

    let seed = sandbox_seed(&g);
    g.summary.budget_codes = seed.wbs_codes.len() as u64;
    seed.write_dir(&out.join("procore"))?;
    Ok(g.summary)
}

/// The Procore side of the generated company: a project per job, a vendor per Sage vendor, a
/// budget code per (extra, cost code, category) a loadable row uses.
fn sandbox_seed(g: &Generator) -> Seed {
    let projects = g
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| SeedProject {
            id: 5_000_000_000 + i as i64,
            name: format!("Generated project {}", j.number),
            project_number: j.number.clone(),
            origin_id: Some(format!("JOB-{}", j.number)),
        })
        .collect();
    let vendors = (0..g.vendors)
        .map(|i| SeedVendor {
            id: 6_000_000_000 + i64::from(i),
            name: format!("Generated vendor {}", i + 100),
            origin_id: Some(format!("V{:04}", i + 100)),
        })
        .collect();
    let wbs_codes = g
        .budget_codes
        .iter()
        .enumerate()
        .map(|(k, (job, extra, cc, cat))| {
            let spec = &g.jobs[*job as usize];
            let code = COST_CODES[*cc as usize];
            let category = CATEGORIES[*cat as usize];
            let flat_code = if *extra == 0 {
                format!("{code}.{category}")
            } else {
                format!("{}.{code}.{category}", spec.extras[*extra as usize - 1])
            };
            SeedWbsCode {
                id: Some(7_000_000_000 + k as i64),
                project_id: None,
                project_number: Some(spec.number.clone()),
                flat_code,
                description: format!("{code} {category}"),
            }
        })
        .collect();
    Seed {
        company: SeedCompany {
            id: GENERATED_COMPANY_ID,
            name: "Generated Contracting Co.".into(),
            credentials: vec![Credential {
                client_id: GENERATED_CLIENT_ID.into(),
                client_secret: GENERATED_CLIENT_SECRET.into(),
            }],
        },
        projects,
        vendors,
        wbs_codes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn options(dir: &Path, n: u64, format: FileFormat) -> GenerateOptions {
        GenerateOptions {
            transactions: n,
            jobs: 12,
            seed: 7,
            out: dir.to_path_buf(),
            format,
        }
    }

    #[test]
    fn same_seed_gives_the_same_files() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let sa = generate(&options(a.path(), 3000, FileFormat::Csv)).expect("a");
        let sb = generate(&options(b.path(), 3000, FileFormat::Csv)).expect("b");
        assert_eq!(sa, sb);
        let file = "JCT_CURRENT__TRANSACTION.csv";
        let ta = std::fs::read(a.path().join(file)).expect("read a");
        let tb = std::fs::read(b.path().join(file)).expect("read b");
        assert!(ta == tb, "transaction files differ");
    }

    #[test]
    fn transaction_header_matches_the_fixtures() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/sage/JCT_CURRENT__TRANSACTION.csv");
        let text = std::fs::read_to_string(fixture).expect("fixture");
        let first = text.lines().next().expect("header");
        assert_eq!(first, transaction_header().join(","));
    }

    #[test]
    fn shape_has_every_type_and_a_few_bad_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = generate(&options(dir.path(), 20_000, FileFormat::Csv)).expect("generate");
        assert_eq!(s.transactions, 20_000);
        assert_eq!(s.cost_rows + s.non_cost_rows + s.bad_rows(), s.transactions);
        let non_cost = s.non_cost_rows as f64 / s.transactions as f64;
        assert!(
            (0.12..0.28).contains(&non_cost),
            "non-cost share {non_cost}"
        );
        assert!(s.bad_rows() > 0 && s.bad_rows() < 100, "{s:?}");
        let text = std::fs::read_to_string(dir.path().join("JCT_CURRENT__TRANSACTION.csv"))
            .expect("transactions");
        for t in crate::model::cost_type::COST_TRANSACTION_TYPES {
            assert!(text.contains(&format!(",{t},")), "{t} missing");
        }
        assert!(text.contains("(Rev) ") && text.contains(",-"));
    }
}
