//! Sage tables, their columns, and the Arrow schema of every edge of the pipeline.
//!
//! One place for each fact: the Sage column names, the Arrow (and staged Parquet) column names and
//! types. Staged files are read by other engines, so the names and types here are a public contract
//! (documented in the README).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Precision of every Decimal128 column.
pub const DECIMAL_PRECISION: u8 = 18;
/// Scale of money columns: cents.
pub const MONEY_SCALE: i8 = 2;
/// Scale of quantity columns (units, unit cost).
pub const QUANTITY_SCALE: i8 = 4;

/// The eight Transaction (JC) columns that hh2's step 8 unticks. They never reach a staged file,
/// a log line or Procore.
pub const EXCLUDED_TRANSACTION_COLUMNS: [&str; 8] = [
    "Commitment_CO",
    "Credit_Account",
    "Debit_Account",
    "Employee",
    "Equipment",
    "Pay_ID",
    "Ref_1",
    "Ref_2",
];

/// Column name of the 1-based position of a row in its source (the physical line for CSV,
/// the row number for Parquet).
pub const SOURCE_LINE: &str = "source_line";

/// How a source value is typed and normalised at ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Trimmed UTF-8; empty becomes NULL.
    Text,
    /// Rounded half away from zero to cents, Decimal128(18, 2).
    Money,
    /// Rounded half away from zero to 4 places, Decimal128(18, 4).
    Quantity,
    /// Whole number (Sage numeric(n,0)), Int64.
    Integer,
    /// Calendar date, Date32.
    Date,
    /// Time of day, Time64(µs).
    Time,
}

impl ColumnKind {
    /// The Arrow type a column of this kind has after ingest.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnKind::Text => DataType::Utf8,
            ColumnKind::Money => DataType::Decimal128(DECIMAL_PRECISION, MONEY_SCALE),
            ColumnKind::Quantity => DataType::Decimal128(DECIMAL_PRECISION, QUANTITY_SCALE),
            ColumnKind::Integer => DataType::Int64,
            ColumnKind::Date => DataType::Date32,
            ColumnKind::Time => DataType::Time64(TimeUnit::Microsecond),
        }
    }
}

/// A Sage column and what it becomes.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// Name in Sage (and in exported files).
    pub source: &'static str,
    /// Name in Arrow batches and staged Parquet.
    pub name: &'static str,
    pub kind: ColumnKind,
    /// A row without a value here cannot be used (quarantined as `missing_value`).
    pub required: bool,
    /// Part of the natural key: the table must have the column (its value may be empty, as
    /// Extra is for a job without sub jobs), or every origin_id would change the day it returns.
    pub key: bool,
    /// Free text of a dimension (a description, a title): a value that is not valid UTF-8 is
    /// decoded lossily (U+FFFD) and counted in the report, never a reason to set the row aside.
    pub lossy: bool,
}

impl ColumnSpec {
    /// The source must have this column: a required value or a natural-key column.
    pub const fn must_exist(&self) -> bool {
        self.required || self.key
    }
}

const fn col(source: &'static str, name: &'static str, kind: ColumnKind) -> ColumnSpec {
    ColumnSpec {
        source,
        name,
        kind,
        required: false,
        key: false,
        lossy: false,
    }
}

const fn req(source: &'static str, name: &'static str, kind: ColumnKind) -> ColumnSpec {
    ColumnSpec {
        required: true,
        ..col(source, name, kind)
    }
}

/// A natural-key column whose value is required.
const fn key_req(source: &'static str, name: &'static str, kind: ColumnKind) -> ColumnSpec {
    ColumnSpec {
        key: true,
        ..req(source, name, kind)
    }
}

/// A natural-key column whose value may be empty.
const fn key(source: &'static str, name: &'static str, kind: ColumnKind) -> ColumnSpec {
    ColumnSpec {
        key: true,
        ..col(source, name, kind)
    }
}

/// Descriptive text of a dimension, decoded lossily.
const fn text(source: &'static str, name: &'static str) -> ColumnSpec {
    ColumnSpec {
        lossy: true,
        ..col(source, name, Text)
    }
}

use ColumnKind::*;

