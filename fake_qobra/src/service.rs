//! One request, from its head to its answer: fault injection, reading the body,
//! authentication, routing to the control or the public API, and the request log.
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
use crate::store::count_objects;
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
    /// The client went away in the middle of the body.
    Gone,
}

/// Handles one request: picks a fault, reads the body, then answers, delays, hangs,
/// resets or closes.
async fn handle(
    shared: Arc<Shared>,
    ending: Arc<Ending>,
    req: hyper::Request<Incoming>,
) -> Result<HttpResponse, NoAnswer> {
    let (parts, body) = req.into_parts();
    let mut entry = new_entry(&shared, &parts);
    let fault = shared.faults.check(parts.method.as_str(), parts.uri.path());
    entry.fault = fault.as_ref().map(|a| a.name().to_string());
    let body = match &fault {
        Some(Action::Reset { read_body: false } | Action::Close { read_body: false }) => Vec::new(),
        _ => match read_body(body).await {
            Ok(b) => b,
            Err(BodyError::Refused(status, msg)) => {
                return Ok(answer(&shared, entry, Response::detail(status, msg)));
            }
            Err(BodyError::Gone) => {
                finish(&shared, entry);
                return Err(NoAnswer("the client went away"));
            }
        },
    };
    entry.body_bytes = body.len();
    // Handled bulk requests are counted by their handler; faulted ones here.
    let faulted = fault
        .as_ref()
        .is_some_and(|a| !matches!(a, Action::Delay(_)));
    if faulted && parts.uri.path().ends_with("/records/bulk") {
        entry.records = count_objects(&body).ok();
    }
    let req = Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
    };
    match fault {
        Some(Action::Reset { .. }) => {
            finish(&shared, entry);
            ending.reset();
            Err(NoAnswer("reset fault"))
        }
        Some(Action::Close { .. }) => {
            finish(&shared, entry);
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
            &shared,
            entry,
            Response {
                status,
                headers,
                body,
            },
        )),
        Some(Action::Delay(d)) => {
            tokio::select! {
                biased;
                _ = shared.stopped() => {
                    finish(&shared, entry);
                    return Err(NoAnswer("the server is stopping"));
                }
                _ = tokio::time::sleep(d) => {}
            }
            Ok(dispatch(shared, req, entry).await)
        }
        None => Ok(dispatch(shared, req, entry).await),
    }
}

/// Reads a whole request body; refuses one larger than `MAX_BODY`.
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, BodyError> {
    let too_large = || BodyError::Refused(413, "Request body too large".into());
    let announced = body.size_hint().lower();
    if announced > MAX_BODY as u64 {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(announced.min(PREALLOCATE) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_error)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_BODY {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
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
    if req.path == "/_fake" || req.path.starts_with("/_fake/") {
        return (crate::control::handle(shared, req), None);
    }
    if !key_valid {
        return (Response::detail(401, "Invalid API key"), None);
    }
    crate::api::handle(&shared.store, req)
}

/// Turns a response into what hyper sends; the entry is logged once the body is sent
/// (or dropped with the connection).
fn answer(shared: &Arc<Shared>, mut entry: Entry, resp: Response) -> HttpResponse {
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    entry.status = Some(status.as_u16());
    let shared = Arc::clone(shared);
    let body = Answer::full(resp.body).on_end(move || finish(&shared, entry));
    let mut out = hyper::Response::new(body);
    *out.status_mut() = status;
    let headers = out.headers_mut();
    for (name, value) in resp.headers {
        // Fault rules are checked when set; the handlers only send valid headers.
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(n, v);
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
