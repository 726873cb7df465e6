//! One notification setting (`notify_ctls[i]`, spec/workflow.md §1.5) read for sending: whether
//! it is on, which task statuses it wants, and where and to whom its message goes.
//!
//! Settings are stored as the client sent them (JSON), so reading is lenient where Zadig is:
//! a setting saved before Zadig 3.3 carries its hook in the older top-level fields
//! (`dingding_webhook`, `weChat_webHook`, `feishu_webhook`, `webhook_notify`, with `at_mobiles`,
//! `wechat_user_ids`, `lark_user_ids`, `is_at_all`), which are used when the type's
//! `<type>_notification_config` is absent, as Zadig does.

use serde_json::Value;

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

/// The type's config object, or the older top-level fields when it is absent: `(config,
/// hook field)`.
fn config<'a, 'k>(ctl: &'a Value, key: &str, legacy_hook: &'k str) -> (&'a Value, &'k str) {
    match ctl.get(key) {
        Some(c) if c.is_object() => (c, "hook_address"),
        _ => (ctl, legacy_hook),
    }
}

/// The hook address at `field` of `cfg`, required.
fn hook(cfg: &Value, field: &str, kind: &str) -> Result<String, String> {
    let h = str_of(cfg, field).trim();
    if h.is_empty() {
        return Err(format!(
            "the {kind} notification has no hook address ({field} is empty)"
        ));
    }
    Ok(h.to_string())
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

/// The bot of a `kind` setting: its config object (`fields[0]`) with `hook_address` and
/// `recipients[0]`, or the older top-level hook field (`fields[1]`) with `recipients[1]`.
fn bot(ctl: &Value, kind: &str, fields: [&str; 2], recipients: [&str; 2]) -> Result<Bot, String> {
    let (cfg, field) = config(ctl, fields[0], fields[1]);
    let users = if field == "hook_address" {
        recipients[0]
    } else {
        recipients[1]
    };
    Ok(Bot {
        hook: hook(cfg, field, kind)?,
        at: names(cfg, users),
        is_at_all: flag(cfg, "is_at_all"),
    })
}

/// Where the setting's message goes; `Err` says why it cannot be sent.
pub fn channel(ctl: &Value) -> Result<Channel, String> {
    let kind = kind(ctl);
    if let Some(why) = missing_integration(kind) {
        return Err(why);
    }
    Ok(match kind {
        "dingding" => {
            let b = bot(
                ctl,
                kind,
                ["dingding_notification_config", "dingding_webhook"],
                ["at_mobiles", "at_mobiles"],
            )?;
            Channel::DingDing {
                hook: b.hook,
                at_mobiles: b.at,
                is_at_all: b.is_at_all,
            }
        }
        "feishu" => {
            let b = bot(
                ctl,
                kind,
                ["lark_hook_notification_config", "feishu_webhook"],
                ["at_users", "lark_user_ids"],
            )?;
            Channel::Lark {
                hook: b.hook,
                at_users: b.at,
                is_at_all: b.is_at_all,
            }
        }
        "wechat" => {
            let b = bot(
                ctl,
                kind,
                ["wechat_notification_config", "weChat_webHook"],
                ["at_users", "wechat_user_ids"],
            )?;
            Channel::WeCom {
                hook: b.hook,
                at_users: b.at,
                is_at_all: b.is_at_all,
            }
        }
        "msteams" => {
            let cfg = ctl
                .get("msteams_notification_config")
                .unwrap_or(&Value::Null);
            Channel::Teams {
                hook: hook(cfg, "hook_address", kind)?,
                at_emails: names(cfg, "at_emails"),
            }
        }
        "webhook" => {
            let cfg = match ctl.get("webhook_notification_config") {
                Some(c) if c.is_object() => c,
                _ => ctl.get("webhook_notify").unwrap_or(&Value::Null),
            };
            Channel::Webhook {
                address: hook(cfg, "address", kind)?,
                token: str_of(cfg, "token").to_string(),
            }
        }
        "" => return Err("the notification has no webhook_type".to_string()),
        other => return Err(format!("unsupported notification type {other:?}")),
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
