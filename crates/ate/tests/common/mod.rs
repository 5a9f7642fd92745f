//! The real `ate` binary, `ate up` on a free port with a temp data dir, driven by the CLI.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub const ATE: &str = env!("CARGO_BIN_EXE_ate");

/// The wasm demo templates `ate up` registers (counter, ticker, agent).
pub const WASM_DEMO_TEMPLATES: usize = 3;

/// A running `ate up`.
pub struct Up {
    child: Child,
    pub endpoint: String,
    /// `http://host:port` of the router.
    pub router: String,
    /// `http://host:port/metrics` of the admin port.
    pub metrics: String,
    /// `http://host:port` of the node service (`ate serve --roles node`).
    pub node_service: String,
    /// Its data dir: `ate up` writes the CLI config there (`cli.json`), `ate serve --roles
    /// api` its bootstrap admin token (`admin.token`).
    pub data_dir: std::path::PathBuf,
}

impl Up {
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, None)
    }

    pub fn start_with(data_dir: &Path, store: Option<&str>) -> Self {
        Self::launch(data_dir, store, &[], &[])
    }

    /// `ate up` with extra flags and environment.
    pub fn launch(
        data_dir: &Path,
        store: Option<&str>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(ATE);
        cmd.args(["up", "--api-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        for (flag, default) in [
            ("--router-listen", "127.0.0.1:0"),
            ("--admin-listen", "127.0.0.1:0"),
        ] {
            if !args.contains(&flag) {
                cmd.args([flag, default]);
            }
        }
        cmd.args(args);
        if let Some(url) = store {
            cmd.args(["--store", url]);
        }
        cmd.envs(env.iter().copied());
        Self::spawn(cmd, data_dir)
    }

    /// `ate serve` with `args` (roles and store), every address not in `args` on a free
    /// port.
    pub fn serve(data_dir: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(ATE);
        cmd.arg("serve");
        for flag in ["--listen", "--router-listen", "--admin-listen"] {
            if !args.contains(&flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        cmd.arg("--data-dir").arg(data_dir).args(args);
        Self::spawn(cmd, data_dir)
    }

    /// `ate serve --roles router` following `controls`, resuming actors with `api`'s
    /// bootstrap admin token.
    pub fn router(data_dir: &Path, controls: &str, api: &Up) -> Self {
        let token_file = api.token_file();
        Self::serve(
            data_dir,
            &[
                "--roles",
                "router",
                "--control",
                controls,
                "--token-file",
                &token_file,
            ],
        )
    }

    /// Sends a signal (`STOP`, `CONT`, `KILL`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Starts a server command and reads the addresses it prints.
    fn spawn(mut cmd: Command, data_dir: &Path) -> Self {
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .env("ATE_CONFIG", data_dir.join("cli.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ate up");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut endpoint, mut router, mut node_service) =
            (String::new(), String::new(), String::new());
        let metrics = loop {
            let line = lines
                .next()
                .expect("ate up exited before printing its addresses")
                .expect("read stdout");
            let field = |prefix: &str| {
                line.trim()
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_string)
            };
            if let Some(url) = field("control API") {
                endpoint = url;
            } else if let Some(url) = field("node service") {
                node_service = url;
            } else if let Some(url) = field("router") {
                router = url;
            } else if let Some(url) = field("metrics") {
                break url;
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Up {
            child,
            endpoint,
            router,
            metrics,
            node_service,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The admin token this process made: `ate up`'s in the CLI config, `ate serve`'s in
    /// `admin.token`.
    pub fn admin_token(&self) -> String {
        if let Ok(t) = std::fs::read_to_string(self.data_dir.join("admin.token")) {
            return t.trim().to_string();
        }
        let config = std::fs::read(self.data_dir.join("cli.json")).expect("cli config");
        let config: serde_json::Value = serde_json::from_slice(&config).expect("cli json");
        config["token"].as_str().expect("token").to_string()
    }

    /// The bootstrap admin token file of `ate serve --roles api`, for a router's
    /// `--token-file`.
    pub fn token_file(&self) -> String {
        self.data_dir.join("admin.token").display().to_string()
    }

    /// Runs a client command as the admin this process made.
    pub fn ate(&self, args: &[&str]) -> Output {
        self.ate_as(&self.admin_token(), args)
    }

    /// Runs a client command presenting `token`.
    pub fn ate_as(&self, token: &str, args: &[&str]) -> Output {
        self.client_as(token, args).output().expect("run ate")
    }

    /// A client command presenting `token` to this process, to run as the caller likes.
    pub fn client_as(&self, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(ATE);
        cmd.args(args)
            .env("ATE_ENDPOINT", &self.endpoint)
            .env("ATE_CONFIG", self.data_dir.join("no-cli.json"))
            .env("ATE_TOKEN", token);
        cmd
    }

    /// GET `path` through the router.
    pub async fn curl(&self, path: &str) -> ate_testkit::http::Answer {
        ate_testkit::http::get(&format!("{}{path}", self.router), None)
            .await
            .expect("http get")
    }

    /// One series' value on the admin port's Prometheus page, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let page = ate_testkit::http::get(&self.metrics, None)
            .await
            .expect("metrics");
        assert_eq!(page.status, 200);
        page.body
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// The STATUS column of actor `id` in `ate get actors -A` (empty if it is not listed).
    pub fn status_of(&self, id: &str) -> String {
        let out = self.ok(&["get", "actors", "-A"]);
        out.lines()
            .find(|l| l.split_whitespace().nth(3) == Some(id))
            .and_then(|l| l.split_whitespace().nth(4))
            .unwrap_or_default()
            .to_string()
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ate(args);
        assert!(
            out.status.success(),
            "ate {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    /// Whether the node of `ate up` runs the process class (root and runc on this machine).
    pub fn runs_process(&self) -> bool {
        self.ok(&["get", "nodes"]).lines().skip(1).any(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|c| c.contains("process"))
        })
    }

    /// The demo templates `ate up` registers here: the wasm ones, and the Python agent
    /// where the node runs the process class.
    pub fn demo_templates(&self) -> usize {
        WASM_DEMO_TEMPLATES + usize::from(self.runs_process())
    }

    /// Creates actor `id` of the demo counter in atespace team-a.
    pub fn create_counter(&self, id: &str) {
        self.ok(&["create", "actor", id, "-t", "demo/counter", "-a", "team-a"]);
    }

    /// Runs a command that must fail and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.ate(args);
        assert!(!out.status.success(), "ate {args:?} unexpectedly succeeded");
        assert!(out.stdout.is_empty(), "errors go to stderr only");
        String::from_utf8(out.stderr).expect("utf8")
    }

    /// Stops with SIGTERM and checks the shutdown was clean.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "ate up exited with {status}");
    }

    /// Waits for the process to exit on its own (a crash point); true if it was killed by
    /// a signal.
    pub fn wait_crashed(mut self) -> bool {
        let status = self.child.wait().expect("wait");
        !status.success()
    }

    /// Stops with SIGKILL, as a crash would.
    pub fn crash(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 100 ms until it holds; fails after 40 s naming `what`.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not reached in 40 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// One HTTP/1.0 GET through the router (no chunked body to decode); the status code and body.
pub fn http_get(router: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = router.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("router connection");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("router connection");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("router connection");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("router connection");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// Writes a manifest under `dir` (atespace team-a, pool default/wasm with `replicas`
/// workers, template demo/counter) and returns its path.
pub fn counter_manifest(dir: &Path, replicas: u32) -> String {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo/counter/counter.wat");
    let text = format!(
        "apiVersion: ate.dev/v1alpha1
kind: Atespace
metadata:
  name: team-a
---
apiVersion: ate.dev/v1alpha1
kind: WorkerPool
metadata:
  namespace: default
  name: wasm
spec:
  replicas: {replicas}
  sandboxClass: wasm
---
apiVersion: ate.dev/v1alpha1
kind: ActorTemplate
metadata:
  namespace: demo
  name: counter
spec:
  sandboxClass: wasm
  module: {}
",
        module.display()
    );
    let path = dir.join("manifest.yaml");
    std::fs::write(&path, text).expect("write the manifest");
    path.display().to_string()
}
