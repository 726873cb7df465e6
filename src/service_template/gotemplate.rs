//! The part of Go's `text/template` that Zadig service YAML uses (spec/environments.md §1.3):
//! actions `{{ pipeline }}` with `{{-`/`-}}` trimming and `{{/* comments */}}`; fields `.a.b`,
//! `$.a`, `$var.a`; `if`/`else if`/`else`, `range` (with `$i, $v :=`), `with`, `end`; variable
//! declarations; pipes `a | f`; Go's built-in functions `eq ne lt le gt ge and or not len
//! index print`. Anything else (`define`, `template`, `printf`, …) is a [`TemplateError`]
//! naming it and its line, never a silent pass-through.
//!
//! Data is a JSON value (the service variables). Like Go's non-strict mode a missing key prints
//! `<no value>`; [`Mode::Strict`] fails on it instead (Zadig's `missingkey=error`), and
//! [`Mode::Placeholder`] prints `ssssssss` for a missing or empty value (Zadig's stand-in when
//! it reads containers from an unrendered template).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// A template that does not parse or does not execute.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TemplateError {
    /// 1-based line of the template where the offending action starts.
    pub line: usize,
    pub message: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError {
        line,
        message: message.into(),
    })
}

/// How missing keys are treated when executing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Missing key → `<no value>` (Go's default, Zadig's environment rendering).
    Lenient,
    /// Missing key → error `missing keys [k]` (Zadig's `missingkey=error`).
    Strict,
    /// Missing, null or empty value → `ssssssss` (reading containers from a template).
    Placeholder,
}

/// What the placeholder mode prints.
pub const PLACEHOLDER: &str = "ssssssss";

