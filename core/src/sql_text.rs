//! SQL text as tokens, for what must be known of a statement where PostgreSQL's parser cannot
//! run (the log hook): the words it is made of, its string literals, its statements. Comments
//! and literals are read as PostgreSQL's lexer reads them, so that neither can fake a word nor
//! hide one: `/* set_destination */` names no function, and `'set_destination'` is a string.

/// One token of SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An identifier or a keyword: a bare one folded to lower case (as PostgreSQL folds it), a
    /// quoted one as written.
    Word(String),
    /// A string literal's content (`'…'` with `''` inside, `E'…'`, `$tag$…$tag$`), undecoded.
    Literal(String),
    /// A character of punctuation: `(`, `)`, `,`, `;`, `.`, `[`, `]`.
    Punct(char),
    /// Anything else: a number, a parameter (`$1`), a run of operator characters.
    Other,
}

/// The tokens of `sql`. Unterminated literals and comments run to the end of the text.
pub fn tokens(sql: &str) -> Vec<Token> {
    let mut lexer = Lexer { text: sql, at: 0 };
    let mut out = vec![];
    while let Some(token) = lexer.next_token() {
        out.push(token);
    }
    out
}

/// The statements of token list `tokens`, split at top-level semicolons (empty ones left out).
pub fn statements(tokens: &[Token]) -> Vec<&[Token]> {
    tokens
        .split(|t| *t == Token::Punct(';'))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether a statement runs code written in its literals: `DO …` or `CREATE [OR REPLACE]
/// FUNCTION|PROCEDURE …`.
pub fn holds_code(statement: &[Token]) -> bool {
    let words: Vec<&str> = statement
        .iter()
        .take(4)
        .map(|t| match t {
            Token::Word(w) => w.as_str(),
            _ => "",
        })
        .collect();
    match words.as_slice() {
        ["do", ..] => true,
        ["create", "or", "replace", kind] | ["create", kind, ..] => {
            matches!(*kind, "function" | "procedure")
        }
        _ => false,
    }
}

/// The contents of the string literals of `sql`.
pub fn literals(sql: &str) -> Vec<String> {
    tokens(sql)
        .into_iter()
        .filter_map(|t| match t {
            Token::Literal(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Reads tokens off SQL text.
struct Lexer<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Lexer<'a> {
    /// The rest of the text.
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    /// The next token, skipping whitespace and comments; None at the end.
    fn next_token(&mut self) -> Option<Token> {
        self.skip_blanks();
        let rest = self.rest();
        let c = rest.chars().next()?;
        let token = match c {
            '\'' => self.quoted_literal(false),
            '"' => self.quoted_word(),
            '$' => self.dollar(),
            '(' | ')' | ',' | ';' | '.' | '[' | ']' => {
                self.at += 1;
                Token::Punct(c)
            }
            c if c.is_ascii_digit() => {
                self.run(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
            }
            c if is_word_start(c) => self.word_or_prefixed_literal(),
            _ => self.run(|c| "+-*/<>=~!@#%^&|`?:".contains(c)),
        };
        Some(token)
    }

    /// Skips whitespace, `-- …` line comments and nested `/* … */` comments.
    fn skip_blanks(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.at += rest.len() - trimmed.len();
            if trimmed.starts_with("--") {
                self.at += trimmed.find(['\n', '\r']).unwrap_or(trimmed.len());
            } else if trimmed.starts_with("/*") {
                self.at += block_comment_len(trimmed);
            } else {
                return;
            }
        }
    }

    /// A run of characters that `more` accepts (at least the first): an operator or a number.
    fn run(&mut self, more: impl Fn(char) -> bool) -> Token {
        let rest = self.rest();
        let first = rest.chars().next().map_or(1, char::len_utf8);
        let len = rest[first..]
            .char_indices()
            .find(|&(_, c)| !more(c))
            .map_or(rest.len(), |(i, _)| first + i);
        self.at += len;
        Token::Other
    }

    /// A bare word, or the prefix of a literal (`E'…'`, `B'…'`, `X'…'`, `N'…'`, `U&'…'`).
    fn word_or_prefixed_literal(&mut self) -> Token {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(_, c)| !is_word_char(c))
            .map_or(rest.len(), |(i, _)| i);
        let word = rest[..len].to_ascii_lowercase();
        let after = &rest[len..];
        if after.starts_with('\'') && matches!(word.as_str(), "e" | "b" | "x" | "n") {
            self.at += len;
            return self.quoted_literal(word == "e");
        }
        if word == "u" && after.starts_with("&'") {
            self.at += len + 1;
            return self.quoted_literal(false);
        }
        self.at += len;
        Token::Word(word)
    }

    /// A `'…'` literal starting here; backslash escapes count when `escapes` (`E'…'`).
    fn quoted_literal(&mut self, escapes: bool) -> Token {
        let body = &self.rest()[1..];
        let mut content = String::new();
        let mut chars = body.char_indices().peekable();
        let mut end = body.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' if escapes => {
                    content.push(c);
                    if let Some((_, next)) = chars.next() {
                        content.push(next);
                    }
                }
                '\'' if matches!(chars.peek(), Some((_, '\''))) => {
                    chars.next();
                    content.push('\'');
                }
                '\'' => {
                    end = i + 1;
                    break;
                }
                _ => content.push(c),
            }
        }
        self.at += 1 + end;
        Token::Literal(content)
    }

    /// A `"…"` identifier starting here (`""` is a quote), as written.
    fn quoted_word(&mut self) -> Token {
        let body = &self.rest()[1..];
        let mut word = String::new();
        let mut chars = body.char_indices().peekable();
        let mut end = body.len();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if matches!(chars.peek(), Some((_, '"'))) {
                    chars.next();
                } else {
                    end = i + 1;
                    break;
                }
            }
            word.push(c);
        }
        self.at += 1 + end;
        Token::Word(word)
    }

    /// A `$tag$…$tag$` literal, or a parameter (`$1`) or a lone `$`.
    fn dollar(&mut self) -> Token {
        let rest = self.rest();
        let Some(close) = rest[1..].find('$') else {
            return self.run(|c| c.is_ascii_digit());
        };
        let tag = &rest[1..1 + close];
        let is_tag =
            tag.chars().all(is_word_char) && !tag.starts_with(|c: char| c.is_ascii_digit());
        if !is_tag {
            return self.run(|c| c.is_ascii_digit());
        }
        let delimiter = &rest[..close + 2];
        let body = &rest[delimiter.len()..];
        let (content, consumed) = match body.find(delimiter) {
            Some(end) => (&body[..end], delimiter.len() + end + delimiter.len()),
            None => (body, rest.len()),
        };
        self.at += consumed;
        Token::Literal(content.to_owned())
    }
}

