//! The sandbox launcher: the code that runs in the `zadig-server __sandbox …` processes that
//! stand between the server and a job's commands.
//!
//! Two stages, both fresh single-threaded executions of the server binary (namespaces can
//! only be entered by a single-threaded process, and nothing here may run inside the
//! server's own multi-threaded process):
//!
//! 1. **Stage 1** (`__sandbox run SPEC -- ARGV…`), started by the server in a process group of
//!    its own. It becomes a child subreaper, enters new user (when not root), mount and PID
//!    namespaces, starts stage 2 (which becomes PID 1 of the new PID namespace), and then
//!    waits. A thread watches stdin, a pipe whose other end only the server holds: when it
//!    closes (the server died, even by SIGKILL) the job is killed. When stage 2 ends, every
//!    process still left (double-forked or `setsid` ones included: they were reparented to
//!    this subreaper, and with a PID namespace they died with its init) is killed and reaped.
//! 2. **Stage 2** (`__sandbox init SPEC -- ARGV…`): hides the data dir, the workspace root
//!    and the key file behind empty tmpfs mounts (the job's own directory is bound back),
//!    mounts a `/proc` that shows only the job's processes, restricts writes with Landlock to
//!    the job directory (and a few device files), drops to the job user, arms the parent-death
//!    signal and executes the job's command.
//!
//! A protection that cannot be applied is reported on stderr as
//! `zadig-sandbox: missing <feature>: <why>`; with `required` set the launcher then exits with
//! [`EXIT_REFUSED`] before running anything.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, path_beneath_rules,
};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, getgid, getuid, setgroups, setresgid, setresuid};

use super::{EXIT_REFUSED, Feature, LaunchSpec, MISSING_PREFIX};

/// Entry point of `zadig-server __sandbox …`; returns the exit code.
pub fn main(args: &[OsString]) -> i32 {
    let Some((stage, spec, argv)) = parse(args) else {
        eprintln!("zadig-sandbox: usage: __sandbox run|init SPEC -- COMMAND…");
        return EXIT_REFUSED;
    };
    match stage.as_str() {
        "run" => stage1(&spec, &argv),
        "init" => stage2(&spec, &argv),
        _ => {
            eprintln!("zadig-sandbox: unknown stage {stage:?}");
            EXIT_REFUSED
        }
    }
}

fn parse(args: &[OsString]) -> Option<(String, LaunchSpec, Vec<OsString>)> {
    let stage = args.first()?.to_str()?.to_string();
    let spec: LaunchSpec = serde_json::from_str(args.get(1)?.to_str()?).ok()?;
    if args.get(2)?.to_str()? != "--" || args.len() < 4 {
        return None;
    }
    Some((stage, spec, args[3..].to_vec()))
}

/// Reports a protection that could not be applied; `true` when the launcher must stop.
fn missing(spec: &LaunchSpec, feature: Feature, why: &str) -> bool {
    eprintln!("{MISSING_PREFIX}{}: {why}", feature.name());
    let _ = std::io::stderr().flush();
    spec.required
}

fn stage1(spec: &LaunchSpec, argv: &[OsString]) -> i32 {
    // Orphans of the job (double fork, setsid) are reparented here, so they can be killed.
    if let Err(e) = prctl::set_child_subreaper(true)
        && missing(
            spec,
            Feature::PidNamespace,
            &format!("child subreaper: {e}"),
        )
    {
        return EXIT_REFUSED;
    }
    let root = getuid().is_root();
    let mut spec = spec.clone();
    spec.user_ns = false;
    spec.mount_ns = false;
    spec.pid_ns = false;
    let can_ns = if root {
        true
    } else {
        match enter_user_namespace(&mut spec) {
            Some(entered) => entered,
            None => return EXIT_REFUSED,
        }
    };
    let Some(mount_ns) = enter(
        &spec,
        can_ns,
        CloneFlags::CLONE_NEWNS,
        Feature::MountNamespace,
    ) else {
        return EXIT_REFUSED;
    };
    spec.mount_ns = mount_ns;
    // The watchdog thread must exist before the PID namespace: once it is unshared, this
    // process can no longer create threads (only children).
    let (tx, rx) = std::sync::mpsc::channel::<Pid>();
    std::thread::spawn(move || watchdog(&rx));
    let Some(pid_ns) = enter(
        &spec,
        can_ns,
        CloneFlags::CLONE_NEWPID,
        Feature::PidNamespace,
    ) else {
        return EXIT_REFUSED;
    };
    spec.pid_ns = pid_ns;
    let Some(pid) = spawn_stage2(&spec, argv) else {
        return EXIT_REFUSED;
    };
    let _ = tx.send(pid);
    let code = wait_exit(pid);
    kill_descendants();
    code
}

