//! Where outgoing release-plan hooks may connect (docs/security.md "Network").
//!
//! The hook address is chosen by an admin, but the hook carries `X-Zadig-Token` and is sent
//! from inside the deployment, so it must not become a way to reach what only the server can
//! reach: link-local addresses and the cloud metadata services behind them. The policy is
//! applied three times:
//!
//! - when an address is saved ([`EgressPolicy::check_saved`]: the release-plan hook setting,
//!   a workflow's notification settings), to a literal address (`http://2852039166/`,
//!   `http://0xa9fea9fe/` and other numeric IPv4 forms are normalised by the URL parser
//!   first) and to well-known metadata host names → 400 naming the field;
//! - before each delivery, to a literal address (reqwest does not resolve IP literals);
//! - at connect time, to every address a host name resolves to ([`PolicyResolver`]): only
//!   allowed addresses are handed to the connector, so a name that resolves (or is rebound)
//!   to a denied address cannot be reached.
//!
//! Loopback and private ranges are allowed by default: on-premises receivers live there, and
//! a receiver on the same host or network is the common case for Zadig installations.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::Config;
use crate::error::{ApiError, ApiResult};

/// Networks hooks never connect to unless `hook_allowed_networks` says otherwise.
const DEFAULT_DENIED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
    ("169.254.169.254/32", "the cloud metadata service"),
    ("100.100.100.200/32", "the cloud metadata service"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("::/128", "the unspecified address"),
    ("fd00:ec2::254/128", "the cloud metadata service"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// Host names of cloud metadata services (compared lower case, without a trailing dot).
const METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// The keys that change the policy, named in every denial.
const KEYS: &str = "hook_denied_networks / hook_allowed_networks";

/// Which addresses hooks may connect to.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    default_denied: Vec<(IpNet, &'static str)>,
    denied: Vec<IpNet>,
    allowed: Vec<IpNet>,
}

impl Default for EgressPolicy {
    /// The built-in deny list alone.
    fn default() -> Self {
        let default_denied = DEFAULT_DENIED
            .iter()
            .filter_map(|(net, why)| net.parse().ok().map(|n| (n, *why)))
            .collect();
        Self {
            default_denied,
            denied: Vec::new(),
            allowed: Vec::new(),
        }
    }
}

impl EgressPolicy {
    /// The built-in deny list changed by `hook_denied_networks` and `hook_allowed_networks`;
    /// an entry that is no network names its key.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            denied: parse_networks("hook_denied_networks", &config.hook_denied_networks)?,
            allowed: parse_networks("hook_allowed_networks", &config.hook_allowed_networks)?,
            ..Self::default()
        })
    }

    /// A policy that denies every address (the fallback when no client with the configured
    /// policy can be built).
    pub fn deny_all() -> Self {
        Self {
            denied: ["0.0.0.0/0", "::/0"]
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            ..Self::default()
        }
    }

    /// The policy of a configuration that already passed validation.
    pub fn of(config: &Config) -> Self {
        Self::from_config(config).unwrap_or_default()
    }

    /// `Err(why)` when hooks must not connect to `ip`. The longest matching entry of the
    /// configured lists decides (a tie denies); without one, the built-in deny list does.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let ip = canonical(ip);
        let best = |nets: &[IpNet]| {
            nets.iter()
                .filter(|n| n.contains(&ip))
                .map(IpNet::prefix_len)
                .max()
        };
        match (best(&self.denied), best(&self.allowed)) {
            (Some(d), a) if a.is_none_or(|a| d >= a) => {
                return Err(format!("{ip} is in a network of hook_denied_networks"));
            }
            (_, Some(_)) => return Ok(()),
            _ => {}
        }
        match self.default_denied.iter().find(|(n, _)| n.contains(&ip)) {
            Some((net, why)) => Err(format!("{ip} is {why} ({net}), denied by default")),
            None => Ok(()),
        }
    }

    /// Check what can be checked without DNS: a literal address, or a metadata host name.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        let denied = |why: String| Err(format!("{why}; hooks may not connect there ({KEYS})"));
        // The parser already normalised numeric IPv4 forms (`2852039166`, `0xa9fea9fe`,
        // octal) to dotted decimal, and IPv6 hosts come in brackets.
        let Some(host) = url.host_str() else {
            return Err("the URL has no host".to_string());
        };
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match literal.parse::<IpAddr>() {
            Ok(ip) => self.check(ip).or_else(denied),
            Err(_) => check_name(host).or_else(denied),
        }
    }

    /// The check of a hook address about to be stored, named `field` in the 400: an http(s)
    /// URL with a host (when `required`, or when one is given at all), and not one
    /// [`Self::check_url`] denies. Host names are not resolved here (the answer could change
    /// before delivery; the resolver checks them then). The address is not repeated in the
    /// error: a chat bot's key is in its URL.
    pub fn check_saved(&self, field: &str, address: &str, required: bool) -> ApiResult<()> {
        let address = address.trim();
        if !required && address.is_empty() {
            return Ok(());
        }
        let url = reqwest::Url::parse(address)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                ApiError::bad_request(format!("`{field}` must be an http(s) URL with a host"))
            })?;
        self.check_url(&url)
            .map_err(|why| ApiError::bad_request(format!("`{field}` is not allowed: {why}")))
    }
}

/// Hosts that are cloud metadata services by name.
fn check_name(name: &str) -> Result<(), String> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if METADATA_HOSTS.contains(&n.as_str()) {
        return Err(format!("{n} is a cloud metadata host name"));
    }
    Ok(())
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) reaches the IPv4 address: judge that.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Parse a config list of networks (CIDRs or single addresses), naming `key` on an error.
pub(crate) fn parse_networks(key: &str, entries: &[String]) -> anyhow::Result<Vec<IpNet>> {
    entries
        .iter()
        .map(|e| {
            let e = e.trim();
            let net = e
                .parse::<IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "invalid configuration (key {key}): {e:?} is not a network (CIDR like 10.0.0.0/8) or an address"
                    )
                })?;
            Ok(canonical_net(net))
        })
        .collect()
}

