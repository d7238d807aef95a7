//! Audit vocabulary, no I/O: who acted ([`Actor`]), what a route does ([`describe`]: action,
//! target), and the redaction of secrets in recorded changes ([`redact`]).

use serde_json::Value;
use uuid::Uuid;

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A Keycloak user, by `sub`.
    User(String),
    /// A service account (API key), by id.
    ServiceAccount(Uuid),
}

impl Actor {
    /// `user` or `service_account`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::ServiceAccount(_) => "service_account",
        }
    }

    /// The `sub` or the service account id.
    pub fn id(&self) -> String {
        match self {
            Actor::User(sub) => sub.clone(),
            Actor::ServiceAccount(id) => id.to_string(),
        }
    }
}

/// What a route does, read from its method and template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// `project.update`, `workspace.retry`, `admin.job.delete`, …
    pub action: String,
    /// The kind of thing acted on: `project`, `org`, …
    pub target_type: String,
    /// Its id, when the path holds it.
    pub target_id: Option<String>,
    /// The organization of an org-scoped route.
    pub org_id: Option<Uuid>,
}

/// Collections of the API, plural path segment → singular target type. A static segment not
/// listed is an action on the resource before it (`…/workspaces/<id>/retry`).
const COLLECTIONS: &[(&str, &str)] = &[
    ("orgs", "org"),
    ("members", "member"),
    ("workspaces", "workspace"),
    ("projects", "project"),
    ("codegen-jobs", "codegen_job"),
    ("backups", "backup"),
    ("backup-policies", "backup_policy"),
    ("restores", "restore"),
    ("webhooks", "webhook"),
    ("deliveries", "delivery"),
    ("secrets", "secret"),
    ("health-checks", "health_check"),
    ("alert-channels", "alert_channel"),
    ("alert-rules", "alert_rule"),
    ("maintenance-windows", "maintenance_window"),
    ("incidents", "incident"),
    ("teams", "team"),
    ("service-accounts", "service_account"),
    ("jobs", "job"),
    ("probes", "probe"),
];

/// Routes whose generic reading would mislead: (method, template) → (action, target type,
/// index of the target id segment).
const OVERRIDES: &[(&str, &str, &str, &str, usize)] = &[
    (
        "PUT",
        "/v1/orgs/<org_id>/projects/<project_id>/teams/<team_id>",
        "project.team.assign",
        "project",
        4,
    ),
    (
        "DELETE",
        "/v1/orgs/<org_id>/projects/<project_id>/teams/<team_id>",
        "project.team.unassign",
        "project",
        4,
    ),
    (
        "PUT",
        "/v1/orgs/<org_id>/teams/<team_id>/members/<user_sub>",
        "team.member.add",
        "team",
        4,
    ),
    (
        "DELETE",
        "/v1/orgs/<org_id>/teams/<team_id>/members/<user_sub>",
        "team.member.remove",
        "team",
        4,
    ),
];

/// Reads a route as an audit action: the innermost collection is the target type; the verb is
/// the method's (`create`, `update`, `delete`) or a trailing action segment (`retry`).
pub fn describe(method: &str, template: &str, segments: &[String]) -> Described {
    let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
    let value_at = |index: usize| segments.get(index).cloned();
    let org_id = (parts.get(1) == Some(&"orgs")
        && parts.get(2).is_some_and(|p| p.starts_with('<')))
    .then(|| value_at(2).and_then(|v| v.parse().ok()))
    .flatten();
    if let Some((_, _, action, kind, index)) = OVERRIDES
        .iter()
        .find(|(m, t, ..)| *m == method && *t == template)
    {
        return Described {
            action: (*action).to_owned(),
            target_type: (*kind).to_owned(),
            target_id: value_at(*index),
            org_id,
        };
    }
    let verb = match method {
        "POST" => "create",
        "DELETE" => "delete",
        _ => "update",
    };
    let singular = |segment: &str| {
        COLLECTIONS
            .iter()
            .find(|(plural, _)| *plural == segment)
            .map(|(_, one)| *one)
    };
    let is_param = |p: &&str| p.starts_with('<');
    let admin = parts.get(1) == Some(&"admin");
    let mut target: Option<(&str, Option<usize>)> = None;
    let mut action_word: Option<&str> = None;
    for (index, part) in parts.iter().enumerate() {
        if is_param(part) || *part == "v1" || (index == 1 && admin) {
            continue;
        }
        match singular(part) {
            Some(kind) => {
                let id = parts
                    .get(index + 1)
                    .filter(|p| is_param(p))
                    .map(|_| index + 1);
                target = Some((kind, id));
                action_word = None;
            }
            None => action_word = Some(part),
        }
    }
    let (kind, id_index) = target.unwrap_or(("api", None));
    let action = match action_word {
        // An action on the whole collection (`POST /v1/admin/jobs/retry`) acts on many.
        Some(word) if method == "POST" && id_index.is_none() => {
            format!("{kind}.bulk_{}", word.replace('-', "_"))
        }
        Some(word) if method == "POST" => format!("{kind}.{}", word.replace('-', "_")),
        Some(word) => format!("{kind}.{}.{verb}", word.replace('-', "_")),
        None => format!("{kind}.{verb}"),
    };
    Described {
        action: if admin {
            format!("admin.{action}")
        } else {
            action
        },
        target_type: kind.to_owned(),
        target_id: id_index.and_then(value_at),
        org_id,
    }
}

