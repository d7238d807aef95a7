//! Running the real `gantry` binary from tests.

use std::path::Path;
use std::process::{Child, Command};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gantry");

/// A `gantry` command with a clean environment (nothing from the developer's shell or `.env`).
pub fn gantry(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GANTRY_LOG", "warn")
        // Every process serves /health and /metrics: never let two share a port by default.
        .env("ROCKET_PORT", free_port().to_string());
    cmd
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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