/// Without root, namespaces need a user namespace: we are root inside it, mapped to our own
/// uid outside, so stage 2 may mount. Whether it was entered; `None` when it is missing and
/// the launcher must stop.
fn enter_user_namespace(spec: &mut LaunchSpec) -> Option<bool> {
    let (uid, gid) = (getuid(), getgid());
    match unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| e.to_string())
        .and_then(|()| write_id_maps(&format!("0 {uid} 1"), &format!("0 {gid} 1")))
    {
        Ok(()) => {
            spec.user_ns = true;
            spec.outer_ids = Some((uid.as_raw(), gid.as_raw()));
            Some(true)
        }
        Err(e) => (!missing(spec, Feature::UserNamespace, &e)).then_some(false),
    }
}

/// Start stage 2, this same program (`/proc/self/exe` names it even if its path is hidden),
/// with the spec as entered.
fn spawn_stage2(spec: &LaunchSpec, argv: &[OsString]) -> Option<Pid> {
    let spec_json = serde_json::to_string(spec)
        .map_err(|e| eprintln!("zadig-sandbox: {e}"))
        .ok()?;
    let child = Command::new("/proc/self/exe")
        .arg("__sandbox")
        .arg("init")
        .arg(spec_json)
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("zadig-sandbox: cannot start the job: {e}"))
        .ok()?;
    i32::try_from(child.id()).ok().map(Pid::from_raw)
}

/// Wait for `pid` to end: its exit code, or 128 + the signal that killed it.
fn wait_exit(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return EXIT_REFUSED,
        }
    }
}

/// Unshare one namespace (`possible`: this process may create namespaces at all). Whether it
/// was entered; `None` when it is missing and the launcher must stop.
fn enter(spec: &LaunchSpec, possible: bool, flag: CloneFlags, feature: Feature) -> Option<bool> {
    let why = if possible {
        match unshare(flag) {
            Ok(()) => return Some(true),
            Err(e) => e.to_string(),
        }
    } else {
        "needs a user namespace or root".to_string()
    };
    (!missing(spec, feature, &why)).then_some(false)
}

/// Stdin is a pipe only the server writes to; EOF means the server is gone (or the job is
/// over): kill the job. Stage 2 is PID 1 of its namespace, so killing it kills every process
/// in there; without a PID namespace the subreaper sweep finds the rest.
fn watchdog(job: &std::sync::mpsc::Receiver<Pid>) {
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    match job.try_recv() {
        Ok(pid) => {
            let _ = kill(pid, Signal::SIGKILL);
            kill_descendants();
        }
        // Nothing started yet, or never will: stop here.
        Err(_) => std::process::exit(EXIT_REFUSED),
    }
}

/// Writes this process' uid and gid maps (after unsharing a user namespace).
fn write_id_maps(uid_map: &str, gid_map: &str) -> Result<(), String> {
    // An unprivileged process may only write gid_map after denying setgroups.
    std::fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("setgroups: {e}"))?;
    std::fs::write("/proc/self/uid_map", uid_map).map_err(|e| format!("uid_map: {e}"))?;
    std::fs::write("/proc/self/gid_map", gid_map).map_err(|e| format!("gid_map: {e}"))?;
    Ok(())
}

/// Kill and reap every remaining descendant (they are all our children: we are a subreaper).
fn kill_descendants() {
    for _ in 0..1000 {
        let kids = children();
        if kids.is_empty() {
            break;
        }
        for k in &kids {
            let _ = kill(*k, Signal::SIGKILL);
        }
        while let Ok(s) = waitpid(None, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
            if s == WaitStatus::StillAlive {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Reap whatever is left without blocking.
    while let Ok(s) = waitpid(None, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

/// The children of every thread of this process.
fn children() -> Vec<Pid> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                    .map(Pid::from_raw),
            );
        }
    }
    out
}

fn stage2(spec: &LaunchSpec, argv: &[OsString]) -> i32 {
    match prepare(spec) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("zadig-sandbox: {e}");
            return EXIT_REFUSED;
        }
    }
    let err = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(&spec.cwd)
        .exec();
    eprintln!(
        "zadig-sandbox: cannot run {}: {err}",
        argv[0].to_string_lossy()
    );
    127
}

