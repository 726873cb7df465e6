//! The git step of a local job: clone a repository into the workspace, as the job user in
//! its sandbox, then check out its pull request and commit.

use std::ffi::OsString;
use std::path::Path;

use super::{Jail, exit_text, run_logged};
use crate::engine::executor::GitRepo;
use crate::engine::logs::JobLog;

/// Where the git commands of one clone run: the job's sandbox, its environment (with git's
/// prompts off), the workspace, and the job's log that takes their output.
struct Git<'a> {
    jail: &'a Jail<'a>,
    env: Vec<(OsString, OsString)>,
    ws: &'a Path,
    log: &'a JobLog,
}

impl Git<'_> {
    /// Run `git args` in the job's sandbox, its output logged.
    async fn run(&self, args: &[String]) -> Result<(), String> {
        self.log.output(&[&format!("git {}", args.join(" "))]);
        let argv: Vec<OsString> = std::iter::once(OsString::from("git"))
            .chain(args.iter().map(OsString::from))
            .collect();
        match run_logged(self.jail.command(&argv, &self.env, self.ws), self.log).await {
            Ok(st) if st.success() => Ok(()),
            Ok(st) => Err(exit_text(st)),
            Err(e) => Err(format!("cannot start git: {e}")),
        }
    }

    /// `git -C dir checkout --quiet what`.
    async fn checkout(&self, dir: &str, what: String) -> Result<(), String> {
        let args = [
            "-C".to_string(),
            dir.to_string(),
            "checkout".into(),
            "--quiet".into(),
            what,
        ];
        self.run(&args).await
    }
}

/// Clone `r` into its checkout path under `ws`, then check out its pull request and commit.
pub(super) async fn clone(
    r: &GitRepo,
    jail: &Jail<'_>,
    env: &[(OsString, OsString)],
    ws: &Path,
    log: &JobLog,
) -> Result<(), String> {
    let mut env = env.to_vec();
    env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
    env.push(("GIT_SSH_COMMAND".into(), "ssh -o BatchMode=yes".into()));
    let git = Git { jail, env, ws, log };
    // git creates the leading directories itself, as the job user.
    let target = ws.join(&r.checkout_path);
    let fail = |what: String| {
        format!(
            "git clone of repo {} ({}) failed: {what}",
            r.name,
            log.mask(&r.url)
        )
    };
    git.run(&clone_args(r, &target)).await.map_err(fail)?;
    let dir = target.to_string_lossy().into_owned();
    if r.pr > 0 {
        checkout_pr(r, &dir, &git).await.map_err(fail)?;
    }
    if !r.commit_id.is_empty() {
        git.checkout(&dir, r.commit_id.clone())
            .await
            .map_err(|e| fail(format!("commit {}: {e}", r.commit_id)))?;
    }
    Ok(())
}

/// `git clone` of `r` into `target`: its branch or tag, shallow unless a commit or pull
/// request is to be checked out or the repository is local.
fn clone_args(r: &GitRepo, target: &Path) -> Vec<String> {
    let local = r.url.starts_with('/') || r.url.starts_with("file://");
    let mut args: Vec<String> = vec!["clone".into()];
    if r.submodules {
        args.push("--recurse-submodules".into());
    }
    let exact = !r.commit_id.is_empty() || r.pr > 0;
    let reference = if r.tag.is_empty() { &r.branch } else { &r.tag };
    if !reference.is_empty() {
        args.extend(["--branch".into(), reference.clone()]);
    }
    if !exact && !local {
        args.extend(["--depth".into(), "1".into()]);
    }
    args.push(r.url.clone());
    args.push(target.to_string_lossy().into_owned());
    args
}

/// Fetch pull request `r.pr` into the clone at `dir` (GitHub's `pull/N/head`, else GitLab's
/// `merge-requests/N/head`) and check it out.
async fn checkout_pr(r: &GitRepo, dir: &str, git: &Git<'_>) -> Result<(), String> {
    let mut fetched = false;
    for refspec in [
        format!("pull/{}/head", r.pr),
        format!("merge-requests/{}/head", r.pr),
    ] {
        let fetch = [
            "-C".to_string(),
            dir.to_string(),
            "fetch".into(),
            "--quiet".into(),
            "origin".into(),
            format!("+refs/{refspec}:refs/remotes/origin/pr/{}", r.pr),
        ];
        if git.run(&fetch).await.is_ok() {
            fetched = true;
            break;
        }
    }
    if !fetched {
        return Err(format!("pull request {} not found", r.pr));
    }
    git.checkout(dir, format!("origin/pr/{}", r.pr)).await
}
