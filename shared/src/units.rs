//! Sizes for people, the same in the daemon's reports and the client's output.

/// `999 B`, `2.3 MB`, `1.1 GB` (decimal units, one decimal).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(2_300_000), "2.3 MB");
        assert_eq!(human_size(1_100_000_000), "1.1 GB");
    }
}
