//! The release-plan hook setting (admin only; the secret is never shown).

use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Identity;
use crate::error::ApiResult;
use crate::release_plan::egress::EgressPolicy;
use crate::release_plan::hooks::{HookSetting, SETTING_ID};
use crate::release_plan::input::HookSettingInput;
use crate::release_plan::model::HookEvent;
use crate::state::AppState;
use crate::store::retry::{self, Attempts};
use crate::store::{Filter, StoreError};

/// The hook setting as `GET` shows it: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookSettingView {
    pub enable: bool,
    pub enable_call_back: bool,
    pub hook_address: String,
    pub hook_events: Vec<String>,
}

pub async fn hook_setting(state: &AppState) -> ApiResult<HookSettingView> {
    let s = state.release_plans.hook_setting().await?;
    Ok(HookSettingView {
        enable: s.enable,
        enable_call_back: s.enable_call_back,
        hook_address: s.hook_address,
        hook_events: s
            .hook_events
            .iter()
            .map(|e| e.as_str().to_string())
            .collect(),
    })
}

/// `PUT …/hook/setting` (admin only).
pub async fn put_hook_setting(
    state: &AppState,
    caller: &Identity,
    input: HookSettingInput,
) -> ApiResult<()> {
    caller.require_admin()?;
    let events = hook_events(&input.hook_events)?;
    let address = input.hook_address.trim().to_string();
    // An http(s) URL when hooks are enabled (or an address is given), not one the egress
    // policy denies by literal address or metadata host name.
    EgressPolicy::of(&state.config).check_saved("hook_address", &address, input.enable)?;
    let store = &state.release_plans;
    let old = store.hook_setting().await?;
    let setting = HookSetting {
        id: SETTING_ID.to_string(),
        enable: input.enable,
        enable_call_back: input.enable_call_back,
        hook_address: address,
        hook_secret: input.hook_secret.unwrap_or(old.hook_secret),
        hook_events: events,
    };
    save(state, &setting).await?;
    tracing::info!("release-plan hook setting changed by {}", caller.account);
    Ok(())
}

/// The events named, each once (a 400 names the first unknown one).
fn hook_events(names: &[String]) -> ApiResult<Vec<HookEvent>> {
    let mut events = Vec::new();
    for (i, e) in names.iter().enumerate() {
        let ev = HookEvent::read(&format!("hook_events[{i}]"), e)?;
        if !events.contains(&ev) {
            events.push(ev);
        }
    }
    Ok(events)
}

/// Upsert: replace, or insert the first time (a racing insert loses and replaces).
async fn save(state: &AppState, setting: &HookSetting) -> ApiResult<()> {
    let settings = &state.release_plans.settings;
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let saved = settings.replace(&Filter::id(SETTING_ID), setting).await?
            || match settings.insert(setting).await {
                Ok(()) => true,
                Err(StoreError::Duplicate(_)) => false,
                Err(e) => return Err(e.into()),
            };
        if saved {
            return Ok(());
        }
    }
    Err(retry::exhausted("the release-plan hook setting").into())
}
