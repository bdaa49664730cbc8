//! Retry policy of a push (`docs/qobra-api.md` §7): which outcomes of a request are worth another
//! try, and how long to wait before it.
//!
//! Pure: the randomness of the jitter and the current time are parameters, so every decision is
//! reproducible in tests. The HTTP client (`client/attempt.rs`) applies it.

use std::fmt;
use std::time::{Duration, SystemTime};

/// How a failed request is retried.
///
/// The wait before retry `n` (1-based) is the server's `Retry-After` when it sent a usable one
/// (never more than `retry_after_cap`), else an exponential backoff `base · 2^(n-1)` bounded by
/// `max_backoff`, with equal jitter: half of it fixed, the other half random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; a request is sent at most `max_retries + 1` times.
    pub max_retries: u32,
    /// Backoff ceiling before the first retry.
    pub base: Duration,
    /// Largest backoff ceiling, whatever the retry number.
    pub max_backoff: Duration,
    /// Largest wait granted to a server's `Retry-After`.
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    /// 5 retries from 500 ms up to 30 s (about a minute in all at worst, without `Retry-After`);
    /// a `Retry-After` is honoured up to 60 s, beyond which the run had better fail and be retried
    /// at the next schedule than hold a backend.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling before retry `retry` (1-based): `base · 2^(retry-1)`, at most `max_backoff`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(Duration::MAX)
            .min(self.max_backoff)
    }

    /// The jittered backoff before retry `retry`: half the ceiling plus `unit` (in `[0, 1]`, e.g.
    /// `fastrand::f64()`) times the other half. Out-of-range `unit`s are clamped.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        let half = ceiling / 2;
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        half + (ceiling - half).mul_f64(unit)
    }

    /// The wait before retry `retry`, given the answer's `Retry-After` header (if any), the time
    /// now, and the jitter draw `unit`. A usable `Retry-After` wins, capped at `retry_after_cap`;
    /// an unusable one (garbage, a date in an odd format) falls back to the backoff.
    pub fn wait_before(
        &self,
        retry: u32,
        retry_after: Option<&str>,
        now: SystemTime,
        unit: f64,
    ) -> Duration {
        match retry_after.and_then(|value| parse_retry_after(value, now)) {
            Some(wait) => wait.min(self.retry_after_cap),
            None => self.backoff(retry, unit),
        }
    }
}

/// Reads a `Retry-After` value: delta-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`). A date in the past means "now"; a number too large for a
/// `u64` saturates (the cap applies later). Anything else is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            value
                .parse::<u64>()
                .map(Duration::from_secs)
                .unwrap_or(Duration::MAX),
        );
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What an HTTP status means for the request that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx: accepted.
    Success,
    /// 408, 429, 5xx: try again after a wait.
    Retryable,
    /// 401, 403: the API key is rejected; retrying cannot help.
    KeyRejected,
    /// 3xx: a redirect, which is never followed (the key must not travel elsewhere).
    Redirect,
    /// 413: the body is larger than Qobra takes; the same body would be refused again, but a
    /// smaller one may pass (the caller may split the chunk).
    PayloadTooLarge,
    /// Any other status (mostly 4xx): the request itself is wrong; stop.
    Fatal,
}

/// Classifies an HTTP status code.
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        401 | 403 => StatusClass::KeyRejected,
        413 => StatusClass::PayloadTooLarge,
        408 | 429 | 500..=599 => StatusClass::Retryable,
        300..=399 => StatusClass::Redirect,
        _ => StatusClass::Fatal,
    }
}

/// How a request failed below HTTP (but for certificate problems and a proxy that refuses the
/// tunnel, which fail at once: see the client). Every kind is retryable: a timeout or a reset leaves the
/// request's fate unknown, and resending a chunk is harmless (records are upserts by id, and an
/// `all=true` chunk starts the table over anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The connect or total request timeout expired.
    Timeout,
    /// No connection could be made (refused, unreachable, DNS, a TLS handshake that failed but
    /// for a certificate problem, which is never retried: see the client's `PushError::Tls`).
    Connect,
    /// The connection was reset or closed before the answer was complete.
    Reset,
    /// Any other I/O failure while sending or receiving.
    Other,
}

impl TransportKind {
    /// Whether a request that failed this way may be retried (always: see the type's comment).
    pub fn is_retryable(self) -> bool {
        true
    }
}

