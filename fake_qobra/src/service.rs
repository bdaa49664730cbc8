//! One request, from its head to its answer: fault injection, reading the body (as it
//! arrives, within the body limit), authentication, routing to the control or the public
//! API, the latency setting, the count of requests in flight, and the request log.
//!
//! Each request runs in a task of its own, so that, as with a thread per connection,
//! a request whose body has been read is handled to the end even when its client
//! gives up meanwhile (a delayed bulk push is still queued and logged). The handlers
//! themselves are blocking code (locks, JSON parsing, a flush that waits for imports)
//! and run on tokio's blocking pool.

use crate::body::Answer;
use crate::clock::now_rfc3339;
use crate::faults::Action;
use crate::message::{Request, Response, MAX_BODY};
use crate::reqlog::Entry;
use crate::socket::Ending;
use crate::state::Shared;
use crate::store::records_of;
use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use std::fmt;
use std::io;
use std::sync::Arc;

/// What the service gives hyper to send.
pub type HttpResponse = hyper::Response<Answer>;

/// At most this much is reserved up front for a body, whatever its `Content-Length`.
const PREALLOCATE: u64 = 64 * 1024 * 1024;

/// Why a request gets no answer: the service fails, so hyper drops the connection
/// without writing anything (the socket then ends as `Ending` says).
#[derive(Debug)]
pub struct NoAnswer(&'static str);

impl fmt::Display for NoAnswer {
    /// The reason, for hyper's error value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NoAnswer {}

/// The service of a connection: handles one request in a task of its own.
pub async fn serve(
    shared: Arc<Shared>,
    ending: Arc<Ending>,
    req: hyper::Request<Incoming>,
) -> Result<HttpResponse, NoAnswer> {
    match tokio::spawn(handle(shared, ending, req)).await {
        Ok(result) => result,
        Err(_) => Err(NoAnswer("the request's task failed")),
    }
}

/// Why a body could not be read.
enum BodyError {
    /// Answer with this status and message (malformed or too large).
    Refused(u16, String),
    /// Larger than the `max_body_bytes` setting: read to its end (`received` bytes) but not kept.
    OverLimit { received: usize, limit: u64 },
    /// The client went away in the middle of the body.
    Gone,
}

/// Whether a path is the control API's (never delayed by the latency setting nor counted
/// in flight).
fn is_control(path: &str) -> bool {
    path == "/_fake" || path.starts_with("/_fake/")
}

/// Handles one request: counts it in flight and answers it no sooner than the latency
/// setting says after its arrival (public API only); [`respond`] does the rest.
async fn handle(
    shared: Arc<Shared>,
    ending: Arc<Ending>,
    req: hyper::Request<Incoming>,
) -> Result<HttpResponse, NoAnswer> {
    let arrived = tokio::time::Instant::now();
    if is_control(req.uri().path()) {
        return respond(&shared, ending, req).await;
    }
    let flight = shared.stats.arrive();
    let answer = respond(&shared, ending, req).await?;
    let latency = shared.settings.latency();
    if !latency.is_zero() {
        tokio::select! {
            biased;
            // The answer is dropped: its log entry is written by its end hook.
            _ = shared.stopped() => return Err(NoAnswer("the server is stopping")),
            _ = tokio::time::sleep_until(arrived + latency) => {}
        }
    }
    Ok(answer.map(|body| body.on_end(move || drop(flight))))
}

/// Answers one request: picks a fault, reads the body (as it arrives), then answers,
/// delays, hangs, resets or closes.
async fn respond(
    shared: &Arc<Shared>,
    ending: Arc<Ending>,
    req: hyper::Request<Incoming>,
) -> Result<HttpResponse, NoAnswer> {
    let (parts, body) = req.into_parts();
    let mut entry = new_entry(shared, &parts);
    let fault = shared.faults.check(parts.method.as_str(), parts.uri.path());
    entry.fault = fault.as_ref().map(|a| a.name().to_string());
    let handled = matches!(fault, None | Some(Action::Delay(_)));
    let is_bulk = parts.method == http::Method::POST && parts.uri.path().ends_with("/records/bulk");
    let limit = if handled && is_bulk {
        shared.settings.max_body_bytes()
    } else {
        None
    };
    let (mut entry, body) = match receive(shared, &fault, body, limit, entry).await {
        Ok(received) => received,
        Err(early) => return early,
    };
    entry.body_bytes = body.len();
    // Handled bulk requests are counted by their handler; faulted ones here.
    if !handled && is_bulk {
        entry.records = records_of(&body, shared.settings.body_format())
            .ok()
            .map(|(_, n)| n);
    }
    let req = Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
    };
    act(shared, ending, fault, req, entry).await
}

/// Reads the body, unless the fault cuts the connection before it; when it cannot be read
/// (refused, over the limit, the client gone), what to answer at once.
async fn receive(
    shared: &Arc<Shared>,
    fault: &Option<Action>,
    body: Incoming,
    limit: Option<u64>,
    mut entry: Entry,
) -> Result<(Entry, Vec<u8>), Result<HttpResponse, NoAnswer>> {
    if let Some(Action::Reset { read_body: false } | Action::Close { read_body: false }) = fault {
        return Ok((entry, Vec::new()));
    }
    match read_body(body, limit).await {
        Ok(b) => Ok((entry, b)),
        Err(BodyError::Refused(status, msg)) => {
            Err(Ok(answer(shared, entry, Response::detail(status, msg))))
        }
        Err(BodyError::OverLimit { received, limit }) => {
            entry.body_bytes = received;
            let msg = format!(
                "Request body of {received} bytes is larger than the limit of {limit} bytes"
            );
            Err(Ok(answer(shared, entry, Response::detail(413, msg))))
        }
        Err(BodyError::Gone) => {
            finish(shared, entry);
            Err(Err(NoAnswer("the client went away")))
        }
    }
}

/// Does what the fault says with a request whose body was read: resets, closes, hangs,
/// answers as scripted, or (no fault, or a delay first) lets the API answer.
async fn act(
    shared: &Arc<Shared>,
    ending: Arc<Ending>,
    fault: Option<Action>,
    req: Request,
    entry: Entry,
) -> Result<HttpResponse, NoAnswer> {
    match fault {
        Some(Action::Reset { .. }) => {
            finish(shared, entry);
            ending.reset();
            Err(NoAnswer("reset fault"))
        }
        Some(Action::Close { .. }) => {
            finish(shared, entry);
            ending.close();
            Err(NoAnswer("close fault"))
        }
        Some(Action::Hang) => {
            shared.log.push(entry);
            ending.hang(shared.stopped());
            Err(NoAnswer("hang fault"))
        }
        Some(Action::Respond {
            status,
            headers,
            body,
        }) => Ok(answer(
            shared,
            entry,
            Response {
                status,
                headers,
                body,
            },
        )),
        Some(Action::Drip {
            status,
            body_bytes,
            bytes_per_second,
            content_length,
        }) => {
            let body = Answer::generated(body_bytes, Some(bytes_per_second), content_length);
            Ok(answer_with(shared, entry, status, json_type(), body))
        }
        Some(Action::Huge {
            status,
            bytes,
            content_length,
        }) => {
            let body = Answer::generated(bytes, None, content_length);
            Ok(answer_with(shared, entry, status, json_type(), body))
        }
        Some(Action::Delay(d)) => {
            tokio::select! {
                biased;
                _ = shared.stopped() => {
                    finish(shared, entry);
                    return Err(NoAnswer("the server is stopping"));
                }
                _ = tokio::time::sleep(d) => {}
            }
            Ok(dispatch(Arc::clone(shared), req, entry).await)
        }
        None => Ok(dispatch(Arc::clone(shared), req, entry).await),
    }
}

/// The headers of a generated JSON answer.
fn json_type() -> Vec<(String, String)> {
    vec![("Content-Type".into(), "application/json".into())]
}

/// Reads a whole request body as it arrives; refuses one larger than `MAX_BODY`. A body
/// larger than `limit` is read to its end but not kept (so that its client, still sending,
/// gets the answer rather than a reset).
async fn read_body(mut body: Incoming, limit: Option<u64>) -> Result<Vec<u8>, BodyError> {
    let too_large = || BodyError::Refused(413, "Request body too large".into());
    let announced = body.size_hint().lower();
    if announced > MAX_BODY as u64 {
        return Err(too_large());
    }
    let keep = limit.unwrap_or(u64::MAX);
    let mut out = Vec::with_capacity(announced.min(PREALLOCATE).min(keep) as usize);
    let mut received: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_error)?;
        if let Ok(data) = frame.into_data() {
            if received + data.len() > MAX_BODY {
                return Err(too_large());
            }
            received += data.len();
            if received as u64 > keep {
                out = Vec::new();
            } else {
                out.extend_from_slice(&data);
            }
        }
    }
    match limit {
        Some(limit) if received as u64 > limit => Err(BodyError::OverLimit { received, limit }),
        _ => Ok(out),
    }
}

