//! Amazon ECR logins: an ECR registry's `access_key`/`secret_key` are AWS keys, not registry
//! credentials. They are exchanged for a registry password with ECR's `GetAuthorizationToken`
//! (a SigV4-signed call to `api.ecr.<region>.amazonaws.com`), which is valid for 12 hours; the
//! password is cached per key and region until shortly before it expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The user name ECR passwords go with.
pub const USER: &str = "AWS";

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// A cached password is renewed when less than this is left of it.
const RENEW_BEFORE_MS: i64 = 30 * 60 * 1000;

/// Exchanges AWS keys for ECR registry passwords, with a cache.
pub struct EcrLogin {
    http: reqwest::Client,
    /// `delivery_ecr_endpoint`: empty = AWS's regional endpoint.
    endpoint: String,
    cache: Mutex<HashMap<(String, String), (String, i64)>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    #[serde(default)]
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: String,
    /// Seconds since the epoch (a JSON number, possibly fractional).
    #[serde(default)]
    expires_at: f64,
}

impl EcrLogin {
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the ECR client: {e}"))?;
        Ok(Self {
            http,
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The registry password for AWS keys `access_key`/`secret_key` in `region` (the user is
    /// [`USER`]). `now_ms` is the business clock.
    pub async fn password(
        &self,
        access_key: &str,
        secret_key: &str,
        region: &str,
        now_ms: i64,
    ) -> Result<String, String> {
        let key = (access_key.to_string(), region.to_string());
        if let Some((password, until)) = self.cached(&key)
            && until - RENEW_BEFORE_MS > now_ms
        {
            return Ok(password);
        }
        let (password, until) = self
            .fetch(access_key, secret_key, region, now_ms)
            .await
            .map_err(|e| format!("cannot get an ECR login for region {region}: {e}"))?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, (password.clone(), until));
        }
        Ok(password)
    }

    fn cached(&self, key: &(String, String)) -> Option<(String, i64)> {
        self.cache.lock().ok()?.get(key).cloned()
    }

    fn endpoint(&self, region: &str) -> String {
        if !self.endpoint.is_empty() {
            return self.endpoint.clone();
        }
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://api.ecr.{region}.{suffix}")
    }

    async fn fetch(
        &self,
        access_key: &str,
        secret_key: &str,
        region: &str,
        now_ms: i64,
    ) -> Result<(String, i64), String> {
        if access_key.trim().is_empty() || secret_key.is_empty() {
            return Err("the registry has no access_key/secret_key (AWS keys)".into());
        }
        let url = self.endpoint(region);
        let parsed = reqwest::Url::parse(&url).map_err(|e| format!("bad endpoint {url}: {e}"))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(format!("bad endpoint {url}: no host")),
        };
        let amz_date = amz_date(now_ms);
        let body = b"{}";
        let headers = [
            ("content-type", CONTENT_TYPE),
            ("host", host.as_str()),
            ("x-amz-date", amz_date.as_str()),
            ("x-amz-target", TARGET),
        ];
        let auth = authorization(&Signing {
            method: "POST",
            path: "/",
            headers: &headers,
            payload: body,
            region,
            service: "ecr",
            access_key: access_key.trim(),
            secret_key,
            amz_date: &amz_date,
        });
        let r = self
            .http
            .post(parsed)
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-date", &amz_date)
            .header("x-amz-target", TARGET)
            .header("authorization", auth)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = r.status();
        let text = r.text().await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            let text: String = text.chars().take(300).collect();
            return Err(format!("{url} answered {status}: {text}"));
        }
        let answer: TokenAnswer = serde_json::from_str(&text)
            .map_err(|e| format!("unexpected answer from {url}: {e}"))?;
        let data = answer
            .authorization_data
            .into_iter()
            .next()
            .ok_or_else(|| format!("{url} returned no authorizationData"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.authorization_token.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| format!("{url} returned an authorizationToken that is not base64"))?;
        let password = decoded
            .split_once(':')
            .map(|(_, p)| p.to_string())
            .ok_or_else(|| format!("{url} returned an authorizationToken without user:password"))?;
        // Seconds with a fraction → ms; a missing expiry is treated as the documented 12 h.
        let until = if data.expires_at > 0.0 {
            (data.expires_at * 1000.0) as i64
        } else {
            now_ms + 12 * 3600 * 1000
        };
        Ok((password, until))
    }
}

/// `YYYYMMDDTHHMMSSZ` for `now_ms`.
fn amz_date(now_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// What a SigV4 signature covers. `headers` are lower-case names, sorted, all signed.
struct Signing<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    payload: &'a [u8],
    region: &'a str,
    service: &'a str,
    access_key: &'a str,
    secret_key: &'a str,
    /// `YYYYMMDDTHHMMSSZ`; its first 8 characters are the credential date.
    amz_date: &'a str,
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// The `Authorization` header of AWS Signature Version 4 (no query string).
fn authorization(s: &Signing<'_>) -> String {
    let date = s.amz_date.get(..8).unwrap_or_default();
    let canonical_headers: String = s
        .headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed_headers = s
        .headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n\n{canonical_headers}\n{signed_headers}\n{}",
        s.method,
        s.path,
        hex::encode(Sha256::digest(s.payload))
    );
    let scope = format!("{date}/{}/{}/aws4_request", s.region, s.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        s.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = [date, s.region, s.service, "aws4_request"]
        .iter()
        .fold(format!("AWS4{}", s.secret_key).into_bytes(), |k, part| {
            hmac(&k, part)
        });
    let signature = hex::encode(hmac(&key, &string_to_sign));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        s.access_key
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's SigV4 test suite, case `get-vanilla`.
    #[test]
    fn signs_the_aws_test_vector() {
        let auth = authorization(&Signing {
            method: "GET",
            path: "/",
            headers: &[
                ("host", "example.amazonaws.com"),
                ("x-amz-date", "20150830T123600Z"),
            ],
            payload: b"",
            region: "us-east-1",
            service: "service",
            access_key: "AKIDEXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            amz_date: "20150830T123600Z",
        });
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn regional_endpoints() {
        let e = EcrLogin::new("", Duration::from_secs(1)).unwrap();
        assert_eq!(
            e.endpoint("eu-west-1"),
            "https://api.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            e.endpoint("cn-north-1"),
            "https://api.ecr.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(amz_date(1_440_938_160_000), "20150830T123600Z");
    }
}
