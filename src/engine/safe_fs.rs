//! File access by the server inside a directory a job may write (its job directory: the
//! workspace, `zadig/` with the step scripts and the output files, `home`, `tmp`).
//!
//! Why: the server runs outside the job sandbox, often as root, while the job owns everything
//! below its directory and may replace any file or directory there with a symbolic link (or a
//! hard link, a FIFO…) between two of its commands. A plain `read_to_string(path)` or
//! `write(path)` by the server follows such a link: a job linked its output file to
//! `/proc/self/environ` and the server read its own environment (the admin token) into the
//! job's outputs, and a step replaced the next step's script file with a link so that the
//! server wrote the script, as root, wherever the link pointed (audit F1, F2).
//!
//! So every path below a job directory is resolved here, from a descriptor of that directory
//! (which the server created and the job cannot rename, its parent being out of the job's
//! reach), without following any symbolic link: `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS` where the kernel has it (Linux ≥ 5.6), else one component at a time
//! with `openat(O_NOFOLLOW | O_DIRECTORY)`. On top of that:
//! - [`JobDir::read`] opens the file with `O_NOFOLLOW | O_NONBLOCK` (a FIFO does not block the
//!   server) and reads it only if it is a regular file with a single link (a hard link to a file
//!   the job could not read itself is refused) of at most the given size;
//! - [`JobDir::write_new`] unlinks the name, then creates a new file with `O_CREAT | O_EXCL |
//!   O_NOFOLLOW`: a link planted in between makes the creation fail, never redirects it.
//!
//! Every refusal names the path, so the job fails saying which file was wrong.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Why a file below a job directory was refused or could not be used. `path` is relative to
/// the job directory.
#[derive(Debug)]
pub enum FsError {
    /// The file does not exist.
    NotFound { path: PathBuf },
    /// `path` (the file itself or a directory on the way to it) is a symbolic link.
    Symlink { path: PathBuf },
    /// A directory on the way is something else.
    NotDirectory { path: PathBuf },
    /// The file is not a regular file (`what` it is instead).
    NotRegular { path: PathBuf, what: &'static str },
    /// The file has other names (a hard link).
    HardLinked {
        path: PathBuf,
        links: nix::libc::nlink_t,
    },
    /// The file is larger than the caller accepts.
    TooLarge { path: PathBuf, max: u64 },
    /// The relative path is empty, absolute or climbs out (`..`).
    BadPath { path: PathBuf },
    /// Any other failure of the system call.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { path } => write!(f, "{} does not exist", path.display()),
            Self::Symlink { path } => write!(f, "{} is a symbolic link", path.display()),
            Self::NotDirectory { path } => write!(f, "{} is not a directory", path.display()),
            Self::NotRegular { path, what } => {
                write!(f, "{} is {what}, not a regular file", path.display())
            }
            Self::HardLinked { path, links } => {
                write!(f, "{} has {links} hard links", path.display())
            }
            Self::TooLarge { path, max } => {
                write!(f, "{} is larger than {max} bytes", path.display())
            }
            Self::BadPath { path } => write!(
                f,
                "{} is not a path inside the job directory",
                path.display()
            ),
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for FsError {}

impl FsError {
    fn io(path: &Path, e: Errno) -> Self {
        match e {
            Errno::ENOENT => Self::NotFound {
                path: path.to_path_buf(),
            },
            e => Self::Io {
                path: path.to_path_buf(),
                error: e.into(),
            },
        }
    }
}

/// A job directory, held open: every path below it is resolved from this descriptor without
/// following symbolic links. The calls block (run them on the blocking pool).
pub struct JobDir {
    fd: OwnedFd,
    /// Try `openat2` first (else resolve one component at a time; tests force that).
    openat2: bool,
}

impl JobDir {
    /// Open the job directory `path`, which the server created (its own final component is
    /// not followed either).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { fd, openat2: true })
    }

    /// The contents of the regular file `rel`, at most `max` bytes (larger: refused).
    pub fn read(&self, rel: &Path, max: u64) -> Result<Vec<u8>, FsError> {
        let (parent, name) = self.parent_of(rel)?;
        let fd = openat(
            &parent,
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| refused_leaf(&parent, name, rel, e))?;
        let st = fstat(&fd).map_err(|e| FsError::io(rel, e))?;
        check_regular(&st, rel)?;
        if u64::try_from(st.st_size).unwrap_or(u64::MAX) > max {
            return Err(FsError::TooLarge {
                path: rel.to_path_buf(),
                max,
            });
        }
        let mut out = Vec::new();
        File::from(fd)
            .take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|error| FsError::Io {
                path: rel.to_path_buf(),
                error,
            })?;
        if u64::try_from(out.len()).unwrap_or(u64::MAX) > max {
            return Err(FsError::TooLarge {
                path: rel.to_path_buf(),
                max,
            });
        }
        Ok(out)
    }

