//! Copying images between registries through the OCI distribution API (spec/delivery.md §10).
//!
//! [`OciCopier`] uses the `oci-client` crate: it authenticates to both registries (anonymous,
//! basic, or a bearer token fetched from the registry's challenge with the basic
//! credentials), reads the source manifest as stored (OCI or Docker, image or multi-arch
//! index), copies every blob the target lacks (a cross-repository mount on the same registry,
//! else a streamed pull/push), copies each child manifest of an index by digest, and pushes
//! the manifest bytes unchanged, so the target's digest equals the source's.
//!
//! The copier is a trait so tests or other transports (skopeo, crane) can take its place.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How to reach one registry.
#[derive(Clone, Default)]
pub struct RegistryAccess {
    pub username: String,
    pub password: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// An extra CA (PEM) to trust.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for RegistryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("RegistryAccess")
            .field("username", &self.username)
            .field("plain_http", &self.plain_http)
            .field("ca", &self.ca_pem.is_some())
            .finish()
    }
}

impl RegistryAccess {
    fn auth(&self) -> RegistryAuth {
        if self.username.is_empty() && self.password.is_empty() {
            RegistryAuth::Anonymous
        } else {
            RegistryAuth::Basic(self.username.clone(), self.password.clone())
        }
    }
}

/// Why a copy failed, as shown on the image.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CopyError(pub String);

/// Copies one image reference to another.
#[async_trait]
pub trait ImageCopier: Send + Sync {
    /// Copy `src` to `dst`; returns the manifest digest (the same at both ends).
    async fn copy(
        &self,
        src: &Reference,
        src_access: &RegistryAccess,
        dst: &Reference,
        dst_access: &RegistryAccess,
    ) -> Result<String, CopyError>;
}

/// Manifest media types we accept and copy.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Blobs up to this size are copied through memory in one request each.
const SMALL_BLOB: u64 = 4 << 20;
const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// The registry-API copier. Clients (connection pools, TLS setup, tokens) are kept per
/// access settings and reused across copies.
pub struct OciCopier {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    clients: Mutex<HashMap<String, Client>>,
}

/// Render an oci-client error with its causes.
pub fn describe(e: &OciDistributionError) -> String {
    crate::error::error_chain(e)
}

impl OciCopier {
    pub fn new(connect_timeout: Duration, read_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            read_timeout,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A client for one registry (shared by every copy with the same access settings).
    pub fn client(&self, access: &RegistryAccess, monolithic: bool) -> Result<Client, CopyError> {
        // Keyed by a hash so the cache holds no second copy of the password.
        let key = hex::encode(Sha256::digest(
            format!(
                "{}\0{}\0{}\0{}\0{}",
                access.plain_http,
                monolithic,
                access.ca_pem.as_deref().unwrap_or_default(),
                access.username,
                access.password
            )
            .as_bytes(),
        ));
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let c = self.new_client(access, monolithic)?;
        // Bounded: registries are few; a full cache just starts over.
        if clients.len() >= 256 {
            clients.clear();
        }
        clients.insert(key, c.clone());
        Ok(c)
    }

    fn new_client(&self, access: &RegistryAccess, monolithic: bool) -> Result<Client, CopyError> {
        let mut cfg = ClientConfig {
            protocol: if access.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(self.connect_timeout),
            read_timeout: Some(self.read_timeout),
            use_monolithic_push: monolithic,
            platform_resolver: None,
            user_agent: concat!("zadig-server/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        if let Some(pem) = access.ca_pem.as_ref().filter(|p| !p.trim().is_empty()) {
            cfg.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.as_bytes().to_vec(),
            });
        }
        Client::try_from(cfg).map_err(|e| {
            CopyError(format!(
                "cannot set up the registry client: {}",
                describe(&e)
            ))
        })
    }
}

/// The media type of manifest bytes: their `mediaType`, else what their shape says.
pub fn manifest_media_type(bytes: &[u8]) -> Result<(String, Value), CopyError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| CopyError(format!("the source manifest is not JSON: {e}")))?;
    let mt = match v.get("mediaType").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ if v.get("manifests").is_some() => OCI_INDEX.to_string(),
        _ if v.get("layers").is_some() => OCI_MANIFEST.to_string(),
        _ => {
            return Err(CopyError(
                "the source manifest has an unsupported format (schema 1?)".to_string(),
            ));
        }
    };
    Ok((mt, v))
}

