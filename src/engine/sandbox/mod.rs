//! The job sandbox of the local executor: every command of a job runs through a launcher
//! (this same binary, `zadig-server __sandbox run …`, see [`launcher`]) that confines it.
//!
//! What a job cannot do (docs/security.md, "Job sandbox", says why each matters):
//! - read the server's environment or memory: the server is non-dumpable
//!   ([`harden_server`]), the job runs in its own PID namespace with its own `/proc`, and
//!   when the server runs as root the job runs as `engine_job_user`;
//! - read or write the data dir (database, key file, other jobs' workspaces, logs): a private
//!   mount namespace covers the data dir, the workspace root and the key file with empty
//!   tmpfs mounts and binds only the job's own directory back; Landlock limits writes to the
//!   job directory;
//! - leave processes behind: the job's first process is PID 1 of its namespace (when it ends
//!   the kernel kills every other process in it), the launcher is a child subreaper that
//!   kills whatever is left, and it kills the job when the server dies.
//!
//! At start the server probes the kernel ([`Sandbox::probe`]) and logs which protections are
//! missing; with `engine_sandbox = required` (the default) jobs then fail naming the missing
//! feature and the key, with `best-effort` they run without it.

pub mod launcher;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use serde::{Deserialize, Serialize};

use crate::config::{Config, SandboxMode};

/// Exit code of a launcher that refused to run a job (a missing protection, a broken setup).
pub const EXIT_REFUSED: i32 = 125;

/// Stderr line prefix of a protection the launcher could not apply.
pub const MISSING_PREFIX: &str = "zadig-sandbox: missing ";

/// A protection of the sandbox, by the kernel feature it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    UserNamespace,
    MountNamespace,
    PidNamespace,
    Landlock,
}

impl Feature {
    pub fn name(self) -> &'static str {
        match self {
            Self::UserNamespace => "user-namespace",
            Self::MountNamespace => "mount-namespace",
            Self::PidNamespace => "pid-namespace",
            Self::Landlock => "landlock",
        }
    }
}

/// What the launcher is told (JSON on its command line; no secret in it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The job's directory (workspace, scripts, results, home, tmp): the only writable place.
    pub job_dir: PathBuf,
    /// The command's working directory.
    pub cwd: PathBuf,
    /// Paths covered inside the sandbox.
    pub hide: Vec<PathBuf>,
    /// Other directories the job may write (`engine_sandbox_writable`).
    #[serde(default)]
    pub writable: Vec<PathBuf>,
    /// `uid:gid` the job runs as when the server runs as root.
    pub job_user: Option<(u32, u32)>,
    /// Stop when a protection is missing (`engine_sandbox = required`).
    pub required: bool,
    /// Filled in by stage 1 for stage 2.
    #[serde(default)]
    pub user_ns: bool,
    #[serde(default)]
    pub mount_ns: bool,
    #[serde(default)]
    pub pid_ns: bool,
    /// The server's own uid/gid outside the user namespace (non-root servers).
    pub outer_ids: Option<(u32, u32)>,
}

/// The sandbox settings of this server and what the kernel offers.
pub struct Sandbox {
    launcher: PathBuf,
    hide: Vec<PathBuf>,
    writable: Vec<PathBuf>,
    job_user: Option<(u32, u32)>,
    mode: SandboxMode,
    /// The start-up probe: the protections found missing (`feature: why`), or why the
    /// launcher does not work at all.
    probed: tokio::sync::OnceCell<Result<Vec<String>, String>>,
}

impl Sandbox {
    pub fn new(config: &Config) -> Self {
        let launcher = if config.engine_sandbox_launcher.as_os_str().is_empty() {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
        } else {
            config.engine_sandbox_launcher.clone()
        };
        let mut hide = vec![
            absolute(&config.data_dir),
            config.engine_workspace_root(),
            absolute(&config.secret_key_path()),
        ];
        hide.dedup();
        let root = nix::unistd::getuid().is_root();
        Self {
            launcher,
            hide,
            writable: config
                .engine_sandbox_writable
                .iter()
                .map(|p| absolute(p))
                .collect(),
            job_user: root.then_some(config.engine_job_ids()),
            mode: config.engine_sandbox,
            probed: tokio::sync::OnceCell::new(),
        }
    }

    /// The command running `argv` in the sandbox, with `job_dir` writable and `cwd` as its
    /// working directory. The caller sets env, stdio and the process group.
    pub fn command(
        &self,
        job_dir: &Path,
        cwd: &Path,
        argv: &[OsString],
    ) -> tokio::process::Command {
        self.launch(job_dir, cwd, argv, self.mode == SandboxMode::Required)
    }

