//! SQL Server values (as tiberius decodes them) into Arrow arrays.
//!
//! Each column becomes the Arrow type closest to what the server sent, and the same
//! [`crate::extract::type_batch`] as for files does the typing, so a value means the same thing
//! whichever source it came from:
//!
//! | SQL Server | tiberius | Arrow (raw) | then typed as |
//! |---|---|---|---|
//! | char, varchar, nchar, nvarchar, text | String | Utf8 | trimmed text, parsed numbers/dates |
//! | tinyint, smallint, int, bigint | U8, I16, I32, I64 | Int64 | |
//! | bit | Bit | Int64 (1 / 0, as `CAST(bit AS varchar)`) | |
//! | float | F64 | Float64 | money/quantity from the shortest decimal text (`2.675`) |
//! | real | F32 | Float32 | same, from the shortest f32 text |
//! | money, smallmoney | F64 (value / 10⁴) | Float64 | same |
//! | decimal, numeric | Numeric | Decimal128(38, scale) | exact decimal text, rounded once |
//! | date | Date | Date32 | |
//! | time | Time | Time64(µs), truncated to µs | |
//! | datetime, smalldatetime, datetime2, datetimeoffset (local time) | DateTime* | Timestamp(µs) | date part / time part |
//! | uniqueidentifier, xml | Guid, Xml | Utf8 | |
//! | binary, varbinary | Binary | Utf8 (hex) | |
//! | NULL | any `None` | null | empty |

use std::sync::Arc;

