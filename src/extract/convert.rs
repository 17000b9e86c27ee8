//! Turning source values into the typed columns of `schema.rs`, cell by cell, with every bad cell
//! reported instead of failing the batch.
//!
//! Money arrives as `float` in Sage. A float means its shortest decimal representation (what Sage
//! shows and exports: `2.675`), so floats are formatted shortest-first and parsed as decimals, then
//! rounded half away from zero, once. Parsing `2.675` as f64 and rounding would give 2.67.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Decimal128Builder, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, Float64Type};
use chrono::{NaiveDate, NaiveTime, Timelike};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::model::schema::{
    ColumnKind, ColumnSpec, DECIMAL_PRECISION, MONEY_SCALE, QUANTITY_SCALE,
};
pub use crate::model::values::{date_to_days, days_to_date};
use crate::quarantine::{shown, ReasonCode};

/// A cell that could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellProblem {
    pub row: usize,
    pub code: ReasonCode,
    pub message: String,
}

/// `str::trim`, with a fast answer for the usual cell that starts and ends with a visible ASCII
/// character (nothing to trim).
pub fn trim_cell(v: &str) -> &str {
    match (v.as_bytes().first(), v.as_bytes().last()) {
        (Some(&f), Some(&l)) if (0x21..0x80).contains(&f) && (0x21..0x80).contains(&l) => v,
        _ => v.trim(),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date, or None when it does not exist
/// (Howard Hinnant's `days_from_civil`; agrees with chrono for every year 0..=9999).
fn civil_days(y: i32, m: u32, d: u32) -> Option<i32> {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > month_days {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let (m, d) = (m as i32, d as i32);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Parse a decimal number and round it half away from zero to `scale` places, as the unscaled
/// i128 of a Decimal128(18, scale).
pub fn parse_decimal(text: &str, scale: i8) -> Result<i128, String> {
    let t = trim_cell(text);
    if let Some(v) = fast_decimal(t, scale) {
        return v;
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let d = Decimal::from_str(t)
        .or_else(|_| Decimal::from_scientific(t))
        .map_err(|_| "not a number".to_string())?;
    let mut r = d.round_dp_with_strategy(scale as u32, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(scale as u32);
    let v = r.mantissa();
    if v.unsigned_abs() >= 10u128.pow(DECIMAL_PRECISION as u32) {
        return Err(format!("out of range for {DECIMAL_PRECISION} digits"));
    }
    Ok(v)
}

/// The shortest decimal text of a float (what Sage displays), or None for NaN/infinity.
pub fn float_text(v: f64) -> Option<String> {
    if v.is_finite() {
        Some(ryu::Buffer::new().format_finite(v).to_string())
    } else {
        None
    }
}

/// Parse a date as Sage exports write it: `YYYY-MM-DD`, `MM/DD/YYYY`, or a date-time whose date
/// part is one of those.
pub fn parse_date(text: &str) -> Result<i32, String> {
    let t = trim_cell(text);
    if let Some(days) = fast_iso_date(t.as_bytes()) {
        return days.map_err(|()| BAD_DATE.to_string());
    }
    let date_part = t.split([' ', 'T']).next().unwrap_or(t);
    match fast_iso_date(date_part.as_bytes()) {
        Some(Ok(days)) => return Ok(days),
        Some(Err(())) => return Err(BAD_DATE.to_string()),
        None => {}
    }
    NaiveDate::parse_from_str(date_part, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(date_part, "%m/%d/%Y"))
        .map(date_to_days)
        .map_err(|_| BAD_DATE.to_string())
}

const BAD_DATE: &str = "not a valid date (expected YYYY-MM-DD or MM/DD/YYYY)";

/// `YYYY-MM-DD` without a format string: the shape every export writes. None when the text has
/// another shape (the general parser then decides).
fn fast_iso_date(t: &[u8]) -> Option<Result<i32, ()>> {
    if t.len() != 10 || t[4] != b'-' || t[7] != b'-' {
        return None;
    }
    let mut n = [0u32; 3];
    for (k, range) in [(0, 0..4), (1, 5..7), (2, 8..10)] {
        for &c in &t[range] {
            if !c.is_ascii_digit() {
                return None;
            }
            n[k] = n[k] * 10 + u32::from(c - b'0');
        }
    }
    Some(civil_days(n[0] as i32, n[1], n[2]).ok_or(()))
}

/// A plain decimal (`-123.4567`, at most 28 digits) parsed and rounded half away from zero
/// without going through `Decimal`. None for any other shape (exponents, `+`, `.5`): the general
/// parser decides.
fn fast_decimal(t: &str, scale: i8) -> Option<Result<i128, String>> {
    let b = t.as_bytes();
    let (negative, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    let mut mantissa: i128 = 0;
    let mut count = 0usize;
    let mut frac = None::<usize>;
    for (i, &c) in digits.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + i128::from(c - b'0');
                count += 1;
            }
            b'.' if frac.is_none() && i > 0 && i + 1 < digits.len() => frac = Some(0),
            _ => return None,
        }
        if let Some(f) = frac.as_mut() {
            if c != b'.' {
                *f += 1;
            }
        }
    }
    if count == 0 || count > 28 {
        return None;
    }
    let frac = frac.unwrap_or(0);
    let scale = scale as usize;
    let mut v = if frac <= scale {
        mantissa * 10i128.pow((scale - frac) as u32)
    } else {
        let div = 10i128.pow((frac - scale) as u32);
        let (q, r) = (mantissa / div, mantissa % div);
        if r * 2 >= div {
            q + 1
        } else {
            q
        }
    };
    if negative {
        v = -v;
    }
    if v.unsigned_abs() >= 10u128.pow(DECIMAL_PRECISION as u32) {
        return Some(Err(format!("out of range for {DECIMAL_PRECISION} digits")));
    }
    Some(Ok(v))
}

/// `HH:MM:SS` without a format string; None for any other shape.
fn fast_time(t: &[u8]) -> Option<i64> {
    if t.len() != 8 || t[2] != b':' || t[5] != b':' {
        return None;
    }
    let two = |i: usize| -> Option<i64> {
        let (a, b) = (t[i], t[i + 1]);
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from((a - b'0') * 10 + (b - b'0')))
    };
    let (h, m, s) = (two(0)?, two(3)?, two(6)?);
    (h < 24 && m < 60 && s < 60).then(|| (h * 3600 + m * 60 + s) * 1_000_000)
}

/// Parse a time of day `HH:MM[:SS[.ffffff]]` as microseconds since midnight.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let t = trim_cell(text);
    // A datetime exported for a time column: keep the time part.
    let time_part = t.rsplit([' ', 'T']).next().unwrap_or(t);
    if let Some(us) = fast_time(time_part.as_bytes()) {
        return Ok(us);
    }
    NaiveTime::parse_from_str(time_part, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(time_part, "%H:%M"))
        .map(|tm| {
            i64::from(tm.num_seconds_from_midnight()) * 1_000_000
                + i64::from(tm.nanosecond() / 1_000)
        })
        .map_err(|_| "not a valid time (expected HH:MM:SS)".to_string())
}

/// Parse a whole number; `12.0` (a numeric exported through a float) is accepted, `12.5` is not.
pub fn parse_integer(text: &str) -> Result<i64, String> {
    let t = trim_cell(text);
    if let Ok(v) = t.parse::<i64>() {
        return Ok(v);
    }
    let d = Decimal::from_str(t).map_err(|_| "not a whole number".to_string())?;
    if d.fract().is_zero() {
        i64::try_from(d.trunc()).map_err(|_| "out of range".to_string())
    } else {
        Err("not a whole number".to_string())
    }
}

/// Convert one source column to the type `spec` asks for. Cells that cannot be converted (or
/// required cells that are empty) become NULL and are reported in `problems` with their row.
pub fn convert_column(
    spec: &ColumnSpec,
    input: &ArrayRef,
    problems: &mut Vec<CellProblem>,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let target = spec.kind.data_type();
    // Already the right type (a typed Parquet export): only required-ness is left to check,
    // except text, which is trimmed whatever its source.
    if input.data_type() == &target && spec.kind != ColumnKind::Text {
        if spec.required {
            for row in 0..input.len() {
                if input.is_null(row) {
                    problems.push(missing(spec, row));
                }
            }
        }
        return Ok(input.clone());
    }
    if let (ColumnKind::Money | ColumnKind::Quantity, DataType::Float64 | DataType::Float32) =
        (spec.kind, input.data_type())
    {
        return Ok(floats_to_decimal(spec, input, problems));
    }
    let text = match input.data_type() {
        DataType::Utf8 => input.clone(),
        _ => cast(input, &DataType::Utf8)?,
    };
    let text = text.as_string::<i32>();
    Ok(match spec.kind {
        ColumnKind::Text if already_clean(text) => {
            // Nothing to trim and no empty cell: the column is its own typed form.
            if spec.required {
                for row in 0..text.len() {
                    if text.is_null(row) {
                        problems.push(missing(spec, row));
                    }
                }
            }
            Arc::new(text.clone())
        }
        ColumnKind::Text => {
            let mut b = StringBuilder::with_capacity(text.len(), text.value_data().len());
            for row in 0..text.len() {
                match non_empty(text, row) {
                    Some(v) => b.append_value(v),
                    None => {
                        if spec.required {
                            problems.push(missing(spec, row));
                        }
                        b.append_null()
                    }
                }
            }
            Arc::new(b.finish())
        }
        ColumnKind::Money | ColumnKind::Quantity => {
            let scale = scale_of(spec.kind);
            let mut b = Decimal128Builder::with_capacity(text.len());
            for row in 0..text.len() {
                b.append_option(parse_cell(spec, text, row, problems, |s| {
                    parse_decimal(s, scale)
                }));
            }
            Arc::new(
                b.finish()
                    .with_precision_and_scale(DECIMAL_PRECISION, scale)?,
            )
        }
        ColumnKind::Integer => {
            let mut b = Int64Builder::with_capacity(text.len());
            for row in 0..text.len() {
                b.append_option(parse_cell(spec, text, row, problems, parse_integer));
            }
            Arc::new(b.finish())
        }
        ColumnKind::Date => {
            let mut b = Date32Builder::with_capacity(text.len());
            for row in 0..text.len() {
                b.append_option(parse_cell(spec, text, row, problems, parse_date));
            }
            Arc::new(b.finish())
        }
        ColumnKind::Time => {
            let mut b = Time64MicrosecondBuilder::with_capacity(text.len());
            for row in 0..text.len() {
                b.append_option(parse_cell(spec, text, row, problems, parse_time));
            }
            Arc::new(b.finish())
        }
    })
}

/// True when no cell of a text column would change under trimming and none is empty.
fn already_clean(text: &arrow::array::StringArray) -> bool {
    (0..text.len()).all(|row| {
        text.is_null(row) || {
            let v = text.value(row);
            !v.is_empty() && trim_cell(v).len() == v.len()
        }
    })
}

fn scale_of(kind: ColumnKind) -> i8 {
    if kind == ColumnKind::Money {
        MONEY_SCALE
    } else {
        QUANTITY_SCALE
    }
}

fn non_empty(text: &arrow::array::StringArray, row: usize) -> Option<&str> {
    if text.is_null(row) {
        return None;
    }
    let v = trim_cell(text.value(row));
    (!v.is_empty()).then_some(v)
}

fn missing(spec: &ColumnSpec, row: usize) -> CellProblem {
    CellProblem {
        row,
        code: ReasonCode::MissingValue,
        message: format!("column {}: required value is empty", spec.source),
    }
}

fn parse_cell<T>(
    spec: &ColumnSpec,
    text: &arrow::array::StringArray,
    row: usize,
    problems: &mut Vec<CellProblem>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<T> {
    let Some(v) = non_empty(text, row) else {
        if spec.required {
            problems.push(missing(spec, row));
        }
        return None;
    };
    match parse(v) {
        Ok(x) => Some(x),
        Err(why) => {
            problems.push(CellProblem {
                row,
                code: ReasonCode::BadValue,
                message: format!("column {}: value {} is {why}", spec.source, shown(v)),
            });
            None
        }
    }
}

fn floats_to_decimal(
    spec: &ColumnSpec,
    input: &ArrayRef,
    problems: &mut Vec<CellProblem>,
) -> ArrayRef {
    let scale = scale_of(spec.kind);
    let values: Vec<Option<f64>> = match input.data_type() {
        DataType::Float32 => input
            .as_primitive::<Float32Type>()
            .iter()
            // f32 → shortest f32 text, so 2.675f32 stays "2.675".
            .map(|v| v.and_then(|x| ryu::Buffer::new().format(x).parse::<f64>().ok()))
            .collect(),
        _ => input.as_primitive::<Float64Type>().iter().collect(),
    };
    let mut b = Decimal128Builder::with_capacity(values.len());
    for (row, v) in values.into_iter().enumerate() {
        let Some(v) = v else {
            if spec.required {
                problems.push(missing(spec, row));
            }
            b.append_null();
            continue;
        };
        match float_text(v)
            .ok_or_else(|| "not finite".to_string())
            .and_then(|t| parse_decimal(&t, scale))
        {
            Ok(x) => b.append_value(x),
            Err(why) => {
                problems.push(CellProblem {
                    row,
                    code: ReasonCode::BadValue,
                    message: format!("column {}: value {v} is {why}", spec.source),
                });
                b.append_null();
            }
        }
    }
    // Precision and scale are valid constants.
    Arc::new(
        b.finish()
            .with_precision_and_scale(DECIMAL_PRECISION, scale)
            .unwrap_or_else(|_| unreachable!("valid decimal precision and scale")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_agree_with_chrono_on_every_day_of_years_0_to_9999() {
        let mut d = NaiveDate::from_ymd_opt(0, 1, 1).expect("start");
        let end = NaiveDate::from_ymd_opt(9999, 12, 31).expect("end");
        let mut checked = 0u32;
        while d <= end {
            use chrono::Datelike;
            assert_eq!(
                civil_days(d.year(), d.month(), d.day()),
                Some(date_to_days(d)),
                "{d}"
            );
            checked += 1;
            d = d.succ_opt().expect("next day");
        }
        assert_eq!(checked, 3_652_425);
        for (y, m, day) in [
            (2023, 2, 29),
            (1900, 2, 29),
            (2024, 13, 1),
            (2024, 4, 31),
            (2024, 1, 0),
        ] {
            assert_eq!(civil_days(y, m, day), None, "{y}-{m}-{day}");
        }
        assert_eq!(civil_days(2000, 2, 29), Some(11_016));
    }

    #[test]
    fn trim_cell_trims_exactly_as_str_trim() {
        for v in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "1037      ",
            "\tx\n",
            "\u{a0}x",
            "x\u{3000}",
            "\u{1f}x",
            "é",
            "x\u{85}",
            "~",
            "\u{7f}",
        ] {
            assert_eq!(trim_cell(v), v.trim(), "{v:?}");
        }
    }
    use arrow::array::{Decimal128Array, Float64Array, StringArray};
    use arrow::datatypes::Decimal128Type;

    fn spec(kind: ColumnKind, required: bool) -> ColumnSpec {
        ColumnSpec {
            source: "Amount",
            name: "amount",
            kind,
            required,
            key: false,
            lossy: false,
        }
    }

    #[test]
    fn money_rounds_half_away_from_zero_on_the_decimal_text() {
        assert_eq!(parse_decimal("2.675", 2), Ok(268));
        assert_eq!(parse_decimal("-2.675", 2), Ok(-268));
        assert_eq!(parse_decimal("1.005", 2), Ok(101));
        assert_eq!(parse_decimal("0.30000000000000004", 2), Ok(30));
        assert_eq!(parse_decimal("7.0049", 2), Ok(700));
        assert_eq!(parse_decimal("10.125", 2), Ok(1013));
        assert_eq!(parse_decimal(" +12 ", 2), Ok(1200));
        assert_eq!(parse_decimal("1.5E3", 2), Ok(150_000));
        assert!(parse_decimal("12,34x", 2).is_err());
        assert_eq!(parse_decimal("-0.005", 2), Ok(-1));
        assert_eq!(
            parse_decimal("99999999999999999.99", 2).map_err(|_| ()),
            Err(())
        );
        assert!(parse_decimal("1e30", 2).is_err());
    }

    #[test]
    fn floats_round_as_their_shortest_text_not_their_binary_value() {
        // 2.675_f64 is 2.67499999999999982236431605997495353221893310546875 in binary.
        let input: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(2.675),
            Some(1.005),
            Some(0.1 + 0.2),
            None,
        ]));
        let mut problems = vec![];
        let out = convert_column(&spec(ColumnKind::Money, false), &input, &mut problems)
            .expect("converts");
        let out = out.as_primitive::<Decimal128Type>();
        assert_eq!(out.value(0), 268);
        assert_eq!(out.value(1), 101);
        assert_eq!(out.value(2), 30);
        assert!(out.is_null(3));
        assert!(problems.is_empty());
    }

    #[test]
    fn bad_and_missing_cells_are_reported_with_row_column_and_value() {
        let input: ArrayRef = Arc::new(StringArray::from(vec![
            Some("12,34x"),
            Some(" "),
            Some("3"),
        ]));
        let mut problems = vec![];
        let out = convert_column(&spec(ColumnKind::Money, true), &input, &mut problems)
            .expect("converts");
        let out = out
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .expect("decimal");
        assert_eq!(out.value(2), 300);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].row, 0);
        assert_eq!(problems[0].code, ReasonCode::BadValue);
        assert!(problems[0].message.contains("Amount") && problems[0].message.contains("12,34x"));
        assert_eq!(problems[1].code, ReasonCode::MissingValue);
    }

    #[test]
    fn dates_accept_iso_us_and_datetime_and_refuse_impossible_days() {
        let d = parse_date("2024-02-29").expect("leap day");
        assert_eq!(days_to_date(d), NaiveDate::from_ymd_opt(2024, 2, 29));
        assert_eq!(parse_date("02/29/2024"), Ok(d));
        assert_eq!(parse_date("2024-02-29 00:00:00"), Ok(d));
        assert_eq!(parse_date("2024-02-29T00:00:00"), Ok(d));
        assert!(parse_date("2024-02-30").is_err());
        assert_eq!(parse_date("1970-01-01"), Ok(0));
    }

    #[test]
    fn times_and_integers_parse() {
        assert_eq!(
            parse_time("14:03:22"),
            Ok((14 * 3600 + 3 * 60 + 22) * 1_000_000)
        );
        assert_eq!(
            parse_time("14:03:22.5"),
            Ok((14 * 3600 + 3 * 60 + 22) * 1_000_000 + 500_000)
        );
        assert!(parse_time("25:00:00").is_err());
        assert_eq!(parse_integer("42"), Ok(42));
        assert_eq!(parse_integer("42.0"), Ok(42));
        assert!(parse_integer("42.5").is_err());
    }

    #[test]
    fn text_is_trimmed_and_empty_is_null() {
        let input: ArrayRef = Arc::new(StringArray::from(vec![
            Some("1001      "),
            Some("   "),
            None,
        ]));
        let mut problems = vec![];
        let out = convert_column(&spec(ColumnKind::Text, false), &input, &mut problems)
            .expect("converts");
        let out = out.as_string::<i32>();
        assert_eq!(out.value(0), "1001");
        assert!(out.is_null(1) && out.is_null(2));
        assert!(problems.is_empty());
    }
}
