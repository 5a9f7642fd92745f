//! The OCI bundle of one container: `config.json` written by hand (a few dozen fields,
//! not worth an OCI crate) and, for the host view, a root directory of read-only bind
//! mounts of the host's top-level directories.
//!
//! Every host path is a `bind` mount, which runc declares to CRIU as an external mount
//! keyed by its destination: a checkpoint therefore restores with the durable dirs,
//! files and host directories at other host paths, as long as the destinations match.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{Launch, ProcessError};

/// Top-level host entries the host view does not show; the container gets its own
/// /proc, /dev, /sys and /tmp instead.
const HIDDEN_TOP_LEVEL: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "run",
    "tmp",
    "boot",
    "lost+found",
    "mnt",
    "media",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The proxy every container reaches the outside through (see `proxy`).
pub(crate) const PROXY_PORT: u16 = 3128;

/// Writes `<dir>/config.json` (and the host view root under `<dir>/root` when the launch
/// has no rootfs) for `launch`, joining the namespace pinned at `netns`.
pub(crate) fn write(
    dir: &Path,
    launch: &Launch,
    netns: &Path,
    cgroup: &str,
) -> Result<(), ProcessError> {
    std::fs::create_dir_all(dir).map_err(|e| ProcessError::io("creating bundle", dir, e))?;
    let mut mounts = Vec::new();
    let root = match &launch.rootfs {
        Some(r) => r.clone(),
        None => {
            let root = dir.join("root");
            host_view(&root, &mut mounts)?;
            root
        }
    };
    mounts.extend(system_mounts());
    for (inside, host) in &launch.durable_dirs {
        mounts.push(bind(inside, host, false));
    }
    for (inside, host) in &launch.files {
        mounts.push(bind(inside, host, true));
    }
    let config = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": launch.command,
            "env": env(launch),
            "cwd": if launch.working_dir.is_empty() { "/" } else { launch.working_dir.as_str() },
            "capabilities": {
                "bounding": CAPS, "effective": CAPS, "permitted": CAPS, "ambient": CAPS,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
            "noNewPrivileges": true,
        },
        "root": {"path": root, "readonly": true},
        "hostname": "ate",
        // runc hands this file to CRIU for checkpoint and restore (see CRIU_CONF).
        "annotations": {"org.criu.config": dir.join("criu.conf")},
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroup,
            "resources": resources(launch.memory_limit_bytes),
            "namespaces": [
                {"type": "pid"},
                {"type": "network", "path": netns},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "maskedPaths": masked(launch),
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    });
    let conf = dir.join("criu.conf");
    std::fs::write(&conf, CRIU_CONF).map_err(|e| ProcessError::io("writing", &conf, e))?;
    let path = dir.join("config.json");
    let text = serde_json::to_vec_pretty(&config)
        .map_err(|e| ProcessError::io("encoding", &path, std::io::Error::other(e)))?;
    std::fs::write(&path, text).map_err(|e| ProcessError::io("writing", &path, e))
}

/// CRIU options runc 1.1 has no flag for. `network-lock skip`: CRIU's default network
/// lock runs `iptables-restore`, which hosts often lack; the lock only protects
/// established TCP connections during a dump, and the container has none (the node
/// and the egress proxy close every connection after one request).
const CRIU_CONF: &str = "network-lock skip\n";

/// The capability set of `runc spec`: enough to bind low ports and signal its own
/// processes, nothing that reaches the host.
const CAPS: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

fn env(launch: &Launch) -> Vec<String> {
    let proxy = format!("http://127.0.0.1:{PROXY_PORT}");
    let mut env: Vec<String> = launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let has = |k: &str| launch.env.iter().any(|(key, _)| key == k);
    if !has("PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    env.push(format!("PORT={}", launch.port));
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.push(format!("{k}={proxy}"));
    }
    env.push("NO_PROXY=localhost,127.0.0.1".into());
    env.push("no_proxy=localhost,127.0.0.1".into());
    env
}

fn resources(memory_limit: u64) -> Value {
    let mut r = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if memory_limit > 0 {
        r["memory"] = json!({"limit": memory_limit});
    }
    r
}

fn bind(inside: &str, host: &Path, readonly: bool) -> Value {
    let mut options = vec!["bind", "nosuid", "nodev"];
    if readonly {
        options.push("ro");
    }
    json!({"destination": inside, "type": "bind", "source": host, "options": options})
}

/// The container's own kernel filesystems, as `runc spec` sets them up, plus a private
/// tmpfs at /tmp (CRIU keeps tmpfs content in a Full snapshot).
fn system_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", "size=262144k"]}),
    ]
}

/// Builds the host view root: an empty directory with a read-only (non-recursive) bind
/// of every top-level host directory except the hidden ones, and the top-level symlinks
/// (`/bin -> usr/bin`) recreated as symlinks. Non-recursive, so mounts below the host
/// directories (other sandboxes' namespace files, for instance) stay invisible.
fn host_view(root: &Path, mounts: &mut Vec<Value>) -> Result<(), ProcessError> {
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(|e| ProcessError::io("clearing", root, e))?;
    }
    std::fs::create_dir_all(root).map_err(|e| ProcessError::io("creating", root, e))?;
    let entries = std::fs::read_dir("/").map_err(|e| ProcessError::io("listing", "/", e))?;
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !HIDDEN_TOP_LEVEL.contains(&name.as_str()) {
            names.push((name, entry.path()));
        }
    }
    names.sort();
    for (name, host) in names {
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&host)
                .map_err(|e| ProcessError::io("reading link", &host, e))?;
            let link = root.join(&name);
            std::os::unix::fs::symlink(&target, &link)
                .map_err(|e| ProcessError::io("creating link", &link, e))?;
        } else if meta.is_dir() {
            mounts.push(json!({
                "destination": format!("/{name}"),
                "type": "bind",
                "source": host,
                "options": ["bind", "ro", "nosuid", "nodev"],
            }));
        }
    }
    Ok(())
}

/// The paths runc masks: the usual kernel files, and with the host view the host
/// directories the launch hides (a path the view does not show is skipped by runc).
fn masked(launch: &Launch) -> Vec<String> {
    let mut paths: Vec<String> = [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
    ]
    .map(String::from)
    .to_vec();
    if launch.rootfs.is_none() {
        paths.extend(
            launch
                .hidden
                .iter()
                .filter(|p| p.is_absolute())
                .map(|p| p.display().to_string()),
        );
    }
    paths
}
