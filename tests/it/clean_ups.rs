//! Clean-ups kept and retried in the background (engine/clean_ups.rs), on both backends,
//! against the Kubernetes API emulator behind a switchable proxy (tests/it/kube_proxy.rs): a
//! blue-green deploy whose task ends while the cluster is unreachable, retried until it
//! succeeds or is given up; run once by two replicas on one store; not starved by other tasks
//! of the project, and sparing what a newer task made under the same names; a record stored
//! before deploys recorded their objects waits until no task of the project runs.

use std::time::Duration;

use serde_json::{Value, json};
use zadig_server::store::{Filter, FindOptions, Update};

use crate::backend_test;
use crate::deploy_jobs::{detail, execute, job};
use crate::environments::{apply_shop, seed_env_at};
use crate::harness::TestApp;
use crate::kube_emulator::Emulator;
use crate::kube_proxy::{KubeProxy, Mode};

const LIMIT: Duration = Duration::from_secs(90);

/// The annotation marking the green Service as held by a blue-green deploy.
const OWNER_NOTE: &str = "zadig-server/blue-green-owner";

/// Workflow `bg` of project `demo`: a blue-green deploy of `shop` (module `web`), then its
/// release behind the admin's native approval.
pub async fn bg_workflow(app: &TestApp) {
    let blue = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-blue\nspec:\n  selector:\n    app: web\n    zadig-blue-green-version: blue\n  ports:\n  - port: 80\n";
    let deploy = json!({"name": "bg", "type": "k8s-blue-green-deploy", "spec": {"version": "v2", "env": "dev",
        "production": false, "services": [{"service_name": "shop", "blue_service_yaml": blue,
            "service_and_image": [{"service_module": "web", "image": "nginx:1.25"}]}]}});
    let approval = json!({"enabled": true, "type": "native", "native_approval": {"timeout": 60,
        "needed_approvers": 1, "approve_users": [{"user_name": "admin", "user_id": "admin"}]}});
    app.post("/openapi/workflows/custom", json!({"name": "bg", "display_name": "bg", "project": "demo",
        "concurrency_limit": -1, "stages": [{"name": "deploy", "jobs": [deploy]},
            {"name": "release", "approval": approval,
             "jobs": [{"name": "switch", "type": "k8s-blue-green-release", "spec": {"from_job": "bg"}}]}]}))
        .await.expect(200);
}

/// Start a task of `bg` deploying `nginx:1.27` blue; its id once it waits for the release's
/// approval (the blue copies made).
pub async fn deployed_blue(app: &TestApp) -> i64 {
    let id = execute(
        app,
        "bg",
        json!([{"job_name": "bg", "job_type": "k8s-blue-green-deploy",
        "parameters": {"service_list": [{"service_name": "shop", "image_name": "nginx:1.27"}]}},
        {"job_name": "switch", "job_type": "k8s-blue-green-release", "parameters": {}}]),
    )
    .await;
    let d = app
        .wait_for("the release's approval", LIMIT, || async {
            let d = detail(app, "bg", id).await;
            ["wait_for_approval", "passed", "failed"]
                .contains(&d["status"].as_str().unwrap_or_default())
                .then_some(d)
        })
        .await;
    assert_eq!(d["status"], "wait_for_approval", "{d}");
    id
}

/// Reject the release of task `id` of `bg`; its detail once it ended.
async fn reject(app: &TestApp, id: i64) -> Value {
    app.post(
        "/openapi/workflows/custom/task/approve",
        json!({"task_id": id, "workflow_key": "bg",
        "stage_name": "release", "approve": false}),
    )
    .await
    .expect(200);
    let d = app
        .wait_for("the rejected end", LIMIT, || async {
            let d = detail(app, "bg", id).await;
            (d["status"] == "reject").then_some(d)
        })
        .await;
    assert_eq!(job(&d, 0, "bg")["status"], "passed", "{d}");
    d
}

/// An emulator behind a proxy, env `dev` on its cluster and a task of `bg` that deployed
/// blue; the cluster then becomes unreachable and the release is rejected, so the deploy's
/// clean-up fails when the task ends. The task id and its detail once it ended; `None`
/// without the emulator.
async fn blue_green_left_behind(app: &TestApp) -> Option<(Emulator, KubeProxy, i64, Value)> {
    let emu = Emulator::start().await?;
    let proxy = KubeProxy::start(&emu).await;
    seed_env_at(app, &proxy.kubeconfig).await;
    apply_shop(app, LIMIT).await;
    bg_workflow(app).await;
    let id = deployed_blue(app).await;
    proxy.set(Mode::Down);
    let d = reject(app, id).await;
    Some((emu, proxy, id, d))
}

