//! Schedules: when a registered table is pushed by the worker.
//!
//! A schedule is either a 5-field cron expression (`'0 */6 * * *'`, `@daily`…), evaluated in a
//! time zone, or an interval (`'30 seconds'`, `'15 minutes'`, `'6 hours'`), counted from the
//! previous run.
//!
//! Cron follows Vixie cron as Debian ships it. When both day fields are restricted, either may
//! match; when either starts with `*`, both must. Across DST changes, a job at fixed times
//! (neither its minute nor its hour field starts with `*`) keeps the wall clock: a time a change
//! skips fires at the first valid time after it, a time it repeats fires once. Any other job
//! (every N minutes, every N hours) keeps its pace in real time.

use crate::error::{quoted, Error, Result, SqlState};
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
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
    /// A cron expression, evaluated in the configured time zone, on the given clock.
    Cron(Box<Cron>, Clock),
    /// A fixed interval between runs.
    Every(Duration),
}

/// The clock a cron expression keeps across DST changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Fixed times: the local wall clock (skipped times fire just after the change, repeated
    /// times once).
    Wall,
    /// Every N minutes or hours: real time (each real instant whose local time matches).
    Real,
}

/// The 5-field expression behind a cron nickname, or the text itself.
fn expand_nickname(text: &str) -> &str {
    match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => text,
    }
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
        let expression = expand_nickname(trimmed);
        let fields: Vec<&str> = expression.split_whitespace().collect();
        if trimmed.starts_with('@') || fields.len() == 5 {
            let starred = |i: usize| fields.get(i).is_some_and(|f| f.starts_with('*'));
            let parser = CronParser::builder()
                .seconds(Seconds::Disallowed)
                .year(Year::Disallowed)
                .dom_and_dow(starred(2) || starred(4))
                .build();
            let clock = if starred(0) || starred(1) {
                Clock::Real
            } else {
                Clock::Wall
            };
            return parser
                .parse(expression)
                .map(|c| Schedule::Cron(Box::new(c), clock))
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
            Schedule::Cron(cron, Clock::Real) => cron
                .find_next_occurrence(&after.with_timezone(&zone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Schedule::Cron(cron, Clock::Wall) => next_on_the_wall(cron, after, zone),
            Schedule::Every(every) => chrono::Duration::from_std(*every)
                .ok()
                .and_then(|d| after.checked_add_signed(d)),
        }
    }

    /// The next `count` run times after `after`, each the [`next_after`](Self::next_after) of
    /// the one before, exactly as the worker schedules them (intervals count from `after`).
    pub fn upcoming(&self, after: DateTime<Utc>, zone: Tz, count: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(self.next_after(after, zone), |t| self.next_after(*t, zone))
            .take(count)
            .collect()
    }
}

/// The next time after `after` at which the local wall clock of `zone` shows a time of `cron`:
/// the expression is matched on wall-clock times, each of which is then placed in real time
/// (a time a DST change skips at the first valid minute after it, a repeated time at its first
/// occurrence, which fires it once).
fn next_on_the_wall(cron: &Cron, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
    let mut wall = after.with_timezone(&zone).naive_local();
    // Each step moves to a later wall-clock match. Asked from the second pass of a repeated
    // hour, every match left in it was already fired at its first occurrence and is skipped: a
    // job every minute skips up to the length of the repetition (an hour, two at most), hence
    // the bound of a day of minutes.
    for _ in 0..(24 * 60) {
        wall = cron
            .find_next_occurrence(&Utc.from_utc_datetime(&wall), false)
            .ok()?
            .naive_utc();
        let at = place_on_the_clock(wall, zone)?;
        if at > after {
            return Some(at);
        }
    }
    None
}

