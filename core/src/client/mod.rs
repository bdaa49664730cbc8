//! The HTTP client of a push: talks to Qobra's API (`docs/qobra-api.md` §2, §5, §7, §8) for one
//! push.
//!
//! Built once per push. It is async reqwest on a tokio runtime that the client owns, with one
//! thread of its own: a request — its attempts and the backoffs between them — runs on that
//! thread, so that the caller can read the next chunk meanwhile ([`QobraClient::start_post`]).
//! Every wait for an answer runs on the calling thread, raced against a 100 ms ticker that calls
//! the caller's `interrupted` callback, and drops the request when that says stop. The callback
//! reads Postgres' interrupt flags, which is only valid on the backend's own thread. The
//! client's threads block every signal, so that Postgres' handlers only ever run on the
//! backend's thread.
//!
//! Safety rules, each enforced here:
//! - certificates are always verified, against the built-in roots plus the CA certificates of
//!   `ca_file`; a certificate problem fails the request at once ([`PushError::Tls`]), before
//!   the key was sent;
//! - redirects are never followed;
//! - no proxy comes from the environment: only the configured `https_proxy` is used, for every
//!   request (a CONNECT tunnel to an https destination); its credentials are shown nowhere;
//! - the `X-API-Key` header (and the proxy's `Proxy-Authorization`) are marked sensitive, and
//!   no error or `Debug` output carries the key or the proxy's credentials (any text that came
//!   from the network is scrubbed of them before it lands in an error);
//! - at most [`BODY_LIMIT`] bytes of an answer are ever read or held, and `request_timeout`
//!   bounds the whole exchange, the answer's body included.

use crate::destination::{check_base_url, check_proxy_url, read_ca_file, shown_url, ProxyUrl};
use crate::error::{Error, SqlState};
use crate::imports::{parse_import_id, parse_import_status, ImportStatus};
use crate::names::{function::SET_DESTINATION, setting::HTTPS_PROXY};
use crate::retry::RetryPolicy;
pub use crate::secret::ApiKey;
use crate::secret::{Scrub, Secrets};
use crate::wire::BodyFormat;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("qobra_sync/", env!("CARGO_PKG_VERSION"));

/// How often `interrupted` is polled while waiting.
const TICK: Duration = Duration::from_millis(100);
/// Most bytes read of an error answer (only an excerpt is kept).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Most bytes read of any answer: a successful one must fit (an import id, an import status),
/// a larger one fails the request like a server fault ([`PushError::AnswerTooLarge`]).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Longest excerpt of an answer quoted in an error.
const EXCERPT_CHARS: usize = 300;
/// How the client of a push is set up.
#[derive(Clone)]
pub struct ClientConfig {
    /// Qobra's API base URL (checked again by [`check_base_url`]).
    pub base_url: String,
    pub api_key: ApiKey,
    /// Time allowed to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time allowed for a whole request: connect, send the body, read the answer.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Seed of the jitter; `None` draws one (tests pass a seed to be deterministic).
    pub jitter_seed: Option<u64>,
    /// A PEM file of CA certificates trusted besides the built-in roots
    /// (`qobra_sync.ca_file`), for networks whose proxy inspects TLS.
    pub ca_file: Option<PathBuf>,
    /// An HTTP proxy every request goes through (`qobra_sync.https_proxy`):
    /// `http://host:port`, or `http://user:password@host:port` when it asks for credentials.
    /// The environment's proxy variables are never used.
    pub https_proxy: Option<String>,
    /// The proxy's user name and password given apart from its URL
    /// (`qobra_sync.https_proxy_auth_file`).
    pub proxy_credentials: Option<(String, String)>,
    /// How the records of a request are framed in its body (the destination's choice).
    pub body_format: BodyFormat,
}

