//! The shape of the generated company: its jobs, cost codes and document kinds, and the
//! [`Generator`] that fills one transaction row at a time (the data model behind
//! `jcsync generate`; [`super::writer`] writes the rows).

use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::GenerateSummary;
use crate::model::schema::{EXCLUDED_TRANSACTION_COLUMNS, TRANSACTION_SOURCE_COLUMNS};
use crate::model::values::days_to_date;

pub(super) const COST_CODES: [&str; 16] = [
    "01-100", "01-200", "02-100", "02-200", "03-100", "03-300", "04-200", "05-100", "06-100",
    "07-200", "08-100", "09-100", "15-100", "15-400", "16-100", "16-500",
];
pub(super) const CATEGORIES: [&str; 5] = ["L", "M", "S", "E", "O"];
pub(super) const DESCRIPTIONS: [&str; 12] = [
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
pub(super) const NON_COST_TYPES: [(&str, u32); 8] = [
    ("Committed cost", 50),
    ("Original estimate", 30),
    ("Approved est changes", 15),
    ("Aprvd cmmtt cst chng", 10),
    ("Scheduled value", 20),
    ("Work billed", 30),
    ("Cash receipt", 25),
    ("General Ledger only", 20),
];
pub(super) const PREFIXES: [(&str, &str); 5] = [
    ("01", "Commercial division"),
    ("02", "Institutional division"),
    ("03", "Residential division"),
    ("04", "Heavy civil division"),
    ("05", "Service division"),
];
/// 2015-01-01 as Date32 days.
pub(super) const FIRST_DAY: i32 = 16_436;
/// Ten years of postings.
pub(super) const DAYS: i32 = 3_652;

/// A job of the generated company.
pub(super) struct JobSpec {
    pub(super) number: String,
    /// Sub jobs ("1", "2", ...); empty when the job has none.
    pub(super) extras: Vec<String>,
    /// Relative activity: a few big jobs, many small ones.
    pub(super) weight: u32,
}

pub(super) fn date_text(days: i32) -> String {
    days_to_date(days)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Right-pad to a Sage fixed width, as a replicated CHAR column arrives.
pub(super) fn pad(value: &str, width: usize) -> String {
    format!("{value:<width$}")
}

/// Cents as Sage's float export writes them: the shortest text of the float.
pub(super) fn money_text(cents: i64) -> String {
    let mut b = ryu::Buffer::new();
    let s = b.format_finite(cents as f64 / 100.0);
    s.strip_suffix(".0").unwrap_or(s).to_string()
}

/// The transaction table's columns, in the fixtures' order.
pub(super) fn transaction_header() -> Vec<&'static str> {
    let mut h: Vec<&'static str> = TRANSACTION_SOURCE_COLUMNS.to_vec();
    h.extend(EXCLUDED_TRANSACTION_COLUMNS);
    h
}

/// Field positions in [`transaction_header`].
pub(super) mod f {
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
pub(super) enum Doc {
    Ap,
    Pr,
    Other(&'static str),
    NonCost(&'static str),
}

pub(super) fn pick_doc(rng: &mut ChaCha8Rng) -> Doc {
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

pub(super) struct Generator {
    pub(super) rng: ChaCha8Rng,
    pub(super) jobs: Vec<JobSpec>,
    pub(super) job_weight_total: u32,
    pub(super) vendors: u32,
    pub(super) row: Vec<String>,
    pub(super) summary: GenerateSummary,
    /// (job, extra, cost code, category) indexes used by loadable rows.
    pub(super) budget_codes: BTreeSet<(u32, u8, u8, u8)>,
    pub(super) run: u64,
    pub(super) invoice_no: u64,
}

impl Generator {
    pub(super) fn pick_job(&mut self) -> u32 {
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

    pub(super) fn set(&mut self, i: usize, value: &str) {
        self.row[i].clear();
        self.row[i].push_str(value);
    }

    /// Fill `self.row` with one transaction line of a document.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn line(
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
