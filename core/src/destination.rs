//! The destination: where pushes go (Qobra's API base URL), the API key, and how to reach it
//! (an HTTP proxy, CA certificates to trust besides the built-in roots), with the checks on each.

use crate::error::{quoted, Error, Result, SqlState};
use crate::names::setting::{API_KEY_FILE, CA_FILE, HTTPS_PROXY, HTTPS_PROXY_AUTH_FILE};
use crate::names::Setting;
use base64::Engine;
use percent_encoding::percent_decode_str;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::CertificateDer;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use url::{Host, Url};

/// Qobra's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.qobra.co";

/// The longest API key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// Checks a base URL and returns it normalised (no trailing slash).
///
/// `https://` is required; plain `http://` only for loopback hosts (tests, the demo). User names,
/// passwords, queries and fragments are refused: the key travels in a header, nowhere else.
/// Errors show the URL without its credentials, query and fragment ([`shown_url`]).
pub fn check_base_url(text: &str) -> Result<String> {
    let shown = shown_url(text);
    let invalid = |why: &str| {
        Error::new(
            SqlState::InvalidParameterValue,
            format!("invalid base_url {shown}"),
        )
        .detail(why.to_owned())
        .hint(format!("Use Qobra's API address, {DEFAULT_BASE_URL}."))
    };
    let url =
        Url::parse(text).map_err(|e| invalid(&format!("It does not parse as a URL: {e}.")))?;
    let host = url.host().ok_or_else(|| invalid("It has no host."))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "It carries credentials; the API key is given separately.",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("It has a query or a fragment."));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                format!("base_url {shown} is not https"),
            )
            .detail("Plain http is only allowed to a loopback host (127.0.0.0/8, ::1, localhost).")
            .hint("Use https:// so that the API key and your data are encrypted in transit."))
        }
        _ => return Err(invalid("Only https:// URLs are accepted.")),
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A URL as messages may show it: quoted, without user name, password, query or fragment
/// (any of which may hold a secret); a text that does not parse as a URL with a host is not
/// shown at all (`user:password@host` parses as a URL of scheme `user`).
pub fn shown_url(text: &str) -> String {
    let Ok(mut url) = Url::parse(text) else {
        return "(not shown: it does not parse as a URL)".into();
    };
    if url.host().is_none() {
        return "(not shown: it is not a URL with a host)".into();
    }
    let hidden = !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some();
    // Clearing the user info fails only for URLs that cannot have any (then there is none).
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let text = url.as_str().trim_end_matches('/').to_owned();
    if hidden {
        format!(
            "{} (credentials, query and fragment not shown)",
            quoted(&text)
        )
    } else {
        quoted(&text)
    }
}

/// Checks an API key as given to `set_destination` or read from `qobra_sync.api_key_file`:
/// 1 to [`MAX_KEY_BYTES`] visible ASCII characters, no spaces.
pub fn check_api_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            Error::new(SqlState::InvalidParameterValue, "invalid API key")
                .detail(format!(
                    "An API key is 1 to {MAX_KEY_BYTES} visible ASCII characters, without spaces."
                ))
                .hint("Copy the key from Qobra's global settings."),
        );
    }
    Ok(())
}

/// Reads the API key from the file `qobra_sync.api_key_file` names (checked by
/// [`read_secret_file`]): its content, without trailing white space, must be a valid key.
pub fn read_key_file(path: &Path, server_uid: u32) -> Result<String> {
    let key = read_secret_file(API_KEY_FILE, path, server_uid)?;
    check_api_key(&key).map_err(|e| {
        secret_file_refused(API_KEY_FILE, path, "it does not hold a valid API key")
            .detail(e.detail.unwrap_or_default())
    })?;
    Ok(key)
}

/// Reads the proxy's credentials from the file `qobra_sync.https_proxy_auth_file` names
/// (checked by [`read_secret_file`]): `user:password` on one line. Returns (user, password).
pub fn read_proxy_auth_file(path: &Path, server_uid: u32) -> Result<(String, String)> {
    let text = read_secret_file(HTTPS_PROXY_AUTH_FILE, path, server_uid)?;
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() && !text.contains('\n') => {
            Ok((user.to_owned(), password.to_owned()))
        }
        _ => Err(secret_file_refused(
            HTTPS_PROXY_AUTH_FILE,
            path,
            "it does not hold user:password on one line",
        )
        .hint("Write the proxy's user name and password in it as user:password.")),
    }
}

