//! Fault injection: rules that make chosen requests fail in chosen ways.
//!
//! Each rule counts the requests it matches (by method and path prefix) from the
//! moment it is set. It applies to matching requests number `nth` to
//! `nth + times - 1` (`times = 0`: forever) and is dropped once spent. When
//! several rules apply to one request, the first one listed wins.

use serde_json::{json, Map, Value};
use std::sync::Mutex;
use std::time::Duration;

/// What happens to a faulted request.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer with this status, headers and body; the request is not handled.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Wait, then handle the request normally.
    Delay(Duration),
    /// Never answer; keep the socket open until the client or the server gives up.
    Hang,
    /// Close the connection with a TCP reset; `read_body: false` resets before reading the body.
    Reset { read_body: bool },
    /// Close the connection without answering.
    Close { read_body: bool },
    /// Answer with this status and a generated body of `body_bytes`, sent at
    /// `bytes_per_second`.
    Drip {
        status: u16,
        body_bytes: u64,
        bytes_per_second: u64,
        content_length: bool,
    },
    /// Answer with this status and a generated body of `bytes`, sent as fast as the client
    /// reads it, never held in memory.
    Huge {
        status: u16,
        bytes: u64,
        content_length: bool,
    },
}

impl Action {
    /// A short name for the request log.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Respond { .. } => "status",
            Action::Delay(_) => "delay",
            Action::Hang => "hang",
            Action::Reset { .. } => "reset",
            Action::Close { .. } => "close",
            Action::Drip { .. } => "drip",
            Action::Huge { .. } => "huge",
        }
    }

    /// A scripted answer: `status`, with `headers` and `body` (a JSON value, or a string sent as
    /// it is); JSON unless the body is a string that does not parse, or a Content-Type is given.
    fn respond(obj: &Map<String, Value>, status: u16) -> Result<Action, String> {
        let mut headers = Vec::new();
        if let Some(h) = obj.get("headers") {
            for (k, v) in h.as_object().ok_or("headers must be an object")? {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || http::HeaderValue::from_str(&value).is_err()
                {
                    return Err(format!("invalid header '{k}'"));
                }
                headers.push((k.clone(), value));
            }
        }
        let (body, is_json) = match obj.get("body") {
            None | Some(Value::Null) => (
                json!({"detail": format!("Injected fault {status}")}).to_string(),
                true,
            ),
            Some(Value::String(s)) => (s.clone(), serde_json::from_str::<Value>(s).is_ok()),
            Some(other) => (other.to_string(), true),
        };
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("Content-Type"))
        {
            let ct = if is_json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            headers.push(("Content-Type".into(), ct.into()));
        }
        Ok(Action::Respond {
            status,
            headers,
            body: body.into_bytes(),
        })
    }

    /// Parses an action object such as `{"status": 429, "headers": {"Retry-After": "2"}}`.
    fn parse(v: &Value) -> Result<Action, String> {
        let obj = v.as_object().ok_or("action must be an object")?;
        let flag = |name: &str| obj.get(name).and_then(Value::as_bool).unwrap_or(false);
        let read_body = obj
            .get("read_body")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if let Some(status) = obj.get("status") {
            return Action::respond(obj, answer_status(status)?);
        }
        if let Some(ms) = obj.get("delay_ms") {
            let ms = ms
                .as_u64()
                .ok_or("delay_ms must be a non-negative integer")?;
            return Ok(Action::Delay(Duration::from_millis(ms)));
        }
        if flag("hang") {
            return Ok(Action::Hang);
        }
        if flag("reset") {
            return Ok(Action::Reset { read_body });
        }
        if flag("close") {
            return Ok(Action::Close { read_body });
        }
        if let Some(drip) = obj.get("drip") {
            let d = Generated::parse(drip, "drip", "body_bytes")?;
            let bytes_per_second = d
                .obj
                .get("bytes_per_second")
                .and_then(Value::as_u64)
                .filter(|r| *r > 0)
                .ok_or("drip.bytes_per_second must be a positive integer")?;
            return Ok(Action::Drip {
                status: d.status,
                body_bytes: d.bytes,
                bytes_per_second,
                content_length: d.content_length,
            });
        }
        if let Some(huge) = obj.get("huge") {
            let h = Generated::parse(huge, "huge", "bytes")?;
            return Ok(Action::Huge {
                status: h.status,
                bytes: h.bytes,
                content_length: h.content_length,
            });
        }
        Err("action needs one of: status, delay_ms, hang, reset, close, drip, huge".into())
    }
}

/// The status of an answer a rule makes: 200 to 999. A 1xx status is informational: it
/// cannot end an answer, so HTTP has no way to send one as the answer to a request.
fn answer_status(v: &Value) -> Result<u16, String> {
    v.as_u64()
        .filter(|s| (200..=999).contains(s))
        .map(|s| s as u16)
        .ok_or_else(|| "status must be an integer between 200 and 999".into())
}