/// Placeholder stored instead of a secret.
const REDACTED: &str = "[redacted]";

/// `value` with the values of secret-looking keys replaced.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, v)| {
                    let v = if is_secret_key(key) && !v.is_null() {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(v)
                    };
                    (key.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "authorization",
        "private_key",
        "api_key",
        "routing_key",
    ]
    .iter()
    .any(|word| key.contains(word))
        || key == "value"
        || key == "key"
        || key.ends_with("_key") && key != "dedup_key"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(path: &str) -> Vec<String> {
        path.trim_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn routes_read_as_actions() {
        let org = "6f1c0000-0000-4000-8000-000000000001";
        let cases = [
            (
                "PATCH",
                "/v1/orgs/<org_id>/projects/<project_id>",
                format!("/v1/orgs/{org}/projects/p1"),
                "project.update",
                "project",
                Some("p1"),
            ),
            (
                "POST",
                "/v1/orgs/<org_id>/projects",
                format!("/v1/orgs/{org}/projects"),
                "project.create",
                "project",
                None,
            ),
            (
                "PUT",
                "/v1/orgs/<org_id>/projects/<project_id>/graph",
                format!("/v1/orgs/{org}/projects/p1/graph"),
                "project.graph.update",
                "project",
                Some("p1"),
            ),
            (
                "POST",
                "/v1/orgs/<org_id>/workspaces/<workspace_id>/retry",
                format!("/v1/orgs/{org}/workspaces/w1/retry"),
                "workspace.retry",
                "workspace",
                Some("w1"),
            ),
            (
                "DELETE",
                "/v1/orgs/<org_id>",
                format!("/v1/orgs/{org}"),
                "org.delete",
                "org",
                Some(org),
            ),
            (
                "POST",
                "/v1/admin/jobs/<id>/retry",
                "/v1/admin/jobs/j1/retry".to_owned(),
                "admin.job.retry",
                "job",
                Some("j1"),
            ),
            (
                "PUT",
                "/v1/orgs/<org_id>/projects/<project_id>/teams/<team_id>",
                format!("/v1/orgs/{org}/projects/p1/teams/t1"),
                "project.team.assign",
                "project",
                Some("p1"),
            ),
            (
                "POST",
                "/v1/orgs/<org_id>/webhooks/<webhook_id>/rotate-secret",
                format!("/v1/orgs/{org}/webhooks/h1/rotate-secret"),
                "webhook.rotate_secret",
                "webhook",
                Some("h1"),
            ),
        ];
        for (method, template, path, action, kind, id) in cases {
            let described = describe(method, template, &segments(&path));
            assert_eq!(described.action, action, "{method} {template}");
            assert_eq!(described.target_type, kind, "{method} {template}");
            assert_eq!(described.target_id.as_deref(), id, "{method} {template}");
        }
        let described = describe(
            "DELETE",
            "/v1/orgs/<org_id>",
            &segments(&format!("/v1/orgs/{org}")),
        );
        assert_eq!(
            described.org_id.map(|id| id.to_string()).as_deref(),
            Some(org)
        );
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let value = serde_json::json!({
            "name": "ci",
            "secret": "s3cr3t",
            "config": {"url": "https://x", "routing_key": "rk", "headers": {"Authorization": "Bearer x"}},
            "items": [{"value": "v", "key_id": "k1"}],
            "keep_last": 3,
        });
        let redacted = redact(&value);
        assert_eq!(redacted["name"], "ci");
        assert_eq!(redacted["secret"], REDACTED);
        assert_eq!(redacted["config"]["routing_key"], REDACTED);
        assert_eq!(redacted["config"]["headers"]["Authorization"], REDACTED);
        assert_eq!(redacted["config"]["url"], "https://x");
        assert_eq!(redacted["items"][0]["value"], REDACTED);
        assert_eq!(redacted["items"][0]["key_id"], "k1");
        assert_eq!(redacted["keep_last"], 3);
    }
}