#[derive(Debug, Clone, PartialEq)]
enum Tok {
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

#[derive(Debug, Clone)]
enum Operand {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Lit(Value),
    Func(String),
    Sub(Box<Pipeline>),
}

#[derive(Debug, Clone)]
struct Command(Vec<Operand>);

#[derive(Debug, Clone)]
struct Pipeline {
    decl: Vec<String>,
    cmds: Vec<Command>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(usize, Pipeline),
    If(usize, Pipeline, Vec<Node>, Vec<Node>),
    Range(usize, Pipeline, Vec<Node>, Vec<Node>),
    With(usize, Pipeline, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

/// One raw piece of the source: text, or an action's tokens.
enum Item {
    Text(String),
    Action(usize, Vec<Tok>),
}

fn lex(src: &str) -> Result<Vec<Item>, TemplateError> {
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
    let trimmed = s.trim_start();
    if trimmed.starts_with("/*") {
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
        return err(line, "comment ends before closing delimiter");
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
            b'(' | b')' | b'|' | b',' | b'=' => {
                toks.push(match c {
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'|' => Tok::Pipe,
                    b',' => Tok::Comma,
                    _ => Tok::Assign,
                });
                i += 1;
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            b'"' => {
                let (v, n) = lex_string(&s[i..], line)?;
                toks.push(Tok::Str(v));
                i += n;
            }
            b'`' => {
                let Some(end) = s[i + 1..].find('`') else {
                    return err(line, "unterminated raw string");
                };
                toks.push(Tok::Str(s[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'.' => {
                let n = word_len(&s[i..]);
                let path = &s[i..i + n];
                toks.push(Tok::Field(split_path(path, line)?));
                i += n;
            }
            b'$' => {
                let n = word_len(&s[i..]);
                let word = &s[i..i + n];
                let (name, path) = match word.find('.') {
                    Some(d) => (&word[..d], split_path(&word[d..], line)?),
                    None => (word, Vec::new()),
                };
                toks.push(Tok::Var(name.to_string(), path));
                i += n;
            }
            b'-' | b'+' | b'0'..=b'9' => {
                let n = word_len(&s[i..]);
                let word = &s[i..i + n];
                let int = word.parse::<i64>().ok();
                match word.parse::<f64>() {
                    Ok(f) => toks.push(Tok::Num(f, int)),
                    Err(_) => return err(line, format!("bad number syntax: {word:?}")),
                }
                i += n;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let n = word_len(&s[i..]);
                toks.push(Tok::Ident(s[i..i + n].to_string()));
                i += n;
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return err(line, format!("unexpected {ch:?} in action"));
            }
        }
    }
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

/// How a block list ended.
enum BlockEnd {
    Eof,
    Close(usize),
    Else(usize, Vec<Tok>),
}

struct Parser {
    items: std::vec::IntoIter<Item>,
}

impl Template {
    /// Parse `src`.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut p = Parser {
            items: lex(src)?.into_iter(),
        };
        let (nodes, end) = p.list()?;
        match end {
            BlockEnd::Eof => Ok(Template { nodes }),
            BlockEnd::Close(line) => err(line, "unexpected {{end}}"),
            BlockEnd::Else(line, _) => err(line, "unexpected {{else}}"),
        }
    }
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, BlockEnd), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let (line, toks) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action(line, toks) => (line, toks),
            };
            match toks.first() {
                Some(Tok::Ident(k)) if k == "end" => {
                    if toks.len() > 1 {
                        return err(line, "unexpected tokens after end");
                    }
                    return Ok((nodes, BlockEnd::Close(line)));
                }
                Some(Tok::Ident(k)) if k == "else" => {
                    return Ok((nodes, BlockEnd::Else(line, toks[1..].to_vec())));
                }
                Some(Tok::Ident(k)) if k == "if" || k == "range" || k == "with" => {
                    let kw = k.clone();
                    let node = self.block(&kw, line, &toks[1..])?;
                    nodes.push(node);
                }
                Some(Tok::Ident(k))
                    if matches!(
                        k.as_str(),
                        "define" | "template" | "block" | "break" | "continue"
                    ) =>
                {
                    return err(line, format!("`{k}` actions are not supported"));
                }
                None => return err(line, "missing value for command"),
                _ => nodes.push(Node::Action(line, parse_pipeline(&toks, line)?)),
            }
        }
        Ok((nodes, BlockEnd::Eof))
    }

    fn block(&mut self, kw: &str, line: usize, toks: &[Tok]) -> Result<Node, TemplateError> {
        let pipe = parse_pipeline(toks, line)?;
        if pipe.cmds.is_empty() {
            return err(line, format!("missing value for {kw}"));
        }
        let (body, end) = self.list()?;
        let els = match end {
            BlockEnd::Eof => {
                return err(line, format!("unexpected EOF: `{kw}` has no {{{{end}}}}"));
            }
            BlockEnd::Close(_) => Vec::new(),
            BlockEnd::Else(eline, rest) => {
                if rest.is_empty() {
                    let (els, end) = self.list()?;
                    match end {
                        BlockEnd::Close(_) => els,
                        BlockEnd::Eof => {
                            return err(line, format!("unexpected EOF: `{kw}` has no {{{{end}}}}"));
                        }
                        BlockEnd::Else(l, _) => return err(l, "unexpected second {{else}}"),
                    }
                } else if kw == "if" && rest.first() == Some(&Tok::Ident("if".into())) {
                    // `else if` shares the `end` of the outer `if`.
                    vec![self.block("if", eline, &rest[1..])?]
                } else {
                    return err(eline, "unexpected tokens after else");
                }
            }
        };
        Ok(match kw {
            "if" => Node::If(line, pipe, body, els),
            "range" => Node::Range(line, pipe, body, els),
            _ => Node::With(line, pipe, body, els),
        })
    }
}

fn parse_pipeline(toks: &[Tok], line: usize) -> Result<Pipeline, TemplateError> {
    let mut decl = Vec::new();
    let mut rest = toks;
    if let Some(pos) = toks
        .iter()
        .position(|t| matches!(t, Tok::Declare | Tok::Assign))
    {
        let head = &toks[..pos];
        let ok = head.iter().enumerate().all(|(i, t)| match t {
            Tok::Var(_, p) => i % 2 == 0 && p.is_empty(),
            Tok::Comma => i % 2 == 1,
            _ => false,
        });
        if !ok || head.is_empty() || head.len() > 3 {
            return err(line, "bad variable declaration");
        }
        decl = head
            .iter()
            .filter_map(|t| match t {
                Tok::Var(n, _) => Some(n.clone()),
                _ => None,
            })
            .collect();
        rest = &toks[pos + 1..];
    }
    let mut cmds = Vec::new();
    let mut pos = 0;
    while pos < rest.len() {
        let (cmd, n) = parse_command(&rest[pos..], line)?;
        cmds.push(cmd);
        pos += n;
        if pos < rest.len() {
            if rest[pos] != Tok::Pipe {
                return err(line, "unexpected token in pipeline");
            }
            pos += 1;
            if pos == rest.len() {
                return err(line, "missing command after `|`");
            }
        }
    }
    Ok(Pipeline { decl, cmds })
}

/// One command up to `|`, `)` or the end; returns it and the tokens it used.
fn parse_command(toks: &[Tok], line: usize) -> Result<(Command, usize), TemplateError> {
    let mut ops = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Pipe | Tok::RParen => break,
            Tok::Field(p) => ops.push(Operand::Field(p.clone())),
            Tok::Var(n, p) => ops.push(Operand::Var(n.clone(), p.clone())),
            Tok::Str(s) => ops.push(Operand::Lit(Value::String(s.clone()))),
            Tok::Num(f, int) => ops.push(Operand::Lit(match int {
                Some(n) => Value::from(*n),
                None => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            })),
            Tok::Ident(id) => ops.push(match id.as_str() {
                "true" => Operand::Lit(Value::Bool(true)),
                "false" => Operand::Lit(Value::Bool(false)),
                "nil" => Operand::Lit(Value::Null),
                f if FUNCS.contains(&f) => Operand::Func(f.to_string()),
                f => return err(line, format!("function {f:?} not defined")),
            }),
            Tok::LParen => {
                let close = matching_paren(&toks[i..], line)?;
                let inner = parse_pipeline(&toks[i + 1..i + close], line)?;
                ops.push(Operand::Sub(Box::new(inner)));
                i += close;
            }
            Tok::Declare | Tok::Assign | Tok::Comma => {
                return err(line, "unexpected declaration in command");
            }
        }
        i += 1;
    }
    if ops.is_empty() {
        return err(line, "empty command");
    }
    Ok((Command(ops), i))
}

