//! Go's built-in template functions: `eq ne lt le gt ge and or not len index print`.

use serde_json::Value;

use super::exec::{print_value, truthy};
use super::{TemplateError, err};

/// The ordering functions, which fail on values of different types.
pub(super) const ORDERINGS: &[&str] = &["lt", "le", "gt", "ge"];

/// The functions a template may call.
pub(super) const FUNCS: &[&str] = &[
    "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "len", "index", "print",
];

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

/// Call the built-in `f` with `args` (a piped value last).
pub(super) fn call(f: &str, args: &[Value], line: usize) -> Result<Value, TemplateError> {
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
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            need(2)?;
            Value::Bool(compare(f, &args[0], &args[1..], line)?)
        }
        "and" | "or" => {
            need(1)?;
            // The first operand that decides (false for `and`, true for `or`), else the last.
            let decides = f == "or";
            args.iter()
                .find(|a| truthy(a) == decides)
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
            index(&args[0], &args[1..], line)?
        }
        _ => print(args),
    })
}

/// `eq a b…` (a equals any), `ne a b`, and the orderings of `a` and `rest[0]`.
fn compare(f: &str, a: &Value, rest: &[Value], line: usize) -> Result<bool, TemplateError> {
    let Some(b) = rest.first() else {
        return err(line, format!("wrong number of args for {f}"));
    };
    Ok(match f {
        "eq" => rest.iter().any(|b| eq_values(a, b)),
        "ne" => !eq_values(a, b),
        _ => {
            let o = cmp_values(a, b, line)?;
            match f {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            }
        }
    })
}

/// `index x k…`: list positions and map keys, one after the other.
fn index(base: &Value, keys: &[Value], line: usize) -> Result<Value, TemplateError> {
    let mut cur = base.clone();
    for k in keys {
        cur = match (&cur, k) {
            (Value::Array(a), Value::Number(n)) => n
                .as_u64()
                .and_then(|i| a.get(usize::try_from(i).ok()?))
                .cloned()
                .ok_or_else(|| TemplateError {
                    line,
                    message: format!("index out of range: {n}"),
                })?,
            (Value::Object(o), Value::String(s)) => o.get(s).cloned().unwrap_or(Value::Null),
            _ => return err(line, "can't index item"),
        };
    }
    Ok(cur)
}

/// `print`: Go adds spaces between operands when neither is a string.
fn print(args: &[Value]) -> Value {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !a.is_string() && !args[i - 1].is_string() {
            s.push(' ');
        }
        s.push_str(&print_value(a));
    }
    Value::String(s)
}
