//! The root keys a template reads (for variable lists and missing-key checks).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{Command, Node, Operand, Pipeline, Template};

impl Template {
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

/// The keys of `data` that `tpl` reads but `data` lacks (top level only).
pub fn missing_root_keys(tpl: &Template, data: &Map<String, Value>) -> BTreeSet<String> {
    tpl.root_keys()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !data.contains_key(k))
        .collect()
}
