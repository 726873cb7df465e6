//! Delivery versions over the API (seed 003): registries and chart repositories, the version
//! routes with the seed's bodies, and every input error. Copies that need no network
//! (`push_image: false`) run here; real copies are in `delivery_pipeline`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_test;
use crate::harness::{TestApp, assert_fields};

/// Register an image registry; returns its id.
pub async fn add_registry(app: &TestApp, address: &str, namespace: &str) -> String {
    let r = app
        .post(
            "/openapi/system/registry",
            json!({"address": address, "provider": "native", "namespace": namespace,
                "is_default": false, "access_key": "", "secret_key": "", "enable_tls": false}),
        )
        .await;
    r.expect(200)["id"].as_str().expect("id").to_string()
}

/// Register a chart repository; returns its id.
pub async fn add_chart_repo(app: &TestApp, name: &str, url: &str, plain_http: bool) -> String {
    let r = app
        .post(
            "/openapi/system/helm",
            json!({"repo_name": name, "url": url, "username": "", "password": "", "plain_http": plain_http}),
        )
        .await;
    r.expect(200)["id"].as_str().expect("id").to_string()
}

/// Poll the version until its status is one of `want` (bounded).
pub async fn wait_status(app: &TestApp, id: &str, want: &[&str]) -> Value {
    app.wait_for(
        &format!("version {id} to be {want:?}"),
        Duration::from_secs(30),
        || async move {
            let r = app.get(&format!("/openapi/delivery/releases/{id}")).await;
            let b = r.expect(200).clone();
            want.contains(&b["status"].as_str().unwrap_or_default())
                .then_some(b)
        },
    )
    .await
}

/// `base` with the field at `path` (dot-separated; numbers index arrays) set to `v`, or removed
/// when `v` is `None`.
fn edited(base: &Value, path: &str, v: Option<Value>) -> Value {
    let mut b = base.clone();
    let (parent, last) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
    let mut node = &mut b;
    for p in parent.split('.').filter(|p| !p.is_empty()) {
        node = match p.parse::<usize>() {
            Ok(i) => &mut node[i],
            Err(_) => &mut node[p],
        };
    }
    match v {
        Some(v) => node[last] = v,
        None => {
            node.as_object_mut().expect("an object").remove(last);
        }
    }
    b
}

/// Every key of `want` (recursively; the first element of arrays) is in `got`.
pub fn assert_keys(want: &Value, got: &Value, at: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("missing key {at}.{k} in {got}"));
                assert_keys(wv, gv, &format!("{at}.{k}"));
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if let (Some(w0), Some(g0)) = (w.first(), g.first()) {
                assert_keys(w0, g0, &format!("{at}[0]"));
            }
        }
        _ => {}
    }
}

/// The seed's K8s YAML detail example (seed 003 "K8s YAML 项目"), trimmed to one service.
pub fn seed_k8s_detail() -> Value {
    json!({
        "version": "v7.0.0", "project_name": "yaml", "env_name": "dev", "production": false,
        "type": "K8SYaml", "source": "from_env", "desc": "", "labels": [],
        "image_registry_id": "683047fe458904519c5f5c80", "chart_repo_name": "",
        "services": [{
            "service_name": "service1", "chart_name": "", "original_chart_version": "",
            "chart_version": "", "chart_status": "", "yaml_content": "apiVersion: apps/v1\n",
            "images": [{
                "container_name": "service1", "image_name": "service1",
                "source_image": "koderover.tencentcloudcr.com/test/service1:20250908142239-3-patrick-01",
                "source_image_tag": "20250908142239-3-patrick-01",
                "target_image": "koderover.tencentcloudcr.com/test/service1:v2",
                "target_image_tag": "v2", "image_path": null, "push_image": true,
                "status": "passed", "error": ""
            }],
            "error": ""
        }],
        "status": "success", "error": "", "created_by": "lilian", "created_at": 1757493873, "deleted_at": 0
    })
}

/// A Deployment running `image` in container `name`.
pub fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - name: {name}\n        image: {image}\n        imagePullPolicy: Always\n"
    )
}