fn matching_paren(toks: &[Tok], line: usize) -> Result<usize, TemplateError> {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::LParen => depth += 1,
            Tok::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
    }
    err(line, "unclosed left paren")
}

/// The ordering functions, which fail on values of different types.
const ORDERINGS: &[&str] = &["lt", "le", "gt", "ge"];

const FUNCS: &[&str] = &[
    "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "len", "index", "print",
];

/// Execution state: the root data, the variables in scope, the mode, the first missing key.
struct Exec {
    vars: Vec<(String, Value)>,
    mode: Mode,
}

impl Template {
    /// Execute against `data` (a JSON object of the variables).
    pub fn execute(&self, data: &Value, mode: Mode) -> Result<String, TemplateError> {
        let mut ex = Exec {
            vars: vec![("$".to_string(), data.clone())],
            mode,
        };
        let mut out = String::new();
        ex.walk(&self.nodes, data, &mut out)?;
        Ok(out)
    }

    /// The top-level variable keys the template reads from its root data, in first-use order,
    /// with whether each is used as a mapping/list (`.a.b`, ranged over) rather than a scalar.
    pub fn root_keys(&self) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = Vec::new();
        collect_nodes(&self.nodes, true, &mut out);
        out
    }
}

fn add_key(out: &mut Vec<(String, bool)>, path: &[String], structured: bool) {
    let Some(first) = path.first() else { return };
    let structured = structured || path.len() > 1;
    match out.iter_mut().find(|(k, _)| k == first) {
        Some((_, s)) => *s |= structured,
        None => out.push((first.clone(), structured)),
    }
}

fn collect_pipe(p: &Pipeline, root_dot: bool, ranged: bool, out: &mut Vec<(String, bool)>) {
    for Command(ops) in &p.cmds {
        for op in ops {
            match op {
                Operand::Field(path) if root_dot => add_key(out, path, ranged),
                Operand::Var(n, path) if n == "$" => add_key(out, path, ranged),
                Operand::Sub(inner) => collect_pipe(inner, root_dot, false, out),
                _ => {}
            }
        }
    }
}

