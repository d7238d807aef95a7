//! Running the real `gantry` binary from tests.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gantry");

/// A `gantry` command with a clean environment (nothing from the developer's shell or `.env`).
pub fn gantry(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GANTRY_LOG", "warn")
        // The key the in-process test apps seal secrets with, so a worker process opens them.
        .env("GANTRY_SECRETS_KEY", super::TEST_SECRETS_KEY)
        // Every process serves /health and /metrics: by default on a port the OS picks as it
        // binds, so two processes never share one and no test races for it. A test that talks
        // to the process starts it with `spawn_serving`, which knows the port.
        .env("ROCKET_PORT", "0");
    cmd
}

/// Ports this test binary has handed out, so two of its tests never get the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port nobody listens on right now and no other test of this binary was given. A
/// process outside this binary can still take it before the child binds it: spawn servers with
/// [`spawn_serving`], which retries on another port when that happens.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// How many ports [`spawn_serving`] tries before it lets the test see the failure.
const SPAWN_ATTEMPTS: usize = 5;

/// Spawns `cmd` listening on a fresh `ROCKET_PORT` and returns it once the port accepts
/// connections (or the child exited, for the test to inspect). When the child exited because
/// another process took the port first (the port is still bound after our child is gone), it
/// tries again on another port.
pub async fn spawn_serving(cmd: &mut Command) -> (Child, u16) {
    for attempt in 1.. {
        let port = free_port();
        let mut child = cmd
            .env("ROCKET_PORT", port.to_string())
            .spawn()
            .expect("spawn gantry");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err();
                if !status.success() && taken && attempt < SPAWN_ATTEMPTS {
                    break;
                }
                return (child, port);
            }
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if tokio::net::TcpStream::connect(address).await.is_ok() || Instant::now() > deadline {
                return (child, port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    unreachable!("the last attempt returns")
}

/// Waits up to `timeout` for `child` to exit; its status, or `None` when it is still running.
pub fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM (or SIGKILL with `kill = true`) to a child.
pub fn signal(child: &std::process::Child, kill: bool) {
    let signal = if kill { "-KILL" } else { "-TERM" };
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} failed");
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Spawns `cmd` (output discarded) with [`spawn_serving`] and waits until its
/// `/health/live` answers 2xx; the guard and the base URL (`http://127.0.0.1:<port>`).
pub async fn serve(cmd: &mut Command) -> (ChildGuard, String) {
    let (child, port) = spawn_serving(
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .await;
    let guard = ChildGuard(child);
    let base = format!("http://127.0.0.1:{port}");
    super::eventually(Duration::from_secs(30), || async {
        match reqwest::get(format!("{base}/health/live")).await {
            Ok(r) if r.status().is_success() => Ok(()),
            other => Err(format!("server did not become live: {other:?}")),
        }
    })
    .await;
    (guard, base)
}