/// The common part of `drip` and `huge`: status (default 200), length, and whether it is
/// announced by `Content-Length` (`content_length`, default true) or sent chunked.
struct Generated<'a> {
    obj: &'a Map<String, Value>,
    status: u16,
    bytes: u64,
    content_length: bool,
}

impl<'a> Generated<'a> {
    /// Parses `{"status": 200, "<length>": N, "content_length": true}` of action `name`.
    fn parse(v: &'a Value, name: &str, length: &str) -> Result<Generated<'a>, String> {
        let obj = v.as_object().ok_or(format!("{name} must be an object"))?;
        let status = match obj.get("status") {
            None => 200,
            Some(s) => answer_status(s).map_err(|e| format!("{name}.{e}"))?,
        };
        let bytes = obj
            .get(length)
            .and_then(Value::as_u64)
            .ok_or(format!("{name}.{length} must be a non-negative integer"))?;
        let content_length = match obj.get("content_length") {
            None => true,
            Some(b) => b
                .as_bool()
                .ok_or(format!("{name}.content_length must be true or false"))?,
        };
        Ok(Generated {
            obj,
            status,
            bytes,
            content_length,
        })
    }
}

/// One fault rule and how many requests it has matched so far.
#[derive(Debug)]
struct Rule {
    /// The rule as it was given, for listing.
    spec: Value,
    path_prefix: String,
    method: Option<String>,
    nth: u64,
    times: u64,
    action: Action,
    matched: u64,
}

impl Rule {
    /// Parses one rule object.
    fn parse(v: &Value) -> Result<Rule, String> {
        let obj = v.as_object().ok_or("each rule must be an object")?;
        let path_prefix = match obj.get("path_prefix") {
            None => "/".to_string(),
            Some(p) => p
                .as_str()
                .ok_or("path_prefix must be a string")?
                .to_string(),
        };
        let method = match obj.get("method") {
            None | Some(Value::Null) => None,
            Some(m) => Some(
                m.as_str()
                    .ok_or("method must be a string")?
                    .to_ascii_uppercase(),
            ),
        };
        let count = |name: &str, default: u64| match obj.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(n) => n
                .as_u64()
                .ok_or(format!("{name} must be a non-negative integer")),
        };
        let nth = count("nth", 1)?;
        if nth == 0 {
            return Err("nth is 1-based".into());
        }
        let times = count("times", 1)?;
        let action = Action::parse(obj.get("action").ok_or("rule needs an action")?)?;
        Ok(Rule {
            spec: v.clone(),
            path_prefix,
            method,
            nth,
            times,
            action,
            matched: 0,
        })
    }

    /// Whether the rule concerns this request. Control paths are only matched
    /// by rules that name them explicitly.
    fn matches(&self, method: &str, path: &str) -> bool {
        if path.starts_with("/_fake/") && !self.path_prefix.starts_with("/_fake") {
            return false;
        }
        path.starts_with(&self.path_prefix)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }

    /// Whether the rule applies to its `matched`-th matching request.
    fn in_window(&self) -> bool {
        self.matched >= self.nth && (self.times == 0 || self.matched < self.nth + self.times)
    }

    /// Whether no future request can be faulted by this rule.
    fn spent(&self) -> bool {
        self.times != 0 && self.matched >= self.nth + self.times - 1
    }
}

/// The active fault rules.
#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
}

