//! The lexical layer of the parser: whitespace and comments, words, names, strings, and
//! "expected X, found Y" errors. Positions are byte offsets into the text, always on a character
//! boundary.

use super::{err, line_col, show, PResult, Parser};
use crate::print::is_name_char;

/// Characters of a word: numbers, `true`/`false`, op names, dtypes, enum members.
pub(super) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-')
}

impl<'a> Parser<'a> {
    pub(super) fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    pub(super) fn skip_ws(&mut self) {
        loop {
            let r = self.rest();
            if r.starts_with("//") {
                self.pos += r.find('\n').unwrap_or(r.len());
            } else if let Some(c) = r.chars().next().filter(|c| c.is_whitespace()) {
                self.pos += c.len_utf8();
            } else {
                return;
            }
        }
    }

    pub(super) fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.rest().chars().next()
    }

    /// What is at the cursor, for messages.
    pub(super) fn found(&mut self) -> String {
        match self.peek() {
            None => "end of file".into(),
            Some(c) if is_word_char(c) => {
                let w: String =
                    self.rest().chars().take_while(|&c| is_word_char(c)).take(40).collect();
                format!("'{w}'")
            }
            Some(c) => format!("'{c}'"),
        }
    }

    pub(super) fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    pub(super) fn expect(&mut self, c: char, msg: &str) -> PResult<()> {
        if self.eat(c) {
            return Ok(());
        }
        let found = self.found();
        err(self.pos, format!("{msg}, found {found}"))
    }

    pub(super) fn peek_word(&mut self) -> &'a str {
        self.skip_ws();
        let r = self.rest();
        let n = r.find(|c: char| !is_word_char(c)).unwrap_or(r.len());
        &r[..n]
    }

    pub(super) fn word(&mut self, what: &str) -> PResult<(usize, &'a str)> {
        let w = self.peek_word();
        if w.is_empty() {
            let found = self.found();
            return err(self.pos, format!("expected {what}, found {found}"));
        }
        let at = self.pos;
        self.pos += w.len();
        Ok((at, w))
    }

    pub(super) fn keyword(&mut self, kw: &str, msg: &str) -> PResult<()> {
        if self.peek_word() == kw {
            self.pos += kw.len();
            return Ok(());
        }
        let found = self.found();
        err(self.pos, format!("{msg}, found {found}"))
    }

    pub(super) fn uint<T: std::str::FromStr>(&mut self, what: &str) -> PResult<T> {
        let (at, w) = self.word(what)?;
        w.parse().or_else(|_| err(at, format!("expected {what}, found '{w}'")))
    }

    pub(super) fn string(&mut self) -> PResult<String> {
        let start = self.pos;
        self.expect('"', "expected '\"'")?;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\n' => return err(self.pos + i, "newline in a string (write \\n)"),
                '\\' => {
                    let at = self.pos + i;
                    match chars.next().map(|(_, c)| c) {
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some('t') => out.push('\t'),
                        Some('u') => {
                            let body: String =
                                chars.by_ref().map(|(_, c)| c).take_while(|&c| c != '}').collect();
                            let c = body
                                .strip_prefix('{')
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32);
                            match c {
                                Some(c) => out.push(c),
                                None => return err(at, "bad \\u{...} escape in a string"),
                            }
                        }
                        _ => {
                            return err(
                                at,
                                "unknown escape in a string (use \\\" \\\\ \\n \\r \\t \\u{..})",
                            )
                        }
                    }
                }
                c => out.push(c),
            }
        }
        err(start, "unterminated string")
    }

    /// A name right after a sigil (or after `graph`): bare or quoted.
    pub(super) fn name(&mut self, after: &str) -> PResult<String> {
        let r = self.rest();
        if r.starts_with('"') {
            return self.string();
        }
        let mut n = r.find(|c: char| !is_name_char(c)).unwrap_or(r.len());
        if let Some(k) = r[..n].find("//") {
            n = k;
        }
        if n == 0 {
            let found = self.found();
            return err(self.pos, format!("expected a name after {after}, found {found}"));
        }
        self.pos += n;
        Ok(r[..n].to_string())
    }

    /// `sigil name` (no space between); returns (position, name).
    pub(super) fn sigil_name(&mut self, sigil: char, msg: &str) -> PResult<(usize, String)> {
        self.skip_ws();
        let at = self.pos;
        if !self.rest().starts_with(sigil) {
            let found = self.found();
            return err(at, format!("{msg}, found {found}"));
        }
        self.pos += 1;
        let name = self.name(if sigil == '%' { "'%'" } else { "'@'" })?;
        if name.is_empty() {
            return err(at, "a value name cannot be empty");
        }
        Ok((at, name))
    }

    pub(super) fn define(&mut self, at: usize, sigil: char, name: &str) -> PResult<()> {
        if let Some(&prev) = self.defined_at.get(name) {
            let (line, _) = line_col(self.src, prev);
            return err(
                at,
                format!("value {} is already defined (line {line})", show(sigil, name)),
            );
        }
        self.defined_at.insert(name.to_string(), at);
        Ok(())
    }
}
