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
//!
//! The pieces: [`lex`] cuts the source into text and action tokens, [`parse`] builds the node
//! tree, [`exec`] walks it against the data calling [`funcs`], and [`keys`] lists the root
//! keys a template reads.

mod exec;
mod funcs;
mod keys;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

pub use exec::{print_value, truthy};
pub use keys::missing_root_keys;

use serde_json::Value;

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
