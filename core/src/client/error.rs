//! Why a request to Qobra failed ([`PushError`]), and how that becomes the extension's error.

use crate::error::{Error, SqlState};
use crate::names::{
    function::{CSV_TEMPLATE, PREVIEW, SET_DESTINATION},
    setting::{BATCH_BYTES, BATCH_ROWS, CA_FILE, HTTPS_PROXY, HTTP_TIMEOUT_MS, MAX_RETRIES},
};
use crate::retry::TransportKind;

/// Why a request to Qobra failed. Every text in it is free of the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The `interrupted` callback said stop (query cancel, shutdown); the request was dropped.
    #[error("the push was interrupted")]
    Interrupted,
    /// 401 or 403.
    #[error("Qobra rejected the API key ({request}: HTTP {})", status_text(*.status))]
    KeyRejected {
        request: String,
        status: u16,
        excerpt: String,
    },
    /// A 3xx answer, not followed. `location` is the target without query, fragment or user info.
    #[error("Qobra answered {request} with a redirect (HTTP {}), which is not followed", status_text(*.status))]
    Redirected {
        request: String,
        status: u16,
        location: Option<String>,
    },
    /// Any other 4xx (or unexpected status): the request itself was refused.
    #[error("Qobra refused {request}: HTTP {}", status_text(*.status))]
    Refused {
        request: String,
        status: u16,
        excerpt: String,
    },
    /// 413: the body is larger than Qobra takes. Not retried: the caller may split the chunk.
    #[error("Qobra refused {request} as too large (HTTP 413 Payload Too Large)")]
    TooLarge { request: String, excerpt: String },
    /// Qobra's certificate could not be verified (self-signed, unknown CA, wrong host name,
    /// expired…). Not retried; the handshake failed, so the key was never sent. `message` says
    /// what is wrong with the certificate in plain words.
    #[error("{request} failed: Qobra's certificate was refused: {message}")]
    Tls { request: String, message: String },
    /// The proxy would not open a tunnel to Qobra (it answered CONNECT with something else
    /// than 200). Not retried. `proxy` is its address, without credentials.
    #[error("{request} failed: the proxy {proxy} refused the tunnel: {message}")]
    ProxyRefused {
        request: String,
        proxy: String,
        message: String,
    },
    /// A 2xx answer larger than [`BODY_LIMIT`]: read no further, retried like a 5xx.
    #[error("{request} failed: the answer (HTTP {}) is larger than {limit} bytes", status_text(*.status))]
    AnswerTooLarge {
        request: String,
        status: u16,
        limit: usize,
    },
    /// 408, 429 or 5xx (retryable).
    #[error("{request} failed with HTTP {}", status_text(*.status))]
    Server {
        request: String,
        status: u16,
        excerpt: String,
    },
    /// A failure below HTTP (retryable).
    #[error("{request} failed: {kind}: {message}")]
    Transport {
        request: String,
        kind: TransportKind,
        message: String,
    },
    /// Retryable failures until the retry budget ran out; `last` is the last one.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: Box<PushError> },
    /// A 2xx answer we cannot read.
    #[error("unexpected answer from Qobra to {request}: {message}")]
    Protocol { request: String, message: String },
}

impl PushError {
    /// Whether a new attempt may succeed (408/429/5xx, answers too large, and transport
    /// failures).
    pub fn is_retryable(&self) -> bool {
        match self {
            PushError::Server { .. } | PushError::AnswerTooLarge { .. } => true,
            PushError::Transport { kind, .. } => kind.is_retryable(),
            _ => false,
        }
    }

