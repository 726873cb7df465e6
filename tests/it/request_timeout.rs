//! `request_timeout_secs`: a request that overruns it is answered 503 (Zadig's error JSON), and
//! its handler runs on to its end in the background — an environment change is never left
//! half-done. Shown on both backends with a slow cluster: the Kubernetes API emulator behind a
//! proxy that delays each of its answers by more than the request timeout.

use std::time::Duration;

use serde_json::json;

use crate::environments::seed_env_at;
use crate::harness::{Kind, TestApp};
use crate::kind_test;
use crate::kube_emulator::Emulator;
use crate::kube_proxy::{KubeProxy, Mode};

const LIMIT: Duration = Duration::from_secs(120);

/// E7 (the service's applied YAML, read from the environment's record alone): its status.
async fn recorded(app: &TestApp) -> u16 {
    let r = app
        .get("/openapi/environments/service/yaml?projectKey=demo&envName=dev&serviceName=shop")
        .await;
    r.status.as_u16()
}

/// E6 applies service `shop` into env `dev` while every cluster answer takes 1.1 s and a request
/// may take 1 s: the client gets the 503 before the first answer is in, and the apply still
/// completes — the objects in the cluster first, then the environment's record.
async fn an_apply_that_overruns_the_request_timeout_completes(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| c.request_timeout_secs = 1).await else {
        return;
    };
    let Some(emu) = Emulator::start().await else {
        return;
    };
    let proxy = KubeProxy::start(&emu).await;
    seed_env_at(&app, &proxy.kubeconfig).await;
    assert_eq!(recorded(&app).await, 404);

    proxy.set(Mode::Delay(Duration::from_millis(1100)));
    let r = app
        .post(
            "/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "dev", "service_list": [{"service_name": "shop"}]}),
        )
        .await;
    r.expect_error(503, "request_timeout_secs");
    // Answered before the cluster's first answer: the apply has not finished.
    assert_eq!(recorded(&app).await, 404);

    // It finishes on its own; once the record has the service, every object is in the cluster.
    app.wait_for("the apply to complete", LIMIT, || async {
        (recorded(&app).await == 200).then_some(())
    })
    .await;
    for (kind, name) in [
        ("Deployment", "web"),
        ("Service", "web"),
        ("StatefulSet", "cache"),
    ] {
        let o = emu.object(kind, "demo-dev", name).await;
        let o = o.unwrap_or_else(|| panic!("{kind} {name} was not applied"));
        assert_eq!(o["metadata"]["labels"]["s-product"], "demo", "{o}");
    }

    // With a prompt cluster again, the environment shows the service running.
    proxy.set(Mode::Pass);
    app.wait_for("the service to run", LIMIT, || async {
        let d = app.get("/openapi/environments/dev?projectKey=demo").await;
        let d = d.expect(200).clone();
        (d["services"][0]["status"] == "running").then_some(())
    })
    .await;
    app.stop().await;
}

kind_test!(an_apply_that_overruns_the_request_timeout_completes);
