//! Cost of the wasm sandbox's snapshot path: instantiating a cached module, capturing a
//! guest (memory + mutable globals), restoring it into a fresh instance, and the node's
//! full restore path from its on-disk cache, for several memory sizes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ate_model::{ActorRef, Limits};
use ate_wasm::{EgressPolicy, Guest, GuestConfig, MemoryImage, PAGE, WasmEngine};
use bytes::Bytes;
use clap::Args;

use super::machine::percentile;

#[derive(Debug, Args)]
pub struct WasmBenchArgs {
    /// Guest memory sizes in KiB (multiples of 64).
    #[arg(long, value_delimiter = ',', default_values_t = [64u64, 1024, 65536])]
    pub sizes_kib: Vec<u64>,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 21)]
    pub runs: usize,
}

fn module(pages: u64) -> String {
    format!(
        r#"(module
  (memory (export "memory") {pages})
  (global $a (mut i64) (i64.const 0))
  (global $b (mut i32) (i32.const 0))
  (func (export "ate_alloc") (param i32) (result i32) i32.const 0)
  (func (export "ate_handle") (param i32 i32) (result i32)
    (global.set $a (i64.add (global.get $a) (i64.const 1)))
    i32.const 0))"#
    )
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn time<T>(runs: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        std::hint::black_box(f()?);
        samples.push(start.elapsed());
    }
    samples.sort();
    Ok(percentile(&samples, 50.0))
}

pub async fn run(args: WasmBenchArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || measure(&args)).await?
}

fn measure(args: &WasmBenchArgs) -> anyhow::Result<()> {
    let engine = WasmEngine::new()?;
    let dir = tempfile::tempdir()?;
    let config = GuestConfig {
        actor: ActorRef::new("bench", "guest"),
        env: Vec::new(),
        limits: Limits {
            memory_pages: ate_model::MAX_MEMORY_PAGES,
            ..Limits::default()
        },
        egress: EgressPolicy::default(),
        egress_timeout: Duration::from_secs(1),
        log: Arc::new(|_, _| {}),
    };
    println!(
        "| guest memory | instantiate (cached module) | checkpoint (capture) | restore: copy | restore: copy from cache files | restore: map cache file | map + read every page | snapshot write (zstd + sha256, file://) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for kib in &args.sizes_kib {
        let bytes = (*kib as usize * 1024).div_ceil(PAGE) * PAGE;
        let pages = (bytes / PAGE) as u64;
        let source = module(pages);
        let compiled = engine.compile(source.as_bytes(), None)?;
        let instantiate = time(args.runs, || {
            Ok(Guest::boot(&engine, compiled.clone(), &config)?)
        })?;
        // A dense image: every page written, as a long-running agent's heap would be.
        let mut base = Guest::boot(&engine, compiled.clone(), &config)?.checkpoint()?;
        let pattern: Vec<u8> = (0..bytes)
            .map(|i| (i.wrapping_mul(31) >> 3) as u8)
            .collect();
        base.memory = Bytes::from(pattern);
        let mut guest = Guest::restore(&engine, compiled.clone(), &config, &base)?;
        let checkpoint = time(args.runs, || Ok(guest.checkpoint()?))?;
        let restore = time(args.runs, || {
            Ok(Guest::restore(&engine, compiled.clone(), &config, &base)?)
        })?;
        let files_dir = dir.path().join(format!("{kib}"));
        std::fs::create_dir_all(&files_dir)?;
        for (name, data) in base.to_files()? {
            std::fs::write(files_dir.join(&name), &data)?;
        }
        let from_files = time(args.runs, || {
            let mut files = Vec::new();
            for name in [ate_wasm::STATE_FILE, ate_wasm::MEMORY_FILE] {
                let data = std::fs::read(files_dir.join(name)).context("read snapshot file")?;
                files.push((name.to_string(), Bytes::from(data)));
            }
            let image = MemoryImage::from_files(&files)?;
            Ok(Guest::restore(&engine, compiled.clone(), &config, &image)?)
        })?;
        let mapped_file = ate_wasm::MappedMemory::open(&files_dir.join(ate_wasm::MEMORY_FILE))?;
        let map = time(args.runs, || {
            Ok(Guest::restore_mapped(
                &engine,
                compiled.clone(),
                &config,
                &base.state,
                &mapped_file,
            )?)
        })?;
        let map_touch = time(args.runs, || {
            let mut g = Guest::restore_mapped(
                &engine,
                compiled.clone(),
                &config,
                &base.state,
                &mapped_file,
            )?;
            Ok(g.checkpoint()?)
        })?;
        let store = ate_snapshots::SnapshotStore::open(&format!(
            "file://{}",
            dir.path().join("store").display()
        ))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let actor = ActorRef::new("bench", "guest");
        let files = base.to_files()?;
        let write = time(args.runs.min(7), || {
            let id = ate_snapshots::new_snapshot_id();
            let sources = files
                .iter()
                .map(|(name, bytes)| {
                    ate_snapshots::SnapshotFile::bytes(name.clone(), bytes.clone())
                })
                .collect();
            Ok(rt.block_on(store.write(
                &actor,
                &id,
                "wasm",
                ate_model::SnapshotScope::Full,
                ate_wasm::RUNTIME,
                sources,
                u64::MAX,
            ))?)
        })?;
        let size = if bytes >= 1 << 20 {
            format!("{} MiB", bytes >> 20)
        } else {
            format!("{} KiB", bytes >> 10)
        };
        println!(
            "| {size} | {} | {} | {} | {} | {} | {} | {} |",
            fmt(instantiate),
            fmt(checkpoint),
            fmt(restore),
            fmt(from_files),
            fmt(map),
            fmt(map_touch),
            fmt(write)
        );
    }
    Ok(())
}
