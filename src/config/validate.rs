//! Start-up checks of [`Config`]: every key is checked once, and an invalid value stops the
//! server with an error naming the key.

use super::{Config, INTEGRATIONS, Role, StorageKind};

impl Config {
    /// Check every key (done by [`Config::load`]; again after the command line changed one).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.check_storage()?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            anyhow::bail!("invalid configuration (key log): {e}");
        }
        self.check_positive()?;
        crate::release_plan::egress::EgressPolicy::from_config(self)?;
        crate::release_plan::egress::parse_networks("trusted_proxies", &self.trusted_proxies)?;
        match parse_ids(&self.engine_job_user) {
            Some((0, _) | (_, 0)) => anyhow::bail!(
                "invalid configuration (key engine_job_user): jobs must not run as root (uid or gid 0)"
            ),
            Some(_) => {}
            None => anyhow::bail!(
                "invalid configuration (key engine_job_user): expected `uid:gid` (numbers), got {:?}",
                self.engine_job_user
            ),
        }
        check_integrations(&self.engine_integrations)
            .map_err(|e| anyhow::anyhow!("invalid configuration (key engine_integrations): {e}"))?;
        if !self.engine_kube_agent_path.starts_with('/') {
            anyhow::bail!(
                "invalid configuration (key engine_kube_agent_path): must be an absolute path, got {:?}",
                self.engine_kube_agent_path
            );
        }
        if self.engine_kube_namespace.trim().is_empty() {
            anyhow::bail!("invalid configuration (key engine_kube_namespace): must not be empty");
        }
        if self.engine_clean_up_retry_max_secs < self.engine_clean_up_retry_secs {
            anyhow::bail!(
                "invalid configuration (key engine_clean_up_retry_max_secs): must be at least engine_clean_up_retry_secs ({})",
                self.engine_clean_up_retry_secs
            );
        }
        check_public_url(&self.public_url)?;
        if !["auto", "always", "never"].contains(&self.ui_cookie_secure.as_str()) {
            anyhow::bail!(
                "invalid configuration (key ui_cookie_secure): must be auto, always or never, got {:?}",
                self.ui_cookie_secure
            );
        }
        Ok(())
    }

    /// The storage keys, and the role the storage allows.
    fn check_storage(&self) -> anyhow::Result<()> {
        if self.storage == StorageKind::Mongodb && self.mongodb_uri.trim().is_empty() {
            anyhow::bail!(
                "invalid configuration (key mongodb_uri): required when storage = mongodb"
            );
        }
        if self.storage == StorageKind::Embedded && self.role != Role::Both {
            // The embedded store (and its caches) belongs to one process, which must then do
            // everything: an API-only process would queue tasks nothing runs.
            anyhow::bail!(
                "invalid configuration (key role): {} needs storage = mongodb; with the embedded store one process runs both",
                self.role.as_str()
            );
        }
        if self.mongodb_database.trim().is_empty() {
            anyhow::bail!("invalid configuration (key mongodb_database): must not be empty");
        }
        Ok(())
    }

    /// The sizes, counts, intervals and timeouts that must not be 0.
    fn check_positive(&self) -> anyhow::Result<()> {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        for (key, v) in [
            ("body_limit", n(self.body_limit)),
            ("request_timeout_secs", self.request_timeout_secs),
            (
                "http_header_read_timeout_secs",
                self.http_header_read_timeout_secs,
            ),
            ("http_keepalive_idle_secs", self.http_keepalive_idle_secs),
            ("engine_parallel_jobs", n(self.engine_parallel_jobs)),
            ("engine_lease_ttl_secs", self.engine_lease_ttl_secs),
            ("engine_sweep_interval_ms", self.engine_sweep_interval_ms),
            (
                "release_plan_hook_timeout_secs",
                self.release_plan_hook_timeout_secs,
            ),
            ("notify_timeout_secs", self.notify_timeout_secs),
            ("release_plan_poll_ms", self.release_plan_poll_ms),
            ("release_plan_lease_secs", self.release_plan_lease_secs),
            (
                "release_plan_reconcile_secs",
                self.release_plan_reconcile_secs,
            ),
            ("release_plan_workers", n(self.release_plan_workers)),
            ("delivery_workers", n(self.delivery_workers)),
            ("delivery_lease_secs", self.delivery_lease_secs),
            ("delivery_poll_ms", self.delivery_poll_ms),
            ("kube_request_timeout_secs", self.kube_request_timeout_secs),
            ("engine_kube_pending_secs", self.engine_kube_pending_secs),
            (
                "engine_clean_up_retry_secs",
                self.engine_clean_up_retry_secs,
            ),
            (
                "engine_clean_up_retry_max_secs",
                self.engine_clean_up_retry_max_secs,
            ),
            (
                "engine_clean_up_give_up_secs",
                self.engine_clean_up_give_up_secs,
            ),
            (
                "delivery_copy_timeout_secs",
                self.delivery_copy_timeout_secs,
            ),
            (
                "registry_connect_timeout_secs",
                self.registry_connect_timeout_secs,
            ),
            (
                "registry_read_timeout_secs",
                self.registry_read_timeout_secs,
            ),
            ("ui_session_secs", self.ui_session_secs),
            ("auth_failure_window_secs", self.auth_failure_window_secs),
            (
                "auth_throttle_max_clients",
                n(self.auth_throttle_max_clients),
            ),
        ] {
            if v == 0 {
                anyhow::bail!("invalid configuration (key {key}): must be > 0");
            }
        }
        Ok(())
    }
}

