//! The API key (and a proxy's credentials) as secrets: they are never printed, and any echo of
//! them found in text that came from the network is redacted before that text is kept or shown.
//!
//! An echo may not be byte-for-byte: a server can quote a key in another case, URL-encoded (a
//! `Location` header, a query string) or base64-encoded (a `Basic` credential, a token). Each of
//! these forms is searched for; base64 is searched at the three alignments a key can have inside
//! a longer encoded text.

use crate::sql_text::{holds_code, literals, statements, tokens, Token};
use base64::Engine;
use std::fmt;

/// What replaces the API key wherever it shows up in text from the network.
pub const REDACTED: &str = "[redacted]";

/// Keys shorter than this are too likely to occur by chance to be redacted meaningfully (and no
/// real key is that short).
const MIN_SCRUBBED_BYTES: usize = 4;

/// Shortest base64 form searched for: shorter ones could match ordinary text.
const MIN_BASE64_CHARS: usize = 8;

/// A Qobra API key. Its `Debug` never shows it and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every echo of the key replaced by [`REDACTED`]: the key itself or
    /// URL-encoded, in any letter case, and its base64 forms.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < MIN_SCRUBBED_BYTES {
            return text.to_owned();
        }
        let mut out = text.to_owned();
        for form in self.case_free_forms() {
            out = replace_ignoring_case(&out, &form);
        }
        for form in self.base64_forms() {
            out = out.replace(&form, REDACTED);
        }
        out
    }

    /// The forms found whatever their letter case: the key, and the key URL-encoded (reserved
    /// bytes only, as URLs carry it, or every byte).
    fn case_free_forms(&self) -> Vec<String> {
        let key = self.0.as_bytes();
        let reserved: String = key
            .iter()
            .map(|&b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let every: String = key.iter().map(|b| format!("%{b:02X}")).collect();
        vec![self.0.clone(), reserved, every]
    }

    /// The base64 forms (standard and URL-safe alphabets) of the key at each of the three
    /// alignments it can have in a longer encoded text: only the characters that depend on the
    /// key's bytes alone.
    fn base64_forms(&self) -> Vec<String> {
        let key = self.0.as_bytes();
        let mut forms = vec![];
        for offset in 0..3usize {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(key);
            let first = (offset * 8).div_ceil(6);
            let last = (offset + key.len()) * 8 / 6;
            for engine in [
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                let encoded = engine.encode(&padded);
                if let Some(core) = encoded.get(first..last.min(encoded.len())) {
                    if core.len() >= MIN_BASE64_CHARS && !forms.iter().any(|f| f == core) {
                        forms.push(core.to_owned());
                    }
                }
            }
        }
        forms
    }
}

impl fmt::Debug for ApiKey {
    /// Prints `ApiKey([redacted])`, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({REDACTED})")
    }
}

/// What can scrub secrets out of text from the network.
pub trait Scrub {
    /// `text` with every echo of the secrets replaced by [`REDACTED`].
    fn scrub(&self, text: &str) -> String;
}

impl Scrub for ApiKey {
    /// Scrubs the key ([`ApiKey::scrub`]).
    fn scrub(&self, text: &str) -> String {
        ApiKey::scrub(self, text)
    }
}

/// Every secret one HTTP client holds: the API key and, when it goes through a proxy that
/// wants them, the proxy's user name and password. Each is scrubbed in every form
/// [`ApiKey::scrub`] knows (a `Basic` credential holds `user:password` in base64, whose
/// password part is found at any alignment). Its `Debug` shows none of them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    key: ApiKey,
    others: Vec<ApiKey>,
}

impl Secrets {
    /// The API key and any other secrets (empty ones are ignored).
    pub fn new(key: ApiKey, others: impl IntoIterator<Item = String>) -> Secrets {
        Secrets {
            key,
            others: others
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(ApiKey::new)
                .collect(),
        }
    }

    /// The API key.
    pub fn key(&self) -> &ApiKey {
        &self.key
    }
}

impl Scrub for Secrets {
    /// Scrubs the key, then every other secret, longest first (so that no part of a longer
    /// one survives a shorter one's redaction).
    fn scrub(&self, text: &str) -> String {
        let mut all: Vec<&ApiKey> = self.others.iter().chain([&self.key]).collect();
        all.sort_by_key(|k| std::cmp::Reverse(k.0.len()));
        all.iter().fold(text.to_owned(), |t, k| k.scrub(&t))
    }
}