    /// Whether Qobra says what was asked for does not exist (404 or 410): an import it does
    /// not know now will not be known later.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            PushError::Refused {
                status: 404 | 410,
                ..
            }
        )
    }

    /// Whether Qobra may have taken the request although it failed: it answered 2xx in a way
    /// we could not read, or the answer never came (an interrupt, a timeout, a connection cut
    /// or broken after the request went). An HTTP error status, a refused certificate or
    /// tunnel, or a connection never made prove it did not.
    pub fn may_have_been_applied(&self) -> bool {
        match self {
            PushError::Interrupted
            | PushError::Protocol { .. }
            | PushError::AnswerTooLarge { .. } => true,
            PushError::Transport { kind, .. } => *kind != TransportKind::Connect,
            PushError::GaveUp { last, .. } => last.may_have_been_applied(),
            PushError::KeyRejected { .. }
            | PushError::Redirected { .. }
            | PushError::Refused { .. }
            | PushError::TooLarge { .. }
            | PushError::Tls { .. }
            | PushError::ProxyRefused { .. }
            | PushError::Server { .. } => false,
        }
    }

    /// Whether restarting the whole push may succeed: only after retries ran out on failures
    /// that may be transient. A rejected key, a refused body or an interrupt would fail again.
    pub fn is_transient(&self) -> bool {
        matches!(self, PushError::GaveUp { .. }) || self.is_retryable()
    }

    /// Whether the receiver refused the body as too large (HTTP 413): a smaller one may pass.
    pub fn is_too_large(&self) -> bool {
        matches!(self, PushError::TooLarge { .. })
    }

    /// Whether the failure must stop a push at once, dropping what else is on its way: a
    /// rejected key fails every request alike, and an interrupt must not wait on Qobra.
    pub fn stops_at_once(&self) -> bool {
        matches!(self, PushError::KeyRejected { .. } | PushError::Interrupted)
    }
}

