//! Real servers for tests. Each server runs on a free loopback port with its data in a
//! temporary directory, and is stopped and removed when dropped. Tests that need one call
//! `RedisServer::start()` or `PostgresServer::start()`; `scripts/test.sh` installs the
//! binaries on a fresh machine. [`http`] is a real HTTP client for router tests, and
//! [`files_under`] lists what a test left on disk.

pub mod http;
mod postgres;
mod redis;

use std::io;
use std::net::TcpListener;
use std::time::{Duration, Instant};

pub use postgres::PostgresServer;
pub use redis::RedisServer;

/// Every file under `dir`, at any depth (none if `dir` does not exist): for tests that
/// check what was, or was not, left on disk.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A port nobody listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `ready` until it returns true or `timeout` passes.
pub(crate) fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> io::Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} not ready after {timeout:?}"),
    ))
}

/// Runs a command to completion, failing with its output when it fails.
pub(crate) fn run(cmd: &mut std::process::Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}