backend_test! {
    async fn registries_crud(app) {
        let body = json!({"address": "https://registry.example.com", "provider": "harbor", "namespace": "release",
            "is_default": true, "access_key": "robot", "secret_key": "s3cret", "enable_tls": true, "tls_cert": "", "region": ""});
        let r = app.post("/openapi/system/registry", body.clone()).await;
        assert_eq!(r.expect(200)["message"], "success");
        let id = r.body["id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 24);

        let list = app.get("/openapi/system/registry").await;
        let arr = list.expect(200).as_array().unwrap().clone();
        assert_eq!(arr.len(), 1);
        assert_eq!(arr[0]["registry_id"], id.as_str());
        assert_eq!(arr[0]["address"], "https://registry.example.com");
        assert_eq!(arr[0]["provider"], "harbor");
        assert_eq!(arr[0]["namespace"], "release");
        assert_eq!(arr[0]["is_default"], true);
        assert!(!list.text.contains("s3cret") && arr[0].get("secret_key").is_none(), "{}", list.text);

        // A second default takes the flag over.
        let id2 = app.post("/openapi/system/registry", json!({"address": "http://127.0.0.1:5000", "provider": "native",
            "namespace": "dev", "is_default": true})).await.expect(200)["id"].as_str().unwrap().to_string();
        let one = app.get(&format!("/openapi/system/registry/{id}")).await;
        assert_eq!(one.expect(200)["is_default"], false);
        assert!(!one.text.contains("s3cret"));

        // PUT with Zadig's update body keeps the credentials it does not send.
        app.put(&format!("/openapi/system/registry/{id}"), json!({"address": "https://registry.example.com",
            "provider": "harbor", "namespace": "prod", "is_default": false, "region": ""})).await.expect(200);
        let one = app.get(&format!("/openapi/system/registry/{id}")).await;
        assert_eq!(one.expect(200)["namespace"], "prod");
        assert_eq!(one.body["access_key"], "robot");
        let stored = app.state().delivery.registries.registry(&id).await.unwrap().unwrap();
        assert_eq!(stored.secret_key, "s3cret");
        assert_eq!(app.get(&format!("/openapi/system/registry/{id2}")).await.expect(200)["is_default"], true);
        // Other areas find a registry by Zadig's `<address>/<namespace>` key.
        let regs = &app.state().delivery.registries;
        assert_eq!(regs.registry_by_key("https://registry.example.com/prod").await.unwrap().map(|r| r.id), Some(id.clone()));
        assert_eq!(regs.registry_by_key("127.0.0.1:5000/dev/").await.unwrap().map(|r| r.id), Some(id2.clone()));
        assert!(regs.registry_by_key("registry.example.com/release").await.unwrap().is_none());

        // Errors name the field.
        app.post("/openapi/system/registry", json!({"provider": "native", "namespace": "x"})).await.expect_error(400, "address");
        app.post("/openapi/system/registry", json!({"address": "https://r.io", "provider": "quay", "namespace": "x"})).await.expect_error(400, "provider");
        app.post("/openapi/system/registry", json!({"address": "https://r.io", "provider": "native"})).await.expect_error(400, "namespace");
        app.post("/openapi/system/registry", json!({"address": "ftp://r.io", "provider": "native", "namespace": "x"})).await.expect_error(400, "address");
        app.post("/openapi/system/registry", json!({"address": "https://r.io", "provider": "native", "namespace": "x", "is_default": "yes"})).await.expect_error(400, "is_default");
        app.put(&format!("/openapi/system/registry/{id}"), json!({"address": "", "provider": "native", "namespace": "x"})).await.expect_error(400, "address");
        app.get("/openapi/system/registry/000000000000000000000000").await.expect_error(404, "000000000000000000000000");
        app.put("/openapi/system/registry/000000000000000000000000", body.clone()).await.expect_error(404, "not found");
        // ECR needs no namespace but a region.
        app.post("/openapi/system/registry", json!({"address": "https://1.dkr.ecr.us-east-1.amazonaws.com", "provider": "ecr", "region": "us-east-1"})).await.expect(200);

        // Only system admins write (and read one registry, as in Zadig); everyone lists.
        let (_, token) = app.create_user("dev", false).await;
        app.call(Method::POST, "/openapi/system/registry", Some(&token), Some(body)).await.expect_error(403, "admin");
        app.call(Method::GET, &format!("/openapi/system/registry/{id}"), Some(&token), None).await.expect_error(403, "admin");
        app.call(Method::GET, "/openapi/system/registry", Some(&token), None).await.expect(200);
        app.call(Method::GET, "/openapi/system/registry", None, None).await.expect_error(401, "token");
        app.stop().await;
    }
}

backend_test! {
    async fn helm_repos_crud(app) {
        let r = app.post("/openapi/system/helm", json!({"repo_name": "test", "url": "oci://127.0.0.1:5000/charts",
            "username": "u", "password": "pw-secret"})).await;
        let id = r.expect(200)["id"].as_str().unwrap().to_string();
        let list = app.get("/openapi/system/helm").await;
        assert_eq!(list.expect(200)[0]["repo_name"], "test");
        assert_eq!(list.body[0]["url"], "oci://127.0.0.1:5000/charts");
        assert!(!list.text.contains("pw-secret"));
        app.post("/openapi/system/helm", json!({"repo_name": "test", "url": "https://charts.example.com"})).await.expect_error(409, "test");
        let id2 = app.post("/openapi/system/helm", json!({"repo_name": "cm", "url": "https://charts.example.com/org/repo"})).await.expect(200)["id"].as_str().unwrap().to_string();
        app.post("/openapi/system/helm", json!({"repo_name": "plain", "url": "127.0.0.1:5000/charts"})).await.expect(200);

        app.put(&format!("/openapi/system/helm/{id}"), json!({"repo_name": "test", "url": "oci://127.0.0.1:5001/charts", "username": "u2", "plain_http": true})).await.expect(200);
        let one = app.get(&format!("/openapi/system/helm/{id}")).await;
        assert_eq!(one.expect(200)["url"], "oci://127.0.0.1:5001/charts");
        assert_eq!(one.body["plain_http"], true);
        assert!(one.body.get("password").is_none());
        let stored = app.state().delivery.registries.repo(&id).await.unwrap().unwrap();
        assert_eq!(stored.password, "pw-secret");
        app.put(&format!("/openapi/system/helm/{id}"), json!({"repo_name": "cm", "url": "oci://x.io/c"})).await.expect_error(409, "cm");

        app.post("/openapi/system/helm", json!({"url": "oci://x.io/c"})).await.expect_error(400, "repo_name");
        app.post("/openapi/system/helm", json!({"repo_name": "n"})).await.expect_error(400, "url");
        app.post("/openapi/system/helm", json!({"repo_name": "n", "url": "acr://x"})).await.expect_error(400, "url");
        app.post("/openapi/system/helm", json!({"repo_name": "n", "url": "s3://bucket"})).await.expect_error(400, "url");
        app.post("/openapi/system/helm", json!({"repo_name": "n", "url": "https://"})).await.expect_error(400, "url");

        let (_, token) = app.create_user("dev", false).await;
        app.call(Method::DELETE, &format!("/openapi/system/helm/{id2}"), Some(&token), None).await.expect_error(403, "admin");
        app.call(Method::GET, &format!("/openapi/system/helm/{id2}"), Some(&token), None).await.expect(200);
        app.delete(&format!("/openapi/system/helm/{id2}")).await.expect(200);
        app.delete(&format!("/openapi/system/helm/{id2}")).await.expect_error(404, "not found");
        app.get(&format!("/openapi/system/helm/{id2}")).await.expect_error(404, "not found");
        assert_eq!(app.get("/openapi/system/helm").await.expect(200).as_array().unwrap().len(), 2);
        app.stop().await;
    }
}

backend_test! {
    async fn k8s_version_lifecycle(app) {
        // The seed's K8s example, as a create body: images not pushed, so nothing leaves the host.
        let reg = add_registry(&app, "https://koderover.tencentcloudcr.com", "test").await;
        let src1 = "koderover.tencentcloudcr.com/test/service1:20250908142239-3-patrick-01";
        let src2 = "koderover.tencentcloudcr.com/test/service2:20250908143005-6-main";
        let body = json!({
            "project_key": "yaml", "version_name": "v7.0.0", "source": "manual", "env_name": "dev",
            "production": false, "desc": "labore id amet", "labels": ["release"], "image_registry_id": reg,
            "services": [
                {"service_name": "service1", "yaml_content": deployment("service1", src1), "images": [{
                    "container_name": "service1", "image_name": "service1", "source_image": src1,
                    "source_image_tag": "20250908142239-3-patrick-01", "target_image": "koderover.tencentcloudcr.com/test/service1:v2",
                    "target_image_tag": "v2", "push_image": false}]},
                {"service_name": "service2", "yaml_content": deployment("service2", src2), "images": [{
                    "container_name": "service2", "image_name": "service2", "source_image": "koderover.tencentcloudcr.com/test/service2",
                    "source_image_tag": "20250908143005-6-main", "target_image": "koderover.tencentcloudcr.com/test/service2",
                    "target_image_tag": "v2", "push_image": false}]}
            ]
        });
        let r = app.post("/openapi/delivery/releases/k8s", body.clone()).await;
        assert_eq!(r.expect(200)["message"], "success");
        let id = r.body["id"].as_str().unwrap().to_string();

        let v = wait_status(&app, &id, &["success", "failed"]).await;
        assert_eq!(v["status"], "success", "{v}");
        assert_keys(&seed_k8s_detail(), &v, "detail");
        for (k, want) in [("id", json!(id)), ("version_name", json!("v7.0.0")), ("version", json!("v7.0.0")),
            ("project_key", json!("yaml")), ("project_name", json!("yaml")), ("description", json!("labore id amet")),
            ("desc", json!("labore id amet")), ("type", json!("K8SYaml")), ("source", json!("manual")),
            ("labels", json!(["release"])), ("image_registry_id", json!(reg)), ("created_by", json!("admin")),
            ("error", json!("")), ("deleted_at", json!(0))] {
            assert_eq!(v[k], want, "{k}: {v}");
        }
        assert_eq!(v["created_at"], v["created_time"]);
        let s1 = &v["services"][0];
        assert!(s1["yaml_content"].as_str().unwrap().contains("image: koderover.tencentcloudcr.com/test/service1:v2"), "{s1}");
        assert!(!s1["yaml_content"].as_str().unwrap().contains(src1));
        let im = &s1["images"][0];
        assert_eq!(im["status"], "");
        assert_eq!(im["image_path"], Value::Null);
        let im2 = &v["services"][1]["images"][0];
        assert_eq!(im2["source_image"], src2);
        assert_eq!(im2["target_image"], "koderover.tencentcloudcr.com/test/service2:v2");

        // Zadig's detail route, by name.
        let d = app.get("/openapi/delivery/releases/detail?projectKey=yaml&versionName=v7.0.0").await;
        assert_eq!(d.expect(200)["id"], id.as_str());
        app.get("/openapi/delivery/releases/detail?projectKey=other&versionName=v7.0.0").await.expect_error(404, "v7.0.0");
        app.get(&format!("/openapi/delivery/releases/{id}?projectKey=other")).await.expect_error(404, &id);

        // Same name in the project → 409 with Zadig's code; another project may reuse it.
        let dup = app.post("/openapi/delivery/releases/k8s", body.clone()).await;
        assert_eq!(dup.expect_error(409, "v7.0.0")["code"], 6560);
        let mut other = body.clone();
        other["project_key"] = json!("other");
        app.post("/openapi/delivery/releases/k8s", other).await.expect(200);

        // A non-admin user works with versions too; the list is newest first.
        let (_, token) = app.create_user("patrick", false).await;
        let mut v2 = body.clone();
        v2["version_name"] = json!("v7.0.1");
        v2["labels"] = Value::Null;
        app.clock.advance(Duration::from_secs(5));
        let r = app.call(Method::POST, "/openapi/delivery/releases/k8s", Some(&token), Some(v2)).await;
        let id2 = r.expect(200)["id"].as_str().unwrap().to_string();
        let list = app.call(Method::GET, "/openapi/delivery/releases?projectKey=yaml&pageNum=1&pageSize=10", Some(&token), None).await;
        let b = list.expect(200);
        assert_eq!(b["total"], 2);
        let first = &b["list"][0];
        assert_fields(first, json!({
            "id": id2.as_str(), "version_name": "v7.0.1", "created_by": "patrick", "labels": [],
            "type": "K8SYaml", "source": "manual", "description": "labore id amet"
        }));
        assert!(first["create_time"].as_i64().unwrap() > 0 && first["create_time"] == first["created_time"]);
        assert!(first["status"].is_string());
        let page2 = app.get("/openapi/delivery/releases?projectKey=yaml&pageNum=2&pageSize=1").await;
        assert_eq!(page2.expect(200)["list"][0]["id"], id.as_str());
        assert_eq!(page2.body["total"], 2);
        let empty = app.get("/openapi/delivery/releases?projectKey=nothing&pageNum=1&pageSize=10").await;
        assert_eq!(empty.expect(200), &json!({"list": [], "total": 0}));

        // Delete: any status; then it is gone.
        wait_status(&app, &id2, &["success"]).await;
        let r = app.delete(&format!("/openapi/delivery/releases/{id}?projectKey=yaml")).await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));
        app.delete(&format!("/openapi/delivery/releases/{id}?projectKey=yaml")).await.expect_error(404, &id);
        app.get(&format!("/openapi/delivery/releases/{id}")).await.expect_error(404, &id);
        assert_eq!(app.get("/openapi/delivery/releases?projectKey=yaml&pageNum=1&pageSize=10").await.expect(200)["total"], 1);
        // The name is free again.
        app.post("/openapi/delivery/releases/k8s", body).await.expect(200);
        app.stop().await;
    }
}

