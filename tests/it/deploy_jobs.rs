//! Deploy jobs that really deploy (spec/environments.md §6.4, §6.5; seed 002 inputs), on both
//! backends, against the Kubernetes API emulator (skipped when it is absent): `zadig-deploy`
//! into an environment (the image in the emulator's Deployment and in the environment,
//! `replace_resources` in task detail, the rollout waited for), a build job's image deployed
//! with `source: fromjob`, `custom-deploy` of explicit targets, a pod that cannot pull its
//! image, a rollout that never finishes (status frozen through the emulator's side door; the
//! deadline reached by moving the test's business clock), cancel during the wait, and
//! `skip_check_run_status`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_test;
use crate::build::create_shell_build;
use crate::environments::{apply_shop, delete_namespace_by_hand, seed_env};
use crate::harness::TestApp;
use crate::kube_emulator::Emulator;

const LIMIT: Duration = Duration::from_secs(90);

/// A Kubernetes API emulator with its cluster, project `demo`, env `dev` (namespace
/// `demo-dev`) with service `shop` applied (Deployment `web` on `nginx:1.25`, StatefulSet
/// `cache`) and running; the emulator and the cluster id, `None` without the emulator.
pub async fn running_env(app: &TestApp) -> Option<(Emulator, String)> {
    let emu = Emulator::start().await?;
    let cluster = seed_env(app, &emu).await;
    apply_shop(app, LIMIT).await;
    Some((emu, cluster))
}

/// Create workflow `name` of project `demo` with one stage per job list.
pub async fn workflow(app: &TestApp, name: &str, stages: Vec<(&str, Vec<Value>)>) {
    let stages: Vec<Value> = stages
        .into_iter()
        .map(|(s, jobs)| json!({"name": s, "parallel": true, "jobs": jobs}))
        .collect();
    app.post(
        "/openapi/workflows/custom",
        json!({"name": name, "display_name": name, "project": "demo", "concurrency_limit": -1, "stages": stages}),
    )
    .await
    .expect(200);
}

/// Start a task of `name` with `inputs`; its id.
pub async fn execute(app: &TestApp, name: &str, inputs: Value) -> i64 {
    let r = app
        .post(
            "/openapi/workflows/custom/task",
            json!({"project_key": "demo", "workflow_key": name, "parameters": [], "inputs": inputs}),
        )
        .await;
    r.expect(200)["task_id"].as_i64().unwrap()
}

pub async fn detail(app: &TestApp, name: &str, id: i64) -> Value {
    let r = app
        .get(&format!(
            "/openapi/workflows/custom/task?taskId={id}&workflowKey={name}"
        ))
        .await;
    r.expect(200).clone()
}

/// Task detail once the task has ended.
pub async fn ended(app: &TestApp, name: &str, id: i64) -> Value {
    app.wait_for("the task to end", LIMIT, || async {
        let d = detail(app, name, id).await;
        ["passed", "failed", "timeout", "cancelled"]
            .contains(&d["status"].as_str().unwrap_or_default())
            .then_some(d)
    })
    .await
}

/// The job task of `stage` whose name contains `part`.
pub fn job<'a>(d: &'a Value, stage: usize, part: &str) -> &'a Value {
    d["stages"][stage]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"].as_str().unwrap().contains(part))
        .unwrap_or_else(|| panic!("no job {part} in {d}"))
}

pub async fn log(app: &TestApp, name: &str, id: i64, job: &str) -> String {
    app.get(&format!("/openapi/logs/log/v4/workflow/{name}/{id}/{job}"))
        .await
        .text
}

/// Wait until the log of the only job of stage 0 has `needle` (the job reached that point).
pub async fn wait_log(app: &TestApp, name: &str, id: i64, needle: &str) -> String {
    app.wait_for(needle, LIMIT, || async {
        let d = detail(app, name, id).await;
        let j = d["stages"][0]["jobs"][0]["name"].as_str()?.to_string();
        log(app, name, id, &j).await.contains(needle).then_some(j)
    })
    .await
}

pub async fn image_of(emu: &Emulator, kind: &str, name: &str) -> String {
    let o = emu.object(kind, "demo-dev", name).await.unwrap();
    o["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Deployment `web`'s status stops moving: a rollout of a new image never completes.
pub async fn freeze_web(emu: &Emulator) {
    let status = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 1, "availableReplicas": 1});
    emu.set_status("Deployment", "demo-dev", "web", status)
        .await;
}

pub fn deploy_job(name: &str, spec: Value) -> Value {
    json!({"name": name, "type": "zadig-deploy", "spec": spec})
}

/// Seed 002's `zadig-deploy` input for service `shop`, module `web`.
pub fn deploy_input(job: &str, image: &str) -> Value {
    json!([{"job_name": job, "job_type": "zadig-deploy", "parameters": {"env_name": "dev",
        "service_list": [{"service_name": "shop", "service_module": "web", "image_name": image}]}}])
}

/// Build `web-build` of service `shop`, module `web` (build_os `ubuntu 20.04`) running
/// `script`, with `advanced_settings` (e.g. the cluster it runs on).
pub async fn create_web_build(app: &TestApp, script: &str, advanced: Value) {
    let extra = json!({"advanced_settings": advanced});
    create_shell_build(app, "demo", "web-build", script, ("shop", "web"), extra).await;
}

/// Workflow `name`: a zadig-build job `build` of `web-build` (image `web`) then, with
/// `deploy`, a zadig-deploy job `deploy` of the built image into env `dev`; a task of it
/// started. Its id.
pub async fn build_ship(app: &TestApp, name: &str, deploy: bool) -> i64 {
    let mut stages = vec![(
        "build",
        vec![json!({"name": "build", "type": "zadig-build", "spec": {
        "docker_registry_id": "", "service_and_builds": [{"service_name": "shop",
            "service_module": "web", "image_name": "web", "build_name": "web-build"}]}})],
    )];
    let mut inputs = vec![
        json!({"job_name": "build", "job_type": "zadig-build", "parameters": {
        "registry": "", "service_list": [{"service_name": "shop", "service_module": "web"}]}}),
    ];
    if deploy {
        stages.push((
            "deploy",
            vec![deploy_job(
                "deploy",
                json!({"env": "dev", "source": "fromjob",
            "job_name": "build", "deploy_contents": ["image"]}),
            )],
        ));
        inputs.push(json!({"job_name": "deploy", "job_type": "zadig-deploy",
            "parameters": {"env_name": "dev"}}));
    }
    workflow(app, name, stages).await;
    execute(app, name, Value::Array(inputs)).await
}

