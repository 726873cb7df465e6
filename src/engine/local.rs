//! The local process executor: each job runs in its own directory under the workspace root,
//! each of its commands (tool checks, git, the script) in the job sandbox
//! ([`super::sandbox`]) as a new process group.
//!
//! The sandbox launcher holds a stdin pipe whose other end only the server holds: when the
//! server dies (even by SIGKILL) the pipe closes and the launcher kills the job. Cancel and
//! timeout kill the group (SIGKILL to `-pgid`) at once; when the job's main process ends, its
//! PID namespace (and the launcher, a child subreaper) ends every process it left, `setsid`
//! and double-forked ones included. The environment is built from scratch (only `PATH`,
//! locale and user-name variables are inherited; `HOME` and `TMPDIR` are private directories
//! of the job) so server secrets such as `ZADIG_ADMIN_TOKEN` never reach a job.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::executor::{ExecEnd, Executor, JobStatus, PreparedJob, Run, ScriptKind, Step};
use super::logs::JobLog;
use super::safe_fs;
use super::sandbox::Sandbox;

mod git;
mod tools;

use git::clone;
use tools::{check_tools, which};

/// Longest log line; longer output is split.
const MAX_LINE: usize = 64 * 1024;

/// Variables of the server's environment a job inherits.
const INHERITED_ENV: &[&str] = &[
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "SHELL",
];

/// Runs jobs as local process groups in the job sandbox.
pub struct LocalExecutor {
    root: PathBuf,
    keep: bool,
    sandbox: Arc<Sandbox>,
}

/// Where one job runs: its directory (the only place it may write) and its sandbox — none
/// for the job agent in a Kubernetes pod, where the pod is the isolation boundary.
struct Jail<'a> {
    sandbox: Option<&'a Arc<Sandbox>>,
    dir: &'a Path,
}

impl Jail<'_> {
    /// A command running `argv` (in the sandbox, if any) in `cwd`, in a process group of its
    /// own, with exactly the job's environment; stdin is the launcher's watchdog pipe.
    fn command(&self, argv: &[OsString], env: &[(OsString, OsString)], cwd: &Path) -> Command {
        let (mut cmd, stdin) = match self.sandbox {
            Some(sandbox) => (sandbox.command(self.dir, cwd, argv), Stdio::piped()),
            None => {
                let mut cmd = Command::new(argv.first().map_or_else(OsString::new, Clone::clone));
                cmd.args(argv.iter().skip(1)).current_dir(cwd);
                (cmd, Stdio::null())
            }
        };
        cmd.env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }
}

impl LocalExecutor {
    /// Workspaces go under `root`; `keep` leaves them in place after the job.
    pub fn new(root: PathBuf, keep: bool, sandbox: Arc<Sandbox>) -> Self {
        Self {
            root,
            keep,
            sandbox,
        }
    }

    /// A directory of its own for each run of a job (`<workflow>/<task>.<job>.<nonce>`), so a
    /// run never meets the leftovers — or the background removal — of an earlier one.
    fn job_dir(&self, job: &PreparedJob) -> PathBuf {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        self.root.join(path_safe(&job.key.workflow)).join(format!(
            "{}.{}.{}",
            job.key.task_id,
            path_safe(&job.key.job),
            &nonce[..12]
        ))
    }
}

/// A file-name-safe form of a name: anything but `[A-Za-z0-9._-]` → `_`, no leading dot, and
/// when something was replaced a hash of the original keeps distinct names distinct (`构建`
/// and `部署` must not share a workspace).
fn path_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') || out.is_empty() {
        out.insert(0, '_');
    }
    if out != s {
        // FNV-1a: stable across runs and platforms.
        let h = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        out.push_str(&format!("-{:08x}", h & 0xffff_ffff));
    }
    out
}

#[async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn execute(&self, job: &PreparedJob, run: Run<'_>) -> ExecEnd {
        self.sandbox.probe(&self.root).await;
        if let Some(refusal) = self.sandbox.refusal() {
            run.log.info(&format!("Job not started: {refusal}."));
            return ExecEnd::ended(JobStatus::Failed, refusal);
        }
        let dir = self.job_dir(job);
        let work = async {
            let jail = Jail {
                sandbox: Some(&self.sandbox),
                dir: &dir,
            };
            run_in(job, &jail, run.log).await
        };
        let end = tokio::select! {
            biased;
            end = run.stopped(job, "its processes were killed") => end,
            r = work => match r {
                Ok(outputs) => ExecEnd { status: JobStatus::Passed, error: String::new(), outputs },
                Err(error) => ExecEnd::ended(JobStatus::Failed, error),
            },
        };
        if !self.keep {
            // In the background: the job's end need not wait for the disk.
            tokio::task::spawn_blocking(move || remove_tree(&dir));
        }
        end
    }
}

/// Run a prepared job's steps in `dir` without the sandbox: the job agent in a Kubernetes
/// pod ([`super::kube::agent`]), where the pod is the isolation boundary. The same steps,
/// environment, masking and outputs as a local run; the caller stops it by dropping the
/// future (every command's process group is killed).
pub async fn run_in_pod(
    job: &PreparedJob,
    dir: &Path,
    log: &JobLog,
) -> Result<BTreeMap<String, String>, String> {
    let jail = Jail { sandbox: None, dir };
    run_in(job, &jail, log).await
}

