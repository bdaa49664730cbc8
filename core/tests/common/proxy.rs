//! A small HTTP proxy for the tests, on a free loopback port: it opens CONNECT tunnels, forwards
//! plain requests (absolute-form, `GET http://host/path`), or refuses them, and records the head
//! of every request it receives (one per connection: what follows on a connection is passed on
//! as it is).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the proxy does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Tunnel a CONNECT, forward anything else.
    Pass,
    /// Answer every request with this status line (e.g. `403 Forbidden`).
    Refuse(&'static str),
}

/// The head of one request the proxy received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// `host:port` for CONNECT, the absolute URL otherwise.
    pub target: String,
    pub proxy_authorization: Option<String>,
    /// The whole head as received (request line and headers).
    pub head: String,
}

/// A running proxy; dropping it stops accepting connections.
pub struct Proxy {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stopping: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts a proxy in `mode`; when `credentials` is given (`Basic …`), requests without that
    /// `Proxy-Authorization` are answered 407.
    pub fn start(mode: Mode, credentials: Option<String>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (s, stop) = (Arc::clone(&seen), Arc::clone(&stopping));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, mode, credentials) = (Arc::clone(&s), mode.clone(), credentials.clone());
                std::thread::spawn(move || serve(conn, &s, &mode, credentials.as_deref()));
            }
        });
        Proxy {
            port,
            seen,
            stopping,
        }
    }

    /// `http://127.0.0.1:PORT`, or with `user:password@` before the host.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("http://{u}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// The heads received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    /// Stops accepting (one last connection wakes the accept loop).
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves one connection: reads a head, records it, then refuses, tunnels or forwards.
fn serve(mut client: TcpStream, seen: &Mutex<Vec<Seen>>, mode: &Mode, credentials: Option<&str>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let target = words.next().unwrap_or("").to_owned();
    let proxy_authorization = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.trim().to_owned())
    });
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        proxy_authorization: proxy_authorization.clone(),
        head: head.clone(),
    });
    let answer = |client: &mut TcpStream, status: &str, extra: &str| {
        let _ = write!(
            client,
            "HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = client.shutdown(Shutdown::Write);
    };
    if let Some(wanted) = credentials {
        if proxy_authorization.as_deref() != Some(wanted) {
            return answer(
                &mut client,
                "407 Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"test\"\r\n",
            );
        }
    }
    if let Mode::Refuse(status) = mode {
        return answer(&mut client, status, "");
    }
    let authority = if method == "CONNECT" {
        target.clone()
    } else {
        let rest = target.strip_prefix("http://").unwrap_or(&target);
        rest.split('/').next().unwrap_or("").to_owned()
    };
    let Ok(mut upstream) = TcpStream::connect(&authority) else {
        return answer(&mut client, "502 Bad Gateway", "");
    };
    if method == "CONNECT" {
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        let _ = upstream.write_all(&buf[end..]);
    } else {
        let _ = upstream.write_all(&buf);
    }
    splice(client, upstream);
}

/// Copies bytes both ways until either side closes.
fn splice(client: TcpStream, upstream: TcpStream) {
    let (mut c2, mut u2) = (
        client.try_clone().expect("clone"),
        upstream.try_clone().expect("clone"),
    );
    let (mut client, mut upstream) = (client, upstream);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = up.join();
}