/// The error of a secret file that cannot be used: names the setting and the file, never
/// the content.
fn secret_file_refused(setting: Setting, path: &Path, why: &str) -> Error {
    let name = quoted(&path.display().to_string());
    Error::new(
        SqlState::ConfigFileError,
        format!("{setting} {name} cannot be used: {why}"),
    )
}

/// Reads a file holding a secret, checked as PostgreSQL checks `ssl_key_file`: a regular
/// file, owned by the server's OS user (`server_uid`) with no group or world access (0600 or
/// less), or owned by root with at most group read (0640 or less). Returns its UTF-8 content
/// without trailing white space; errors name `setting` and the file, never the content.
fn read_secret_file(setting: Setting, path: &Path, server_uid: u32) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: &str| secret_file_refused(setting, path, why);
    let meta = std::fs::metadata(path).map_err(|e| refuse(&e.to_string()))?;
    if !meta.is_file() {
        return Err(refuse("it is not a regular file"));
    }
    let mode = meta.mode();
    let (owner_ok, too_open) = match meta.uid() {
        uid if uid == server_uid => (true, mode & 0o077 != 0),
        0 => (true, mode & 0o037 != 0),
        _ => (false, false),
    };
    if !owner_ok {
        return Err(
            refuse("it must be owned by the database server's OS user or root")
                .hint("chown it to the user the server runs as."),
        );
    }
    if too_open {
        return Err(refuse("it has group or world access").hint(
            "Give it permissions u=rw (0600) or less if owned by the database user, or u=rw,g=r (0640) or less if owned by root.",
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| refuse(&e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| refuse("it is not UTF-8 text"))?;
    Ok(text.trim_end().to_owned())
}

/// An HTTP proxy as `qobra_sync.https_proxy` gives it, checked: where it is
/// (`http://host:port`, shown as is) and the credentials it wants, if any (never shown).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// `http://host:port`, without credentials: safe to show.
    pub address: String,
    /// The user name, percent-decoded (empty when the URL has none).
    pub username: String,
    /// The password, percent-decoded (empty when the URL has none).
    pub password: String,
}

impl ProxyUrl {
    /// Whether the URL carried credentials.
    pub fn has_credentials(&self) -> bool {
        !self.username.is_empty() || !self.password.is_empty()
    }

    /// The `Proxy-Authorization` value for the credentials: `Basic base64(user:password)`.
    pub fn basic_auth(&self) -> Option<String> {
        self.has_credentials().then(|| {
            let pair = format!("{}:{}", self.username, self.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        })
    }

    /// The proxy with credentials given apart (`qobra_sync.https_proxy_auth_file`); refused
    /// when its URL carries some already.
    pub fn with_credentials(self, username: String, password: String) -> Result<ProxyUrl> {
        if self.has_credentials() {
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                "the proxy's credentials are given twice",
            )
            .detail(format!("{HTTPS_PROXY} carries credentials and {HTTPS_PROXY_AUTH_FILE} is set."))
            .hint(format!("Keep them in {HTTPS_PROXY_AUTH_FILE} only: a URL's credentials reach the server log when the setting is reloaded.")));
        }
        Ok(ProxyUrl {
            username,
            password,
            ..self
        })
    }

    /// The proxy as messages show it: quoted, saying when credentials were left out.
    pub fn shown(&self) -> String {
        if self.has_credentials() {
            format!("{} (credentials not shown)", quoted(&self.address))
        } else {
            quoted(&self.address)
        }
    }
}

impl fmt::Debug for ProxyUrl {
    /// The address, never the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({})", self.shown())
    }
}

/// Checks the URL of an HTTP proxy (`qobra_sync.https_proxy`): `http://host[:port]`, with
/// `user:password@` when the proxy wants credentials (percent-encoded as URLs need), no path,
/// query or fragment. Requests to an `https://` destination go through it in a CONNECT tunnel,
/// so the proxy itself is spoken to in plain HTTP. Errors never show the credentials.
pub fn check_proxy_url(text: &str) -> Result<ProxyUrl> {
    let invalid = |why: &str| {
        Error::new(
            SqlState::InvalidParameterValue,
            format!("invalid {HTTPS_PROXY} {}", shown_url(text)),
        )
        .detail(why.to_owned())
        .hint("Give the proxy as http://host:port, or http://user:password@host:port when it asks for credentials.")
    };
    let url = Url::parse(text.trim())
        .map_err(|e| invalid(&format!("It does not parse as a URL: {e}.")))?;
    if url.scheme() != "http" {
        return Err(invalid(
            "Only http:// proxies are supported (requests to Qobra cross them in an encrypted tunnel).",
        ));
    }
    let host = url.host_str().ok_or_else(|| invalid("It has no host."))?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("It has a path, a query or a fragment."));
    }
    let decode = |part: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| invalid("Its user name or password is not UTF-8 once percent-decoded."))
    };
    let username = decode(url.username())?;
    let password = decode(url.password().unwrap_or(""))?;
    let port = url.port_or_known_default().unwrap_or(80);
    Ok(ProxyUrl {
        address: format!("http://{host}:{port}"),
        username,
        password,
    })
}