impl fmt::Display for TransportKind {
    /// A short phrase for error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Timeout => "timed out",
            TransportKind::Connect => "could not connect",
            TransportKind::Reset => "connection reset or closed",
            TransportKind::Other => "connection failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy with round numbers for readable expectations.
    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            retry_after_cap: Duration::from_secs(10),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = policy();
        let ms = |n| p.backoff_ceiling(n).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5)],
            [100, 200, 400, 800, 1000]
        );
        assert_eq!(ms(0), 100);
        assert_eq!(ms(u32::MAX), 1000, "no overflow on huge retry numbers");
        let huge = RetryPolicy {
            base: Duration::from_secs(u64::MAX / 2),
            max_backoff: Duration::MAX,
            ..p
        };
        assert_eq!(huge.backoff_ceiling(40), Duration::MAX, "saturates");
    }

    #[test]
    fn equal_jitter_stays_within_half_and_full_ceiling() {
        let p = policy();
        assert_eq!(p.backoff(3, 0.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(400));
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(300));
        assert_eq!(p.backoff(3, -4.0), Duration::from_millis(200), "clamped");
        assert_eq!(p.backoff(3, 7.0), Duration::from_millis(400), "clamped");
        assert_eq!(p.backoff(3, f64::NAN), Duration::from_millis(200));
        let mut rng = fastrand::Rng::with_seed(42);
        for retry in 1..=10 {
            let ceiling = p.backoff_ceiling(retry);
            let wait = p.backoff(retry, rng.f64());
            assert!(wait >= ceiling / 2 && wait <= ceiling, "{retry}: {wait:?}");
        }
        // Same seed, same waits.
        let draws = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (1..=5).map(|n| p.backoff(n, rng.f64())).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
    }

    #[test]
    fn retry_after_seconds_dates_garbage_and_huge_values() {
        let p = policy();
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let wait = |v: Option<&str>| p.wait_before(2, v, now, 0.0);
        assert_eq!(wait(Some("0")), Duration::ZERO);
        assert_eq!(wait(Some("2")), Duration::from_secs(2));
        assert_eq!(wait(Some(" 3 ")), Duration::from_secs(3));
        assert_eq!(
            wait(Some("Wed, 21 Oct 2015 07:28:05 GMT")),
            Duration::from_secs(5)
        );
        assert_eq!(
            wait(Some("Wed, 21 Oct 2015 07:27:00 GMT")),
            Duration::ZERO,
            "a date in the past means now"
        );
        assert_eq!(
            wait(Some("Thu, 22 Oct 2015 07:28:00 GMT")),
            Duration::from_secs(10),
            "a far date is capped"
        );
        assert_eq!(wait(Some("1000000000")), Duration::from_secs(10), "capped");
        assert_eq!(
            wait(Some("99999999999999999999999999")),
            Duration::from_secs(10),
            "beyond u64: capped"
        );
        // Unusable values fall back to the backoff of retry 2 (100..200 ms; 100 with unit 0).
        for garbage in [
            "soon",
            "",
            "-5",
            "1.5",
            "2 seconds",
            "0x10",
            "Wed, 21 Oct 2015",
        ] {
            assert_eq!(
                wait(Some(garbage)),
                Duration::from_millis(100),
                "{garbage:?}"
            );
        }
        assert_eq!(wait(None), Duration::from_millis(100));
    }

    #[test]
    fn parse_retry_after_alone() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:17:00 GMT", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(parse_retry_after("later", now), None);
    }

    #[test]
    fn statuses_are_classified() {
        use StatusClass::*;
        for (status, class) in [
            (200, Success),
            (201, Success),
            (202, Success),
            (301, Redirect),
            (302, Redirect),
            (307, Redirect),
            (308, Redirect),
            (400, Fatal),
            (401, KeyRejected),
            (403, KeyRejected),
            (404, Fatal),
            (408, Retryable),
            (413, PayloadTooLarge),
            (422, Fatal),
            (429, Retryable),
            (500, Retryable),
            (502, Retryable),
            (503, Retryable),
            (504, Retryable),
            (599, Retryable),
            (100, Fatal),
            (600, Fatal),
        ] {
            assert_eq!(classify_status(status), class, "{status}");
        }
    }

    #[test]
    fn transport_failures_are_retryable() {
        for kind in [
            TransportKind::Timeout,
            TransportKind::Connect,
            TransportKind::Reset,
            TransportKind::Other,
        ] {
            assert!(kind.is_retryable());
            assert!(!kind.to_string().is_empty());
        }
    }
}
