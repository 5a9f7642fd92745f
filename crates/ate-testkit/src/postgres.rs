use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{free_port, run, wait_until};

/// A PostgreSQL cluster made with `initdb` and run with `pg_ctl` (trust authentication on
/// loopback, user `ate`, database `postgres`).
///
/// PostgreSQL refuses to run as root; when the tests run as root the server runs as the
/// `postgres` user (or `ATE_PG_USER`).
#[derive(Debug)]
pub struct PostgresServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

fn bin_dir() -> io::Result<PathBuf> {
    if let Some(d) = std::env::var_os("ATE_PG_BIN") {
        return Ok(d.into());
    }
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if d.join("initdb").exists() {
            return Ok(d);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "PostgreSQL binaries (initdb, pg_ctl) not found: install postgresql \
             (scripts/test.sh does) or set ATE_PG_BIN",
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run_user() -> Option<String> {
    is_root().then(|| std::env::var("ATE_PG_USER").unwrap_or_else(|_| "postgres".into()))
}

/// A command run as the server's user.
fn command(bin: &Path, tool: &str) -> Command {
    match run_user() {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", &user, "--"]).arg(bin.join(tool));
            c
        }
        None => Command::new(bin.join(tool)),
    }
}

impl PostgresServer {
    pub fn start() -> io::Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir()?;
        if let Some(user) = run_user() {
            run(Command::new("chown").args(["-R", &user]).arg(dir.path()))?;
        }
        let data = dir.path().join("data");
        run(command(&bin, "initdb").arg("-D").arg(&data).args([
            "-U",
            "ate",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ]))?;
        let mut server = Self {
            bin,
            dir,
            port: free_port()?,
            running: false,
        };
        server.launch()?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn launch(&mut self) -> io::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        run(command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &opts, "-w", "-t", "30", "start"]))?;
        self.running = true;
        let port = self.port;
        wait_until("postgres", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    fn stop_with(&mut self, mode: &str) -> io::Result<()> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        run(command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "stop"]))
    }

    /// `postgres://ate@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://ate@127.0.0.1:{}/postgres", self.port)
    }

    /// A URL for another database on this server.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://ate@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> io::Result<String> {
        run(command(&self.bin, "createdb").args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "ate",
            name,
        ]))?;
        Ok(self.url_for(name))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server abruptly (`immediate` mode), as a crash would.
    pub fn kill(&mut self) -> io::Result<()> {
        self.stop_with("immediate")
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop_with("immediate")?;
        self.launch()
    }

    /// Starts the server after `kill`.
    pub fn start_again(&mut self) -> io::Result<()> {
        self.launch()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.stop_with("immediate");
    }
}
