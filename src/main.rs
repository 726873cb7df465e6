//! The `zadig-server` command line: `serve [--role api|workers|both]`, `migrate`, `user
//! create`, `job-agent` (in a Kubernetes job's pod) — and the hidden
//! `__sandbox` stages that run a job's commands in the job sandbox.

// One exception, in `scrub_environment`: removing environment variables (and erasing their
// values) is `unsafe` because it races with other threads; it runs before any thread exists.
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use zadig_server::auth::{CreateUserError, NewUser, create_user};
use zadig_server::clock::SystemClock;
use zadig_server::config::{Config, LogFormat};
use zadig_server::store::index_specs;

#[derive(Parser)]
#[command(
    name = "zadig-server",
    version,
    about = "Zadig's OpenAPI, reimplemented in Rust"
)]
struct Cli {
    /// A TOML file overriding the built-in defaults (env vars ZADIG_* override both).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and run the background loops (or one of them: `--role`).
    Serve {
        /// `api`: the HTTP API only; `workers`: the background loops only (the listener answers
        /// only /healthz and /metrics); `both` (default). Overrides the `role` key.
        #[arg(long, value_parser = ["api", "workers", "both"])]
        role: Option<String>,
    },
    /// Create the MongoDB indexes / SQLite schema and exit.
    Migrate,
    /// Run a job in a Kubernetes pod (the job comes from the env var ZADIG_AGENT_JOB); with
    /// `--install PATH`, copy this executable to PATH (the agent's init container).
    JobAgent {
        #[arg(long, value_name = "PATH")]
        install: Option<PathBuf>,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user and print their API token (shown once).
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "system")]
        identity_type: String,
        #[arg(long)]
        admin: bool,
    },
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "__sandbox") {
        let code = zadig_server::engine::sandbox::launcher::main(&args[2..]);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX));
    }
    let cli = Cli::parse();
    if let Command::JobAgent { install } = &cli.command {
        // In a pod: no configuration, no store; the library runs the job.
        let args: Vec<std::ffi::OsString> = install
            .iter()
            .flat_map(|p| {
                [
                    std::ffi::OsString::from("--install"),
                    p.clone().into_os_string(),
                ]
            })
            .collect();
        let code = zadig_server::engine::kube::agent::main(&args);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX));
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zadig-server: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    zadig_server::fault::arm_from_env();
    scrub_environment();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zadig-server: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main(cli, config))
}

/// The configuration, with the command line's `serve --role` over the `role` key.
fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Command::Serve { role: Some(role) } = &cli.command {
        config.role = role
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid --role: {e}"))?;
        config.validate()?;
    }
    Ok(config)
}

/// Remove every `ZADIG_*` variable (the admin token among them) from this process'
/// environment once the configuration has been read, so nothing started later can inherit
/// it, and overwrite each value where it lies: `/proc/<pid>/environ` reads the environment
/// block the process was started with, not the current environment, so removing the
/// variable alone would leave the token readable there for anyone who may read that file.
fn scrub_environment() {
    let keys: Vec<std::ffi::OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.to_string_lossy().starts_with("ZADIG_"))
        .collect();
    for k in keys {
        let Ok(name) =
            std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(k.as_os_str()))
        else {
            continue;
        };
        // SAFETY: called from `main` before the runtime or any other thread is started, so
        // nothing reads or changes the environment concurrently. `getenv` returns the
        // variable's value inside its `NAME=value` string (in the initial environment block
        // for variables the process was started with), a NUL-terminated string that is ours
        // to write: the bytes are zeroed up to, not including, the terminator, and the
        // variable is then removed, so nothing reads the emptied value afterwards.
        #[expect(unsafe_code, reason = "the environment's memory, see SAFETY")]
        unsafe {
            let value = nix::libc::getenv(name.as_ptr());
            if !value.is_null() {
                std::ptr::write_bytes(value, 0, nix::libc::strlen(value));
            }
            std::env::remove_var(&k);
        }
    }
}

async fn async_main(cli: Cli, config: Config) -> std::process::ExitCode {
    init_tracing(&config);
    if let Some(w) = zadig_server::fault::warning() {
        tracing::warn!("{w}");
    }
    match run(cli.command, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zadig-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let backend = zadig_server::store::open(&config).await?;
    match command {
        Command::Serve { .. } => {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {} (listen): {e}", config.listen))?;
            let server =
                zadig_server::start(config, backend, Arc::new(SystemClock), listener).await?;
            server.run_until_signal().await;
        }
        // Handled in `main` before the configuration is read.
        Command::JobAgent { .. } => anyhow::bail!("job-agent does not run as a server command"),
        Command::Migrate => {
            backend.migrate(&index_specs()).await?;
            println!("migrations applied ({})", backend.kind());
        }
        Command::User {
            command:
                UserCommand::Create {
                    account,
                    name,
                    identity_type,
                    admin,
                },
        } => {
            backend.migrate(&index_specs()).await?;
            let users = zadig_server::store::users::UserStore::new(backend.as_ref());
            let token = zadig_server::auth::new_token();
            let new = NewUser {
                name: name.unwrap_or_else(|| account.clone()),
                account,
                identity_type,
                is_admin: admin,
            };
            let now = chrono::Utc::now().timestamp();
            let user = match create_user(&users, new, &token, now).await {
                Ok(user) => user,
                Err(CreateUserError::Duplicate {
                    account,
                    identity_type,
                }) => anyhow::bail!(
                    "a user with account {account:?} and identity type {identity_type:?} already exists"
                ),
                Err(CreateUserError::Store(e)) => return Err(e.into()),
            };
            println!(
                "uid: {}\naccount: {}\napi_token: {token}",
                user.id, user.account
            );
        }
    }
    Ok(())
}
