//! Credentials inside definitions, in answers: the `value` and `default` of any JSON object
//! whose `is_credential` flag is set (a workflow parameter, a job's `key_vals`/`envs` entry, a
//! build variable), every repository `oauth_token`, and a workflow notification's hook address
//! and webhook `token` show as [`MASK`], wherever they sit in a document; and a definition
//! sent back with the mask keeps the stored value, so a client may GET, change and PUT a
//! definition without knowing (or wiping) its secrets.
//!
//! Stored definitions keep the model's shape, so these functions work on JSON: the same walk
//! ([`for_each_secret`]) covers workflow definitions, tasks, the workflow copies inside release
//! plans, and the sealing of these values at rest (`secrets::vars`).

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What answers show instead of a credential value.
pub const MASK: &str = "********";

/// The fields of a credential object that hold the secret.
const SECRET_FIELDS: [&str; 2] = ["value", "default"];

/// Fields that hold a secret in any object: a repository's clone token; a notification's
/// (`notify_ctls`) chat-bot hook address, whose key is in the URL (`hook_address`, and the
/// older `weChat_webHook`, `dingding_webhook`, `feishu_webhook`), and its webhook's `token`.
const ALWAYS_SECRET: [&str; 6] = [
    "oauth_token",
    "hook_address",
    "weChat_webHook",
    "dingding_webhook",
    "feishu_webhook",
    "token",
];

/// Fields that may hold a URL with a password (`https://user:token@host/…`): such a URL is a
/// secret, shown with its password masked.
const URL_FIELDS: [&str; 3] = ["address", "url", "clone_url"];

/// Fields that name an element of a list (a stage, a job, a variable, a service module): a
/// masked value is matched to the stored one by these, not by position.
const NAMING_FIELDS: [&str; 8] = [
    "name",
    "key",
    "service_name",
    "service_module",
    "job_name",
    "repo_owner",
    "repo_namespace",
    "repo_name",
];

fn is_credential(m: &Map<String, Value>) -> bool {
    !matches!(
        m.get("is_credential"),
        None | Some(Value::Null | Value::Bool(false))
    )
}

/// Whether a variable object (`{key, value, is_credential}`) is a credential: its flag is
/// anything but `false`, `null` or absent. Definitions are linted to a boolean flag; a flag of
/// another type stored earlier is taken as a credential rather than shown or logged in clear.
pub fn is_credential_var(v: &Value) -> bool {
    v.as_object().is_some_and(is_credential)
}

/// Whether `text` in field `key` of an object (marked as a credential or not) is a secret.
fn is_secret(marked: bool, key: &str, text: &str) -> bool {
    (marked && SECRET_FIELDS.contains(&key))
        || ALWAYS_SECRET.contains(&key)
        || (URL_FIELDS.contains(&key)
            && (text.starts_with(crate::secrets::PREFIX) || url_password(text).is_some()))
}

