//! Variable rendering in job specs (spec/workflow.md §3.5): `{{.workflow.params.x}}`,
//! `{{.job.build.svc.mod.output.IMAGE}}`, `{{.project}}`, … are replaced from the task
//! context; a reference that is still unknown when the job starts becomes the empty string.
//! Only `{{.…}}` forms (Go template field references) are touched; other braces are kept.

use std::collections::BTreeMap;

use serde_json::Value;

/// Replace every `{{.key}}` (spaces allowed inside the braces) in `s`.
pub fn render_str(s: &str, ctx: &BTreeMap<String, String>) -> String {
    if !s.contains("{{") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = after[..end].trim();
        match inner.strip_prefix('.') {
            Some(key)
                if !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-')) =>
            {
                if let Some(v) = ctx.get(key) {
                    out.push_str(v);
                }
            }
            _ => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Render every string inside a JSON value.
pub fn render_value(v: &Value, ctx: &BTreeMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(render_str(s, ctx)),
        Value::Array(a) => Value::Array(a.iter().map(|x| render_value(x, ctx)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), render_value(x, ctx)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_and_blanks_unknown() {
        let ctx: BTreeMap<String, String> = [
            ("workflow.params.v".to_string(), "1.2".to_string()),
            (
                "job.build.a.b.output.IMAGE".to_string(),
                "reg/a:1".to_string(),
            ),
        ]
        .into();
        assert_eq!(render_str("v={{.workflow.params.v}}!", &ctx), "v=1.2!");
        assert_eq!(
            render_str("{{ .job.build.a.b.output.IMAGE }}", &ctx),
            "reg/a:1"
        );
        assert_eq!(render_str("x{{.nope}}y", &ctx), "xy");
        assert_eq!(
            render_str("${{ github.sha }} {{", &ctx),
            "${{ github.sha }} {{"
        );
        let v = serde_json::json!({"a": ["{{.workflow.params.v}}", 3]});
        assert_eq!(render_value(&v, &ctx), serde_json::json!({"a": ["1.2", 3]}));
    }
}
