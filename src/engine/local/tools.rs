//! The tools step of a local job: each tool must be on the job's PATH; the version it
//! reports is logged.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Jail;
use crate::engine::executor::Tool;
use crate::engine::logs::JobLog;

/// Look a program up on the job's PATH.
pub(super) fn which(name: &str, env: &[(OsString, OsString)]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_exec(p))
}

/// Check that each tool of a tools step is on the job's PATH, logging the version it
/// reports.
pub(super) async fn check_tools(
    tools: &[Tool],
    jail: &Jail<'_>,
    env: &[(OsString, OsString)],
    ws: &Path,
    log: &JobLog,
) -> Result<(), String> {
    log.info("Installing tools.");
    for t in tools {
        let label = if t.version.is_empty() {
            t.name.clone()
        } else {
            format!("{} {}", t.name, t.version)
        };
        let Some(path) = which(&t.name, env) else {
            log.info(&format!(
                "Tool {label} is not installed: {} is not on the PATH.",
                t.name
            ));
            return Err(format!(
                "tool {label} is not installed: {} is not on the PATH",
                t.name
            ));
        };
        let reported = tool_version(&path, jail, env, ws).await;
        log.info(&format!(
            "Tool {label}: {} ({})",
            path.display(),
            reported.as_deref().unwrap_or("version unknown")
        ));
    }
    Ok(())
}

/// The first line a tool prints for `--version` / `version` / `-version` (run in the
/// sandbox: the tool is the job's to choose).
async fn tool_version(
    path: &Path,
    jail: &Jail<'_>,
    env: &[(OsString, OsString)],
    ws: &Path,
) -> Option<String> {
    for flag in ["--version", "version", "-version"] {
        let argv = [path.as_os_str().to_owned(), OsString::from(flag)];
        let Ok(Ok((status, stdout, stderr))) = tokio::time::timeout(
            Duration::from_secs(5),
            crate::engine::sandbox::captured(jail.command(&argv, env, ws)),
        )
        .await
        else {
            continue;
        };
        if !status.success() {
            continue;
        }
        let text = if stdout.is_empty() { stderr } else { stdout };
        if let Some(line) = String::from_utf8_lossy(&text)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
        {
            return Some(line.to_string());
        }
    }
    None
}
