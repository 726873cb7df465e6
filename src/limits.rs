//! Bounds on everything a client can store or ask for (docs/security.md "Input limits"): the
//! size of each string and array of a request body, the page size of each list, paging offsets
//! that fit the storage's integers, and environment-variable names.
//!
//! The limits are named constants so the OpenAPI document can quote them (`maxLength`,
//! `maxItems`). Each check fails with a 400 whose description names the field by its JSON path
//! (`jobs[0].spec.script`) or the query parameter (`pageNum`), like the rest of
//! [`crate::validate`].
//!
//! Request bodies are checked as a whole by [`document`]: most of what we store is kept verbatim
//! (job specs, parameters, unknown keys), so the limit of a string or array follows from its key,
//! wherever it sits in the document. Together with `body_limit` (which bounds one request) this
//! bounds every stored document, and with the page-size caps below every list page.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::validate;

/// Longest name or identifier, in characters (checked by the domain rules, see
/// [`crate::validate::name`]).
pub const MAX_NAME_LEN: usize = validate::MAX_NAME_LEN;
/// Longest free text — a description, remark, comment, reason or text-job content — in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Longest script (build script, freestyle step, template script), in bytes.
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;
/// Longest YAML document (manifests, Helm values), in bytes.
pub const MAX_YAML_BYTES: usize = 1024 * 1024;
/// Longest address or URL, in bytes.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// Longest string of any other field (parameter values, certificates, job-spec settings), in
/// bytes.
pub const MAX_STRING_BYTES: usize = 1024 * 1024;
/// Longest object key (of maps kept verbatim, such as labels), in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Most stages of a workflow.
pub const MAX_STAGES: usize = 100;
/// Most jobs of a stage or of a release plan.
pub const MAX_JOBS: usize = 100;
/// Most variables of one list: `envs`, `key_vals`, `params`, `parameters`, `variables`, `vars`.
pub const MAX_VARS: usize = 500;
/// Most services of one list (a delivery version, a job's service selection, a ticket).
pub const MAX_SERVICES: usize = 500;
/// Most images of one list (a delivery version's service, a distribute job).
pub const MAX_IMAGES: usize = 500;
/// Most approvers or users of an approval or ticket.
pub const MAX_APPROVERS: usize = 200;
/// Most items of any other array (labels, repositories, outputs, hook events…).
pub const MAX_ITEMS: usize = 1000;

/// How a list route pages: its defaults and its largest `pageSize` (checked by
/// [`Paging::parse`], through `http::query::PageQuery`; the OpenAPI document states it).
#[derive(Debug, Clone, Copy)]
pub struct PageRule {
    /// `pageNum` when absent; `None`: required.
    pub default_num: Option<u64>,
    /// `pageSize` when absent; `None`: required.
    pub default_size: Option<u64>,
    /// Largest `pageSize`; larger → 400 (Zadig has no cap; we do not clamp silently).
    pub max_size: u64,
}

/// Users are small (names ≤ 256 characters): up to 1000 a page (DESIGN.md §5).
pub const USERS_PAGE: PageRule = PageRule {
    default_num: Some(1),
    default_size: Some(20),
    max_size: 1000,
};
/// Release plans: required paging (seed 001); an item carries a description of up to
/// [`MAX_TEXT_BYTES`] and the whole plan is read, so at most 100 a page.
pub const RELEASE_PLANS_PAGE: PageRule = PageRule {
    default_num: None,
    default_size: None,
    max_size: 100,
};
/// Workflow tasks: default 50 (seed 002); each task holds a workflow snapshot, so at most 100.
pub const WORKFLOW_TASKS_PAGE: PageRule = PageRule {
    default_num: Some(1),
    default_size: Some(50),
    max_size: 100,
};
/// Builds: default 20 (spec/build.md §7); a build holds a script of up to
/// [`MAX_SCRIPT_BYTES`], so at most 100.
pub const BUILDS_PAGE: PageRule = PageRule {
    default_num: Some(1),
    default_size: Some(20),
    max_size: 100,
};
/// Build templates: as builds.
pub const BUILD_TEMPLATES_PAGE: PageRule = BUILDS_PAGE;
/// Delivery versions: default 20 (spec/delivery.md §4); a version holds YAML of up to
/// [`MAX_YAML_BYTES`] per service, so at most 100.
pub const DELIVERY_VERSIONS_PAGE: PageRule = PageRule {
    default_num: Some(1),
    default_size: Some(20),
    max_size: 100,
};

