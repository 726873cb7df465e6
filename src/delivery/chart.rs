//! Helm chart packages: building one (`<name>/Chart.yaml`, `values.yaml`, and the templates of
//! a base chart when the version copies another) and pushing it to a chart repository
//! (spec/delivery.md §6.4 and §7.5).
//!
//! Transports: an OCI registry (`oci://host/path`, or a bare `host/path`) gets the chart as an
//! OCI artifact (Helm's media types, tag = chart version with `+` as `_`, like `helm push`);
//! a ChartMuseum-compatible `http(s)://` repository gets `POST <host>/api/<path>/charts` with
//! the package as the multipart field `chart`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oci_client::Reference;
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use serde_yaml_ng::{Mapping, Value};

use super::copier::{OciCopier, RegistryAccess, describe};
use super::registry::{HelmRepo, RepoKind, repo_kind};
use crate::error::error_chain;

pub const HELM_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
pub const HELM_CHART_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// What goes into a package.
pub struct ChartSpec<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub values_yaml: &'a str,
    pub description: &'a str,
    /// A packaged chart whose templates and metadata are kept (from the original version).
    pub base: Option<&'a [u8]>,
    /// Modification time written into the archive (seconds).
    pub mtime: u64,
}

/// A built package: the `.tgz` and Chart.yaml as JSON (the OCI config blob).
pub struct Package {
    pub tgz: Vec<u8>,
    pub config_json: Vec<u8>,
}

/// Files of a packaged chart, relative to its top directory, in archive order.
pub fn unpack(tgz: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let mut files = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| format!("the chart package cannot be read: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the chart package cannot be read: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| format!("bad path in chart package: {e}"))?
            .to_string_lossy()
            .into_owned();
        let mut parts = path.split('/').filter(|p| !p.is_empty() && *p != ".");
        parts.next(); // the chart's top directory
        let rel: Vec<&str> = parts.collect();
        if rel.is_empty() || rel.contains(&"..") || path.starts_with('/') {
            continue;
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("the chart package cannot be read: {e}"))?;
        files.push((rel.join("/"), data));
    }
    Ok(files)
}

/// Build a chart package.
pub fn package(spec: &ChartSpec<'_>) -> Result<Package, String> {
    let base_files = match spec.base {
        Some(b) => unpack(b)?,
        None => Vec::new(),
    };
    let mut meta = base_files
        .iter()
        .find(|(p, _)| p == "Chart.yaml")
        .and_then(|(_, d)| serde_yaml_ng::from_slice::<Value>(d).ok())
        .and_then(|v| v.as_mapping().cloned())
        .unwrap_or_default();
    let mut set = |k: &str, v: &str| {
        meta.insert(Value::from(k), Value::from(v));
    };
    set("name", spec.name);
    set("version", spec.version);
    set("appVersion", spec.version);
    if !meta.contains_key("apiVersion") {
        meta.insert(Value::from("apiVersion"), Value::from("v2"));
    }
    if !meta.contains_key("description") && !spec.description.is_empty() {
        meta.insert(Value::from("description"), Value::from(spec.description));
    }
    // Helm reads apiVersion first by convention; keep it in front.
    let mut ordered = Mapping::new();
    for k in ["apiVersion", "name", "version", "appVersion", "description"] {
        if let Some(v) = meta.remove(k) {
            ordered.insert(Value::from(k), v);
        }
    }
    ordered.extend(meta);
    let chart_yaml = serde_yaml_ng::to_string(&Value::Mapping(ordered.clone()))
        .map_err(|e| format!("cannot write Chart.yaml: {e}"))?;
    let config_json = serde_json::to_vec(&ordered)
        .map_err(|e| format!("cannot write the chart's config: {e}"))?;

    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut add = |rel: &str, data: &[u8]| -> Result<(), String> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(spec.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{}/{rel}", spec.name), data)
            .map_err(|e| format!("cannot write the chart package: {e}"))
    };
    add("Chart.yaml", chart_yaml.as_bytes())?;
    add("values.yaml", spec.values_yaml.as_bytes())?;
    for (rel, data) in &base_files {
        if rel != "Chart.yaml" && rel != "values.yaml" {
            add(rel, data)?;
        }
    }
    let gz = tar
        .into_inner()
        .map_err(|e| format!("cannot write the chart package: {e}"))?;
    let tgz = gz
        .finish()
        .map_err(|e| format!("cannot write the chart package: {e}"))?;
    Ok(Package { tgz, config_json })
}

/// The OCI tag of a chart version (`+` is not allowed in tags; Helm uses `_`).
pub fn oci_tag(version: &str) -> String {
    version.replace('+', "_")
}

/// Pushes chart packages to repositories.
#[async_trait]
pub trait ChartPublisher: Send + Sync {
    /// Push `pkg` of chart `name` version `version`; returns where it landed.
    async fn push(
        &self,
        repo: &HelmRepo,
        name: &str,
        version: &str,
        pkg: &Package,
    ) -> Result<String, String>;
}

/// Pushes to OCI registries and ChartMuseum-compatible repositories.
pub struct RepoPublisher {
    pub oci: Arc<OciCopier>,
    pub http: reqwest::Client,
}

impl RepoPublisher {
    pub fn new(oci: Arc<OciCopier>, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(oci.connect_timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { oci, http })
    }

