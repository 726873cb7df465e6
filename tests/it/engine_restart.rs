//! Crash recovery: the real binary is killed with SIGKILL while a job runs; the job's
//! processes die with it (watchdog) and the restarted server marks the task failed instead of
//! leaving it running forever. Both backends.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use zadig_server::config::{Config, StorageKind};
use zadig_server::workflow::task::{JobTask, TaskStore};

use crate::engine::{freestyle, marked_sleep, new_task, process_gone, sleep_pids, stage};
use crate::harness::{ADMIN_TOKEN, Kind, client, mongo_uri};

pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn serve(env: &[(String, String)]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_zadig-server"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .expect("start zadig-server");
    Server(child)
}

pub async fn poll<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn healthy(port: u16) {
    let c = client();
    poll("the server to answer", Duration::from_secs(30), || {
        let c = c.clone();
        async move {
            let r = c
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
}

/// The configuration (for opening its store from the test) and the environment of a server
/// process on `dir`, listening on `port`, with a short engine lease; `None` when the backend
/// is not available (MongoDB without `ZADIG_TEST_MONGODB_URI`).
pub fn server_env(
    kind: Kind,
    dir: &std::path::Path,
    port: u16,
) -> Option<(Config, Vec<(String, String)>)> {
    let mut config = Config::defaults();
    config.data_dir = dir.to_path_buf();
    let mut env: Vec<(String, String)> = vec![
        ("ZADIG_LISTEN".into(), format!("127.0.0.1:{port}")),
        ("ZADIG_DATA_DIR".into(), dir.to_string_lossy().into_owned()),
        ("ZADIG_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        ("ZADIG_ENGINE_LEASE_TTL_SECS".into(), "2".into()),
        ("ZADIG_ENGINE_SWEEP_INTERVAL_MS".into(), "100".into()),
        ("ZADIG_LOG".into(), "warn".into()),
    ];
    match kind {
        Kind::Embedded => env.push(("ZADIG_STORAGE".into(), "embedded".into())),
        Kind::Mongo => {
            let uri = mongo_uri()?;
            config.storage = StorageKind::Mongodb;
            config.mongodb_uri = uri.clone();
            config.mongodb_database = format!("zt_{}", uuid::Uuid::new_v4().simple());
            env.push(("ZADIG_STORAGE".into(), "mongodb".into()));
            env.push(("ZADIG_MONGODB_URI".into(), uri));
            env.push((
                "ZADIG_MONGODB_DATABASE".into(),
                config.mongodb_database.clone(),
            ));
        }
    }
    Some((config, env))
}

/// Insert waiting task 1 of `workflow` (one stage of `job`) into the store of the server that
/// runs with `config` in another process; that store's tasks.
pub async fn insert_task(config: &Config, workflow: &str, job: JobTask) -> TaskStore {
    let backend = zadig_server::store::open(config).await.unwrap();
    // Its tasks hold no credential: a store without the key writes them as they are.
    let secrets = std::sync::Arc::new(zadig_server::secrets::SecretBox::new());
    let tasks = TaskStore::new(backend.as_ref(), &secrets);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let task = new_task(
        workflow,
        1,
        now_ms,
        -1,
        vec![],
        vec![stage("s", false, vec![job])],
    );
    tasks.insert(&task).await.unwrap();
    tasks
}

async fn kill_9_mid_task_then_restart(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some((config, env)) = server_env(kind, dir.path(), port) else {
        return;
    };
    let mut server = serve(&env);
    healthy(port).await;

    // A task whose job sleeps; the server's dispatcher sweep picks it up.
    let (sleep, marker) = marked_sleep(300);
    let script = format!("{sleep} & wait");
    let tasks = insert_task(&config, "crash", freestyle("sleeper", &script)).await;
    let pid: i32 = poll("the job to start", Duration::from_secs(30), || async {
        sleep_pids(&marker).first().copied()
    })
    .await;
    assert_eq!(
        tasks.get("crash", 1).await.unwrap().unwrap().status,
        "running"
    );

    // SIGKILL: no chance to clean up. The job's processes die with the server anyway.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    poll(
        "the job's process to die with the server",
        Duration::from_secs(10),
        || async { process_gone(pid).then_some(()) },
    )
    .await;
    assert_eq!(
        tasks.get("crash", 1).await.unwrap().unwrap().status,
        "running"
    );

    // The restarted server recovers the task once the dead process' lease expired.
    let server = serve(&env);
    healthy(port).await;
    let t = poll(
        "the task to be recovered",
        Duration::from_secs(30),
        || async {
            let t = tasks.get("crash", 1).await.ok()??;
            (t.status != "running").then_some(t)
        },
    )
    .await;
    assert_eq!(t.status, "failed");
    assert_eq!(t.error, "server restarted while the task was running");
    assert!(t.end_time > 0 && t.lease_owner.is_empty());
    let job = &t.stages[0].jobs[0];
    assert_eq!(job.status, "failed");
    assert_eq!(job.error, "server restarted while the task was running");
    assert_eq!(t.stages[0].status, "failed");
    drop(server);
}

crate::kind_test!(kill_9_mid_task_then_restart);
