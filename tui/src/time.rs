//! Timestamp formatting without a calendar dependency: history stores Unix
//! milliseconds and we only ever print them, in UTC so output is reproducible.

/// `2024-05-06 07:08:09 UTC` for Unix milliseconds `ms`.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `1h 02m`, `3m 04s`, `12s`: compact uptime for the status table.
pub fn format_duration(secs: f64) -> String {
    let s = if secs.is_finite() && secs > 0.0 {
        secs as u64
    } else {
        0
    };
    match (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, sec) => format!("{sec}s"),
        (0, 0, min, sec) => format!("{min}m {sec:02}s"),
        (0, h, min, _) => format!("{h}h {min:02}m"),
        (d, h, _, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 12:34:56 UTC, a leap day.
        assert_eq!(format_ms(951_827_696_000), "2000-02-29 12:34:56 UTC");
        assert_eq!(format_ms(1_735_689_599_999), "2024-12-31 23:59:59 UTC");
        assert_eq!(format_ms(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration(5.9), "5s");
        assert_eq!(format_duration(184.0), "3m 04s");
        assert_eq!(format_duration(3720.0), "1h 02m");
        assert_eq!(format_duration(90_000.0), "1d 1h");
        assert_eq!(format_duration(f64::NAN), "0s");
    }
}