impl fmt::Debug for ClientConfig {
    /// Every setting, but the key and the proxy's credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &shown_url(&self.base_url))
            .field("api_key", &self.api_key)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .field("jitter_seed", &self.jitter_seed)
            .field("ca_file", &self.ca_file)
            .field("https_proxy", &self.https_proxy.as_deref().map(shown_url))
            .field(
                "proxy_credentials",
                &self.proxy_credentials.as_ref().map(|_| "(not shown)"),
            )
            .field("body_format", &self.body_format)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration with default timeouts (10 s to connect, 120 s per request: a chunk of a
    /// few MB on a slow link) and the default retry policy.
    pub fn new(base_url: impl Into<String>, api_key: ApiKey) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            api_key,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            jitter_seed: None,
            ca_file: None,
            https_proxy: None,
            proxy_credentials: None,
            body_format: BodyFormat::default(),
        }
    }
}

/// Requests and retries a client has made since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent, first attempts and retries alike.
    pub requests: u32,
    /// Retries (requests sent again after a retryable failure).
    pub retries: u32,
}

/// A chunk Qobra accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The import this chunk joined or started.
    pub import_id: String,
    /// Retries this chunk needed.
    pub retries: u32,
    /// Requests this chunk took (`retries + 1`).
    pub requests: u32,
}

/// What the destination answered to a request that changes nothing ([`QobraClient::probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub status: u16,
    /// Whether the answer is a JSON object, as Qobra answers errors (a web page is not).
    pub json: bool,
    /// The answer's start (or its `detail`), free of the key.
    pub excerpt: String,
    /// Where a redirect points, without query, fragment or user info.
    pub location: Option<String>,
}

mod attempt;
mod diagnosis;
mod error;

pub use diagnosis::excerpt;
use diagnosis::*;
pub use error::PushError;

/// The client of one push.
///
/// Its methods block the calling thread (they must not be called from inside another tokio
/// runtime). Their `interrupted` callback must only read flags and return: it must not raise.
pub struct QobraClient {
    // Dropped before the runtime that drives its connections.
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
}

/// What the client's requests share with the thread that sends them.
struct Shared {
    http: reqwest::Client,
    base: Url,
    /// The key and the proxy's credentials, scrubbed out of every text from the network.
    secrets: Secrets,
    /// The proxy every request goes through, if any.
    proxy: Option<ProxyUrl>,
    /// Time allowed for a whole exchange, the answer's body included.
    request_timeout: Duration,
    policy: RetryPolicy,
    rng: Mutex<fastrand::Rng>,
    requests: AtomicU32,
    retries: AtomicU32,
    body_format: BodyFormat,
}

/// A chunk on its way to Qobra (see [`QobraClient::start_post`]); dropping it drops the request.
pub struct InFlight {
    task: tokio::task::JoinHandle<Result<Posted, PushError>>,
}

impl Drop for InFlight {
    /// Stops the request if it is still going.
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for QobraClient {
    /// The base URL, proxy and policy; never the key nor the proxy's credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QobraClient")
            .field("base", &self.shared.base.as_str())
            .field("secrets", &self.shared.secrets)
            .field("proxy", &self.shared.proxy)
            .field("policy", &self.shared.policy)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The reqwest proxy for every request (http and https destinations alike), its credentials
/// in a sensitive `Proxy-Authorization` header rather than in its URL.
fn reqwest_proxy(proxy: &ProxyUrl) -> Result<reqwest::Proxy, reqwest::Error> {
    let mut out = reqwest::Proxy::all(proxy.address.as_str())?;
    if let Some(auth) = proxy.basic_auth() {
        if let Ok(mut value) = HeaderValue::from_str(&auth) {
            value.set_sensitive(true);
            out = out.custom_http_auth(value);
        }
    }
    Ok(out)
}

/// The destination's base URL, checked.
fn base_url(config: &ClientConfig) -> Result<Url, Error> {
    let base = check_base_url(&config.base_url)?;
    let base = Url::parse(&base).map_err(|e| Error::internal(format!("base URL: {e}")))?;
    if base.cannot_be_a_base() {
        return Err(Error::internal("base URL cannot be a base"));
    }
    Ok(base)
}

/// The proxy every request goes through, with its credentials, if one is set; never for a
/// plain http destination.
fn proxy_url(config: &ClientConfig, base: &Url) -> Result<Option<ProxyUrl>, Error> {
    let proxy = match (
        config.https_proxy.as_deref(),
        config.proxy_credentials.clone(),
    ) {
        (None, _) => return Ok(None),
        (Some(url), None) => check_proxy_url(url)?,
        (Some(url), Some((user, password))) => {
            check_proxy_url(url)?.with_credentials(user, password)?
        }
    };
    if base.scheme() == "http" {
        return Err(Error::new(
            SqlState::InvalidParameterValue,
            format!("{HTTPS_PROXY} cannot be used with a plain http base_url"),
        )
        .detail("Through a proxy, a plain http request travels unencrypted to the proxy, API key included.")
        .hint(format!("Use an https:// base_url, or reset {HTTPS_PROXY} for a loopback destination.")));
    }
    Ok(Some(proxy))
}

/// The headers every request carries: the API key, marked sensitive.
fn key_header(key: &ApiKey) -> Result<HeaderMap, Error> {
    let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
        Error::new(
            SqlState::InvalidParameterValue,
            "the API key contains characters that cannot be sent in an HTTP header",
        )
        .hint(format!(
            "Give {SET_DESTINATION}() the key exactly as Qobra shows it."
        ))
    })?;
    value.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert("X-API-Key", value);
    Ok(headers)
}

