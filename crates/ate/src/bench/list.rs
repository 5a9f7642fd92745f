//! Time of `ate get actors -A` as a user runs it, over many actors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ate_model::{Actor, Atespace, NamespacedName};
use ate_store::Store;
use clap::Args;

use super::store_ops::{Scratch, fill};
use crate::stores;

#[derive(Debug, Args)]
pub struct ListBenchArgs {
    /// How many actors to create before listing.
    #[arg(long, default_value_t = 100_000)]
    pub actors: usize,
    /// How many timed runs of the command.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

async fn seed(store: &Arc<dyn Store>, actors: usize) -> anyhow::Result<()> {
    const SPACES: usize = 10;
    for s in 0..SPACES {
        store
            .create(Atespace {
                name: format!("bench-{s}"),
                version: 0,
            })
            .await?;
    }
    fill(store, actors, |i| Actor {
        atespace: format!("bench-{}", i % SPACES),
        id: format!("actor-{i:07}"),
        template: NamespacedName::new("bench", "t"),
        ..Default::default()
    })
    .await
}

pub async fn run(args: ListBenchArgs) -> anyhow::Result<()> {
    let scratch = Scratch::new("ate-bench-list")?;
    let url = format!("sqlite://{}", scratch.0.join("bench.db").display());
    let store = stores::open(&url, stores::DEFAULT_PATIENCE).await?;
    let t = Instant::now();
    seed(&store, args.actors).await?;
    println!(
        "seeded {} actors in {:.1} s",
        args.actors,
        t.elapsed().as_secs_f64()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Authenticated as `ate up` serves it: the token is verified on every call.
    let auth = ate_control::Authenticator::start(store.clone()).await?;
    let request = ate_proto::ateapi::CreateTokenRequest {
        subject: "bench".into(),
        atespaces: vec![ate_auth::ALL_ATESPACES.into()],
        role: "viewer".into(),
        ttl_seconds: 3600,
    };
    let (_, minted) = ate_control::mint_token(&store, &request)
        .await
        .map_err(|s| anyhow::anyhow!("cannot mint a token: {}", s.message()))?;
    let server = tokio::spawn(ate_control::serve(
        listener,
        ate_control::ControlService::new(store).with_auth(auth),
        async {
            let _ = stopped.await;
        },
    ));
    let exe = std::env::current_exe().context("cannot find the ate binary")?;
    let mut times = Vec::new();
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        let out = tokio::process::Command::new(&exe)
            .args([
                "get",
                "actors",
                "-A",
                "--endpoint",
                &format!("http://{addr}"),
            ])
            .env("ATE_TOKEN", &minted.token)
            .stdout(std::process::Stdio::piped())
            .output()
            .await?;
        let took = t.elapsed();
        if !out.status.success() {
            bail!(
                "ate get actors -A failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let rows = out
            .stdout
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            .saturating_sub(1);
        if rows != args.actors {
            bail!("listed {rows} actors, expected {}", args.actors);
        }
        times.push(took);
    }
    let _ = stop.send(());
    server.await??;
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "`ate get actors -A` over {} actors: min {:.0} ms, median {:.0} ms, max {:.0} ms ({} runs)",
        args.actors,
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    );
    Ok(())
}
