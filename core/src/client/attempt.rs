//! One attempt at a request and its classification, and the retries around it: what
//! [`QobraClient`](super::QobraClient)'s thread runs for each request.

use super::*;
use crate::retry::{classify_status, StatusClass, TransportKind};
use crate::secret::Scrub;
use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder};
use std::sync::atomic::Ordering;
use std::time::SystemTime;
use url::Url;

/// An HTTP answer, read up to a size limit.
pub(super) struct Answer {
    status: u16,
    retry_after: Option<String>,
    location: Option<String>,
    body: Vec<u8>,
    truncated: bool,
}

impl Shared {
    /// One request that changes nothing, and what answered it (see [`QobraClient::probe`]).
    pub(super) async fn probe(&self, url: Url) -> Result<Probe, PushError> {
        // Named without its random id, so that messages about it read the same every time.
        let request = "GET /v1/imports/(an import that does not exist)".to_owned();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let builder = self.http.request(Method::GET, url.clone());
        match tokio::time::timeout(self.request_timeout, exchange(builder)).await {
            Err(_) => Err(self.timed_out(&request)),
            Ok(Err(e)) => match self.failure(&request, &url, e) {
                Failed::Final(failure) | Failed::Retry(failure) => Err(failure),
            },
            Ok(Ok(answer)) => Ok(Probe {
                status: answer.status,
                json: serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .is_ok_and(|v| v.is_object()),
                excerpt: excerpt(&answer.body, &self.secrets),
                location: self.location(&url, &answer),
            }),
        }
    }

    /// `{base}/{segments…}?{query}`, each segment percent-encoded.
    pub(super) fn endpoint(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// What a request that failed below HTTP becomes: a certificate problem or a proxy that
    /// refuses the tunnel fail at once; anything else is a transport failure, retried.
    pub(super) fn failure(&self, request: &str, url: &Url, e: reqwest::Error) -> Failed {
        if let Some(problem) = certificate_problem(&e, url) {
            return Failed::Final(PushError::Tls {
                request: request.to_owned(),
                message: self.secrets.scrub(&problem),
            });
        }
        let kind = transport_kind(&e);
        let chain = error_chain(&e.without_url());
        if let (Some(proxy), Some(why)) = (&self.proxy, tunnel_refusal(&chain)) {
            return Failed::Final(PushError::ProxyRefused {
                request: request.to_owned(),
                proxy: proxy.shown(),
                message: why,
            });
        }
        Failed::Retry(PushError::Transport {
            request: request.to_owned(),
            kind,
            message: self.secrets.scrub(&chain),
        })
    }

    /// Sends a request until it succeeds, fails for good, or the retry budget runs out. Returns
    /// the 2xx answer and the number of requests it took.
    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Bytes>,
    ) -> Result<(Success, u32), PushError> {
        // Only the path names the request in messages: the query is ours, but keep them short.
        let request = self.secrets.scrub(&format!("{method} {}", url.path()));
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let (failure, retry_after) = match self.attempt(&method, &url, &body, &request).await {
                Tried::Answered(success) => return Ok((success, attempts)),
                Tried::Final(failure) => return Err(failure),
                Tried::Retry(failure, retry_after) => (failure, retry_after),
            };
            if attempts > self.policy.max_retries {
                return Err(PushError::GaveUp {
                    attempts,
                    last: Box::new(failure),
                });
            }
            self.pause(attempts, retry_after.as_deref()).await;
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One attempt at a request, within the request timeout, and what it came to.
    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: &Option<Bytes>,
        request: &str,
    ) -> Tried {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut builder = self.http.request(method.clone(), url.clone());
        if let Some(body) = body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        match tokio::time::timeout(self.request_timeout, exchange(builder)).await {
            // The whole exchange, the answer's body included, took too long.
            Err(_) => Tried::Retry(self.timed_out(request), None),
            Ok(Err(e)) if e.is_builder() => Tried::Final(PushError::Protocol {
                request: request.to_owned(),
                message: self.secrets.scrub(&error_chain(&e.without_url())),
            }),
            Ok(Err(e)) => match self.failure(request, url, e) {
                Failed::Final(failure) => Tried::Final(failure),
                Failed::Retry(failure) => Tried::Retry(failure, None),
            },
            Ok(Ok(answer)) => self.judge(request, url, answer),
        }
    }