/// The error of the blue-green deploy job task of task `id` of `bg`, once it mentions `needle`.
async fn bg_error_once(app: &TestApp, id: i64, needle: &str) -> String {
    app.wait_for(needle, LIMIT, || async {
        let d = detail(app, "bg", id).await;
        let e = job(&d, 0, "bg")["error"].as_str()?.to_string();
        e.contains(needle).then_some(e)
    })
    .await
}

/// The clean-ups kept to be retried, as stored.
async fn pending_clean_ups(app: &TestApp) -> Vec<serde_json::Map<String, Value>> {
    app.backend
        .collection("clean_ups")
        .find(&Filter::All, &FindOptions::default())
        .await
        .unwrap()
}

/// Wait until no clean-up is kept (the note on the task is written before the record goes).
async fn none_pending(app: &TestApp) {
    app.wait_for("no clean-up kept", LIMIT, || async {
        pending_clean_ups(app).await.is_empty().then_some(())
    })
    .await;
}

/// `metadata.uid` of `kind`/`name` in `demo-dev`, if it exists.
async fn uid(emu: &Emulator, kind: &str, name: &str) -> Option<String> {
    let o = emu.object(kind, "demo-dev", name).await?;
    Some(o["metadata"]["uid"].as_str().unwrap().to_string())
}

/// The pods of Deployment `web` labelled `origin`.
async fn origin_pods(emu: &Emulator) -> usize {
    let pods = emu.objects("Pod", "demo-dev").await;
    pods.iter()
        .filter(|p| {
            let l = &p["metadata"]["labels"];
            l["app"] == "web" && l["zadig-blue-green-version"] == "origin"
        })
        .count()
}

/// The status of each DELETE of API path `path` the emulator answered.
async fn deletes(emu: &Emulator, path: &str) -> Vec<u64> {
    let all = emu.requests().await;
    all.iter()
        .filter(|r| r["path"] == path && r["method"] == "DELETE")
        .map(|r| r["code"].as_u64().unwrap_or_default())
        .collect()
}

const BLUE_DEPLOYMENT: &str = "/apis/apps/v1/namespaces/demo-dev/deployments/web-blue";
const BLUE_SERVICE: &str = "/api/v1/namespaces/demo-dev/services/web-blue";

/// Assert the deploy is undone: no blue copy, Service `web` on all its pods and unmarked, no
/// pod labelled.
async fn assert_undone(emu: &Emulator) {
    assert!(
        emu.object("Deployment", "demo-dev", "web-blue")
            .await
            .is_none()
    );
    assert!(
        emu.object("Service", "demo-dev", "web-blue")
            .await
            .is_none()
    );
    let green = emu.object("Service", "demo-dev", "web").await.unwrap();
    assert_eq!(green["spec"]["selector"], json!({"app": "web"}), "{green}");
    assert!(
        green["metadata"]["annotations"].get(OWNER_NOTE).is_none(),
        "{green}"
    );
    assert_eq!(origin_pods(emu).await, 0);
}

backend_test! {
    /// A blue-green deploy that cannot be undone when its task ends (the cluster is unreachable)
    /// says so in its job's error, after a few tries; the clean-up is kept (across a restart) and
    /// retried in the background until the cluster answers again: the blue copies are then gone
    /// and the job's error says so.
    async fn a_blue_green_clean_up_that_fails_is_retried_later(app) {
        let Some((emu, proxy, id, d)) = blue_green_left_behind(&app).await else { return };
        let e = job(&d, 0, "bg")["error"].as_str().unwrap().to_string();
        assert!(e.starts_with("clean-up failed: ") && e.contains("web-blue")
            && e.ends_with("; retried in the background for up to 6h"), "{e}");
        assert!(emu.object("Deployment", "demo-dev", "web-blue").await.is_some());

        // Kept across a restart; due 30 s (business clock) later, when the cluster is still down.
        let app = app.restart().await;
        app.clock.advance(Duration::from_secs(30));
        app.wait_for("a failed background retry", LIMIT, || async {
            let p = pending_clean_ups(&app).await;
            (p.len() == 1 && p[0]["attempts"] == 1).then_some(())
        }).await;
        assert!(bg_error_once(&app, id, "retried in the background").await.starts_with("clean-up failed: "));

        // Due 60 s later, the cluster answering again: the deploy is undone.
        proxy.set(Mode::Pass);
        app.clock.advance(Duration::from_secs(60));
        let e = bg_error_once(&app, id, "succeeded on background retry").await;
        assert!(e.starts_with("clean-up failed at first (") && e.contains("web-blue")
            && e.contains(") and succeeded on background retry 2 at ") && !e.contains("left"), "{e}");
        assert_undone(&emu).await;
        none_pending(&app).await;
        let d = detail(&app, "bg", id).await;
        assert_eq!((&d["status"], &job(&d, 0, "bg")["status"]), (&json!("reject"), &json!("passed")));
        app.stop().await;
    }
}

