//! Execution: the node tree walked against the data, with Go's printing and truth.

use std::fmt::Write as _;

use serde_json::Value;

use super::funcs::{ORDERINGS, call};
use super::{Command, Mode, Node, Operand, PLACEHOLDER, Pipeline, Template, TemplateError, err};

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