/// `401 Unauthorized`, or just `401` for a code without a standard reason.
pub(super) fn status_text(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

impl From<PushError> for Error {
    /// The user-facing error: SQLSTATE class, message, detail and hint.
    fn from(e: PushError) -> Error {
        match e {
            PushError::Interrupted => interrupted(),
            PushError::KeyRejected {
                request,
                status,
                excerpt,
            } => key_rejected(&request, status, &excerpt),
            PushError::Redirected {
                request,
                status,
                location,
            } => redirected(&request, status, location.as_deref()),
            PushError::Refused {
                request,
                status,
                excerpt,
            } => refused(&request, status, &excerpt),
            PushError::TooLarge { request, excerpt } => too_large(&request, &excerpt),
            PushError::Tls { request, message } => tls(&request, message),
            PushError::ProxyRefused {
                request,
                proxy,
                message,
            } => proxy_refused(&request, &proxy, message),
            PushError::AnswerTooLarge {
                request,
                status,
                limit,
            } => answer_too_large(&request, status, limit),
            PushError::Server {
                request,
                status,
                excerpt,
            } => Error::new(
                SqlState::ExternalFailure,
                format!("{request} failed with HTTP {}", status_text(status)),
            )
            .detail(format!("Qobra answered: {excerpt}")),
            PushError::Transport {
                request,
                kind,
                message,
            } => Error::new(
                SqlState::ExternalFailure,
                format!("{request} failed: {kind}"),
            )
            .detail(message),
            PushError::GaveUp { attempts, last } => gave_up(attempts, *last),
            PushError::Protocol { request, message } => Error::new(
                SqlState::ExternalFailure,
                format!("unexpected answer from Qobra to {request}"),
            )
            .detail(message)
            .hint(destination_hint()),
        }
    }
}

/// The hint of every failure that suggests the address is not Qobra's API.
fn destination_hint() -> String {
    format!("Check base_url given to {SET_DESTINATION}(): it must be Qobra's API address, such as https://api.qobra.co.")
}

/// A cancel or a shutdown stopped the wait for Qobra.
fn interrupted() -> Error {
    Error::new(SqlState::ExternalFailure, "push to Qobra interrupted")
        .detail("The query was canceled or the server is shutting down while waiting for Qobra.")
}

/// 401 or 403: the key is wrong or revoked.
fn key_rejected(request: &str, status: u16, excerpt: &str) -> Error {
    Error::new(
        SqlState::InsufficientPrivilege,
        format!("Qobra rejected the API key (HTTP {})", status_text(status)),
    )
    .detail(format!("{request} was answered: {excerpt}"))
    .hint(
        format!("Check the key given to {SET_DESTINATION}(); a Qobra admin creates API keys in Qobra's global settings."),
    )
}

/// A redirect, which is never followed (it would carry the key elsewhere).
fn redirected(request: &str, status: u16, location: Option<&str>) -> Error {
    Error::new(
        SqlState::ExternalFailure,
        format!(
            "Qobra answered {request} with a redirect (HTTP {}); redirects are not followed",
            status_text(status)
        ),
    )
    .detail(match location {
        Some(l) => format!("The redirect points to {l} (query omitted)."),
        None => "The redirect has no usable Location.".to_owned(),
    })
    .hint(destination_hint())
}

/// Another 4xx: a missing data table (404) or records Qobra does not take.
fn refused(request: &str, status: u16, excerpt: &str) -> Error {
    Error::new(
        SqlState::ExternalFailure,
        format!("Qobra refused {request} (HTTP {})", status_text(status)),
    )
    .detail(format!("Qobra answered: {excerpt}"))
    .hint(match status {
        404 => format!("Check that the data table exists in Qobra under this API name: an admin creates it once by importing a CSV (see {CSV_TEMPLATE}())."),
        _ => format!("Compare the records ({PREVIEW}()) with the data table's field API names and types in Qobra."),
    })
}

/// 413 even for the smallest body the push could make.
fn too_large(request: &str, excerpt: &str) -> Error {
    Error::new(
        SqlState::ExternalFailure,
        format!("Qobra refused {request} as too large (HTTP 413 Payload Too Large)"),
    )
    .detail(format!("Qobra answered: {excerpt}"))
    .hint(format!(
        "Lower {BATCH_BYTES} or {BATCH_ROWS} so that each request is smaller."
    ))
}

/// A certificate that could not be verified: nothing, the key included, was sent.
fn tls(request: &str, message: String) -> Error {
    Error::new(
        SqlState::ExternalFailure,
        format!("{request} failed: Qobra's TLS certificate could not be verified"),
    )
    .detail(format!("{message}. The request was not sent (nor the API key)."))
    .hint(format!("Check base_url given to {SET_DESTINATION}(). If a company proxy inspects TLS, give its CA certificate to {CA_FILE}."))
}

/// The proxy refused CONNECT.
fn proxy_refused(request: &str, proxy: &str, message: String) -> Error {
    Error::new(
        SqlState::ExternalFailure,
        format!("{request} failed: the proxy {proxy} refused to open a tunnel to Qobra"),
    )
    .detail(message)
    .hint(format!("Check {HTTPS_PROXY}, and ask the proxy's administrators to allow CONNECT to Qobra's API host on port 443."))
}

/// An answer larger than anything Qobra sends.
fn answer_too_large(request: &str, status: u16, limit: usize) -> Error {
    Error::new(
        SqlState::ExternalFailure,
        format!("{request} failed: the answer is larger than {limit} bytes"),
    )
    .detail(format!(
        "Qobra answered HTTP {} with a body that was not read beyond {limit} bytes.",
        status_text(status)
    ))
    .hint(destination_hint())
}

/// The retries ran out: the last failure says why.
fn gave_up(attempts: u32, last: PushError) -> Error {
    let last = Error::from(last);
    let detail = match last.detail {
        Some(d) => format!("Last failure: {}. {d}", last.message),
        None => format!("Last failure: {}.", last.message),
    };
    Error::new(
        SqlState::ExternalFailure,
        format!("Qobra did not accept the request after {attempts} attempts"),
    )
    .detail(detail)
    .hint(format!("Qobra or the network may be down or slow (see {HTTP_TIMEOUT_MS} and {MAX_RETRIES}); the next scheduled run tries again."))
}