backend_test! {
    /// A clean-up still failing `engine_clean_up_give_up_secs` (6 h) after its first failure is
    /// given up: the job's error says so, and nothing is retried any more.
    async fn a_clean_up_that_keeps_failing_is_given_up(app) {
        let Some((emu, _proxy, id, _)) = blue_green_left_behind(&app).await else { return };
        app.clock.advance(Duration::from_secs(6 * 3600));
        let e = bg_error_once(&app, id, "given up").await;
        assert!(e.starts_with("clean-up failed: ") && e.contains("web-blue")
            && e.ends_with("; given up after 1 background retry over 6h: undo it by hand"), "{e}");
        none_pending(&app).await;
        assert!(emu.object("Deployment", "demo-dev", "web-blue").await.is_some());
        app.stop().await;
    }
}

backend_test! {
    /// Two servers on one store (each with its own connection), both retrying clean-ups: a kept
    /// clean-up runs once — one DELETE of each blue copy reaches the cluster — and its note
    /// says it succeeded on the first background retry.
    async fn two_replicas_retry_a_kept_clean_up_once(app) {
        let Some((emu, proxy, id, _)) = blue_green_left_behind(&app).await else { return };
        assert_eq!(pending_clean_ups(&app).await.len(), 1);
        let backend = zadig_server::store::open(&app.config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let clock: std::sync::Arc<dyn zadig_server::clock::Clock> = std::sync::Arc::new(app.clock.clone());
        let second = zadig_server::start(app.config.clone(), backend, clock, listener).await.unwrap();
        assert_ne!(second.state.instance_id, app.state().instance_id);

        proxy.set(Mode::Pass);
        emu.clear_requests().await;
        app.clock.advance(Duration::from_secs(30));
        let e = bg_error_once(&app, id, "succeeded on background retry").await;
        assert!(e.contains(") and succeeded on background retry 1 at ") && !e.contains("left"), "{e}");
        none_pending(&app).await;
        assert_undone(&emu).await;
        for path in [BLUE_DEPLOYMENT, BLUE_SERVICE] {
            assert_eq!(deletes(&emu, path).await, [200], "{path}");
        }
        second.shutdown().await;
        app.stop().await;
    }
}

backend_test! {
    /// A clean-up retry runs while another task of the project runs — here a newer task of the
    /// same workflow, whose deploy made blue copies under the same names (the old ones deleted
    /// by hand) and holds Service `web`: the retry deletes nothing of it (a uid precondition
    /// refused), leaves the Service's selector and the pods' labels to it, and says so. The
    /// newer task's own clean-up then undoes its deploy.
    async fn a_clean_up_retry_is_not_starved_and_spares_a_newer_task(app) {
        let Some((emu, proxy, old, _)) = blue_green_left_behind(&app).await else { return };
        proxy.set(Mode::Pass);
        for path in [BLUE_DEPLOYMENT, BLUE_SERVICE] {
            assert_eq!(emu.api(reqwest::Method::DELETE, path).await, 200, "{path}");
        }
        app.wait_for("the old blue copies gone", LIMIT, || async {
            uid(&emu, "Deployment", "web-blue").await.is_none().then_some(())
        }).await;

        let newer = deployed_blue(&app).await;
        let (deployment, service) = (uid(&emu, "Deployment", "web-blue").await.unwrap(),
            uid(&emu, "Service", "web-blue").await.unwrap());
        let green = emu.object("Service", "demo-dev", "web").await.unwrap();
        let owner = green["metadata"]["annotations"][OWNER_NOTE].as_str().unwrap().to_string();
        assert!(owner.starts_with(&format!("bg#{newer}/")), "{owner}");
        let labelled = origin_pods(&emu).await;
        assert!(labelled > 0);

        emu.clear_requests().await;
        app.clock.advance(Duration::from_secs(30));
        let e = bg_error_once(&app, old, "succeeded on background retry").await;
        assert!(e.contains(") and succeeded on background retry 1 at "), "{e}");
        let left = format!("; clean-up left service web and its pods' labels to blue-green deploy {owner}, which holds it now, \
            blue deployment web-blue alone (another object of that name now: a newer task's), \
            blue service web-blue alone (another object of that name now: a newer task's)");
        assert!(e.ends_with(&left), "{e}");
        none_pending(&app).await;
        for path in [BLUE_DEPLOYMENT, BLUE_SERVICE] {
            assert_eq!(deletes(&emu, path).await, [409], "{path}: refused by its uid precondition");
        }
        assert_eq!(uid(&emu, "Deployment", "web-blue").await.as_deref(), Some(deployment.as_str()));
        assert_eq!(uid(&emu, "Service", "web-blue").await.as_deref(), Some(service.as_str()));
        let green = emu.object("Service", "demo-dev", "web").await.unwrap();
        assert_eq!(green["spec"]["selector"]["zadig-blue-green-version"], "origin", "{green}");
        assert_eq!(green["metadata"]["annotations"][OWNER_NOTE], owner.as_str());
        assert_eq!(origin_pods(&emu).await, labelled);
        assert_eq!(detail(&app, "bg", newer).await["status"], "wait_for_approval");

        let d = reject(&app, newer).await;
        assert_eq!(job(&d, 0, "bg")["error"], "", "{d}");
        assert_undone(&emu).await;
        app.stop().await;
    }
}

backend_test! {
    /// A kept clean-up recorded before deploys recorded their objects (no owner, no uids) cannot
    /// tell a newer task's objects from its own: its retry is put off while a task of the
    /// project runs, and undoes the deploy once none does.
    async fn a_clean_up_recorded_before_uids_waits_for_an_idle_project(app) {
        let Some((emu, proxy, id, _)) = blue_green_left_behind(&app).await else { return };
        let mut forget = Update::new();
        for key in ["green_service_mark", "blue_deployment_uid", "blue_service_uid"] {
            forget = forget.unset(&format!("job.spec.{key}"));
        }
        assert!(app.backend.collection("clean_ups").update_one(&Filter::All, &forget).await.unwrap());

        // Due 30 s later, while a task of the project waits for an approval: put off 30 s.
        app.post("/openapi/workflows/custom", json!({"name": "gate", "display_name": "gate", "project": "demo", "concurrency_limit": -1,
            "stages": [{"name": "gate", "jobs": [{"name": "ok", "type": "approval", "spec": {"type": "native",
                "timeout": 60, "native_approval": {"timeout": 60, "needed_approvers": 1,
                    "approve_users": [{"user_name": "admin", "user_id": "admin"}]}}}]}]})).await.expect(200);
        let gate = execute(&app, "gate", json!([{"job_name": "ok", "job_type": "approval", "parameters": {}}])).await;
        app.wait_for("the gate's approval", LIMIT, || async {
            let d = detail(&app, "gate", gate).await;
            (job(&d, 0, "ok")["status"] == "wait_for_approval").then_some(())
        }).await;
        proxy.set(Mode::Pass);
        app.clock.advance(Duration::from_secs(30));
        let later = zadig_server::clock::Clock::now_ms(&app.clock) + 30_000;
        app.wait_for("the retry put off", LIMIT, || async {
            let p = pending_clean_ups(&app).await;
            (p.len() == 1 && p[0]["next_at_ms"] == later && p[0]["attempts"] == 0).then_some(())
        }).await;
        assert!(emu.object("Deployment", "demo-dev", "web-blue").await.is_some());

        // The gate cancelled, the next retry undoes the deploy as before (unconditionally).
        app.delete(&format!("/openapi/workflows/custom/task?taskId={gate}&workflowKey=gate")).await.expect(200);
        app.clock.advance(Duration::from_secs(30));
        let e = bg_error_once(&app, id, "succeeded on background retry").await;
        assert!(e.contains(") and succeeded on background retry 1 at ") && !e.contains("left"), "{e}");
        assert_undone(&emu).await;
        none_pending(&app).await;
        app.stop().await;
    }
}