impl Faults {
    /// Adds rules from a JSON list (or a single rule object); all or none are added.
    pub fn add(&self, v: &Value) -> Result<usize, String> {
        let list = match v {
            Value::Array(items) => items
                .iter()
                .map(Rule::parse)
                .collect::<Result<Vec<_>, _>>()?,
            Value::Object(_) => vec![Rule::parse(v)?],
            _ => return Err("expected a JSON list of fault rules".into()),
        };
        let n = list.len();
        self.lock().extend(list);
        Ok(n)
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The remaining rules, each with how many requests it has matched.
    pub fn list(&self) -> Value {
        let rules = self.lock();
        Value::Array(
            rules
                .iter()
                .map(|r| {
                    let mut m: Map<String, Value> = r.spec.as_object().cloned().unwrap_or_default();
                    m.insert("matched".into(), json!(r.matched));
                    Value::Object(m)
                })
                .collect(),
        )
    }

    /// Counts this request against every matching rule and returns the action
    /// of the first rule that applies to it, if any.
    pub fn check(&self, method: &str, path: &str) -> Option<Action> {
        let mut rules = self.lock();
        let mut chosen = None;
        for rule in rules.iter_mut().filter(|r| r.matches(method, path)) {
            rule.matched += 1;
            if chosen.is_none() && rule.in_window() {
                chosen = Some(rule.action.clone());
            }
        }
        rules.retain(|r| !r.spent());
        chosen
    }

    /// Locks the rules, recovering from a panicked holder.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nth` and `times` pick which matching requests are faulted.
    #[test]
    fn nth_and_times_select_requests() {
        let f = Faults::default();
        f.add(
            &json!([{"path_prefix": "/v1/", "method": "post", "nth": 2, "times": 2,
                        "action": {"status": 500}}]),
        )
        .expect("add");
        let hits: Vec<bool> = (0..5).map(|_| f.check("POST", "/v1/x").is_some()).collect();
        assert_eq!(hits, [false, true, true, false, false]);
        assert_eq!(f.list(), json!([]));
    }

    /// `times: 0` lasts forever; method, prefix and control paths filter.
    #[test]
    fn forever_rules_and_filters() {
        let f = Faults::default();
        f.add(&json!({"path_prefix": "/v1/tables/", "times": 0, "action": {"hang": true}}))
            .expect("add");
        assert_eq!(f.check("GET", "/v1/imports/1"), None);
        assert_eq!(f.check("DELETE", "/_fake/faults"), None);
        for _ in 0..3 {
            assert_eq!(
                f.check("POST", "/v1/tables/t/records/bulk"),
                Some(Action::Hang)
            );
        }
        assert_eq!(f.list()[0]["matched"], json!(3));
    }

    /// When two rules apply, the first listed one acts.
    #[test]
    fn first_listed_rule_wins() {
        let f = Faults::default();
        f.add(&json!([{"action": {"delay_ms": 5}}, {"action": {"close": true}}]))
            .expect("add");
        assert_eq!(
            f.check("GET", "/x"),
            Some(Action::Delay(Duration::from_millis(5)))
        );
        assert_eq!(f.check("GET", "/x"), None);
    }

    /// Malformed rules are refused and none is added.
    #[test]
    fn rejects_bad_rules() {
        let f = Faults::default();
        assert!(f.add(&json!([{"action": {}}])).is_err());
        assert!(f
            .add(&json!([{"nth": 0, "action": {"hang": true}}]))
            .is_err());
        assert!(f.add(&json!([{"action": {"status": 42}}])).is_err());
        for bad in [
            json!({"drip": {"body_bytes": 10}}),
            json!({"drip": {"body_bytes": 10, "bytes_per_second": 0}}),
            json!({"drip": {"bytes_per_second": 5}}),
            json!({"drip": {"status": 100, "body_bytes": 1, "bytes_per_second": 5}}),
            json!({"huge": {"bytes": -1}}),
            json!({"huge": {"bytes": 1, "content_length": "no"}}),
            json!({"huge": 5}),
        ] {
            assert!(f.add(&json!({ "action": bad })).is_err(), "{bad}");
        }
        assert!(f.add(&json!([{"action": {"status": 100}}])).is_err());
        for headers in [
            json!({"Bad Name": "x"}),
            json!({"X-A:b": "x"}),
            json!({"X-A": "line\nbreak"}),
            json!({"X-A": "nul\u{0}"}),
        ] {
            let rule = json!([{"action": {"status": 500, "headers": headers}}]);
            assert!(f.add(&rule).is_err(), "{rule}");
        }
        f.add(&json!([{"action": {"status": 200, "headers": {"X-A": "café, \t tab"}}}]))
            .expect("any visible text, tabs and UTF-8 are valid header values");
        f.clear();
        assert!(f.add(&json!("x")).is_err());
        assert_eq!(f.list(), json!([]));
    }

    /// Drip and huge answers default to 200 with a Content-Length.
    #[test]
    fn generated_answers_parse() {
        assert_eq!(
            Action::parse(&json!({"drip": {"body_bytes": 10, "bytes_per_second": 5}})),
            Ok(Action::Drip {
                status: 200,
                body_bytes: 10,
                bytes_per_second: 5,
                content_length: true
            })
        );
        assert_eq!(
            Action::parse(
                &json!({"huge": {"status": 503, "bytes": 5_000_000_000u64, "content_length": false}})
            ),
            Ok(Action::Huge {
                status: 503,
                bytes: 5_000_000_000,
                content_length: false
            })
        );
    }

    /// A status action keeps its headers and gets a content type.
    #[test]
    fn respond_defaults() {
        let a = Action::parse(
            &json!({"status": 429, "headers": {"Retry-After": 2}, "body": "slow down"}),
        )
        .expect("parse");
        let Action::Respond {
            status,
            headers,
            body,
        } = a
        else {
            panic!("respond")
        };
        assert_eq!(status, 429);
        assert!(headers.contains(&("Retry-After".into(), "2".into())));
        assert!(headers.contains(&("Content-Type".into(), "text/plain; charset=utf-8".into())));
        assert_eq!(body, b"slow down");
    }
}