/// A checked page: `num` ≥ 1, `1 ≤ size ≤` the route's cap, and `num × size` fits an `i64`
/// (the skip of MongoDB and the `OFFSET` of SQLite are signed 64-bit), so
/// `(num - 1) × size` never overflows anywhere below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub num: u64,
    pub size: u64,
}

impl Paging {
    /// Check `pageNum` (reported as `num_field`, e.g. `page` for the alias) and `pageSize`.
    pub fn parse(
        rule: &PageRule,
        num_field: &str,
        num: Option<i64>,
        size: Option<i64>,
    ) -> ApiResult<Paging> {
        let num = validate::page_param(num_field, num, rule.default_num, None)?;
        let size = validate::page_param("pageSize", size, rule.default_size, None)?;
        // The offset first, whatever the cap: a page that cannot exist is the fault of
        // `pageNum`. One bound per route, whatever `pageSize` (so the OpenAPI document can
        // state it): a page of the largest size must start within a signed 64-bit offset.
        let max_num = i64::MAX.unsigned_abs() / rule.max_size;
        if num > max_num {
            return Err(ApiError::bad_request(format!(
                "`{num_field}` is too large: it must be at most {max_num}, got {num}"
            )));
        }
        if size > rule.max_size {
            return Err(ApiError::bad_request(format!(
                "`pageSize` must be at most {}, got {size}",
                rule.max_size
            )));
        }
        Ok(Paging { num, size })
    }
}