/// `uid:gid` → numbers.
pub(super) fn parse_ids(s: &str) -> Option<(u32, u32)> {
    let (u, g) = s.trim().split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}

/// Check `engine_integrations`: every name must be known, and (in this version) none has a
/// driver yet, so any name is refused rather than silently accepted.
fn check_integrations(list: &str) -> Result<(), String> {
    // No driver exists yet, so the first name listed is refused (unknown names say so).
    if let Some(name) = list.split(',').map(str::trim).find(|s| !s.is_empty()) {
        if !INTEGRATIONS.iter().any(|(n, _)| *n == name) {
            let known: Vec<&str> = INTEGRATIONS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown integration {name:?} (known: {})",
                known.join(", ")
            ));
        }
        return Err(format!(
            "integration {name:?} has no driver in this version of zadig-server"
        ));
    }
    Ok(())
}

/// `public_url` is empty or an absolute http(s) URL without query or fragment (links are built
/// by appending paths to it).
fn check_public_url(url: &str) -> anyhow::Result<()> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(());
    }
    let bad =
        |why: &str| anyhow::anyhow!("invalid configuration (key public_url): {why}, got {url:?}");
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !["http", "https"].contains(&parsed.scheme()) || parsed.host_str().is_none() {
        return Err(bad("must be an http or https URL with a host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_integrations, check_public_url};
    use crate::config::Role;

    #[test]
    fn public_url_is_a_base_to_append_paths_to() {
        for ok in [
            "",
            "https://zadig.example.com",
            "http://10.0.0.1:8080/zadig/",
        ] {
            assert!(check_public_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "zadig.example.com",
            "ftp://x",
            "https://x/?a=1",
            "https://x/#f",
        ] {
            let e = check_public_url(bad).unwrap_err().to_string();
            assert!(e.contains("public_url"), "{bad}: {e}");
        }
    }

    #[test]
    fn roles_parse_and_say_what_runs() {
        for (name, api, workers) in [
            ("api", true, false),
            ("workers", false, true),
            ("both", true, true),
        ] {
            let role: Role = name.parse().unwrap();
            assert_eq!(role.as_str(), name);
            assert_eq!((role.serves_api(), role.runs_workers()), (api, workers));
        }
        assert!("worker".parse::<Role>().is_err());
        assert_eq!(super::Config::defaults().role, Role::Both);
    }

    #[test]
    fn integrations_are_known_but_not_driven() {
        assert!(check_integrations("").is_ok());
        assert!(
            check_integrations("nacos")
                .unwrap_err()
                .contains("no driver")
        );
        assert!(check_integrations("nope").unwrap_err().contains("unknown"));
    }
}