/// Everything between entering the namespaces and running the job's command.
fn prepare(spec: &LaunchSpec) -> Result<(), String> {
    if spec.mount_ns {
        hide_paths(spec).map_err(|e| format!("cannot set up the job's file system: {e}"))?;
    }
    if spec.pid_ns {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let r = if spec.mount_ns {
            mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>)
                .map_err(|e| e.to_string())
        } else {
            Err("needs a mount namespace".to_string())
        };
        if let Err(e) = r
            && missing(spec, Feature::PidNamespace, &format!("private /proc: {e}"))
        {
            return Err("refused".into());
        }
    }
    // Who the job runs as. Root drops to the configured job user; in a user namespace a
    // nested one maps the server's own uid back, so the job has no capabilities at all.
    let drop_to_user = if let Some((uid, gid)) = spec
        .job_user
        .filter(|_| getuid().is_root() && !spec.user_ns)
    {
        Some((Uid::from_raw(uid), Gid::from_raw(gid)))
    } else {
        if let Some((uid, gid)) = spec.outer_ids {
            unshare(CloneFlags::CLONE_NEWUSER)
                .map_err(|e| format!("cannot leave the namespace's root user: {e}"))?;
            write_id_maps(&format!("{uid} 0 1"), &format!("{gid} 0 1"))?;
        }
        None
    };
    if let Err(e) = landlock(spec)
        && missing(spec, Feature::Landlock, &e)
    {
        return Err("refused".into());
    }
    if let Some((uid, gid)) = drop_to_user {
        setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
        setresgid(gid, gid, gid).map_err(|e| format!("setresgid {gid}: {e}"))?;
        setresuid(uid, uid, uid).map_err(|e| format!("setresuid {uid}: {e}"))?;
    }
    // Last: credential changes clear the parent-death signal.
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("pdeathsig: {e}"))?;
    Ok(())
}

/// Cover each hidden path with an empty tmpfs (a file with /dev/null), then bind the job's
/// own directory back at its place.
fn hide_paths(spec: &LaunchSpec) -> Result<(), String> {
    // Nothing mounted here may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make / private: {e}"))?;
    // Keep a handle on the job directory before it is covered.
    let job = std::fs::File::open(&spec.job_dir)
        .map_err(|e| format!("open {}: {e}", spec.job_dir.display()))?;
    let mut hidden: Vec<PathBuf> = spec.hide.clone();
    // A job user who cannot traverse some ancestor of its directory (a data dir under a 0700
    // home or temp dir) could not reach its workspace: cover that ancestor too. It hides
    // nothing the job user could read anyway.
    if spec.job_user.is_some()
        && let Some(a) = closed_ancestor(&spec.job_dir)
    {
        hidden.push(a);
    }
    hidden.sort_by_key(|p| p.as_os_str().len());
    let mut done: Vec<&Path> = Vec::new();
    for h in &hidden {
        if done.iter().any(|d| h.starts_with(d)) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(h) else {
            continue;
        };
        if meta.is_dir() {
            mount(
                Some("tmpfs"),
                h.as_path(),
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=0755,size=64k"),
            )
            .map_err(|e| format!("hide {}: {e}", h.display()))?;
        } else {
            mount(
                Some("/dev/null"),
                h.as_path(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("hide {}: {e}", h.display()))?;
        }
        done.push(h);
    }
    std::fs::create_dir_all(&spec.job_dir)
        .map_err(|e| format!("mount point {}: {e}", spec.job_dir.display()))?;
    let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&job));
    mount(
        Some(source.as_str()),
        spec.job_dir.as_path(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("bind {}: {e}", spec.job_dir.display()))?;
    drop(job);
    Ok(())
}

/// The outermost ancestor of `dir` that others may not traverse (no `o+x`), if any.
fn closed_ancestor(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors()
        .skip(1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(Path::to_path_buf)
}

/// Device files a job may write to.
const WRITABLE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// Landlock: the whole file system readable, writes only in the job directory; signals and
/// abstract sockets scoped to the job's own processes. Also prevents any further mount.
fn landlock(spec: &LaunchSpec) -> Result<(), String> {
    let abi = ABI::V6;
    let devices: Vec<&str> = WRITABLE_DEVICES
        .iter()
        .copied()
        .filter(|d| Path::new(d).exists())
        .collect();
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi))))
        .and_then(|r| {
            let writable =
                std::iter::once(&spec.job_dir).chain(spec.writable.iter().filter(|p| p.exists()));
            r.add_rules(path_beneath_rules(writable, AccessFs::from_all(abi)))
        })
        .and_then(|r| r.add_rules(path_beneath_rules(devices, AccessFs::from_file(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    match status.ruleset {
        RulesetStatus::NotEnforced => Err("the kernel does not enforce Landlock".into()),
        _ => Ok(()),
    }
}
