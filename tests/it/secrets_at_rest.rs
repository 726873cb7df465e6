//! Secrets at rest (docs/security.md): registry `secret_key`, chart-repository `password`,
//! credential variables (builds, workflows, tasks, release plans),
//! cluster `kube_config` and the release-plan `hook_secret` are stored encrypted (no marker in any file of the data dir,
//! nor in any raw MongoDB document) yet work as before; plain-text values of earlier versions
//! are read and re-encrypted at start; a wrong or missing key stops the start with an error
//! naming `secret_key_file`; the data dir, database files and key file are private.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use zadig_server::config::Config;
use zadig_server::delivery::registry::{HelmRepo, Registry};
use zadig_server::release_plan::hooks::HookSetting;
use zadig_server::store::{Doc, Filter, to_doc};

use crate::harness::{Kind, TestApp};
use crate::kind_test;
use crate::release_plan::{create_with_text_jobs, set_status, simple_body};
use crate::release_plan_hooks::{Receiver, enable_hooks};

fn marker(what: &str) -> String {
    format!("MARKER-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// A data dir that exists with a lax mode (0755), so the test sees the server narrow it.
fn lax_data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

async fn start_in(kind: Kind, data_dir: &Path) -> Option<TestApp> {
    let d = data_dir.to_path_buf();
    TestApp::start_with(kind, move |c| c.data_dir = d).await
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every byte of every file under `dir`. A file or folder gone between listing and reading
/// (a finished job's workspace, a journal) is not at rest and is passed over.
fn all_file_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn unless_gone<T>(r: std::io::Result<T>, p: &Path) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("{}: {e}", p.display()),
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Some(entries) = unless_gone(std::fs::read_dir(&d), &d) else {
            continue;
        };
        for e in entries {
            let Some(e) = unless_gone(e, &d) else {
                continue;
            };
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(bytes) = unless_gone(std::fs::read(&p), &p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every raw document of the test's MongoDB database, as extended-JSON text.
/// The document of `coll` matching `filter` as the backend stores it (it must exist).
async fn stored_doc(app: &TestApp, coll: &str, filter: Filter) -> Doc {
    let doc = app
        .backend
        .collection(coll)
        .find_one(&filter)
        .await
        .unwrap();
    doc.unwrap_or_else(|| panic!("no stored document in {coll}"))
}

async fn raw_mongo_docs(config: &Config) -> Vec<String> {
    let client = mongodb::Client::with_uri_str(&config.mongodb_uri)
        .await
        .unwrap();
    let db = client.database(&config.mongodb_database);
    let mut out = Vec::new();
    for name in db.list_collection_names().await.unwrap() {
        let docs: Vec<bson::Document> = db
            .collection::<bson::Document>(&name)
            .find(bson::doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        out.extend(
            docs.into_iter()
                .map(|d| format!("{name}: {}", bson::Bson::Document(d).into_relaxed_extjson())),
        );
    }
    out
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn secrets_are_encrypted_at_rest(kind: Kind) {
    let root = tempfile::tempdir().unwrap();
    let data = lax_data_dir(root.path());
    let Some(app) = start_in(kind, &data).await else {
        return;
    };
    let (sk, pw, hs, kc) = (
        marker("sk"),
        marker("pw"),
        marker("hook"),
        marker("kubeconfig"),
    );

    // An image registry and a chart repository with secrets; GET never shows them.
    let reg = app
        .post(
            "/openapi/system/registry",
            json!({"address": "http://127.0.0.1:9", "provider": "native", "namespace": "ns",
                   "access_key": "robot", "secret_key": sk}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = app
        .post(
            "/openapi/system/helm",
            json!({"repo_name": "charts", "url": "oci://127.0.0.1:9/charts", "username": "u",
                   "password": pw}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        "/openapi/system/registry".to_string(),
        format!("/openapi/system/registry/{reg}"),
        "/openapi/system/helm".to_string(),
        format!("/openapi/system/helm/{repo}"),
    ] {
        let r = app.get(&path).await;
        r.expect(200);
        assert!(
            !r.text.contains(&sk) && !r.text.contains(&pw),
            "{path}: {}",
            r.text
        );
    }
    // An update without the secret keeps it (read back, decrypted, re-encrypted).
    app.put(
        &format!("/openapi/system/registry/{reg}"),
        json!({"address": "http://127.0.0.1:9", "provider": "native", "namespace": "ns2"}),
    )
    .await
    .expect(200);
    // A cluster's kubeconfig: never shown, read back plain by the client registry.
    let kubeconfig = crate::clusters::kubeconfig("https://127.0.0.1:9", &kc);
    let cluster = app
        .post(
            "/openapi/system/cluster",
            json!({"name": "sealed", "type": "kubeconfig", "kube_config": kubeconfig}),
        )
        .await;
    assert!(!cluster.text.contains(&kc), "{}", cluster.text);
    let cluster = cluster.body["cluster"]["cluster_id"]
        .as_str()
        .unwrap()
        .to_string();
    let list = app.get("/openapi/system/cluster").await;
    assert!(!list.text.contains(&kc), "{}", list.text);
    let stored = app
        .state()
        .clusters
        .store
        .get(&cluster)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.kube_config, kubeconfig);
    assert!(!format!("{stored:?}").contains(&kc));

    // What the pipeline and the engine use is the plain value.
    let d = &app.state().delivery;
    let r = d.registries.registry(&reg).await.unwrap().unwrap();
    assert_eq!(
        (r.namespace.as_str(), r.secret_key.as_str()),
        ("ns2", sk.as_str())
    );
    assert_eq!(
        d.login(&r, 0).await.unwrap(),
        ("robot".to_string(), sk.clone())
    );
    assert_eq!(
        d.registries.repo(&repo).await.unwrap().unwrap().password,
        pw
    );
    assert_eq!(
        d.registries
            .repo_by_name("charts")
            .await
            .unwrap()
            .unwrap()
            .password,
        pw
    );

    // The hook secret still signs hooks.
    let recv = Receiver::start().await;
    enable_hooks(&app, &recv.url, false, &hs).await;
    let got = app.get("/openapi/release_plan/v1/hook/setting").await;
    assert!(!got.text.contains(&hs), "{}", got.text);
    let body = simple_body("sealed", "admin");
    let id = create_with_text_jobs(&app, body, 1).await;
    set_status(&app, &id, "finish_planning").await.expect(200);
    let hits = recv.wait_hits(&app, 1).await;
    assert_eq!(hits[0].header("x-zadig-token"), hs);
    assert_eq!(
        hits[0].header("x-zadig-signature"),
        format!("sha256={}", hmac_hex(&hs, &hits[0].body))
    );

    // Nothing stored holds a marker.
    let markers = [&sk, &pw, &hs, &kc];
    let config = app.config.clone();
    if kind == Kind::Mongo {
        let docs = raw_mongo_docs(&config).await;
        assert!(docs.iter().any(|d| d.contains("enc:v1:")), "{docs:?}");
        for d in &docs {
            for m in markers {
                assert!(!d.contains(m.as_str()), "raw document holds a secret: {d}");
            }
        }
    }
    app.stop().await;
    // Stopped: the embedded database is closed (WAL checkpointed); whatever is left is read too.
    let files = all_file_bytes(&data);
    assert!(
        files.iter().any(|(_, b)| contains(b, "enc:v1:")) || kind == Kind::Mongo,
        "the embedded database was not found under {}",
        data.display()
    );
    for (p, bytes) in &files {
        for m in markers {
            assert!(
                !contains(bytes, m),
                "{} holds a secret in clear",
                p.display()
            );
        }
    }

    // File modes.
    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(&data.join("secret.key")), 0o600, "key file");
    assert_eq!(
        std::fs::metadata(data.join("secret.key")).unwrap().len(),
        32
    );
    if kind == Kind::Embedded {
        assert_eq!(mode(&data.join("zadig.db")), 0o600, "database");
        for (p, _) in &files {
            let name = p.file_name().unwrap().to_string_lossy();
            if name.starts_with("zadig.db") {
                assert_eq!(mode(p), 0o600, "{name}");
            }
        }
    }
}
kind_test!(secrets_are_encrypted_at_rest);

/// While the server runs, the WAL and shared-memory files are private too.
async fn database_files_are_private_while_running(kind: Kind) {
    if kind == Kind::Mongo {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let data = lax_data_dir(root.path());
    let Some(app) = start_in(kind, &data).await else {
        return;
    };
    app.post(
        "/openapi/system/helm",
        json!({"repo_name": "r", "url": "oci://127.0.0.1:9/c", "password": "x"}),
    )
    .await
    .expect(200);
    let mut seen = 0;
    for suffix in ["", "-wal", "-shm"] {
        let p = data.join(format!("zadig.db{suffix}"));
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            seen += 1;
        }
    }
    assert!(seen >= 2, "zadig.db and its WAL exist while running");
    assert_eq!(mode(&data), 0o700);
    app.stop().await;
}
kind_test!(database_files_are_private_while_running);

async fn plain_text_values_are_read_and_re_encrypted(kind: Kind) {
    let Some(app) = TestApp::start(kind).await else {
        return;
    };
    let (sk, pw, hs) = (marker("sk"), marker("pw"), marker("hook"));
    // Documents as an earlier version wrote them: secrets in clear.
    let reg = Registry {
        id: "65f000000000000000000001".into(),
        address: "http://127.0.0.1:9".into(),
        provider: "native".into(),
        namespace: "legacy".into(),
        is_default: false,
        access_key: "robot".into(),
        secret_key: sk.clone(),
        enable_tls: false,
        tls_cert: String::new(),
        region: String::new(),
        created_at: 1,
        updated_at: 1,
        updated_by: "old".into(),
    };
    let repo = HelmRepo {
        id: "65f000000000000000000002".into(),
        repo_name: "legacy".into(),
        url: "oci://127.0.0.1:9/c".into(),
        username: "u".into(),
        password: pw.clone(),
        plain_http: true,
        created_at: 1,
        updated_at: 1,
    };
    let hook = HookSetting {
        id: zadig_server::release_plan::hooks::SETTING_ID.into(),
        enable: false,
        hook_secret: hs.clone(),
        ..HookSetting::default()
    };
    let b = &app.backend;
    b.collection("image_registries")
        .insert(to_doc(&reg).unwrap())
        .await
        .unwrap();
    b.collection("helm_repos")
        .insert(to_doc(&repo).unwrap())
        .await
        .unwrap();
    b.collection("settings")
        .insert(to_doc(&hook).unwrap())
        .await
        .unwrap();

    // Read as plain before any migration ran.
    let check = |app: &TestApp| {
        let d = app.state().delivery.clone();
        let plans = app.state().clone();
        let (sk, pw, hs) = (sk.clone(), pw.clone(), hs.clone());
        let (reg_id, repo_id) = (reg.id.clone(), repo.id.clone());
        async move {
            let r = d.registries.registry(&reg_id).await.unwrap().unwrap();
            assert_eq!(r.secret_key, sk);
            assert_eq!(
                d.registries.repo(&repo_id).await.unwrap().unwrap().password,
                pw
            );
            assert_eq!(
                plans
                    .release_plans
                    .hook_setting()
                    .await
                    .unwrap()
                    .hook_secret,
                hs
            );
        }
    };
    check(&app).await;
    let r = app.get("/openapi/system/registry").await;
    r.expect(200);
    assert!(!r.text.contains(&sk));

    // The next start encrypts them in place.
    let app = app.restart().await;
    for (coll, field, plain) in [
        ("image_registries", "secret_key", &sk),
        ("helm_repos", "password", &pw),
        ("settings", "hook_secret", &hs),
    ] {
        let raw = stored_doc(&app, coll, Filter::All).await;
        let stored = raw[field].as_str().unwrap();
        assert!(stored.starts_with("enc:v1:"), "{coll}.{field}: {stored}");
        assert!(!stored.contains(plain.as_str()));
    }
    check(&app).await;
    // Another start leaves them as they are (already encrypted).
    let stored = |app: &TestApp| {
        let helm_repos = app.backend.collection("helm_repos");
        async move { helm_repos.find_one(&Filter::All).await.unwrap().unwrap() }
    };
    let before = stored(&app).await;
    let app = app.restart().await;
    assert_eq!(before, stored(&app).await);
    check(&app).await;
    app.stop().await;
}
kind_test!(plain_text_values_are_read_and_re_encrypted);

/// Credential variables — a build's, a workflow's parameters and job variables, the tasks that
/// run them, a release plan's workflow copy and execute parameters — are stored encrypted (no
/// marker in a raw document or a file), yet read back plain; plain values an earlier version
/// stored are encrypted when the collection is migrated at start.
async fn credential_variables_are_encrypted_at_rest(kind: Kind) {
    let root = tempfile::tempdir().unwrap();
    let data = lax_data_dir(root.path());
    let Some(app) = start_in(kind, &data).await else {
        return;
    };
    let (bv, pv, ev, rv, ov, uv) = (
        marker("build"),
        marker("param"),
        marker("env"),
        marker("plan"),
        marker("oauth"),
        marker("url"),
    );
    crate::build::create_shell_build(&app, "p", "sealed-build", "true", ("svc", "m"),
        json!({"parameters": [{"key": "PASS", "type": "string", "default_value": bv, "is_credential": true}]})).await;
    let mut wf = crate::workflows::echo_workflow("wf", "p");
    wf["params"] = json!([{"name": "TOKEN", "type": "string", "value": pv, "is_credential": true}]);
    wf["stages"][0]["jobs"][0]["spec"]["envs"] =
        json!([{"key": "PASSWORD", "value": ev, "type": "string", "is_credential": true}]);
    // Repositories with a clone token and with a password in the address: the task's clones
    // fail (nothing listens); both are stored sealed and masked in the task detail.
    wf["stages"][0]["jobs"][0]["spec"]["repos"] = json!([
        {"address": "https://127.0.0.1:9", "repo_owner": "o", "repo_name": "r", "branch": "main",
         "source": "gitlab", "oauth_token": ov},
        {"address": format!("https://bot:{uv}@127.0.0.1:9"), "repo_owner": "o", "repo_name": "r2",
         "branch": "main", "source": "gitlab"}]);
    app.post("/api/aslan/workflow/v4", wf).await.expect(200);
    let task = json!({"project_key": "p", "workflow_key": "wf", "inputs": [{"job_name": "echo"}]});
    let id = app
        .post("/openapi/workflows/custom/task", task)
        .await
        .expect(200)["task_id"]
        .as_i64()
        .unwrap();
    let plan = crate::release_plan::create(&app, simple_body("sealed", "admin")).await;
    let mut body = simple_body("sealed", "admin");
    body["jobs"] = json!([{"name": "w", "type": "workflow", "spec": {"workflow_key": "wf", "project_key": "p",
        "parameters": [{"name": "TOKEN", "value": rv}], "inputs": [{"job_name": "echo", "job_type": "freestyle"}]}}]);
    app.patch(&format!("/openapi/release_plan/v1/{plan}"), body)
        .await
        .expect(200);
    app.wait_for(
        "the task to end",
        std::time::Duration::from_secs(60),
        || async {
            let t = app.state().tasks.get("wf", id).await.unwrap().unwrap();
            t.status.is_final().then_some(())
        },
    )
    .await;

    let detail = app
        .get(&format!(
            "/openapi/workflows/custom/task?taskId={id}&workflowKey=wf"
        ))
        .await;
    for m in [&ov, &pv, &uv] {
        assert!(!detail.text.contains(m.as_str()), "{}", detail.text);
    }
    // Read back plain.
    let st = app.state();
    let b = st.builds.get("p", "sealed-build").await.unwrap().unwrap();
    assert!(format!("{b:?}").contains(&bv));
    assert_eq!(
        st.workflows.get("wf").await.unwrap().unwrap().params[0]["value"],
        pv.as_str()
    );
    let t = st.tasks.get("wf", id).await.unwrap().unwrap();
    assert_eq!(t.params[0]["value"], pv.as_str());
    let p = st.release_plans.get(&plan).await.unwrap().unwrap();
    assert_eq!(p.jobs[0].spec.parameters[0]["value"], rv.as_str());
    assert_eq!(p.jobs[0].spec.parameters[0]["is_credential"], true);

    assert_eq!(
        t.stages[0].jobs[0].spec["repos"][0]["oauth_token"],
        ov.as_str()
    );
    assert!(
        t.stages[0].jobs[0].spec["repos"][1]["address"]
            .as_str()
            .unwrap()
            .contains(&uv)
    );
    let markers = [&bv, &pv, &ev, &rv, &ov, &uv];
    if kind == Kind::Mongo {
        for d in &raw_mongo_docs(&app.config).await {
            for m in markers {
                assert!(
                    !d.contains(m.as_str()),
                    "raw document holds a credential: {d}"
                );
            }
        }
    }
    // Stopped (the embedded database checkpointed) and started again: no file holds one.
    let app = app.restart().await;
    for (p, bytes) in all_file_bytes(&data) {
        for m in markers {
            assert!(
                !contains(&bytes, m),
                "{} holds a credential in clear",
                p.display()
            );
        }
    }
    let st = app.state();

    // An earlier version's plain documents: the next start's migration encrypts them.
    let mut legacy =
        zadig_server::store::to_doc(&st.workflows.get("wf").await.unwrap().unwrap()).unwrap();
    legacy.insert("id".into(), json!("65f000000000000000000009"));
    legacy.insert("name".into(), json!("legacy"));
    legacy.insert("display_name".into(), json!("legacy"));
    let b = app.backend.clone();
    b.collection("workflows").insert(legacy).await.unwrap();
    // A plan stored before execute inputs were marked: its parameter repeats the workflow's
    // credential without `is_credential`.
    let mut legacy_plan =
        zadig_server::store::to_doc(&st.release_plans.get(&plan).await.unwrap().unwrap()).unwrap();
    legacy_plan.insert("id".into(), json!("65f00000000000000000000a"));
    legacy_plan.insert("index".into(), json!(9000));
    let param = legacy_plan["jobs"][0]["spec"]["parameters"][0]
        .as_object_mut()
        .unwrap();
    assert!(param.remove("is_credential").is_some());
    b.collection("release_plans")
        .insert(legacy_plan)
        .await
        .unwrap();
    b.collection("secret_migrations")
        .delete_many(&Filter::All)
        .await
        .unwrap();
    let app = app.restart().await;
    let raw = stored_doc(&app, "workflows", Filter::id("65f000000000000000000009")).await;
    let stored = raw["params"][0]["value"].as_str().unwrap();
    assert!(
        stored.starts_with("enc:v1:") && !stored.contains(pv.as_str()),
        "{stored}"
    );
    assert_eq!(
        app.state()
            .workflows
            .get("legacy")
            .await
            .unwrap()
            .unwrap()
            .params[0]["value"],
        pv.as_str()
    );
    let raw = stored_doc(
        &app,
        "release_plans",
        Filter::id("65f00000000000000000000a"),
    )
    .await;
    let param = &raw["jobs"][0]["spec"]["parameters"][0];
    assert_eq!(param["is_credential"], true, "{param}");
    let stored = param["value"].as_str().unwrap();
    assert!(
        stored.starts_with("enc:v1:") && !stored.contains(rv.as_str()),
        "{stored}"
    );
    let detail = app
        .get("/openapi/release_plan/v1/65f00000000000000000000a")
        .await;
    detail.expect(200);
    assert!(!detail.text.contains(rv.as_str()), "{}", detail.text);
    app.stop().await;
}
kind_test!(credential_variables_are_encrypted_at_rest);

/// A workflow's notification settings hold secrets — a chat bot's hook address (its key is in
/// the URL) and a webhook's token —: masked in the definition, kept when the masks are sent
/// back, stored encrypted; a collection migrated by an earlier version (whose marker records
/// no generation) is migrated again at start, sealing them in its old documents.
async fn notification_hooks_are_secrets(kind: Kind) {
    let root = tempfile::tempdir().unwrap();
    let Some(app) = start_in(kind, &lax_data_dir(root.path())).await else {
        return;
    };
    let (hook, token) = (marker("hook"), marker("token"));
    let legacy = format!("https://qyapi.example.com/send?key={}", marker("legacy"));
    let ctls = json!([
        {"enabled": true, "webhook_type": "wechat", "notify_type": ["failed"],
         "wechat_notification_config": {"hook_address": format!("https://qyapi.example.com/send?key={hook}"), "at_users": ["a"]}},
        {"enabled": true, "webhook_type": "webhook", "notify_type": ["passed"],
         "webhook_notification_config": {"address": "https://hooks.example.com/zadig", "token": token}},
        {"enabled": true, "webhook_type": "wechat", "weChat_webHook": legacy, "notify_type": ["created"]}]);
    let mut wf = crate::workflows::echo_workflow("wf", "p");
    wf["notify_ctls"] = ctls.clone();
    app.post("/api/aslan/workflow/v4", wf.clone())
        .await
        .expect(200);

    let detail = app
        .get("/openapi/workflows/custom/wf/detail?projectKey=p")
        .await;
    let shown = detail.expect(200)["notify_ctls"].clone();
    for m in [&hook, &token, &legacy] {
        assert!(!detail.text.contains(m.as_str()), "{}", detail.text);
    }
    assert_eq!(
        shown[0]["wechat_notification_config"]["hook_address"],
        "********"
    );
    assert_eq!(
        shown[1]["webhook_notification_config"],
        json!({"address": "https://hooks.example.com/zadig", "token": "********"})
    );
    assert_eq!(shown[2]["weChat_webHook"], "********");
    // The definition sent back as shown keeps the stored secrets.
    wf["notify_ctls"] = shown;
    app.put("/api/aslan/workflow/v4/wf?projectName=p", wf)
        .await
        .expect(200);
    let st = app.state();
    assert_eq!(
        st.workflows.get("wf").await.unwrap().unwrap().notify_ctls,
        ctls.as_array().unwrap().clone()
    );
    let raw = stored_doc(&app, "workflows", Filter::eq("name", "wf")).await;
    let sealed = raw["notify_ctls"][1]["webhook_notification_config"]["token"]
        .as_str()
        .unwrap();
    assert!(sealed.starts_with("enc:v1:"), "{sealed}");

    // An earlier version's plain document, in a collection it marked migrated (generation 1).
    let mut old = to_doc(&st.workflows.get("wf").await.unwrap().unwrap()).unwrap();
    old.insert("id".into(), json!("65f00000000000000000000b"));
    old.insert("name".into(), json!("old"));
    let b = app.backend.clone();
    b.collection("workflows").insert(old).await.unwrap();
    let markers = b.collection("secret_migrations");
    let mut m = markers
        .find_one(&Filter::id("vars:workflows"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.remove("generation"), Some(json!(2)));
    markers
        .replace_one(&Filter::id("vars:workflows"), m)
        .await
        .unwrap();
    let app = app.restart().await;
    let raw = stored_doc(&app, "workflows", Filter::id("65f00000000000000000000b")).await;
    let sealed = raw["notify_ctls"][2]["weChat_webHook"].as_str().unwrap();
    assert!(
        sealed.starts_with("enc:v1:") && !sealed.contains(legacy.as_str()),
        "{sealed}"
    );
    let old = app.state().workflows.get("old").await.unwrap().unwrap();
    assert_eq!(old.notify_ctls[2]["weChat_webHook"], legacy.as_str());
    let m = stored_doc(&app, "secret_migrations", Filter::id("vars:workflows")).await;
    assert_eq!(m["generation"], 2);
    app.stop().await;
}
kind_test!(notification_hooks_are_secrets);

/// Start a server on `config` (no test harness), returning the start error if any.
async fn try_start(config: &Config) -> Result<(), String> {
    let backend = zadig_server::store::open(config)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    match zadig_server::start(
        config.clone(),
        backend,
        Arc::new(zadig_server::clock::SystemClock),
        listener,
    )
    .await
    {
        Ok(s) => {
            s.shutdown().await;
            Ok(())
        }
        Err(e) => Err(format!("{e:#}")),
    }
}

async fn a_wrong_or_missing_key_stops_the_start(kind: Kind) {
    let root = tempfile::tempdir().unwrap();
    let data = lax_data_dir(root.path());
    let Some(app) = start_in(kind, &data).await else {
        return;
    };
    let reg = app
        .post(
            "/openapi/system/registry",
            json!({"address": "http://127.0.0.1:9", "provider": "native", "namespace": "ns",
                   "secret_key": marker("sk")}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let config = app.config.clone();
    app.stop().await;
    let key = data.join("secret.key");
    let good = std::fs::read(&key).unwrap();
    try_start(&config)
        .await
        .expect("restart with the right key");

    // Another key: the start fails naming what could not be decrypted and the key file.
    std::fs::write(&key, [0x42u8; 32]).unwrap();
    let e = try_start(&config).await.unwrap_err();
    for needle in ["secret_key_file", "image_registries", "`secret_key`", &reg] {
        assert!(e.contains(needle), "{e:?} does not name {needle}");
    }
    // A malformed key file.
    std::fs::write(&key, b"not a key").unwrap();
    let e = try_start(&config).await.unwrap_err();
    assert!(
        e.contains("secret_key_file") && e.contains("malformed"),
        "{e}"
    );
    // No key file while encrypted values exist: no new key is made up.
    std::fs::remove_file(&key).unwrap();
    let e = try_start(&config).await.unwrap_err();
    assert!(
        e.contains("secret_key_file") && e.contains("does not exist"),
        "{e}"
    );
    assert!(!key.exists());
    // A key file elsewhere (`secret_key_file`) with the right key works.
    let elsewhere = root.path().join("keys").join("zadig.key");
    std::fs::create_dir(elsewhere.parent().unwrap()).unwrap();
    std::fs::write(&elsewhere, &good).unwrap();
    let mut moved = config.clone();
    moved.secret_key_file = elsewhere;
    try_start(&moved).await.expect("start with secret_key_file");
    assert!(!key.exists(), "no key is created in the data dir then");
}
kind_test!(a_wrong_or_missing_key_stops_the_start);

/// With only credential variables encrypted, a wrong key or a missing key file stops the start
/// too, naming `secret_key_file` and what could not be decrypted.
async fn sealed_variables_need_their_key(kind: Kind) {
    let root = tempfile::tempdir().unwrap();
    let data = lax_data_dir(root.path());
    let Some(app) = start_in(kind, &data).await else {
        return;
    };
    let mut wf = crate::workflows::echo_workflow("wf", "p");
    wf["params"] =
        json!([{"name": "TOKEN", "type": "string", "value": marker("p"), "is_credential": true}]);
    app.post("/api/aslan/workflow/v4", wf).await.expect(200);
    let config = app.config.clone();
    app.stop().await;
    let key = data.join("secret.key");
    std::fs::write(&key, [0x42u8; 32]).unwrap();
    let e = try_start(&config).await.unwrap_err();
    assert!(
        e.contains("secret_key_file") && e.contains("credential variables of"),
        "{e}"
    );
    std::fs::remove_file(&key).unwrap();
    let e = try_start(&config).await.unwrap_err();
    assert!(
        e.contains("does not exist") && e.contains("credential variable of workflows"),
        "{e}"
    );
    assert!(!key.exists());
}
kind_test!(sealed_variables_need_their_key);

/// Two servers starting together on one store with no key yet end up with one key.
async fn replicas_starting_together_share_one_key(kind: Kind) {
    let root = tempfile::tempdir().unwrap();
    let data = lax_data_dir(root.path());
    let Some(app) = start_in(kind, &data).await else {
        return;
    };
    let config = app.config.clone();
    app.stop().await;
    std::fs::remove_file(data.join("secret.key")).unwrap();
    let (a, b) = tokio::join!(try_start(&config), try_start(&config));
    a.unwrap();
    b.unwrap();
    assert_eq!(std::fs::read(data.join("secret.key")).unwrap().len(), 32);
}
kind_test!(replicas_starting_together_share_one_key);

#[test]
fn a_bad_embedded_synchronous_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zadig-server"))
        .arg("serve")
        .env("ZADIG_EMBEDDED_SYNCHRONOUS", "off")
        .env("ZADIG_DATA_DIR", dir.path())
        .output()
        .expect("run binary");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("embedded_synchronous"), "{err}");
}

#[test]
fn embedded_synchronous_defaults_to_full() {
    use zadig_server::config::EmbeddedSynchronous;
    assert_eq!(
        Config::defaults().embedded_synchronous,
        EmbeddedSynchronous::Full
    );
    assert_eq!(
        Config::defaults().secret_key_path(),
        Config::defaults().data_dir.join("secret.key")
    );
}
