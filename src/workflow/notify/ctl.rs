//! One notification setting (`notify_ctls[i]`, spec/workflow.md §1.5) read for sending: whether
//! it is on, which task statuses it wants, and where and to whom its message goes.
//!
//! Settings are stored as the client sent them (JSON), so reading is lenient where Zadig is:
//! a setting saved before Zadig 3.3 carries its hook in the older top-level fields
//! (`dingding_webhook`, `weChat_webHook`, `feishu_webhook`, `webhook_notify`, with `at_mobiles`,
//! `wechat_user_ids`, `lark_user_ids`, `is_at_all`), which are used when the type's
//! `<type>_notification_config` is absent, as Zadig does.
//!
//! The same reading decides which address [`check_hooks`] checks when a definition is saved.

use serde_json::Value;

use crate::error::ApiResult;
use crate::release_plan::egress::EgressPolicy;
use crate::workflow::model::{arr_of, str_of};

/// Where one setting's message goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Channel {
    /// A DingTalk group bot (`dingding`).
    DingDing {
        hook: String,
        at_mobiles: Vec<String>,
        is_at_all: bool,
    },
    /// A Lark (Feishu) group bot (`feishu`).
    Lark {
        hook: String,
        at_users: Vec<String>,
        is_at_all: bool,
    },
    /// A WeCom (WeChat Work) group bot (`wechat`).
    WeCom {
        hook: String,
        at_users: Vec<String>,
        is_at_all: bool,
    },
    /// A Microsoft Teams incoming webhook (`msteams`).
    Teams {
        hook: String,
        at_emails: Vec<String>,
    },
    /// A generic webhook (`webhook`): Zadig's workflow event, the token in `X-Zadig-Token`.
    Webhook { address: String, token: String },
}

/// Whether the setting is on.
pub fn enabled(ctl: &Value) -> bool {
    ctl.get("enabled").and_then(Value::as_bool).unwrap_or(false)
}

/// The statuses the setting asks for (`notify_type`).
pub fn notify_types(ctl: &Value) -> Vec<&str> {
    arr_of(ctl, "notify_type")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The setting's `webhook_type`.
pub fn kind(ctl: &Value) -> &str {
    str_of(ctl, "webhook_type")
}

/// Strings of `v[key]`, without Zadig's UI placeholder `All` (it means "is_at_all", which has
/// its own flag).
fn names(v: &Value, key: &str) -> Vec<String> {
    arr_of(v, key)
        .iter()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "All")
        .map(str::to_string)
        .collect()
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Where each type with a hook reads its address: `(webhook_type, config object, address field
/// in it, older top-level field)`. The older field is used when the config object is absent: a
/// string, or for `webhook` an object with the same address field.
const HOOKS: &[(&str, &str, &str, &str)] = &[
    (
        "dingding",
        "dingding_notification_config",
        "hook_address",
        "dingding_webhook",
    ),
    (
        "feishu",
        "lark_hook_notification_config",
        "hook_address",
        "feishu_webhook",
    ),
    (
        "wechat",
        "wechat_notification_config",
        "hook_address",
        "weChat_webHook",
    ),
    ("msteams", "msteams_notification_config", "hook_address", ""),
    (
        "webhook",
        "webhook_notification_config",
        "address",
        "webhook_notify",
    ),
];

/// Fields of a config object that say where its message goes (not to whom): a task's
/// `notify_inputs` cannot change them.
pub const DESTINATION: &[&str] = &["hook_address", "address", "token", "app_id"];

/// A setting's hook as read for sending.
struct Located<'a> {
    /// The object the address and the recipients are read from.
    cfg: &'a Value,
    /// The address field in `cfg`.
    field: &'static str,
    /// The address field's path in the setting (`dingding_notification_config.hook_address`).
    path: String,
    /// Whether the older top-level fields are used.
    legacy: bool,
}

/// Where a setting of a type with a hook reads it (`None` for the other types).
fn locate(ctl: &Value) -> Option<Located<'_>> {
    let &(_, key, field, legacy) = HOOKS.iter().find(|h| h.0 == kind(ctl))?;
    Some(match ctl.get(key) {
        Some(c) if c.is_object() => Located {
            cfg: c,
            field,
            path: format!("{key}.{field}"),
            legacy: false,
        },
        _ if legacy.is_empty() => Located {
            cfg: &Value::Null,
            field,
            path: format!("{key}.{field}"),
            legacy: false,
        },
        // `webhook_notify` is an object with the address field; the others are strings.
        _ if field == "address" => Located {
            cfg: ctl.get(legacy).unwrap_or(&Value::Null),
            field,
            path: format!("{legacy}.{field}"),
            legacy: true,
        },
        _ => Located {
            cfg: ctl,
            field: legacy,
            path: legacy.to_string(),
            legacy: true,
        },
    })
}

/// The hook address of a located setting, required.
fn hook(loc: &Located<'_>, kind: &str) -> Result<String, String> {
    let h = str_of(loc.cfg, loc.field).trim();
    if h.is_empty() {
        return Err(format!(
            "the {kind} notification has no hook address ({} is empty)",
            loc.path
        ));
    }
    Ok(h.to_string())
}

