//! The wire: reading HTTP/1.1 requests from a socket and writing responses.
//!
//! Only what a test client and the product's client need: request heads parsed by
//! `httparse`, bodies by `Content-Length` or `Transfer-Encoding: chunked`,
//! `Expect: 100-continue`, and keep-alive.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest request head accepted (request line plus headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024 * 1024;
/// How often a blocked read wakes up to check whether the server is stopping.
const POLL: Duration = Duration::from_millis(200);

/// One parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path as sent (still percent-encoded), without the query string.
    pub path: String,
    /// Raw query string (after `?`), empty when absent.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// Joins a parsed head with its body.
    pub fn new(head: Head, body: Vec<u8>) -> Request {
        Request {
            method: head.method,
            path: head.path,
            query: head.query,
            headers: head.headers,
            body,
        }
    }

    /// Path segments after the leading `/`, each percent-decoded.
    pub fn segments(&self) -> Vec<String> {
        self.path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect()
    }

    /// First header value with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// First value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a JSON body.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_default();
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    /// A JSON error response `{"detail": msg}`, the shape Qobra's API uses.
    pub fn detail(status: u16, msg: impl Into<String>) -> Response {
        Response::json(status, &serde_json::json!({ "detail": msg.into() }))
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection (or the server is stopping) between requests.
    Closed,
    /// Socket error or close in the middle of a request.
    Io(io::Error),
    /// The request is malformed; answer with this status and message, then close.
    Bad(u16, String),
}

impl From<io::Error> for ReadError {
    /// Socket errors in the middle of a request.
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// A request head, parsed, before its body is read.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub keep_alive: bool,
}

impl Head {
    /// First header value with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A server-side connection: the socket plus a read buffer.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    stopping: Arc<AtomicBool>,
}

impl Conn {
    /// Wraps an accepted socket; reads wake up periodically to watch `stopping`.
    pub fn new(stream: TcpStream, stopping: Arc<AtomicBool>) -> io::Result<Conn> {
        stream.set_read_timeout(Some(POLL))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            stopping,
        })
    }

    /// Reads into `dst`, retrying on poll timeouts until data, EOF or server stop.
    fn read_some(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        read_polling(&mut self.stream, &self.stopping, dst)
    }

    /// Appends more bytes from the socket to the buffer; returns how many (0 = EOF).
    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.buf.len();
                self.buf.resize(len * 2, 0);
            }
        }
        let n = read_polling(&mut self.stream, &self.stopping, &mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads and parses the next request head; `Closed` when the peer is done.
    pub fn read_head(&mut self) -> Result<Head, ReadError> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(pos) = find_head_end(avail) {
                let head = parse_head(&avail[..pos])?;
                self.start += pos;
                return Ok(head);
            }
            if self.end - self.start > MAX_HEAD {
                return Err(ReadError::Bad(431, "Request head too large".into()));
            }
            let had = self.end - self.start;
            match self.fill() {
                Ok(0) if had == 0 => return Err(ReadError::Closed),
                Ok(0) => {
                    return Err(ReadError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "eof in request head",
                    )))
                }
                Ok(_) => {}
                Err(_) if had == 0 => return Err(ReadError::Closed),
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Reads the body that follows `head` (Content-Length or chunked).
    pub fn read_body(&mut self, head: &Head) -> Result<Vec<u8>, ReadError> {
        if head
            .header("Expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let chunked = head
            .header("Transfer-Encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return self.read_chunked();
        }
        let len = match head.header("Content-Length") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| ReadError::Bad(400, format!("Invalid Content-Length '{v}'")))?,
        };
        if len > MAX_BODY {
            return Err(ReadError::Bad(413, "Request body too large".into()));
        }
        self.read_exact_vec(len)
    }

    /// Reads exactly `len` bytes, first from the buffer, then straight from the socket.
    fn read_exact_vec(&mut self, len: usize) -> Result<Vec<u8>, ReadError> {
        let mut body = vec![0u8; len];
        let from_buf = len.min(self.end - self.start);
        body[..from_buf].copy_from_slice(&self.buf[self.start..self.start + from_buf]);
        self.start += from_buf;
        let mut filled = from_buf;
        while filled < len {
            let n = self.read_some(&mut body[filled..])?;
            if n == 0 {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "eof in request body",
                )));
            }
            filled += n;
        }
        Ok(body)
    }

    /// Reads one CRLF-terminated line (without the CRLF) from the buffer.
    fn read_line(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(pos) = avail.windows(2).position(|w| w == b"\r\n") {
                let line = avail[..pos].to_vec();
                self.start += pos + 2;
                return Ok(line);
            }
            if avail.len() > MAX_HEAD {
                return Err(ReadError::Bad(400, "Chunk line too long".into()));
            }
            if self.fill()? == 0 {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "eof in chunked body",
                )));
            }
        }
    }

    /// Decodes a `Transfer-Encoding: chunked` body, skipping extensions and trailers.
    fn read_chunked(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| ReadError::Bad(400, format!("Invalid chunk size '{size_text}'")))?;
            if size == 0 {
                // Trailers until an empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(ReadError::Bad(413, "Request body too large".into()));
            }
            body.extend_from_slice(&self.read_exact_vec(size)?);
            if !self.read_line()?.is_empty() {
                return Err(ReadError::Bad(400, "Missing CRLF after chunk".into()));
            }
        }
    }

    /// Discards incoming data until the peer closes or the server stops (for hangs).
    pub fn drain_until_closed(&mut self) {
        let mut scratch = [0u8; 16 * 1024];
        while let Ok(n) = self.read_some(&mut scratch) {
            if n == 0 {
                break;
            }
        }
    }

    /// Writes a response; `close` adds `Connection: close`.
    pub fn write_response(&mut self, resp: &Response, close: bool) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
        for (k, v) in &resp.headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&resp.body);
        self.stream.write_all(&out)?;
        self.stream.flush()
    }
}

