//! Assert-to-delivery cost of the dataspace: one owner asserting, subscribers receiving.

use std::time::Instant;

use ate_dataspace::{Assertion, Dataspace, Event, Filter};
use clap::Args;
use serde::{Deserialize, Serialize};

#[derive(Debug, Args)]
pub struct DataspaceBenchArgs {
    /// Updates to assert.
    #[arg(long, default_value_t = 1_000_000)]
    pub updates: usize,
    /// Distinct identifiers the updates cycle over.
    #[arg(long, default_value_t = 1000)]
    pub ids: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Route {
    address: String,
}

impl Assertion for Route {
    const TYPE: &'static str = "bench.route.v1";
}

pub async fn run(args: DataspaceBenchArgs) -> anyhow::Result<()> {
    let ids: Vec<String> = (0..args.ids.max(1))
        .map(|i| format!("team-a/actor-{i}"))
        .collect();
    println!("| subscribers | updates | ns per assert + delivery |");
    println!("|---|---|---|");
    for (label, filters) in [
        ("none", vec![]),
        ("1 all-of-type", vec![Filter::All]),
        ("1 exact", vec![Filter::Exact(ids[0].as_str().into())]),
        ("1 glob", vec![Filter::Glob("team-a/*".into())]),
        (
            "4 (all, exact, 2 globs)",
            vec![
                Filter::All,
                Filter::Exact(ids[0].as_str().into()),
                Filter::Glob("team-a/*".into()),
                Filter::Glob("team-b/*".into()),
            ],
        ),
    ] {
        let ds = Dataspace::with_capacity(args.updates + 16);
        let mut subs = filters
            .into_iter()
            .map(|f| ds.subscribe::<Route>(f))
            .collect::<Result<Vec<_>, _>>()?;
        let owner = ds.owner("bench");
        let value = Route {
            address: "127.0.0.1:9000".into(),
        };
        let start = Instant::now();
        for i in 0..args.updates {
            owner.assert(ids[i % ids.len()].as_str(), value.clone())?;
        }
        let mut delivered = 0usize;
        for s in &mut subs {
            while let Some(e) = s.try_recv() {
                if matches!(e, Event::Asserted { .. }) {
                    delivered += 1;
                }
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / args.updates as f64;
        println!(
            "| {label} | {} ({delivered} delivered) | {ns:.0} |",
            args.updates
        );
    }
    Ok(())
}
