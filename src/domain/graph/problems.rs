//! The problems a validation collects, the per-node facts the passes share, and helpers for
//! wording and pointing at problems.

use super::model::NodeBody;
use crate::error::FieldError;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;

/// Where a problem is, for ordering the answer: the graph itself, one node or one edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Place {
    Root,
    Node(usize),
    Edge(usize),
}

/// The problems found so far, with pointers under `prefix`.
pub(super) struct Problems<'p> {
    prefix: &'p str,
    found: Vec<(Place, FieldError)>,
}

impl<'p> Problems<'p> {
    /// No problems yet; pointers will start with `prefix`.
    pub(super) fn new(prefix: &'p str) -> Self {
        Self {
            prefix,
            found: Vec::new(),
        }
    }

    /// Whether nothing was found.
    pub(super) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Records a problem at `pointer`, ordered by `place`.
    pub(super) fn push(&mut self, place: Place, pointer: String, detail: impl Into<String>) {
        self.found.push((place, FieldError::new(pointer, detail)));
    }

    /// A problem with the graph as a whole, at `{prefix}{suffix}`.
    pub(super) fn root(&mut self, suffix: &str, detail: impl Into<String>) {
        let pointer = format!("{}{suffix}", self.prefix);
        self.push(Place::Root, pointer, detail);
    }

    /// A problem with node `i`, at `{prefix}/nodes/{i}{suffix}`.
    pub(super) fn node(&mut self, i: usize, suffix: &str, detail: impl Into<String>) {
        let pointer = format!("{}/nodes/{i}{suffix}", self.prefix);
        self.push(Place::Node(i), pointer, detail);
    }

    /// A problem with edge `j`, at `{prefix}/edges/{j}{suffix}`.
    pub(super) fn edge(&mut self, j: usize, suffix: &str, detail: impl Into<String>) {
        let pointer = format!("{}/edges/{j}{suffix}", self.prefix);
        self.push(Place::Edge(j), pointer, detail);
    }

    /// Records `result`'s error, if any, at node `i`'s `suffix`.
    pub(super) fn check_node(&mut self, i: usize, suffix: &str, result: Result<(), String>) {
        if let Err(detail) = result {
            self.node(i, suffix, detail);
        }
    }

    /// The problems grouped by node and edge (nodes first), in the order found within each.
    pub(super) fn into_sorted(mut self) -> Vec<FieldError> {
        // A stable sort keeps the order in which one node's or edge's problems were found.
        self.found.sort_by_key(|(place, _)| *place);
        self.found.into_iter().map(|(_, error)| error).collect()
    }
}

/// What the first pass learnt about one node; `None` parts had a problem.
pub(super) struct NodeEntry<'a> {
    pub(super) id: Option<&'a str>,
    pub(super) kind: Option<&'static str>,
    pub(super) body: Option<NodeBody>,
}

/// Node ids to the index of the first node carrying them.
pub(super) struct NodeIndex<'a>(HashMap<&'a str, usize>);

impl<'a> NodeIndex<'a> {
    /// Indexes the nodes that have an id.
    pub(super) fn new(nodes: &[NodeEntry<'a>]) -> Self {
        let mut map = HashMap::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            if let Some(id) = node.id {
                map.entry(id).or_insert(i);
            }
        }
        Self(map)
    }

    /// The index of the first node with this id.
    pub(super) fn get(&self, id: &str) -> Option<usize> {
        self.0.get(id).copied()
    }
}

/// Deserializes `value` as `T`, keeping the path of the first error as a JSON Pointer (relative
/// to `value`); request bodies use it too, so every 422 points the same way.
pub fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut pointer = serde_path_to_pointer(err.path());
        let message = err.inner().to_string();
        // serde reports a missing field at its parent; point at the field itself.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            pointer.push('/');
            pointer.push_str(&escape_pointer(field));
        }
        (pointer, message)
    })
}

/// Converts a `serde_path_to_error` path into a JSON Pointer.
fn serde_path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => pointer.push_str(&format!("/{}", escape_pointer(key))),
            // A variant name is not a member of the document: it has no pointer token.
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    pointer
}

/// `a service`, `a service or database`, `a service, job or cron_job`.
pub(super) fn either(kinds: &[&str]) -> String {
    match kinds {
        [] => String::new(),
        [only] => with_article(only),
        [first, middle @ .., last] => {
            let mut text = with_article(first);
            for kind in middle {
                text.push_str(", ");
                text.push_str(kind);
            }
            format!("{text} or {last}")
        }
    }
}

/// `a service`, `an ingress`.
pub(super) fn with_article(kind: &str) -> String {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {kind}")
    } else {
        format!("a {kind}")
    }
}

/// `value` is one of `allowed`.
pub(super) fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "unknown value `{value}`; one of: {}",
            allowed.join(", ")
        ))
    }
}

/// Escapes one JSON Pointer reference token (RFC 6901).
pub fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}
