//! Zadig's null-as-zero rule on request bodies (docs/compatibility.md): a `null` in a typed
//! field reads as the field's zero value, then the usual checks run; a free-form value keeps
//! `null`; an enum without a `""` value refuses it, naming the field.

use serde_json::json;

use crate::backend_test;
use crate::build::seed_build;
use crate::delivery::{add_registry, deployment, wait_status};
use crate::release_plan::{BASE, detail};
use crate::workflows::echo_workflow;

backend_test! {
    async fn release_plan_approval_nulls_read_as_empty(app) {
        let body = json!({"name": "pn1", "manager": "admin", "manager_identity_type": null,
            "description": null, "start_time": null,
            "approval": {"enabled": true, "status": null, "type": "native", "description": null,
                "native_approval": {"timeout": 5, "needed_approvers": 1, "reject_or_approve": null,
                    "approve_users": [{"user_name": "admin", "reject_or_approve": null, "comment": null}]}}});
        let id = app.post(BASE, body).await.expect(200)["id"].as_str().unwrap().to_string();
        let d = detail(&app, &id).await;
        assert_eq!(d["description"], "");
        assert_eq!(d["approval"]["description"], "");
        assert_eq!(d["approval"]["status"], "");
        assert_eq!(d["approval"]["native_approval"]["approve_users"][0]["reject_or_approve"], "");
        // A required name sent as null is still refused, naming it.
        app.post(BASE, json!({"name": null, "manager": "admin"})).await.expect_error(400, "`name`");
    }
}

backend_test! {
    async fn build_nulls_read_as_empty(app) {
        let mut body = seed_build();
        body["parameters"][1]["description"] = json!(null);
        body["parameters"][1]["is_credential"] = json!(null);
        body["docker_build_step"]["template_name"] = json!(null);
        body["docker_build_step"]["platforms"] = json!(null);
        body["advanced_settings"]["cluster_name"] = json!(null);
        body["advanced_settings"]["privileged_mode"] = json!(null);
        body["advanced_settings"]["storages"]["storages_properties"][0]["pvc"] = json!(null);
        body["installs"][0]["version"] = json!(null);
        app.post("/openapi/build?projectKey=yaml", body).await.expect(200);
        let d = app.get("/openapi/build/api-test/detail?projectKey=yaml&serviceName=service1&serviceModule=service1").await;
        let d = d.expect(200).clone();
        assert_eq!(d["advanced_settings"]["cluster_name"], "", "{d}");
        assert_eq!(d["advanced_settings"]["privileged_mode"], false, "{d}");
        let bb = &d["parameters"][1];
        assert_eq!(bb["key"], "bb", "{bb}");
        // Not a credential any more: the value is shown.
        assert_eq!(bb["is_credential"], false, "{bb}");
        assert_eq!(bb["value"], "abc123", "{bb}");
        // The wrong type is still a 400 naming the field.
        let mut body = seed_build();
        body["parameters"][1]["is_credential"] = json!([1]);
        app.post("/openapi/build?projectKey=yaml", body).await.expect_error(400, "parameters[1].is_credential");
    }
}

backend_test! {
    async fn workflow_nulls_and_free_form_nulls(app) {
        let mut wf = echo_workflow("wfn", "demo");
        wf["description"] = json!(null);
        // `spec` is stored as sent: its own nulls come back as null.
        wf["stages"][0]["jobs"][0]["spec"]["extra_setting"] = json!(null);
        app.post("/api/aslan/workflow/v4", wf).await.expect(200);
        let d = app.get("/openapi/workflows/custom/wfn/detail?projectKey=demo").await.expect(200).clone();
        assert_eq!(d["description"], "");
        let spec = &d["stages"][0]["jobs"][0]["spec"];
        assert!(spec.as_object().unwrap().contains_key("extra_setting"), "{spec}");
        assert_eq!(spec["extra_setting"], json!(null));

        // Views: a null list is an empty one; a null workflow type is still refused.
        app.post("/openapi/workflows/view", json!({"project_key": "demo", "name": "v-null", "workflow_list": null})).await.expect(200);
        let l = app.get("/openapi/workflows/view?projectKey=demo").await.expect(200).clone();
        assert_eq!(l[0]["name"], "v-null", "{l}");
        app.put("/openapi/workflows/view/v-null?projectKey=demo",
            json!({"workflow_list": [{"workflow_key": "wfn", "workflow_type": null, "enabled": true}]})).await
            .expect_error(400, "workflow_list[0].workflow_type");

        // An approval's comment sent as null decodes: the answer is about the missing task.
        let r = app.post("/openapi/workflows/custom/task/approve", json!({"task_id": 1, "workflow_key": "wfn",
            "stage_name": "approval", "approve": true, "comment": null})).await;
        assert_eq!(r.status.as_u16(), 404, "{}", r.text);
    }
}

backend_test! {
    async fn delivery_version_and_ticket_nulls(app) {
        // The audit's example: optional strings and bools of a K8s version sent as null.
        let reg = add_registry(&app, "https://koderover.tencentcloudcr.com", "test").await;
        let src = "koderover.tencentcloudcr.com/test/service1:t1";
        let body = json!({"project_key": "yaml", "version_name": "vn1", "source": "manual", "env_name": null,
            "production": null, "desc": null, "labels": null, "image_registry_id": reg,
            "services": [{"service_name": "service1", "yaml_content": deployment("service1", src),
                "original_chart_version": null, "chart_version": null, "images": [{
                    "container_name": "service1", "image_name": "service1", "source_image": src,
                    "source_image_tag": null, "target_image": "koderover.tencentcloudcr.com/test/service1:v2",
                    "target_image_tag": null, "push_image": false}]}]});
        let r = app.post("/openapi/delivery/releases/k8s", body).await;
        let id = r.expect(200)["id"].as_str().unwrap().to_string();
        let v = wait_status(&app, &id, &["success", "failed"]).await;
        assert_eq!((&v["env_name"], &v["production"], &v["desc"], &v["labels"]),
            (&json!(""), &json!(false), &json!(""), &json!([])), "{v}");

        // Tickets: null lists are empty ones; a null status is still required.
        app.post("/openapi/ticket/approval", json!({"project_key": "demo", "approval_id": "T-3", "status": 1,
            "envs": null, "services": null, "users": null, "execution_window_start": null})).await.expect(200);
        let t = app.state().approval_tickets.find("T-3").await.unwrap().unwrap();
        assert!(t.envs.is_empty() && t.services.is_empty() && t.users.is_empty());
        app.post("/openapi/ticket/approval", json!({"project_key": "demo", "approval_id": "T-4", "status": null})).await
            .expect_error(400, "status");
    }
}
