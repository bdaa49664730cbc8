//! Schedules: when a registered table is pushed by the worker.
//!
//! A schedule is either a 5-field cron expression (`'0 */6 * * *'`, `@daily`…), evaluated in a
//! time zone, or an interval (`'30 seconds'`, `'15 minutes'`, `'6 hours'`), counted from the
//! previous run.

use crate::error::{quoted, Error, Result, SqlState};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use std::time::Duration;

/// The shortest interval accepted: one push per second at most.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 24 * 3600);

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A cron expression, evaluated in the configured time zone.
    Cron(Box<Cron>),
    /// A fixed interval between runs.
    Every(Duration),
}

impl Schedule {
    /// Parses schedule text: cron (5 fields or an `@` nickname) or an interval.
    pub fn parse(text: &str) -> Result<Schedule> {
        let trimmed = text.trim();
        let invalid = |why: String| {
            Error::new(SqlState::InvalidParameterValue, format!("invalid schedule {}", quoted(text)))
                .detail(why)
                .hint("Use a 5-field cron expression such as '0 */6 * * *' (minute hour day month weekday), or an interval such as '30 seconds', '15 minutes' or '6 hours'.")
        };
        if trimmed.is_empty() {
            return Err(invalid("The schedule is empty.".into()));
        }
        if trimmed.starts_with('@') || trimmed.split_whitespace().count() == 5 {
            let parser = CronParser::builder()
                .seconds(Seconds::Disallowed)
                .year(Year::Disallowed)
                .build();
            return parser
                .parse(trimmed)
                .map(|c| Schedule::Cron(Box::new(c)))
                .map_err(|e| {
                    invalid(format!(
                        "Not a valid cron expression: {}.",
                        e.to_string().trim_end_matches('.')
                    ))
                });
        }
        let every = humantime::parse_duration(trimmed).map_err(|e| {
            invalid(format!(
                "Neither a 5-field cron expression nor an interval ({e})."
            ))
        })?;
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&every) {
            return Err(invalid(
                "An interval must be between 1 second and 366 days.".into(),
            ));
        }
        Ok(Schedule::Every(every))
    }

    /// The first run time strictly after `after` (cron: in `zone`; interval: `after` + interval).
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(cron) => cron
                .find_next_occurrence(&after.with_timezone(&zone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Schedule::Every(every) => chrono::Duration::from_std(*every)
                .ok()
                .and_then(|d| after.checked_add_signed(d)),
        }
    }
}

/// Parses a time zone name such as `UTC` or `Europe/Paris`.
pub fn parse_zone(name: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|_| {
        Error::new(
            SqlState::InvalidParameterValue,
            format!("unknown time zone {}", quoted(name)),
        )
        .hint("Use an IANA time zone name such as 'UTC' or 'Europe/Paris'.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_default_schedule_runs_four_times_a_day() {
        let s = Schedule::parse("0 */6 * * *").unwrap();
        let mut t = at("2026-11-25T01:17:00Z");
        let mut runs = vec![];
        for _ in 0..4 {
            t = s.next_after(t, Tz::UTC).unwrap();
            runs.push(t.to_rfc3339());
        }
        assert_eq!(
            runs,
            [
                "2026-11-25T06:00:00+00:00",
                "2026-11-25T12:00:00+00:00",
                "2026-11-25T18:00:00+00:00",
                "2026-11-26T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn cron_is_evaluated_in_the_time_zone_across_a_day_boundary() {
        let s = Schedule::parse("30 0 * * *").unwrap();
        let paris = parse_zone("Europe/Paris").unwrap();
        // 23:40 UTC on the 24th is 00:40 on the 25th in Paris: next 00:30 Paris is the 26th.
        let next = s.next_after(at("2026-11-24T23:40:00Z"), paris).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 25, 23, 30, 0).unwrap());
        // Summer time: 00:30 Paris is 22:30 UTC the day before.
        let next = s.next_after(at("2026-07-01T12:00:00Z"), paris).unwrap();
        assert_eq!(next, at("2026-07-01T22:30:00Z"));
    }

    #[test]
    fn intervals_count_from_the_previous_run() {
        for (text, secs) in [
            ("30 seconds", 30),
            ("15 minutes", 900),
            ("6 hours", 21600),
            ("5s", 5),
            ("1 day", 86400),
        ] {
            let s = Schedule::parse(text).unwrap();
            let t = at("2026-01-01T00:00:00Z");
            assert_eq!(
                (s.next_after(t, Tz::UTC).unwrap() - t).num_seconds(),
                secs,
                "{text}"
            );
        }
    }

    #[test]
    fn bad_schedules_are_refused_with_a_hint() {
        for bad in [
            "",
            "   ",
            "every day",
            "61 * * * *",
            "* * * *",
            "0 0 * * * *",
            "0 seconds",
            "500ms",
            "-5 minutes",
            "400 days",
            "0 */6 * * * ; DROP TABLE x",
        ] {
            let err = Schedule::parse(bad).unwrap_err();
            assert_eq!(err.state, SqlState::InvalidParameterValue, "{bad}");
            assert!(err.hint.as_deref().unwrap().contains("cron"), "{bad}");
        }
    }

    #[test]
    fn nicknames_and_zones() {
        assert!(matches!(
            Schedule::parse("@hourly").unwrap(),
            Schedule::Cron(_)
        ));
        assert!(parse_zone("Mars/Olympus").is_err());
        assert_eq!(parse_zone("UTC").unwrap(), Tz::UTC);
    }
}