/// The real time of wall-clock time `wall` in `zone`: its first occurrence when a DST change
/// repeats it, the first valid minute after it when a change skips it.
fn place_on_the_clock(wall: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    let mut minute = wall;
    // DST changes skip at most a few hours.
    for _ in 0..(24 * 60) {
        match zone.from_local_datetime(&minute) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                return Some(t.with_timezone(&Utc))
            }
            LocalResult::None => minute += chrono::Duration::minutes(1),
        }
    }
    None
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

    /// The next `n` run times of `expr` in `zone` after `from`, as local RFC 3339 texts.
    fn local_runs(expr: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
        let zone = parse_zone(zone).unwrap();
        Schedule::parse(expr)
            .unwrap()
            .upcoming(at(from), zone, n)
            .iter()
            .map(|t| t.with_timezone(&zone).to_rfc3339())
            .collect()
    }

    #[test]
    fn either_restricted_day_field_may_match() {
        // The 13th of each month, and every Friday (Vixie cron's rule).
        assert_eq!(
            local_runs("0 0 13 * 5", "UTC", "2027-01-01T00:00:00Z", 4),
            [
                "2027-01-08T00:00:00+00:00",
                "2027-01-13T00:00:00+00:00",
                "2027-01-15T00:00:00+00:00",
                "2027-01-22T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn a_time_a_dst_change_skips_fires_at_the_first_valid_time_after_it() {
        // New York springs from 02:00 to 03:00 on 2027-03-14.
        assert_eq!(
            local_runs("30 2 * * *", "America/New_York", "2027-03-13T12:00:00Z", 2),
            ["2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00"]
        );
        // Lord Howe springs by half an hour, from 02:00 to 02:30, on 2027-10-03.
        assert_eq!(
            local_runs(
                "15 2 * * *",
                "Australia/Lord_Howe",
                "2027-10-02T00:00:00Z",
                2
            ),
            ["2027-10-03T02:30:00+11:00", "2027-10-04T02:15:00+11:00"]
        );
    }

    #[test]
    fn a_time_a_dst_change_repeats_fires_once() {
        // 01:30 happens twice in New York on 2027-11-07 (EDT, then EST).
        assert_eq!(
            local_runs("30 1 * * *", "America/New_York", "2027-11-06T12:00:00Z", 2),
            ["2027-11-07T01:30:00-04:00", "2027-11-08T01:30:00-05:00"]
        );
        // A schedule of every half hour keeps its pace through the repeated hour.
        assert_eq!(
            local_runs(
                "*/30 * * * *",
                "America/New_York",
                "2027-11-07T04:50:00Z",
                4
            ),
            [
                "2027-11-07T01:00:00-04:00",
                "2027-11-07T01:30:00-04:00",
                "2027-11-07T01:00:00-05:00",
                "2027-11-07T01:30:00-05:00"
            ]
        );
    }

    #[test]
    fn fixed_times_keep_the_wall_clock_through_dst_changes() {
        // 02:05 does not exist on 2027-03-14 in New York: it fires at 03:00, then 03:05 as usual.
        assert_eq!(
            local_runs("5 0-3 * * *", "America/New_York", "2027-03-14T05:30:00Z", 4),
            [
                "2027-03-14T01:05:00-05:00",
                "2027-03-14T03:00:00-04:00",
                "2027-03-14T03:05:00-04:00",
                "2027-03-15T00:05:00-04:00"
            ]
        );
        // 01:05 happens twice on 2027-11-07: it fires once, at the first.
        assert_eq!(
            local_runs("5 0-3 * * *", "America/New_York", "2027-11-07T04:00:00Z", 3),
            [
                "2027-11-07T00:05:00-04:00",
                "2027-11-07T01:05:00-04:00",
                "2027-11-07T02:05:00-05:00"
            ]
        );
        // Asked from inside the repeated hour, after the first 01:30: not again.
        assert_eq!(
            local_runs("30 1 * * *", "America/New_York", "2027-11-07T06:10:00Z", 1),
            ["2027-11-08T01:30:00-05:00"]
        );
        // Asked from the second pass of the repeated hour, a job of every minute of it (or
        // every five) does not fire again before the hour is over.
        assert_eq!(
            local_runs(
                "0-59 0-3 * * *",
                "America/New_York",
                "2027-11-07T06:05:00Z",
                1
            ),
            ["2027-11-07T02:00:00-05:00"]
        );
        assert_eq!(
            local_runs(
                "0-59/5 1 * * *",
                "America/New_York",
                "2027-11-07T06:05:00Z",
                1
            ),
            ["2027-11-08T01:00:00-05:00"]
        );
        // Chatham shifts by an hour at 02:45 (+12:45 to +13:45): 03:05 fires at 03:45.
        assert_eq!(
            local_runs("5 3 * * *", "Pacific/Chatham", "2027-09-25T00:00:00Z", 1),
            ["2027-09-26T03:45:00+13:45"]
        );
    }

    #[test]
    fn a_starred_day_field_makes_both_day_fields_count() {
        // Every other day of the month that is a Monday (Debian cron: a field starting with
        // `*` means AND), against the 13th or any Friday.
        let mondays = local_runs("0 0 */2 * 1", "UTC", "2027-01-01T00:00:00Z", 3);
        assert_eq!(
            mondays,
            [
                "2027-01-11T00:00:00+00:00",
                "2027-01-25T00:00:00+00:00",
                "2027-02-01T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn zones_with_half_hour_offsets_work() {
        assert_eq!(
            local_runs("0 9 * * *", "Asia/Kolkata", "2027-10-02T00:00:00Z", 1),
            ["2027-10-02T09:00:00+05:30"]
        );
        assert_eq!(
            Schedule::parse("0 9 * * *").unwrap().upcoming(
                at("2027-10-02T00:00:00Z"),
                parse_zone("Asia/Kolkata").unwrap(),
                1
            ),
            [at("2027-10-02T03:30:00Z")]
        );
    }

    #[test]
    fn upcoming_intervals_count_from_after() {
        let s = Schedule::parse("90 minutes").unwrap();
        assert_eq!(
            s.upcoming(at("2027-01-01T00:10:00Z"), Tz::UTC, 3),
            [
                at("2027-01-01T01:40:00Z"),
                at("2027-01-01T03:10:00Z"),
                at("2027-01-01T04:40:00Z")
            ]
        );
        assert!(s
            .upcoming(at("2027-01-01T00:10:00Z"), Tz::UTC, 0)
            .is_empty());
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
            Schedule::Cron(..)
        ));
        assert!(parse_zone("Mars/Olympus").is_err());
        assert_eq!(parse_zone("UTC").unwrap(), Tz::UTC);
    }
}