    async fn push_oci(
        &self,
        repo: &HelmRepo,
        host: &str,
        path: &str,
        name: &str,
        version: &str,
        pkg: &Package,
    ) -> Result<String, String> {
        let repository = if path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", path.trim_matches('/'))
        };
        let reference = Reference::with_tag(host.to_string(), repository, oci_tag(version));
        let access = RegistryAccess {
            username: repo.username.clone(),
            password: repo.password.clone(),
            plain_http: repo.plain_http,
            ca_pem: None,
        };
        let client = self.oci.client(&access, true).map_err(|e| e.0)?;
        let auth = if repo.username.is_empty() && repo.password.is_empty() {
            RegistryAuth::Anonymous
        } else {
            RegistryAuth::Basic(repo.username.clone(), repo.password.clone())
        };
        let layers = vec![ImageLayer::new(
            pkg.tgz.clone(),
            HELM_CHART_MEDIA_TYPE.to_string(),
            None,
        )];
        let config = Config::new(
            pkg.config_json.clone(),
            HELM_CONFIG_MEDIA_TYPE.to_string(),
            None,
        );
        let annotations = BTreeMap::from([
            (
                "org.opencontainers.image.title".to_string(),
                name.to_string(),
            ),
            (
                "org.opencontainers.image.version".to_string(),
                version.to_string(),
            ),
        ]);
        let manifest = OciImageManifest::build(&layers, &config, Some(annotations));
        client
            .push(&reference, &layers, config, &auth, Some(manifest))
            .await
            .map_err(|e| {
                format!(
                    "cannot push chart to oci://{}: {}",
                    reference.whole(),
                    describe(&e)
                )
            })?;
        Ok(format!("oci://{}", reference.whole()))
    }

    async fn push_chartmuseum(
        &self,
        repo: &HelmRepo,
        base: &str,
        name: &str,
        version: &str,
        pkg: &Package,
    ) -> Result<String, String> {
        // `<scheme>://<host>/<path>` → `<scheme>://<host>/api/<path>/charts`.
        let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.trim_matches('/');
        let url = if path.is_empty() {
            format!("{scheme}://{host}/api/charts")
        } else {
            format!("{scheme}://{host}/api/{path}/charts")
        };
        let boundary = format!("zadig-{}", uuid::Uuid::new_v4().simple());
        let file = format!("{name}-{version}.tgz");
        let mut body = Vec::with_capacity(pkg.tgz.len() + 256);
        let _ = write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"chart\"; filename=\"{file}\"\r\nContent-Type: application/gzip\r\n\r\n"
        );
        body.extend_from_slice(&pkg.tgz);
        let _ = write!(body, "\r\n--{boundary}--\r\n");
        let mut req = self
            .http
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        if !repo.username.is_empty() || !repo.password.is_empty() {
            req = req.basic_auth(&repo.username, Some(&repo.password));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot push chart to {url}: {}", error_chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(format!("{base}/{file}"));
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        Err(format!(
            "chart repository {url} answered {status} to the push of {file}: {}",
            text.trim()
        ))
    }
}

#[async_trait]
impl ChartPublisher for RepoPublisher {
    async fn push(
        &self,
        repo: &HelmRepo,
        name: &str,
        version: &str,
        pkg: &Package,
    ) -> Result<String, String> {
        match repo_kind(&repo.url).map_err(|e| e.description)? {
            RepoKind::Oci { host, path } => {
                self.push_oci(repo, &host, &path, name, version, pkg).await
            }
            RepoKind::ChartMuseum { base } => {
                self.push_chartmuseum(repo, &base, name, version, pkg).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_roundtrip_keeps_base_templates() {
        let first = package(&ChartSpec {
            name: "svc",
            version: "1.0.0",
            values_yaml: "a: 1\n",
            description: "d",
            base: None,
            mtime: 1,
        })
        .unwrap();
        let files = unpack(&first.tgz).unwrap();
        assert_eq!(files.len(), 2);
        assert!(String::from_utf8_lossy(&files[0].1).contains("version: 1.0.0"));
        // Add a template by hand, then repackage under a new name and version.
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (rel, data) in files
            .iter()
            .chain([("templates/d.yaml".to_string(), b"kind: X\n".to_vec())].iter())
        {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            tar.append_data(&mut h, format!("svc/{rel}"), data.as_slice())
                .unwrap();
        }
        let base = tar.into_inner().unwrap().finish().unwrap();
        let second = package(&ChartSpec {
            name: "svc2",
            version: "2.0.0+b1",
            values_yaml: "a: 2\n",
            description: "",
            base: Some(&base),
            mtime: 2,
        })
        .unwrap();
        let files = unpack(&second.tgz).unwrap();
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, vec!["Chart.yaml", "values.yaml", "templates/d.yaml"]);
        let chart = String::from_utf8_lossy(&files[0].1);
        assert!(
            chart.contains("name: svc2") && chart.contains("version: 2.0.0+b1"),
            "{chart}"
        );
        let cfg: serde_json::Value = serde_json::from_slice(&second.config_json).unwrap();
        assert_eq!(cfg["name"], "svc2");
        assert_eq!(oci_tag("2.0.0+b1"), "2.0.0_b1");
    }
}
