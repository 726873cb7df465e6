//! Lexing: the source cut into text and actions, each action into tokens.

use super::{TemplateError, err};

/// One token of an action.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(f64, Option<i64>),
    Ident(String),
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

/// One raw piece of the source: text, or an action's tokens.
pub(super) enum Item {
    Text(String),
    Action(usize, Vec<Tok>),
}

/// The source as text and actions (with their line).
pub(super) fn lex(src: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut line = 1usize;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_string();
        line += text.matches('\n').count();
        let mut body = &rest[start + 2..];
        if body.starts_with("- ") || body.starts_with("-\t") || body.starts_with("-\n") {
            text = text.trim_end().to_string();
            body = &body[1..];
        }
        if !text.is_empty() {
            items.push(Item::Text(text));
        }
        let action_line = line;
        let (toks, consumed, trim_right) = lex_action(body, action_line)?;
        line += body[..consumed].matches('\n').count();
        if let Some(toks) = toks {
            items.push(Item::Action(action_line, toks));
        }
        rest = &body[consumed..];
        if trim_right {
            let trimmed = rest.trim_start();
            line += rest[..rest.len() - trimmed.len()].matches('\n').count();
            rest = trimmed;
        }
    }
    if !rest.is_empty() {
        items.push(Item::Text(rest.to_string()));
    }
    Ok(items)
}

/// Tokens of one action (None for a comment), bytes consumed up to and including `}}`, and
/// whether it ends with `-}}`.
fn lex_action(s: &str, line: usize) -> Result<(Option<Vec<Tok>>, usize, bool), TemplateError> {
    if s.trim_start().starts_with("/*") {
        return lex_comment(s, line);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut toks = Vec::new();
    loop {
        let Some(&c) = b.get(i) else {
            return err(line, "unclosed action: missing `}}`");
        };
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                if s[i..].trim_start().starts_with("-}}") {
                    let j = i + (s[i..].len() - s[i..].trim_start().len());
                    return Ok((Some(toks), j + 3, true));
                }
                i += 1;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Ok((Some(toks), i + 2, false)),
            _ => {
                let (tok, n) = lex_token(&s[i..], line)?;
                toks.push(tok);
                i += n;
            }
        }
    }
}

/// A `{{/* comment */}}` (`s` is what follows `{{`): as [`lex_action`] answers.
fn lex_comment(s: &str, line: usize) -> Result<(Option<Vec<Tok>>, usize, bool), TemplateError> {
    let Some(end) = s.find("*/") else {
        return err(line, "unclosed comment");
    };
    let after = &s[end + 2..];
    if let Some(a) = after.strip_prefix("}}") {
        return Ok((None, s.len() - a.len(), false));
    }
    if let Some(a) = after.strip_prefix(" -}}") {
        return Ok((None, s.len() - a.len(), true));
    }
    err(line, "comment ends before closing delimiter")
}

/// The token `s` starts with (not a space, not `}}`) and its length in bytes.
fn lex_token(s: &str, line: usize) -> Result<(Tok, usize), TemplateError> {
    let b = s.as_bytes();
    let Some(&c) = b.first() else {
        return err(line, "unclosed action: missing `}}`");
    };
    Ok(match c {
        b'(' => (Tok::LParen, 1),
        b')' => (Tok::RParen, 1),
        b'|' => (Tok::Pipe, 1),
        b',' => (Tok::Comma, 1),
        b'=' => (Tok::Assign, 1),
        b':' if b.get(1) == Some(&b'=') => (Tok::Declare, 2),
        b'"' => {
            let (v, n) = lex_string(s, line)?;
            (Tok::Str(v), n)
        }
        b'`' => {
            let Some(end) = s[1..].find('`') else {
                return err(line, "unterminated raw string");
            };
            (Tok::Str(s[1..1 + end].to_string()), end + 2)
        }
        b'.' => {
            let n = word_len(s);
            (Tok::Field(split_path(&s[..n], line)?), n)
        }
        b'$' => {
            let n = word_len(s);
            let word = &s[..n];
            let (name, path) = match word.find('.') {
                Some(d) => (&word[..d], split_path(&word[d..], line)?),
                None => (word, Vec::new()),
            };
            (Tok::Var(name.to_string(), path), n)
        }
        b'-' | b'+' | b'0'..=b'9' => {
            let n = word_len(s);
            let word = &s[..n];
            let int = word.parse::<i64>().ok();
            match word.parse::<f64>() {
                Ok(f) => (Tok::Num(f, int), n),
                Err(_) => return err(line, format!("bad number syntax: {word:?}")),
            }
        }
        c if c.is_ascii_alphabetic() || c == b'_' => {
            let n = word_len(s);
            (Tok::Ident(s[..n].to_string()), n)
        }
        _ => {
            let ch = s.chars().next().unwrap_or('?');
            return err(line, format!("unexpected {ch:?} in action"));
        }
    })
}

fn word_len(s: &str) -> usize {
    let first = s.chars().next().map_or(0, char::len_utf8);
    first
        + s[first..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(s.len() - first)
}

fn split_path(path: &str, line: usize) -> Result<Vec<String>, TemplateError> {
    if path == "." {
        return Ok(Vec::new());
    }
    let parts: Vec<String> = path
        .trim_start_matches('.')
        .split('.')
        .map(str::to_string)
        .collect();
    if parts.iter().any(String::is_empty) {
        return err(line, format!("bad field {path:?}"));
    }
    Ok(parts)
}

fn lex_string(s: &str, line: usize) -> Result<(String, usize), TemplateError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, e @ ('\\' | '"' | '\''))) => out.push(e),
                _ => return err(line, "unsupported escape in string"),
            },
            '\n' => break,
            c => out.push(c),
        }
    }
    err(line, "unterminated quoted string")
}
