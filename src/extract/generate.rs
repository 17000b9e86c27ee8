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

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{FileFormat, TableNames};
use crate::extract::convert::days_to_date;
use crate::model::schema::{EXCLUDED_TRANSACTION_COLUMNS, TRANSACTION_SOURCE_COLUMNS};
use crate::sandbox::seed::{Credential, SeedCompany, SeedProject, SeedVendor, SeedWbsCode};
use crate::sandbox::{Seed, SeedError};

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

const COST_CODES: [&str; 16] = [
    "01-100", "01-200", "02-100", "02-200", "03-100", "03-300", "04-200", "05-100", "06-100",
    "07-200", "08-100", "09-100", "15-100", "15-400", "16-100", "16-500",
];
const CATEGORIES: [&str; 5] = ["L", "M", "S", "E", "O"];
const DESCRIPTIONS: [&str; 12] = [
    "Ready-mix concrete 4000 psi",
    "Rebar #5 grade 60",
    "Framing lumber 2x6",
    "Drywall 5/8 type X",
    "Electrical rough-in",
    "Plumbing fixtures",
    "HVAC ductwork",
    "Site survey",
    "Crane rental",
    "Temporary power",
    "Roofing membrane",
    "Paint and coatings",
];
const NON_COST_TYPES: [(&str, u32); 8] = [
    ("Committed cost", 50),
    ("Original estimate", 30),
    ("Approved est changes", 15),
    ("Aprvd cmmtt cst chng", 10),
    ("Scheduled value", 20),
    ("Work billed", 30),
    ("Cash receipt", 25),
    ("General Ledger only", 20),
];
const PREFIXES: [(&str, &str); 5] = [
    ("01", "Commercial division"),
    ("02", "Institutional division"),
    ("03", "Residential division"),
    ("04", "Heavy civil division"),
    ("05", "Service division"),
];
/// 2015-01-01 as Date32 days.
const FIRST_DAY: i32 = 16_436;
/// Ten years of postings.
const DAYS: i32 = 3_652;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + '_ {
    move |source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A table being written, CSV or Parquet, one row of text fields at a time.
enum TableWriter {
    Csv {
        path: PathBuf,
        out: BufWriter<File>,
    },
    Parquet {
        path: PathBuf,
        /// Boxed: the writer is large and the CSV variant small.
        writer: Box<ArrowWriter<File>>,
        schema: SchemaRef,
        builders: Vec<StringBuilder>,
        rows: usize,
    },
}

const PARQUET_BATCH: usize = 8192;

impl TableWriter {
    fn create(
        dir: &Path,
        table: &str,
        format: FileFormat,
        header: &[&str],
    ) -> Result<TableWriter, GenerateError> {
        let path = dir.join(format!("{table}.{}", format.extension()));
        let file = File::create(&path).map_err(io(&path))?;
        match format {
            FileFormat::Csv => {
                let mut out = BufWriter::with_capacity(1 << 20, file);
                out.write_all(header.join(",").as_bytes())
                    .and_then(|_| out.write_all(b"\n"))
                    .map_err(io(&path))?;
                Ok(TableWriter::Csv { path, out })
            }
            FileFormat::Parquet => {
                let schema: SchemaRef = Arc::new(Schema::new(
                    header
                        .iter()
                        .map(|h| Field::new(*h, DataType::Utf8, true))
                        .collect::<Vec<_>>(),
                ));
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                let writer =
                    ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
                        GenerateError::Parquet {
                            path: path.clone(),
                            source,
                        }
                    })?;
                Ok(TableWriter::Parquet {
                    path,
                    writer: Box::new(writer),
                    schema,
                    builders: header.iter().map(|_| StringBuilder::new()).collect(),
                    rows: 0,
                })
            }
        }
    }

    /// Write one row; an empty field is written empty (CSV) or NULL (Parquet).
    fn row(&mut self, fields: &[String]) -> Result<(), GenerateError> {
        match self {
            TableWriter::Csv { path, out } => {
                let mut write = || -> std::io::Result<()> {
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(f.as_bytes())?;
                    }
                    out.write_all(b"\n")
                };
                write().map_err(io(path))
            }
            TableWriter::Parquet { builders, rows, .. } => {
                for (b, f) in builders.iter_mut().zip(fields) {
                    if f.is_empty() {
                        b.append_null();
                    } else {
                        b.append_value(f);
                    }
                }
                *rows += 1;
                if *rows >= PARQUET_BATCH {
                    self.flush_batch()?;
                }
                Ok(())
            }
        }
    }

    fn flush_batch(&mut self) -> Result<(), GenerateError> {
        if let TableWriter::Parquet {
            path,
            writer,
            schema,
            builders,
            rows,
        } = self
        {
            if *rows == 0 {
                return Ok(());
            }
            let columns: Vec<ArrayRef> = builders
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef)
                .collect();
            let parquet_err = |source| GenerateError::Parquet {
                path: path.clone(),
                source,
            };
            let batch = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| parquet_err(parquet::errors::ParquetError::from(e)))?;
            writer.write(&batch).map_err(parquet_err)?;
            *rows = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), GenerateError> {
        self.flush_batch()?;
        match self {
            TableWriter::Csv { path, mut out } => out.flush().map_err(io(&path)),
            TableWriter::Parquet { path, writer, .. } => writer
                .close()
                .map(|_| ())
                .map_err(|source| GenerateError::Parquet { path, source }),
        }
    }
}

