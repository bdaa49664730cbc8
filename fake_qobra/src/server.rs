//! The server: a loopback listener and hyper's HTTP/1.1 connections (keep-alive, chunked
//! bodies), over TLS when started with a certificate, on a tokio runtime of its own, run
//! by one thread; the `Server` handle that starts and stops it.

use crate::service;
use crate::settings::{BodyFormat, Initial};
use crate::socket::Socket;
use crate::state::Shared;
use crate::store::Store;
use crate::tls::Tls;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// How long a stopping server waits for its open connections to finish.
const DRAIN: Duration = Duration::from_secs(3);
/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// How a server is started beyond its address and key: HTTPS, and the settings that
/// `PUT /_fake/settings` changes later (and `POST /_fake/reset` restores).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve HTTPS with this certificate instead of HTTP.
    pub tls: Option<Tls>,
    /// Every public request is answered this long after it arrived.
    pub latency: Duration,
    /// A bulk request with a larger body is answered 413.
    pub max_body_bytes: Option<u64>,
    /// The shape bulk bodies must have.
    pub body_format: BodyFormat,
}
/// Most runtime threads: the fake serves a handful of clients at a time.
const MAX_WORKERS: usize = 4;

/// A running fake Qobra.
pub struct Server {
    shared: Arc<Shared>,
    serving: Option<JoinHandle<()>>,
    launcher: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` (loopback only; port 0 picks a free port) and starts serving HTTP.
    pub fn start(listen: &str, api_key: &str) -> io::Result<Server> {
        Server::start_with(listen, api_key, Options::default())
    }

    /// Binds `listen` (loopback only; port 0 picks a free port) and starts serving with
    /// these options (HTTPS when `options.tls` is set).
    pub fn start_with(listen: &str, api_key: &str, options: Options) -> io::Result<Server> {
        let addrs: Vec<SocketAddr> = listen.to_socket_addrs()?.collect();
        if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to listen on {listen}: only loopback addresses are allowed"),
            ));
        }
        if api_key.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the API key must not be empty",
            ));
        }
        let listener = std::net::TcpListener::bind(addrs.as_slice())?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(MAX_WORKERS);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("fake-qobra-io")
            .enable_all()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let store = Arc::new(Store::default());
        let launcher = store.spawn_launcher()?;
        let initial = Initial {
            latency: options.latency,
            max_body_bytes: options.max_body_bytes,
            body_format: options.body_format,
        };
        let acceptor = options.tls.as_ref().map(Tls::acceptor);
        let shared = Arc::new(Shared::new(
            store,
            api_key,
            addr,
            acceptor.is_some(),
            initial,
        ));
        let s = Arc::clone(&shared);
        let serving = std::thread::Builder::new()
            .name("fake-qobra".into())
            .spawn(move || {
                runtime.block_on(accept_loop(s, listener, acceptor));
                // Handlers still blocked (a flush) are released by the stop; don't wait long.
                runtime.shutdown_timeout(Duration::from_millis(500));
            });
        let serving = match serving {
            Ok(h) => h,
            Err(e) => {
                shared.request_stop();
                let _ = launcher.join();
                return Err(e);
            }
        };
        Ok(Server {
            shared,
            serving: Some(serving),
            launcher: Some(launcher),
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:40123` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.shared.addr)
    }

    /// A function that stops the server, usable from another thread.
    pub fn stopper(&self) -> impl Fn() + Send + 'static {
        let shared = Arc::clone(&self.shared);
        move || shared.request_stop()
    }

    /// Asks the server to stop (returns at once).
    pub fn stop(&self) {
        self.shared.request_stop();
    }

    /// Blocks until the server stops, then gives open connections a moment to finish.
    pub fn wait(&mut self) {
        if let Some(h) = self.serving.take() {
            let _ = h.join();
        }
        if let Some(h) = self.launcher.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    /// Stopping the handle stops the server.
    fn drop(&mut self) {
        self.stop();
        self.wait();
    }
}

/// Accepts connections until stopped, one task each; then closes the listener and
/// waits (at most `DRAIN`) for the connections to end.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        // Idle keep-alive connections stay open until the client or the server ends them.
        .header_read_timeout(None)
        // Headers go out as `Retry-After`, `Content-Type`, not lower-cased; no `Date` is added.
        .title_case_headers(true)
        .auto_date_header(false);
    // Every connection task holds a sender; the channel closes when the last one ends.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    let stopped = shared.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    shared.stats.connected();
                    let conn = serve_connection(Arc::clone(&shared), http.clone(), tcp, tls.clone(), alive.clone());
                    tokio::spawn(conn);
                }
                // Out of descriptors or the like: let connections close, then go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    drop(listener);
    drop(alive);
    let _ = tokio::time::timeout(DRAIN, all_closed.recv()).await;
}

/// Serves requests on one connection (after its TLS handshake, when serving HTTPS) until
/// it closes, a fault ends it, or the server stops.
async fn serve_connection(
    shared: Arc<Shared>,
    http: http1::Builder,
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    alive: mpsc::Sender<()>,
) {
    let _ = tcp.set_nodelay(true);
    let (socket, ending) = Socket::new(tcp);
    let Some(acceptor) = tls else {
        return serve_http(shared, http, socket, ending, alive).await;
    };
    let handshake = tokio::time::timeout(HANDSHAKE, acceptor.accept(socket));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            // The client refused the certificate, spoke no TLS, or took too long.
            _ => return shared.stats.tls_failed(),
        },
        _ = shared.stopped() => return,
    };
    serve_http(shared, http, stream, ending, alive).await
}

/// Serves HTTP requests on one connection (a TCP socket or a TLS stream over one) until it
/// closes, a fault ends it, or the server stops (then requests in flight finish and the
/// connection closes).
async fn serve_http<I>(
    shared: Arc<Shared>,
    http: http1::Builder,
    io: I,
    ending: Arc<crate::socket::Ending>,
    _alive: mpsc::Sender<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let s = Arc::clone(&shared);
    let svc = service_fn(move |req| service::serve(Arc::clone(&s), Arc::clone(&ending), req));
    let conn = http.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shared.stopped() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
