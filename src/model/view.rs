//! [`TransactionView`]: typed, borrowed access to the columns of a projected or enriched
//! transaction batch, and [`Group`], the fields that decide a row's direct cost. No I/O.

use arrow::array::{
    Array, AsArray, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type, UInt64Type};

use crate::error::{Error, Result};
use crate::model::cost_type::DirectCostKind;
use crate::model::schema::{DIRECT_COST_ORIGIN_ID, LINE_ORIGIN_ID, SOURCE_LINE};

/// Typed access to the columns of a projected or enriched transaction batch.
pub struct TransactionView<'a> {
    job: &'a StringArray,
    extra: &'a StringArray,
    cost_code: &'a StringArray,
    category: &'a StringArray,
    transaction_type: &'a StringArray,
    description: &'a StringArray,
    vendor: &'a StringArray,
    invoice: &'a StringArray,
    batch: &'a StringArray,
    accounting_date: &'a Date32Array,
    period_end_date: &'a Date32Array,
    amount: &'a Decimal128Array,
    units: &'a Decimal128Array,
    unit_cost: &'a Decimal128Array,
    run: &'a Int64Array,
    sequence: &'a Int64Array,
    dist_sequence: &'a Int64Array,
    source_line: &'a UInt64Array,
    enriched: Option<EnrichedView<'a>>,
}

pub struct EnrichedView<'a> {
    invoice_date: &'a Date32Array,
    invoice_received_date: &'a Date32Array,
    invoice_payment_date: &'a Date32Array,
    invoice_description: &'a StringArray,
    line_origin_id: &'a StringArray,
    direct_cost_origin_id: &'a StringArray,
}

#[inline]
fn col<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::BatchShape {
            message: format!("the batch lacks column {name}"),
        })
}

#[inline]
fn wrong(name: &str) -> Error {
    Error::BatchShape {
        message: format!("column {name} has an unexpected type"),
    }
}

#[inline]
fn text<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    col(batch, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| wrong(name))
}

#[inline]
fn date<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Date32Array> {
    col(batch, name)?
        .as_primitive_opt::<Date32Type>()
        .ok_or_else(|| wrong(name))
}

#[inline]
fn decimal<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Decimal128Array> {
    col(batch, name)?
        .as_primitive_opt::<Decimal128Type>()
        .ok_or_else(|| wrong(name))
}

#[inline]
fn int<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int64Array> {
    col(batch, name)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| wrong(name))
}

#[inline]
fn opt_str(a: &StringArray, r: usize) -> Option<&str> {
    (!a.is_null(r)).then(|| a.value(r))
}

#[inline]
fn opt_i64(a: &Int64Array, r: usize) -> Option<i64> {
    (!a.is_null(r)).then(|| a.value(r))
}

#[inline]
fn opt_i128(a: &Decimal128Array, r: usize) -> Option<i128> {
    (!a.is_null(r)).then(|| a.value(r))
}

#[inline]
fn opt_date(a: &Date32Array, r: usize) -> Option<i32> {
    (!a.is_null(r)).then(|| a.value(r))
}

impl<'a> TransactionView<'a> {
    /// View a projected (or enriched) batch.
    #[inline]
    pub fn new(batch: &'a RecordBatch) -> Result<TransactionView<'a>> {
        let enriched = if batch.column_by_name(LINE_ORIGIN_ID).is_some() {
            Some(EnrichedView {
                invoice_date: date(batch, "invoice_date")?,
                invoice_received_date: date(batch, "invoice_received_date")?,
                invoice_payment_date: date(batch, "invoice_payment_date")?,
                invoice_description: text(batch, "invoice_description")?,
                line_origin_id: text(batch, LINE_ORIGIN_ID)?,
                direct_cost_origin_id: text(batch, DIRECT_COST_ORIGIN_ID)?,
            })
        } else {
            None
        };
        Ok(TransactionView {
            job: text(batch, "job")?,
            extra: text(batch, "extra")?,
            cost_code: text(batch, "cost_code")?,
            category: text(batch, "category")?,
            transaction_type: text(batch, "transaction_type")?,
            description: text(batch, "description")?,
            vendor: text(batch, "vendor")?,
            invoice: text(batch, "invoice")?,
            batch: text(batch, "batch")?,
            accounting_date: date(batch, "accounting_date")?,
            period_end_date: date(batch, "period_end_date")?,
            amount: decimal(batch, "amount")?,
            units: decimal(batch, "units")?,
            unit_cost: decimal(batch, "unit_cost")?,
            run: int(batch, "run")?,
            sequence: int(batch, "sequence")?,
            dist_sequence: int(batch, "dist_sequence")?,
            source_line: col(batch, SOURCE_LINE)?
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| wrong(SOURCE_LINE))?,
            enriched,
        })
    }

    /// Rows in the batch.
    #[inline]
    pub fn len(&self) -> usize {
        self.job.len()
    }