/// A job of the generated company.
struct JobSpec {
    number: String,
    /// Sub jobs ("1", "2", ...); empty when the job has none.
    extras: Vec<String>,
    /// Relative activity: a few big jobs, many small ones.
    weight: u32,
}

fn date_text(days: i32) -> String {
    days_to_date(days)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Right-pad to a Sage fixed width, as a replicated CHAR column arrives.
fn pad(value: &str, width: usize) -> String {
    format!("{value:<width$}")
}

/// Cents as Sage's float export writes them: the shortest text of the float.
fn money_text(cents: i64) -> String {
    let mut b = ryu::Buffer::new();
    let s = b.format_finite(cents as f64 / 100.0);
    s.strip_suffix(".0").unwrap_or(s).to_string()
}

/// The transaction table's columns, in the fixtures' order.
fn transaction_header() -> Vec<&'static str> {
    let mut h: Vec<&'static str> = TRANSACTION_SOURCE_COLUMNS.to_vec();
    h.extend(EXCLUDED_TRANSACTION_COLUMNS);
    h
}

/// Field positions in [`transaction_header`].
mod f {
    pub const JOB: usize = 0;
    pub const EXTRA: usize = 1;
    pub const COST_CODE: usize = 2;
    pub const CATEGORY: usize = 3;
    pub const TYPE: usize = 4;
    pub const TRANSACTION_DATE: usize = 5;
    pub const ACCOUNTING_DATE: usize = 6;
    pub const DESCRIPTION: usize = 7;
    pub const UNITS: usize = 8;
    pub const UNIT_COST: usize = 9;
    pub const AMOUNT: usize = 10;
    pub const VENDOR: usize = 11;
    pub const INVOICE: usize = 12;
    pub const DIST_SEQUENCE: usize = 13;
    pub const APPLICATION: usize = 14;
    pub const BATCH: usize = 15;
    pub const RUN: usize = 16;
    pub const SEQUENCE: usize = 17;
    pub const COMMITMENT: usize = 18;
    pub const COMMITMENT_LINE: usize = 19;
    pub const PERIOD_END: usize = 20;
    pub const DATE_STAMP: usize = 21;
    pub const TIME_STAMP: usize = 22;
    pub const COMMITMENT_CO: usize = 23;
    pub const CREDIT_ACCOUNT: usize = 24;
    pub const DEBIT_ACCOUNT: usize = 25;
    pub const EMPLOYEE: usize = 26;
    pub const EQUIPMENT: usize = 27;
    pub const PAY_ID: usize = 28;
    pub const REF_1: usize = 29;
    pub const REF_2: usize = 30;
    pub const COUNT: usize = 31;
}

