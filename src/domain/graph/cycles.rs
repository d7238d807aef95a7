//! `depends_on` edges must not form a cycle.

use super::edges::EdgeEntry;
use super::model::EdgeKind;
use super::problems::{NodeEntry, Problems};
use std::collections::VecDeque;

/// `depends_on` edges must not form a cycle: one problem per cycle group, at one of its edges.
pub(super) fn check_dependency_cycles(
    nodes: &[NodeEntry],
    edges: &[Option<EdgeEntry>],
    p: &mut Problems,
) {
    let mut successors: Vec<Vec<(usize, usize)>> = vec![Vec::new(); nodes.len()];
    for (j, edge) in edges.iter().enumerate() {
        if let Some(edge) = edge
            .as_ref()
            .filter(|e| e.sound && e.kind == EdgeKind::DependsOn)
        {
            if let Some(list) = successors.get_mut(edge.from) {
                list.push((edge.to, j));
            }
        }
    }
    for cycle in find_cycles(&successors) {
        let Some(&(_, _, closing_edge)) = cycle.iter().max_by_key(|(_, _, j)| *j) else {
            continue;
        };
        let id = |n: usize| nodes.get(n).and_then(|n| n.id).unwrap_or_default();
        let mut names: Vec<&str> = cycle.iter().map(|(from, _, _)| id(*from)).collect();
        let start = names.first().copied().unwrap_or_default();
        // Name a long cycle by its start so the detail stays readable.
        const SHOWN: usize = 12;
        let length = names.len();
        let text = if length > SHOWN {
            names.truncate(SHOWN);
            format!(
                "{} → … ({} more) → {start}",
                names.join(" → "),
                length - SHOWN
            )
        } else {
            format!("{} → {start}", names.join(" → "))
        };
        p.edge(closing_edge, "", format!("`depends_on` cycle: {text}"));
    }
}

/// One cycle in each strongly connected group of more than one node of the graph given as
/// `successors[node] = [(next node, edge index)]`, as `(from, to, edge)` steps. Iterative
/// (Tarjan's algorithm with an explicit stack), so long chains cannot overflow the call stack.
fn find_cycles(successors: &[Vec<(usize, usize)>]) -> Vec<Vec<(usize, usize, usize)>> {
    let n = successors.len();
    let mut order: Vec<Option<usize>> = vec![None; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut group_of: Vec<Option<usize>> = vec![None; n];
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut counter = 0usize;

    for root in 0..n {
        if order[root].is_some() {
            continue;
        }
        // Frames of the simulated recursion: a node and the next successor to look at.
        let mut frames: Vec<(usize, usize)> = vec![(root, 0)];
        order[root] = Some(counter);
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(node, next)) = frames.last() {
            if let Some(&(succ, _)) = successors[node].get(next) {
                if let Some(frame) = frames.last_mut() {
                    frame.1 += 1;
                }
                match order[succ] {
                    None => {
                        order[succ] = Some(counter);
                        low[succ] = counter;
                        counter += 1;
                        stack.push(succ);
                        on_stack[succ] = true;
                        frames.push((succ, 0));
                    }
                    Some(succ_order) if on_stack[succ] => {
                        low[node] = low[node].min(succ_order);
                    }
                    Some(_) => {}
                }
                continue;
            }
            frames.pop();
            if let Some(&(parent, _)) = frames.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if Some(low[node]) == order[node] {
                let mut group = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    group.push(member);
                    if member == node {
                        break;
                    }
                }
                if group.len() > 1 {
                    for &member in &group {
                        group_of[member] = Some(groups.len());
                    }
                    groups.push(group);
                }
            }
        }
    }

    // In each group, the shortest cycle through its first node (breadth-first search).
    let mut via: Vec<Option<(usize, usize)>> = vec![None; n];
    let mut cycles = Vec::with_capacity(groups.len());
    for (g, group) in groups.iter().enumerate() {
        let Some(&start) = group.iter().min() else {
            continue;
        };
        let mut queue = VecDeque::from([start]);
        let mut closing: Option<(usize, usize)> = None;
        'search: while let Some(node) = queue.pop_front() {
            for &(succ, edge) in &successors[node] {
                if group_of[succ] != Some(g) {
                    continue;
                }
                if succ == start {
                    closing = Some((node, edge));
                    break 'search;
                }
                if via[succ].is_none() {
                    via[succ] = Some((node, edge));
                    queue.push_back(succ);
                }
            }
        }
        let Some((last, closing_edge)) = closing else {
            continue;
        };
        let mut steps = vec![(last, start, closing_edge)];
        let mut node = last;
        while node != start {
            let Some((prev, edge)) = via[node] else {
                break;
            };
            steps.push((prev, node, edge));
            node = prev;
        }
        steps.reverse();
        cycles.push(steps);
    }
    cycles
}

#[cfg(test)]
mod tests {
    use crate::domain::graph::test_support::problems;
    use crate::domain::graph::{validate, MAX_NODES};
    use serde_json::{json, Value};

    #[test]
    fn dependency_cycles() {
        let workload = json!({"image": "busybox"});
        let node = |id: &str| json!({"id": id, "kind": "job", "spec": workload});
        let dep = |from: &str, to: &str| json!({"from": from, "to": to, "kind": "depends_on"});
        let document = json!({
            "nodes": [node("a"), node("b"), node("c"), node("d"), node("e"), node("f")],
            "edges": [dep("a", "b"), dep("b", "c"), dep("c", "a"), dep("d", "e"), dep("e", "d"),
                      dep("c", "d"), dep("a", "f")]
        });
        let found = problems(&document);
        assert_eq!(
            found,
            [
                (
                    "/edges/2".to_owned(),
                    "`depends_on` cycle: a → b → c → a".to_owned()
                ),
                (
                    "/edges/4".to_owned(),
                    "`depends_on` cycle: d → e → d".to_owned()
                ),
            ]
        );
        // A diamond is not a cycle.
        let diamond = json!({
            "nodes": [node("a"), node("b"), node("c"), node("d")],
            "edges": [dep("a", "b"), dep("a", "c"), dep("b", "d"), dep("c", "d")]
        });
        assert!(validate(&diamond, "").is_ok());
    }

    #[test]
    fn long_chains_do_not_overflow_the_stack() {
        let count = MAX_NODES;
        let nodes: Vec<Value> = (0..count)
            .map(|i| json!({"id": format!("n{i}"), "kind": "job", "spec": {"image": "busybox"}}))
            .collect();
        let mut edges: Vec<Value> = (1..count)
            .map(|i| {
                json!({"from": format!("n{}", i - 1), "to": format!("n{i}"), "kind": "depends_on"})
            })
            .collect();
        assert!(validate(&json!({"nodes": nodes, "edges": edges}), "").is_ok());
        edges.push(json!({"from": format!("n{}", count - 1), "to": "n0", "kind": "depends_on"}));
        let found = problems(&json!({"nodes": nodes, "edges": edges}));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, format!("/edges/{}", count - 1));
        assert!(found[0].1.contains("n0 → n1 → "), "{}", found[0].1);
        assert!(found[0].1.ends_with("more) → n0"), "{}", found[0].1);
    }
}