fn collect_nodes(nodes: &[Node], root_dot: bool, out: &mut Vec<(String, bool)>) {
    for n in nodes {
        match n {
            Node::Text(_) => {}
            Node::Action(_, p) => collect_pipe(p, root_dot, false, out),
            Node::If(_, p, a, b) => {
                collect_pipe(p, root_dot, false, out);
                collect_nodes(a, root_dot, out);
                collect_nodes(b, root_dot, out);
            }
            Node::Range(_, p, a, b) | Node::With(_, p, a, b) => {
                let ranged = matches!(n, Node::Range(..));
                collect_pipe(p, root_dot, ranged, out);
                collect_nodes(a, false, out);
                collect_nodes(b, root_dot, out);
            }
        }
    }
}

/// Go's truth: false, 0, nil and empty strings, lists and maps are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A value as Go's `fmt.Print` shows it (`<no value>` for a missing one).
pub fn print_value(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(print_value).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let mut s = String::from("map[");
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                let _ = write!(s, "{k}:{}", print_value(&o[k.as_str()]));
            }
            s.push(']');
            s
        }
    }
}

/// A value reached through fields; `None` when a key is missing.
fn lookup(base: &Value, path: &[String]) -> Option<Value> {
    let mut cur = base;
    for seg in path {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur.clone())
}

impl Exec {
    fn walk(&mut self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), TemplateError> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(line, p) => {
                    let v = self.pipeline(p, dot, *line)?;
                    if p.decl.is_empty() {
                        match (&v, self.mode) {
                            (Value::Null, Mode::Placeholder) => out.push_str(PLACEHOLDER),
                            (Value::String(s), Mode::Placeholder) if s.is_empty() => {
                                out.push_str(PLACEHOLDER);
                            }
                            _ => out.push_str(&print_value(&v)),
                        }
                    }
                }
                Node::If(line, p, a, b) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(p, dot, *line)?;
                    let branch = if truthy(&v) { a } else { b };
                    self.walk(branch, dot, out)?;
                    self.vars.truncate(mark);
                }
                Node::With(line, p, a, b) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(p, dot, *line)?;
                    if truthy(&v) {
                        self.walk(a, &v, out)?;
                    } else {
                        self.walk(b, dot, out)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range(line, p, a, b) => self.range(*line, p, a, b, dot, out)?,
            }
        }
        Ok(())
    }

    fn range(
        &mut self,
        line: usize,
        p: &Pipeline,
        body: &[Node],
        els: &[Node],
        dot: &Value,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        let mark = self.vars.len();
        let plain = Pipeline {
            decl: Vec::new(),
            cmds: p.cmds.clone(),
        };
        let v = self.pipeline(&plain, dot, line)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| (Value::from(i), x.clone()))
                .collect(),
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                keys.into_iter()
                    .map(|k| (Value::String(k.clone()), o[k.as_str()].clone()))
                    .collect()
            }
            Value::Null => Vec::new(),
            Value::Number(n) => match n.as_i64() {
                Some(count) if count >= 0 => (0..count)
                    .map(|i| (Value::from(i), Value::from(i)))
                    .collect(),
                _ => return err(line, format!("range can't iterate over {n}")),
            },
            other => {
                return err(
                    line,
                    format!("range can't iterate over {}", print_value(other)),
                );
            }
        };
        if items.is_empty() {
            self.walk(els, dot, out)?;
        }
        for (k, x) in items {
            let inner = self.vars.len();
            match p.decl.as_slice() {
                [] => {}
                [one] => self.vars.push((one.clone(), x.clone())),
                [ki, vi, ..] => {
                    self.vars.push((ki.clone(), k));
                    self.vars.push((vi.clone(), x.clone()));
                }
            }
            self.walk(body, &x, out)?;
            self.vars.truncate(inner);
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value, line: usize) -> Result<Value, TemplateError> {
        let mut last: Option<Value> = None;
        for cmd in &p.cmds {
            last = Some(self.command(cmd, dot, line, last)?);
        }
        let v = last.unwrap_or(Value::Null);
        for name in &p.decl {
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn command(
        &mut self,
        Command(ops): &Command,
        dot: &Value,
        line: usize,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        if let Some(Operand::Func(f)) = ops.first() {
            let mut args = Vec::new();
            for op in &ops[1..] {
                args.push(self.operand(op, dot, line)?);
            }
            args.extend(piped);
            return match call(f, &args, line) {
                // Placeholder values (`""`) stand in for numbers too: an ordering between
                // them and a number is false rather than a failed save.
                Err(_) if self.mode == Mode::Placeholder && ORDERINGS.contains(&f.as_str()) => {
                    Ok(Value::Bool(false))
                }
                other => other,
            };
        }
        if ops.len() > 1 || piped.is_some() {
            return err(line, "can't give argument to non-function");
        }
        self.operand(&ops[0], dot, line)
    }

    fn operand(&mut self, op: &Operand, dot: &Value, line: usize) -> Result<Value, TemplateError> {
        match op {
            Operand::Lit(v) => Ok(v.clone()),
            Operand::Func(f) => call(f, &[], line),
            Operand::Sub(p) => self.pipeline(p, dot, line),
            Operand::Field(path) => self.field(dot, path, line),
            Operand::Var(name, path) => {
                let Some((_, base)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
                    return err(line, format!("undefined variable: {name}"));
                };
                let base = base.clone();
                self.field(&base, path, line)
            }
        }
    }

    fn field(&self, base: &Value, path: &[String], line: usize) -> Result<Value, TemplateError> {
        match lookup(base, path) {
            Some(v) => Ok(v),
            None if self.mode == Mode::Strict => {
                let key = path.last().cloned().unwrap_or_default();
                err(line, format!("missing keys [{key}]"))
            }
            None => Ok(Value::Null),
        }
    }
}

fn cmp_values(a: &Value, b: &Value, line: usize) -> Result<std::cmp::Ordering, TemplateError> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            Ok(x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal))
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => err(line, "incompatible types for comparison"),
    }
}

