//! Parsing: the lexed items into the node tree (blocks, pipelines, commands).

use serde_json::Value;

use super::funcs::FUNCS;
use super::lex::{Item, Tok, lex};
use super::{Command, Node, Operand, Pipeline, Template, TemplateError, err};

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