fn err(what: &str, e: &OciDistributionError) -> CopyError {
    CopyError(format!("{what}: {}", describe(e)))
}

struct Ends<'a> {
    sc: &'a Client,
    sauth: &'a RegistryAuth,
    dc: &'a Client,
    src: &'a Reference,
    dst: &'a Reference,
}

impl Ends<'_> {
    /// Copy one blob unless the target has it.
    async fn blob(&self, digest: &str, size: Option<u64>) -> Result<(), CopyError> {
        match self.dc.blob_exists(self.dst, digest).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                return Err(err(
                    &format!("cannot check blob {digest} at the target"),
                    &e,
                ));
            }
        }
        let same_registry = self.src.resolve_registry() == self.dst.resolve_registry();
        if same_registry
            && self.src.repository() != self.dst.repository()
            && self.dc.mount_blob(self.dst, self.src, digest).await.is_ok()
        {
            return Ok(());
        }
        // Small blobs go in one request (a streamed body costs round trips); large ones stream.
        if size.is_some_and(|s| s <= SMALL_BLOB) {
            let mut data = Vec::new();
            self.sc
                .pull_blob(self.src, digest, &mut data)
                .await
                .map_err(|e| err(&format!("cannot pull blob {digest}"), &e))?;
            self.dc
                .push_blob(self.dst, data, digest)
                .await
                .map_err(|e| err(&format!("cannot push blob {digest}"), &e))?;
            return Ok(());
        }
        let pulled = self
            .sc
            .pull_blob_stream(self.src, digest)
            .await
            .map_err(|e| err(&format!("cannot pull blob {digest}"), &e))?;
        let size = size.or(pulled.content_length);
        let stream = pulled.stream.map_err(OciDistributionError::from);
        self.dc
            .push_blob_stream(self.dst, stream, digest, size)
            .await
            .map_err(|e| err(&format!("cannot push blob {digest}"), &e))?;
        Ok(())
    }

    /// Copy the blobs an image manifest references.
    async fn blobs_of(&self, manifest: &Value) -> Result<(), CopyError> {
        let config = manifest.get("config").into_iter();
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for d in config.chain(layers) {
            let digest = d.get("digest").and_then(Value::as_str).unwrap_or_default();
            if digest.is_empty() {
                return Err(CopyError("a manifest descriptor has no digest".to_string()));
            }
            // Foreign (non-distributable) layers live at their URLs, not in the registry.
            if d.get("urls")
                .is_some_and(|u| u.as_array().is_some_and(|a| !a.is_empty()))
            {
                continue;
            }
            self.blob(digest, d.get("size").and_then(Value::as_u64))
                .await?;
        }
        Ok(())
    }

    /// Copy a child manifest of an index, by digest.
    async fn child(&self, digest: &str, media_type: &str) -> Result<(), CopyError> {
        let src = self.src.clone_with_digest(digest.to_string());
        let dst = Reference::with_digest(
            self.dst.registry().to_string(),
            self.dst.repository().to_string(),
            digest.to_string(),
        );
        let (bytes, _) = self
            .sc
            .pull_manifest_raw(&src, self.sauth, ACCEPT)
            .await
            .map_err(|e| err(&format!("cannot pull manifest {digest}"), &e))?;
        let (mt, v) = manifest_media_type(&bytes)?;
        let mt = if mt.is_empty() {
            media_type.to_string()
        } else {
            mt
        };
        if v.get("manifests").is_some() {
            return Err(CopyError(format!("nested index {digest} is not supported")));
        }
        let child = Ends {
            src: &src,
            dst: &dst,
            ..*self
        };
        child.blobs_of(&v).await?;
        self.dc
            .push_manifest_raw(&dst, bytes, header(&mt)?)
            .await
            .map_err(|e| err(&format!("cannot push manifest {digest}"), &e))?;
        Ok(())
    }
}

fn header(mt: &str) -> Result<reqwest::header::HeaderValue, CopyError> {
    reqwest::header::HeaderValue::from_str(mt)
        .map_err(|_| CopyError(format!("invalid manifest media type {mt:?}")))
}