    fn launch(
        &self,
        job_dir: &Path,
        cwd: &Path,
        argv: &[OsString],
        required: bool,
    ) -> tokio::process::Command {
        let spec = LaunchSpec {
            job_dir: job_dir.to_path_buf(),
            cwd: cwd.to_path_buf(),
            hide: self.hide.clone(),
            writable: self.writable.clone(),
            job_user: self.job_user,
            required,
            ..LaunchSpec::default()
        };
        let mut cmd = tokio::process::Command::new(&self.launcher);
        cmd.arg("__sandbox")
            .arg("run")
            // Plain data (paths, ids, flags): serialising it cannot fail.
            .arg(serde_json::to_string(&spec).unwrap_or_default())
            .arg("--")
            .args(argv)
            // Not `cwd`: the job may have replaced it with a link, and the launcher starts as
            // the server's user outside the sandbox. Stage 2 changes to `cwd` once confined.
            .current_dir(job_dir);
        cmd
    }

    /// Run a trivial command in the sandbox and record which protections are missing (or
    /// that the launcher does not work at all). Logged once, at start.
    pub async fn probe(&self, scratch: &Path) {
        self.probed
            .get_or_init(|| async {
                let found = self.run_probe(scratch).await;
                match &found {
                    Ok(m) if m.is_empty() => tracing::info!(
                        "job sandbox: namespaces and Landlock available; jobs run confined{}",
                        self.job_user
                            .map(|(u, g)| format!(" as uid {u}, gid {g}"))
                            .unwrap_or_default()
                    ),
                    Ok(m) => {
                        for line in m {
                            tracing::warn!(
                                "job sandbox: missing {line}; {}",
                                self.mode.consequence()
                            );
                        }
                    }
                    Err(e) => tracing::error!(
                        "job sandbox: the launcher does not work: {e}; jobs will fail"
                    ),
                }
                found
            })
            .await;
    }

    async fn run_probe(&self, scratch: &Path) -> Result<Vec<String>, String> {
        let dir = scratch.join(format!(".sandbox-probe-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        self.chown_tree(&dir);
        // Not `required`: the probe reports every missing protection, not only the first.
        let argv: Vec<OsString> = ["/bin/sh", "-c", "exit 0"].map(OsString::from).into();
        let mut cmd = self.launch(&dir, &dir, &argv, false);
        cmd.env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(std::time::Duration::from_secs(20), captured(cmd)).await;
        let _ = std::fs::remove_dir_all(&dir);
        let (status, _, stderr) = out
            .map_err(|_| "the probe did not finish within 20 s".to_string())?
            .map_err(|e| format!("cannot start {}: {e}", self.launcher.display()))?;
        let stderr = String::from_utf8_lossy(&stderr);
        if !status.success() {
            return Err(format!(
                "{} exited with {status}: {}",
                self.launcher.display(),
                stderr.trim()
            ));
        }
        Ok(stderr
            .lines()
            .filter_map(|l| l.strip_prefix(MISSING_PREFIX))
            .map(str::to_string)
            .collect())
    }

    /// Why jobs cannot run now: the launcher does not work, or a protection is missing and
    /// `engine_sandbox = required`.
    pub fn refusal(&self) -> Option<String> {
        match self.probed.get()? {
            Err(e) => Some(format!(
                "the job sandbox launcher {} does not work: {e}",
                self.launcher.display()
            )),
            Ok(missing) => {
                let first = missing.first()?;
                (self.mode == SandboxMode::Required).then(|| {
                    format!(
                        "the job sandbox cannot run here: missing {first} (engine_sandbox = required; set engine_sandbox = best-effort to run jobs without this protection)"
                    )
                })
            }
        }
    }

    /// Give the job user ownership of `dir` and everything in it (root servers), so the job
    /// can write its workspace after dropping privileges.
    pub fn chown_tree(&self, dir: &Path) {
        let Some((uid, gid)) = self.job_user else {
            return;
        };
        fn walk(p: &Path, uid: u32, gid: u32) {
            let _ = std::os::unix::fs::lchown(p, Some(uid), Some(gid));
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&e.path(), uid, gid);
                    } else {
                        let _ = std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid));
                    }
                }
            }
        }
        walk(dir, uid, gid);
    }
}

/// Run a sandboxed command (stdin, stdout and stderr piped) to its end, capturing stdout and
/// stderr. Its stdin — the launcher's watchdog pipe — stays open until then: closing it
/// would kill the command.
pub async fn captured(
    mut cmd: tokio::process::Command,
) -> std::io::Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take();
    let (Some(mut so), Some(mut se)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other("the command has no output pipes"));
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (a, b, status) = tokio::join!(
        so.read_to_end(&mut out),
        se.read_to_end(&mut err),
        child.wait()
    );
    drop(stdin);
    a?;
    b?;
    Ok((status?, out, err))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Make the server process non-dumpable: no other process of the same uid may read its
/// memory or `/proc/<pid>/environ` (both need ptrace access, which a non-dumpable process
/// grants only to holders of CAP_SYS_PTRACE).
pub fn harden_server() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("cannot make the server non-dumpable: {e}");
    }
}