/// Whether `key` is a POSIX environment-variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A key that becomes an environment variable of a job; anything else → 400 naming `field`
/// (its JSON path) and the key.
pub fn env_name(field: &str, key: &str) -> ApiResult<()> {
    if is_env_name(key) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{field}` must be an environment-variable name ([A-Za-z_][A-Za-z0-9_]*), got {key:?}"
        )))
    }
}

/// A string of at most `max` bytes, else 400 naming `field`.
pub fn string(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.len() > max {
        return Err(ApiError::bad_request(format!(
            "`{field}` is too long: {} bytes, at most {max} ({})",
            value.len(),
            human(max)
        )));
    }
    Ok(())
}

/// An array of at most `max` items, else 400 naming `field`.
pub fn items(field: &str, len: usize, max: usize) -> ApiResult<()> {
    if len > max {
        return Err(ApiError::bad_request(format!(
            "`{field}` has too many items: {len}, at most {max}"
        )));
    }
    Ok(())
}

fn human(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{} MiB", b / (1024 * 1024)),
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

/// Free-text keys: [`MAX_TEXT_BYTES`].
const TEXT_KEYS: &[&str] = &[
    "description",
    "desc",
    "remark",
    "comment",
    "content",
    "reason",
    "failed_reason",
    "message",
];

/// The longest string allowed under `key` (the key of the value, or of the array holding it).
/// [`document`] checks bodies with it and the OpenAPI document states it (`maxLength`,
/// `crate::http::doc`), so the two agree.
pub fn string_limit(key: &str) -> usize {
    let k = key.to_ascii_lowercase();
    if TEXT_KEYS.contains(&k.as_str()) {
        MAX_TEXT_BYTES
    } else if k.contains("yaml") {
        MAX_YAML_BYTES
    } else if k.contains("script") {
        MAX_SCRIPT_BYTES
    } else if k == "url" || k.ends_with("_url") || k.ends_with("address") {
        MAX_URL_BYTES
    } else {
        MAX_STRING_BYTES
    }
}

/// The most items allowed in an array under `key` (checked by [`document`], stated as
/// `maxItems` by `crate::http::doc`).
pub fn array_limit(key: &str) -> usize {
    match key {
        "stages" => MAX_STAGES,
        "jobs" => MAX_JOBS,
        "envs" | "key_vals" | "params" | "parameters" | "variables" | "vars" => MAX_VARS,
        "services" | "service_list" | "service_and_builds" | "service_and_images"
        | "target_services" => MAX_SERVICES,
        "images" => MAX_IMAGES,
        "approve_users" | "approvers" | "users" => MAX_APPROVERS,
        _ => MAX_ITEMS,
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn render(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push_str("request body");
    }
    out
}

/// Check every string and array of a request body against the limit of its key (see
/// [`string_limit`], [`array_limit`]); the first one over its limit → 400 naming its JSON path.
pub fn document(value: &Value) -> ApiResult<()> {
    let mut path = Vec::new();
    walk(value, "", &mut path)
}

fn walk<'a>(value: &'a Value, key: &'a str, path: &mut Vec<Seg<'a>>) -> ApiResult<()> {
    match value {
        Value::String(s) => string(&render(path), s, string_limit(key)),
        Value::Array(list) => {
            items(&render(path), list.len(), array_limit(key))?;
            for (i, item) in list.iter().enumerate() {
                path.push(Seg::Index(i));
                walk(item, key, path)?;
                path.pop();
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                path.push(Seg::Key(k));
                if k.len() > MAX_KEY_BYTES {
                    return Err(ApiError::bad_request(format!(
                        "a key of `{}` is too long: {} bytes, at most {MAX_KEY_BYTES}",
                        render(&path[..path.len() - 1]),
                        k.len()
                    )));
                }
                walk(item, k, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desc(r: ApiResult<()>) -> String {
        r.expect_err("expected a 400").description
    }

    #[test]
    fn strings_follow_their_key() {
        let big_text = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(desc(document(&json!({"description": big_text}))).contains("`description`"));
        let d = desc(document(
            &json!({"jobs": [{"spec": {"content": big_text}}]}),
        ));
        assert!(d.contains("`jobs[0].spec.content`"), "{d}");
        // The same size is fine for a script …
        document(&json!({"stages": [{"jobs": [{"spec": {"script": big_text}}]}]})).unwrap();
        // … up to its own limit.
        let big_script = "x".repeat(MAX_SCRIPT_BYTES + 1);
        let d = desc(document(
            &json!({"stages": [{"jobs": [{"spec": {"scripts": ["ok", big_script]}}]}]}),
        ));
        assert!(d.contains("`stages[0].jobs[0].spec.scripts[1]`"), "{d}");
    }

    #[test]
    fn arrays_are_bounded() {
        let jobs: Vec<Value> = (0..=MAX_JOBS).map(|_| json!({})).collect();
        assert!(desc(document(&json!({"jobs": jobs}))).contains("`jobs`"));
        let labels: Vec<Value> = (0..MAX_ITEMS).map(|_| json!("l")).collect();
        document(&json!({"labels": labels})).unwrap();
    }

    #[test]
    fn paging_offset_fits_i64() {
        let p = Paging::parse(
            &USERS_PAGE,
            "pageNum",
            Some(9_223_372_036_854_777),
            Some(1000),
        );
        assert!(desc(p.map(|_| ())).contains("`pageNum`"));
        let max = i64::MAX / 1000;
        assert_eq!(
            Paging::parse(&USERS_PAGE, "pageNum", Some(max), Some(1000)).unwrap(),
            Paging {
                num: max.unsigned_abs(),
                size: 1000
            }
        );
        assert!(
            desc(Paging::parse(&BUILDS_PAGE, "pageNum", None, Some(101)).map(|_| ()))
                .contains("`pageSize`")
        );
        assert!(
            desc(Paging::parse(&RELEASE_PLANS_PAGE, "pageNum", None, Some(1)).map(|_| ()))
                .contains("`pageNum`")
        );
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_a1", "PATH_2"] {
            assert!(is_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A=B", "A\nB", "A\0", "A-B", "É"] {
            assert!(!is_env_name(bad), "{bad:?}");
        }
    }
}