use arrow::array::{
    new_null_array, ArrayRef, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::DataType;
use tiberius::time::{Date, DateTime, DateTime2, SmallDateTime, Time};
use tiberius::ColumnData;

/// Days from 0001-01-01 (the epoch of `date` and `datetime2`) to 1970-01-01.
const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1900-01-01 (the epoch of `datetime` and `smalldatetime`) to 1970-01-01.
const DAYS_1900_TO_1970: i64 = 25_567;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a `date`.
pub fn date_days(d: Date) -> i32 {
    (i64::from(d.days()) - DAYS_0001_TO_1970) as i32
}

/// Microseconds since midnight of a `time` (truncated below the microsecond).
pub fn time_micros(t: Time) -> i64 {
    let inc = t.increments() as i128;
    let scale = u32::from(t.scale());
    let micros = if scale <= 6 {
        inc * 10i128.pow(6 - scale)
    } else {
        inc / 10i128.pow(scale - 6)
    };
    micros as i64
}

/// Microseconds since 1970-01-01T00:00 of a `datetime` (1/300 s ticks, rounded to the µs).
pub fn datetime_micros(dt: DateTime) -> i64 {
    let days = i64::from(dt.days()) - DAYS_1900_TO_1970;
    let ticks = i64::from(dt.seconds_fragments());
    days * MICROS_PER_DAY + (ticks * 10_000 + 1) / 3
}

/// Microseconds since 1970-01-01T00:00 of a `smalldatetime` (whole minutes).
pub fn smalldatetime_micros(dt: SmallDateTime) -> i64 {
    let days = i64::from(dt.days()) - DAYS_1900_TO_1970;
    days * MICROS_PER_DAY + i64::from(dt.seconds_fragments()) * 60_000_000
}

/// Microseconds since 1970-01-01T00:00 of a `datetime2`.
pub fn datetime2_micros(dt: DateTime2) -> i64 {
    i64::from(date_days(dt.date())) * MICROS_PER_DAY + time_micros(dt.time())
}

/// What a column has collected so far.
enum Acc {
    /// Only NULLs so far: their count.
    Nulls(usize),
    Text(StringBuilder),
    Int(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    /// Unscaled value and its scale; the batch takes the largest scale seen.
    Decimal(Vec<Option<(i128, u8)>>),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Stamp(TimestampMicrosecondBuilder),
}

/// The family of a non-NULL value (which builder it goes to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Text,
    Int,
    F32,
    F64,
    Decimal,
    Date,
    Time,
    Stamp,
}

fn family(v: &ColumnData<'_>) -> Option<Family> {
    Some(match v {
        ColumnData::U8(Some(_))
        | ColumnData::I16(Some(_))
        | ColumnData::I32(Some(_))
        | ColumnData::I64(Some(_))
        | ColumnData::Bit(Some(_)) => Family::Int,
        ColumnData::F32(Some(_)) => Family::F32,
        ColumnData::F64(Some(_)) => Family::F64,
        ColumnData::Numeric(Some(_)) => Family::Decimal,
        ColumnData::String(Some(_))
        | ColumnData::Guid(Some(_))
        | ColumnData::Binary(Some(_))
        | ColumnData::Xml(Some(_)) => Family::Text,
        ColumnData::Date(Some(_)) => Family::Date,
        ColumnData::Time(Some(_)) => Family::Time,
        ColumnData::DateTime(Some(_))
        | ColumnData::SmallDateTime(Some(_))
        | ColumnData::DateTime2(Some(_))
        | ColumnData::DateTimeOffset(Some(_)) => Family::Stamp,
        _ => return None,
    })
}

/// The SQL Server type family of a value, for messages.
fn sql_kind(v: &ColumnData<'_>) -> &'static str {
    match v {
        ColumnData::U8(_) => "tinyint",
        ColumnData::I16(_) => "smallint",
        ColumnData::I32(_) => "int",
        ColumnData::I64(_) => "bigint",
        ColumnData::F32(_) => "real",
        ColumnData::F64(_) => "float",
        ColumnData::Bit(_) => "bit",
        ColumnData::String(_) => "nvarchar",
        ColumnData::Guid(_) => "uniqueidentifier",
        ColumnData::Binary(_) => "varbinary",
        ColumnData::Numeric(_) => "numeric",
        ColumnData::Xml(_) => "xml",
        ColumnData::DateTime(_) => "datetime",
        ColumnData::SmallDateTime(_) => "smalldatetime",
        ColumnData::Time(_) => "time",
        ColumnData::Date(_) => "date",
        ColumnData::DateTime2(_) => "datetime2",
        ColumnData::DateTimeOffset(_) => "datetimeoffset",
    }
}

impl Acc {
    fn start(f: Family, nulls: usize) -> Acc {
        let mut acc = match f {
            Family::Text => Acc::Text(StringBuilder::new()),
            Family::Int => Acc::Int(Int64Builder::new()),
            Family::F32 => Acc::F32(Float32Builder::new()),
            Family::F64 => Acc::F64(Float64Builder::new()),
            Family::Decimal => Acc::Decimal(Vec::new()),
            Family::Date => Acc::Date(Date32Builder::new()),
            Family::Time => Acc::Time(Time64MicrosecondBuilder::new()),
            Family::Stamp => Acc::Stamp(TimestampMicrosecondBuilder::new()),
        };
        for _ in 0..nulls {
            acc.push_null();
        }
        acc
    }

    fn family(&self) -> Option<Family> {
        Some(match self {
            Acc::Nulls(_) => return None,
            Acc::Text(_) => Family::Text,
            Acc::Int(_) => Family::Int,
            Acc::F32(_) => Family::F32,
            Acc::F64(_) => Family::F64,
            Acc::Decimal(_) => Family::Decimal,
            Acc::Date(_) => Family::Date,
            Acc::Time(_) => Family::Time,
            Acc::Stamp(_) => Family::Stamp,
        })
    }

    fn push_null(&mut self) {
        match self {
            Acc::Nulls(n) => *n += 1,
            Acc::Text(b) => b.append_null(),
            Acc::Int(b) => b.append_null(),
            Acc::F32(b) => b.append_null(),
            Acc::F64(b) => b.append_null(),
            Acc::Decimal(v) => v.push(None),
            Acc::Date(b) => b.append_null(),
            Acc::Time(b) => b.append_null(),
            Acc::Stamp(b) => b.append_null(),
        }
    }

    /// Append a value of this accumulator's family (checked by the caller).
    fn push(&mut self, v: ColumnData<'static>) {
        match (self, v) {
            (Acc::Text(b), ColumnData::String(Some(s))) => b.append_value(s),
            (Acc::Text(b), ColumnData::Guid(Some(g))) => b.append_value(g.to_string()),
            (Acc::Text(b), ColumnData::Binary(Some(bytes))) => b.append_value(hex::encode(bytes)),
            (Acc::Text(b), ColumnData::Xml(Some(x))) => b.append_value(x.to_string()),
            (Acc::Int(b), ColumnData::U8(Some(x))) => b.append_value(i64::from(x)),
            (Acc::Int(b), ColumnData::I16(Some(x))) => b.append_value(i64::from(x)),
            (Acc::Int(b), ColumnData::I32(Some(x))) => b.append_value(i64::from(x)),
            (Acc::Int(b), ColumnData::I64(Some(x))) => b.append_value(x),
            (Acc::Int(b), ColumnData::Bit(Some(x))) => b.append_value(i64::from(x)),
            (Acc::F32(b), ColumnData::F32(Some(x))) => b.append_value(x),
            (Acc::F64(b), ColumnData::F64(Some(x))) => b.append_value(x),
            (Acc::Decimal(v), ColumnData::Numeric(Some(n))) => v.push(Some((n.value(), n.scale()))),
            (Acc::Date(b), ColumnData::Date(Some(d))) => b.append_value(date_days(d)),
            (Acc::Time(b), ColumnData::Time(Some(t))) => b.append_value(time_micros(t)),
            (Acc::Stamp(b), ColumnData::DateTime(Some(d))) => b.append_value(datetime_micros(d)),
            (Acc::Stamp(b), ColumnData::SmallDateTime(Some(d))) => {
                b.append_value(smalldatetime_micros(d))
            }
            (Acc::Stamp(b), ColumnData::DateTime2(Some(d))) => b.append_value(datetime2_micros(d)),
            (Acc::Stamp(b), ColumnData::DateTimeOffset(Some(d))) => {
                // The wire carries UTC and the offset; Sage means the local wall-clock time.
                b.append_value(datetime2_micros(d.datetime2()) + i64::from(d.offset()) * 60_000_000)
            }
            (acc, _) => acc.push_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Acc::Nulls(n) => new_null_array(&DataType::Utf8, n),
            Acc::Text(mut b) => Arc::new(b.finish()),
            Acc::Int(mut b) => Arc::new(b.finish()),
            Acc::F32(mut b) => Arc::new(b.finish()),
            Acc::F64(mut b) => Arc::new(b.finish()),
            Acc::Decimal(v) => {
                let scale = v.iter().flatten().map(|(_, s)| *s).max().unwrap_or(0);
                let mut b = Decimal128Builder::with_capacity(v.len());
                for x in v {
                    b.append_option(x.map(|(value, s)| value * 10i128.pow(u32::from(scale - s))));
                }
                // numeric carries at most 38 digits and scale <= precision, so this is valid.
                Arc::new(
                    b.finish()
                        .with_precision_and_scale(38, scale as i8)
                        .unwrap_or_else(|_| unreachable!("numeric scale is at most 38")),
                )
            }
            Acc::Date(mut b) => Arc::new(b.finish()),
            Acc::Time(mut b) => Arc::new(b.finish()),
            Acc::Stamp(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Collects one column's values of a batch.
pub struct ColumnCollector {
    acc: Acc,
}

impl Default for ColumnCollector {
    fn default() -> Self {
        ColumnCollector { acc: Acc::Nulls(0) }
    }
}

impl ColumnCollector {
    /// Append one cell. A value of another kind than the column's earlier values (which a SQL
    /// Server column never sends) is refused with the SQL type it had.
    pub fn push(&mut self, v: ColumnData<'static>) -> Result<(), String> {
        let Some(f) = family(&v) else {
            self.acc.push_null();
            return Ok(());
        };
        match self.acc.family() {
            None => {
                let Acc::Nulls(n) = self.acc else {
                    unreachable!("only Nulls has no family")
                };
                self.acc = Acc::start(f, n);
            }
            Some(g) if g != f => {
                return Err(format!(
                    "the server sent a {f:?} value ({}) in a column of {g:?} values",
                    sql_kind(&v)
                ))
            }
            Some(_) => {}
        }
        self.acc.push(v);
        Ok(())
    }

    /// The column as an Arrow array (Utf8 nulls when every value was NULL).
    pub fn finish(self) -> ArrayRef {
        self.acc.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::convert::{date_to_days, parse_time};
    use crate::extract::{type_batch, RawBatch};
    use crate::model::schema::{TableRole, SOURCE_LINE};
    use arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
    use arrow::datatypes::{
        Date32Type, Decimal128Type, Field, Int64Type, Schema, Time64MicrosecondType,
    };
    use chrono::NaiveDate;
    use std::borrow::Cow;
    use tiberius::numeric::Numeric;

    fn column(values: Vec<ColumnData<'static>>) -> ArrayRef {
        let mut c = ColumnCollector::default();
        for v in values {
            c.push(v).expect("one kind per column");
        }
        c.finish()
    }

    /// Type one value through the transaction spec of `arrow_name` exactly as a batch would be.
    fn typed(arrow_name: &str, v: ColumnData<'static>) -> (ArrayRef, Vec<String>) {
        let specs = TableRole::Transaction.columns();
        let mut fields = vec![Field::new(SOURCE_LINE, DataType::UInt64, false)];
        let mut cols: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(vec![1u64]))];
        let mut v = Some(v);
        for s in specs {
            let a = if s.name == arrow_name {
                column(vec![v.take().expect("once")])
            } else {
                // Required columns get a harmless value so only the cell under test can fail.
                match s.name {
                    "job" | "transaction_type" => {
                        column(vec![ColumnData::String(Some("x".into()))])
                    }
                    "accounting_date" => {
                        column(vec![ColumnData::String(Some("2024-01-01".into()))])
                    }
                    "amount" => column(vec![ColumnData::F64(Some(1.0))]),
                    _ => column(vec![ColumnData::String(None)]),
                }
            };
            fields.push(Field::new(s.name, a.data_type().clone(), true));
            cols.push(a);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("batch");
        let t = type_batch(
            TableRole::Transaction,
            "T",
            RawBatch {
                batch,
                problems: vec![],
                not_cost_type: Default::default(),
                decoded_lossily: Default::default(),
            },
        )
        .expect("types");
        let reasons = t
            .quarantine
            .map(|q| {
                let r = q.batch.column_by_name("reason").expect("reason").clone();
                let r = r.as_string::<i32>();
                (0..r.len()).map(|i| r.value(i).to_string()).collect()
            })
            .unwrap_or_default();
        let col = t
            .batch
            .column_by_name(arrow_name)
            .expect("typed column")
            .clone();
        (col, reasons)
    }

    fn money(v: ColumnData<'static>) -> Option<i128> {
        let (a, reasons) = typed("amount", v);
        assert!(reasons.is_empty(), "{reasons:?}");
        let a = a.as_primitive::<Decimal128Type>();
        (!a.is_null(0)).then(|| a.value(0))
    }

    #[test]
    fn float_money_rounds_from_its_shortest_text() {
        assert_eq!(money(ColumnData::F64(Some(2.675))), Some(268));
        assert_eq!(money(ColumnData::F64(Some(-2999.995))), Some(-300_000));
    }

    #[test]
    fn real_money_rounds_from_its_shortest_f32_text() {
        assert_eq!(money(ColumnData::F32(Some(2.675_f32))), Some(268));
    }

    #[test]
    fn money_type_arrives_as_its_exact_four_places() {
        // tiberius decodes money as value / 10^4 in an f64: 2.6750 → 2.675 → 2.68.
        assert_eq!(money(ColumnData::F64(Some(26_750.0 / 1e4))), Some(268));
    }

    #[test]
    fn decimal_and_numeric_are_exact_and_rounded_once() {
        let n = |v, s| ColumnData::Numeric(Some(Numeric::new_with_scale(v, s)));
        assert_eq!(money(n(2675, 3)), Some(268));
        assert_eq!(money(n(-10_125, 3)), Some(-1013));
        assert_eq!(money(n(1250, 0)), Some(125_000));
        let (units, _) = typed("units", n(416_667, 4));
        assert_eq!(units.as_primitive::<Decimal128Type>().value(0), 416_667);
        // numeric(10,0) into an integer column.
        let (run, r) = typed("run", n(201, 0));
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(run.as_primitive::<Int64Type>().value(0), 201);
        // Mixed scales in one column are brought to the largest.
        let a = column(vec![n(15, 1), n(125, 2), ColumnData::Numeric(None)]);
        let a = a.as_primitive::<Decimal128Type>();
        assert_eq!((a.scale(), a.value(0), a.value(1)), (2, 150, 125));
        assert!(a.is_null(2));
    }

    #[test]
    fn int_family_and_bit_become_int64() {
        for (v, want) in [
            (ColumnData::U8(Some(255)), 255),
            (ColumnData::I16(Some(-7)), -7),
            (ColumnData::I32(Some(201)), 201),
            (ColumnData::I64(Some(5_000_000_000)), 5_000_000_000),
            (ColumnData::Bit(Some(true)), 1),
            (ColumnData::Bit(Some(false)), 0),
        ] {
            let (a, r) = typed("sequence", v);
            assert!(r.is_empty(), "{r:?}");
            assert_eq!(a.as_primitive::<Int64Type>().value(0), want);
        }
        // An int in a text column (a Job stored as int) reads as its digits.
        let (job, _) = typed("job", ColumnData::I32(Some(1001)));
        assert_eq!(job.as_string::<i32>().value(0), "1001");
        // An int in a money column.
        assert_eq!(money(ColumnData::I32(Some(75))), Some(7500));
    }

    #[test]
    fn char_varchar_nvarchar_are_trimmed_text() {
        let (a, _) = typed("cost_code", ColumnData::String(Some("01-100      ".into())));
        assert_eq!(a.as_string::<i32>().value(0), "01-100");
        let (a, _) = typed(
            "description",
            ColumnData::String(Some(Cow::Borrowed("Béton prêt à l'emploi ø"))),
        );
        assert_eq!(a.as_string::<i32>().value(0), "Béton prêt à l'emploi ø");
        let (a, _) = typed("extra", ColumnData::String(Some("    ".into())));
        assert!(a.is_null(0), "blank text is NULL");
        // Text that is not a number, in a money column: quarantined, named.
        let (_, reasons) = typed("amount", ColumnData::String(Some("12,34x".into())));
        assert_eq!(reasons.len(), 1);
        assert!(
            reasons[0].contains("Amount") && reasons[0].contains("12,34x"),
            "{reasons:?}"
        );
    }

    #[test]
    fn date_is_date32() {
        let d = NaiveDate::from_ymd_opt(2024, 2, 29).expect("date");
        // Days since 0001-01-01.
        let days = (d - NaiveDate::from_ymd_opt(1, 1, 1).expect("epoch")).num_days() as u32;
        let (a, _) = typed("accounting_date", ColumnData::Date(Some(Date::new(days))));
        assert_eq!(a.as_primitive::<Date32Type>().value(0), date_to_days(d));
    }

    #[test]
    fn datetime_smalldatetime_and_datetime2_give_their_date_and_time_parts() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 22).expect("date");
        let days1900 = (d - NaiveDate::from_ymd_opt(1900, 1, 1).expect("e")).num_days();
        let days0001 = (d - NaiveDate::from_ymd_opt(1, 1, 1).expect("e")).num_days();
        let secs = 8 * 3600 + 30 * 60 + 1;
        let eight_thirty = parse_time("08:30:01").expect("time");
        let dt = ColumnData::DateTime(Some(DateTime::new(days1900 as i32, secs * 300)));
        let (a, r) = typed("accounting_date", dt.clone());
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(a.as_primitive::<Date32Type>().value(0), date_to_days(d));
        let (t, r) = typed("time_stamp", dt);
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(
            t.as_primitive::<Time64MicrosecondType>().value(0),
            eight_thirty
        );

        let sdt = ColumnData::SmallDateTime(Some(SmallDateTime::new(days1900 as u16, 8 * 60 + 30)));
        let (a, _) = typed("date_stamp", sdt);
        assert_eq!(a.as_primitive::<Date32Type>().value(0), date_to_days(d));

        // datetime2(7): 100 ns increments.
        let dt2 = DateTime2::new(
            Date::new(days0001 as u32),
            Time::new(secs as u64 * 10_000_000 + 5_000_000, 7),
        );
        let (t, r) = typed("time_stamp", ColumnData::DateTime2(Some(dt2)));
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(
            t.as_primitive::<Time64MicrosecondType>().value(0),
            eight_thirty + 500_000
        );
        let (a, _) = typed("period_end_date", ColumnData::DateTime2(Some(dt2)));
        assert_eq!(a.as_primitive::<Date32Type>().value(0), date_to_days(d));
    }

    #[test]
    fn time_is_time64_micros_at_any_scale() {
        let (t, _) = typed("time_stamp", ColumnData::Time(Some(Time::new(51_000, 0))));
        assert_eq!(
            t.as_primitive::<Time64MicrosecondType>().value(0),
            51_000_000_000
        );
        // time(7), 14:03:22.1234567 → truncated to the microsecond.
        let inc = (14 * 3600 + 3 * 60 + 22) as u64 * 10_000_000 + 1_234_567;
        let (t, _) = typed("time_stamp", ColumnData::Time(Some(Time::new(inc, 7))));
        assert_eq!(
            t.as_primitive::<Time64MicrosecondType>().value(0),
            parse_time("14:03:22.123456").expect("time")
        );
    }

    #[test]
    fn null_of_every_type_is_null_and_required_null_is_missing_value() {
        for v in [
            ColumnData::F64(None),
            ColumnData::F32(None),
            ColumnData::Numeric(None),
            ColumnData::I32(None),
            ColumnData::Bit(None),
            ColumnData::String(None),
            ColumnData::Date(None),
            ColumnData::DateTime(None),
            ColumnData::DateTime2(None),
            ColumnData::Time(None),
        ] {
            let (a, r) = typed("units", v.clone());
            assert!(r.is_empty(), "{r:?}");
            assert_eq!(a.len(), 1);
            assert!(a.is_null(0));
            let (_, r) = typed("amount", v);
            assert_eq!(r.len(), 1);
            assert!(
                r[0].contains("Amount") && r[0].contains("required"),
                "{r:?}"
            );
        }
        // A column that is NULL in the first rows takes the type of its first value.
        let a = column(vec![ColumnData::I32(None), ColumnData::I32(Some(3))]);
        assert_eq!(a.data_type(), &DataType::Int64);
        assert!(a.is_null(0));
    }

    #[test]
    fn a_column_that_changes_kind_is_refused() {
        let mut c = ColumnCollector::default();
        c.push(ColumnData::I32(Some(1))).expect("int");
        let err = c.push(ColumnData::String(Some("x".into()))).unwrap_err();
        assert!(err.contains("nvarchar"), "{err}");
    }
}
