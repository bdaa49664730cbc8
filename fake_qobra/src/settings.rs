//! Settings that change how the public API answers (`--latency-ms`, `--max-body-bytes`,
//! `--body-format`, `PUT /_fake/settings`) and the counters `GET /_fake/stats` reports (requests in flight,
//! connections, failed TLS handshakes).
//!
//! Both are read or bumped on every request, so they are plain atomics: no lock on the
//! request path.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What `max_body_bytes` holds when there is no limit.
const NO_LIMIT: u64 = u64::MAX;

/// The settings as the server was started with them, restored by `POST /_fake/reset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Initial {
    /// Every public request is answered this long after it arrived.
    pub latency: Duration,
    /// A bulk request with a larger body is answered 413 (`None`: no limit but the fake's own).
    pub max_body_bytes: Option<u64>,
    /// The shape bulk bodies must have.
    pub body_format: BodyFormat,
}

/// The shape of a bulk request's body the fake takes; the other one is refused with a 400, as
/// Qobra refuses a malformed body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyFormat {
    /// `{"data": [records]}`, the shape of Qobra's other v1 bulk endpoints.
    #[default]
    Data,
    /// A bare JSON array of records.
    Array,
}

impl BodyFormat {
    /// The format's name (`data`, `array`).
    pub fn name(self) -> &'static str {
        match self {
            BodyFormat::Data => "data",
            BodyFormat::Array => "array",
        }
    }

    /// The format named `name`.
    pub fn from_name(name: &str) -> Option<BodyFormat> {
        [BodyFormat::Data, BodyFormat::Array]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

/// The settings in force.
pub struct Settings {
    initial: Initial,
    latency_ms: AtomicU64,
    max_body_bytes: AtomicU64,
    /// 0 = data, 1 = array.
    body_format: AtomicU64,
}

impl Settings {
    /// Settings as given at start.
    pub fn new(initial: Initial) -> Settings {
        let settings = Settings {
            initial,
            latency_ms: AtomicU64::new(0),
            max_body_bytes: AtomicU64::new(NO_LIMIT),
            body_format: AtomicU64::new(0),
        };
        settings.reset();
        settings
    }

    /// Back to the settings the server started with.
    pub fn reset(&self) {
        let ms = u64::try_from(self.initial.latency.as_millis()).unwrap_or(u64::MAX);
        self.latency_ms.store(ms, Ordering::Relaxed);
        self.max_body_bytes.store(
            self.initial.max_body_bytes.unwrap_or(NO_LIMIT),
            Ordering::Relaxed,
        );
        self.set_body_format(self.initial.body_format);
    }

    /// The shape bulk bodies must have now.
    pub fn body_format(&self) -> BodyFormat {
        match self.body_format.load(Ordering::Relaxed) {
            0 => BodyFormat::Data,
            _ => BodyFormat::Array,
        }
    }

    /// Sets the shape bulk bodies must have.
    fn set_body_format(&self, format: BodyFormat) {
        let n = match format {
            BodyFormat::Data => 0,
            BodyFormat::Array => 1,
        };
        self.body_format.store(n, Ordering::Relaxed);
    }

    /// How long after its arrival a public request is answered.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }

    /// The largest bulk body answered normally, if there is a limit.
    pub fn max_body_bytes(&self) -> Option<u64> {
        match self.max_body_bytes.load(Ordering::Relaxed) {
            NO_LIMIT => None,
            n => Some(n),
        }
    }

    /// The settings as JSON: `{"latency_ms": N, "max_body_bytes": M | null, "body_format":
    /// "data" | "array"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "latency_ms": self.latency_ms.load(Ordering::Relaxed),
            "max_body_bytes": self.max_body_bytes(),
            "body_format": self.body_format().name(),
        })
    }

    /// Applies `{"latency_ms": N, "max_body_bytes": M | null, "body_format": "data" |
    /// "array"}` (any key may be left out; a null limit removes it). Nothing changes when any
    /// part is invalid.
    pub fn update(&self, doc: &Value) -> Result<(), String> {
        let obj = doc.as_object().ok_or("settings must be a JSON object")?;
        let mut latency = None;
        let mut limit = None;
        let mut format = None;
        for (key, value) in obj {
            match key.as_str() {
                "latency_ms" => {
                    latency = Some(
                        value
                            .as_u64()
                            .ok_or("latency_ms must be a non-negative integer")?,
                    )
                }
                "max_body_bytes" => {
                    limit = Some(match value {
                        Value::Null => NO_LIMIT,
                        v => v
                            .as_u64()
                            .filter(|n| *n < NO_LIMIT)
                            .ok_or("max_body_bytes must be a non-negative integer or null")?,
                    })
                }
                "body_format" => {
                    format = Some(
                        value
                            .as_str()
                            .and_then(BodyFormat::from_name)
                            .ok_or("body_format must be \"data\" or \"array\"")?,
                    )
                }
                other => return Err(format!("unknown setting '{other}'")),
            }
        }
        if let Some(ms) = latency {
            self.latency_ms.store(ms, Ordering::Relaxed);
        }
        if let Some(n) = limit {
            self.max_body_bytes.store(n, Ordering::Relaxed);
        }
        if let Some(f) = format {
            self.set_body_format(f);
        }
        Ok(())
    }
}