backend_test! {
    async fn zadig_deploy_sets_the_image_and_waits_for_the_rollout(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        workflow(&app, "ship", vec![("deploy", vec![deploy_job("deploy",
            json!({"env": "dev", "source": "runtime", "deploy_contents": ["image"], "services": []}))])]).await;
        let id = execute(&app, "ship", deploy_input("deploy", "nginx:1.27")).await;
        let d = ended(&app, "ship", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.27");
        assert_eq!(image_of(&emu, "StatefulSet", "cache").await, "redis:7.2");
        let j = job(&d, 0, "deploy");
        assert_eq!(j["spec"]["replace_resources"], json!([{"kind": "Deployment", "name": "web",
            "container": "web", "origin": "nginx:1.25", "image": "nginx:1.27"}]));
        assert_eq!(j["spec"]["service_and_images"][0]["image"], "nginx:1.27");
        assert_eq!(j["spec"]["variable_kvs"], json!([]), "images alone deploy no value");
        // The service's YAML as applied: both workloads, the new image.
        let yaml = j["spec"]["yaml_content"].as_str().unwrap();
        for part in ["kind: Deployment", "kind: StatefulSet", "image: nginx:1.27", "image: redis:7.2"] {
            assert!(yaml.contains(part), "yaml_content lacks {part:?}: {yaml}");
        }
        // The environment records the image, and the rollout has really finished.
        let env = app.get("/openapi/environments/dev?projectKey=demo").await;
        let env = env.expect(200);
        assert_eq!(env["services"][0]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(env["services"][0]["status"], "running");
        let dep = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(dep["status"]["availableReplicas"], 1);
        assert_eq!(dep["metadata"]["labels"]["s-service"], "shop");
        let text = log(&app, "ship", id, j["name"].as_str().unwrap()).await;
        for line in ["Deploy Job Start", "Start to deploy k8s yaml service shop, env: dev, namespace: demo-dev",
            "Ready pods for Deployment web", "All workloads are ready", "Deploy Job End"] {
            assert!(text.contains(line), "log lacks {line:?}: {text}");
        }

        // Errors of §6.4 fail the job naming what is wrong.
        let id = execute(&app, "ship", json!([{"job_name": "deploy", "job_type": "zadig-deploy", "parameters": {
            "env_name": "nope", "service_list": [{"service_name": "shop", "service_module": "web", "image_name": "nginx:1"}]}}])).await;
        let d = ended(&app, "ship", id).await;
        assert_eq!(d["status"], "failed");
        let e = job(&d, 0, "deploy")["error"].as_str().unwrap().to_string();
        assert!(e.contains("find project error") && e.contains("nope"), "{e}");
        let id = execute(&app, "ship", json!([{"job_name": "deploy", "job_type": "zadig-deploy", "parameters": {
            "env_name": "dev", "service_list": [{"service_name": "ghost", "service_module": "web", "image_name": "nginx:1"}]}}])).await;
        let d = ended(&app, "ship", id).await;
        let e = job(&d, 0, "deploy")["error"].as_str().unwrap().to_string();
        assert!(e.contains("service ghost not found in env demo/dev"), "{e}");
        // The cluster gone: the job fails naming it.
        drop(emu);
        let id = execute(&app, "ship", deploy_input("deploy", "nginx:1.31")).await;
        let d = ended(&app, "ship", id).await;
        assert_eq!(d["status"], "failed");
        let e = job(&d, 0, "deploy")["error"].as_str().unwrap().to_string();
        assert!(e.contains("cluster \"emu\""), "{e}");
        app.stop().await;
    }
}

backend_test! {
    async fn a_built_image_is_deployed_from_the_build_job(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        create_web_build(&app, "echo building web", json!({})).await;
        let id = build_ship(&app, "build-ship", true).await;
        let d = ended(&app, "build-ship", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        let built = job(&d, 0, "build")["spec"]["image"].as_str().unwrap().to_string();
        assert!(built.starts_with("web:"), "{built}");
        assert_eq!(image_of(&emu, "Deployment", "web").await, built);
        let j = job(&d, 1, "deploy");
        assert_eq!(j["spec"]["replace_resources"][0]["image"], built);
        assert_eq!(j["spec"]["service_and_images"][0]["image"], built);
        app.stop().await;
    }
}

backend_test! {
    /// A service's modules are deployed by one job task (Zadig's `<job>.<service>`), whose
    /// module outputs a later deploy quotes with `source: fromjob`
    /// (`{{.job.<job>.<service>.<module>.output.IMAGE}}`).
    async fn one_job_task_deploys_all_modules_of_a_service(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        workflow(&app, "both", vec![
            ("first", vec![deploy_job("deploy", json!({"env": "dev", "source": "runtime", "services": []}))]),
            ("again", vec![deploy_job("again", json!({"env": "dev", "source": "fromjob", "job_name": "deploy"}))]),
        ]).await;
        let id = execute(&app, "both", json!([{"job_name": "deploy", "job_type": "zadig-deploy", "parameters": {
            "env_name": "dev", "service_list": [{"service_name": "shop", "service_module": "web", "image_name": "nginx:1.27"},
                {"service_name": "shop", "service_module": "cache", "image_name": "redis:7.4"}]}},
            {"job_name": "again", "job_type": "zadig-deploy", "parameters": {"env_name": "dev"}}])).await;
        let d = ended(&app, "both", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.27");
        assert_eq!(image_of(&emu, "StatefulSet", "cache").await, "redis:7.4");
        for stage in 0..2 {
            let jobs = d["stages"][stage]["jobs"].as_array().unwrap();
            assert_eq!(jobs.len(), 1, "one job task for the service: {jobs:?}");
            let images: Vec<(&str, &str)> = jobs[0]["spec"]["service_and_images"].as_array().unwrap().iter()
                .map(|i| (i["service_module"].as_str().unwrap(), i["image"].as_str().unwrap())).collect();
            assert_eq!(images, [("web", "nginx:1.27"), ("cache", "redis:7.4")], "{}", jobs[0]);
            assert_eq!(jobs[0]["status"], "passed");
            assert_eq!(jobs[0]["job_info"]["service_name"], "shop");
        }
        let changed: Vec<&str> = job(&d, 0, "deploy")["spec"]["replace_resources"].as_array().unwrap().iter()
            .map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(changed, ["web", "cache"]);
        app.stop().await;
    }
}

backend_test! {
    async fn custom_deploy_patches_its_targets(app) {
        let Some((emu, cluster)) = running_env(&app).await else { return };
        let target_job = |name: &str| json!({"name": name, "type": "custom-deploy", "spec": {
            "namespace": "demo-dev", "cluster_id": cluster, "timeout": 0, "targets": []}});
        workflow(&app, "custom", vec![("deploy", vec![target_job("deploy-my-app")])]).await;
        let target = |kind: &str, name: &str, container: &str, image: &str| json!({"workload_type": kind,
            "workload_name": name, "container_name": container, "image_name": image});
        let id = execute(&app, "custom", json!([{"job_name": "deploy-my-app", "job_type": "custom-deploy",
            "parameters": {"target_list": [target("Deployment", "web", "web", "nginx:1.26"),
                target("StatefulSet", "cache", "cache", "redis:7.4")]}}])).await;
        let d = ended(&app, "custom", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.26");
        assert_eq!(image_of(&emu, "StatefulSet", "cache").await, "redis:7.4");
        assert_eq!(job(&d, 0, "web")["spec"]["replace_resources"], json!([{"kind": "Deployment",
            "name": "web", "container": "web", "origin": "nginx:1.25", "image": "nginx:1.26"}]));
        assert_eq!(job(&d, 0, "cache")["spec"]["replace_resources"][0]["origin"], "redis:7.2");
        // Only the image changed hands: the rest of the Deployment stays as it was.
        let dep = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 80);

        // §6.5's errors: a workload or container that does not exist, an unsupported type.
        let id = execute(&app, "custom", json!([{"job_name": "deploy-my-app", "job_type": "custom-deploy",
            "parameters": {"target_list": [target("Deployment", "nope", "web", "nginx:1"),
                target("Deployment", "web", "sidecar", "nginx:1"), target("DaemonSet", "ds", "c", "nginx:1")]}}])).await;
        let d = ended(&app, "custom", id).await;
        assert_eq!(d["status"], "failed");
        let err = |part: &str| job(&d, 0, part)["error"].as_str().unwrap().to_string();
        assert!(err("nope").contains("deployment nope not found"), "{}", err("nope"));
        assert!(err("sidecar").contains("container sidecar is not found in namespace demo-dev"), "{}", err("sidecar"));
        assert!(err("ds").contains("workload type: DaemonSet not supported"), "{}", err("ds"));
        app.stop().await;
    }
}

backend_test! {
    /// `k8s-resource-patch` renders each item's patch with its parameters (execute inputs
    /// choose the items and set values) and sends it with its strategy; an item that fails
    /// records its error and fails the job, the others are still patched.
    async fn k8s_resource_patch_patches_objects_of_the_namespace(app) {
        let Some((emu, cluster)) = running_env(&app).await else { return };
        let item = |kind: &str, name: &str, strategy: &str, content: &str, params: Value| json!({
            "resource_name": name, "resource_kind": kind, "resource_group": "apps", "resource_version": "v1",
            "patch_strategy": strategy, "patch_content": content, "params": params});
        let items = json!([
            item("Deployment", "web", "merge", "metadata:\n  annotations:\n    team: '{{.team}}'\n",
                json!([{"name": "team", "value": "blue"}])),
            item("StatefulSet", "cache", "json", r#"[{"op": "add", "path": "/metadata/labels/tier", "value": "{{.tier}}"}]"#,
                json!([{"name": "tier", "value": "cache"}])),
            item("Deployment", "web", "strategic-merge",
                "spec:\n  template:\n    metadata:\n      annotations:\n        token: '{{.token}}'\n",
                json!([{"name": "token", "value": "s3cr3t-value", "is_credential": true}])),
            item("Deployment", "ghost", "merge", "metadata:\n  labels:\n    a: b\n", json!([]))]);
        let job_def = |items: Value| json!({"name": "patch", "type": "k8s-resource-patch", "spec": {
            "cluster_id": cluster, "namespace": "demo-dev", "patch_items": items}});
        // A strategy Zadig does not have is refused with the workflow.
        let mut bad = items.clone();
        bad[1]["patch_strategy"] = json!("replace");
        app.post("/openapi/workflows/custom", json!({"name": "bad", "display_name": "bad", "project": "demo",
            "stages": [{"name": "s", "jobs": [job_def(bad)]}]})).await.expect_error(400, "patch_items[1].patch_strategy");
        workflow(&app, "patch", vec![("patch", vec![job_def(items)])]).await;

        // Inputs choose the items and set their values: unknown ones are refused.
        let target = |kind: &str, name: &str, inputs: Value| json!({"resource_name": name, "resource_kind": kind,
            "resource_group": "apps", "resource_version": "v1", "inputs": inputs});
        let run = |targets: Value| app.post("/openapi/workflows/custom/task", json!({"project_key": "demo",
            "workflow_key": "patch", "inputs": [{"job_name": "patch", "job_type": "k8s-resource-patch",
            "parameters": {"target_list": targets}}]}));
        run(json!([target("Deployment", "nope", json!([]))])).await.expect_error(400, "target_list[0]");
        run(json!([target("Deployment", "web", json!([{"key": "colour", "value": "x"}]))])).await
            .expect_error(400, "target_list[0].inputs[0].key");
        let id = run(json!([target("Deployment", "web", json!([{"key": "team", "value": "red"}])),
            target("StatefulSet", "cache", json!([]))])).await.expect(200)["task_id"].as_i64().unwrap();
        let d = ended(&app, "patch", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        let web = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(web["metadata"]["annotations"]["team"], "red");
        let cache = emu.object("StatefulSet", "demo-dev", "cache").await.unwrap();
        assert_eq!(cache["metadata"]["labels"]["tier"], "cache");
        let j = &d["stages"][0]["jobs"][0];
        assert_eq!(j["spec"]["patch_items"].as_array().unwrap().len(), 2, "{j}");
        assert_eq!(j["spec"]["patch_items"][0]["error"], "");

        // No inputs: every item; the missing object fails the job, the others are patched,
        // and the credential shows nowhere.
        let id = execute(&app, "patch", json!([{"job_name": "patch", "job_type": "k8s-resource-patch", "parameters": {}}])).await;
        let d = ended(&app, "patch", id).await;
        assert_eq!(d["status"], "failed", "{d}");
        let j = &d["stages"][0]["jobs"][0];
        assert!(j["error"].as_str().unwrap().contains("1 of 4 items failed"), "{j}");
        assert!(j["spec"]["patch_items"][3]["error"].as_str().unwrap().contains("patch resource error"), "{j}");
        let web = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(web["spec"]["template"]["metadata"]["annotations"]["token"], "s3cr3t-value");
        assert_eq!(web["metadata"]["annotations"]["team"], "blue");
        let text = log(&app, "patch", id, j["name"].as_str().unwrap()).await;
        assert!(text.contains("patched Deployment web (apps/v1) in namespace demo-dev"), "{text}");
        for shown in [d.to_string(), text] {
            assert!(!shown.contains("s3cr3t-value"), "{shown}");
        }
        app.stop().await;
    }
}

backend_test! {
    /// `offline-service` takes services out of the environment (objects deleted, the services
    /// forgotten, as E8); a service the environment lacks fails the job, the others go.
    async fn offline_service_removes_services_from_the_environment(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        let offline = |services: Value| json!({"name": "offline", "type": "offline-service", "spec": {
            "env_type": "zadig", "env_name": "dev", "services": services}});
        app.post("/openapi/workflows/custom", json!({"name": "bad", "display_name": "bad", "project": "demo",
            "stages": [{"name": "s", "jobs": [{"name": "o", "type": "offline-service", "spec": {"env_type": "vm"}}]}]}))
            .await.expect_error(400, "env_type");
        workflow(&app, "offline", vec![("offline", vec![offline(json!(["ghost", "shop"]))])]).await;
        let id = execute(&app, "offline", json!([{"job_name": "offline", "job_type": "offline-service", "parameters": {}}])).await;
        let d = ended(&app, "offline", id).await;
        assert_eq!(d["status"], "failed", "{d}");
        let j = &d["stages"][0]["jobs"][0];
        assert_eq!(j["error"], "offline some services failed: ghost");
        let events = &j["spec"]["service_events"];
        assert_eq!((&events[0]["status"], &events[1]["status"]), (&json!("failed"), &json!("passed")), "{events}");
        assert!(events[0]["error"].as_str().unwrap().contains("service ghost not found in env demo/dev"), "{events}");
        assert!(emu.object("Deployment", "demo-dev", "web").await.is_none());
        assert!(emu.object("StatefulSet", "demo-dev", "cache").await.is_none());
        let env = app.get("/openapi/environments/dev?projectKey=demo").await;
        assert_eq!(env.expect(200)["services"], json!([]));
        let text = log(&app, "offline", id, j["name"].as_str().unwrap()).await;
        assert!(text.contains("service shop taken offline from env dev (namespace demo-dev)"), "{text}");
        app.stop().await;
    }
}

backend_test! {
    /// `k8s-canary-deploy` copies the Deployment behind a Service as `<name>-zadig-canary`
    /// with the new image; `k8s-canary-release` deletes the canary and sets the image on the
    /// Deployment.
    async fn canary_deploy_and_release(app) {
        let Some((emu, cluster)) = running_env(&app).await else { return };
        let deploy = |name: &str, service: &str, percentage: i64| json!({"name": name, "type": "k8s-canary-deploy", "spec": {
            "cluster_id": cluster, "namespace": "demo-dev", "targets": [{"k8s_service_name": service,
                "container_name": "web", "image": "nginx:1.27", "canary_percentage": percentage}]}});
        let release = |from: &str| json!({"name": "release", "type": "k8s-canary-release", "spec": {"from_job": from}});
        let save = |name: &str, stages: Value| app.post("/openapi/workflows/custom", json!({"name": name,
            "display_name": name, "project": "demo", "concurrency_limit": -1, "stages": stages}));
        save("bad", json!([{"name": "a", "jobs": [deploy("canary", "web", 0)]}])).await
            .expect_error(400, "targets[0].canary_percentage");
        save("bad", json!([{"name": "a", "jobs": [release("")]}])).await.expect_error(400, "from_job");
        save("bad", json!([{"name": "a", "jobs": [release("canary")]}, {"name": "b", "jobs": [deploy("canary", "web", 50)]}]))
            .await.expect_error(400, "can not quote job canary");
        workflow(&app, "canary", vec![("canary", vec![deploy("canary", "web", 50)]), ("release", vec![release("canary")])]).await;
        let input = |image: &str| json!({"job_name": "canary", "job_type": "k8s-canary-deploy",
            "parameters": {"service_list": [{"service_name": "web", "image_name": image}]}});
        let r = app.post("/openapi/workflows/custom/task", json!({"project_key": "demo", "workflow_key": "canary",
            "inputs": [{"job_name": "canary", "job_type": "k8s-canary-deploy",
                "parameters": {"service_list": [{"service_name": "ghost", "image_name": "x"}]}}]})).await;
        r.expect_error(400, "service_list[0].service_name");
        let id = execute(&app, "canary", json!([input("nginx:1.28"),
            {"job_name": "release", "job_type": "k8s-canary-release", "parameters": {}}])).await;
        let d = ended(&app, "canary", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        let c = job(&d, 0, "canary");
        assert_eq!((&c["spec"]["canary_workload_name"], &c["spec"]["canary_replica"], &c["spec"]["workload_name"]),
            (&json!("web-zadig-canary"), &json!(1), &json!("web")), "{c}");
        assert_eq!(c["spec"]["image"], "nginx:1.28");
        let text = log(&app, "canary", id, c["name"].as_str().unwrap()).await;
        assert!(text.contains("canary deployment: web-zadig-canary created (1 of 1 replicas, image nginx:1.28)"), "{text}");
        assert_eq!(job(&d, 1, "release")["spec"]["workload_name"], "web");
        assert!(emu.object("Deployment", "demo-dev", "web-zadig-canary").await.is_none(), "released");
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.28");

        // A canary alone stays until released; a second one is refused.
        workflow(&app, "canary-only", vec![("canary", vec![deploy("canary", "web", 50)])]).await;
        let id = execute(&app, "canary-only", json!([input("nginx:1.29")])).await;
        assert_eq!(ended(&app, "canary-only", id).await["status"], "passed");
        let canary = emu.object("Deployment", "demo-dev", "web-zadig-canary").await.unwrap();
        assert_eq!(canary["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.29");
        assert_eq!(canary["spec"]["template"]["metadata"]["labels"]["app"], "web", "the Service routes to it");
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.28");
        let id = execute(&app, "canary-only", json!([input("nginx:1.30")])).await;
        let d = ended(&app, "canary-only", id).await;
        assert_eq!(d["status"], "failed");
        let e = job(&d, 0, "canary")["error"].as_str().unwrap().to_string();
        assert!(e.contains("canary deployment web-zadig-canary already exists"), "{e}");
        app.stop().await;
    }
}

backend_test! {
    /// A gray release in two steps (50 %, then in full) beside `<name>-zadig-gray`, then a
    /// rollback to the image and replicas recorded on the Deployment.
    async fn gray_release_in_steps_and_rollback(app) {
        let Some((emu, cluster)) = running_env(&app).await else { return };
        app.post("/openapi/environments/scale", json!({"project_key": "demo", "env_key": "dev", "service_name": "shop",
            "workload_name": "web", "workload_type": "Deployment", "target_replicas": 3})).await.expect(200);
        let target = json!([{"workload_type": "Deployment", "workload_name": "web", "container_name": "web", "image": "nginx:1.27"}]);
        let first = |scale: i64| json!({"name": "gray", "type": "k8s-gray-release", "spec": {"cluster_id": cluster,
            "namespace": "demo-dev", "gray_scale": scale, "targets": target}});
        let later = |name: &str, scale: i64| json!({"name": name, "type": "k8s-gray-release", "spec": {"from_job": "gray", "gray_scale": scale}});
        let save = |stages: Value| app.post("/openapi/workflows/custom", json!({"name": "bad", "display_name": "bad",
            "project": "demo", "stages": stages}));
        save(json!([{"name": "a", "jobs": [first(100)]}])).await.expect_error(400, "gray_scale");
        save(json!([{"name": "a", "jobs": [later("full", 100)]}, {"name": "b", "jobs": [first(50)]}])).await
            .expect_error(400, "can not quote job gray");
        // A gray release always ends in full: later steps below 100, the last at 100.
        save(json!([{"name": "a", "jobs": [first(50)]}])).await.expect_error(400, "stages[0].jobs[0].name");
        save(json!([{"name": "a", "jobs": [first(50)]}, {"name": "b", "jobs": [later("more", 80)]}])).await
            .expect_error(400, "must release in full (100), got 80");
        save(json!([{"name": "a", "jobs": [first(50)]}, {"name": "b", "jobs": [later("full", 100)]},
            {"name": "c", "jobs": [later("again", 100)]}])).await
            .expect_error(400, "stages[1].jobs[0].spec.gray_scale");
        workflow(&app, "gray", vec![("half", vec![first(50)]), ("full", vec![later("full", 100)])]).await;
        let r = app.post("/openapi/workflows/custom/task", json!({"project_key": "demo", "workflow_key": "gray",
            "inputs": [{"job_name": "gray", "job_type": "k8s-gray-release", "parameters": {"target_list": [
                {"workload_name": "ghost", "image_name": "x"}]}}]})).await;
        r.expect_error(400, "target_list[0].workload_name");
        let id = execute(&app, "gray", json!([
            {"job_name": "gray", "job_type": "k8s-gray-release", "parameters": {"target_list": [
                {"workload_type": "Deployment", "workload_name": "web", "container_name": "web", "image_name": "nginx:1.28"}]}},
            {"job_name": "full", "job_type": "k8s-gray-release", "parameters": {}}])).await;
        let d = ended(&app, "gray", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        let half = job(&d, 0, "gray");
        assert_eq!((&half["spec"]["gray_replica"], &half["spec"]["total_replica"], &half["spec"]["gray_workload_name"]),
            (&json!(2), &json!(3), &json!("web-zadig-gray")), "{half}");
        let text = log(&app, "gray", id, half["name"].as_str().unwrap()).await;
        assert!(text.contains("gray deployment web-zadig-gray created: 2 replicas of nginx:1.28 (was nginx:1.25)"), "{text}");
        assert!(text.contains("deployment web scaled to 1 replicas"), "{text}");
        // In full: the Deployment runs the new image on all its replicas; the copy is gone.
        assert!(emu.object("Deployment", "demo-dev", "web-zadig-gray").await.is_none());
        let web = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!((&web["spec"]["replicas"], &web["spec"]["template"]["spec"]["containers"][0]["image"]),
            (&json!(3), &json!("nginx:1.28")));
        assert_eq!(web["metadata"]["annotations"]["zadig-gray-release-image"], "nginx:1.25");

        // Rollback: the recorded image and replicas.
        workflow(&app, "back", vec![("back", vec![json!({"name": "back", "type": "k8s-gray-rollback", "spec": {
            "cluster_id": cluster, "namespace": "demo-dev", "targets": [{"workload_type": "Deployment", "workload_name": "web"}]}})])]).await;
        let id = execute(&app, "back", json!([{"job_name": "back", "job_type": "k8s-gray-rollback", "parameters": {}}])).await;
        let d = ended(&app, "back", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        let web = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!((&web["spec"]["replicas"], &web["spec"]["template"]["spec"]["containers"][0]["image"]),
            (&json!(3), &json!("nginx:1.25")));
        // A later step without its first one finds no gray copy.
        workflow(&app, "orphan", vec![("a", vec![first(50)]), ("b", vec![later("full", 100)])]).await;
        let id = execute(&app, "orphan", json!([{"job_name": "full", "job_type": "k8s-gray-release", "parameters": {}}])).await;
        let d = ended(&app, "orphan", id).await;
        assert_eq!(d["status"], "failed", "{d}");
        let e = job(&d, 1, "full")["error"].as_str().unwrap().to_string();
        assert!(e.contains("gray deployment: web-zadig-gray not found"), "{e}");
        app.stop().await;
    }
}

backend_test! {
    async fn an_image_that_cannot_be_pulled_fails_naming_the_workload(app) {
        let Some((_emu, _)) = running_env(&app).await else { return }; // the cluster stays up
        workflow(&app, "bad", vec![("deploy", vec![deploy_job("deploy",
            json!({"env": "dev", "deploy_contents": ["image"]}))])]).await;
        let id = execute(&app, "bad", deploy_input("deploy", "reg.example.com/badimage:1")).await;
        let d = ended(&app, "bad", id).await;
        assert_eq!(d["status"], "failed", "{d}");
        let j = job(&d, 0, "deploy");
        let e = j["error"].as_str().unwrap();
        assert!(e.contains("Deployment web") && (e.contains("ImagePullBackOff") || e.contains("ErrImagePull")), "{e}");
        assert!(e.contains("pod: web-"), "{e}");
        assert_eq!(j["spec"]["replace_resources"][0]["image"], "reg.example.com/badimage:1");
        let text = log(&app, "bad", id, j["name"].as_str().unwrap()).await;
        assert!(text.contains("Deploy job failed: Deployment web"), "{text}");
        app.stop().await;
    }
}

backend_test! {
    async fn a_frozen_rollout_skips_cancels_and_times_out(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        freeze_web(&emu).await;
        workflow(&app, "skip", vec![("deploy", vec![deploy_job("deploy",
            json!({"env": "dev", "deploy_contents": ["image"], "skip_check_run_status": true}))])]).await;
        workflow(&app, "wait", vec![("deploy", vec![deploy_job("deploy",
            json!({"env": "dev", "deploy_contents": ["image"]}))])]).await;

        // skip_check_run_status: passed as soon as the image is set.
        let id = execute(&app, "skip", deploy_input("deploy", "nginx:1.28")).await;
        let d = ended(&app, "skip", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.28");

        // Cancel while the job waits for the rollout.
        let id = execute(&app, "wait", deploy_input("deploy", "nginx:1.29")).await;
        wait_log(&app, "wait", id, "Ready pods for Deployment web").await;
        app.delete(&format!("/openapi/workflows/custom/task?taskId={id}&workflowKey=wait")).await.expect(200);
        // The API marks the task at once; the job ends when the wait notices the cancel.
        let d = app.wait_for("the deploy job to end cancelled", LIMIT, || async {
            let d = detail(&app, "wait", id).await;
            (d["stages"][0]["jobs"][0]["status"] != "running").then_some(d)
        }).await;
        assert_eq!(d["status"], "cancelled", "{d}");
        assert_eq!(d["stages"][0]["jobs"][0]["status"], "cancelled", "{d}");

        // The deadline (the project's default 600 s) passes on the business clock.
        let id = execute(&app, "wait", deploy_input("deploy", "nginx:1.30")).await;
        let j = wait_log(&app, "wait", id, "Ready pods for Deployment web").await;
        app.clock.advance(Duration::from_secs(601));
        let d = ended(&app, "wait", id).await;
        assert_eq!(d["status"], "timeout", "{d}");
        let e = job(&d, 0, "deploy")["error"].as_str().unwrap().to_string();
        assert!(e.contains("within 600s") && e.contains("Deployment web is not ready") && e.contains("observed generation"), "{e}");
        let text = log(&app, "wait", id, &j).await;
        assert!(text.contains("Check workloads' pod status timeout"), "{text}");
        app.stop().await;
    }
}

backend_test! {
    async fn deploy_jobs_act_for_the_task_creator(app) {
        let Some((emu, cluster)) = running_env(&app).await else { return };
        // Dave may define and run workflows, but env `dev` is the admin's: its images and its
        // namespace are not his to change, neither through the image route nor a deploy job.
        let (_, dave) = app.create_user("dave", false).await;
        let wf = json!({"name": "daves", "display_name": "daves", "project": "demo", "concurrency_limit": -1,
            "stages": [{"name": "deploy", "parallel": true, "jobs": [
                deploy_job("deploy", json!({"env": "dev", "deploy_contents": ["image"]})),
                {"name": "custom", "type": "custom-deploy", "spec": {"namespace": "demo-dev", "cluster_id": cluster,
                    "targets": []}},
                {"name": "patch", "type": "k8s-resource-patch", "spec": {"namespace": "demo-dev", "cluster_id": cluster,
                    "patch_items": [{"resource_name": "web", "resource_kind": "Deployment", "resource_group": "apps",
                        "resource_version": "v1", "patch_strategy": "merge", "patch_content": "spec:\n  replicas: 5\n"}]}},
                {"name": "offline", "type": "offline-service", "spec": {"env_name": "dev", "services": ["shop"]}}]}]});
        app.call(reqwest::Method::POST, "/openapi/workflows/custom", Some(&dave), Some(wf)).await.expect(200);
        let r = app.call(reqwest::Method::POST, "/openapi/workflows/custom/task", Some(&dave),
            Some(json!({"project_key": "demo", "workflow_key": "daves", "parameters": [],
                "inputs": [deploy_input("deploy", "nginx:1.99")[0].clone(),
                    {"job_name": "custom", "job_type": "custom-deploy", "parameters": {"target_list": [
                        {"workload_type": "Deployment", "workload_name": "web", "container_name": "web",
                            "image_name": "nginx:1.99"}]}},
                    {"job_name": "patch", "job_type": "k8s-resource-patch", "parameters": {}},
                    {"job_name": "offline", "job_type": "offline-service", "parameters": {}}]}))).await;
        let id = r.expect(200)["task_id"].as_i64().unwrap();
        let d = ended(&app, "daves", id).await;
        assert_eq!(d["status"], "failed", "{d}");
        let e = job(&d, 0, "deploy")["error"].as_str().unwrap().to_string();
        assert!(e.contains("user dave may not deploy to environment \"dev\""), "{e}");
        let e = job(&d, 0, "custom")["error"].as_str().unwrap().to_string();
        assert!(e.contains("user dave may not deploy into namespace demo-dev"), "{e}: {d}");
        let e = job(&d, 0, "patch")["error"].as_str().unwrap().to_string();
        assert!(e.contains("user dave may not deploy into namespace demo-dev"), "{e}: {d}");
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.25");
        let web = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(web["spec"]["replicas"], 1, "not patched");
        let e = job(&d, 0, "offline")["spec"]["service_events"][0]["error"].as_str().unwrap().to_string();
        assert!(e.contains("dave"), "{e}: {d}");
        assert!(emu.object("StatefulSet", "demo-dev", "cache").await.is_some(), "not taken offline");
        app.stop().await;
    }
}

backend_test! {
    /// A scheduled release plan's tasks act for who moved the plan to `executing`, not with the
    /// server's own rights: any user may manage a plan, so a schedule deploys nothing its user
    /// could not deploy by hand.
    async fn scheduled_release_plans_deploy_for_who_started_execution(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        let (_, dave) = app.create_user("dave", false).await;
        let call = |method: reqwest::Method, path: String, body: Value| {
            let (app, dave) = (&app, &dave);
            async move { app.call(method, &path, Some(dave), Some(body)).await }
        };
        call(reqwest::Method::POST, "/openapi/workflows/custom".into(), json!({"name": "daves", "display_name": "daves",
            "project": "demo", "concurrency_limit": -1, "stages": [{"name": "deploy", "parallel": true,
            "jobs": [deploy_job("deploy", json!({"env": "dev", "deploy_contents": ["image"]}))]}]})).await.expect(200);
        let now = zadig_server::clock::Clock::now(&app.clock);
        // Moved to `executing` by dave; then submitted by dave and passed by an admin's approval,
        // which does not lend the admin's rights (the workflow may still change after the vote).
        let approval = json!({"enabled": true, "type": "native", "native_approval": {"timeout": 0,
            "needed_approvers": 1, "approve_users": [{"user_name": "admin"}]}});
        for (n, approval) in [(1, None), (2, Some(approval))] {
            let mut plan = json!({"name": format!("daves-{n}"), "manager": "dave", "manager_identity_type": "system",
                "description": "d", "start_time": now - 10, "end_time": now + 10_000});
            let to = if let Some(a) = approval { plan["approval"] = a; "wait_for_approval" } else { "executing" };
            let r = call(reqwest::Method::POST, "/openapi/release_plan/v1".into(), plan.clone()).await;
            let id = r.expect(200)["id"].as_str().unwrap().to_string();
            plan["schedule_execute_time"] = json!(now + 60 * n);
            plan["jobs"] = json!([{"name": "deploy", "type": "workflow", "spec": {"workflow_key": "daves",
                "project_key": "demo", "remark": "r", "parameters": [], "inputs": deploy_input("deploy", "nginx:1.99")}}]);
            call(reqwest::Method::PATCH, format!("/openapi/release_plan/v1/{id}"), plan).await.expect(200);
            for status in ["finish_planning", to] {
                call(reqwest::Method::POST, format!("/openapi/release_plan/v1/{id}/status/{status}"), json!({})).await.expect(200);
            }
            if to == "wait_for_approval" {
                app.post(&format!("/openapi/release_plan/v1/{id}/approve"), json!({"approve": true, "comment": "ok"}))
                    .await.expect(200);
            }
            app.clock.advance(Duration::from_secs(60));
            let task = app.wait_for("the scheduled task", Duration::from_secs(30), || async {
                let d = app.get(&format!("/openapi/release_plan/v1/{id}")).await;
                d.expect(200)["jobs"][0]["spec"]["task_id"].as_i64().filter(|t| *t > 0)
            }).await;
            let d = ended(&app, "daves", task).await;
            assert_eq!(d["status"], "failed", "{d}");
            let e = job(&d, 0, "deploy")["error"].as_str().unwrap().to_string();
            assert!(e.contains("user dave may not deploy to environment \"dev\""), "{e}");
            assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.25");
        }
        app.stop().await;
    }
}

backend_test! {
    /// `deploy_contents` `vars` renders the service again with the job's values at the
    /// revision the environment runs; `config` with `update_config` moves it to the template's
    /// latest revision. The image the job deploys and the environment's other values stay.
    async fn zadig_deploy_deploys_variables_and_configuration(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        let vars = |contents: Value, svc: Value| deploy_job("deploy", json!({"env": "dev",
            "source": "runtime", "deploy_contents": contents, "services": [svc]}));
        // A value that is not one of Zadig's contents is refused with the workflow.
        app.post("/openapi/workflows/custom", json!({"name": "bad", "display_name": "bad", "project": "demo",
            "stages": [{"name": "s", "jobs": [vars(json!(["image", "secrets"]), json!({"service_name": "shop"}))]}]}))
            .await.expect_error(400, "deploy_contents[1]");
        // A new template revision adds a ConfigMap; the environment still runs the old one.
        let yaml = format!("{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n",
            crate::environments::shop_yaml());
        app.put("/openapi/service/yaml/shop?projectKey=demo", json!({"type": "k8s", "yaml": yaml})).await.expect(200);

        workflow(&app, "vars", vec![("deploy", vec![vars(json!(["image", "vars"]),
            json!({"service_name": "shop", "variable_kvs": [{"key": "replicas", "value": "2"}]}))])]).await;
        let id = execute(&app, "vars", deploy_input("deploy", "nginx:1.27")).await;
        let d = ended(&app, "vars", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        let dep = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(dep["spec"]["replicas"], 2);
        assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
        assert!(emu.object("ConfigMap", "demo-dev", "settings").await.is_none());
        let j = job(&d, 0, "deploy");
        assert_eq!(j["spec"]["replace_resources"][0]["image"], "nginx:1.27");
        let deployed = j["spec"]["variable_kvs"].as_array().unwrap();
        assert_eq!((deployed.len(), &deployed[0]["key"], &deployed[0]["value"]), (1, &json!("replicas"), &json!("2")));
        let text = log(&app, "vars", id, j["name"].as_str().unwrap()).await;
        assert!(text.contains("deploy contents: image, variables"), "{text}");
        let env = app.get("/openapi/environments/dev?projectKey=demo").await;
        let svc = env.expect(200)["services"][0].clone();
        let value = |k: &str| svc["variable_kvs"].as_array().unwrap().iter()
            .find(|v| v["key"] == k).map(|v| v["value"].clone());
        assert_eq!(value("replicas"), Some(json!("2")));
        assert_eq!(value("image"), Some(json!("nginx:1.25")));
        assert_eq!(svc["containers"][0]["image"], "nginx:1.27");

        // Configuration only: the latest revision, keeping the image and the values.
        workflow(&app, "config", vec![("deploy", vec![vars(json!(["config"]),
            json!({"service_name": "shop", "update_config": true}))])]).await;
        let id = execute(&app, "config", json!([{"job_name": "deploy", "job_type": "zadig-deploy",
            "parameters": {"env_name": "dev", "service_list": [{"service_name": "shop"}]}}])).await;
        let d = ended(&app, "config", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(emu.object("ConfigMap", "demo-dev", "settings").await.unwrap()["data"]["mode"], "fast");
        let dep = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(dep["spec"]["replicas"], 2);
        assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");

        // Values the template cannot render with fail the job and change nothing.
        workflow(&app, "broken", vec![("deploy", vec![vars(json!(["vars"]),
            json!({"service_name": "shop", "variable_kvs": [{"key": "replicas", "value": "[oops"}]}))])]).await;
        let id = execute(&app, "broken", json!([{"job_name": "deploy", "job_type": "zadig-deploy",
            "parameters": {"env_name": "dev", "service_list": [{"service_name": "shop"}]}}])).await;
        let d = ended(&app, "broken", id).await;
        assert_eq!(d["status"], "failed", "{d}");
        let e = job(&d, 0, "deploy")["error"].as_str().unwrap().to_string();
        assert!(e.contains("generate service yaml error"), "{e}");
        assert_eq!(emu.object("Deployment", "demo-dev", "web").await.unwrap()["spec"]["replicas"], 2);
        app.stop().await;
    }
}

backend_test! {
    /// `zadig-restart` restarts each service's workloads (a new `restartedAt` on their pod
    /// templates) and waits for the rollout, for a creator who may change the environment.
    async fn zadig_restart_restarts_the_services_workloads(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        let restart = |services: Value| json!({"name": "restart", "type": "zadig-restart",
            "spec": {"env": "dev", "services": services}});
        let run = json!([{"job_name": "restart", "job_type": "zadig-restart", "parameters": {}}]);
        workflow(&app, "bounce", vec![("restart", vec![restart(json!(["shop"]))])]).await;
        let id = execute(&app, "bounce", run.clone()).await;
        let d = ended(&app, "bounce", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        for (kind, name) in [("Deployment", "web"), ("StatefulSet", "cache")] {
            let o = emu.object(kind, "demo-dev", name).await.unwrap();
            let at = &o["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
            assert!(at.is_string(), "{kind} {name} not restarted: {o}");
        }
        let j = job(&d, 0, "restart");
        assert_eq!(j["spec"]["service_name"], "shop");
        assert_eq!(j["spec"]["replace_resources"], json!([{"kind": "Deployment", "name": "web"},
            {"kind": "StatefulSet", "name": "cache"}]));
        let text = log(&app, "bounce", id, j["name"].as_str().unwrap()).await;
        for line in ["Start to restart service shop, env: dev", "Restarted Deployment web", "All workloads are ready"] {
            assert!(text.contains(line), "log lacks {line:?}: {text}");
        }

        // A service the environment lacks fails its job naming it; no service at all is a 400.
        workflow(&app, "ghost", vec![("restart", vec![restart(json!(["ghost"]))])]).await;
        let d = ended(&app, "ghost", execute(&app, "ghost", run.clone()).await).await;
        let e = job(&d, 0, "restart")["error"].as_str().unwrap().to_string();
        assert!(e.contains("service ghost not found in env demo/dev"), "{e}");
        workflow(&app, "none", vec![("restart", vec![restart(json!([]))])]).await;
        app.post("/openapi/workflows/custom/task", json!({"project_key": "demo", "workflow_key": "none",
            "parameters": [], "inputs": run})).await.expect_error(400, "deploy service is empty");

        // `env_source: fromjob`: the environment an earlier deploy job deploys to.
        let chained = json!({"name": "restart", "type": "zadig-restart", "spec": {"env_source": "fromjob",
            "env_job_name": "deploy", "services": ["shop"], "skip_check_run_status": true}});
        let deploy = deploy_job("deploy", json!({"env": "", "source": "runtime", "deploy_contents": ["image"]}));
        app.post("/openapi/workflows/custom", json!({"name": "early", "display_name": "early", "project": "demo",
            "stages": [{"name": "s", "jobs": [chained.clone()]}, {"name": "t", "jobs": [deploy.clone()]}]}))
            .await.expect_error(400, "env_job_name");
        workflow(&app, "chain", vec![("deploy", vec![deploy]), ("restart", vec![chained])]).await;
        let mut inputs = deploy_input("deploy", "nginx:1.28");
        inputs.as_array_mut().unwrap().push(run[0].clone());
        let d = ended(&app, "chain", execute(&app, "chain", inputs).await).await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(job(&d, 1, "restart")["spec"]["env"], "dev");

        // Dave may run workflows but not change the admin's environment.
        let (_, dave) = app.create_user("dave", false).await;
        let before = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        let r = app.call(reqwest::Method::POST, "/openapi/workflows/custom/task", Some(&dave),
            Some(json!({"project_key": "demo", "workflow_key": "bounce", "parameters": [], "inputs": run}))).await;
        let d = ended(&app, "bounce", r.expect(200)["task_id"].as_i64().unwrap()).await;
        let e = job(&d, 0, "restart")["error"].as_str().unwrap().to_string();
        assert!(e.contains("user dave may not deploy to environment \"dev\""), "{e}");
        let after = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(after["spec"]["template"], before["spec"]["template"]);
        app.stop().await;
    }
}

backend_test! {
    /// `k8s-blue-green-deploy` keeps Service `web` on the green pods (`origin`) and creates
    /// `web-blue` with the new image and the job's blue Service; `k8s-blue-green-release`
    /// moves the green Deployment to the image and deletes the blue copies. A deploy without a
    /// release is undone when its task ends.
    async fn blue_green_deploy_and_release(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        const BLUE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-blue\nspec:\n  selector:\n    app: web\n    zadig-blue-green-version: blue\n  ports:\n  - port: 80\n";
        let deploy = |blue_yaml: &str| json!({"name": "bg", "type": "k8s-blue-green-deploy", "spec": {
            "version": "v2", "env": "dev", "production": false, "services": [{"service_name": "shop",
                "blue_service_yaml": blue_yaml, "service_and_image": [{"service_module": "web", "image": "nginx:1.25"}]}]}});
        let release = json!({"name": "switch", "type": "k8s-blue-green-release", "spec": {"from_job": "bg"}});
        let save = |name: &str, stages: Value| app.post("/openapi/workflows/custom", json!({"name": name,
            "display_name": name, "project": "demo", "concurrency_limit": -1, "stages": stages}));
        let mut old = deploy(BLUE);
        old["spec"]["version"] = json!("");
        save("bad", json!([{"name": "a", "jobs": [old]}])).await.expect_error(400, "spec.version");
        save("bad", json!([{"name": "a", "jobs": [{"name": "r", "type": "k8s-blue-green-release", "spec": {}}]}]))
            .await.expect_error(400, "from_job");
        // The release waits behind a native approval, so the blue state can be looked at.
        save("bg", json!([{"name": "deploy", "jobs": [deploy(BLUE)]},
            {"name": "release", "approval": {"enabled": true, "type": "native", "native_approval": {"timeout": 60,
                "needed_approvers": 1, "approve_users": [{"user_name": "admin", "user_id": "admin"}]}},
             "jobs": [release.clone()]}])).await.expect(200);
        let input = |service: &str| json!([{"job_name": "bg", "job_type": "k8s-blue-green-deploy",
            "parameters": {"service_list": [{"service_name": service, "image_name": "nginx:1.27"}]}}]);
        app.post("/openapi/workflows/custom/task", json!({"project_key": "demo", "workflow_key": "bg",
            "inputs": input("ghost")})).await.expect_error(400, "service_list[0].service_name");
        let mut inputs = input("shop");
        inputs.as_array_mut().unwrap().push(json!({"job_name": "switch", "job_type": "k8s-blue-green-release", "parameters": {}}));
        let id = execute(&app, "bg", inputs).await;
        let d = app.wait_for("the release's approval", LIMIT, || async {
            let d = detail(&app, "bg", id).await;
            ["wait_for_approval", "passed", "failed"].contains(&d["status"].as_str().unwrap_or_default()).then_some(d)
        }).await;
        assert_eq!(d["status"], "wait_for_approval", "{d}");
        let j = job(&d, 0, "bg");
        assert_eq!(j["status"], "passed", "{d}");
        assert_eq!((&j["spec"]["blue_deployment_name"], &j["spec"]["green_service_name"]),
            (&json!("web-blue"), &json!("web")), "{j}");
        let text = log(&app, "bg", id, j["name"].as_str().unwrap()).await;
        assert!(text.contains("create blue deployment: web-blue success"), "{text}");
        let blue = emu.object("Deployment", "demo-dev", "web-blue").await.unwrap();
        assert_eq!(blue["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(blue["spec"]["template"]["metadata"]["labels"]["zadig-blue-green-version"], "blue");
        assert!(emu.object("Service", "demo-dev", "web-blue").await.is_some());
        let green = emu.object("Service", "demo-dev", "web").await.unwrap();
        assert_eq!(green["spec"]["selector"]["zadig-blue-green-version"], "origin");
        let owner = green["metadata"]["annotations"]["zadig-server/blue-green-owner"].as_str().unwrap();
        assert!(owner.starts_with(&format!("bg#{id}/")), "the deploy marks the Service it holds: {owner}");
        let origin = |pods: &[Value]| pods.iter().filter(|p| p["metadata"]["labels"]["app"] == "web"
            && p["metadata"]["labels"]["zadig-blue-green-version"] == "origin").count();
        assert_eq!(origin(&emu.objects("Pod", "demo-dev").await), 1);
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.25");

        app.post("/openapi/workflows/custom/task/approve", json!({"task_id": id, "workflow_key": "bg",
            "stage_name": "release", "approve": true})).await.expect(200);
        let d = ended(&app, "bg", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        let r = job(&d, 1, "switch");
        assert_eq!(r["spec"]["replace_resources"][0]["image"], "nginx:1.27", "{r}");
        let text = log(&app, "bg", id, r["name"].as_str().unwrap()).await;
        for line in ["service web routes to the blue deployment web-blue", "blue deployment web-blue and blue service web-blue deleted"] {
            assert!(text.contains(line), "log lacks {line:?}: {text}");
        }
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.27");
        let restored = || async {
            assert!(emu.object("Deployment", "demo-dev", "web-blue").await.is_none());
            assert!(emu.object("Service", "demo-dev", "web-blue").await.is_none());
            let green = emu.object("Service", "demo-dev", "web").await.unwrap();
            assert_eq!(green["spec"]["selector"], json!({"app": "web"}));
            assert!(green["metadata"]["annotations"].get("zadig-server/blue-green-owner").is_none(), "{green}");
            assert_eq!(origin(&emu.objects("Pod", "demo-dev").await), 0);
        };
        restored().await;
        let env = app.get("/openapi/environments/dev?projectKey=demo").await;
        assert!(env.text.contains("nginx:1.27"), "the environment records the image: {}", env.text);

        // A deploy alone: its blue copy lives for its task only.
        workflow(&app, "bg-only", vec![("deploy", vec![deploy(BLUE)])]).await;
        let d = ended(&app, "bg-only", execute(&app, "bg-only", input("shop")).await).await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(job(&d, 0, "bg")["error"], "", "{d}");
        restored().await;

        // A release without its blue copy (retried after its task's end undid the deploy) rolls
        // the images out on the green Deployment alone.
        workflow(&app, "bg-retry", vec![("deploy", vec![deploy(BLUE)]), ("release", vec![release.clone()])]).await;
        let id = execute(&app, "bg-retry", json!([{"job_name": "switch", "job_type": "k8s-blue-green-release",
            "parameters": {}}])).await;
        let d = ended(&app, "bg-retry", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        let r = job(&d, 1, "switch");
        let text = log(&app, "bg-retry", id, r["name"].as_str().unwrap()).await;
        assert!(text.contains("blue deployment web-blue is gone: the images roll out on deployment web directly"), "{text}");
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.25");
        restored().await;

        // A blue copy that cannot start fails the deploy, and is undone all the same.
        let bad = json!([{"job_name": "bg", "job_type": "k8s-blue-green-deploy",
            "parameters": {"service_list": [{"service_name": "shop", "image_name": "nginx:badimage"}]}}]);
        let d = ended(&app, "bg-only", execute(&app, "bg-only", bad).await).await;
        let j = job(&d, 0, "bg");
        assert_eq!(j["status"], "failed", "{d}");
        assert!(j["error"].as_str().unwrap().contains("web-blue"), "{j}");
        restored().await;

        // A blue Service that does not select the blue pods fails the job before anything changes.
        workflow(&app, "bg-bad", vec![("deploy", vec![deploy(&BLUE.replace("blue\n  ports", "green\n  ports"))])]).await;
        let d = ended(&app, "bg-bad", execute(&app, "bg-bad", input("shop")).await).await;
        let e = job(&d, 0, "bg")["error"].as_str().unwrap().to_string();
        assert!(e.contains("blue service web-blue does not select the pods of web-blue"), "{e}");

        // Dave may run workflows but not change the admin's environment: nothing changes.
        let (_, dave) = app.create_user("dave", false).await;
        let r = app.call(reqwest::Method::POST, "/openapi/workflows/custom/task", Some(&dave),
            Some(json!({"project_key": "demo", "workflow_key": "bg-only", "parameters": [], "inputs": input("shop")}))).await;
        let d = ended(&app, "bg-only", r.expect(200)["task_id"].as_i64().unwrap()).await;
        let e = job(&d, 0, "bg")["error"].as_str().unwrap().to_string();
        assert!(e.contains("user dave may not deploy"), "{e}");
        assert!(emu.object("Deployment", "demo-dev", "web-blue").await.is_none());
        app.stop().await;
    }
}

backend_test! {
    /// A `zadig-deploy` into an environment whose namespace was deleted behind its back makes
    /// the namespace again, labelled as at creation (Zadig's deploy re-ensures it), and deploys
    /// into it — test and production environments alike.
    async fn zadig_deploy_makes_a_deleted_namespace_again(app) {
        let Some((emu, cluster)) = running_env(&app).await else { return };
        let body = json!({"service_name": "shop", "yaml": crate::environments::shop_yaml(), "variable_yaml": [
            {"key": "image", "value": "nginx:1.25", "type": "string"},
            {"key": "replicas", "value": "1", "type": "string"}]});
        app.post("/openapi/service/yaml/production/raw?projectKey=demo", body).await.expect(200);
        app.post("/openapi/environments/production?projectKey=demo",
            json!({"env_key": "prod", "cluster_id": cluster, "namespace": "demo-prod"})).await.expect(200);
        app.post("/openapi/environments/production/service/yaml?projectKey=demo",
            json!({"env_key": "prod", "service_list": [{"service_name": "shop"}]})).await.expect(200);
        workflow(&app, "ship", vec![("deploy", vec![deploy_job("deploy",
            json!({"env": "dev", "source": "runtime", "deploy_contents": ["image"], "services": []}))])]).await;
        for (env, ns) in [("dev", "demo-dev"), ("prod", "demo-prod")] {
            delete_namespace_by_hand(&app, &emu, ns).await;
            let mut input = deploy_input("deploy", "nginx:1.27");
            input[0]["parameters"]["env_name"] = json!(env);
            let id = execute(&app, "ship", input).await;
            let d = ended(&app, "ship", id).await;
            assert_eq!(d["status"], "passed", "{d}");
            let made = emu.object("Namespace", "", ns).await.expect("namespace made again");
            assert_eq!(made["metadata"]["labels"]["createdBy"], "koderover", "{made}");
            assert_eq!(made["metadata"]["labels"]["s-product"], "demo", "{made}");
            let dep = emu.object("Deployment", ns, "web").await.expect("web deployed");
            assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
            assert_eq!(dep["status"]["availableReplicas"], 1);
        }
        app.stop().await;
    }
}