#[async_trait]
impl ImageCopier for OciCopier {
    async fn copy(
        &self,
        src: &Reference,
        src_access: &RegistryAccess,
        dst: &Reference,
        dst_access: &RegistryAccess,
    ) -> Result<String, CopyError> {
        let sc = self.client(src_access, false)?;
        let dc = self.client(dst_access, true)?;
        let (sauth, dauth) = (src_access.auth(), dst_access.auth());
        for (client, at, auth, op, side) in [
            (&sc, src, &sauth, RegistryOperation::Pull, "source"),
            (&dc, dst, &dauth, RegistryOperation::Push, "target"),
        ] {
            client.auth(at, auth, op).await.map_err(|e| {
                err(
                    &format!("cannot reach {side} registry {}", at.registry()),
                    &e,
                )
            })?;
        }
        let (bytes, digest) = sc
            .pull_manifest_raw(src, &sauth, ACCEPT)
            .await
            .map_err(|e| err(&format!("cannot read source manifest {}", src.whole()), &e))?;
        let (mt, manifest) = manifest_media_type(&bytes)?;
        let ends = Ends {
            sc: &sc,
            sauth: &sauth,
            dc: &dc,
            src,
            dst,
        };
        if let Some(children) = manifest.get("manifests").and_then(Value::as_array) {
            for c in children {
                let d = c.get("digest").and_then(Value::as_str).unwrap_or_default();
                let cmt = c
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if d.is_empty() {
                    return Err(CopyError("an index entry has no digest".to_string()));
                }
                ends.child(d, cmt).await?;
            }
        } else {
            ends.blobs_of(&manifest).await?;
        }
        dc.push_manifest_raw(dst, bytes, header(&mt)?)
            .await
            .map_err(|e| err(&format!("cannot push manifest to {}", dst.whole()), &e))?;
        Ok(digest)
    }
}

/// Parse an image reference; a missing tag is taken from `tag` (when given).
pub fn parse_image(image: &str, tag: &str) -> Result<Reference, String> {
    let image = image.trim();
    if image.is_empty() {
        return Err("is empty".to_string());
    }
    let parsed: Reference = image
        .parse()
        .map_err(|e| format!("{image:?} is not an image reference: {e}"))?;
    let has_tag = explicit_tag(image).is_some() || parsed.digest().is_some();
    if has_tag || tag.trim().is_empty() {
        return Ok(parsed);
    }
    let with_tag = format!("{image}:{}", tag.trim());
    with_tag
        .parse()
        .map_err(|e| format!("{with_tag:?} is not an image reference: {e}"))
}

/// The tag written in `image` itself (after the last `/`), if any.
pub fn explicit_tag(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    last.split_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.is_empty())
}

/// The registry host of a reference, with Docker Hub's aliases folded to `docker.io`.
pub fn registry_host(r: &Reference) -> String {
    fold_host(&r.registry().to_ascii_lowercase())
}

/// A registry host with Docker Hub's aliases folded to `docker.io`.
pub fn fold_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_with_and_without_tags() {
        let r = parse_image("127.0.0.1:5000/test/app", "v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "test/app");
        assert_eq!(r.tag(), Some("v1"));
        let r = parse_image("127.0.0.1:5000/test/app:v2", "v1").unwrap();
        assert_eq!(r.tag(), Some("v2"));
        let r = parse_image("nginx", "1.25").unwrap();
        assert_eq!(registry_host(&r), "docker.io");
        assert!(parse_image("", "x").is_err());
        assert!(parse_image("library/UPPER:1", "").is_err());
        assert!(parse_image("a b", "").is_err());
        assert_eq!(explicit_tag("h:5000/a/b"), None);
        assert_eq!(explicit_tag("h:5000/a/b:t"), Some("t"));
    }

    #[test]
    fn media_type_from_shape() {
        let (mt, _) = manifest_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert_eq!(mt, OCI_INDEX);
        let (mt, _) = manifest_media_type(br#"{"schemaVersion":2,"layers":[]}"#).unwrap();
        assert_eq!(mt, OCI_MANIFEST);
        assert!(manifest_media_type(b"{}").is_err());
    }
}