fn eq_values(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn call(f: &str, args: &[Value], line: usize) -> Result<Value, TemplateError> {
    let need = |n: usize| -> Result<(), TemplateError> {
        if args.len() < n {
            return err(
                line,
                format!(
                    "wrong number of args for {f}: want at least {n}, got {}",
                    args.len()
                ),
            );
        }
        Ok(())
    };
    Ok(match f {
        "eq" => {
            need(2)?;
            Value::Bool(args[1..].iter().any(|b| eq_values(&args[0], b)))
        }
        "ne" => {
            need(2)?;
            Value::Bool(!eq_values(&args[0], &args[1]))
        }
        "lt" | "le" | "gt" | "ge" => {
            need(2)?;
            let o = cmp_values(&args[0], &args[1], line)?;
            Value::Bool(match f {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "and" => {
            need(1)?;
            args.iter()
                .find(|a| !truthy(a))
                .unwrap_or(&args[args.len() - 1])
                .clone()
        }
        "or" => {
            need(1)?;
            args.iter()
                .find(|a| truthy(a))
                .unwrap_or(&args[args.len() - 1])
                .clone()
        }
        "not" => {
            need(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "len" => {
            need(1)?;
            Value::from(match &args[0] {
                Value::String(s) => s.len(),
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                other => return err(line, format!("len of {}", print_value(other))),
            })
        }
        "index" => {
            need(1)?;
            let mut cur = args[0].clone();
            for k in &args[1..] {
                cur = match (&cur, k) {
                    (Value::Array(a), Value::Number(n)) => n
                        .as_u64()
                        .and_then(|i| a.get(usize::try_from(i).ok()?))
                        .cloned()
                        .ok_or_else(|| TemplateError {
                            line,
                            message: format!("index out of range: {n}"),
                        })?,
                    (Value::Object(o), Value::String(s)) => {
                        o.get(s).cloned().unwrap_or(Value::Null)
                    }
                    _ => return err(line, "can't index item"),
                };
            }
            cur
        }
        _ => {
            // print: Go adds spaces between operands when neither is a string.
            let mut s = String::new();
            for (i, a) in args.iter().enumerate() {
                if i > 0 && !a.is_string() && !args[i - 1].is_string() {
                    s.push(' ');
                }
                s.push_str(&print_value(a));
            }
            Value::String(s)
        }
    })
}

/// The keys of `data` that `tpl` reads but `data` lacks (top level only).
pub fn missing_root_keys(tpl: &Template, data: &Map<String, Value>) -> BTreeSet<String> {
    tpl.root_keys()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !data.contains_key(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, data: Value) -> String {
        Template::parse(src)
            .unwrap()
            .execute(&data, Mode::Lenient)
            .unwrap()
    }

    #[test]
    fn fields_and_trimming() {
        assert_eq!(
            run("a: {{.a}}\nb: {{ .b.c }}", json!({"a": 1, "b": {"c": "x"}})),
            "a: 1\nb: x"
        );
        assert_eq!(run("x  {{- .a -}}  y", json!({"a": "1"})), "x1y");
        assert_eq!(run("{{/* note */}}z", json!({})), "z");
        assert_eq!(run("{{.missing}}", json!({})), "<no value>");
        assert_eq!(run("{{.a.b}}", json!({})), "<no value>");
    }

    #[test]
    fn control_flow() {
        let src = "{{if eq .env \"prod\"}}P{{else if .x}}X{{else}}N{{end}}";
        assert_eq!(run(src, json!({"env": "prod"})), "P");
        assert_eq!(run(src, json!({"env": "dev", "x": true})), "X");
        assert_eq!(run(src, json!({"env": "dev"})), "N");
        assert_eq!(
            run("{{range .l}}[{{.}}]{{end}}", json!({"l": [1, 2]})),
            "[1][2]"
        );
        assert_eq!(
            run(
                "{{range $i, $v := .l}}{{$i}}={{$v.n}};{{end}}",
                json!({"l": [{"n": "a"}]})
            ),
            "0=a;"
        );
        assert_eq!(
            run("{{with .m}}{{.k}}{{end}}", json!({"m": {"k": "v"}})),
            "v"
        );
        assert_eq!(
            run("{{range .l}}x{{else}}empty{{end}}", json!({"l": []})),
            "empty"
        );
        assert_eq!(run("{{$x := .a}}{{$x}}", json!({"a": "q"})), "q");
        assert_eq!(run("{{.a | len}}", json!({"a": "abc"})), "3");
        assert_eq!(run("{{index .m \"k\"}}", json!({"m": {"k": 7}})), "7");
    }

    #[test]
    fn strict_and_placeholder() {
        let t = Template::parse("image: {{.image}}").unwrap();
        let e = t.execute(&json!({}), Mode::Strict).unwrap_err();
        assert_eq!(e.message, "missing keys [image]");
        assert_eq!(
            t.execute(&json!({"image": ""}), Mode::Placeholder).unwrap(),
            "image: ssssssss"
        );
        let cmp = Template::parse("{{if gt .n 1}}many{{end}}").unwrap();
        assert!(cmp.execute(&json!({"n": ""}), Mode::Strict).is_err());
        assert_eq!(
            cmp.execute(&json!({"n": ""}), Mode::Placeholder).unwrap(),
            ""
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = Template::parse("a\nb\n{{if .x}}").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("end"), "{e}");
        let e = Template::parse("a\n{{printf \"%d\" 1}}").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("printf"), "{e}");
        assert!(Template::parse("{{.a").is_err());
        assert!(Template::parse("{{end}}").is_err());
        assert!(Template::parse("{{define \"x\"}}{{end}}").is_err());
    }

    #[test]
    fn root_keys_in_order() {
        let t = Template::parse(
            "{{.a}} {{.b.c}} {{range .l}}{{.inner}}{{end}} {{if eq .e \"x\"}}{{$.f}}{{end}} {{.a}}",
        )
        .unwrap();
        assert_eq!(
            t.root_keys(),
            vec![
                ("a".into(), false),
                ("b".into(), true),
                ("l".into(), true),
                ("e".into(), false),
                ("f".into(), false)
            ]
        );
    }

    proptest::proptest! {
        /// Text without delimiters renders to itself; lexing never panics on any input.
        #[test]
        fn plain_text_is_identity(s in "[^{}]*") {
            proptest::prop_assert_eq!(run(&s, json!({})), s);
        }

        #[test]
        fn never_panics(s in ".{0,64}") {
            if let Ok(t) = Template::parse(&s) {
                let _ = t.execute(&json!({"a": [1, {"b": "c"}]}), Mode::Strict);
            }
        }
    }
}