backend_test! {
    async fn create_errors_name_the_field(app) {
        let reg = add_registry(&app, "http://127.0.0.1:1", "ns").await;
        let image = json!({"container_name": "c", "image_name": "app", "source_image": "127.0.0.1:1/ns/app:1",
            "source_image_tag": "1", "target_image": "127.0.0.1:1/ns/app:2", "target_image_tag": "2", "push_image": true});
        let good = json!({"project_key": "p", "version_name": "v1", "source": "manual", "image_registry_id": reg,
            "services": [{"service_name": "s", "yaml_content": "", "images": [image.clone()]}]});
        let k8s = "/openapi/delivery/releases/k8s";
        let helm = "/openapi/delivery/releases/helm";
        // The good body with one field removed (null) or changed.
        let with = |path: &str, v: Value| edited(&good, path, (!v.is_null()).then_some(v));
        for (path, value, needle) in [
            ("project_key", Value::Null, "project_key"),
            ("version_name", json!(""), "version_name"),
            ("version_name", json!("x".repeat(300)), "version_name"),
            ("source", Value::Null, "source"),
            ("source", json!("from_cloud"), "source"),
            ("source", json!("from_env"), "env_name"),
            ("source", json!("from_version"), "original_version_name"),
            ("services", json!([]), "services"),
            ("services", Value::Null, "services"),
            ("image_registry_id", json!(""), "image_registry_id"),
            ("image_registry_id", json!("000000000000000000000000"), "image_registry_id"),
            ("services.0.service_name", json!(""), "services[0].service_name"),
            ("services.0.images.0.container_name", Value::Null, "services[0].images[0].container_name"),
            ("services.0.images.0.image_name", json!(""), "services[0].images[0].image_name"),
            ("services.0.images.0.source_image", json!(""), "services[0].images[0].source_image"),
            ("services.0.images.0.source_image", json!("Not An Image"), "services[0].images[0].source_image"),
            ("services.0.images.0.target_image", Value::Null, "services[0].images[0].target_image"),
            ("services.0.images.0.target_image", json!("registry.other.io/ns/app:2"), "services[0].images[0].target_image"),
            ("services.0.images.0.target_image_tag", json!("3"), "services[0].images[0].target_image_tag"),
            ("services.0.yaml_content", json!("kind: [unclosed"), "services[0].yaml_content"),
            ("production", json!("yes"), "production"),
            ("services.0.images.0.push_image", json!("true"), "push_image"),
            ("labels", json!("x"), "labels"),
        ] {
            let r = app.post(k8s, with(path, value.clone())).await;
            r.expect_error(400, needle);
        }
        // A pushed image needs a target tag.
        let mut untagged = good.clone();
        untagged["services"][0]["images"][0]["target_image"] = json!("127.0.0.1:1/ns/app");
        untagged["services"][0]["images"][0]["target_image_tag"] = json!("");
        app.post(k8s, untagged).await.expect_error(400, "services[0].images[0].target_image_tag");
        // Two services of one name, two images of one container.
        let mut twice = good.clone();
        twice["services"] = json!([good["services"][0], good["services"][0]]);
        app.post(k8s, twice).await.expect_error(400, "services[1].service_name");
        let mut twice = good.clone();
        twice["services"][0]["images"] = json!([image, image]);
        app.post(k8s, twice).await.expect_error(400, "services[0].images[1].container_name");
        app.raw(Method::POST, k8s, "{\"project_key\": ").await.expect_error(400, "JSON");
        app.raw(Method::POST, k8s, "").await.expect_error(400, "empty");

        // Helm: chart_version and image_path are required; the chart repo must exist.
        let mut h = good.clone();
        h["services"][0]["chart_version"] = json!("1.0.0");
        h["services"][0]["images"][0]["image_path"] = json!({"image": "image.repository", "tag": "image.tag"});
        for (path, value, needle) in [
            ("services.0.chart_version", json!(""), "services[0].chart_version"),
            ("services.0.chart_version", json!("1.0/0"), "services[0].chart_version"),
            ("services.0.images.0.image_path", Value::Null, "services[0].images[0].image_path"),
            ("services.0.images.0.image_path", json!({"repo": "a", "namespace": "b", "tag": "c"}), "services[0].images[0].image_path"),
            ("chart_repo_name", json!("nope"), "chart_repo_name"),
            ("services.0.service_name", json!("Service_A"), "chart_name"),
            ("services.0.yaml_content", json!("a: ["), "services[0].yaml_content"),
            ("services.0.yaml_content", json!("- a list"), "services[0].yaml_content"),
        ] {
            app.post(helm, edited(&h, path, Some(value))).await.expect_error(400, needle);
        }

        // from_version: the original must exist in the project and be of the same type.
        let mut fv = good.clone();
        fv["source"] = json!("from_version");
        fv["original_version_name"] = json!("v0");
        app.post(k8s, fv.clone()).await.expect_error(400, "original_version_name");
        let mut manual = good.clone();
        manual["version_name"] = json!("v0");
        manual["services"][0]["images"][0]["push_image"] = json!(false);
        app.post(helm, {
            let mut m = h.clone();
            m["version_name"] = json!("v0");
            m["services"][0]["images"][0]["push_image"] = json!(false);
            m
        }).await.expect(200);
        app.post(k8s, fv.clone()).await.expect_error(400, "HelmChart");
        // Nothing was stored by the failed creates.
        let list = app.get("/openapi/delivery/releases?projectKey=p&pageNum=1&pageSize=50").await;
        assert_eq!(list.expect(200)["total"], 1);
        app.stop().await;
    }
}