/// Create the job's directories, then run its steps.
async fn run_in(
    job: &PreparedJob,
    jail: &Jail<'_>,
    log: &JobLog,
) -> Result<BTreeMap<String, String>, String> {
    let ws = prepare_dirs(jail.dir, jail.sandbox).await.map_err(|e| {
        format!(
            "cannot create the job workspace {}: {e}",
            jail.dir.display()
        )
    })?;
    run_steps(job, jail, &ws, log).await
}

/// Remove a directory tree; a failure is logged (a leftover workspace is not a job error).
fn remove_tree(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove the workspace {}: {e}", dir.display());
    }
}

/// `<dir>/workspace`, `<dir>/zadig` for scripts and results, and the job's private `home` and
/// `tmp`, owned by the job user, in one trip to the blocking pool.
async fn prepare_dirs(dir: &Path, sandbox: Option<&Arc<Sandbox>>) -> std::io::Result<PathBuf> {
    let dir = dir.to_path_buf();
    let owner = sandbox.cloned();
    tokio::task::spawn_blocking(move || {
        let ws = dir.join("workspace");
        std::fs::create_dir_all(&ws)?;
        std::fs::create_dir_all(dir.join("zadig").join("results"))?;
        std::fs::create_dir_all(dir.join("home"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        if let Some(owner) = owner {
            owner.chown_tree(&dir);
        }
        Ok(ws)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The environment of every command of the job. Variable names are checked where they are
/// defined and executed (crate::limits::env_name); one that still is not a name (a definition
/// stored before that rule) fails the job rather than being dropped unseen.
fn job_env(job: &PreparedJob, dir: &Path, ws: &Path) -> Result<Vec<(OsString, OsString)>, String> {
    let mut env: Vec<(OsString, OsString)> = INHERITED_ENV
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
        .collect();
    env.push(("HOME".into(), dir.join("home").into_os_string()));
    env.push(("TMPDIR".into(), dir.join("tmp").into_os_string()));
    for (k, v) in &job.env {
        if !crate::limits::is_env_name(k) {
            return Err(format!(
                "environment variable name {k:?} is not valid (it must match [A-Za-z_][A-Za-z0-9_]*)"
            ));
        }
        env.push((k.into(), v.replace('\0', "").into()));
    }
    env.push(("WORKSPACE".into(), ws.as_os_str().to_owned()));
    Ok(env)
}

async fn run_steps(
    job: &PreparedJob,
    jail: &Jail<'_>,
    ws: &Path,
    log: &JobLog,
) -> Result<BTreeMap<String, String>, String> {
    let env = job_env(job, jail.dir, ws)?;
    let mut outputs = BTreeMap::new();
    for step in &job.steps {
        match step {
            Step::Tools(tools) => check_tools(tools, jail, &env, ws, log).await?,
            Step::Git(repos) => {
                log.info("Start git clone.");
                for r in repos {
                    clone(r, jail, &env, ws, log).await?;
                }
            }
            Step::Script { kind, script } => {
                // The first script (the user's) decides an output; a later step (the image
                // build) only fills what is still missing.
                for (k, v) in run_script(job, *kind, script, jail, &env, ws, log).await? {
                    outputs.entry(k).or_insert(v);
                }
            }
        }
    }
    Ok(outputs)
}

fn exit_text(st: ExitStatus) -> String {
    match st.code() {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_string(),
    }
}

/// The script file: the user's script run by bash without `-e` (its status is that of its last
/// command, as in Zadig). With outputs, an EXIT trap first writes each output variable's value
/// to `<results>/<NAME>`, keeping the script's status (Zadig's appended `echo` lines would make
/// a failing script pass).
fn bash_script(body: &str, outputs: &[String], results: &Path) -> String {
    let mut text = String::new();
    if !outputs.is_empty() {
        text.push_str("__zadig_outputs() { __zadig_rc=$?; set +ex; ");
        for o in outputs {
            let path = shell_quote(&results.join(o).to_string_lossy());
            text.push_str(&format!("printf '%s' \"${{{o}-}}\" > {path} 2>/dev/null; "));
        }
        text.push_str("exit $__zadig_rc; }; trap __zadig_outputs EXIT\n");
    }
    text.push_str(body);
    text.push('\n');
    text
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

async fn run_script(
    job: &PreparedJob,
    kind: ScriptKind,
    script: &str,
    jail: &Jail<'_>,
    env: &[(OsString, OsString)],
    ws: &Path,
    log: &JobLog,
) -> Result<BTreeMap<String, String>, String> {
    log.info("Executing user script.");
    let dir = jail.dir;
    let results = dir.join(RESULTS);
    let body = script.replace("\r\n", "\n").replace('\r', "\n");
    let (rel, argv, content) = match kind {
        ScriptKind::Bash => {
            let rel = Path::new("zadig/script.sh");
            let argv = vec![OsString::from("bash"), dir.join(rel).into_os_string()];
            let text = bash_script(&body, &job.outputs, &results);
            (rel, argv, text)
        }
        ScriptKind::PowerShell => {
            let Some(pwsh) = which("pwsh", env) else {
                return Err(
                    "powershell scripts need pwsh on the PATH, which is not installed".into(),
                );
            };
            let rel = Path::new("zadig/script.ps1");
            let argv = vec![
                pwsh.into_os_string(),
                "-NoLogo".into(),
                "-NonInteractive".into(),
                "-File".into(),
                dir.join(rel).into_os_string(),
            ];
            (rel, argv, body)
        }
    };
    // An earlier step of the job may have replaced the file (or `zadig/`) with a link: the
    // script is written as a new file, never through a link.
    safe_fs::write_new(dir, rel, content.into_bytes(), 0o644)
        .await
        .map_err(|e| format!("cannot write the script file: {e}"))?;
    let started = Instant::now();
    let status = run_logged(jail.command(&argv, env, ws), log)
        .await
        .map_err(|e| format!("cannot start the script: {e}"))?;
    log.info(&format!(
        "Script Execution ended. Duration: {:.2} seconds.",
        started.elapsed().as_secs_f64()
    ));
    if !status.success() {
        return Err(format!("script failed: {}", exit_text(status)));
    }
    read_outputs(dir, &job.outputs).await
}

/// Where the EXIT trap of a script writes its outputs, in the job directory.
const RESULTS: &str = "zadig/results";

/// The values the script left in `zadig/results/<NAME>`. The job owns that directory, so the
/// files are read without following links ([`safe_fs`]); a link, a FIFO, a hard link or an
/// oversized file fails the job naming the output. A missing file (the script removed it) is
/// an output the script did not set.
async fn read_outputs(dir: &Path, names: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut outputs = BTreeMap::new();
    for o in names {
        let rel = Path::new(RESULTS).join(o);
        let max = u64::try_from(crate::limits::MAX_STRING_BYTES).unwrap_or(u64::MAX);
        match safe_fs::read(dir, &rel, max).await {
            Ok(bytes) => {
                let v = String::from_utf8_lossy(&bytes);
                outputs.insert(o.clone(), v.trim_end_matches(['\n', '\r']).to_string());
            }
            Err(safe_fs::FsError::NotFound { .. }) => {}
            Err(e) => {
                return Err(format!(
                    "output {o} cannot be read: {e}; outputs must be regular files the job writes in {RESULTS}"
                ));
            }
        }
    }
    Ok(outputs)
}

/// Kills a process group when dropped (end of the command, cancel, timeout, shutdown).
struct GroupGuard(Pid);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // ESRCH (the group is already gone) is the normal case after a clean exit.
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run a sandboxed command ([`Jail::command`]), its output going to the log line by line; the
/// group is killed when the main process exits or when this future is dropped.
async fn run_logged(mut cmd: Command, log: &JobLog) -> std::io::Result<ExitStatus> {
    let mut child = cmd.spawn()?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| std::io::Error::other("the child has no pid"))?;
    let guard = GroupGuard(Pid::from_raw(pid));
    // Held until the end: its closing (also by the server's death) makes the launcher kill
    // the job.
    let stdin = child.stdin.take();
    let out = child
        .stdout
        .take()
        .map(|r| AbortOnDrop(tokio::spawn(pump(r, log.clone()))));
    let err = child
        .stderr
        .take()
        .map(|r| AbortOnDrop(tokio::spawn(pump(r, log.clone()))));
    let status = child.wait().await?;
    drop(guard);
    drop(stdin);
    // The group is dead, so the pipes reach EOF; should a process still hold them, do not
    // wait for it.
    for reader in [out, err].into_iter().flatten() {
        let mut reader = reader;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut reader.0).await;
    }
    Ok(status)
}

/// Forward a pipe to the log, line by line (lines longer than [`MAX_LINE`] are split).
async fn pump(r: impl AsyncRead + Unpin, log: JobLog) {
    let mut reader = BufReader::with_capacity(64 * 1024, r);
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok(b) if !b.is_empty() => b,
            _ => break,
        };
        let mut lines: Vec<String> = Vec::new();
        let mut start = 0;
        for (i, &b) in buf.iter().enumerate() {
            if b == b'\n' {
                partial.extend_from_slice(&buf[start..i]);
                lines.push(to_line(&partial));
                partial.clear();
                start = i + 1;
            }
        }
        partial.extend_from_slice(&buf[start..]);
        if partial.len() >= MAX_LINE {
            lines.push(to_line(&partial));
            partial.clear();
        }
        let n = buf.len();
        reader.consume(n);
        if !lines.is_empty() {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            log.output(&refs);
        }
    }
    if !partial.is_empty() {
        log.output(&[&to_line(&partial)]);
    }
}

fn to_line(bytes: &[u8]) -> String {
    let b = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths() {
        assert_eq!(path_safe("job-1"), "job-1");
        assert!(path_safe("job-1/../x").starts_with("job-1_.._x-"));
        assert!(path_safe(".hidden").starts_with("_.hidden-"));
        assert_ne!(path_safe("构建"), path_safe("部署"));
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