    /// True when the batch is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.job.is_empty()
    }

    /// Transaction_Type ('' when NULL, which projection never lets through).
    #[inline]
    pub fn transaction_type(&self, r: usize) -> &'a str {
        opt_str(self.transaction_type, r).unwrap_or("")
    }

    /// Sage vendor.
    #[inline]
    pub fn vendor(&self, r: usize) -> Option<&'a str> {
        opt_str(self.vendor, r)
    }

    /// Sage invoice number.
    #[inline]
    pub fn invoice(&self, r: usize) -> Option<&'a str> {
        opt_str(self.invoice, r)
    }

    /// Job ('' when NULL).
    #[inline]
    pub fn job(&self, r: usize) -> &'a str {
        opt_str(self.job, r).unwrap_or("")
    }

    /// The Sage fields that decide row `r`'s direct cost (the grouping rule of DOMAIN.md
    /// section 4, applied once).
    #[inline]
    pub fn group(&self, r: usize) -> Group<'a> {
        let ty = self.transaction_type(r);
        let batch = opt_str(self.batch, r).unwrap_or("");
        let acct = opt_date(self.accounting_date, r);
        match DirectCostKind::of(ty) {
            DirectCostKind::Invoice => Group::Invoice {
                vendor: opt_str(self.vendor, r),
                invoice: opt_str(self.invoice, r),
            },
            DirectCostKind::Payroll => Group::Payroll {
                day: opt_date(self.period_end_date, r).or(acct),
                batch,
            },
            DirectCostKind::Expense => Group::Expense {
                ty,
                day: acct,
                batch,
            },
        }
    }

    /// Job, NULL kept (the natural key tells NULL from empty).
    #[inline]
    pub fn job_cell(&self, r: usize) -> Option<&'a str> {
        opt_str(self.job, r)
    }

    /// Extra.
    #[inline]
    pub fn extra(&self, r: usize) -> Option<&'a str> {
        opt_str(self.extra, r)
    }

    /// Cost_Code.
    #[inline]
    pub fn cost_code(&self, r: usize) -> Option<&'a str> {
        opt_str(self.cost_code, r)
    }

    /// Category.
    #[inline]
    pub fn category(&self, r: usize) -> Option<&'a str> {
        opt_str(self.category, r)
    }

    /// Transaction_Type, NULL kept.
    #[inline]
    pub fn transaction_type_cell(&self, r: usize) -> Option<&'a str> {
        opt_str(self.transaction_type, r)
    }

    /// Description.
    #[inline]
    pub fn description(&self, r: usize) -> Option<&'a str> {
        opt_str(self.description, r)
    }

    /// Batch.
    #[inline]
    pub fn batch(&self, r: usize) -> Option<&'a str> {
        opt_str(self.batch, r)
    }

    /// Accounting_Date.
    #[inline]
    pub fn accounting_date(&self, r: usize) -> Option<i32> {
        opt_date(self.accounting_date, r)
    }

    /// Amount, cents.
    #[inline]
    pub fn amount(&self, r: usize) -> Option<i128> {
        opt_i128(self.amount, r)
    }

    /// Units, 4 decimals.
    #[inline]
    pub fn units(&self, r: usize) -> Option<i128> {
        opt_i128(self.units, r)
    }

    /// Unit_Cost, 4 decimals.
    #[inline]
    pub fn unit_cost(&self, r: usize) -> Option<i128> {
        opt_i128(self.unit_cost, r)
    }

    /// Run.
    #[inline]
    pub fn run(&self, r: usize) -> Option<i64> {
        opt_i64(self.run, r)
    }

    /// Sequence.
    #[inline]
    pub fn sequence(&self, r: usize) -> Option<i64> {
        opt_i64(self.sequence, r)
    }

    /// Dist_Sequence.
    #[inline]
    pub fn dist_sequence(&self, r: usize) -> Option<i64> {
        opt_i64(self.dist_sequence, r)
    }

    /// Where the row came from (physical line or row number).
    #[inline]
    pub fn source_line(&self, r: usize) -> u64 {
        self.source_line.value(r)
    }

    /// The enrichment columns, when the batch is enriched.
    #[inline]
    pub fn enriched(&self) -> Option<&EnrichedView<'a>> {
        self.enriched.as_ref()
    }
}

impl<'a> EnrichedView<'a> {
    /// The AP invoice's Invoice_Date.
    #[inline]
    pub fn invoice_date(&self, r: usize) -> Option<i32> {
        opt_date(self.invoice_date, r)
    }

    /// The AP invoice's Date_Received.
    #[inline]
    pub fn invoice_received_date(&self, r: usize) -> Option<i32> {
        opt_date(self.invoice_received_date, r)
    }

    /// The AP invoice's Payment_Date.
    #[inline]
    pub fn invoice_payment_date(&self, r: usize) -> Option<i32> {
        opt_date(self.invoice_payment_date, r)
    }

    /// The AP invoice's Description.
    #[inline]
    pub fn invoice_description(&self, r: usize) -> Option<&'a str> {
        opt_str(self.invoice_description, r)
    }

    /// The line's origin_id.
    #[inline]
    pub fn line_origin_id(&self, r: usize) -> &'a str {
        self.line_origin_id.value(r)
    }

    /// The direct cost's origin_id.
    #[inline]
    pub fn direct_cost_origin_id(&self, r: usize) -> &'a str {
        self.direct_cost_origin_id.value(r)
    }
}

/// The fields that make a row's direct cost: its kind and group parts (dates as Date32 days,
/// written as `YYYY-MM-DD` wherever they become text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group<'a> {
    /// AP cost: one invoice per (job, vendor, invoice).
    Invoice {
        vendor: Option<&'a str>,
        invoice: Option<&'a str>,
    },
    /// PR cost: one payroll per (job, period end date or accounting date, batch).
    Payroll { day: Option<i32>, batch: &'a str },
    /// Every other cost: one expense per (job, type, accounting date, batch).
    Expense {
        ty: &'a str,
        day: Option<i32>,
        batch: &'a str,
    },
}

impl Group<'_> {
    /// Procore's `direct_cost_type` of the group.
    #[inline]
    pub fn kind(&self) -> DirectCostKind {
        match self {
            Group::Invoice { .. } => DirectCostKind::Invoice,
            Group::Payroll { .. } => DirectCostKind::Payroll,
            Group::Expense { .. } => DirectCostKind::Expense,
        }
    }
}