/// The largest CA file read (a bundle of every public CA is about 200 KB).
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// Reads the CA certificates `qobra_sync.ca_file` names: a regular file of at most
/// [`MAX_CA_FILE_BYTES`] holding one or more PEM certificates (`-----BEGIN CERTIFICATE-----`;
/// other PEM sections are skipped), each a well-formed X.509 trust anchor. Returns their DER
/// bytes. Errors name the setting and the file, never its content.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let name = quoted(&path.display().to_string());
    let refuse = |why: String| {
        Error::new(
            SqlState::ConfigFileError,
            format!("{CA_FILE} {name} cannot be used: {why}"),
        )
        .hint(format!("Give {CA_FILE} a PEM file of the CA certificates to trust (-----BEGIN CERTIFICATE----- blocks), such as the one a TLS-inspecting proxy signs with."))
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(e.to_string()))?;
    if !meta.is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    if meta.len() > MAX_CA_FILE_BYTES {
        return Err(refuse(format!(
            "it is larger than {MAX_CA_FILE_BYTES} bytes"
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| refuse(e.to_string()))?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(refuse(format!(
            "it is larger than {MAX_CA_FILE_BYTES} bytes"
        )));
    }
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        // The PEM error's text may quote a line of the file: it is not shown.
        let cert = item.map_err(|e| {
            refuse(match e {
                pem::Error::Base64Decode(_) => "a certificate's base64 text is malformed".into(),
                pem::Error::MissingSectionEnd { .. } => {
                    "a -----BEGIN line has no matching -----END line".into()
                }
                _ => "its PEM text is malformed".into(),
            })
        })?;
        let mut store = rustls::RootCertStore::empty();
        store.add(cert.clone()).map_err(|e| {
            refuse(format!(
                "certificate {} does not parse as an X.509 certificate ({e})",
                certs.len() + 1
            ))
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(refuse(
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// Whether the host is this machine.
fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        assert_eq!(
            check_base_url("https://api.qobra.co").unwrap(),
            "https://api.qobra.co"
        );
        assert_eq!(
            check_base_url("https://api.qobra.co/").unwrap(),
            "https://api.qobra.co"
        );
        assert_eq!(
            check_base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_base_url("http://localhost:1/").is_ok());
        assert!(check_base_url("http://[::1]:9/").is_ok());
        assert!(check_base_url("http://127.8.9.10/").is_ok());
        for bad in [
            "http://api.qobra.co",
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "http://127.0.0.1.nip.io",
            "ftp://x",
            "file:///etc/passwd",
            "https://user:pw@api.qobra.co",
            "https://api.qobra.co?x=1",
            "not a url",
            "",
            "https://",
        ] {
            let err = check_base_url(bad).unwrap_err();
            assert_eq!(err.state, SqlState::InvalidParameterValue, "{bad}");
        }
        assert!(check_base_url("http://api.qobra.co")
            .unwrap_err()
            .hint
            .unwrap()
            .contains("https"));
    }

    #[test]
    fn errors_never_show_credentials_query_or_fragment() {
        for bad in [
            "https://user:SECRETpw@api.qobra.co",
            "https://SECRETuser@api.qobra.co/",
            "https://api.qobra.co/x?token=SECRET",
            "https://api.qobra.co/#SECRET",
            "http://SECRET@10.0.0.1/?SECRET#SECRET",
            "ftp://u:SECRET@x?SECRET",
            "SECRET not a url",
            "http://[SECRET",
        ] {
            let e = check_base_url(bad).unwrap_err();
            let text = format!("{} {:?} {:?}", e.message, e.detail, e.hint);
            assert!(!text.contains("SECRET"), "{bad}: {text}");
        }
        assert_eq!(
            shown_url("https://u:p@api.qobra.co/v1?k=1#f"),
            "\"https://api.qobra.co/v1\" (credentials, query and fragment not shown)"
        );
        assert_eq!(
            shown_url("https://api.qobra.co/"),
            "\"https://api.qobra.co\""
        );
    }

    #[test]
    fn urls_without_a_host_are_not_shown() {
        for text in [
            "user:SECRET@proxy.example:3128",
            "proxy:SECRET",
            "mailto:SECRET@x",
            "file:///SECRET",
        ] {
            assert!(!shown_url(text).contains("SECRET"), "{text}");
            assert!(
                !format!("{:?}", check_base_url(text)).contains("SECRET"),
                "{text}"
            );
            assert!(
                !format!("{:?}", check_proxy_url(text)).contains("SECRET"),
                "{text}"
            );
        }
    }

    #[test]
    fn proxy_urls_are_checked_and_credentials_never_shown() {
        let p = check_proxy_url("http://proxy.corp:3128").unwrap();
        assert_eq!(p.address, "http://proxy.corp:3128");
        assert!(!p.has_credentials() && p.basic_auth().is_none());
        assert_eq!(p.shown(), "\"http://proxy.corp:3128\"");
        assert_eq!(
            check_proxy_url("http://10.0.0.1/").unwrap().address,
            "http://10.0.0.1:80"
        );
        let p = check_proxy_url("http://al%40ice:p%3Ass@[::1]:8080").unwrap();
        assert_eq!(p.address, "http://[::1]:8080");
        assert_eq!(
            (p.username.as_str(), p.password.as_str()),
            ("al@ice", "p:ss")
        );
        assert_eq!(p.basic_auth().unwrap(), "Basic YWxAaWNlOnA6c3M=");
        assert_eq!(p.shown(), "\"http://[::1]:8080\" (credentials not shown)");
        assert!(!format!("{p:?}").contains("p:ss") && !format!("{p:?}").contains("al@ice"));
        for bad in [
            "https://u:SECRET@proxy:3128",
            "socks5://u:SECRET@proxy:1080",
            "http://u:SECRET@proxy:3128/path",
            "http://u:SECRET@proxy:3128?x=1",
            "http://u:SECRET@proxy:3128#f",
            "http://u:%FFSECRET@proxy:3128",
            "proxy:3128",
            "u:SECRET@proxy:3128",
            "",
            "http://",
            "not a url SECRET",
        ] {
            let e = check_proxy_url(bad).unwrap_err();
            assert_eq!(e.state, SqlState::InvalidParameterValue, "{bad}");
            assert!(
                e.message.contains("qobra_sync.https_proxy"),
                "{}",
                e.message
            );
            assert!(!format!("{e:?}").contains("SECRET"), "{bad}: {e:?}");
        }
    }

    /// A file in a fresh directory.
    fn temp_file(name: &str, content: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "qs-ca-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn ca_files_must_hold_pem_certificates() {
        let secret_text = "SECRET-CONTENT-LINE";
        let cases: [(&str, Vec<u8>, &str); 5] = [
            ("empty", vec![], "no PEM certificate"),
            (
                "text",
                format!("{secret_text}\n").into_bytes(),
                "no PEM certificate",
            ),
            (
                "unterminated",
                format!("-----BEGIN CERTIFICATE-----\n{secret_text}\n").into_bytes(),
                "-----END",
            ),
            (
                "bad-base64",
                format!(
                    "-----BEGIN CERTIFICATE-----\n{secret_text}!!\n-----END CERTIFICATE-----\n"
                )
                .into_bytes(),
                "base64",
            ),
            (
                "not-x509",
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    base64::engine::general_purpose::STANDARD.encode(secret_text)
                )
                .into_bytes(),
                "certificate 1 does not parse",
            ),
        ];
        for (name, content, why) in cases {
            let path = temp_file(name, &content);
            let e = read_ca_file(&path).unwrap_err();
            assert_eq!(e.state, SqlState::ConfigFileError, "{name}");
            assert!(
                e.message.contains("qobra_sync.ca_file"),
                "{name}: {}",
                e.message
            );
            assert!(e.message.contains(why), "{name}: {}", e.message);
            assert!(!format!("{e:?}").contains("SECRET"), "{name}: {e:?}");
        }
        let missing = read_ca_file(Path::new("/nonexistent/qs-ca.pem")).unwrap_err();
        assert_eq!(missing.state, SqlState::ConfigFileError);
        assert!(missing.message.contains("/nonexistent/qs-ca.pem"));
        let dir = read_ca_file(Path::new("/tmp")).unwrap_err();
        assert!(
            dir.message.contains("not a regular file"),
            "{}",
            dir.message
        );
        let big = temp_file("big", &vec![b'a'; MAX_CA_FILE_BYTES as usize + 1]);
        assert!(read_ca_file(&big)
            .unwrap_err()
            .message
            .contains("larger than"));
        // An unreadable file (unless running as root, who reads everything).
        use std::os::unix::fs::PermissionsExt;
        let locked = temp_file("locked", b"x");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::read(&locked).is_err() {
            let e = read_ca_file(&locked).unwrap_err();
            assert!(e.message.contains("ermission denied"), "{}", e.message);
        }
    }

    #[test]
    fn api_keys_are_visible_ascii() {
        assert!(check_api_key("qk_live_abc123").is_ok());
        for bad in [
            "",
            "has space",
            "tab\tkey",
            "é",
            &"k".repeat(MAX_KEY_BYTES + 1),
        ] {
            assert_eq!(
                check_api_key(bad).unwrap_err().state,
                SqlState::InvalidParameterValue
            );
        }
    }

    /// A key file in a fresh directory, with the given mode.
    fn key_file(content: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "qs-key-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn key_files_are_checked_like_ssl_key_files() {
        use std::os::unix::fs::MetadataExt;
        let path = key_file("qk_file_0123456789\n", 0o600);
        let me = std::fs::metadata(&path).unwrap().uid();
        assert_eq!(read_key_file(&path, me).unwrap(), "qk_file_0123456789");
        // Readable by the group or the world: refused, without reading the key.
        for mode in [0o640, 0o604, 0o644] {
            let open = key_file("qk_file_0123456789", mode);
            let e = read_key_file(&open, me).unwrap_err();
            assert_eq!(e.state, SqlState::ConfigFileError);
            assert!(e.message.contains("group or world access"), "{}", e.message);
            assert!(!format!("{e:?}").contains("0123456789"));
        }
        // Owned by someone else than the server's user: refused, unless that someone is root.
        let other = read_key_file(&path, me.wrapping_add(1));
        if me == 0 {
            assert!(other.is_ok(), "a root-owned 0600 file is accepted");
        } else {
            assert!(other.unwrap_err().message.contains("owned by"));
        }
        // Missing, a directory, not a key.
        assert!(read_key_file(Path::new("/nonexistent/qs-key"), me).is_err());
        assert!(read_key_file(path.parent().unwrap(), me)
            .unwrap_err()
            .message
            .contains("not a regular file"));
        let bad = key_file("two words", 0o600);
        let e = read_key_file(&bad, me).unwrap_err();
        assert!(e.message.contains("does not hold a valid API key"));
        assert!(!format!("{e:?}").contains("two words"));
    }

    #[test]
    fn proxy_auth_files_hold_user_and_password_and_are_checked_alike() {
        use std::os::unix::fs::MetadataExt;
        let path = key_file("proxy-user:pa:ss word\n", 0o600);
        let me = std::fs::metadata(&path).unwrap().uid();
        assert_eq!(
            read_proxy_auth_file(&path, me).unwrap(),
            ("proxy-user".to_owned(), "pa:ss word".to_owned())
        );
        let open = key_file("u:p", 0o644);
        let e = read_proxy_auth_file(&open, me).unwrap_err();
        assert!(
            e.message.contains("qobra_sync.https_proxy_auth_file"),
            "{}",
            e.message
        );
        assert!(e.message.contains("group or world access"), "{}", e.message);
        for bad in ["no-colon-s3cret", ":s3cret", "u:s3cret\nmore"] {
            let e = read_proxy_auth_file(&key_file(bad, 0o600), me).unwrap_err();
            assert!(e.message.contains("user:password"), "{}", e.message);
            assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
        }
    }

    #[test]
    fn credentials_apart_are_used_but_never_given_twice() {
        let proxy = check_proxy_url("http://proxy.corp:3128").unwrap();
        let with = proxy.with_credentials("u".into(), "s3cret".into()).unwrap();
        assert_eq!(with.basic_auth().unwrap(), "Basic dTpzM2NyZXQ=");
        assert!(!format!("{with:?}").contains("s3cret"));
        let twice = check_proxy_url("http://a:b@proxy.corp:3128")
            .unwrap()
            .with_credentials("u".into(), "s3cret".into())
            .unwrap_err();
        assert!(twice.message.contains("given twice"), "{}", twice.message);
    }
}