/// A network written in IPv4-mapped form is matched as the IPv4 network it maps.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n);
    }
    net
}

/// A DNS resolver for the hook client that hands the connector only addresses the policy
/// allows, so the check holds for the address actually connected to.
pub struct PolicyResolver {
    policy: Arc<EgressPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self { policy }
    }
}

/// Why a name could not be used; its text becomes the delivery's recorded failure.
#[derive(Debug)]
struct Denied(String);

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Denied {}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            if let Err(why) = check_name(&host) {
                return Err(
                    Denied(format!("denied by the hook egress policy: {why} ({KEYS})")).into(),
                );
            }
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = Vec::new();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.push(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = if refused.is_empty() {
                    "no address".to_string()
                } else {
                    refused.join("; ")
                };
                return Err(Denied(format!(
                    "denied by the hook egress policy: {host} resolves to no allowed address ({why}; {KEYS})"
                ))
                .into());
            }
            if !refused.is_empty() {
                tracing::warn!(
                    "hook host {host}: skipping addresses denied by the hook egress policy: {}",
                    refused.join("; ")
                );
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(denied: &[&str], allowed: &[&str]) -> EgressPolicy {
        let mut c = Config::defaults();
        c.hook_denied_networks = denied.iter().map(ToString::to_string).collect();
        c.hook_allowed_networks = allowed.iter().map(ToString::to_string).collect();
        EgressPolicy::from_config(&c).expect("valid policy")
    }

    fn url_ok(p: &EgressPolicy, u: &str) -> bool {
        p.check_url(&reqwest::Url::parse(u).expect("url")).is_ok()
    }

    #[test]
    fn default_denies_link_local_metadata_and_multicast() {
        let p = EgressPolicy::default();
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "100.100.100.200",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
        ] {
            assert!(p.check(ip.parse().unwrap()).is_err(), "{ip} must be denied");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "100.100.100.201",
            "::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(p.check(ip.parse().unwrap()).is_ok(), "{ip} must be allowed");
        }
    }

    #[test]
    fn numeric_forms_and_metadata_names_are_denied() {
        let p = EgressPolicy::default();
        for u in [
            "http://169.254.169.254/latest/meta-data",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0xA9.0xFE.0xA9.0xFE/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://169.254.169.254./",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[fd00:ec2::254]/",
            "http://0/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.Google.Internal./",
            "http://metadata/",
            "http://instance-data/latest/",
        ] {
            assert!(!url_ok(&p, u), "{u} must be denied");
        }
        for u in [
            "http://127.0.0.1:9/x",
            "http://localhost:8080/",
            "https://hooks.example.com/zadig",
            "http://10.0.0.1/",
            "http://[::1]:80/",
        ] {
            assert!(url_ok(&p, u), "{u} must be allowed");
        }
    }

    #[test]
    fn configured_lists_change_the_defaults() {
        // Allowed entries override the built-in list; denied entries add to it.
        let p = policy(
            &["127.0.0.0/8", "10.0.0.0/8"],
            &["169.254.10.0/24", "10.1.0.0/16"],
        );
        let ok = |ip: &str| p.check(ip.parse().unwrap()).is_ok();
        assert!(!ok("127.0.0.1"));
        assert!(!ok("::ffff:127.0.0.1"));
        assert!(!ok("10.2.0.1"));
        assert!(ok("10.1.0.1"), "the longer allowed entry wins");
        assert!(ok("169.254.10.5"));
        assert!(!ok("169.254.169.254"));
        assert!(ok("192.168.0.1"));
        // A tie denies; an address is a /32; mapped networks match IPv4.
        let p = policy(
            &["192.168.0.0/16", "::ffff:8.8.8.0/120"],
            &["192.168.0.0/16", "169.254.169.254"],
        );
        assert!(p.check("192.168.1.1".parse().unwrap()).is_err());
        assert!(p.check("169.254.169.254".parse().unwrap()).is_ok());
        assert!(p.check("169.254.169.253".parse().unwrap()).is_err());
        assert!(p.check("8.8.8.8".parse().unwrap()).is_err());
        let msg = p.check("192.168.1.1".parse().unwrap()).unwrap_err();
        assert!(msg.contains("hook_denied_networks"), "{msg}");
    }

    #[test]
    fn bad_entries_name_their_key() {
        let mut c = Config::defaults();
        c.hook_allowed_networks = vec!["10.0.0.0/33".into()];
        let e = EgressPolicy::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("hook_allowed_networks"), "{e}");
        c.hook_allowed_networks.clear();
        c.hook_denied_networks = vec!["example.com".into()];
        let e = EgressPolicy::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("hook_denied_networks"), "{e}");
    }

    #[tokio::test]
    async fn the_resolver_filters_resolved_addresses() {
        let p = Arc::new(policy(&["127.0.0.0/8", "::1/128"], &[]));
        let r = PolicyResolver::new(p);
        let err = match r.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost must be denied"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("hook egress policy"), "{err}");
        let err = match r.resolve("metadata.google.internal".parse().unwrap()).await {
            Ok(_) => panic!("a metadata name must be denied"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("metadata"), "{err}");
        let r = PolicyResolver::new(Arc::new(EgressPolicy::default()));
        let addrs: Vec<SocketAddr> = r
            .resolve("localhost".parse().unwrap())
            .await
            .expect("localhost is allowed by default")
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
