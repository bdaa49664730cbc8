//! Requirement rules on values (`docs/qobra-api.md` §3, §6.4): what makes an id and a user value
//! acceptable.
//!
//! Table-level rules (id present, not NULL, unique; name present) are checked by the extension
//! with SQL over the whole snapshot; the per-value rules below are shared by `validate()`,
//! `preview()` and the push, so all three judge a row the same way.

/// Why `value` is not an email, or `None` when it is one.
///
/// The rule is deliberately plain: one `@`, a local part of 1–64 characters, a domain of dotted
/// labels of letters, digits and hyphens, no spaces, 254 characters at most.
pub fn email_problem(value: &str) -> Option<String> {
    let not = |why: &str| Some(format!("user value {value:?} is not an email ({why})"));
    if value.len() > 254 {
        return not("longer than 254 characters");
    }
    // Checked per byte when the value is ASCII (the common case, run for every row pushed);
    // per character otherwise, with the same rule.
    let ascii = value.is_ascii();
    let spaced = if ascii {
        value
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    } else {
        value.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if spaced {
        return not("it contains spaces or control characters");
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return not("no @");
    };
    if local.is_empty() || local.len() > 64 || local.contains('@') {
        return not("bad part before @");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && if ascii {
                l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            } else {
                l.chars().all(|c| c.is_alphanumeric() || c == '-')
            }
    };
    let mut labels = 0;
    for label in domain.split('.') {
        if !label_ok(label) {
            return not("bad domain");
        }
        labels += 1;
    }
    if labels < 2 {
        return not("bad domain");
    }
    None
}

/// Whether `value` is an email by the rule of [`email_problem`], all ASCII, with nothing JSON
/// must escape: the common case, checked in one pass over the bytes (it runs for every user
/// value pushed). `false` says nothing more: `email_problem` then decides.
pub fn is_plain_email(value: &str) -> bool {
    let b = value.as_bytes();
    let Some(at) = b.iter().position(|&c| c == b'@') else {
        return false;
    };
    let (local, domain) = (&b[..at], &b[at + 1..]);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .iter()
            .all(|&c| c.is_ascii_graphic() && c != b'"' && c != b'\\');
    if !local_ok || b.len() > 254 {
        return false;
    }
    // Dotted labels of letters, digits and hyphens (no '@' among them), two at least, none
    // empty or with a hyphen at either end.
    let (mut labels, mut label_start) = (1, 0);
    for (i, &c) in domain.iter().enumerate() {
        match c {
            b'.' => {
                if !label_ok(&domain[label_start..i]) {
                    return false;
                }
                labels += 1;
                label_start = i + 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'-' => {}
            _ => return false,
        }
    }
    labels >= 2 && label_ok(&domain[label_start..])
}

/// Whether a domain label of letters, digits and hyphens is neither empty nor starts or ends
/// with a hyphen.
fn label_ok(label: &[u8]) -> bool {
    !label.is_empty() && label[0] != b'-' && label[label.len() - 1] != b'-'
}

/// Why `value` cannot be a record id, or `None` when it can (any non-blank text).
pub fn id_problem(value: &str) -> Option<String> {
    if value.trim().is_empty() {
        Some("the id is empty".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "ana@acme.com",
            "a.b+tag@sub.acme.co.uk",
            "x@b-c.io",
            "élise@société.fr",
        ] {
            assert_eq!(email_problem(ok), None, "{ok}");
        }
        for plain in [
            "ana@acme.com",
            "a.b+tag@sub.acme.co.uk",
            "x@b-c.io",
            "o'neil@x.io",
        ] {
            assert!(is_plain_email(plain), "{plain}");
        }
        // Valid, but needing an escape or outside ASCII: left to the general rule.
        for not_plain in ["a\"b@acme.com", "a\\b@acme.com", "élise@société.fr"] {
            assert!(!is_plain_email(not_plain), "{not_plain}");
            assert_eq!(email_problem(not_plain), None, "{not_plain}");
        }
        for bad in [
            "",
            "ana",
            "ana@",
            "@acme.com",
            "ana@acme",
            "ana @acme.com",
            "ana@acme..com",
            "ana@-acme.com",
            "a@b@c.com",
            "ana@acme.com\n",
            "ana@acme.com\u{b}",
            "ana@acme.c_m",
            "ana@acme.com-",
            "élise@société fr.fr",
            "élise@soci_été.fr",
        ] {
            assert!(email_problem(bad).is_some(), "{bad:?}");
            assert!(!is_plain_email(bad), "{bad:?}");
        }
        assert!(email_problem(&format!("{}@acme.com", "a".repeat(65))).is_some());
    }

    #[test]
    fn ids() {
        assert_eq!(id_problem("42"), None);
        assert!(id_problem("").is_some());
        assert!(id_problem("  ").is_some());
    }
}
