//! Refinements of the generated OpenAPI document that rocket_okapi cannot express from types:
//! optional query parameters (not `nullable`), event cursor and filter formats, and `links` from each create
//! operation to the operations that take the id it returns (so stateful tests reach them).

use serde_json::{json, Map, Value};

/// Event cursors are outbox ids.
const EVENT_CURSOR_PATTERN: &str = "^[0-9]{1,18}$";
/// A UUID in its hyphenated form.
const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// HTTP methods an OpenAPI path item can hold.
const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

/// Applies every refinement to the document (as JSON).
pub fn refine(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            if let Some(op) = item.get_mut(*method) {
                refine_parameters(path, op);
            }
        }
    }
    add_links(paths);
}

/// Query parameters: optional rather than `nullable` (a query value is never null), and the
/// formats of event cursors and filters stated (list cursors carry their own, see `Cursor`).
fn refine_parameters(path: &str, op: &mut Value) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for param in params {
        if param.get("in").and_then(Value::as_str) != Some("query") {
            continue;
        }
        let name = param
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(schema) = param.get_mut("schema").and_then(Value::as_object_mut) else {
            continue;
        };
        let nullable = schema.remove("nullable").is_some();
        let is_events = path.ends_with("/events") || path.ends_with("/stream");
        let is_audit = path.ends_with("/audit") || path.ends_with("/audit/export");
        match name.as_str() {
            "after" if is_events => {
                schema.insert("pattern".into(), json!(EVENT_CURSOR_PATTERN));
            }
            "after" if path.ends_with("/results") => {
                schema.insert("format".into(), json!("date-time"));
            }
            "after" | "before" if is_audit => {
                schema.insert("format".into(), json!("date-time"));
            }
            "project_id" | "policy_id" | "workspace_id" | "org_id" => {
                schema.insert("format".into(), json!("uuid"));
                schema.insert("pattern".into(), json!(UUID_PATTERN));
            }
            _ => {}
        }
        // Query parameters are `Strict`: an empty value is refused, so say so.
        if schema.get("type").and_then(Value::as_str) == Some("string")
            && !schema.contains_key("minLength")
        {
            schema.insert("minLength".into(), json!(1));
        }
        if let Some(values) = query_enum(path, &name) {
            schema.insert("enum".into(), json!(values));
        }
        if nullable {
            if let Some(obj) = param.as_object_mut() {
                obj.insert("required".into(), json!(false));
            }
        }
    }
}

/// The values a filtering query parameter accepts, from the same lists the handlers check.
fn query_enum(path: &str, name: &str) -> Option<Vec<String>> {
    use sea_orm::Iterable;
    let owned = |values: &[&str]| values.iter().map(|v| (*v).to_owned()).collect();
    match (path, name) {
        (p, "status") if p.ends_with("/incidents") => Some(owned(&[
            crate::store::incidents::OPEN,
            crate::store::incidents::RESOLVED,
        ])),
        (p, "status") if p.ends_with("/backups") => Some(
            crate::store::backups::BackupStatus::iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
        ),
        (p, "status") if p.ends_with("/codegen-jobs") => Some(
            crate::store::codegen::CodegenStatus::iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
        ),
        (p, "format") if p.ends_with("/audit") => Some(owned(&["json", "ndjson"])),
        ("/v1/admin/jobs", "state") => Some(owned(&super::admin::JOB_STATES)),
        ("/v1/admin/jobs", "queue") => Some(admin_queues()),
        _ => None,
    }
}

/// Queues the admin job endpoints accept: every registered queue and `webhooks`.
pub fn admin_queues() -> Vec<String> {
    let mut queues: Vec<String> = crate::workers::registry::queue_names()
        .map(str::to_owned)
        .collect();
    queues.push(crate::jobs::admin::WEBHOOKS_QUEUE.to_owned());
    queues.sort();
    queues.dedup();
    queues
}

/// The response field holding the value of path parameter `name` in a create answer.
fn id_field(name: &str) -> &'static str {
    match name {
        "user_sub" => "/user_sub",
        "batch_id" => "/batch_id",
        _ => "/id",
    }
}

/// `{name}` parameters of a path template, in order.
fn path_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_owned)
        .collect()
}

/// For each `POST P` answering 201/202, links to every operation under `P/{name}` whose path
/// parameters are those of `P` plus `name` (`name` from the response body, the rest from the
/// request path).
fn add_links(paths: &mut Map<String, Value>) {
    let snapshot: Vec<(String, Vec<(String, String)>)> = paths
        .iter()
        .map(|(path, item)| {
            let ops = METHODS
                .iter()
                .filter_map(|m| {
                    let id = item.get(*m)?.get("operationId")?.as_str()?;
                    Some(((*m).to_owned(), id.to_owned()))
                })
                .collect();
            (path.clone(), ops)
        })
        .collect();
    for (path, item) in paths.iter_mut() {
        let Some(post) = item.get_mut("post") else {
            continue;
        };
        let parent_params = path_params(path);
        let prefix = format!("{path}/{{");
        let mut links = Map::new();
        for (target, ops) in &snapshot {
            let Some(rest) = target.strip_prefix(&prefix) else {
                continue;
            };
            let Some((name, _)) = rest.split_once('}') else {
                continue;
            };
            let params = path_params(target);
            let covered = params
                .iter()
                .all(|p| p == name || parent_params.contains(p));
            if !covered {
                continue;
            }
            let mut parameters = Map::new();
            for p in &params {
                let source = if p == name {
                    format!("$response.body#{}", id_field(name))
                } else {
                    format!("$request.path.{p}")
                };
                parameters.insert(p.clone(), json!(source));
            }
            for (_, operation_id) in ops {
                links.insert(
                    operation_id.clone(),
                    json!({"operationId": operation_id, "parameters": parameters}),
                );
            }
        }
        if links.is_empty() {
            continue;
        }
        let Some(responses) = post.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        for code in ["201", "202"] {
            if let Some(response) = responses.get_mut(code).and_then(Value::as_object_mut) {
                response.insert("links".into(), Value::Object(links.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::names::{DISPLAY_NAME_PATTERN, DNS_LABEL_PATTERN};

    /// The patterns written into `#[schemars]` attributes (which need literals) are the
    /// domain's, so the document and the parsers cannot drift apart.
    #[test]
    fn stated_name_patterns_are_the_domain_ones() {
        let (_, doc) = super::super::routes_and_spec();
        let pattern = |schema: &str, field: &str| {
            doc["components"]["schemas"][schema]["properties"][field]["pattern"]
                .as_str()
                .map(str::to_owned)
        };
        for (schema, field) in [
            ("CreateOrg", "slug"),
            ("UpdateOrg", "slug"),
            ("CreateWorkspace", "name"),
            ("CreateProject", "name"),
            ("UpdateProject", "name"),
        ] {
            assert_eq!(
                pattern(schema, field).as_deref(),
                Some(DNS_LABEL_PATTERN),
                "{schema}.{field}"
            );
        }
        for schema in ["CreateOrg", "UpdateOrg"] {
            assert_eq!(
                pattern(schema, "name").as_deref(),
                Some(DISPLAY_NAME_PATTERN),
                "{schema}.name"
            );
        }
    }
}
