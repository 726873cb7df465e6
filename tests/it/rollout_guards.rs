//! What stops a rollout, on both backends against the Kubernetes API emulator (skipped when
//! it is absent): a deploy job whose workload is deleted while it waits fails at once naming
//! it (not after the rollout timeout), and while a `k8s-blue-green-deploy` holds a service's
//! Service (between the deploy and its release) the service's Deployment is not rolled out —
//! E11 restart and the E14 image route answer 409 naming the task, a `zadig-deploy` of the
//! service fails with the same words — so the live Service never loses its pods; the release
//! itself rolls out, and afterwards the restart works again.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_test;
use crate::clean_ups::{bg_workflow, deployed_blue};
use crate::deploy_jobs::{
    deploy_input, deploy_job, ended, execute, freeze_web, image_of, job, log, running_env,
    wait_log, workflow,
};
use crate::harness::ADMIN_TOKEN;

backend_test! {
    async fn a_workload_deleted_during_the_rollout_fails_the_job(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        // The rollout never completes, so the job is still waiting when the Deployment goes.
        freeze_web(&emu).await;
        workflow(&app, "wait", vec![("deploy", vec![deploy_job("deploy",
            json!({"env": "dev", "deploy_contents": ["image"]}))])]).await;
        let id = execute(&app, "wait", deploy_input("deploy", "nginx:1.30")).await;
        let j = wait_log(&app, "wait", id, "Ready pods for Deployment web").await;
        let status = emu.api(Method::DELETE, "/apis/apps/v1/namespaces/demo-dev/deployments/web").await;
        assert_eq!(status, 200);
        // The business clock does not move: only the failure ends the job within LIMIT.
        let d = ended(&app, "wait", id).await;
        assert_eq!(d["status"], "failed", "{d}");
        let dj = job(&d, 0, "deploy");
        let e = dj["error"].as_str().unwrap();
        assert!(e.contains("Deployment web was deleted during the rollout"), "{e}");
        assert_eq!(dj["spec"]["replace_resources"][0]["image"], "nginx:1.30", "{dj}");
        let text = log(&app, "wait", id, &j).await;
        assert!(!text.contains("to be created"), "{text}");
        assert!(text.contains("Deploy job failed: Deployment web was deleted"), "{text}");
        app.stop().await;
    }
}

backend_test! {
    async fn rollouts_of_a_service_wait_for_its_blue_green_release(app) {
        let Some((emu, _)) = running_env(&app).await else { return };
        bg_workflow(&app).await;
        let id = deployed_blue(&app).await;
        let holder = format!("service shop is in the blue-green deploy of task bg#{id} (job ");
        let restart = "/openapi/environments/dev/service/shop/restart?projectKey=demo";
        let r = app.call(Method::POST, restart, Some(ADMIN_TOKEN), None).await;
        assert_eq!(r.expect_error(409, &holder)["code"], 6080, "{}", r.text);
        assert!(r.text.contains("release it or end that task first"), "{}", r.text);
        let image = json!({"product_name": "demo", "service_name": "shop", "name": "web",
            "container_name": "web", "image": "nginx:1.99"});
        let r = app.post("/openapi/environments/image/deployment/dev", image).await;
        assert_eq!(r.expect_error(409, &holder)["code"], 6082, "{}", r.text);

        // A deploy job of the service fails with the same words, before changing anything.
        workflow(&app, "ship", vec![("deploy", vec![deploy_job("deploy",
            json!({"env": "dev", "deploy_contents": ["image"]}))])]).await;
        let d = ended(&app, "ship", execute(&app, "ship", deploy_input("deploy", "nginx:1.28")).await).await;
        assert_eq!(d["status"], "failed", "{d}");
        let e = job(&d, 0, "deploy")["error"].as_str().unwrap().to_string();
        assert!(e.contains(&holder), "{e}");
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.25");
        let env = app.get("/openapi/environments/dev?projectKey=demo").await;
        assert!(!env.text.contains("nginx:1.28") && !env.text.contains("nginx:1.99"), "{}", env.text);
        // The green Service still has its pod.
        let origin = |pods: &[Value]| pods.iter().filter(|p| p["metadata"]["labels"]["app"] == "web"
            && p["metadata"]["labels"]["zadig-blue-green-version"] == "origin").count();
        assert_eq!(origin(&emu.objects("Pod", "demo-dev").await), 1);

        // The release is not refused; once it ran the service restarts again.
        app.post("/openapi/workflows/custom/task/approve", json!({"task_id": id, "workflow_key": "bg",
            "stage_name": "release", "approve": true})).await.expect(200);
        let d = ended(&app, "bg", id).await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(image_of(&emu, "Deployment", "web").await, "nginx:1.27");
        app.call(Method::POST, restart, Some(ADMIN_TOKEN), None).await.expect(200);
        app.stop().await;
    }
}
