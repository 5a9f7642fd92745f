//! The chaos run's fault schedule. Invariant: the schedule is a function of the seed alone
//! (which faults, in which order, on which component, for how long), so a run that found a
//! violation can be repeated with the same `--seed`; only wall-clock timing varies. Every
//! kind of fault comes once in each round (a seeded shuffle), so a short run sees them all.

use std::time::Duration;

/// A small, seeded pseudo-random generator (xorshift64*, seeded through splitmix64): the
/// schedule needs reproducibility, not cryptographic quality, and no dependency for it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed: small seeds (1, 2, ...) give unrelated, nonzero states.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is irrelevant at these sizes).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`, in milliseconds.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
        Duration::from_millis(lo + self.next_u64() % (hi.saturating_sub(lo) + 1))
    }
}

/// The kinds of fault, in the order the figures list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NodeKill,
    NodeFreeze,
    ReplicaKill,
    ReplicaFreeze,
    StoreRestart,
    Partition,
    SlowLink,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::NodeKill,
        Kind::NodeFreeze,
        Kind::ReplicaKill,
        Kind::ReplicaFreeze,
        Kind::StoreRestart,
        Kind::Partition,
        Kind::SlowLink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::NodeKill => "node-kill",
            Kind::NodeFreeze => "node-freeze",
            Kind::ReplicaKill => "replica-kill",
            Kind::ReplicaFreeze => "replica-freeze",
            Kind::StoreRestart => "store-restart",
            Kind::Partition => "partition",
            Kind::SlowLink => "slow-link",
        }
    }
}

/// A component process the schedule can kill or freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    Node(usize),
    Replica(usize),
}

/// Which links a slow-link fault slows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// One node and every replica: its registration stream and the executor calls.
    NodeReplicas(usize),
    /// The router and every replica: its route watch and its resume calls.
    RouterReplicas,
    /// The router and one node: the actors' requests.
    RouterNode(usize),
}

/// One fault: what is done, and for how long before it is healed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, then the same process started again after `down`.
    Kill { member: Member, down: Duration },
    /// SIGSTOP, then SIGCONT after `hold`.
    Freeze { member: Member, hold: Duration },
    /// The store stopped at once (PostgreSQL `immediate`, as a crash) and started again.
    StoreRestart { down: Duration },
    /// A node cut from every replica, both ways (the router still reaches it): dropped
    /// packets, or refused connections.
    Partition {
        node: usize,
        refuse: bool,
        hold: Duration,
    },
    /// Links with `latency` added to every chunk, both ways.
    Slow {
        links: Links,
        latency: Duration,
        hold: Duration,
    },
}

impl Fault {
    pub fn kind(&self) -> Kind {
        match self {
            Fault::Kill {
                member: Member::Node(_),
                ..
            } => Kind::NodeKill,
            Fault::Kill { .. } => Kind::ReplicaKill,
            Fault::Freeze {
                member: Member::Node(_),
                ..
            } => Kind::NodeFreeze,
            Fault::Freeze { .. } => Kind::ReplicaFreeze,
            Fault::StoreRestart { .. } => Kind::StoreRestart,
            Fault::Partition { .. } => Kind::Partition,
            Fault::Slow { .. } => Kind::SlowLink,
        }
    }
}

/// How long a killed process or the store stays down. Short and long against the node
/// liveness timeout (3 s): a node back within it keeps nothing either way (a new
/// incarnation), a replica back within it finds its nodes moved or not.
const DOWN: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(4));
/// How long a process stays frozen or a node partitioned: from well under the liveness
/// timeout (nothing should be declared lost) to over twice it (declared lost, then it comes
/// back and must find itself fenced).
const HOLD: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(7));
/// Latency a slow link adds: from a slow network to one slower than the heartbeat period
/// allows for comfortably (a third of the liveness timeout).
const LATENCY: (Duration, Duration) = (Duration::from_millis(20), Duration::from_millis(800));
/// Quiet time between faults, so that recovery from one is seen before the next.
const GAP: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3));

/// The faults of one run, drawn from the seed.
#[derive(Debug)]
pub struct Schedule {
    rng: Rng,
    round: Vec<Kind>,
    nodes: usize,
    replicas: usize,
}

impl Schedule {
    pub fn new(seed: u64, nodes: usize, replicas: usize) -> Self {
        Self {
            rng: Rng::new(seed),
            round: Vec::new(),
            nodes: nodes.max(1),
            replicas: replicas.max(1),
        }
    }

    /// The quiet time before the next fault, and the fault.
    pub fn next_fault(&mut self) -> (Duration, Fault) {
        if self.round.is_empty() {
            // A Fisher-Yates shuffle of every kind: the round, taken from the end.
            self.round = Kind::ALL.to_vec();
            for i in (1..self.round.len()).rev() {
                let j = self.rng.below(i + 1);
                self.round.swap(i, j);
            }
        }
        let kind = self.round.pop().unwrap_or(Kind::SlowLink);
        let rng = &mut self.rng;
        let gap = rng.between(GAP.0, GAP.1);
        let node = rng.below(self.nodes);
        let replica = rng.below(self.replicas);
        let member = match kind {
            Kind::NodeKill | Kind::NodeFreeze => Member::Node(node),
            _ => Member::Replica(replica),
        };
        let fault = match kind {
            Kind::NodeKill | Kind::ReplicaKill => Fault::Kill {
                member,
                down: rng.between(DOWN.0, DOWN.1),
            },
            Kind::NodeFreeze | Kind::ReplicaFreeze => Fault::Freeze {
                member,
                hold: rng.between(HOLD.0, HOLD.1),
            },
            Kind::StoreRestart => Fault::StoreRestart {
                down: rng.between(DOWN.0, DOWN.1),
            },
            Kind::Partition => Fault::Partition {
                node,
                refuse: rng.below(2) == 1,
                hold: rng.between(HOLD.0, HOLD.1),
            },
            Kind::SlowLink => Fault::Slow {
                links: match rng.below(3) {
                    0 => Links::NodeReplicas(node),
                    1 => Links::RouterReplicas,
                    _ => Links::RouterNode(node),
                },
                latency: rng.between(LATENCY.0, LATENCY.1),
                hold: rng.between(HOLD.0, HOLD.1),
            },
        };
        (gap, fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_and_every_round_has_every_kind() {
        let take = |seed| {
            let mut s = Schedule::new(seed, 3, 2);
            (0..14).map(|_| s.next_fault()).collect::<Vec<_>>()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));
        for round in take(7).chunks(Kind::ALL.len()) {
            for kind in Kind::ALL {
                assert!(round.iter().any(|(_, f)| f.kind() == kind), "{kind:?}");
            }
        }
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = Rng::new(0);
        for _ in 0..10_000 {
            assert!(rng.below(3) < 3);
            let d = rng.between(Duration::from_millis(5), Duration::from_millis(9));
            assert!((5..=9).contains(&(d.as_millis() as u64)));
        }
    }
}
