//! Requests and responses as the handlers see them: a request whose body has been read
//! whole, a response with its whole body. The wire (HTTP/1.1 parsing, chunked bodies,
//! keep-alive) is hyper's business, in `server.rs` and `service.rs`.

use http::HeaderMap;
use percent_encoding::percent_decode_str;

/// Largest request body accepted (a larger one is answered 413).
pub const MAX_BODY: usize = 1024 * 1024 * 1024;

/// One request, its body read.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path as sent (still percent-encoded), without the query string.
    pub path: String,
    /// Raw query string (after `?`), empty when absent.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Request {
    /// Path segments after the leading `/`, each percent-decoded.
    pub fn segments(&self) -> Vec<String> {
        self.path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect()
    }

    /// First header value with this name (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// First value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// A response to send.
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

/// Splits a query string into decoded `(name, value)` pairs (`+` is a space, then
/// percent-decoding; empty pairs are skipped).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Query strings and percent escapes decode.
    #[test]
    fn decodes_queries() {
        let pairs = query_pairs("all=true&debounce=5&x=a%20b+c&flag&&y=1=2");
        assert_eq!(pairs[0], ("all".into(), "true".into()));
        assert_eq!(pairs[1], ("debounce".into(), "5".into()));
        assert_eq!(pairs[2], ("x".into(), "a b c".into()));
        assert_eq!(pairs[3], ("flag".into(), String::new()));
        assert_eq!(pairs[4], ("y".into(), "1=2".into()));
        assert_eq!(pairs.len(), 5);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a+b%20c"), "a+b c");
    }

    /// A path splits into decoded segments; a query parameter is found by name.
    #[test]
    fn segments_and_params() {
        let req = Request {
            method: "GET".into(),
            path: "/v1/tables/a%20b/records".into(),
            query: "limit=5&start_id=x%2By".into(),
            headers: HeaderMap::new(),
            body: Vec::new(),
        };
        assert_eq!(req.segments(), ["v1", "tables", "a b", "records"]);
        assert_eq!(req.query_param("start_id").as_deref(), Some("x+y"));
        assert_eq!(req.query_param("nope"), None);
    }
}
