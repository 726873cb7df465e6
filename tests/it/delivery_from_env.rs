//! K8s YAML delivery versions made `from_env` (seed 003, spec/delivery.md §6.3): the images
//! a running environment's containers run, and its services' YAML as rendered there, copied
//! for real to a registry; every way a request can miss the environment names the field.

use std::time::Duration;

use serde_json::json;

use crate::backend_test;
use crate::delivery::{add_registry, wait_status};
use crate::delivery_registry::TestRegistry;
use crate::environments::{apply_shop, seed_env};
use crate::kube_emulator::Emulator;

const LIMIT: Duration = Duration::from_secs(60);
const K8S: &str = "/openapi/delivery/releases/k8s";

backend_test! {
    /// The version takes the image the environment runs (set through the API after the apply)
    /// and the service's YAML as rendered for the environment, with the target image written
    /// in; the copy lands in the registry.
    async fn a_version_from_an_environment_delivers_what_runs_there(app) {
        let Some(emu) = Emulator::start().await else { return };
        let Some(reg) = TestRegistry::start().await else { return app.stop().await };
        let host = reg.host();
        let digest = reg.push_image("demo/web", "1.4", "web").await;
        let reg_id = add_registry(&app, &format!("http://{host}"), "release").await;
        seed_env(&app, &emu).await;
        apply_shop(&app, LIMIT).await;
        let running = format!("{host}/demo/web:1.4");
        app.post("/openapi/environments/image/deployment/dev",
            json!({"product_name": "demo", "service_name": "shop", "name": "web", "container_name": "web",
                "image": running})).await.expect(200);

        let target = format!("{host}/release/web:v1");
        let body = json!({"project_key": "demo", "version_name": "v1", "source": "from_env", "env_name": "dev",
            "image_registry_id": reg_id,
            "services": [{"service_name": "shop", "yaml_content": "ignored: true\n",
                "images": [{"container_name": "web", "target_image": target, "push_image": true}]}]});
        let id = app.post(K8S, body).await.expect(200)["id"].as_str().expect("id").to_string();
        let v = wait_status(&app, &id, &["success", "failed"]).await;
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!((v["source"].as_str(), v["env_name"].as_str()), (Some("from_env"), Some("dev")));
        let im = &v["services"][0]["images"][0];
        assert_eq!(im["source_image"], running.as_str(), "{im}");
        assert_eq!((im["image_name"].as_str(), im["source_image_tag"].as_str()), (Some("web"), Some("1.4")));
        assert_eq!(im["target_image_tag"], "v1");
        let yaml = v["services"][0]["yaml_content"].as_str().unwrap_or_default();
        assert!(yaml.contains(&format!("image: {target}")), "{yaml}");
        // Rendered with the environment's values; the request's YAML is not used.
        assert!(yaml.contains("kind: StatefulSet") && yaml.contains("image: redis:7.2"), "{yaml}");
        assert!(!yaml.contains("ignored") && !yaml.contains(&running), "{yaml}");
        // The environment's own namespace and labels are not delivered.
        assert!(!yaml.contains("demo-dev") && !yaml.contains("s-product"), "{yaml}");
        assert_eq!(reg.manifest_digest("release/web", "v1").await.as_deref(), Some(digest.as_str()));
        app.stop().await;
    }
}

backend_test! {
    async fn a_request_that_misses_the_environment_names_the_field(app) {
        let Some(emu) = Emulator::start().await else { return };
        seed_env(&app, &emu).await;
        apply_shop(&app, LIMIT).await;
        let good = json!({"project_key": "demo", "version_name": "v1", "source": "from_env", "env_name": "dev",
            "services": [{"service_name": "shop",
                "images": [{"container_name": "web", "target_image": "registry.example.com/r/web:v1"}]}]});
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut b = good.clone();
            edit(&mut b);
            b
        };
        for (body, needle) in [
            (with(&|b| b["env_name"] = json!("")), "`env_name`: is required"),
            (with(&|b| b["env_name"] = json!("qa")), "environment \"qa\" not found"),
            (with(&|b| b["production"] = json!(true)), "`production`"),
            (with(&|b| b["services"][0]["service_name"] = json!("cart")), "`services[0].service_name`"),
            (with(&|b| b["services"][0]["images"][0]["container_name"] = json!("db")),
                "`services[0].images[0].container_name`"),
        ] {
            app.post(K8S, body).await.expect_error(400, needle);
        }
        let helm = with(&|b| b["services"][0]["chart_version"] = json!("1.0.0"));
        app.post("/openapi/delivery/releases/helm", helm).await.expect_error(400, "Helm-chart environments");
        // Nothing was stored; the good request is taken, without images to copy: settled at once.
        let id = app.post(K8S, good).await.expect(200)["id"].as_str().expect("id").to_string();
        let v = wait_status(&app, &id, &["success", "failed"]).await;
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(v["services"][0]["images"][0]["source_image"], "nginx:1.25");
        app.stop().await;
    }
}
