use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until};

/// A `redis-server` with append-only persistence, so a killed and restarted server keeps
/// its data.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn binary() -> io::Result<PathBuf> {
    let bin = std::env::var_os("ATE_REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
    match Command::new(&bin).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(bin.into()),
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "redis-server not found: install it (scripts/test.sh does) or set ATE_REDIS_SERVER",
        )),
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

impl RedisServer {
    pub fn start() -> io::Result<Self> {
        let mut server = Self {
            child: None,
            port: free_port()?,
            dir: tempfile::tempdir()?,
        };
        server.launch()?;
        Ok(server)
    }

    fn launch(&mut self) -> io::Result<()> {
        let child = Command::new(binary()?)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                // Every write on disk before it is acknowledged, so a killed server comes
                // back with everything its clients were told was stored.
                "--appendfsync",
                "always",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        self.child = Some(child);
        let port = self.port;
        wait_until("redis-server", Duration::from_secs(10), || ping(port))
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.launch()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
