//! Applying the schedule's faults to the running deployment. Invariant: every fault is
//! healed before `inject` returns (the process running again, thawed, the store up, the
//! links open and fast), so faults never pile up and the end of the run starts healed.

use std::time::Duration;

use super::cluster::{Cluster, Member as Process, NODES, REPLICAS, ROUTER};
use super::proxy::Cut;
use super::schedule::{Fault, Links, Member};

/// How long a fault lasts before it is healed.
pub fn hold(f: &Fault) -> Duration {
    match f {
        Fault::Kill { down, .. } | Fault::StoreRestart { down } => *down,
        Fault::Freeze { hold, .. } | Fault::Partition { hold, .. } | Fault::Slow { hold, .. } => {
            *hold
        }
    }
}

fn member_name(m: Member) -> &'static str {
    match m {
        Member::Node(i) => NODES[i],
        Member::Replica(i) => REPLICAS[i],
    }
}

pub fn describe(f: &Fault) -> String {
    let ms = |d: &Duration| d.as_millis();
    match f {
        Fault::Kill { member, down } => {
            format!(
                "SIGKILL {}, started again after {} ms",
                member_name(*member),
                ms(down)
            )
        }
        Fault::Freeze { member, hold } => {
            format!(
                "SIGSTOP {}, SIGCONT after {} ms",
                member_name(*member),
                ms(hold)
            )
        }
        Fault::StoreRestart { down } => {
            format!(
                "PostgreSQL stopped (immediate), started again after {} ms",
                ms(down)
            )
        }
        Fault::Partition { node, refuse, hold } => format!(
            "{} cut from the replicas ({}), the router still reaching it, for {} ms",
            NODES[*node],
            if *refuse {
                "connections reset"
            } else {
                "packets dropped"
            },
            ms(hold)
        ),
        Fault::Slow {
            links,
            latency,
            hold,
        } => format!(
            "{} slowed by {} ms each way for {} ms",
            match links {
                Links::NodeReplicas(n) => format!("{} <-> replicas", NODES[*n]),
                Links::RouterReplicas => "router <-> replicas".to_string(),
                Links::RouterNode(n) => format!("router <-> {}", NODES[*n]),
            },
            ms(latency),
            ms(hold)
        ),
    }
}

fn member(cluster: &mut Cluster, m: Member) -> &mut Process {
    match m {
        Member::Node(i) => &mut cluster.nodes[i],
        Member::Replica(i) => &mut cluster.replicas[i],
    }
}

/// The pairs of components a link fault touches.
fn pairs(links: Links) -> Vec<(&'static str, &'static str)> {
    match links {
        Links::NodeReplicas(n) => REPLICAS.iter().map(|r| (NODES[n], *r)).collect(),
        Links::RouterReplicas => REPLICAS.iter().map(|r| (ROUTER, *r)).collect(),
        Links::RouterNode(n) => vec![(ROUTER, NODES[n])],
    }
}

/// Applies a fault, waits out its time, and heals it.
pub async fn inject(cluster: &mut Cluster, fault: &Fault) -> anyhow::Result<()> {
    let net = cluster.net.clone();
    match *fault {
        Fault::Kill { member: m, down } => {
            member(cluster, m).kill().await;
            tokio::time::sleep(down).await;
            member(cluster, m).start(&net).await?;
        }
        Fault::Freeze { member: m, hold } => {
            member(cluster, m).signal("STOP").await?;
            tokio::time::sleep(hold).await;
            member(cluster, m).signal("CONT").await?;
        }
        Fault::StoreRestart { down } => {
            cluster.store(false).await?;
            tokio::time::sleep(down).await;
            cluster.store(true).await?;
        }
        Fault::Partition { node, refuse, hold } => {
            let cut = if refuse { Cut::Refuse } else { Cut::Drop };
            let links = pairs(Links::NodeReplicas(node));
            for (a, b) in &links {
                net.cut(a, b, cut);
            }
            tokio::time::sleep(hold).await;
            for (a, b) in &links {
                net.cut(a, b, Cut::Open);
            }
        }
        Fault::Slow {
            links,
            latency,
            hold,
        } => {
            let links = pairs(links);
            for (a, b) in &links {
                net.slow(a, b, latency);
            }
            tokio::time::sleep(hold).await;
            for (a, b) in &links {
                net.slow(a, b, Duration::ZERO);
            }
        }
    }
    Ok(())
}