/// Refuse settings whose hook address may not be stored: 400 naming its field
/// (`notify_ctls[1].webhook_notification_config.address`), by the check the release-plan hook
/// setting uses ([`EgressPolicy::check_saved`]). An enabled setting needs an http(s) URL; a
/// disabled one is checked too when it has an address, because a task's `notify_inputs` can
/// turn it on without the definition being saved again.
pub fn check_hooks(ctls: &[Value], policy: &EgressPolicy) -> ApiResult<()> {
    for (i, c) in ctls.iter().enumerate() {
        if let Some(loc) = locate(c) {
            let field = format!("notify_ctls[{i}].{}", loc.path);
            policy.check_saved(&field, str_of(loc.cfg, loc.field), enabled(c))?;
        }
    }
    Ok(())
}

/// What a setting of a type this server cannot send through says when it would fire.
pub fn missing_integration(kind: &str) -> Option<String> {
    let what = match kind {
        "feishu_app" | "feishu_person" => {
            "a Lark (Feishu) app integration (app id and secret, IM API), which this server does not have; \
             use a Lark group bot hook (webhook_type feishu) instead"
        }
        "mail" => {
            "an SMTP mail server integration, which this server does not have; use a chat bot hook or a webhook instead"
        }
        _ => return None,
    };
    Some(format!("{kind} notifications need {what}"))
}

/// A group bot's hook and recipients.
struct Bot {
    hook: String,
    at: Vec<String>,
    is_at_all: bool,
}

/// The bot of a `kind` setting: its hook, and `recipients[0]` of its config object or
/// `recipients[1]` of the older top-level fields.
fn bot(loc: &Located<'_>, kind: &str, recipients: [&str; 2]) -> Result<Bot, String> {
    let users = if loc.legacy {
        recipients[1]
    } else {
        recipients[0]
    };
    Ok(Bot {
        hook: hook(loc, kind)?,
        at: names(loc.cfg, users),
        is_at_all: flag(loc.cfg, "is_at_all"),
    })
}

/// Where the setting's message goes; `Err` says why it cannot be sent.
pub fn channel(ctl: &Value) -> Result<Channel, String> {
    let kind = kind(ctl);
    if let Some(why) = missing_integration(kind) {
        return Err(why);
    }
    let Some(loc) = locate(ctl) else {
        return Err(match kind {
            "" => "the notification has no webhook_type".to_string(),
            other => format!("unsupported notification type {other:?}"),
        });
    };
    Ok(match kind {
        "dingding" => {
            let b = bot(&loc, kind, ["at_mobiles", "at_mobiles"])?;
            Channel::DingDing {
                hook: b.hook,
                at_mobiles: b.at,
                is_at_all: b.is_at_all,
            }
        }
        "feishu" => {
            let b = bot(&loc, kind, ["at_users", "lark_user_ids"])?;
            Channel::Lark {
                hook: b.hook,
                at_users: b.at,
                is_at_all: b.is_at_all,
            }
        }
        "wechat" => {
            let b = bot(&loc, kind, ["at_users", "wechat_user_ids"])?;
            Channel::WeCom {
                hook: b.hook,
                at_users: b.at,
                is_at_all: b.is_at_all,
            }
        }
        "msteams" => Channel::Teams {
            hook: hook(&loc, kind)?,
            at_emails: names(loc.cfg, "at_emails"),
        },
        _ => Channel::Webhook {
            address: hook(&loc, kind)?,
            token: str_of(loc.cfg, "token").to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn current_and_legacy_settings() {
        let c = json!({"webhook_type": "dingding", "dingding_notification_config":
            {"hook_address": "https://x/robot?access_token=k", "at_mobiles": ["1", "All"], "is_at_all": true}});
        assert_eq!(
            channel(&c).unwrap(),
            Channel::DingDing {
                hook: "https://x/robot?access_token=k".into(),
                at_mobiles: vec!["1".into()],
                is_at_all: true
            }
        );
        let legacy = json!({"webhook_type": "wechat", "weChat_webHook": "https://w/k", "wechat_user_ids": ["u"]});
        assert_eq!(
            channel(&legacy).unwrap(),
            Channel::WeCom {
                hook: "https://w/k".into(),
                at_users: vec!["u".into()],
                is_at_all: false
            }
        );
        let hook = json!({"webhook_type": "webhook", "webhook_notify": {"address": "http://h", "token": "t"}});
        assert_eq!(
            channel(&hook).unwrap(),
            Channel::Webhook {
                address: "http://h".into(),
                token: "t".into()
            }
        );
    }

    #[test]
    fn what_cannot_be_sent_says_why() {
        let e = channel(&json!({"webhook_type": "feishu_app"})).unwrap_err();
        assert!(e.contains("Lark (Feishu) app"), "{e}");
        let e = channel(&json!({"webhook_type": "mail"})).unwrap_err();
        assert!(e.contains("SMTP"), "{e}");
        let e = channel(&json!({"webhook_type": "msteams", "msteams_notification_config": {}}))
            .unwrap_err();
        assert!(e.contains("hook_address"), "{e}");
        let e = channel(&json!({"webhook_type": "pigeon"})).unwrap_err();
        assert!(e.contains("unsupported"), "{e}");
    }
}