/// Tells a malformed body (answered 400) from a client that went away.
fn body_error(e: hyper::Error) -> BodyError {
    let io = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>());
    match io {
        Some(io)
            if matches!(
                io.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
            ) =>
        {
            BodyError::Refused(400, format!("Malformed request body: {io}"))
        }
        _ => BodyError::Gone,
    }
}

/// Runs the handler on the blocking pool and answers with its response.
async fn dispatch(shared: Arc<Shared>, req: Request, mut entry: Entry) -> HttpResponse {
    let key_valid = entry.api_key_valid;
    let s = Arc::clone(&shared);
    let routed = tokio::task::spawn_blocking(move || route(&s, req, key_valid)).await;
    let (resp, records) =
        routed.unwrap_or_else(|_| (Response::detail(500, "The handler failed"), None));
    entry.records = entry.records.or(records);
    answer(&shared, entry, resp)
}

/// Routes a request: the control API, or authentication then the public API.
/// Also returns the number of records pushed, if any.
fn route(shared: &Shared, req: Request, key_valid: bool) -> (Response, Option<usize>) {
    if is_control(&req.path) {
        return (crate::control::handle(shared, req), None);
    }
    if !key_valid {
        return (Response::detail(401, "Invalid API key"), None);
    }
    crate::api::handle(&shared.store, shared.settings.body_format(), req)
}

