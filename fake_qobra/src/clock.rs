//! Timestamps in RFC 3339 (UTC) and validation of date values.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time as RFC 3339 UTC with microseconds, e.g. `2026-03-31T12:00:00.123456Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339(SystemTime::now())
}

/// Formats a time as RFC 3339 UTC with microseconds.
pub fn format_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Converts days since 1970-01-01 to a (year, month, day) civil date.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Whether `s` is `YYYY-MM-DD` or an RFC 3339 date-time such as `2026-03-31T12:00:00.5Z`.
pub fn is_valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 || !valid_ymd(&b[..10]) {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    matches!(b[10], b'T' | b't' | b' ') && valid_time(&b[11..])
}

/// Parses `n` ASCII digits as a number.
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |acc, c| acc * 10 + u32::from(c - b'0')))
}

/// Validates `YYYY-MM-DD`, including the number of days in the month.
fn valid_ymd(b: &[u8]) -> bool {
    if b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&b[..4]), digits(&b[5..7]), digits(&b[8..10])) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// Validates `HH:MM:SS[.fraction](Z|±HH:MM)`.
fn valid_time(b: &[u8]) -> bool {
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let (Some(h), Some(mi), Some(s)) = (digits(&b[..2]), digits(&b[3..5]), digits(&b[6..8])) else {
        return false;
    };
    if h > 23 || mi > 59 || s > 60 {
        return false;
    }
    let mut rest = &b[8..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &rest[1 + n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            matches!((digits(&[*h1, *h2]), digits(&[*m1, *m2])), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Known instants format as RFC 3339 UTC, leap day included.
    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_774_958_400_000_001);
        assert_eq!(format_rfc3339(t), "2026-03-31T12:00:00.000001Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }

    /// Dates and date-times are accepted or refused as Qobra would.
    #[test]
    fn validates_dates() {
        for ok in [
            "2026-03-31",
            "2024-02-29",
            "2026-03-31T12:00:00Z",
            "2026-03-31T12:00:00.000000Z",
            "2026-03-31T12:00:00+02:00",
            "2026-03-31 23:59:59.5-05:30",
        ] {
            assert!(is_valid_date(ok), "{ok}");
        }
        for bad in [
            "",
            "2026-3-31",
            "2025-02-29",
            "2026-13-01",
            "2026-04-31",
            "31/03/2026",
            "2026-03-31T12:00:00",
            "2026-03-31T25:00:00Z",
            "2026-03-31T12:00:00.Z",
            "2026-03-31x",
            "AAAAA",
        ] {
            assert!(!is_valid_date(bad), "{bad}");
        }
    }
}