/// Transaction (JC): the columns jcsync uses.
pub const TRANSACTION_COLUMNS: &[ColumnSpec] = &[
    key_req("Job", "job", Text),
    key("Extra", "extra", Text),
    key("Cost_Code", "cost_code", Text),
    key("Category", "category", Text),
    key_req("Transaction_Type", "transaction_type", Text),
    col("Transaction_Date", "transaction_date", Date),
    req("Accounting_Date", "accounting_date", Date),
    col("Description", "description", Text),
    col("Units", "units", Quantity),
    col("Unit_Cost", "unit_cost", Quantity),
    req("Amount", "amount", Money),
    col("Vendor", "vendor", Text),
    col("Invoice", "invoice", Text),
    key("Dist_Sequence", "dist_sequence", Integer),
    col("Application_of_Origin", "application_of_origin", Text),
    col("Batch", "batch", Text),
    key("Run", "run", Integer),
    key("Sequence", "sequence", Integer),
    col("Commitment", "commitment", Text),
    col("Commitment_Line_Item", "commitment_line_item", Integer),
    col("Period_End_Date", "period_end_date", Date),
    col("Date_Stamp", "date_stamp", Date),
    col("Time_Stamp", "time_stamp", Time),
];

/// Sage names of the Transaction (JC) columns jcsync uses (none of them may be excluded).
pub const TRANSACTION_SOURCE_COLUMNS: [&str; 23] = [
    "Job",
    "Extra",
    "Cost_Code",
    "Category",
    "Transaction_Type",
    "Transaction_Date",
    "Accounting_Date",
    "Description",
    "Units",
    "Unit_Cost",
    "Amount",
    "Vendor",
    "Invoice",
    "Dist_Sequence",
    "Application_of_Origin",
    "Batch",
    "Run",
    "Sequence",
    "Commitment",
    "Commitment_Line_Item",
    "Period_End_Date",
    "Date_Stamp",
    "Time_Stamp",
];

/// The natural key of a transaction (Arrow names). Sage has no primary key; a repeat of this key
/// is a data error.
pub const NATURAL_KEY: [&str; 8] = [
    "job",
    "extra",
    "cost_code",
    "category",
    "transaction_type",
    "run",
    "sequence",
    "dist_sequence",
];

/// Job (JC).
pub const JOB_COLUMNS: &[ColumnSpec] = &[
    req("Job", "job", Text),
    text("Description", "description"),
    col("Status", "status", Text),
    col("Cost_Account_Prefix", "cost_account_prefix", Text),
    col("Cost_Account", "cost_account", Text),
];

/// GL Account Prefix.
pub const ACCOUNT_PREFIX_COLUMNS: &[ColumnSpec] = &[
    req("Account_Prefix_A", "account_prefix", Text),
    text("Account_Prefix_A_Description", "description"),
];

/// GL Account.
pub const ACCOUNT_COLUMNS: &[ColumnSpec] = &[
    req("Account", "account", Text),
    text("Account_Title", "title"),
    col("Account_Type", "account_type", Text),
];

/// Invoice (AP).
pub const INVOICE_COLUMNS: &[ColumnSpec] = &[
    req("Vendor", "vendor", Text),
    req("Invoice", "invoice", Text),
    text("Description", "description"),
    col("Status", "status", Text),
    col("Amount", "amount", Money),
    col("Invoice_Date", "invoice_date", Date),
    col("Date_Received", "date_received", Date),
    col("Payment_Date", "payment_date", Date),
    col("Accounting_Date", "accounting_date", Date),
];

/// The role a Sage table plays in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableRole {
    Transaction,
    Job,
    AccountPrefix,
    Account,
    Invoice,
}

impl TableRole {
    /// The columns read from this table.
    pub fn columns(self) -> &'static [ColumnSpec] {
        match self {
            TableRole::Transaction => TRANSACTION_COLUMNS,
            TableRole::Job => JOB_COLUMNS,
            TableRole::AccountPrefix => ACCOUNT_PREFIX_COLUMNS,
            TableRole::Account => ACCOUNT_COLUMNS,
            TableRole::Invoice => INVOICE_COLUMNS,
        }
    }

    /// The hh2 entity name, for messages.
    pub fn entity(self) -> &'static str {
        match self {
            TableRole::Transaction => "Transaction (JC)",
            TableRole::Job => "Job (JC)",
            TableRole::AccountPrefix => "GL Account Prefix",
            TableRole::Account => "GL Account",
            TableRole::Invoice => "Invoice (AP)",
        }
    }
}