/// Counters of what the server saw.
#[derive(Default)]
pub struct Stats(Arc<Counters>);

/// The counters themselves, shared with the guards of requests in flight.
#[derive(Default)]
struct Counters {
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    connections: AtomicU64,
    tls_handshake_failures: AtomicU64,
}

/// A public request in flight: counted from its arrival until its answer is sent or dropped.
pub struct InFlight(Arc<Counters>);

impl Stats {
    /// Counts a request in from its arrival; the guard counts it out when dropped.
    pub fn arrive(&self) -> InFlight {
        let now = self.0.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.0.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(Arc::clone(&self.0))
    }

    /// Counts an accepted connection.
    pub fn connected(&self) {
        self.0.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a TLS handshake that failed (the client refused the certificate, or spoke no TLS).
    pub fn tls_failed(&self) {
        self.0
            .tls_handshake_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets the past: the maximum becomes the requests in flight now, counts go to zero.
    pub fn reset(&self) {
        let c = &self.0;
        c.max_in_flight
            .store(c.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
        c.connections.store(0, Ordering::Relaxed);
        c.tls_handshake_failures.store(0, Ordering::Relaxed);
    }

    /// The counters as JSON.
    pub fn to_json(&self) -> Value {
        let c = &self.0;
        json!({
            "in_flight": c.in_flight.load(Ordering::Relaxed),
            "max_in_flight": c.max_in_flight.load(Ordering::Relaxed),
            "connections": c.connections.load(Ordering::Relaxed),
            "tls_handshake_failures": c.tls_handshake_failures.load(Ordering::Relaxed),
        })
    }
}

impl Drop for InFlight {
    /// The request is answered (or dropped): one fewer in flight.
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Updates are partial, all-or-nothing, and reset restores the start values.
    #[test]
    fn settings_update_and_reset() {
        let s = Settings::new(Initial {
            latency: Duration::from_millis(5),
            max_body_bytes: None,
            body_format: BodyFormat::Array,
        });
        assert_eq!(
            s.to_json(),
            json!({"latency_ms": 5, "max_body_bytes": null, "body_format": "array"})
        );
        s.update(&json!({"max_body_bytes": 100, "body_format": "data"}))
            .unwrap();
        assert_eq!(
            s.to_json(),
            json!({"latency_ms": 5, "max_body_bytes": 100, "body_format": "data"})
        );
        assert!(s.update(&json!({"body_format": "xml"})).is_err());
        assert!(s.update(&json!({"latency_ms": 9, "x": 1})).is_err());
        assert!(s.update(&json!({"latency_ms": -1})).is_err());
        assert!(s.update(&json!([1])).is_err());
        assert_eq!(s.latency(), Duration::from_millis(5), "nothing applied");
        s.update(&json!({"latency_ms": 7, "max_body_bytes": null}))
            .unwrap();
        assert_eq!((s.latency().as_millis(), s.max_body_bytes()), (7, None));
        s.reset();
        assert_eq!(
            s.to_json(),
            json!({"latency_ms": 5, "max_body_bytes": null, "body_format": "array"})
        );
    }

    /// The maximum in flight is the highest count seen; reset brings it to the current one.
    #[test]
    fn in_flight_high_water_mark() {
        let stats = Stats::default();
        let a = stats.arrive();
        let b = stats.arrive();
        drop(a);
        let c = stats.arrive();
        assert_eq!(stats.to_json()["max_in_flight"], 2);
        drop(b);
        assert_eq!(stats.to_json()["in_flight"], 1);
        stats.reset();
        assert_eq!(stats.to_json()["max_in_flight"], 1);
        drop(c);
        assert_eq!(stats.to_json()["in_flight"], 0);
    }
}