    /// Replace whatever is at `rel` (a file, a link: never followed) with a new regular file
    /// of mode `mode` holding `content`. A directory at `rel` is an error.
    pub fn write_new(&self, rel: &Path, content: &[u8], mode: u32) -> Result<(), FsError> {
        let (parent, name) = self.parent_of(rel)?;
        match unlinkat(&parent, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(Errno::EISDIR) => {
                return Err(FsError::NotRegular {
                    path: rel.to_path_buf(),
                    what: "a directory",
                });
            }
            Err(e) => return Err(FsError::io(rel, e)),
        }
        let fd = openat(
            &parent,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| match e {
            // Something was put there between the unlink and the creation.
            Errno::EEXIST => FsError::Io {
                path: rel.to_path_buf(),
                error: std::io::Error::other("was re-created while being replaced"),
            },
            e => FsError::io(rel, e),
        })?;
        // The umask must not take away what the job needs (its user reads the script).
        fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|e| FsError::io(rel, e))?;
        let mut file = File::from(fd);
        file.write_all(content)
            .and_then(|()| file.flush())
            .map_err(|error| FsError::Io {
                path: rel.to_path_buf(),
                error,
            })
    }

    /// The directory holding `rel` (opened without following a link anywhere) and `rel`'s
    /// last component.
    fn parent_of<'r>(&self, rel: &'r Path) -> Result<(OwnedFd, &'r std::ffi::OsStr), FsError> {
        let bad = || FsError::BadPath {
            path: rel.to_path_buf(),
        };
        let mut names = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => names.push(n),
                Component::CurDir => {}
                _ => return Err(bad()),
            }
        }
        let (name, dirs) = names.split_last().ok_or_else(bad)?;
        let dir_path: PathBuf = dirs.iter().collect();
        let parent = if dirs.is_empty() {
            self.fd.try_clone().map_err(|error| FsError::Io {
                path: PathBuf::from("."),
                error,
            })?
        } else {
            self.open_dir(&dir_path, dirs)?
        };
        Ok((parent, name))
    }

    /// Open the directory `path` (components `dirs`) below the job directory.
    fn open_dir(&self, path: &Path, dirs: &[&std::ffi::OsStr]) -> Result<OwnedFd, FsError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if self.openat2 {
            let how = OpenHow::new().flags(flags).resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
            match openat2(&self.fd, path, how) {
                Ok(fd) => return Ok(fd),
                // No openat2 (old kernel, a seccomp filter): resolve one step at a time.
                Err(Errno::ENOSYS | Errno::EPERM) => {}
                // A link or not a directory somewhere: the walk finds which, and says so.
                // (EAGAIN: a rename raced the lookup.)
                Err(Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV | Errno::EAGAIN) => {}
                Err(e) => return Err(FsError::io(path, e)),
            }
        }
        let mut dir = self.fd.try_clone().map_err(|error| FsError::Io {
            path: PathBuf::from("."),
            error,
        })?;
        let mut so_far = PathBuf::new();
        for name in dirs {
            so_far.push(name);
            dir = openat(&dir, *name, flags, Mode::empty())
                .map_err(|e| refused_dir(&dir, name, &so_far, e))?;
        }
        Ok(dir)
    }
}

/// The error for a directory `name` (at `path`) under `parent` that did not open with
/// `O_NOFOLLOW | O_DIRECTORY`.
fn refused_dir(parent: &OwnedFd, name: &std::ffi::OsStr, path: &Path, e: Errno) -> FsError {
    match (e, lstat_at(parent, name)) {
        (_, Some(st)) if kind(&st) == SFlag::S_IFLNK => FsError::Symlink {
            path: path.to_path_buf(),
        },
        (Errno::ENOTDIR | Errno::ELOOP, _) => FsError::NotDirectory {
            path: path.to_path_buf(),
        },
        (e, _) => FsError::io(path, e),
    }
}