/// Turns a response into what hyper sends; the entry is logged once the body is sent
/// (or dropped with the connection).
fn answer(shared: &Arc<Shared>, entry: Entry, resp: Response) -> HttpResponse {
    let body = Answer::full(resp.body);
    answer_with(shared, entry, resp.status, resp.headers, body)
}

/// An answer of this status, headers and body; the entry is logged once the body is sent
/// (or dropped with the connection).
fn answer_with(
    shared: &Arc<Shared>,
    mut entry: Entry,
    status: u16,
    headers: Vec<(String, String)>,
    body: Answer,
) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    entry.status = Some(status.as_u16());
    let shared = Arc::clone(shared);
    let body = body.on_end(move || finish(&shared, entry));
    let mut out = hyper::Response::new(body);
    *out.status_mut() = status;
    let map = out.headers_mut();
    for (name, value) in headers {
        // Fault rules are checked when set; the handlers only send valid headers.
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            map.append(n, v);
        }
    }
    out
}

/// A log entry for a request whose head has just been read.
fn new_entry(shared: &Shared, parts: &http::request::Parts) -> Entry {
    let key = parts.headers.get("X-API-Key").map(HeaderValue::as_bytes);
    Entry {
        seq: 0,
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        api_key_present: key.is_some(),
        api_key_valid: shared.key_matches(key),
        body_bytes: 0,
        records: None,
        status: None,
        fault: None,
        received_at: now_rfc3339(),
        finished_at: None,
    }
}

/// Stamps the entry's end time and appends it to the log.
fn finish(shared: &Shared, mut entry: Entry) {
    entry.finished_at = Some(now_rfc3339());
    shared.log.push(entry);
}
