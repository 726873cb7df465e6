//! `zadig-test` and `zadig-scanning`: run test (scan) definitions, per service
//! (`service_test` / `service_scanning`) or per configured test (scan) module. They merge
//! inputs, expand and show the same way, with their own field names ([`TestKind`]). Running
//! them needs the testing (scanning) module API, which this server does not have.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{InputCx, JobKind, Runs, Spec};
use crate::error::ApiResult;
use crate::workflow::expand::{Expander, nothing_to_run, svc_module};
use crate::workflow::inputs::{
    KvInput, RepoInput, RepoMode, ServiceInput, decode, merge_kvs, merge_repos, pair_of, pairs,
    referenced_services, select_services, take_list, with_list,
};
use crate::workflow::model::{Job, arr_of, str_of};
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// The field names of a test job or a scanning job.
pub struct TestKind {
    type_key: &'static str,
    service_type: &'static str,
    services: &'static str,
    service_options: &'static str,
    modules: &'static str,
    module_options: &'static str,
    module_list: &'static str,
    module_name: &'static str,
    what: &'static str,
    /// Lint's complaint about a service item without a name.
    empty_name: &'static str,
    /// The integration running it needs.
    integration: &'static str,
    /// The task-detail summary.
    view: fn(&JobTask) -> Value,
}

/// `zadig-test`.
pub static TEST: TestKind = TestKind {
    type_key: "test_type",
    service_type: "service_test",
    services: "service_and_tests",
    service_options: "service_test_options",
    modules: "test_modules",
    module_options: "test_module_options",
    module_list: "testing_list",
    module_name: "testing_name",
    what: "ZadigTestingJob",
    empty_name: "test name cannot be empty in service testing",
    integration: "testing",
    view: test_view,
};

/// `zadig-scanning`.
pub static SCAN: TestKind = TestKind {
    type_key: "scanning_type",
    service_type: "service_scanning",
    services: "service_and_scannings",
    service_options: "service_scanning_options",
    modules: "scannings",
    module_options: "scanning_options",
    module_list: "scanning_list",
    module_name: "scanning_name",
    what: "ZadigScanningJob",
    empty_name: "scan name cannot be empty in service scanning",
    integration: "scanning",
    view: scan_view,
};

fn test_view(job: &JobTask) -> Value {
    let s = &job.spec;
    let mut m = task_view::pick(
        s,
        &[
            "repos",
            "test_type",
            "project_name",
            "service_name",
            "service_module",
        ],
    );
    m.insert("test_name".into(), json!(str_of(s, "name")));
    m.insert("envs".into(), task_view::envs_view(arr_of(s, "key_vals")));
    for k in ["junit_report", "archive", "html_report"] {
        m.insert(k.into(), json!(task_view::output(job, k)));
    }
    Value::Object(m)
}

fn scan_view(job: &JobTask) -> Value {
    let s = &job.spec;
    let mut m = task_view::pick(
        s,
        &["repos", "scanning_type", "service_name", "service_module"],
    );
    m.insert("scanning_name".into(), json!(str_of(s, "name")));
    m.insert("envs".into(), task_view::envs_view(arr_of(s, "key_vals")));
    m.insert("link_url".into(), json!(task_view::output(job, "link_url")));
    Value::Object(m)
}

impl TestKind {
    fn per_service(&self, spec: &Value) -> bool {
        str_of(spec, self.type_key) == self.service_type
    }
}