backend_test! {
    async fn route_errors(app) {
        app.get("/openapi/delivery/releases?pageNum=1&pageSize=10").await.expect_error(400, "projectKey");
        app.expect_paging_errors("/openapi/delivery/releases?projectKey=p").await;
        app.get("/openapi/delivery/releases?projectKey=p").await.expect(200);
        app.get("/openapi/delivery/releases/detail?projectKey=p").await.expect_error(400, "versionName");
        app.get("/openapi/delivery/releases/detail?versionName=v").await.expect_error(400, "projectKey");
        app.get("/openapi/delivery/releases/detail?projectKey=p&versionName=v").await.expect_error(404, "v");
        app.get("/openapi/delivery/releases/not-an-id").await.expect_error(400, "id");
        app.get("/openapi/delivery/releases/0123456789abcdef01234567").await.expect_error(404, "0123456789abcdef01234567");
        app.delete("/openapi/delivery/releases/0123456789abcdef01234567").await.expect_error(400, "projectKey");
        app.delete("/openapi/delivery/releases/zz?projectKey=p").await.expect_error(400, "id");
        app.delete("/openapi/delivery/releases/0123456789abcdef01234567?projectKey=p").await.expect_error(404, "0123456789abcdef01234567");
        let retry = "/openapi/delivery/releases/retry";
        app.post(retry, json!({"projectKey": "p"})).await.expect_error(400, "id");
        app.post(retry, json!({"id": "0123456789abcdef01234567"})).await.expect_error(400, "projectKey");
        app.post(retry, json!({"id": "0123456789abcdef01234567", "projectKey": "p"})).await.expect_error(404, "0123456789abcdef01234567");
        app.post(&format!("{retry}?id=0123456789abcdef01234567&projectKey=p"), json!({})).await.expect_error(404, "0123456789abcdef01234567");
        app.raw(Method::POST, retry, "{\"id\": 5}").await.expect_error(400, "id");
        app.call(Method::POST, retry, Some(crate::harness::ADMIN_TOKEN), None).await.expect_error(400, "id");

        // Retry is for failed versions only (409 otherwise), found by body or query.
        let r = app.post("/openapi/delivery/releases/k8s", json!({"project_key": "p", "version_name": "v1", "source": "manual",
            "services": [{"service_name": "s", "images": []}]})).await;
        let id = r.expect(200)["id"].as_str().unwrap().to_string();
        let v = wait_status(&app, &id, &["success"]).await;
        assert_eq!(v["services"][0]["images"], json!([]));
        app.post(retry, json!({"id": id, "projectKey": "p"})).await.expect_error(409, "success");
        app.post(&format!("{retry}?id={id}&projectKey=p"), Value::Null).await.expect_error(409, "success");
        app.post(retry, json!({"id": id, "projectKey": "other"})).await.expect_error(404, &id);
        app.get(&format!("/openapi/delivery/releases/{id}/charts/s?projectKey=p")).await.expect_error(404, "chart");
        app.call(Method::GET, "/openapi/delivery/releases?projectKey=p", None, None).await.expect_error(401, "token");
        app.stop().await;
    }
}
