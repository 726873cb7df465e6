//! A TCP proxy between the server and the Kubernetes API emulator, switched by the test: it
//! passes bytes through, delays each answer of the API server, or plays an unreachable
//! cluster. The emulator itself (a shared fixture) stays as it is; the server is given
//! [`KubeProxy::kubeconfig`], the emulator's kubeconfig pointing at the proxy (TLS passes
//! through untouched; the emulator's kubeconfig skips verification of its throw-away
//! certificate).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kube_emulator::Emulator;

/// What the proxy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes pass both ways.
    Pass,
    /// The first bytes of each answer (the first read from the emulator after the server sent
    /// something) wait this long; the rest of the answer follows at once.
    Delay(Duration),
    /// Every open connection is cut and new ones are closed at once.
    Down,
}

pub struct KubeProxy {
    /// The emulator's kubeconfig with the proxy's address as the server.
    pub kubeconfig: String,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl KubeProxy {
    /// A proxy in front of `emu`, passing bytes through.
    pub async fn start(emu: &Emulator) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = emu.base.trim_start_matches("https://").to_string();
        let kubeconfig = emu
            .kubeconfig
            .replace(&emu.base, &format!("https://{addr}"));
        assert_ne!(
            kubeconfig, emu.kubeconfig,
            "the kubeconfig names {}",
            emu.base
        );
        let (mode, watching) = watch::channel(Mode::Pass);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watching.borrow() == Mode::Down {
                    continue;
                }
                tokio::spawn(forward(client, upstream.clone(), watching.clone()));
            }
        });
        Self {
            kubeconfig,
            mode,
            accept,
        }
    }

    /// Switch the proxy to `mode` (at once for open connections too).
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for KubeProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Open connections end with the switch: a last `Down` cuts them.
        self.mode.send_replace(Mode::Down);
    }
}

/// Carry one connection until either side closes it or the proxy goes down.
async fn forward(client: TcpStream, upstream: String, mut mode: watch::Receiver<Mode>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    // Set when the server sent bytes the emulator has not answered yet.
    let asked = Arc::new(AtomicBool::new(false));
    let requests = {
        let asked = asked.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match client_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                asked.store(true, Ordering::SeqCst);
                if server_tx.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            // The server is done asking: the emulator finishes its answer, then closes.
            let _ = server_tx.shutdown().await;
        }
    };
    let answers = {
        let mode = mode.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match server_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let delay = match *mode.borrow() {
                    Mode::Delay(d) => Some(d),
                    _ => None,
                };
                if let Some(d) = delay
                    && asked.swap(false, Ordering::SeqCst)
                {
                    tokio::time::sleep(d).await;
                }
                if client_tx.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let down = async {
        while mode.changed().await.is_ok() {
            if *mode.borrow() == Mode::Down {
                return;
            }
        }
    };
    tokio::select! {
        ((), ()) = async { tokio::join!(requests, answers) } => {}
        () = down => {}
    }
}
