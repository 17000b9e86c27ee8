//! `--every DURATION`: `30s`, `5m`, `1h`, `1h30m`, `1d`; strictly parsed (each unit once, the
//! largest first, whole numbers), so a typo is an error at once, never a surprise interval.

use std::time::Duration;

/// The shortest interval (a run's own start-up takes longer).
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// The longest interval: 30 days.
pub const MAX_EVERY: Duration = Duration::from_secs(30 * 86_400);

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parse an interval; the error says what was expected and what was found.
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        format!(
            "expected a duration like 30s, 5m, 1h or 1h30m (whole numbers of d, h, m, s, largest first), found {text:?}: {why}"
        )
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut secs: u64 = 0;
    let mut last_unit = usize::MAX; // index into UNITS of the previous part's unit
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(i) = UNITS.iter().position(|(u, _)| *u == c) else {
            return Err(bad(&format!("{c:?} is not a unit")));
        };
        if digits.is_empty() {
            return Err(bad(&format!("no number before {c:?}")));
        }
        if last_unit != usize::MAX && i <= last_unit {
            return Err(bad("each unit once, the largest first"));
        }
        let n: u64 = digits.parse().map_err(|_| bad("the number is too large"))?;
        secs = n
            .checked_mul(UNITS[i].1)
            .and_then(|s| s.checked_add(secs))
            .ok_or_else(|| bad("the number is too large"))?;
        digits.clear();
        last_unit = i;
    }
    if !digits.is_empty() {
        return Err(bad("a number needs its unit (e.g. 30s, 5m)"));
    }
    let every = Duration::from_secs(secs);
    if every < MIN_EVERY {
        return Err(bad("the interval must be at least 1s"));
    }
    if every > MAX_EVERY {
        return Err(bad("the interval may be at most 30d"));
    }
    Ok(every)
}

/// An interval as `--every` writes it: `1h30m`, `45s`.
pub fn format_every(every: Duration) -> String {
    let mut left = every.as_secs();
    let mut s = String::new();
    for (unit, size) in UNITS {
        if left >= size {
            s.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    if s.is_empty() {
        s.push_str("0s");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepts_the_usual_durations() {
        for (text, secs) in [
            ("1s", 1),
            ("30s", 30),
            ("5m", 300),
            ("1h", 3_600),
            ("1h30m", 5_400),
            ("2d", 172_800),
            ("1d2h3m4s", 93_784),
            ("90s", 90),
            (" 15m ", 900),
        ] {
            assert_eq!(parse_every(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn every_refuses_what_is_not_a_clear_duration() {
        for (text, why) in [
            ("", "empty"),
            ("30", "needs its unit"),
            ("m", "no number"),
            ("5x", "not a unit"),
            ("1.5h", "not a unit"),
            ("30m1h", "largest first"),
            ("1m1m", "largest first"),
            ("0s", "at least 1s"),
            ("31d", "at most 30d"),
            ("-5m", "not a unit"),
            ("99999999999999999999s", "too large"),
        ] {
            let err = parse_every(text).unwrap_err();
            assert!(
                err.contains(why) && err.contains("30s, 5m"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn an_interval_is_written_back_as_given() {
        for text in ["1s", "45s", "5m", "1h30m", "1d2h3m4s"] {
            let every = parse_every(text).expect("valid");
            assert_eq!(format_every(every), text);
        }
        assert_eq!(format_every(Duration::from_secs(90)), "1m30s");
    }
}
