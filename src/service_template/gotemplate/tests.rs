//! The template engine against Go's behaviour.

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
fn builtins_and_tokens() {
    assert_eq!(run("{{and 1 0 2}}|{{and 1 2}}", json!({})), "0|2");
    assert_eq!(run("{{or 0 \"\" \"x\"}}|{{or 0 \"\"}}", json!({})), "x|");
    assert_eq!(
        run(
            "{{ne 1 2}} {{eq 1 3 1}} {{lt 1 2}} {{ge \"b\" \"a\"}}",
            json!({})
        ),
        "true true true true"
    );
    assert_eq!(run("{{print 1 2 \"a\" 3}}", json!({})), "1 2a3");
    assert_eq!(
        run("{{`raw`}} {{not 0}} {{len .l}}", json!({"l": [1, 2]})),
        "raw true 2"
    );
    assert_eq!(run("a {{/* c */ -}}  b", json!({})), "a b");
    assert_eq!(run("{{index .l 1}}", json!({"l": ["x", "y"]})), "y");
    let t = Template::parse("{{index .l 5}}").unwrap();
    assert!(t.execute(&json!({"l": []}), Mode::Lenient).is_err());
    assert!(
        Template::parse("{{lt 1}}")
            .unwrap()
            .execute(&json!({}), Mode::Lenient)
            .is_err()
    );
    assert!(Template::parse("{{ 1x }}").is_err());
    assert!(Template::parse("{{ # }}").is_err());
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
