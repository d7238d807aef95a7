//! What a refinement may change: the answer is compared field by field with the templates'
//! object, and any difference outside an allow-list (resources, probes, replicas, annotations,
//! plain env values) refuses the whole answer. Everything else — securityContext,
//! hostNetwork/hostPID/hostIPC, volumes (hostPath), serviceAccountName, privileged, capabilities,
//! images, commands, labels, selectors — must be exactly as given.

use serde_json::Value;
use std::collections::BTreeSet;

/// Fields a model may never touch; named in the refusal so the reason is plain.
const NEVER: &[&str] = &[
    "securityContext",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "volumes",
    "hostPath",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "privileged",
    "capabilities",
];

/// Container fields a refinement may set or change.
const CONTAINER_FIELDS: &[&str] = &[
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
];

/// Lists whose items are matched by their `name`.
const NAMED_LISTS: &[&str] = &["containers", "initContainers", "env"];

/// Whether a difference at `path` (object keys; list items as `*`) is allowed.
fn allowed(path: &[String]) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    // The pod template of a workload, wherever it sits.
    let pod = |rest: &[&str]| -> Option<usize> {
        if rest.starts_with(&["spec", "template"]) {
            Some(2)
        } else if rest.starts_with(&["spec", "jobTemplate", "spec", "template"]) {
            Some(4)
        } else {
            None
        }
    };
    match p.as_slice() {
        ["metadata", "annotations", ..] | ["spec", "replicas"] => return true,
        _ => {}
    }
    let Some(at) = pod(&p) else {
        return false;
    };
    match &p[at..] {
        ["metadata", "annotations", ..] => true,
        ["spec", "containers" | "initContainers", "*", field, ..] => {
            CONTAINER_FIELDS.contains(field)
        }
        _ => false,
    }
}

/// Every change of `answer` against `given` outside the allow-list, as `dotted.path: reason`.
pub(super) fn disallowed_changes(given: &Value, answer: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(&mut Vec::new(), Some(given), Some(answer), &mut problems);
    problems
}

fn walk(
    path: &mut Vec<String>,
    given: Option<&Value>,
    answer: Option<&Value>,
    out: &mut Vec<String>,
) {
    if given == answer || allowed(path) {
        return;
    }
    match (given, answer) {
        (Some(Value::Object(g)), Some(Value::Object(a))) => {
            let keys: BTreeSet<&String> = g.keys().chain(a.keys()).collect();
            for key in keys {
                path.push(key.clone());
                walk(path, g.get(key), a.get(key), out);
                path.pop();
            }
        }
        (Some(Value::Array(g)), Some(Value::Array(a)))
            if path
                .last()
                .is_some_and(|l| NAMED_LISTS.contains(&l.as_str())) =>
        {
            named_list(path, g, a, out)
        }
        (Some(Value::Array(g)), Some(Value::Array(a))) if g.len() == a.len() => {
            for (g, a) in g.iter().zip(a) {
                path.push("*".to_owned());
                walk(path, Some(g), Some(a), out);
                path.pop();
            }
        }
        _ => out.push(problem(path)),
    }
}

/// Items matched by `name`: the same names, and within each the allowed differences only. An
/// env entry may change its `value` unless either side takes it from somewhere (`valueFrom`:
/// a Secret or ConfigMap reference).
fn named_list(path: &mut Vec<String>, given: &[Value], answer: &[Value], out: &mut Vec<String>) {
    let name = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
    let given_names: Vec<Option<String>> = given.iter().map(name).collect();
    let answer_names: BTreeSet<Option<String>> = answer.iter().map(name).collect();
    if given_names.len() != answer.len()
        || given_names.iter().collect::<BTreeSet<_>>().len() != given_names.len()
        || given_names.iter().cloned().collect::<BTreeSet<_>>() != answer_names
    {
        out.push(format!(
            "{}: items were added, removed or renamed",
            dotted(path)
        ));
        return;
    }
    let is_env = path.last().is_some_and(|l| l == "env");
    for g in given {
        let Some(a) = answer.iter().find(|a| name(a) == name(g)) else {
            continue;
        };
        path.push("*".to_owned());
        if is_env {
            let from = |v: &Value| v.get("valueFrom").cloned();
            if from(g).is_some() || from(a).is_some() {
                if g != a {
                    out.push(format!(
                        "{}: an env var taken from a Secret or ConfigMap must stay as given",
                        dotted(path)
                    ));
                }
            } else if g.get("name") != a.get("name") {
                out.push(problem(path));
            }
        } else {
            walk(path, Some(g), Some(a), out);
        }
        path.pop();
    }
}

