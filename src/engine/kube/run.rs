//! The Kubernetes executor: one job run as a Kubernetes Job (spec/environments.md §7.4).
//!
//! [`KubeExecutor::execute`] records the run ([`super::records`]), creates the Secret and the
//! Job (namespace created when missing), then polls the Job and its pod every [`POLL`] (and at
//! once when the log stream ends) until [`status::judge`] sees an end; meanwhile the main
//! container's log is followed into the job's [`JobLog`], so the full-log and SSE routes work
//! as for local jobs. The agent's report line gives the outputs and the failure text; the
//! container status gives image-pull failures, OOM kills and exit codes. A pod Kubernetes
//! cannot start (unschedulable, a container config error) past `engine_kube_pending_secs`
//! fails the job; one still being created waits up to the job's timeout. Cancel and timeout delete the Job
//! (its pods with it) — cancel waits at most [`CANCEL_BOUND`] for that — and every run's
//! objects are deleted when it ends. Every call is bounded by `kube_request_timeout_secs` and
//! names the cluster when it fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::agent::{self, AgentJob, Report};
use super::placement::KubeTarget;
use super::records::{self, KubeJobRecord};
use super::spec::{self, JobInput};
use super::status::{self, Verdict};
use crate::cluster::client::ClusterClient;
use crate::engine::executor::{ExecEnd, Executor, JobStatus, PreparedJob, Run};
use crate::engine::logs::JobLog;
use crate::state::AppState;

/// How often the Job and its pod are read.
pub const POLL: Duration = Duration::from_millis(250);
/// Longest a cancel waits for the Job's deletion before it reports the job cancelled (the
/// deletion goes on; a failed one is retried by the recovery sweep).
pub const CANCEL_BOUND: Duration = Duration::from_secs(4);
/// Consecutive failed reads of the Job before the job fails (each bounded by the cluster
/// timeout).
const MAX_READ_FAILURES: u32 = 3;
/// Longest wait, after the container ended, for the rest of its log.
const LOG_DRAIN: Duration = Duration::from_secs(5);

/// Runs prepared jobs as Kubernetes Jobs on one cluster.
pub struct KubeExecutor {
    state: AppState,
    target: KubeTarget,
}

/// One run's objects.
struct RunObjects {
    cc: ClusterClient,
    record: KubeJobRecord,
    container: String,
    nonce: String,
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..5].to_string()
}

impl KubeExecutor {
    pub fn new(state: AppState, target: KubeTarget) -> Self {
        Self { state, target }
    }

    /// Record the run, then create its Secret and Job.
    async fn create(&self, job: &PreparedJob, log: &JobLog) -> Result<RunObjects, String> {
        let t = &self.target;
        let cluster = crate::cluster::service::resolve(&self.state, &t.cluster_id)
            .await
            .map_err(|e| format!("cannot read cluster {}: {}", t.cluster_id, e.description))?
            .ok_or_else(|| {
                format!(
                    "cluster {} (the job's cluster_id, or engine_kube_cluster) is not registered",
                    t.cluster_id
                )
            })?;
        let cc = self
            .state
            .clusters
            .clients
            .get(&cluster)
            .await
            .map_err(|e| e.description)?;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let name = spec::k8s_job_name(&job.key.workflow, job.key.task_id, &random_suffix());
        let payload = serde_json::to_string(&AgentJob::new(job, &nonce))
            .map_err(|e| format!("cannot encode the job for the agent: {e}"))?;
        let config = &self.state.config;
        let input = JobInput {
            name: &name,
            namespace: &t.namespace,
            job_type: &job.job_type,
            workflow: &job.key.workflow,
            task_id: job.key.task_id,
            job: &job.key.job,
            image: &t.image,
            agent_image: &config.engine_kube_agent_image,
            agent_path: &config.engine_kube_agent_path,
            payload: &payload,
            timeout: job.timeout,
            ttl_secs: config.engine_kube_ttl_secs,
        };
        let secret = spec::secret(&input)?;
        let kjob = spec::job(&input)?;
        let record = KubeJobRecord {
            id: format!("{}/{}/{}", t.cluster_id, t.namespace, name),
            cluster_id: t.cluster_id.clone(),
            namespace: t.namespace.clone(),
            name: name.clone(),
            workflow: job.key.workflow.clone(),
            task_id: job.key.task_id,
            job: job.key.job.clone(),
            owner: self.state.instance_id.clone(),
            created_ms: self.state.clock.now_ms(),
        };
        records::insert(&self.state, &record)
            .await
            .map_err(|e| format!("cannot record the Kubernetes Job: {e}"))?;
        let run = RunObjects {
            cc,
            record,
            container: spec::container_name(&job.key.job),
            nonce,
        };
        if let Err(e) = create_objects(&run.cc, &t.namespace, &secret, &kjob).await {
            records::clean(&self.state, &run.record).await;
            return Err(e);
        }
        log.info(&format!(
            "Job runs on {} as Kubernetes Job {}/{name} in image {}.",
            run.cc.label, t.namespace, t.image
        ));
        Ok(run)
    }