impl fmt::Debug for Secrets {
    /// Prints how many secrets there are, never one of them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Secrets(key {REDACTED}, {} more {REDACTED})",
            self.others.len()
        )
    }
}

/// `text` with every occurrence of `needle` replaced by [`REDACTED`], ignoring ASCII letter case.
fn replace_ignoring_case(text: &str, needle: &str) -> String {
    if needle.is_empty() {
        return text.to_owned();
    }
    // ASCII lower-casing keeps every byte where it is, so positions found in the lowered copy
    // are positions in `text`; both are UTF-8, so a match starts and ends on char boundaries.
    let lowered = text.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(at) = lowered[from..].find(&needle) {
        out.push_str(&text[from..from + at]);
        out.push_str(REDACTED);
        from += at + needle.len();
    }
    out.push_str(&text[from..]);
    out
}

/// The SQL functions whose arguments are secret, as a statement names them (any case).
pub const SECRET_FUNCTIONS: &[&str] = &["set_destination", "reader_from_service_account"];

/// Words of a statement that are never secret, so messages may show them.
const PLAIN_WORDS: &[&str] = &[
    "qobra_sync",
    "set_destination",
    "reader_from_service_account",
    "api_key",
    "base_url",
    "service_account",
];

/// The shortest bare word of a statement redacted from messages.
const MIN_WORD: usize = 8;
/// The shortest string literal of a statement redacted from messages.
const MIN_LITERAL: usize = 4;

/// Whether SQL text calls one of [`SECRET_FUNCTIONS`]: its name followed by `(` in one of its
/// statements (not in a comment, not in a string), or in the code a `DO` block or a function's
/// body holds. A statement that calls one holds a secret; one that only mentions the name (in
/// a comment, a string, an alias) does not, and is logged like any other.
pub fn calls_secret_function(sql: &str) -> bool {
    in_statements_or_code(sql, calls)
}

/// Whether SQL text names one of [`SECRET_FUNCTIONS`] as a word anywhere outside comments and
/// strings (or in the code it holds): a statement whose call is broken (a syntax error) still
/// names it, and its error must not show it.
pub fn mentions_secret_function(sql: &str) -> bool {
    in_statements_or_code(sql, names)
}

/// Whether SQL text calls one of [`SECRET_FUNCTIONS`] itself, in one of its own statements
/// (not from the code of a `DO` block or of a function it defines).
pub fn calls_secret_function_directly(sql: &str) -> bool {
    let all = tokens(sql);
    statements(&all)
        .iter()
        .any(|statement| !holds_code(statement) && calls(statement))
}

/// Whether `found` is true of one of the statements of `sql`, or of the code held in the
/// literals of a `DO` block or a function definition among them.
fn in_statements_or_code(sql: &str, found: fn(&[Token]) -> bool) -> bool {
    let all = tokens(sql);
    statements(&all).iter().any(|statement| {
        found(statement)
            || (holds_code(statement)
                && statement
                    .iter()
                    .any(|t| matches!(t, Token::Literal(code) if found(&tokens(code)))))
    })
}

/// Whether tokens name one of [`SECRET_FUNCTIONS`].
fn names(tokens: &[Token]) -> bool {
    tokens.iter().any(is_secret_name)
}

/// Whether tokens call one of [`SECRET_FUNCTIONS`]: its name followed by `(`.
fn calls(tokens: &[Token]) -> bool {
    tokens
        .windows(2)
        .any(|pair| is_secret_name(&pair[0]) && pair[1] == Token::Punct('('))
}

/// Whether a token is the name of one of [`SECRET_FUNCTIONS`].
fn is_secret_name(token: &Token) -> bool {
    matches!(token, Token::Word(w) if SECRET_FUNCTIONS.contains(&w.as_str()))
}

/// The names of the prepared statements that SQL text runs with `EXECUTE name` (the name as
/// PostgreSQL keeps it: a bare one folded to lower case, a quoted one as written, both cut at 63
/// bytes), so that the statement they were prepared from can be looked at: `EXECUTE p('…')`
/// passes a secret when `p` calls one of [`SECRET_FUNCTIONS`]. A word EXECUTE naming something
/// else yields a name no statement has, which is harmless.
pub fn executed_statements(sql: &str) -> Vec<String> {
    tokens(sql)
        .windows(2)
        .filter_map(|pair| match pair {
            [Token::Word(keyword), Token::Word(name)] if keyword == "execute" => {
                Some(cut_to_name(name.clone()))
            }
            _ => None,
        })
        .collect()
}

