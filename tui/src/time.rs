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

/// A proleptic Gregorian date to days since 1970-01-01 (inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A `--since` value in Unix milliseconds: a duration back from `now_ms` (`90s`,
/// `10m`, `2h`, `1d`, `1w`), an RFC 3339 time (`2024-05-06T07:08:09Z`, any offset),
/// or a UTC `YYYY-MM-DD[ HH:MM[:SS]]`.
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, String> {
    let s = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a time: use e.g. 10m, 2h, 1d, `2024-05-06 07:08` (UTC) \
             or 2024-05-06T07:08:09+02:00"
        )
    };
    if let Some(unit) = s.chars().last().filter(char::is_ascii_alphabetic)
        && !s.contains('-')
    {
        let digits = &s[..s.len() - 1];
        let ms_per = match unit.to_ascii_lowercase() {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        return n
            .checked_mul(ms_per)
            .map(|back| now_ms.saturating_sub(back))
            .ok_or_else(bad);
    }
    parse_absolute(s).ok_or_else(bad)
}

/// Digits only (no sign), as a number.
fn num(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn parse_absolute(s: &str) -> Option<i64> {
    if !s.is_ascii() || s.len() < 10 {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let (y, m, d) = match date.split('-').collect::<Vec<_>>()[..] {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => (num(y)?, num(m)?, num(d)?),
        _ => return None,
    };
    let y = i64::from(y);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    // The zone starts at the first Z, +, - or space after the time.
    let zone_at = rest.find(['Z', 'z', '+', '-', ' ']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let (h, min, sec) = match hms.split(':').collect::<Vec<_>>()[..] {
        [h, m] if h.len() == 2 && m.len() == 2 => (num(h)?, num(m)?, 0),
        [h, m, s] if h.len() == 2 && m.len() == 2 && s.len() == 2 => (num(h)?, num(m)?, num(s)?),
        _ => return None,
    };
    if h > 23 || min > 59 || sec > 60 {
        return None;
    }
    ms += (i64::from(h) * 3600 + i64::from(min) * 60 + i64::from(sec)) * 1000;
    if let Some(frac) = frac {
        num(frac)?;
        let millis: String = frac.chars().chain("000".chars()).take(3).collect();
        ms += i64::from(num(&millis)?);
    }
    let offset_min = match zone.trim() {
        "" | "Z" | "z" | "UTC" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (oh, om) = z[1..].split_once(':').unwrap_or((&z[1..], "00"));
            if oh.len() != 2 || om.len() != 2 || !z.starts_with(['+', '-']) {
                return None;
            }
            let (oh, om) = (num(oh)?, num(om)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (i64::from(oh) * 60 + i64::from(om))
        }
    };
    Some(ms - offset_min * 60_000)
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
    fn parses_since_values() {
        let now = 1_000_000_000_000;
        assert_eq!(parse_since("10m", now), Ok(now - 600_000));
        assert_eq!(parse_since("2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_since(" 1d ", now), Ok(now - 86_400_000));
        assert_eq!(parse_since("90s", now), Ok(now - 90_000));
        assert_eq!(parse_since("1w", now), Ok(now - 604_800_000));
        // 2000-02-29 12:34:56 UTC, as in `formats_known_instants`.
        let leap = 951_827_696_000;
        assert_eq!(parse_since("2000-02-29T12:34:56Z", now), Ok(leap));
        assert_eq!(parse_since("2000-02-29t12:34:56.5z", now), Ok(leap + 500));
        assert_eq!(parse_since("2000-02-29T14:34:56+02:00", now), Ok(leap));
        assert_eq!(parse_since("2000-02-29T10:04:56-02:30", now), Ok(leap));
        assert_eq!(parse_since("2000-02-29 12:34", now), Ok(leap - 56_000));
        assert_eq!(parse_since("2000-02-29 12:34:56 UTC", now), Ok(leap));
        assert_eq!(parse_since("1970-01-01", now), Ok(0));
        for bad in [
            "",
            "m",
            "10x",
            "-5m",
            "1.5h",
            "yesterday",
            "2000-02-30",
            "2001-02-29 00:00",
            "2000-13-01",
            "2000-01-01 24:00",
            "2000-01-01T12",
            "2000-01-01T12:00+2",
            "2000-1-01",
            "99999999999999999999d",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad:?} parsed");
        }
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2024, 12, 31), (1969, 12, 31)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
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