/// The error for a file `name` (at `path`) under `parent` that did not open with
/// `O_NOFOLLOW`: `ELOOP` means it is a link.
fn refused_leaf(parent: &OwnedFd, name: &std::ffi::OsStr, path: &Path, e: Errno) -> FsError {
    match (e, lstat_at(parent, name)) {
        (Errno::ELOOP, _) => FsError::Symlink {
            path: path.to_path_buf(),
        },
        (_, Some(st)) if kind(&st) == SFlag::S_IFLNK => FsError::Symlink {
            path: path.to_path_buf(),
        },
        (e, _) => FsError::io(path, e),
    }
}

fn lstat_at(parent: &impl AsFd, name: &std::ffi::OsStr) -> Option<FileStat> {
    fstatat(parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// A regular file with one name, or the refusal naming what it is.
fn check_regular(st: &FileStat, path: &Path) -> Result<(), FsError> {
    let what = match kind(st) {
        k if k == SFlag::S_IFREG => {
            let links = st.st_nlink;
            return if links == 1 {
                Ok(())
            } else {
                Err(FsError::HardLinked {
                    path: path.to_path_buf(),
                    links,
                })
            };
        }
        k if k == SFlag::S_IFDIR => "a directory",
        k if k == SFlag::S_IFIFO => "a FIFO",
        k if k == SFlag::S_IFSOCK => "a socket",
        k if k == SFlag::S_IFCHR || k == SFlag::S_IFBLK => "a device",
        k if k == SFlag::S_IFLNK => {
            return Err(FsError::Symlink {
                path: path.to_path_buf(),
            });
        }
        _ => "not a regular file",
    };
    Err(FsError::NotRegular {
        path: path.to_path_buf(),
        what,
    })
}

/// [`JobDir::read`] on the blocking pool.
pub async fn read(dir: &Path, rel: &Path, max: u64) -> Result<Vec<u8>, FsError> {
    let rel = rel.to_path_buf();
    in_dir(dir, move |d| d.read(&rel, max)).await
}

/// [`JobDir::write_new`] on the blocking pool.
pub async fn write_new(dir: &Path, rel: &Path, content: Vec<u8>, mode: u32) -> Result<(), FsError> {
    let rel = rel.to_path_buf();
    in_dir(dir, move |d| d.write_new(&rel, &content, mode)).await
}

/// Open job directory `dir` and run `f` on it, on the blocking pool.
async fn in_dir<T: Send + 'static>(
    dir: &Path,
    f: impl FnOnce(JobDir) -> Result<T, FsError> + Send + 'static,
) -> Result<T, FsError> {
    let dir = dir.to_path_buf();
    blocking(move || {
        let d = JobDir::open(&dir).map_err(|error| FsError::Io {
            path: PathBuf::from("."),
            error,
        })?;
        f(d)
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, FsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FsError::Io {
            path: PathBuf::from("."),
            error: std::io::Error::other(e),
        })?
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    /// A job directory with `zadig/results/OUT` ("value") and a secret file beside it.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let job = tmp.path().join("job");
        std::fs::create_dir_all(job.join("zadig/results")).expect("mkdir");
        std::fs::write(job.join("zadig/results/OUT"), "value").expect("write");
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, "root-only-secret").expect("write secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        (tmp, job, secret)
    }

    fn both(job: &Path) -> [JobDir; 2] {
        [true, false].map(|openat2| JobDir {
            openat2,
            ..JobDir::open(job).expect("open")
        })
    }

    const OUT: &str = "zadig/results/OUT";

    #[test]
    fn reads_a_regular_file() {
        let (_tmp, job, _) = setup();
        for d in both(&job) {
            assert_eq!(d.read(Path::new(OUT), 100).expect("read"), b"value");
            assert!(matches!(
                d.read(Path::new("zadig/results/NONE"), 100),
                Err(FsError::NotFound { .. })
            ));
            assert!(matches!(
                d.read(Path::new(OUT), 4),
                Err(FsError::TooLarge { max: 4, .. })
            ));
        }
    }

    #[test]
    fn a_linked_file_is_refused() {
        let (_tmp, job, secret) = setup();
        std::fs::remove_file(job.join(OUT)).expect("rm");
        symlink(&secret, job.join(OUT)).expect("ln");
        symlink("/proc/self/environ", job.join("zadig/results/ENV")).expect("ln");
        for d in both(&job) {
            let e = d.read(Path::new(OUT), 1 << 20).expect_err("refused");
            assert!(matches!(e, FsError::Symlink { .. }), "{e:?}");
            assert_eq!(e.to_string(), "zadig/results/OUT is a symbolic link");
            let e = d
                .read(Path::new("zadig/results/ENV"), 1 << 20)
                .expect_err("refused");
            assert!(matches!(e, FsError::Symlink { .. }), "{e:?}");
        }
    }

    #[test]
    fn a_linked_directory_is_refused() {
        let (tmp, job, secret) = setup();
        // `results` → a directory holding a file named OUT that is not the job's.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::copy(&secret, outside.join("OUT")).expect("cp");
        std::fs::remove_dir_all(job.join("zadig/results")).expect("rm");
        symlink(&outside, job.join("zadig/results")).expect("ln");
        for d in both(&job) {
            let e = d.read(Path::new(OUT), 1 << 20).expect_err("refused");
            assert_eq!(e.to_string(), "zadig/results is a symbolic link");
            let e = d
                .write_new(Path::new(OUT), b"x", 0o644)
                .expect_err("refused");
            assert_eq!(e.to_string(), "zadig/results is a symbolic link");
        }
        assert_eq!(
            std::fs::read_to_string(outside.join("OUT")).expect("read"),
            "root-only-secret"
        );
        // A file where a directory belongs.
        std::fs::remove_file(job.join("zadig/results")).expect("rm");
        std::fs::write(job.join("zadig/results"), "").expect("write");
        for d in both(&job) {
            let e = d.read(Path::new(OUT), 1 << 20).expect_err("refused");
            assert!(matches!(e, FsError::NotDirectory { .. }), "{e:?}");
        }
    }

    #[test]
    fn other_kinds_of_file_are_refused() {
        let (_tmp, job, secret) = setup();
        let results = job.join("zadig/results");
        nix::unistd::mkfifo(&results.join("FIFO"), Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
        std::fs::create_dir(results.join("DIR")).expect("mkdir");
        // A hard link: only if this file system lets us make one to a file of another
        // directory (it does for the owner).
        let hard = std::fs::hard_link(&secret, results.join("HARD")).is_ok();
        for d in both(&job) {
            let e = d.read(Path::new("zadig/results/FIFO"), 100);
            assert!(
                matches!(e, Err(FsError::NotRegular { what: "a FIFO", .. })),
                "{e:?}"
            );
            let e = d.read(Path::new("zadig/results/DIR"), 100);
            assert!(
                matches!(
                    e,
                    Err(FsError::NotRegular {
                        what: "a directory",
                        ..
                    })
                ),
                "{e:?}"
            );
            if hard {
                let e = d.read(Path::new("zadig/results/HARD"), 100);
                assert!(
                    matches!(e, Err(FsError::HardLinked { links: 2, .. })),
                    "{e:?}"
                );
            }
        }
    }

    #[test]
    fn paths_stay_below_the_directory() {
        let (_tmp, job, _) = setup();
        for d in both(&job) {
            for p in ["", "/etc/passwd", "../secret", "zadig/../../secret", "."] {
                let e = d.read(Path::new(p), 100);
                assert!(matches!(e, Err(FsError::BadPath { .. })), "{p}: {e:?}");
            }
        }
    }

    #[test]
    fn write_new_replaces_a_link_without_following_it() {
        let (tmp, job, secret) = setup();
        let script = job.join("zadig/script.sh");
        symlink(&secret, &script).expect("ln");
        let absent = tmp.path().join("absent");
        let other = job.join("zadig/other.sh");
        symlink(&absent, &other).expect("ln");
        for d in both(&job) {
            d.write_new(Path::new("zadig/script.sh"), b"echo hi\n", 0o644)
                .expect("write");
            d.write_new(Path::new("zadig/other.sh"), b"echo hi\n", 0o644)
                .expect("write");
            let meta = std::fs::symlink_metadata(&script).expect("stat");
            assert!(meta.is_file());
            assert_eq!(meta.permissions().mode() & 0o777, 0o644);
            assert_eq!(std::fs::read(&script).expect("read"), b"echo hi\n");
        }
        assert_eq!(
            std::fs::read_to_string(&secret).expect("read"),
            "root-only-secret"
        );
        assert!(!absent.exists());
        // A directory in the way is an error, and stays.
        std::fs::create_dir(job.join("zadig/dir.sh")).expect("mkdir");
        let e = both(&job)[0]
            .write_new(Path::new("zadig/dir.sh"), b"x", 0o644)
            .expect_err("refused");
        assert!(matches!(e, FsError::NotRegular { .. }), "{e:?}");
        assert!(job.join("zadig/dir.sh").is_dir());
    }
}
