//! The time formats other Resque implementations write and resque-web parses.
//!
//! All times are UTC; every format here names its zone, so readers in any zone
//! parse them correctly.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, now, by this host's clock, with fractions.
pub fn now_fraction() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Seconds since the epoch, now, by this host's clock.
pub fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil(epoch: i64) -> Civil {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
    }
}

/// Inverse of [`civil`]: days since the epoch of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2024-01-15T10:30:00Z`: Ruby's `run_at` in `worker:ID`.
pub fn iso8601_z(epoch: i64) -> String {
    let c = civil(epoch);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `2024-01-15T10:30:00+00:00`: Ruby's heartbeat value.
pub fn iso8601_offset(epoch: i64) -> String {
    let c = civil(epoch);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `2024-01-15 10:30:00 +0000`: Ruby's `Time#to_s`, used for `worker:ID:started`.
pub fn ruby_time(epoch: i64) -> String {
    let c = civil(epoch);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `2024/01/15 10:30:00 UTC`: Ruby's `failed_at`, which resque-web parses.
pub fn failed_at(epoch: i64) -> String {
    let c = civil(epoch);
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02} UTC",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Parses the ISO 8601 forms Resque writers use for heartbeats and `run_at`
/// (`2024-01-15T10:30:00Z`, `…+01:00`, `…+0100`, fractional seconds) into epoch
/// seconds. Returns `None` for anything else.
///
/// ```
/// use resque_fork::timefmt::parse_iso8601;
/// assert_eq!(parse_iso8601("2024-01-15T10:30:00Z"), Some(1705314600));
/// assert_eq!(parse_iso8601("2024-01-15T11:30:00+01:00"), Some(1705314600));
/// assert_eq!(parse_iso8601("yesterday"), None);
/// ```
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = std::str::from_utf8(b.get(range)?).ok()?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b' '))
    {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        rest = &rest[1 + digits..];
    }
    let offset = match rest {
        b"Z" | b"" => 0,
        [sign @ (b'+' | b'-'), h1, h2, tail @ ..] => {
            let hours = std::str::from_utf8(&[*h1, *h2]).ok()?.parse::<i64>().ok()?;
            let mins = match tail {
                [b':', m1, m2] | [m1, m2] => {
                    std::str::from_utf8(&[*m1, *m2]).ok()?.parse::<i64>().ok()?
                }
                [] => 0,
                _ => return None,
            };
            let secs = hours * 3600 + mins * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Parses the times any Resque implementation writes, for showing ages:
/// ISO 8601 (Ruby heartbeats, `run_at`, php `date('c')`), Ruby's
/// `2024/01/15 10:30:00 UTC` and `2024-01-15 10:30:00 +0000`, JavaScript's
/// `Date#toString` (node-resque), php-resque's original
/// `Mon Jan 15 10:30:00 UTC 2024`, and plain epoch seconds. `None` for
/// anything else, or a zone given only by an ambiguous name.
///
/// ```
/// use resque_fork::timefmt::parse_any;
/// let t = Some(1705314600);
/// assert_eq!(parse_any("2024/01/15 10:30:00 UTC"), t);
/// assert_eq!(parse_any("2024-01-15 11:30:00 +0100"), t);
/// assert_eq!(parse_any("Mon Jan 15 2024 10:30:00 GMT+0000 (Coordinated Universal Time)"), t);
/// assert_eq!(parse_any("Mon Jan 15 10:30:00 UTC 2024"), t);
/// assert_eq!(parse_any("1705314600"), t);
/// assert_eq!(parse_any("2024/01/15 10:30:00 CET"), None);
/// ```
pub fn parse_any(text: &str) -> Option<i64> {
    let t = text.trim();
    if !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    if let Some(v) = parse_iso8601(t) {
        return Some(v);
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    let zone = |z: &str| -> Option<String> {
        match z {
            "UTC" | "GMT" | "Z" => Some("Z".to_string()),
            _ => {
                let z = z.strip_prefix("GMT").unwrap_or(z);
                let ok = z.len() == 5
                    && (z.starts_with('+') || z.starts_with('-'))
                    && z[1..].bytes().all(|b| b.is_ascii_digit());
                ok.then(|| z.to_string())
            }
        }
    };
    // 2024/01/15 10:30:00 UTC, 2024-01-15 10:30:00 +0000
    if let [date, time, z] = words[..] {
        let date = date.replace('/', "-");
        return parse_iso8601(&format!("{date}T{time}{}", zone(z)?));
    }
    let month = |m: &str| -> Option<u32> {
        let names = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        names.iter().position(|n| *n == m).map(|i| i as u32 + 1)
    };
    let build = |y: &str, m: &str, d: &str, time: &str, z: &str| -> Option<i64> {
        let day: u32 = d.parse().ok()?;
        parse_iso8601(&format!("{y}-{:02}-{day:02}T{time}{}", month(m)?, zone(z)?))
    };
    match words[..] {
        // JavaScript: Mon Jan 15 2024 10:30:00 GMT+0000 (…)
        [_, m, d, y, time, z, ..] if y.len() == 4 && time.contains(':') => build(y, m, d, time, z),
        // php-resque original: Mon Jan 15 10:30:00 UTC 2024
        [_, m, d, time, z, y] if time.contains(':') => build(y, m, d, time, z),
        _ => None,
    }
}

/// A duration as rufus-scheduler (resque-scheduler's `every`) and
/// `enqueue --in` write it: whole numbers with units `s`, `m`, `h`, `d`, `w`,
/// `M` (30 days) and `y` (365 days), in any combination (`1h30m`); a bare
/// number is seconds. Returns seconds, or `None` for anything else.
///
/// ```
/// use resque_fork::timefmt::parse_duration;
/// assert_eq!(parse_duration("90"), Some(90));
/// assert_eq!(parse_duration("5m"), Some(300));
/// assert_eq!(parse_duration("1h30m"), Some(5400));
/// assert_eq!(parse_duration("2w"), Some(1_209_600));
/// assert_eq!(parse_duration("soon"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            'M' => 30 * 86_400,
            'y' => 365 * 86_400,
            _ => return None,
        };
        let n: u64 = std::mem::take(&mut digits).parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    digits.is_empty().then_some(total)
}

/// A person's reading of an age: `12s`, `3m`, `5h`, `2d`.
///
/// ```
/// use resque_fork::timefmt::age;
/// assert_eq!(age(45), "45s");
/// assert_eq!(age(3 * 60 + 5), "3m");
/// assert_eq!(age(5 * 3600), "5h");
/// assert_eq!(age(3 * 86400), "3d");
/// ```
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: i64 = 1_705_314_600; // 2024-01-15 10:30:00 UTC, the contract's example time

    #[test]
    fn contract_formats() {
        assert_eq!(iso8601_z(EXAMPLE), "2024-01-15T10:30:00Z");
        assert_eq!(iso8601_offset(EXAMPLE), "2024-01-15T10:30:00+00:00");
        assert_eq!(ruby_time(EXAMPLE), "2024-01-15 10:30:00 +0000");
        assert_eq!(failed_at(EXAMPLE), "2024/01/15 10:30:00 UTC");
    }

    #[test]
    fn calendar_edges() {
        assert_eq!(iso8601_z(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_z(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_z(4_107_542_399), "2100-02-28T23:59:59Z");
        for t in [0, 951_782_400, EXAMPLE, 4_107_542_399, 1_000_000_007] {
            assert_eq!(parse_iso8601(&iso8601_z(t)), Some(t));
            assert_eq!(parse_iso8601(&iso8601_offset(t)), Some(t));
        }
    }

    #[test]
    fn parses_other_writers() {
        assert_eq!(parse_iso8601("2024-01-15T10:30:00.123Z"), Some(EXAMPLE));
        assert_eq!(parse_iso8601("2024-01-15T05:30:00-0500"), Some(EXAMPLE));
        assert_eq!(parse_iso8601("2024-01-15 10:30:00"), Some(EXAMPLE));
        assert_eq!(parse_iso8601("2024-13-15T10:30:00Z"), None);
        assert_eq!(parse_iso8601(""), None);
    }
}