fn typed_fields(columns: &[ColumnSpec]) -> Vec<Field> {
    columns
        .iter()
        .map(|c| Field::new(c.name, c.kind.data_type(), true))
        .collect()
}

/// Schema of a dimension or transaction table after ingest (typed, trimmed), with `source_line`
/// first. For the transaction table this is the projected edge: no excluded column. Every column
/// is nullable in the schema; required values are enforced by quarantine at extract.
pub fn typed_schema(role: TableRole) -> SchemaRef {
    let mut fields = vec![Field::new(SOURCE_LINE, DataType::UInt64, false)];
    fields.extend(typed_fields(role.columns()));
    Arc::new(Schema::new(fields))
}

/// Columns the enrich stage adds from the four joins, then the origin ids of the plan.
pub const ENRICHMENT_FIELDS: &[(&str, ColumnKind)] = &[
    ("job_description", Text),
    ("job_status", Text),
    ("job_cost_account_prefix", Text),
    ("job_cost_account", Text),
    ("gl_prefix", Text),
    ("gl_prefix_description", Text),
    ("gl_account", Text),
    ("gl_account_title", Text),
    ("gl_account_type", Text),
    ("invoice_date", Date),
    ("invoice_received_date", Date),
    ("invoice_payment_date", Date),
    ("invoice_description", Text),
    ("invoice_status", Text),
];

/// Deterministic id of the Procore direct cost line item a transaction becomes.
pub const LINE_ORIGIN_ID: &str = "line_origin_id";
/// Deterministic id of the Procore direct cost (header) the line belongs to.
pub const DIRECT_COST_ORIGIN_ID: &str = "direct_cost_origin_id";

/// Schema of enriched transactions: what is staged and what the load consumes.
pub fn enriched_schema() -> SchemaRef {
    let mut fields = typed_schema(TableRole::Transaction).fields().to_vec();
    for (name, kind) in ENRICHMENT_FIELDS {
        fields.push(Arc::new(Field::new(*name, kind.data_type(), true)));
    }
    fields.push(Arc::new(Field::new(LINE_ORIGIN_ID, DataType::Utf8, false)));
    fields.push(Arc::new(Field::new(
        DIRECT_COST_ORIGIN_ID,
        DataType::Utf8,
        false,
    )));
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enriched_schema_holds_no_excluded_column() {
        let schema = enriched_schema();
        for excluded in EXCLUDED_TRANSACTION_COLUMNS {
            assert!(
                schema
                    .fields()
                    .iter()
                    .all(|f| !f.name().eq_ignore_ascii_case(excluded)),
                "{excluded} leaked into the enriched schema"
            );
        }
    }

    #[test]
    fn source_column_list_matches_specs() {
        let names: Vec<&str> = TRANSACTION_COLUMNS.iter().map(|c| c.source).collect();
        assert_eq!(names, TRANSACTION_SOURCE_COLUMNS.to_vec());
    }

    #[test]
    fn money_is_decimal_cents_and_dates_are_date32() {
        let s = typed_schema(TableRole::Transaction);
        assert_eq!(
            s.field_with_name("amount")
                .map(|f| f.data_type().clone())
                .ok(),
            Some(DataType::Decimal128(18, 2))
        );
        assert_eq!(
            s.field_with_name("accounting_date")
                .map(|f| f.data_type().clone())
                .ok(),
            Some(DataType::Date32)
        );
    }

    #[test]
    fn natural_key_columns_are_the_key_columns_and_must_exist() {
        let keys: Vec<&str> = TRANSACTION_COLUMNS
            .iter()
            .filter(|c| c.key)
            .map(|c| c.name)
            .collect();
        let mut natural = NATURAL_KEY.to_vec();
        natural.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, natural);
        assert!(TRANSACTION_COLUMNS
            .iter()
            .filter(|c| c.key)
            .all(|c| c.must_exist()));
        assert!(TRANSACTION_COLUMNS.iter().all(|c| !c.lossy));
    }

    #[test]
    fn natural_key_columns_exist() {
        let s = typed_schema(TableRole::Transaction);
        for k in NATURAL_KEY {
            assert!(s.field_with_name(k).is_ok(), "{k}");
        }
    }
}
