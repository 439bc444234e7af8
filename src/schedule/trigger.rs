//! When a recurring entry fires: a cron line (optionally with seconds and a
//! trailing time zone, as rufus-scheduler reads it) or an `every` duration.
//!
//! Every pool must compute the same instants from the same clock (Redis's),
//! since a tick is claimed by its time: so `every` ticks are aligned to the
//! Unix epoch (or to `first_at`), not counted from when a pool started as
//! rufus counts them.

use croner::parser::{CronParser, Seconds};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// An entry's firing rule.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// A cron line, evaluated in `zone`.
    Cron {
        cron: Box<Cron>,
        zone: TimeZone,
        /// The line as written, for display.
        text: String,
    },
    /// Every `seconds`, at `anchor + k × seconds`.
    Every {
        seconds: i64,
        anchor: i64,
        text: String,
    },
}

impl Trigger {
    /// Parses a cron line: five fields, or six with seconds first, then an
    /// optional IANA time zone name (`30 6 * * 1 Europe/Stockholm`). Without a
    /// zone, the pool's local zone (TZ, else the system's) applies, as for
    /// rufus-scheduler.
    ///
    /// ```
    /// use resque_fork::schedule::Trigger;
    /// let t = Trigger::cron("*/5 * * * * UTC").unwrap();
    /// // 2024-01-15 10:30:00 UTC and the next two five-minute marks.
    /// assert_eq!(t.ticks(1705314599, 1705315200, 10), vec![1705314600, 1705314900, 1705315200]);
    /// assert!(Trigger::cron("61 * * * *").is_err());
    /// ```
    pub fn cron(line: &str) -> Result<Trigger, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        // Six words may be seconds-first cron or five fields and a zone: a
        // last word that names a zone is one (no weekday name is a zone).
        let (fields, zone) = match words.split_last() {
            Some((last, rest)) if rest.len() >= 5 => match TimeZone::get(last) {
                Ok(zone) => (rest.join(" "), zone),
                Err(e)
                    if rest.len() >= 6
                        || last.contains('/') && last.bytes().any(|b| b.is_ascii_lowercase()) =>
                {
                    return Err(format!("unknown time zone {last:?} in cron {line:?}: {e}"))
                }
                Err(_) => (words.join(" "), TimeZone::system()),
            },
            _ => (words.join(" "), TimeZone::system()),
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(&fields)
            .map_err(|e| format!("invalid cron {line:?}: {e}"))?;
        Ok(Trigger::Cron {
            cron: Box::new(cron),
            zone,
            text: line.trim().to_string(),
        })
    }

    /// Parses an `every` duration (`30s`, `5m`, `1h30m`, `1d`); `first_at`
    /// (epoch seconds), when given, anchors the ticks.
    ///
    /// ```
    /// use resque_fork::schedule::Trigger;
    /// let t = Trigger::every("30s", None).unwrap();
    /// assert_eq!(t.ticks(100, 160, 10), vec![120, 150]);
    /// assert_eq!(t.next_after(150), Some(180));
    /// ```
    pub fn every(text: &str, first_at: Option<i64>) -> Result<Trigger, String> {
        let seconds = crate::timefmt::parse_duration(text)
            .filter(|&s| s > 0 && s <= 100 * 365 * 86_400)
            .ok_or_else(|| format!("invalid every {text:?} (30s, 5m, 1h30m, 1d, …)"))?;
        Ok(Trigger::Every {
            seconds: seconds as i64,
            anchor: first_at.unwrap_or(0),
            text: text.trim().to_string(),
        })
    }

    /// The rule as written (`cron "…"` or `every …`).
    pub fn describe(&self) -> String {
        match self {
            Trigger::Cron { text, .. } => format!("cron {text:?}"),
            Trigger::Every { text, .. } => format!("every {text}"),
        }
    }

    /// The first tick after `t` (epoch seconds).
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match self {
            Trigger::Every {
                seconds, anchor, ..
            } => {
                if t < *anchor {
                    return Some(*anchor);
                }
                Some(anchor + ((t - anchor) / seconds + 1) * seconds)
            }
            Trigger::Cron { cron, zone, .. } => {
                let at = Timestamp::from_second(t).ok()?;
                let next = cron
                    .find_next_occurrence(&Zoned::new(at, zone.clone()), false)
                    .ok()?;
                Some(next.timestamp().as_second())
            }
        }
    }

    /// The ticks `t` with `after < t <= until`, earliest first, at most
    /// `limit` of them.
    pub fn ticks(&self, after: i64, until: i64, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < limit {
            match self.next_after(t) {
                Some(next) if next <= until && next > t => {
                    out.push(next);
                    t = next;
                }
                _ => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Trigger;

    #[test]
    fn cron_with_seconds_and_zone() {
        let t = Trigger::cron("*/20 * * * * * UTC").unwrap();
        assert_eq!(t.ticks(0, 60, 10), vec![20, 40, 60]);
        // 06:30 in Stockholm (UTC+1 in January) is 05:30 UTC.
        let t = Trigger::cron("30 6 * * * Europe/Stockholm").unwrap();
        assert_eq!(t.next_after(1705314600), Some(1705383000));
        assert!(Trigger::cron("30 6 * * * Mars/Olympus").is_err());
        assert!(Trigger::cron("* * *").is_err());
    }

    #[test]
    fn cron_without_zone_keeps_weekday_and_month_names() {
        assert!(Trigger::cron("0 9 * * MON").is_ok());
        assert!(Trigger::cron("0 9 * JAN-MAR MON-FRI").is_ok());
        assert!(Trigger::cron("0 9 * * 1-5").is_ok());
        assert!(Trigger::cron("0 9 * * * EST").is_ok());
        assert!(Trigger::cron("0 */5 * * * */2").is_ok());
    }

    #[test]
    fn every_is_anchored_and_bounded() {
        let t = Trigger::every("1m", Some(30)).unwrap();
        assert_eq!(t.next_after(0), Some(30));
        assert_eq!(t.ticks(30, 200, 10), vec![90, 150]);
        assert_eq!(t.ticks(0, 1000, 2), vec![30, 90]);
        assert!(Trigger::every("0s", None).is_err());
        assert!(Trigger::every("often", None).is_err());
    }
}