/// The HTTP client: the key, no redirects, only the configured proxy, the built-in roots and
/// those of `ca_file`, the configured timeouts.
fn http_client(
    config: &ClientConfig,
    proxy: Option<&ProxyUrl>,
    setup_failed: &dyn Fn(&str, &dyn std::error::Error) -> Error,
) -> Result<reqwest::Client, Error> {
    // Only the configured proxy: `no_proxy` drops any taken from the environment.
    let mut builder = reqwest::Client::builder()
        .default_headers(key_header(&config.api_key)?)
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tls_built_in_root_certs(true)
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout);
    if let Some(p) = proxy {
        builder = builder.proxy(reqwest_proxy(p).map_err(|e| setup_failed("proxy", &e))?);
    }
    if let Some(path) = &config.ca_file {
        for der in read_ca_file(path)? {
            let cert =
                reqwest::Certificate::from_der(&der).map_err(|e| setup_failed("ca_file", &e))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| setup_failed("reqwest", &e))
}

/// Blocks every signal in the calling thread (each thread the client's runtime starts).
fn block_signals() {
    // SAFETY: sigfillset fills a local set; pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

impl QobraClient {
    /// Builds the client: checks the base URL and the proxy's, reads the CA file, sets the key
    /// as a sensitive default header, no redirects, only the configured proxy, the configured
    /// timeouts, and starts its runtime.
    pub fn new(config: &ClientConfig) -> Result<QobraClient, Error> {
        let base = base_url(config)?;
        let proxy = proxy_url(config, &base)?;
        let secrets = Secrets::new(
            config.api_key.clone(),
            proxy
                .iter()
                .flat_map(|p| [p.username.clone(), p.password.clone()]),
        );
        let setup_failed = |what: &str, e: &dyn std::error::Error| {
            Error::new(
                SqlState::ExternalFailure,
                format!("could not set up the HTTP client: {what}"),
            )
            .detail(secrets.scrub(&error_chain(e)))
        };
        let http = http_client(config, proxy.as_ref(), &setup_failed)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_name("qobra_sync http")
            .on_thread_start(block_signals)
            .enable_all()
            .build()
            .map_err(|e| setup_failed("tokio runtime", &e))?;
        let rng = match config.jitter_seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        Ok(QobraClient {
            shared: Arc::new(Shared {
                http,
                base,
                secrets,
                proxy,
                request_timeout: config.request_timeout,
                policy: config.retry,
                rng: Mutex::new(rng),
                requests: AtomicU32::new(0),
                retries: AtomicU32::new(0),
                body_format: config.body_format,
            }),
            runtime,
        })
    }

    /// How this client frames the records of a request.
    pub fn body_format(&self) -> BodyFormat {
        self.shared.body_format
    }

    /// Requests and retries made so far, whatever their outcome.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            requests: self.shared.requests.load(Ordering::Relaxed),
            retries: self.shared.retries.load(Ordering::Relaxed),
        }
    }

    /// Sends one chunk and waits for its answer (see [`QobraClient::start_post`]).
    pub fn post_records(
        &self,
        data_table_key: &str,
        all: bool,
        debounce_seconds: u32,
        body: Bytes,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Posted, PushError> {
        if interrupted() {
            return Err(PushError::Interrupted);
        }
        let in_flight = self.start_post(data_table_key, all, debounce_seconds, body);
        self.finish_post(in_flight, interrupted)
    }

    /// Starts sending one chunk on the client's thread and returns at once:
    /// `POST {base}/v1/tables/{key}/records/bulk?all=true&debounce=D` for the first chunk of a
    /// snapshot (`all`), `?debounce=D` for the others. `body` is the JSON array of records,
    /// framed as the destination chose ([`BodyFormat`]); a retry resends the same `Bytes`
    /// without copying it. [`QobraClient::finish_post`] waits for
    /// the answer.
    pub fn start_post(
        &self,
        data_table_key: &str,
        all: bool,
        debounce_seconds: u32,
        body: Bytes,
    ) -> InFlight {
        let mut query = Vec::with_capacity(2);
        if all {
            query.push(("all", "true".to_owned()));
        }
        query.push(("debounce", debounce_seconds.to_string()));
        let url = self
            .shared
            .endpoint(&["v1", "tables", data_table_key, "records", "bulk"], &query);
        let shared = Arc::clone(&self.shared);
        let body = shared.body_format.frame(body);
        let task = self.runtime.spawn(async move {
            let (answer, requests) = shared.send(Method::POST, url, Some(body)).await?;
            let import_id = parse_import_id(&answer.body).map_err(|e| PushError::Protocol {
                request: format!("POST {}", answer.path),
                message: shared.secrets.scrub(&format!(
                    "no import_id in the answer ({e}): {}",
                    excerpt(&answer.body, &shared.secrets)
                )),
            })?;
            Ok(Posted {
                import_id,
                retries: requests - 1,
                requests,
            })
        });
        InFlight { task }
    }

    /// Waits for the answer to a chunk started with [`QobraClient::start_post`], calling
    /// `interrupted` every 100 ms; when that says stop, the request is dropped.
    pub fn finish_post(
        &self,
        mut in_flight: InFlight,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Posted, PushError> {
        let joined = self.wait(&mut in_flight.task, interrupted)?;
        joined.unwrap_or_else(|e| {
            Err(PushError::Protocol {
                request: "POST".into(),
                message: format!("the request stopped unexpectedly: {e}"),
            })
        })
    }

    /// Reads an import's status: `GET {base}/v1/imports/{id}`.
    pub fn import_status(
        &self,
        import_id: &str,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<ImportStatus, PushError> {
        let url = self.shared.endpoint(&["v1", "imports", import_id], &[]);
        let (answer, _) = self.wait(self.shared.send(Method::GET, url, None), interrupted)??;
        // Parsing errors quote rows and details back: none of it may carry the key.
        let body = self
            .shared
            .secrets
            .scrub(&String::from_utf8_lossy(&answer.body));
        parse_import_status(body.as_bytes()).map_err(|e| PushError::Protocol {
            request: format!("GET {}", answer.path),
            message: self.shared.secrets.scrub(&format!(
                "not an import status ({e}): {}",
                excerpt(&answer.body, &self.shared.secrets)
            )),
        })
    }

    /// Asks for an import that cannot exist (`GET {base}/v1/imports/{random id}`), once, with
    /// no retry: it changes nothing, and its answer says whether the base URL is Qobra's API and
    /// takes the key. A failure below HTTP (no connection, a refused certificate or tunnel) is
    /// the error.
    pub fn probe(&self, interrupted: &dyn Fn() -> bool) -> Result<Probe, PushError> {
        let id = {
            let mut rng = fastrand::Rng::new();
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                rng.u32(..),
                rng.u16(..),
                rng.u16(..0x1000),
                0x8000 | rng.u16(..0x4000),
                rng.u64(..1 << 48)
            )
        };
        let url = self.shared.endpoint(&["v1", "imports", &id], &[]);
        let shared = Arc::clone(&self.shared);
        self.wait(async move { shared.probe(url).await }, interrupted)?
    }

    /// The host requests connect to (the proxy's when there is one, else the base URL's) and
    /// the addresses it resolves to, or why it does not.
    pub fn resolve(&self, interrupted: &dyn Fn() -> bool) -> (String, Result<Vec<String>, String>) {
        let target = match &self.shared.proxy {
            Some(proxy) => Url::parse(&proxy.address).ok(),
            None => Some(self.shared.base.clone()),
        };
        let host = target
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_owned));
        let port = target
            .as_ref()
            .and_then(Url::port_or_known_default)
            .unwrap_or(443);
        let Some(host) = host else {
            return (String::new(), Err("the URL has no host".to_owned()));
        };
        let timeout = self.shared.request_timeout;
        let lookup = {
            let host = host.clone();
            async move {
                match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
                    .await
                {
                    Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(addresses)) => Ok(addresses.map(|a| a.ip().to_string()).collect()),
                }
            }
        };
        let found = self
            .wait(lookup, interrupted)
            .unwrap_or_else(|_| Err("interrupted".to_owned()));
        (host, found)
    }

    /// Runs `future` to completion on the client's runtime, calling `interrupted` before it starts
    /// and every 100 ms while it runs; when that says stop, drops the future and returns
    /// [`PushError::Interrupted`]. Blocks the calling thread.
    fn wait<F: Future>(
        &self,
        future: F,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<F::Output, PushError> {
        if interrupted() {
            return Err(PushError::Interrupted);
        }
        self.runtime.block_on(async {
            let mut future = std::pin::pin!(future);
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = ticker.tick() => {
                        if interrupted() {
                            return Err(PushError::Interrupted);
                        }
                    }
                    output = &mut future => return Ok(output),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::error::status_text;
    use super::*;

    #[test]
    fn excerpts_are_short_flat_and_scrubbed() {
        let key = ApiKey::new("sekret-key-123");
        assert_eq!(
            excerpt(br#"{"detail": "Invalid API key"}"#, &key),
            "Invalid API key"
        );
        assert_eq!(
            excerpt(b"<html>\n  <b>Bad\tGateway</b>\r\n</html>", &key),
            "<html> <b>Bad Gateway</b> </html>"
        );
        assert_eq!(
            excerpt(b"your key sekret-key-123 is wrong", &key),
            "your key [redacted] is wrong"
        );
        assert_eq!(excerpt(b"", &key), "(empty answer)");
        assert_eq!(excerpt(b"a\x00b\x1bc", &key), "abc");
        let long = "x".repeat(1000);
        let cut = excerpt(long.as_bytes(), &key);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        // The key straddling the cut is scrubbed before cutting.
        let straddle = format!("{}sekret-key-123", "y".repeat(EXCERPT_CHARS - 5));
        assert!(!excerpt(straddle.as_bytes(), &key).contains("sekr"));
        assert!(excerpt(&[0xff, 0xfe, b'o', b'k'], &key).ends_with("ok"));
    }

    #[test]
    fn locations_lose_query_fragment_and_user_info() {
        let req = Url::parse("http://127.0.0.1:8000/v1/tables/t/records/bulk?all=true").unwrap();
        assert_eq!(
            describe_location(&req, "https://u:p@evil.example:444/x/y?key=abc#frag").as_deref(),
            Some("https://evil.example:444/x/y")
        );
        assert_eq!(
            describe_location(&req, "/other?token=1").as_deref(),
            Some("http://127.0.0.1:8000/other")
        );
        assert_eq!(describe_location(&req, "http://[::1"), None);
    }

    #[test]
    fn keys_never_show_in_debug() {
        let config = ClientConfig::new("http://127.0.0.1:9", ApiKey::new("sekret-key-123"));
        assert!(!format!("{config:?}").contains("sekret"));
        let client = QobraClient::new(&config).unwrap();
        assert!(!format!("{client:?}").contains("sekret"));
        assert!(format!("{client:?}").contains("redacted"));
    }

    #[test]
    fn bad_keys_and_urls_are_refused_without_echoing_the_key() {
        let err = QobraClient::new(&ClientConfig::new(
            "http://127.0.0.1:9",
            ApiKey::new("sekret\nkey"),
        ))
        .unwrap_err();
        assert_eq!(err.state, SqlState::InvalidParameterValue);
        assert!(!format!("{err:?}").contains("sekret"));
        let err = QobraClient::new(&ClientConfig::new(
            "http://example.com",
            ApiKey::new("sekret-key-123"),
        ))
        .unwrap_err();
        assert_eq!(err.state, SqlState::InvalidParameterValue);
        assert!(!format!("{err:?}").contains("sekret"));
    }

    #[test]
    fn endpoints_encode_segments_and_keep_a_base_path() {
        let client = QobraClient::new(&ClientConfig::new(
            "http://127.0.0.1:9/api/",
            ApiKey::new("k"),
        ))
        .unwrap();
        let url = client.shared.endpoint(
            &["v1", "tables", "a b/c", "records", "bulk"],
            &[("all", "true".into()), ("debounce", "5".into())],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/api/v1/tables/a%20b%2Fc/records/bulk?all=true&debounce=5"
        );
    }

    #[test]
    fn errors_convert_with_the_right_class() {
        let key_rejected = PushError::KeyRejected {
            request: "POST /v1/tables/t/records/bulk".into(),
            status: 401,
            excerpt: "Invalid API key".into(),
        };
        let e = Error::from(key_rejected);
        assert_eq!(e.state, SqlState::InsufficientPrivilege);
        assert!(e.message.contains("401 Unauthorized"), "{}", e.message);
        assert!(e.hint.unwrap().contains("set_destination"));

        let redirect = Error::from(PushError::Redirected {
            request: "POST /x".into(),
            status: 307,
            location: Some("http://127.0.0.1:2/y".into()),
        });
        assert_eq!(redirect.state, SqlState::ExternalFailure);
        assert!(redirect.message.contains("307"));
        assert!(redirect.message.contains("not followed"));

        let gave_up = Error::from(PushError::GaveUp {
            attempts: 3,
            last: Box::new(PushError::Server {
                request: "POST /x".into(),
                status: 503,
                excerpt: "busy".into(),
            }),
        });
        assert_eq!(gave_up.state, SqlState::ExternalFailure);
        assert!(gave_up.message.contains("3 attempts"));
        let detail = gave_up.detail.unwrap();
        assert!(
            detail.contains("503 Service Unavailable") && detail.contains("busy"),
            "{detail}"
        );
        assert_eq!(
            Error::from(PushError::Interrupted).state,
            SqlState::ExternalFailure
        );
        let refused = Error::from(PushError::Refused {
            request: "POST /x".into(),
            status: 404,
            excerpt: "Unknown data table".into(),
        });
        assert!(refused.hint.unwrap().contains("csv_template"));
        assert_eq!(status_text(799), "799");
    }

    #[test]
    fn transient_and_retryable() {
        let server = PushError::Server {
            request: "x".into(),
            status: 500,
            excerpt: String::new(),
        };
        assert!(server.is_retryable() && server.is_transient());
        let gave_up = PushError::GaveUp {
            attempts: 2,
            last: Box::new(server),
        };
        assert!(!gave_up.is_retryable() && gave_up.is_transient());
        assert!(!PushError::Interrupted.is_transient());
        let refused = PushError::Refused {
            request: "x".into(),
            status: 400,
            excerpt: String::new(),
        };
        assert!(!refused.is_transient());
    }

    #[test]
    fn not_found_is_a_404_or_410_refusal_only() {
        let refused = |status| PushError::Refused {
            request: "GET /v1/imports/x".into(),
            status,
            excerpt: String::new(),
        };
        assert!(refused(404).is_not_found() && refused(410).is_not_found());
        assert!(!refused(400).is_not_found() && !refused(409).is_not_found());
        let server = PushError::Server {
            request: "x".into(),
            status: 404,
            excerpt: String::new(),
        };
        assert!(!server.is_not_found() && !PushError::Interrupted.is_not_found());
    }
}
