//! `ate bench`: measurements of ate on this machine. Each run prints the machine, the date
//! and the figures, ready to be recorded in `docs/benchmarks.md`.

mod chaos;
mod claims;
mod dataspace;
mod in_process;
mod list;
mod machine;
mod process;
mod router;
mod scale;
mod split;
mod store_ops;
mod wakeups;
mod wasm;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Operations per second of create, get, conditional update and claim on a store.
    Store(store_ops::StoreBenchArgs),
    /// Claim cost against pool size, with selectors and with the list-everything baseline.
    Claims(claims::ClaimBenchArgs),
    /// Assert-to-delivery cost of the dataspace.
    Dataspace(dataspace::DataspaceBenchArgs),
    /// Time of `ate get actors -A` over many actors.
    ListActors(list::ListBenchArgs),
    /// Checkpoint and restore of wasm guests by memory size, and instantiation from the
    /// compiled-module cache.
    Wasm(wasm::WasmBenchArgs),
    /// Activation latency through the HTTP router, and its overhead on running actors
    /// next to nginx `proxy_pass`.
    Router(router::RouterBenchArgs),
    /// The process sandbox class: activation of the Python demo agent through the router
    /// with Full (CRIU) and Data snapshots, suspend time and snapshot size.
    Process(process::ProcessBenchArgs),
    /// The split deployment in separate processes: activation across the gRPC hop, and the
    /// time from a node's death to its actors answering from another node.
    Split(split::SplitBenchArgs),
    /// Many suspended actors created through the control API: resident memory, a page of
    /// `ate get actors`, a worker claim and an activation at each checkpoint (to 1,000,000).
    Scale(scale::ScaleBenchArgs),
    /// Wake cycles: ten actors per worker asked by concurrent clients (uniform and Zipf),
    /// every answer checked; requests, activations and evictions per second, activation
    /// latency under that load, in process and split.
    Wakeups(wakeups::WakeupsBenchArgs),
    /// Faults on a seeded schedule against the split deployment on PostgreSQL (processes
    /// killed and frozen, the store restarted, partitions, slow links) under a counter
    /// workload; checks that no acknowledged answer was lost and no actor ran twice.
    Chaos(chaos::ChaosBenchArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    println!("{}", machine::describe());
    match cmd {
        BenchCommand::Store(a) => store_ops::run(a).await,
        BenchCommand::ListActors(a) => list::run(a).await,
        BenchCommand::Claims(a) => claims::run(a).await,
        BenchCommand::Dataspace(a) => dataspace::run(a).await,
        BenchCommand::Wasm(a) => wasm::run(a).await,
        BenchCommand::Router(a) => router::run(a).await,
        BenchCommand::Split(a) => split::run(a).await,
        BenchCommand::Process(a) => process::run(a).await,
        BenchCommand::Scale(a) => scale::run(a).await,
        BenchCommand::Wakeups(a) => wakeups::run(a).await,
        BenchCommand::Chaos(a) => chaos::run(a).await,
    }
}