/// Where the password of a URL with one (`scheme://user:password@host…`) is.
fn url_password(text: &str) -> Option<std::ops::Range<usize>> {
    let start = text.find("://")? + 3;
    let rest = &text[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    (colon + 1 < at).then(|| start + colon + 1..start + at)
}

/// `text` with the password of a URL masked (as it is when it holds none).
pub fn masked_url(text: &str) -> String {
    let mut t = text.to_string();
    if let Some(r) = url_password(text) {
        t.replace_range(r, MASK);
    }
    t
}

/// How secret `text` of field `key` shows in answers: [`MASK`], or a URL with its password
/// masked.
fn shown(key: &str, text: &str) -> String {
    if URL_FIELDS.contains(&key) && url_password(text).is_some() {
        masked_url(text)
    } else {
        MASK.to_string()
    }
}

/// [`restore`] on typed documents (through their JSON).
pub fn restore_typed<T: Serialize + DeserializeOwned>(
    new: &mut T,
    old: &T,
) -> Result<(), serde_json::Error> {
    let mut v = serde_json::to_value(&*new)?;
    restore(&mut v, &serde_json::to_value(old)?);
    *new = serde_json::from_value(v)?;
    Ok(())
}

/// Call `f` with its field name on every secret text anywhere in `v` — a `value` or `default`
/// of an object marked `"is_credential": true`, an `oauth_token`, a URL with a password — ;
/// the first error stops the walk.
pub fn for_each_secret<E>(
    v: &mut Value,
    f: &mut impl FnMut(&str, &mut String) -> Result<(), E>,
) -> Result<(), E> {
    match v {
        Value::Object(m) => {
            let marked = is_credential(m);
            for (k, c) in m.iter_mut() {
                match c {
                    Value::String(s) if is_secret(marked, k, s) => f(k, s)?,
                    c => for_each_secret(c, f)?,
                }
            }
        }
        Value::Array(a) => {
            for c in a {
                for_each_secret(c, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replace every non-empty secret in `v` with how it shows ([`MASK`], or a URL with its
/// password masked).
pub fn mask(v: &mut Value) {
    let _ = for_each_secret(v, &mut |k, s| {
        if !s.is_empty() {
            *s = shown(k, s);
        }
        Ok::<(), std::convert::Infallible>(())
    });
}

/// `v` with its credential values masked.
pub fn masked(mut v: Value) -> Value {
    mask(&mut v);
    v
}

/// Put the stored value back wherever `new` carries a secret exactly as answers show it (see
/// [`mask`]) where `old` (the stored document) has one at the same place. A masked value with
/// no stored counterpart stays as sent.
pub fn restore(new: &mut Value, old: &Value) {
    restore_where(new, old, Marked::Credentials);
}

/// Like [`restore`], for any text `new` carries as [`MASK`], marked as a credential or not: for
/// execute inputs (`parameters`, `inputs`) that repeat a credential's value without its mark.
pub fn restore_any(new: &mut Value, old: &Value) {
    restore_where(new, old, Marked::Any);
}

/// The non-empty credential values in `v`.
pub fn secret_values(v: &Value) -> HashSet<String> {
    let mut stored = Stored::new();
    collect(v, String::new(), Marked::Credentials, &mut stored);
    stored
        .into_values()
        .map(|(old, _)| old)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Mask every text in `v` that equals one of `secrets`.
pub fn mask_values(v: &mut Value, secrets: &HashSet<String>) {
    match v {
        Value::String(s) if secrets.contains(s.as_str()) => *s = MASK.to_string(),
        Value::Object(m) => m.values_mut().for_each(|c| mask_values(c, secrets)),
        Value::Array(a) => a.iter_mut().for_each(|c| mask_values(c, secrets)),
        _ => {}
    }
}

/// Mark as a credential every object in `v` whose text `value` is one of `secrets`.
pub fn mark_values(v: &mut Value, secrets: &HashSet<String>) {
    match v {
        Value::Object(m) => {
            if m.get("value")
                .and_then(Value::as_str)
                .is_some_and(|s| secrets.contains(s))
            {
                m.insert("is_credential".into(), Value::Bool(true));
            }
            m.values_mut().for_each(|c| mark_values(c, secrets));
        }
        Value::Array(a) => a.iter_mut().for_each(|c| mark_values(c, secrets)),
        _ => {}
    }
}

/// Which values [`restore_where`] considers.
#[derive(Clone, Copy, PartialEq)]
enum Marked {
    Credentials,
    Any,
}

fn restore_where(new: &mut Value, old: &Value, marked: Marked) {
    let mut stored = Stored::new();
    collect(old, String::new(), marked, &mut stored);
    if !stored.is_empty() {
        put_back(new, String::new(), marked, &stored);
    }
}

/// Where an element sits: its naming fields when it has any, else its position.
fn place(parent: &str, item: &Value, i: usize) -> String {
    let names: Vec<String> = NAMING_FIELDS
        .iter()
        .filter_map(|f| Some(format!("{f}={}", item.get(*f)?.as_str()?)))
        .collect();
    if names.is_empty() {
        format!("{parent}[{i}]")
    } else {
        format!("{parent}[{}]", names.join(","))
    }
}

/// The stored texts of `v` by place, each with how answers show it: secrets, or every text.
type Stored = HashMap<String, (String, String)>;

fn collect(v: &Value, at: String, marked: Marked, out: &mut Stored) {
    match v {
        Value::String(s) if marked == Marked::Any => {
            out.insert(at, (s.clone(), MASK.to_string()));
        }
        Value::Object(m) => {
            let credential = is_credential(m);
            for (k, c) in m {
                match c {
                    Value::String(s)
                        if marked == Marked::Credentials && is_secret(credential, k, s) =>
                    {
                        out.insert(format!("{at}.{k}"), (s.clone(), shown(k, s)));
                    }
                    c => collect(c, format!("{at}.{k}"), marked, out),
                }
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                collect(c, place(&at, c, i), marked, out);
            }
        }
        _ => {}
    }
}

/// Replace each text of `v` that is what answers show for the stored text at its place by that
/// stored text. Only into an object still marked as a credential when `marked` is
/// [`Marked::Credentials`]: unmarking a variable and sending its mask back must not reveal the
/// stored value.
fn put_back(v: &mut Value, at: String, marked: Marked, stored: &Stored) {
    match v {
        Value::String(s) => {
            if let Some((old, shown)) = stored.get(&at)
                && s == shown
            {
                s.clone_from(old);
            }
        }
        Value::Object(m) => {
            let credential = is_credential(m);
            for (k, c) in m.iter_mut() {
                if marked == Marked::Any || credential || !SECRET_FIELDS.contains(&k.as_str()) {
                    put_back(c, format!("{at}.{k}"), marked, stored);
                }
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter_mut().enumerate() {
                let here = place(&at, c, i);
                put_back(c, here, marked, stored);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn def(token: &str, plain: &str) -> Value {
        json!({
            "params": [
                {"name": "TOKEN", "value": token, "default": "", "is_credential": true},
                {"name": "PLAIN", "value": plain, "is_credential": false},
            ],
            "stages": [{"name": "s", "jobs": [{"name": "b", "spec": {"service_and_builds": [
                {"service_name": "svc", "service_module": "m", "key_vals": [
                    {"key": "PASS", "value": "p-svc", "is_credential": true},
                ]},
            ]}}]}],
        })
    }

    #[test]
    fn masks_every_credential_value_and_nothing_else() {
        let v = masked(def("t0ken", "visible"));
        assert_eq!(v["params"][0]["value"], MASK);
        assert_eq!(
            v["params"][0]["default"], "",
            "an empty value shows as empty"
        );
        assert_eq!(v["params"][1]["value"], "visible");
        assert_eq!(
            v["stages"][0]["jobs"][0]["spec"]["service_and_builds"][0]["key_vals"][0]["value"],
            MASK
        );
        assert!(!v.to_string().contains("t0ken") && !v.to_string().contains("p-svc"));
    }

    #[test]
    fn a_masked_value_sent_back_keeps_the_stored_one_matched_by_name() {
        let old = def("t0ken", "visible");
        let mut new = masked(old.clone());
        // Reordered: matching is by name, not position.
        if let Some(a) = new["params"].as_array_mut() {
            a.reverse();
        }
        // A credential the client changed keeps the new value.
        let kv = "/stages/0/jobs/0/spec/service_and_builds/0/key_vals/0/value";
        if let Some(v) = new.pointer_mut(kv) {
            *v = json!("new-pass");
        }
        restore(&mut new, &old);
        assert_eq!(new["params"][1]["name"], "TOKEN");
        assert_eq!(new["params"][1]["value"], "t0ken");
        assert_eq!(new.pointer(kv), Some(&json!("new-pass")));
    }

    #[test]
    fn clone_tokens_are_secrets_wherever_they_are() {
        let old = json!({"repos": [{"repo_name": "r", "oauth_token": "tok-1", "branch": "main"}]});
        let mut v = masked(old.clone());
        assert_eq!(v["repos"][0]["oauth_token"], MASK);
        assert_eq!(v["repos"][0]["branch"], "main");
        restore(&mut v, &old);
        assert_eq!(v, old);
    }

    #[test]
    fn a_url_with_a_password_shows_it_masked_and_keeps_it_when_sent_back() {
        let old = json!({"repos": [{"repo_name": "r", "address": "https://bot:t0k@git.example/x?y",
                                    "url": "https://git.example/plain"}]});
        let mut v = masked(old.clone());
        assert_eq!(
            v["repos"][0]["address"],
            "https://bot:********@git.example/x?y"
        );
        assert_eq!(v["repos"][0]["url"], "https://git.example/plain");
        restore(&mut v, &old);
        assert_eq!(v, old);
        // A changed URL is kept as sent.
        v["repos"][0]["address"] = json!("https://bot:new@git.example/x");
        restore(&mut v, &old);
        assert_eq!(v["repos"][0]["address"], "https://bot:new@git.example/x");
        for no in [
            "https://git.example",
            "https://bot@git.example",
            "https://bot:@h",
            "a:b@c",
            "https://h/p:q@r",
        ] {
            assert_eq!(url_password(no), None, "{no}");
        }
    }

    #[test]
    fn unmarking_a_credential_does_not_bring_its_value_back() {
        let old = def("t0ken", "visible");
        let mut new = masked(old.clone());
        new["params"][0]["is_credential"] = json!(false);
        restore(&mut new, &old);
        assert_eq!(new["params"][0]["value"], MASK);
    }

    #[test]
    fn execute_inputs_repeating_a_secret_are_masked_and_restored() {
        let wf = def("t0ken", "visible");
        let secrets = secret_values(&wf);
        let stored = json!({"parameters": [{"name": "TOKEN", "value": "t0ken"}, {"name": "PLAIN", "value": "visible"}]});
        let mut shown = stored.clone();
        mask_values(&mut shown, &secrets);
        assert_eq!(shown["parameters"][0]["value"], MASK);
        assert_eq!(shown["parameters"][1]["value"], "visible");
        restore_any(&mut shown, &stored);
        assert_eq!(shown, stored);
    }

    #[test]
    fn a_mask_without_a_stored_counterpart_stays_as_sent() {
        let mut new = json!({"params": [{"name": "NEW", "value": MASK, "is_credential": true}]});
        restore(&mut new, &def("t", "p"));
        assert_eq!(new["params"][0]["value"], MASK);
    }
}