/// Reads from a socket whose read timeout is `POLL`, retrying on timeouts until
/// data arrives, the peer closes, or `stopping` is set.
fn read_polling(
    stream: &mut TcpStream,
    stopping: &AtomicBool,
    dst: &mut [u8],
) -> io::Result<usize> {
    loop {
        match stream.read(dst) {
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stopping.load(Ordering::Relaxed) {
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "server stopping",
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Position just past the blank line that ends a request head, if present.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses a complete request head with `httparse`.
fn parse_head(bytes: &[u8]) -> Result<Head, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ReadError::Bad(400, "Incomplete request head".into()))
        }
        Err(e) => return Err(ReadError::Bad(400, format!("Malformed request: {e}"))),
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/");
    let version = req.version.unwrap_or(1);
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q.to_string()),
        None => (target, String::new()),
    };
    let connection = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Connection"))
        .map(|(_, v)| v.to_ascii_lowercase());
    let keep_alive = match (version, connection.as_deref()) {
        (_, Some(c)) if c.contains("close") => false,
        (0, Some(c)) => c.contains("keep-alive"),
        (0, None) => false,
        _ => true,
    };
    Ok(Head {
        method,
        path: raw_path.to_string(),
        query,
        headers,
        keep_alive,
    })
}

/// Splits a query string into percent-decoded `(name, value)` pairs.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (form_decode(k), form_decode(v)),
            None => (form_decode(p), String::new()),
        })
        .collect()
}

/// Decodes a query component: `+` is a space, then percent-decoding.
fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard reason phrase for a status code (empty for unusual ones).
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Query strings and percent escapes decode.
    #[test]
    fn decodes_queries() {
        let pairs = query_pairs("all=true&debounce=5&x=a%20b+c&flag");
        assert_eq!(pairs[0], ("all".into(), "true".into()));
        assert_eq!(pairs[1], ("debounce".into(), "5".into()));
        assert_eq!(pairs[2], ("x".into(), "a b c".into()));
        assert_eq!(pairs[3], ("flag".into(), String::new()));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
    }

    /// Request heads parse, keep-alive follows the HTTP version and headers.
    #[test]
    fn parses_heads() {
        let h = parse_head(b"GET /a/b?x=1 HTTP/1.0\r\nHost: h\r\n\r\n").expect("head");
        assert_eq!(h.path, "/a/b");
        assert_eq!(h.query, "x=1");
        assert!(!h.keep_alive);
        let h = parse_head(b"POST / HTTP/1.1\r\nConnection: close\r\n\r\n").expect("head");
        assert!(!h.keep_alive);
        assert!(matches!(
            parse_head(b"BAD\x01 / HTTP/1.1\r\n\r\n"),
            Err(ReadError::Bad(400, _))
        ));
    }
}