fn problem(path: &[String]) -> String {
    if let Some(field) = path.iter().find(|p| NEVER.contains(&p.as_str())) {
        return format!("{}: {field} may never be changed", dotted(path));
    }
    format!(
        "{}: changed; only resources, probes, replicas, annotations and plain env values may \
         change",
        dotted(path)
    )
}

fn dotted(path: &[String]) -> String {
    if path.is_empty() {
        "the object".to_owned()
    } else {
        path.join(".").replace(".*", "[]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web", "image": "nginx:1.27",
                        "env": [{"name": "MODE", "value": "a"},
                                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]
                    }]}
                }
            }
        })
    }

    #[test]
    fn allow_listed_changes_pass() {
        let given = deployment();
        let mut refined = given.clone();
        refined["spec"]["replicas"] = json!(3);
        refined["metadata"]["annotations"] = json!({"a": "b"});
        let container = &mut refined["spec"]["template"]["spec"]["containers"][0];
        container["resources"] = json!({"limits": {"memory": "256Mi"}});
        container["readinessProbe"] = json!({"tcpSocket": {"port": 80}});
        container["env"][0]["value"] = json!("b");
        assert_eq!(disallowed_changes(&given, &refined), Vec::<String>::new());
    }

    #[test]
    fn everything_else_is_refused() {
        let given = deployment();
        type Change = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "securityContext",
                Box::new(|v| {
                    v["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
                        json!({"privileged": true})
                }),
            ),
            (
                "hostNetwork",
                Box::new(|v| v["spec"]["template"]["spec"]["hostNetwork"] = json!(true)),
            ),
            (
                "hostPID",
                Box::new(|v| v["spec"]["template"]["spec"]["hostPID"] = json!(true)),
            ),
            (
                "volumes",
                Box::new(|v| {
                    v["spec"]["template"]["spec"]["volumes"] =
                        json!([{"name": "root", "hostPath": {"path": "/"}}])
                }),
            ),
            (
                "serviceAccountName",
                Box::new(|v| v["spec"]["template"]["spec"]["serviceAccountName"] = json!("admin")),
            ),
            // Added capabilities sit in a container's securityContext.
            (
                "securityContext",
                Box::new(|v| {
                    v["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
                        json!({"capabilities": {"add": ["SYS_ADMIN"]}})
                }),
            ),
            (
                "changed",
                Box::new(|v| v["metadata"]["labels"]["extra"] = json!("x")),
            ),
            (
                "changed",
                Box::new(|v| {
                    v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:latest")
                }),
            ),
            (
                "Secret",
                Box::new(|v| {
                    v["spec"]["template"]["spec"]["containers"][0]["env"][1] =
                        json!({"name": "PW", "value": "hunter2"})
                }),
            ),
            (
                "added",
                Box::new(|v| {
                    v["spec"]["template"]["spec"]["containers"][0]["env"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "NEW", "value": "x"}))
                }),
            ),
        ];
        for (expected, change) in cases {
            let mut answer = given.clone();
            change(&mut answer);
            let problems = disallowed_changes(&given, &answer);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected}: {problems:?}"
            );
        }
    }
}
