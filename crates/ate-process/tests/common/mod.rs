//! Shared helpers for the runc/CRIU integration tests: skipping on hosts without root or
//! runc, building launches for the Python test agent, and raw HTTP over a sandbox.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ate_process::{HostConfig, Launch, LogStream, Probe, ProcessError, ProcessHost, Sandbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The snapshot files `files` name, read back into memory for a test to look inside.
fn read_back(files: Vec<(String, PathBuf)>) -> Vec<(String, bytes::Bytes)> {
    files
        .into_iter()
        .map(|(name, path)| (name, bytes::Bytes::from(std::fs::read(path).unwrap())))
        .collect()
}

/// Packs `dirs` as `pack_dirs` does (into a scratch dir, without a size limit) and reads
/// the files back.
pub fn pack(dirs: &[(String, PathBuf)]) -> Result<Vec<(String, bytes::Bytes)>, ProcessError> {
    let out = tempfile::tempdir().unwrap();
    Ok(read_back(ate_process::pack_dirs(
        dirs,
        out.path(),
        u64::MAX,
    )?))
}

/// `Sandbox::snapshot` into a scratch dir without a size limit, its files read back.
pub async fn snapshot(
    sandbox: &Sandbox,
    images: Option<&Path>,
) -> Result<Vec<(String, bytes::Bytes)>, ProcessError> {
    let out = tempfile::tempdir().unwrap();
    Ok(read_back(
        sandbox.snapshot(images, out.path(), u64::MAX).await?,
    ))
}

/// Tests share the machine's CPUs and print timings: run them one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What every sandbox test starts from: its turn (tests run one at a time), a temporary
/// dir with a state dir for the host and an empty data dir, and a log sink.
pub struct Fixture {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    _tmp: tempfile::TempDir,
    pub state: PathBuf,
    pub data: PathBuf,
    pub logs: Logs,
}

pub async fn fixture() -> Fixture {
    let serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    Fixture {
        _serial: serial,
        state: tmp.path().join("state"),
        data,
        logs: Logs::default(),
        _tmp: tmp,
    }
}

/// Waits up to `within` for `done`; whether it came true.
pub async fn settles(within: std::time::Duration, done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while !done() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    done()
}

pub const PYTHON: &str = "/usr/bin/python3";

/// The CRIU binary for Full-scope tests, if present.
pub fn criu() -> Option<PathBuf> {
    let p = std::env::var_os("ATE_CRIU")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cache/ate/criu-4.2.1/criu"));
    p.is_file().then_some(p)
}

/// A host over a fresh state dir, or `None` (with the reason printed) when this machine
/// cannot run the tests.
pub fn host(state: &Path, with_criu: bool) -> Option<ProcessHost> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: process sandbox tests need root");
        return None;
    }
    if !Path::new(PYTHON).is_file() {
        eprintln!("skipped: {PYTHON} is missing");
        return None;
    }
    let criu = if with_criu {
        match criu() {
            Some(c) => Some(c),
            None => {
                eprintln!("skipped: no CRIU (set ATE_CRIU or run scripts/criu.sh)");
                return None;
            }
        }
    } else {
        None
    };
    let config = HostConfig {
        state_dir: state.to_path_buf(),
        runc: None,
        criu,
    };
    match ProcessHost::detect(config) {
        Ok(h) => {
            if with_criu && !h.can_checkpoint() {
                eprintln!("skipped: criu check failed");
                return None;
            }
            Some(h)
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

pub fn agent_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agent.py")
}

/// Lines the program printed, as the node would receive them.
pub type Logs = Arc<Mutex<Vec<(LogStream, String)>>>;

/// A launch of the test agent in `mode`, with `/data` bound to `data`.
pub fn launch(name: &str, mode: &str, data: &Path, agent: &Path, logs: &Logs) -> Launch {
    let sink = logs.clone();
    Launch {
        name: name.into(),
        command: vec![
            PYTHON.into(),
            "-u".into(),
            "/ate/agent.py".into(),
            mode.into(),
        ],
        env: vec![("DATA_DIR".into(), "/data".into())],
        working_dir: String::new(),
        port: 8080,
        readiness: Probe {
            http_path: Some("/file".into()),
            port: 8080,
            timeout: Duration::from_secs(10),
        },
        durable_dirs: vec![("/data".into(), data.to_path_buf())],
        files: vec![("/ate/agent.py".into(), agent.to_path_buf())],
        memory_limit_bytes: 0,
        rootfs: None,
        hidden: Vec::new(),
        egress: Vec::new(),
        log: Arc::new(move |stream, line| sink.lock().unwrap().push((stream, line))),
    }
}

/// `GET path` over a fresh connection into the sandbox; returns (status, body).
pub async fn get(sandbox: &Sandbox, path: &str) -> (u16, String) {
    let mut conn = sandbox.connect().await.unwrap();
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Pids of live (non-zombie) processes whose command line contains `marker`.
pub fn live_pids_with(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
        if matches!(state, Some(s) if s != 'Z' && s != 'X') {
            out.push(pid);
        }
    }
    out
}

/// Container names under the host's runc root.
pub fn runc_list(state: &Path) -> Vec<String> {
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(state.join("runc"))
        .args(["list", "--quiet"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Entries left in a state subdirectory (netns, bundles).
pub fn leftovers(state: &Path, sub: &str) -> Vec<String> {
    std::fs::read_dir(state.join(sub))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// A one-response HTTP server on 127.0.0.2 in the host's namespace; returns its port.
pub async fn serve_text(text: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 2048];
                let _ = c.read(&mut buf).await;
                let msg = format!(
                    "HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
                    text.len()
                );
                let _ = c.write_all(msg.as_bytes()).await;
            });
        }
    });
    port
}
