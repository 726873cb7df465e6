//! `zadig-test` and `zadig-scanning`: run test (scan) definitions, per service
//! (`service_test` / `service_scanning`) or per configured test (scan) module. They merge
//! inputs, expand and show the same way, with their own field names ([`TestKind`]). Running
//! them needs the testing (scanning) module API, which this server does not have.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{InputCx, JobKind, Runs, Spec, first_listed, nullable, stored, typed};
use crate::error::ApiResult;
use crate::workflow::expand::{Expander, nothing_to_run};
use crate::workflow::inputs::{
    KvInput, RepoInput, RepoMode, ServiceInput, decode, merge_kvs, merge_repos,
    referenced_services, select_services, with_list,
};
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// The field names of a test job or a scanning job.
pub struct TestKind {
    service_type: &'static str,
    services: &'static str,
    service_options: &'static str,
    modules: &'static str,
    module_options: &'static str,
    /// The input's module-list key (for error paths; [`Self::read_input`] reads it).
    module_list: &'static str,
    module_name: &'static str,
    what: &'static str,
    /// Lint's complaint about a service item without a name.
    empty_name: &'static str,
    /// The integration running it needs.
    integration: &'static str,
    /// The spec read with this kind's field names.
    read: fn(&Value, &str) -> ApiResult<Suite>,
    /// The execute input read with this kind's module-list key.
    read_input: fn(&Value, &str) -> ApiResult<SuiteInput>,
    /// The task-detail summary.
    view: fn(&JobTask) -> Value,
}

/// `zadig-test`.
pub static TEST: TestKind = TestKind {
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
    read: |v, field| decode::<TestSpec>(v, field).map(Suite::from),
    read_input: |v, field| decode::<TestInput>(v, field).map(SuiteInput::from),
    view: test_view,
};

/// `zadig-scanning`.
pub static SCAN: TestKind = TestKind {
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
    read: |v, field| decode::<ScanSpec>(v, field).map(Suite::from),
    read_input: |v, field| decode::<ScanInput>(v, field).map(SuiteInput::from),
    view: scan_view,
};

/// A test (scan) job's spec whatever its kind's field names: what is read. The spec itself
/// is stored verbatim.
struct Suite {
    /// `test_type` / `scanning_type`.
    kind: String,
    /// `fromjob`: the services are limited to those job `job_name` produces.
    source: String,
    job_name: String,
    services: Vec<SuiteItem>,
    service_options: Vec<SuiteItem>,
    modules: Vec<SuiteItem>,
    module_options: Vec<SuiteItem>,
}

/// A test (scan) of a service, or a test (scan) module: its name, its service module, its
/// repositories; every other field is kept as sent.
#[derive(Debug, Default, Deserialize)]
struct SuiteItem {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    service_name: String,
    #[serde(default, deserialize_with = "nullable")]
    service_module: String,
    #[serde(default, deserialize_with = "nullable")]
    repos: Vec<Value>,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

impl SuiteItem {
    fn pair(&self) -> (String, String) {
        (self.service_name.clone(), self.service_module.clone())
    }
}

/// The spec struct of one kind, named by its field names (the spec's own keys, so a decoding
/// error names the field as sent), read as a [`Suite`].
macro_rules! suite_spec {
    ($name:ident { $kind:ident, $services:ident, $service_options:ident, $modules:ident, $module_options:ident }) => {
        #[derive(Debug, Default, Deserialize)]
        struct $name {
            #[serde(default, deserialize_with = "nullable")]
            $kind: String,
            #[serde(default, deserialize_with = "nullable")]
            source: String,
            #[serde(default, deserialize_with = "nullable")]
            job_name: String,
            #[serde(default, deserialize_with = "nullable")]
            $services: Vec<SuiteItem>,
            #[serde(default, deserialize_with = "nullable")]
            $service_options: Vec<SuiteItem>,
            #[serde(default, deserialize_with = "nullable")]
            $modules: Vec<SuiteItem>,
            #[serde(default, deserialize_with = "nullable")]
            $module_options: Vec<SuiteItem>,
            /// Every other field, kept as sent.
            #[serde(flatten)]
            _extra: Map<String, Value>,
        }

        impl From<$name> for Suite {
            fn from(s: $name) -> Self {
                Suite {
                    kind: s.$kind,
                    source: s.source,
                    job_name: s.job_name,
                    services: s.$services,
                    service_options: s.$service_options,
                    modules: s.$modules,
                    module_options: s.$module_options,
                }
            }
        }
    };
}

suite_spec!(TestSpec {
    test_type,
    service_and_tests,
    service_test_options,
    test_modules,
    test_module_options
});
suite_spec!(ScanSpec {
    scanning_type,
    service_and_scannings,
    service_scanning_options,
    scannings,
    scanning_options
});

/// A test (scan) job task's item fields as its view reads them.
#[derive(Debug, Default, Deserialize)]
struct TaskItem {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    key_vals: Vec<Value>,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

impl TaskItem {
    /// A job task's item; a malformed one (its job failed naming the field) shows as empty.
    fn of(job: &JobTask) -> Self {
        typed(&job.spec).unwrap_or_default()
    }
}

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
    let item = TaskItem::of(job);
    m.insert("test_name".into(), json!(item.name));
    m.insert("envs".into(), task_view::envs_view(&item.key_vals));
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
    let item = TaskItem::of(job);
    m.insert("scanning_name".into(), json!(item.name));
    m.insert("envs".into(), task_view::envs_view(&item.key_vals));
    m.insert("link_url".into(), json!(task_view::output(job, "link_url")));
    Value::Object(m)
}

impl TestKind {
    /// The job's spec read with this kind's field names.
    fn spec_of(&self, job: &Job) -> ApiResult<Suite> {
        (self.read)(&job.spec, &format!("job {}.spec", job.name))
    }