#[async_trait::async_trait]
impl JobKind for TestKind {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        if !self.per_service(spec) {
            return Ok(());
        }
        for list in [self.services, self.service_options] {
            for (k, item) in arr_of(spec, list).iter().enumerate() {
                if str_of(item, "name").is_empty() {
                    return Err(bad(&format!("{field}.{list}[{k}].name"), self.empty_name));
                }
            }
        }
        Ok(())
    }

    fn exports_env(&self) -> bool {
        true
    }

    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let field = cx.field;
        let p = if params.is_null() {
            json!({})
        } else {
            params.clone()
        };
        let Some(obj) = p.as_object() else {
            return Err(bad(field, "must be an object"));
        };
        let service_list: Option<Vec<ServiceInput>> = decode(
            obj.get("service_list").unwrap_or(&Value::Null),
            &format!("{field}.service_list"),
        )?;
        let module_list: Option<Vec<ModuleInput>> = decode(
            obj.get(self.module_list).unwrap_or(&Value::Null),
            &format!("{field}.{}", self.module_list),
        )?;
        if self.per_service(cx.before) {
            match service_list {
                Some(list) => self.services_input(cx, spec, &list),
                None => Ok(()),
            }
        } else {
            match module_list {
                Some(list) => self.modules_input(cx, spec, &list),
                None => Ok(()),
            }
        }
    }

    fn produced(&self, spec: &Value) -> Vec<Value> {
        pairs(arr_of(spec, self.services))
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec = &job.spec;
        let tasks = if self.per_service(spec) {
            x.per_item(job, self.services, arr_of(spec, self.services), &svc_module)
        } else {
            x.per_item(
                job,
                self.modules,
                arr_of(spec, self.modules),
                &|m: &Value| vec![str_of(m, "name").to_string()],
            )
        };
        if tasks.is_empty() {
            return Err(nothing_to_run(&job.name, "nothing to test or scan"));
        }
        Ok(tasks)
    }

    fn view(&self, job: &JobTask) -> Value {
        (self.view)(job)
    }

    fn runs(&self) -> Runs {
        Runs::Needs(self.integration)
    }
}

#[derive(Debug, Default, Deserialize)]
struct ModuleInput {
    #[serde(default, alias = "testing_name", alias = "scanning_name")]
    name: String,
    #[serde(default)]
    repo_info: Vec<RepoInput>,
    #[serde(default)]
    inputs: Vec<KvInput>,
}

impl TestKind {
    /// A per-service job's `service_list`: the configured services (those the referenced job
    /// produces, with `source: fromjob`) named in the list.
    fn services_input(
        &self,
        cx: &InputCx<'_>,
        spec: &mut Map<String, Value>,
        list: &[ServiceInput],
    ) -> ApiResult<()> {
        let (field, before) = (cx.field, cx.before);
        let options = take_list(before, self.service_options);
        let configured = if options.is_empty() {
            take_list(before, self.services)
        } else {
            options
        };
        let candidates = if str_of(before, "source") == "fromjob" {
            let r = str_of(before, "job_name");
            let produced = referenced_services(cx.wf, r).ok_or_else(|| {
                bad(
                    &format!("{field}.service_list"),
                    format!("{}: refered job {r} not found", self.what),
                )
            })?;
            configured
                .into_iter()
                .filter(|c| produced.iter().any(|p| pair_of(p) == pair_of(c)))
                .collect()
        } else {
            configured
        };
        let selected = select_services(
            &candidates,
            list,
            RepoMode::Select,
            &format!("{field}.service_list"),
            cx.job,
        )?;
        spec.insert(self.services.into(), Value::Array(selected));
        Ok(())
    }

    /// A per-module job's module list: each named module updated by its input.
    fn modules_input(
        &self,
        cx: &InputCx<'_>,
        spec: &mut Map<String, Value>,
        list: &[ModuleInput],
    ) -> ApiResult<()> {
        let (before, job) = (cx.before, cx.job);
        let lfield = format!("{}.{}", cx.field, self.module_list);
        let options = take_list(before, self.module_options);
        let mut modules = if take_list(before, self.modules).is_empty() {
            options
        } else {
            take_list(before, self.modules)
        };
        for (k, input) in list.iter().enumerate() {
            let f = format!("{lfield}[{k}]");
            if input.name.is_empty() {
                return Err(bad(&format!("{f}.{}", self.module_name), "is required"));
            }
            let Some(m) = modules.iter_mut().find(|m| str_of(m, "name") == input.name) else {
                return Err(bad(
                    &format!("{f}.{}", self.module_name),
                    format!("{} is not configured in job {job}", input.name),
                ));
            };
            let repos = merge_repos(
                arr_of(m, "repos"),
                &input.repo_info,
                RepoMode::Select,
                &format!("{f}.repo_info"),
            )?;
            if let Some(obj) = m.as_object_mut() {
                obj.insert("repos".into(), Value::Array(repos));
                with_list(obj, "key_vals", |l| {
                    merge_kvs(l, &input.inputs, true, &format!("{f}.inputs"), job)
                })?;
            }
        }
        spec.insert(self.modules.into(), Value::Array(modules));
        Ok(())
    }
}
