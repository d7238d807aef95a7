//! The infrastructure graph document stored per project version.
//!
//! This layer checks the envelope (`{"nodes": [...], "edges": [...]}`); the typed node kinds and
//! their rules belong to the codegen runner.

use crate::error::FieldError;
use serde_json::{json, Value};

/// The graph every new project starts with.
pub fn empty_graph() -> Value {
    json!({"nodes": [], "edges": []})
}

/// Checks the graph envelope; pointers are relative to the request body (`/graph/...`).
pub fn check_envelope(graph: &Value) -> Result<(), Vec<FieldError>> {
    let Some(object) = graph.as_object() else {
        return Err(vec![FieldError::new(
            "/graph",
            "must be an object with `nodes` and `edges` arrays",
        )]);
    };
    let mut errors = Vec::new();
    for key in ["nodes", "edges"] {
        match object.get(key) {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_object() {
                        errors.push(FieldError::new(
                            format!("/graph/{key}/{i}"),
                            "must be an object",
                        ));
                    }
                }
            }
            Some(_) => errors.push(FieldError::new(format!("/graph/{key}"), "must be an array")),
            None => errors.push(FieldError::new(format!("/graph/{key}"), "is required")),
        }
    }
    for key in object.keys() {
        if key != "nodes" && key != "edges" {
            errors.push(FieldError::new(
                format!("/graph/{}", escape_pointer(key)),
                "unknown field; a graph has only `nodes` and `edges`",
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Escapes one JSON Pointer reference token (RFC 6901).
pub fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope() {
        assert!(check_envelope(&empty_graph()).is_ok());
        let errors = check_envelope(&json!({"nodes": {}, "extra/x": 1})).unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            ["/graph/nodes", "/graph/edges", "/graph/extra~1x"]
        );
        assert!(check_envelope(&json!([])).is_err());
        assert!(check_envelope(&json!({"nodes": [1], "edges": []})).is_err());
    }
}