/// The length of the nested `/* … */` comment `text` starts with (all of it, unterminated).
fn block_comment_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i + 1 < bytes.len() {
        match &bytes[i..i + 2] {
            b"/*" => {
                depth += 1;
                i += 2;
            }
            b"*/" => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    text.len()
}

/// Whether `c` may start a bare identifier.
fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

/// Whether `c` may continue a bare identifier.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Token::*;

    fn w(s: &str) -> Token {
        Word(s.to_owned())
    }

    fn lit(s: &str) -> Token {
        Literal(s.to_owned())
    }

    #[test]
    fn words_are_folded_quoted_ones_kept() {
        assert_eq!(
            tokens(r#"SELECT Qobra_Sync."Set ""X""" ( 1 )"#),
            [
                w("select"),
                w("qobra_sync"),
                Punct('.'),
                w(r#"Set "X""#),
                Punct('('),
                Other,
                Punct(')')
            ]
        );
    }

    #[test]
    fn comments_hide_nothing_and_fake_nothing() {
        assert_eq!(
            tokens("SELECT /* set_destination /* nested */ still */ 1 -- set_destination\n, x"),
            [w("select"), Other, Punct(','), w("x")]
        );
        assert_eq!(
            tokens("set_destination/**/("),
            [w("set_destination"), Punct('(')]
        );
    }

    #[test]
    fn literals_of_every_kind() {
        assert_eq!(
            literals(r"SELECT f('a''b', E'c\'d', $$e$f$$, $k$x'y$k$, $1, U&'g', X'1F', 'tail"),
            ["a'b", r"c\'d", "e$f", "x'y", "g", "1F", "tail"]
        );
        assert_eq!(tokens("$1 + $2x"), [Other, Other, Other, w("x")]);
        assert_eq!(tokens("e'x' ex'y'"), [lit("x"), w("ex"), lit("y")]);
    }

    #[test]
    fn statements_and_code() {
        let toks = tokens("SELECT 1; DO $$ BEGIN END $$; ; CREATE OR REPLACE FUNCTION f() AS 'x'");
        let stmts = statements(&toks);
        assert_eq!(stmts.len(), 3);
        assert_eq!(
            stmts.iter().map(|s| holds_code(s)).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert!(holds_code(&tokens("create procedure p() as $$ $$")));
        assert!(!holds_code(&tokens("CREATE TABLE function (x int)")));
    }

    #[test]
    fn unterminated_text_ends_cleanly() {
        for text in ["'abc", "\"abc", "$q$abc", "/* abc", "E'\\", "$", "U&", "é"] {
            let _ = tokens(text);
        }
        assert_eq!(tokens("x /* y"), [w("x")]);
    }
}