/// The kind of document a group of transaction rows belongs to.
#[derive(Clone, Copy)]
enum Doc {
    Ap,
    Pr,
    Other(&'static str),
    NonCost(&'static str),
}

fn pick_doc(rng: &mut ChaCha8Rng) -> Doc {
    // Weights per document, tuned so rows come out ~45 % AP, ~28 % PR, ~7 % other costs and
    // ~20 % non-cost (payroll documents are much longer than the others).
    let x = rng.random_range(0..1000u32);
    match x {
        0..=559 => Doc::Ap,
        560..=609 => Doc::Pr,
        610..=659 => Doc::Other("EQ cost"),
        660..=684 => Doc::Other("JC cost"),
        685..=699 => Doc::Other("IV cost"),
        700..=714 => Doc::Other("SM cost"),
        _ => {
            let total: u32 = NON_COST_TYPES.iter().map(|(_, w)| w).sum();
            let mut y = rng.random_range(0..total);
            for (t, w) in NON_COST_TYPES {
                if y < w {
                    return Doc::NonCost(t);
                }
                y -= w;
            }
            Doc::NonCost(NON_COST_TYPES[0].0)
        }
    }
}

struct Generator {
    rng: ChaCha8Rng,
    jobs: Vec<JobSpec>,
    job_weight_total: u32,
    vendors: u32,
    row: Vec<String>,
    summary: GenerateSummary,
    /// (job, extra, cost code, category) indexes used by loadable rows.
    budget_codes: BTreeSet<(u32, u8, u8, u8)>,
    run: u64,
    invoice_no: u64,
}

impl Generator {
    fn pick_job(&mut self) -> u32 {
        let mut x = self.rng.random_range(0..self.job_weight_total);
        for (i, j) in self.jobs.iter().enumerate() {
            if x < j.weight {
                return i as u32;
            }
            x -= j.weight;
        }
        0
    }

    fn maybe_pad(&mut self, value: &str, width: usize) -> String {
        if self.rng.random_bool(0.5) {
            pad(value, width)
        } else {
            value.to_string()
        }
    }

    fn set(&mut self, i: usize, value: &str) {
        self.row[i].clear();
        self.row[i].push_str(value);
    }

    /// Fill `self.row` with one transaction line of a document.
    #[allow(clippy::too_many_arguments)]
    fn line(
        &mut self,
        doc: Doc,
        job: u32,
        day: i32,
        batch: &str,
        seq: u64,
        vendor: Option<(&str, &str)>,
        period_end: Option<i32>,
    ) {
        let ty = match doc {
            Doc::Ap => "AP cost",
            Doc::Pr => "PR cost",
            Doc::Other(t) | Doc::NonCost(t) => t,
        };
        let spec = &self.jobs[job as usize];
        let number = spec.number.clone();
        let extra_idx = if spec.extras.is_empty() {
            0
        } else {
            self.rng.random_range(1..=spec.extras.len()) as u8
        };
        let extra = if extra_idx == 0 {
            String::new()
        } else {
            spec.extras[extra_idx as usize - 1].clone()
        };
        let cc = self.rng.random_range(0..COST_CODES.len()) as u8;
        let cat = match doc {
            Doc::Pr => 0,
            Doc::Other("EQ cost") => 3,
            _ => self.rng.random_range(0..CATEGORIES.len()) as u8,
        };
        let v = self.maybe_pad(&number, 10);
        self.set(f::JOB, &v);
        let v = self.maybe_pad(&extra, 10);
        self.set(f::EXTRA, if extra.is_empty() { "" } else { &v });
        let v = self.maybe_pad(COST_CODES[cc as usize], 12);
        self.set(f::COST_CODE, &v);
        self.set(f::CATEGORY, CATEGORIES[cat as usize]);
        self.set(f::TYPE, ty);
        let tx_day = day - self.rng.random_range(0..5);
        self.set(f::TRANSACTION_DATE, &date_text(tx_day));
        self.set(f::ACCOUNTING_DATE, &date_text(day));
        let reversal = self.rng.random_bool(0.01);
        let desc = DESCRIPTIONS[self.rng.random_range(0..DESCRIPTIONS.len())];
        let desc = if !reversal {
            desc.to_string()
        } else if self.rng.random_bool(0.5) {
            format!("(Rev) {desc}")
        } else {
            format!("{desc} VOID")
        };
        self.set(f::DESCRIPTION, &desc[..desc.len().min(30)]);
        let units_hundredths: i64 = self.rng.random_range(100..50_000);
        let mut cents: i64 = match doc {
            Doc::NonCost(_) => self.rng.random_range(100_000..5_000_000),
            _ => self.rng.random_range(500..2_500_000),
        };
        if reversal {
            cents = -cents;
        }
        if self.rng.random_bool(0.6) {
            let units = units_hundredths as f64 / 100.0;
            self.set(f::UNITS, &money_text(units_hundredths));
            let unit_cost = (cents as f64 / 100.0 / units * 10_000.0).round() / 10_000.0;
            let mut b = ryu::Buffer::new();
            let s = b.format_finite(unit_cost).to_string();
            self.set(f::UNIT_COST, s.strip_suffix(".0").unwrap_or(&s));
        } else {
            self.set(f::UNITS, "");
            self.set(f::UNIT_COST, "");
        }
        // A few amounts carry a third decimal, as floats do; rounding is the pipeline's job.
        if self.rng.random_bool(0.02) {
            let s = format!("{}5", money_text(cents));
            let s = if s.contains('.') {
                s
            } else {
                format!("{}.005", money_text(cents))
            };
            self.set(f::AMOUNT, &s);
        } else {
            self.set(f::AMOUNT, &money_text(cents));
        }
        match vendor {
            Some((v, inv)) => {
                let v = self.maybe_pad(v, 10);
                self.set(f::VENDOR, &v);
                let inv = self.maybe_pad(inv, 15);
                self.set(f::INVOICE, &inv);
            }
            None => {
                self.set(f::VENDOR, "");
                self.set(f::INVOICE, "");
            }
        }
        self.set(f::DIST_SEQUENCE, "1");
        let app = match doc {
            Doc::Ap => "AP",
            Doc::Pr => "PR",
            Doc::Other("EQ cost") => "EQ",
            Doc::Other("IV cost") => "IV",
            Doc::Other("SM cost") => "SM",
            Doc::NonCost("Work billed") | Doc::NonCost("Cash receipt") => "AR",
            Doc::NonCost("Committed cost") | Doc::NonCost("Aprvd cmmtt cst chng") => "CM",
            Doc::NonCost("General Ledger only") => "GL",
            _ => "JC",
        };
        self.set(f::APPLICATION, app);
        self.set(f::BATCH, batch);
        self.set(f::RUN, &self.run.to_string());
        self.set(f::SEQUENCE, &seq.to_string());
        let commitment =
            matches!(doc, Doc::Ap | Doc::NonCost("Committed cost")) && self.rng.random_bool(0.4);
        if commitment {
            self.set(f::COMMITMENT, &format!("PO-{number}-{:02}", cc + 1));
            self.set(f::COMMITMENT_LINE, "1");
        } else {
            self.set(f::COMMITMENT, "");
            self.set(f::COMMITMENT_LINE, "");
        }
        match period_end {
            Some(p) => self.set(f::PERIOD_END, &date_text(p)),
            None => self.set(f::PERIOD_END, ""),
        }
        let stamp = day + self.rng.random_range(0..3);
        self.set(f::DATE_STAMP, &date_text(stamp));
        let secs = self.rng.random_range(6 * 3600..19 * 3600u32);
        self.set(
            f::TIME_STAMP,
            &format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
        );
        // The eight excluded columns, filled as a real export would fill them.
        let r = self.run;
        self.set(
            f::COMMITMENT_CO,
            &if commitment {
                format!("XCO-{}", r % 9000)
            } else {
                String::new()
            },
        );
        self.set(f::CREDIT_ACCOUNT, &format!("XCR-{}-A", 1000 + cc as u32));
        self.set(f::DEBIT_ACCOUNT, &format!("XDR-{}", 500 + cc as u32));
        let pr = matches!(doc, Doc::Pr);
        self.set(
            f::EMPLOYEE,
            &if pr {
                format!("XEMP-{:05}", seq * 7 % 9973)
            } else {
                String::new()
            },
        );
        self.set(
            f::EQUIPMENT,
            &if matches!(doc, Doc::Other("EQ cost")) {
                format!("XEQ-UNIT{:02}", seq % 40)
            } else {
                String::new()
            },
        );
        self.set(
            f::PAY_ID,
            &if pr {
                format!("XPAY-{}", r * 100 + seq)
            } else {
                String::new()
            },
        );
        self.set(f::REF_1, &format!("XREF1-{}", r % 10_000));
        self.set(f::REF_2, &format!("XREF2-{}", seq));
        if !matches!(doc, Doc::NonCost(_)) {
            self.budget_codes.insert((job, extra_idx, cc, cat));
        }
    }
}

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