    /// What an HTTP answer means: success, a failure for good, or one worth another attempt.
    fn judge(&self, request: &str, url: &Url, answer: Answer) -> Tried {
        let request = request.to_owned();
        let excerpt = || excerpt(&answer.body, &self.secrets);
        let status = answer.status;
        match classify_status(status) {
            StatusClass::Success if answer.truncated => Tried::Retry(
                PushError::AnswerTooLarge {
                    request,
                    status,
                    limit: BODY_LIMIT,
                },
                None,
            ),
            StatusClass::Success => Tried::Answered(Success {
                path: self.secrets.scrub(url.path()),
                body: answer.body,
            }),
            StatusClass::KeyRejected => Tried::Final(PushError::KeyRejected {
                request,
                status,
                excerpt: excerpt(),
            }),
            StatusClass::Redirect => Tried::Final(PushError::Redirected {
                request,
                status,
                location: self.location(url, &answer),
            }),
            StatusClass::PayloadTooLarge => Tried::Final(PushError::TooLarge {
                request,
                excerpt: excerpt(),
            }),
            StatusClass::Fatal => Tried::Final(PushError::Refused {
                request,
                status,
                excerpt: excerpt(),
            }),
            StatusClass::Retryable => Tried::Retry(
                PushError::Server {
                    request,
                    status,
                    excerpt: excerpt(),
                },
                answer.retry_after,
            ),
        }
    }

    /// Where a redirect points, without query, fragment, user info or secrets.
    fn location(&self, url: &Url, answer: &Answer) -> Option<String> {
        answer
            .location
            .as_deref()
            .and_then(|l| describe_location(url, l))
            .map(|l| self.secrets.scrub(&l))
    }

    /// No complete answer within the request timeout.
    fn timed_out(&self, request: &str) -> PushError {
        PushError::Transport {
            request: request.to_owned(),
            kind: TransportKind::Timeout,
            message: format!(
                "no complete answer within {} ms",
                self.request_timeout.as_millis()
            ),
        }
    }

    /// Waits before the next attempt: backoff with jitter, or the server's `Retry-After`.
    async fn pause(&self, attempts: u32, retry_after: Option<&str>) {
        let unit = self
            .rng
            .lock()
            .map(|mut rng| rng.f64())
            .unwrap_or_else(|poisoned| poisoned.into_inner().f64());
        let pause = self
            .policy
            .wait_before(attempts, retry_after, SystemTime::now(), unit);
        tokio::time::sleep(pause).await;
    }
}

/// What one attempt came to.
enum Tried {
    /// A 2xx answer, read whole.
    Answered(Success),
    /// A failure another attempt would not cure.
    Final(PushError),
    /// A failure worth another attempt, with the server's `Retry-After` if it gave one.
    Retry(PushError, Option<String>),
}

/// A 2xx answer's body and the request path it answered (for messages).
pub(super) struct Success {
    pub(super) body: Vec<u8>,
    pub(super) path: String,
}

/// How a request failed below HTTP: for good, or worth another attempt.
pub(super) enum Failed {
    Final(PushError),
    Retry(PushError),
}

/// Sends a request and reads its answer: the whole body of a 2xx (up to [`BODY_LIMIT`]; an
/// answer that announces more is not read at all), the start of any other (up to
/// [`ERROR_BODY_LIMIT`]). Never holds more than the limit: the rest is left unread, and the
/// connection is dropped with the response.
pub(super) async fn exchange(builder: RequestBuilder) -> Result<Answer, reqwest::Error> {
    let mut response = builder.send().await?;
    let status = response.status().as_u16();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry_after = header(RETRY_AFTER);
    let location = header(LOCATION);
    let announced = header(CONTENT_LENGTH).and_then(|l| l.trim().parse::<u64>().ok());
    let limit = if classify_status(status) == StatusClass::Success {
        BODY_LIMIT
    } else {
        ERROR_BODY_LIMIT
    };
    let mut answer = Answer {
        status,
        retry_after,
        location,
        body: Vec::new(),
        truncated: false,
    };
    if limit == BODY_LIMIT && announced.is_some_and(|n| n > BODY_LIMIT as u64) {
        answer.truncated = true;
        return Ok(answer);
    }
    answer.body = Vec::with_capacity(announced.unwrap_or(0).min(limit as u64) as usize);
    while let Some(chunk) = response.chunk().await? {
        let room = limit - answer.body.len();
        if chunk.len() > room {
            answer.body.extend_from_slice(&chunk[..room]);
            answer.truncated = true;
            break;
        }
        answer.body.extend_from_slice(&chunk);
    }
    Ok(answer)
}