/// `name` cut to the 63 bytes PostgreSQL keeps of an identifier (at a character boundary).
fn cut_to_name(mut name: String) -> String {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

/// `text` with every one of `secrets` replaced by [`REDACTED`], ignoring ASCII letter case (an
/// unquoted word comes back from PostgreSQL folded to lower case).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        out = replace_ignoring_case(&out, s);
    }
    out
}

/// What a message must not quote back of a statement: its string literals and its long bare
/// words (but for [`PLAIN_WORDS`]), longest first.
pub fn secret_words(statement: &str) -> Vec<String> {
    let mut out: Vec<String> = literals(statement)
        .into_iter()
        .filter(|l| l.len() >= MIN_LITERAL)
        .collect();
    let words = statement
        .split(|c: char| !(c.is_ascii_alphanumeric() || "_-+/=.~:@".contains(c)))
        .filter(|w| w.len() >= MIN_WORD)
        .filter(|w| {
            !w.split('.')
                .all(|part| PLAIN_WORDS.iter().any(|p| p.eq_ignore_ascii_case(part)))
        });
    out.extend(words.map(str::to_owned));
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const KEY: &str = "qk_live_Ab/9+z=Q-7";

    #[test]
    fn the_key_is_redacted_in_every_case() {
        let key = ApiKey::new(KEY);
        for text in [KEY.to_owned(), KEY.to_uppercase(), KEY.to_lowercase()] {
            assert_eq!(key.scrub(&format!("key {text}!")), "key [redacted]!");
        }
    }

    #[test]
    fn url_encoded_echoes_are_redacted() {
        let key = ApiKey::new(KEY);
        let reserved = "qk_live_Ab%2F9%2Bz%3DQ-7";
        for text in [
            reserved.to_owned(),
            reserved.to_lowercase(),
            KEY.bytes().map(|b| format!("%{b:02x}")).collect::<String>(),
        ] {
            let location = format!("https://evil.example/next?token={text}&x=1");
            assert_eq!(
                key.scrub(&location),
                "https://evil.example/next?token=[redacted]&x=1",
                "{text}"
            );
        }
    }

    #[test]
    fn base64_echoes_are_redacted_at_any_alignment() {
        let key = ApiKey::new(KEY);
        for prefix in ["", "u", "us", "user:", "Authorization: "] {
            for engine in [&STANDARD, &URL_SAFE] {
                let encoded = engine.encode(format!("{prefix}{KEY}"));
                let scrubbed = key.scrub(&format!("Basic {encoded}"));
                assert!(scrubbed.contains(REDACTED), "{prefix:?}: {scrubbed}");
                // What is left around the redaction cannot be decoded back to the key.
                assert!(scrubbed.len() < encoded.len(), "{scrubbed}");
            }
        }
    }

    #[test]
    fn text_without_the_key_is_unchanged() {
        let key = ApiKey::new(KEY);
        let text = "Qobra said: 500 Internal Server Error — ünïcode stays, QK_LIVE alone too";
        assert_eq!(key.scrub(text), text);
        assert_eq!(ApiKey::new("abc").scrub("abc"), "abc", "too short to scrub");
        assert_eq!(format!("{key:?}"), "ApiKey([redacted])");
    }

    #[test]
    fn proxy_credentials_are_redacted_with_the_key() {
        let secrets = Secrets::new(
            ApiKey::new(KEY),
            [
                "proxyuser".to_owned(),
                "pr0xy-pa55w0rd".to_owned(),
                String::new(),
            ],
        );
        let basic = STANDARD.encode("proxyuser:pr0xy-pa55w0rd");
        let text = format!("key {KEY}, user PROXYUSER, password pr0xy-pa55w0rd, Basic {basic}");
        let scrubbed = secrets.scrub(&text);
        for secret in [KEY, "proxyuser", "PROXYUSER", "pa55w0rd", &basic] {
            assert!(!scrubbed.contains(secret), "{secret}: {scrubbed}");
        }
        assert!(
            scrubbed.starts_with("key [redacted], user [redacted]"),
            "{scrubbed}"
        );
        let debug = format!("{secrets:?}");
        assert!(!debug.contains("proxyuser") && !debug.contains("pa55") && !debug.contains(KEY));
        assert_eq!(secrets.key().expose(), KEY);
    }

    #[test]
    fn statements_calling_secret_functions_are_recognised() {
        assert!(calls_secret_function(
            "SELECT qobra_sync.set_destination('k')"
        ));
        assert!(calls_secret_function(
            "select QOBRA_SYNC.SET_DESTINATION($1)"
        ));
        assert!(calls_secret_function(
            "SELECT qobra_sync.\"reader_from_service_account\"('{}')"
        ));
        assert!(!calls_secret_function("SELECT qobra_sync.sync_now('t')"));
        // A broken call still names the function: its error keeps the statement out of the log.
        assert!(!calls_secret_function(
            "SELECT qobra_sync.set_destination 'qk_x')"
        ));
        assert!(mentions_secret_function(
            "SELECT qobra_sync.set_destination 'qk_x')"
        ));
        // An alias names it and calls nothing: logged like any statement.
        assert!(!calls_secret_function(
            "SELECT 1 AS set_destination; DROP TABLE important"
        ));
    }

    #[test]
    fn comments_and_strings_name_no_function() {
        for sql in [
            "SELECT * FROM payroll /* set_destination */",
            "SELECT * FROM payroll -- reader_from_service_account",
            "SELECT 'set_destination(' FROM payroll",
            "SELECT $$set_destination($$ FROM payroll",
        ] {
            assert!(
                !calls_secret_function(sql) && !mentions_secret_function(sql),
                "{sql}"
            );
        }
    }

    #[test]
    fn code_in_do_blocks_and_function_bodies_counts_but_is_not_a_direct_call() {
        for sql in [
            "DO $$BEGIN PERFORM qobra_sync.set_destination('k'); END$$",
            "do language plpgsql 'begin perform qobra_sync.set_destination(''k''); end'",
            "CREATE OR REPLACE FUNCTION f() RETURNS void AS $b$ SELECT qobra_sync.set_destination('k') $b$ LANGUAGE sql",
        ] {
            assert!(calls_secret_function(sql), "{sql}");
            assert!(!calls_secret_function_directly(sql), "{sql}");
        }
        assert!(calls_secret_function_directly(
            "SELECT 1; SELECT qobra_sync.set_destination($1, $2)"
        ));
        assert!(!calls_secret_function_directly("SELECT my_wrapper()"));
    }

    #[test]
    fn executed_statement_names_are_found_as_postgres_keeps_them() {
        assert_eq!(executed_statements("EXECUTE p('k')"), ["p"]);
        assert_eq!(executed_statements("execute SetKey ( 'k' )"), ["setkey"]);
        assert_eq!(
            executed_statements(r#"EXPLAIN ANALYZE EXECUTE "Set ""Key"""('k'); ExEcUtE q"#),
            [r#"Set "Key""#, "q"]
        );
        assert_eq!(
            executed_statements("CREATE TABLE t AS EXECUTE x_1$y"),
            ["x_1$y"]
        );
        let long = "a".repeat(70);
        assert_eq!(
            executed_statements(&format!("EXECUTE {long}")),
            ["a".repeat(63)]
        );
    }

    #[test]
    fn other_words_are_not_taken_for_execute() {
        assert!(executed_statements("SELECT executed, myexecute FROM t").is_empty());
        assert!(executed_statements("EXECUTE").is_empty());
        assert!(executed_statements("EXECUTE 'x'").is_empty());
        assert!(executed_statements("SELECT 'EXECUTE p' /* EXECUTE q */").is_empty());
        // A plpgsql EXECUTE of a string: a name no statement has.
        assert_eq!(executed_statements("EXECUTE format('x')"), ["format"]);
    }

    #[test]
    fn secret_words_are_the_literals_and_long_words() {
        let words = secret_words(
            "SELECT qobra_sync.set_destination(qk_live_SECRET1, base_url => 'https://h/x')",
        );
        assert!(words.contains(&"qk_live_SECRET1".to_owned()), "{words:?}");
        assert!(words.contains(&"https://h/x".to_owned()));
        assert!(!words
            .iter()
            .any(|w| w == "qobra_sync" || w == "set_destination"));
        assert_eq!(
            redact("column \"qk_live_secret1\" does not exist", &words),
            "column \"[redacted]\" does not exist",
            "an unquoted word comes back folded to lower case"
        );
        // A literal, even short, is redacted; longest first so no fragment remains.
        let words = secret_words("SELECT qobra_sync.set_destination('abcd1234'::int)");
        assert_eq!(
            redact(
                "invalid input syntax for type integer: \"abcd1234\"",
                &words
            ),
            "invalid input syntax for type integer: \"[redacted]\""
        );
    }

    #[test]
    fn case_free_replacement_keeps_non_ascii_text_intact() {
        assert_eq!(
            replace_ignoring_case("é KEY ü key", "key"),
            "é [redacted] ü [redacted]"
        );
    }
}