    fn per_service(&self, suite: &Suite) -> bool {
        suite.kind == self.service_type
    }
}

#[async_trait::async_trait]
impl JobKind for TestKind {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        let suite = (self.read)(spec, field)?;
        if !self.per_service(&suite) {
            return Ok(());
        }
        for (list, items) in [
            (self.services, &suite.services),
            (self.service_options, &suite.service_options),
        ] {
            if let Some(k) = items.iter().position(|i| i.name.is_empty()) {
                return Err(bad(&format!("{field}.{list}[{k}].name"), self.empty_name));
            }
        }
        Ok(())
    }

    fn exports_env(&self) -> bool {
        true
    }

    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let input = (self.read_input)(params, cx.field)?;
        let before = (self.read)(cx.before, &format!("job {}.spec", cx.job))?;
        match (self.per_service(&before), input) {
            (
                true,
                SuiteInput {
                    services: Some(list),
                    ..
                },
            ) => self.services_input(cx, &before, spec, &list),
            (
                false,
                SuiteInput {
                    modules: Some(list),
                    ..
                },
            ) => self.modules_input(cx, &before, spec, &list),
            _ => Ok(()),
        }
    }

    fn produced(&self, job: &Job) -> ApiResult<Vec<(String, String)>> {
        let suite = self.spec_of(job)?;
        Ok(suite.services.iter().map(SuiteItem::pair).collect())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let suite = self.spec_of(job)?;
        let tasks = if self.per_service(&suite) {
            let items = stored(&job.spec, self.services, &suite.services)
                .map(|(t, raw)| (raw, vec![t.service_name.clone(), t.service_module.clone()]));
            x.per_item(job, self.services, items)
        } else {
            let items = stored(&job.spec, self.modules, &suite.modules)
                .map(|(t, raw)| (raw, vec![t.name.clone()]));
            x.per_item(job, self.modules, items)
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

/// A test (scan) job's execute input whatever its kind's module-list key.
struct SuiteInput {
    /// `service_list`, for a per-service job.
    services: Option<Vec<ServiceInput>>,
    /// `testing_list` / `scanning_list`, for a per-module job.
    modules: Option<Vec<ModuleInput>>,
}

/// The input struct of one kind, named by its module-list key (so a decoding error names the
/// field as sent), read as a [`SuiteInput`].
macro_rules! suite_input {
    ($name:ident { $modules:ident }) => {
        #[derive(Debug, Default, Deserialize)]
        struct $name {
            service_list: Option<Vec<ServiceInput>>,
            $modules: Option<Vec<ModuleInput>>,
        }

        impl From<$name> for SuiteInput {
            fn from(i: $name) -> Self {
                SuiteInput {
                    services: i.service_list,
                    modules: i.$modules,
                }
            }
        }
    };
}

suite_input!(TestInput { testing_list });
suite_input!(ScanInput { scanning_list });

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
        before: &Suite,
        spec: &mut Map<String, Value>,
        list: &[ServiceInput],
    ) -> ApiResult<()> {
        let field = cx.field;
        let mut configured = first_listed(
            cx.before,
            (self.service_options, &before.service_options),
            (self.services, &before.services),
        );
        if before.source == "fromjob" {
            let r = &before.job_name;
            let produced = referenced_services(cx.wf, r)?.ok_or_else(|| {
                bad(
                    &format!("{field}.service_list"),
                    format!("{}: refered job {r} not found", self.what),
                )
            })?;
            configured.retain(|(t, _)| produced.contains(&t.pair()));
        }
        let candidates: Vec<Value> = configured.into_iter().map(|(_, v)| v.clone()).collect();
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
        before: &Suite,
        spec: &mut Map<String, Value>,
        list: &[ModuleInput],
    ) -> ApiResult<()> {
        let job = cx.job;
        let lfield = format!("{}.{}", cx.field, self.module_list);
        let configured = first_listed(
            cx.before,
            (self.modules, &before.modules),
            (self.module_options, &before.module_options),
        );
        let names: Vec<&str> = configured.iter().map(|(t, _)| t.name.as_str()).collect();
        let mut modules: Vec<Value> = configured.iter().map(|(_, v)| (*v).clone()).collect();
        // Each module's repositories as merged so far (a module may be listed twice).
        let mut repos: Vec<Vec<Value>> = configured.iter().map(|(t, _)| t.repos.clone()).collect();
        for (k, input) in list.iter().enumerate() {
            let f = format!("{lfield}[{k}]");
            if input.name.is_empty() {
                return Err(bad(&format!("{f}.{}", self.module_name), "is required"));
            }
            let Some(at) = names.iter().position(|n| *n == input.name) else {
                return Err(bad(
                    &format!("{f}.{}", self.module_name),
                    format!("{} is not configured in job {job}", input.name),
                ));
            };
            repos[at] = merge_repos(
                &repos[at],
                &input.repo_info,
                RepoMode::Select,
                &format!("{f}.repo_info"),
            )?;
            if let Some(obj) = modules[at].as_object_mut() {
                obj.insert("repos".into(), Value::Array(repos[at].clone()));
                with_list(obj, "key_vals", |l| {
                    merge_kvs(l, &input.inputs, true, &format!("{f}.inputs"), job)
                })?;
            }
        }
        spec.insert(self.modules.into(), Value::Array(modules));
        Ok(())
    }
}
