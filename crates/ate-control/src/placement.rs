//! Where a pool's worker slots go: a pure plan over the nodes that can host the pool, so
//! the rules (spread evenly, respect capacity, never remove a busy worker) are testable
//! without a store.

/// One eligible node as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSlots {
    pub node: String,
    /// How many more workers (of any pool) the node can take.
    pub room: u32,
    /// This pool's workers on the node: name and whether it is free.
    pub workers: Vec<(String, bool)>,
}

/// A change to a pool's workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create { node: String },
    Delete { node: String, worker: String },
}

struct State {
    node: String,
    room: u32,
    count: u32,
    free: Vec<String>,
}

/// Plans `replicas` workers over `nodes`: scale up on the emptiest nodes with room, scale
/// down by removing free workers from the fullest nodes, then move free workers until no
/// two nodes differ by more than one. Busy workers stay where they are, so a pool may end
/// above its target or unevenly spread until they free up.
pub fn plan(replicas: u32, nodes: &[NodeSlots]) -> Vec<Action> {
    let mut st: Vec<State> = nodes
        .iter()
        .map(|n| State {
            node: n.node.clone(),
            room: n.room,
            count: n.workers.len() as u32,
            free: n
                .workers
                .iter()
                .filter(|(_, free)| *free)
                .map(|(w, _)| w.clone())
                .collect(),
        })
        .collect();
    st.sort_by(|a, b| a.node.cmp(&b.node));
    let mut total: u32 = st.iter().map(|s| s.count).sum();
    let mut actions = Vec::new();
    while total < replicas {
        let Some(i) = emptiest(&st) else { break };
        create(&mut st[i], &mut actions);
        total += 1;
    }
    while total > replicas {
        let Some(i) = fullest_with_free(&st) else {
            break;
        };
        delete(&mut st[i], &mut actions);
        total -= 1;
    }
    while let (Some(hi), Some(lo)) = (fullest_with_free(&st), emptiest(&st)) {
        if st[hi].count <= st[lo].count + 1 {
            break;
        }
        delete(&mut st[hi], &mut actions);
        create(&mut st[lo], &mut actions);
    }
    actions
}

fn emptiest(st: &[State]) -> Option<usize> {
    (0..st.len())
        .filter(|&i| st[i].room > 0)
        .min_by_key(|&i| st[i].count)
}

fn fullest_with_free(st: &[State]) -> Option<usize> {
    (0..st.len())
        .filter(|&i| !st[i].free.is_empty())
        .max_by_key(|&i| (st[i].count, std::cmp::Reverse(i)))
}

fn create(s: &mut State, actions: &mut Vec<Action>) {
    s.room -= 1;
    s.count += 1;
    actions.push(Action::Create {
        node: s.node.clone(),
    });
}

fn delete(s: &mut State, actions: &mut Vec<Action>) {
    if let Some(worker) = s.free.pop() {
        s.count -= 1;
        s.room += 1;
        actions.push(Action::Delete {
            node: s.node.clone(),
            worker,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, room: u32, workers: &[(&str, bool)]) -> NodeSlots {
        NodeSlots {
            node: name.into(),
            room,
            workers: workers.iter().map(|(w, f)| (w.to_string(), *f)).collect(),
        }
    }

    fn creates(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { node } => Some(node.as_str()),
                Action::Delete { .. } => None,
            })
            .collect()
    }

    #[test]
    fn spreads_evenly_and_respects_room() {
        let nodes = [node("a", 10, &[]), node("b", 10, &[]), node("c", 1, &[])];
        let planned = plan(7, &nodes);
        let mut got = creates(&planned);
        got.sort();
        assert_eq!(got, ["a", "a", "a", "b", "b", "b", "c"]);
        assert_eq!(plan(40, &nodes).len(), 21, "no more than the room there is");
    }

    #[test]
    fn scale_down_takes_free_workers_from_the_fullest_nodes() {
        let nodes = [
            node("a", 5, &[("a1", false), ("a2", true), ("a3", true)]),
            node("b", 5, &[("b1", false), ("b2", false)]),
        ];
        assert_eq!(
            plan(3, &nodes),
            [
                Action::Delete {
                    node: "a".into(),
                    worker: "a3".into()
                },
                Action::Delete {
                    node: "a".into(),
                    worker: "a2".into()
                }
            ]
        );
        // Only busy workers left: the pool stays above its target rather than evict actors.
        let busy = [node("a", 5, &[("a1", false), ("a2", false)])];
        assert!(plan(0, &busy).is_empty());
    }

    #[test]
    fn a_joining_node_gets_free_workers_moved_to_it() {
        let nodes = [
            node("a", 5, &[("a1", true), ("a2", true), ("a3", false)]),
            node("b", 5, &[("b1", true), ("b2", true), ("b3", true)]),
            node("c", 5, &[]),
        ];
        let actions = plan(6, &nodes);
        let mut got = creates(&actions);
        got.sort();
        assert_eq!(got, ["c", "c"]);
        assert_eq!(actions.len(), 4);
    }
}
