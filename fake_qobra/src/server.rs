//! The server: a loopback listener, one thread per connection, keep-alive,
//! fault injection, authentication, the request log and routing.

use crate::clock::now_rfc3339;
use crate::faults::{Action, Faults};
use crate::http::{Conn, Head, ReadError, Request, Response};
use crate::reqlog::{Entry, RequestLog};
use crate::store::{count_objects, Store};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// State shared by every connection thread.
pub struct Shared {
    pub store: Arc<Store>,
    pub faults: Faults,
    pub log: RequestLog,
    api_key: String,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    active: AtomicUsize,
}

impl Shared {
    /// Asks the server to stop: the listener, the launcher and every connection end.
    pub fn request_stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.store.stop();
        // Wake the accept loop, which is blocked in accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
    }
}

/// A running fake Qobra.
pub struct Server {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    launcher: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` (loopback only; port 0 picks a free port) and starts serving.
    pub fn start(listen: &str, api_key: &str) -> io::Result<Server> {
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
        let listener = TcpListener::bind(addrs.as_slice())?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store::default());
        let launcher = store.spawn_launcher()?;
        let shared = Arc::new(Shared {
            store,
            faults: Faults::default(),
            log: RequestLog::default(),
            api_key: api_key.to_string(),
            addr,
            stopping: Arc::new(AtomicBool::new(false)),
            active: AtomicUsize::new(0),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || accept_loop(&s, listener))?;
        Ok(Server {
            shared,
            accept: Some(accept),
            launcher: Some(launcher),
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
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
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        if let Some(h) = self.launcher.take() {
            let _ = h.join();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
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

/// Accepts connections until stopped, one thread each.
fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        shared.active.fetch_add(1, Ordering::SeqCst);
        let s = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || {
                serve_connection(&s, stream);
                s.active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Serves requests on one connection until it closes, a fault ends it, or the server stops.
fn serve_connection(shared: &Shared, stream: TcpStream) {
    let Ok(mut conn) = Conn::new(stream, Arc::clone(&shared.stopping)) else {
        return;
    };
    loop {
        let head = match conn.read_head() {
            Ok(h) => h,
            Err(ReadError::Bad(status, msg)) => {
                let _ = conn.write_response(&Response::detail(status, msg), true);
                return;
            }
            Err(_) => return,
        };
        let mut entry = new_entry(shared, &head);
        let keep_alive = head.keep_alive;
        let fault = shared.faults.check(&head.method, &head.path);
        entry.fault = fault.as_ref().map(|a| a.name().to_string());
        let body = match &fault {
            Some(Action::Reset { read_body: false } | Action::Close { read_body: false }) => {
                Vec::new()
            }
            _ => match conn.read_body(&head) {
                Ok(b) => b,
                Err(ReadError::Bad(status, msg)) => {
                    entry.status = Some(status);
                    finish(shared, entry);
                    let _ = conn.write_response(&Response::detail(status, msg), true);
                    return;
                }
                Err(_) => {
                    finish(shared, entry);
                    return;
                }
            },
        };
        entry.body_bytes = body.len();
        // Handled bulk requests are counted by their handler; faulted ones here.
        let faulted = fault
            .as_ref()
            .is_some_and(|a| !matches!(a, Action::Delay(_)));
        if faulted && head.path.ends_with("/records/bulk") {
            entry.records = count_objects(&body).ok();
        }
        let response = match fault {
            Some(Action::Reset { .. }) => {
                finish(shared, entry);
                reset(&conn.stream);
                return;
            }
            Some(Action::Close { .. }) => {
                finish(shared, entry);
                let _ = conn.stream.shutdown(Shutdown::Both);
                return;
            }
            Some(Action::Hang) => {
                shared.log.push(entry);
                conn.drain_until_closed();
                return;
            }
            Some(Action::Respond {
                status,
                headers,
                body,
            }) => Response {
                status,
                headers,
                body,
            },
            Some(Action::Delay(d)) => {
                if !sleep_unless_stopping(shared, d) {
                    finish(shared, entry);
                    return;
                }
                let (resp, records) = dispatch(shared, Request::new(head, body), &entry);
                entry.records = entry.records.or(records);
                resp
            }
            None => {
                let (resp, records) = dispatch(shared, Request::new(head, body), &entry);
                entry.records = entry.records.or(records);
                resp
            }
        };
        let stop_after = !keep_alive || shared.stopping.load(Ordering::SeqCst);
        let written = conn.write_response(&response, stop_after);
        entry.status = Some(response.status);
        finish(shared, entry);
        if written.is_err() || stop_after {
            return;
        }
    }
}

/// Routes a request: the control API, or authentication then the public API.
fn dispatch(shared: &Shared, req: Request, entry: &Entry) -> (Response, Option<usize>) {
    if req.path == "/_fake" || req.path.starts_with("/_fake/") {
        return (crate::control::handle(shared, req), None);
    }
    if !entry.api_key_valid {
        return (Response::detail(401, "Invalid API key"), None);
    }
    crate::api::handle(&shared.store, req)
}

/// A log entry for a request whose head has just been read.
fn new_entry(shared: &Shared, head: &Head) -> Entry {
    let key = head.header("X-API-Key");
    Entry {
        seq: 0,
        method: head.method.clone(),
        path: head.path.clone(),
        query: head.query.clone(),
        api_key_present: key.is_some(),
        api_key_valid: key == Some(shared.api_key.as_str()),
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

/// Closes the socket with SO_LINGER 0 so the peer sees a connection reset.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    // The socket is closed (and the RST sent) when the connection is dropped.
}

/// Sleeps for `d` in short steps; false if the server began stopping meanwhile.
fn sleep_unless_stopping(shared: &Shared, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
