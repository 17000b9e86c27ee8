//! Values as jcsync writes them: Date32 days and dates, Decimal128 text. No I/O.
//!
//! The text forms are part of the origin_ids (dates of payroll and expense direct costs) and of
//! every payload, so each has exactly one writer here.

use std::fmt;

use chrono::{Datelike, NaiveDate};

const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Days since 1970-01-01, the Date32 representation.
#[inline]
pub fn date_to_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

/// The date of a Date32 value.
#[inline]
pub fn days_to_date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
}

/// `YYYY-MM-DD` of a date, or empty for no date.
pub fn date_text(days: Option<i32>) -> String {
    days.map(|d| DateText(d).to_string()).unwrap_or_default()
}

/// Text of a Decimal128 value with `scale` places (`-2.68`).
pub fn format_decimal(value: i128, scale: u32) -> String {
    DecimalText(value, scale).to_string()
}

/// [`format_decimal`] as a `Display`, to write without an intermediate String.
#[derive(Debug, Clone, Copy)]
pub struct DecimalText(pub i128, pub u32);

impl fmt::Display for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let DecimalText(value, scale) = *self;
        let sign = if value < 0 { "-" } else { "" };
        let abs = value.unsigned_abs();
        if scale == 0 {
            return write!(f, "{sign}{abs}");
        }
        let p = 10u128.pow(scale);
        write!(
            f,
            "{sign}{}.{:0width$}",
            abs / p,
            abs % p,
            width = scale as usize
        )
    }
}

/// `YYYY-MM-DD` of a Date32 value.
pub fn format_date(days: i32) -> String {
    date_text(Some(days))
}

/// [`format_date`] as a `Display` (empty for a day chrono cannot represent).
#[derive(Debug, Clone, Copy)]
pub struct DateText(pub i32);

impl fmt::Display for DateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(d) = days_to_date(self.0) else {
            return Ok(());
        };
        if (0..=9999).contains(&d.year()) {
            write!(f, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
        } else {
            write!(f, "{}", d.format("%Y-%m-%d"))
        }
    }
}

/// `date_text` on the stack: `YYYY-MM-DD`, or empty for no date. Remembers the last date
/// it formatted (rows of a batch often share one).
#[derive(Default)]
pub struct DateBytes {
    bytes: [u8; 10],
    /// Bytes of `bytes` in use; `None` when the text is `fallback`.
    len: Option<usize>,
    fallback: String,
    /// The date the text is for (`None` before the first).
    day: Option<Option<i32>>,
}

impl DateBytes {
    #[inline]
    pub fn format(&mut self, days: Option<i32>) -> &[u8] {
        if self.day != Some(days) {
            self.len = self.write(days);
            self.day = Some(days);
        }
        match self.len {
            Some(n) => self.bytes.get(..n).unwrap_or_default(),
            None => self.fallback.as_bytes(),
        }
    }

    /// Writes the text of `days`: its length in `bytes`, or `None` when it is in `fallback`.
    #[inline]
    fn write(&mut self, days: Option<i32>) -> Option<usize> {
        let Some(d) = days.and_then(days_to_date) else {
            return Some(0);
        };
        let (y, m, day) = (d.year(), d.month(), d.day());
        if !(0..=9999).contains(&y) {
            // chrono's %Y signs and widens such years; keep its exact text.
            self.fallback = date_text(days);
            return None;
        }
        let digits = |v: u32, out: &mut [u8]| {
            let mut v = v;
            for slot in out.iter_mut().rev() {
                *slot = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        digits(y as u32, &mut self.bytes[0..4]);
        self.bytes[4] = b'-';
        digits(m, &mut self.bytes[5..7]);
        self.bytes[7] = b'-';
        digits(day, &mut self.bytes[8..10]);
        Some(self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_format_exactly() {
        assert_eq!(format_decimal(268, 2), "2.68");
        assert_eq!(format_decimal(-268, 2), "-2.68");
        assert_eq!(format_decimal(5, 2), "0.05");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(12_500, 4), "1.2500");
    }

    #[test]
    fn date_bytes_match_the_text() {
        let mut b = DateBytes::default();
        for days in [
            None,
            Some(0),
            Some(19_782),
            Some(-719_163),
            Some(-800_000),
            Some(2_932_896),
            Some(3_000_000),
        ] {
            assert_eq!(b.format(days), date_text(days).as_bytes(), "{days:?}");
        }
    }
}