    /// Watch the run to its end (see the module doc).
    async fn watch(&self, run: &RunObjects, job: &PreparedJob, stop: Run<'_>) -> ExecEnd {
        let log = stop.log;
        let report: Arc<Mutex<Option<Report>>> = Arc::new(Mutex::new(None));
        // Aborted when dropped: a cancel or timeout return stops following at once.
        let mut follower: Option<AbortOnDrop> = None;
        // Every read is raced against cancel and the deadline: a hanging cluster does not
        // delay either.
        let verdict = tokio::select! {
            biased;
            end = stop.stopped(job, "its Kubernetes Job is deleted") => return end,
            v = self.verdict(run, log, &mut follower, &report) => v,
        };
        // The container ended: let the rest of its log (and the report) arrive.
        if let Some(mut f) = follower {
            let _ = tokio::time::timeout(LOG_DRAIN, &mut f.0).await;
        }
        let report = report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        conclude(verdict, report)
    }
    /// Read the Job and its pods every [`POLL`] (or as soon as the log ends) until they say
    /// how the run ended; once the container started, its log is followed by `follower`,
    /// which leaves the job's report in `report`.
    async fn verdict(
        &self,
        run: &RunObjects,
        log: &JobLog,
        follower: &mut Option<AbortOnDrop>,
        report: &Arc<Mutex<Option<Report>>>,
    ) -> Verdict {
        let (ns, name) = (&run.record.namespace, &run.record.name);
        let log_ended = Arc::new(tokio::sync::Notify::new());
        let pending_limit = Duration::from_secs(self.state.config.engine_kube_pending_secs);
        let started = Instant::now();
        let mut failures = 0;
        loop {
            match observe(&run.cc, ns, name).await {
                Err(e) => {
                    failures += 1;
                    if failures >= MAX_READ_FAILURES {
                        break Verdict::Failed(format!(
                            "lost track of Kubernetes Job {ns}/{name}: {e}"
                        ));
                    }
                }
                Ok((kjob, pods)) => {
                    failures = 0;
                    if follower.is_none()
                        && let Some(pod) = status::container_started(&pods, &run.container)
                    {
                        *follower = Some(AbortOnDrop(tokio::spawn(follow(
                            run.cc.clone(),
                            ns.clone(),
                            pod,
                            run.container.clone(),
                            run.nonce.clone(),
                            log.clone(),
                            report.clone(),
                            log_ended.clone(),
                        ))));
                    }
                    match status::judge(name, kjob.as_ref(), &pods, &run.container) {
                        // Only a pod Kubernetes says cannot start (unschedulable, a config
                        // error) fails early; one still being created (a large image
                        // pulling) has the job's timeout.
                        Verdict::Pending(Some(why)) if started.elapsed() >= pending_limit => {
                            break Verdict::Failed(format!(
                                "the job's pod did not start within {}s (engine_kube_pending_secs): {why}",
                                pending_limit.as_secs(),
                            ));
                        }
                        Verdict::Pending(_) | Verdict::Running => {}
                        v => break v,
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = log_ended.notified() => {}
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The job's end from the verdict and the agent's report.
fn conclude(verdict: Verdict, report: Option<Report>) -> ExecEnd {
    match verdict {
        Verdict::Timeout(e) => ExecEnd::ended(JobStatus::Timeout, e),
        Verdict::Succeeded => match report {
            Some(r) if r.passed => ExecEnd {
                status: JobStatus::Passed,
                error: String::new(),
                outputs: r.outputs,
            },
            Some(r) => ExecEnd::ended(JobStatus::Failed, r.error),
            None => ExecEnd::ended(
                JobStatus::Failed,
                "the job agent ended without reporting a result",
            ),
        },
        Verdict::Failed(e) => match report {
            Some(r) if !r.passed && !e.contains("OOMKilled") => {
                ExecEnd::ended(JobStatus::Failed, r.error)
            }
            _ => ExecEnd::ended(JobStatus::Failed, e),
        },
        Verdict::Pending(_) | Verdict::Running => {
            ExecEnd::ended(JobStatus::Failed, "the job ended in an unknown state")
        }
    }
}

#[async_trait]
impl Executor for KubeExecutor {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn execute(&self, job: &PreparedJob, run: Run<'_>) -> ExecEnd {
        let create = self.create(job, run.log);
        let objects = tokio::select! {
            biased;
            () = run.cancel.cancelled() => return ExecEnd::ended(JobStatus::Cancelled, "workflow was canceled"),
            r = create => match r {
                Ok(objects) => objects,
                Err(e) => {
                    run.log.info(&format!("Job not started on the cluster: {e}"));
                    return ExecEnd::ended(JobStatus::Failed, e);
                }
            },
        };
        let end = self.watch(&objects, job, run).await;
        // The objects go in the background; a cancel waits (boundedly) for the Job's deletion.
        let state = self.state.clone();
        let record = objects.record.clone();
        let cleanup = tokio::spawn(async move { records::clean(&state, &record).await });
        if end.status == JobStatus::Cancelled {
            let _ = tokio::time::timeout(CANCEL_BOUND, cleanup).await;
        }
        end
    }
}

async fn create_objects(
    cc: &ClusterClient,
    ns: &str,
    secret: &Secret,
    job: &Job,
) -> Result<(), String> {
    ensure_namespace(cc, ns).await?;
    let pp = PostParams::default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(cc.client.clone(), ns);
    cc.call(
        &format!("creating Secret {ns}/{name}"),
        secrets.create(&pp, secret),
    )
    .await
    .map_err(|e| e.description)?;
    let jobs: Api<Job> = Api::namespaced(cc.client.clone(), ns);
    let created = cc
        .call(&format!("creating Job {ns}/{name}"), jobs.create(&pp, job))
        .await
        .map_err(|e| e.description)?;
    // The Secret goes with the Job (garbage collection by owner reference).
    let owner = json!({"metadata": {"ownerReferences": [{
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": name,
        "uid": created.metadata.uid.unwrap_or_default(),
    }]}});
    cc.call(
        &format!("setting the owner of Secret {ns}/{name}"),
        secrets.patch(&name, &PatchParams::default(), &Patch::Merge(&owner)),
    )
    .await
    .map_err(|e| e.description)?;
    Ok(())
}

/// Create namespace `ns` when it does not exist.
async fn ensure_namespace(cc: &ClusterClient, ns: &str) -> Result<(), String> {
    let api: Api<Namespace> = Api::all(cc.client.clone());
    let found = cc
        .call_opt(&format!("reading namespace {ns}"), api.get(ns))
        .await
        .map_err(|e| e.description)?;
    if found.is_some() {
        return Ok(());
    }
    let body: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))
        .map_err(|e| format!("namespace {ns}: {e}"))?;
    match cc
        .call(
            &format!("creating namespace {ns}"),
            api.create(&PostParams::default(), &body),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Created meanwhile by another run.
        Err(e)
            if e.kind == crate::error::ErrorKind::Conflict && e.description.contains("exists") =>
        {
            Ok(())
        }
        Err(e) => Err(e.description),
    }
}

/// The Job (`None`: gone) and its pods.
async fn observe(
    cc: &ClusterClient,
    ns: &str,
    name: &str,
) -> Result<(Option<Job>, Vec<Pod>), String> {
    let jobs: Api<Job> = Api::namespaced(cc.client.clone(), ns);
    let job = cc
        .call_opt(&format!("reading Job {ns}/{name}"), jobs.get(name))
        .await
        .map_err(|e| e.description)?;
    let pods: Api<Pod> = Api::namespaced(cc.client.clone(), ns);
    let lp = ListParams::default().labels(&spec::selector(name));
    let list = cc
        .call(
            &format!("listing the pods of Job {ns}/{name}"),
            pods.list(&lp),
        )
        .await
        .map_err(|e| e.description)?;
    Ok((job, list.items))
}

/// Follow the main container's log into `log` until the container ended; the report line is
/// taken out. A stream that breaks while the container still runs (an idle connection cut by
/// the read timeout) is reopened, skipping the lines already read; the executor aborts the
/// task when it stops watching.
#[expect(clippy::too_many_arguments, reason = "one spawned task's inputs")]
async fn follow(
    cc: ClusterClient,
    ns: String,
    pod: String,
    container: String,
    nonce: String,
    log: JobLog,
    report: Arc<Mutex<Option<Report>>>,
    done: Arc<tokio::sync::Notify>,
) {
    let api: Api<Pod> = Api::namespaced(cc.client.clone(), &ns);
    let mut seen = 0_usize;
    loop {
        let lp = LogParams {
            follow: true,
            container: Some(container.clone()),
            ..LogParams::default()
        };
        if let Ok(Ok(stream)) = tokio::time::timeout(cc.timeout, api.log_stream(&pod, &lp)).await {
            let mut lines = stream.lines();
            let mut n = 0_usize;
            while let Some(Ok(line)) = lines.next().await {
                n += 1;
                if n <= seen {
                    continue;
                }
                seen = n;
                let line = line.strip_suffix('\r').unwrap_or(&line);
                match agent::parse_report(&nonce, line) {
                    Some(r) => {
                        *report
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                    }
                    None => log.raw(line),
                }
            }
        }
        let reported = report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some();
        if reported || container_ended(&cc, &api, &pod, &container).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.notify_one();
}

/// Whether the container ended (or its pod is gone); a failed read counts as not ended.
async fn container_ended(cc: &ClusterClient, api: &Api<Pod>, pod: &str, container: &str) -> bool {
    match cc.call_opt("reading the job's pod", api.get(pod)).await {
        Ok(None) => true,
        Ok(Some(p)) => p
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .iter()
            .any(|c| {
                c.name == container && c.state.as_ref().is_some_and(|s| s.terminated.is_some())
            }),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn conclusions() {
        let passed = Report {
            passed: true,
            error: String::new(),
            outputs: BTreeMap::from([("A".to_string(), "1".to_string())]),
        };
        let end = conclude(Verdict::Succeeded, Some(passed));
        assert_eq!(end.status, JobStatus::Passed);
        assert_eq!(end.outputs["A"], "1");
        let failed = Report {
            passed: false,
            error: "script failed: exit code 3".into(),
            outputs: BTreeMap::new(),
        };
        let end = conclude(
            Verdict::Failed("the job's container exited with code 1".into()),
            Some(failed),
        );
        assert_eq!(end.error, "script failed: exit code 3");
        assert_eq!(conclude(Verdict::Succeeded, None).status, JobStatus::Failed);
        assert_eq!(
            conclude(Verdict::Timeout("t".into()), None).status,
            JobStatus::Timeout
        );
    }
}
