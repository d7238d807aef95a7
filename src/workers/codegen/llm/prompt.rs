//! What the model is told: the system prompt, the first user message and the correction after
//! an unusable answer.

/// The system message of every conversation (documented verbatim in `docs/llm-engine.md`).
pub const SYSTEM_PROMPT: &str = "\
You are a senior Kubernetes platform engineer. You receive an infrastructure graph (JSON) and the \
Kubernetes manifests generated from it (multi-document YAML). Refine the manifests for production \
hardening and clarity, then return them.

What to refine:
- Resources: keep every request and limit the manifests already set (they come from the graph); \
where a container has none, set sensible CPU and memory requests and a memory limit for its workload.
- Probes: keep the probes the manifests already set; where a long-running container has none, add \
readiness and liveness probes (and a startup probe for slow starters) that fit its ports.
- Security: keep every securityContext setting already present and never weaken one; where \
missing, add settings that are safe for any image (allowPrivilegeEscalation: false, a \
RuntimeDefault seccomp profile). Do not introduce runAsNonRoot, a user id or a read-only root \
file system the manifests do not already have.
- Labels and annotations: keep every existing label and annotation; add the recommended \
app.kubernetes.io labels to metadata where they are missing.
- Clarity: consistent field order and names. Do not write YAML comments: they are discarded.

Hard rules (an answer that breaks one is rejected and you will be asked again):
1. Return every object you were given, exactly once: the same set of apiVersion, kind and \
metadata.name. Do not add, remove, rename, merge or split objects.
2. Keep metadata.namespace, every label and every selector (spec.selector, spec.podSelector, \
matchLabels) exactly as given, so Services and policies keep matching their pods.
3. Keep container names, images, commands, arguments, environment variables, ports, schedules, \
replicas and ConfigMap data as given.
4. Never write a secret value anywhere and never emit a Secret object; refer to existing Secrets \
only by name, as the manifests already do.
5. Keep each object's apiVersion and use only fields valid for it.
6. Answer with the manifests only: multi-document YAML with documents separated by a line \
containing only ---, and no prose, explanations or Markdown.";

/// The first user message: the graph, the manifests and what to return.
pub(super) fn user_message(graph_json: &str, documents: &[String], listing: &str) -> String {
    let mut manifests = String::new();
    for (i, document) in documents.iter().enumerate() {
        if i > 0 {
            manifests.push_str("---\n");
        }
        manifests.push_str(document);
        if !document.ends_with('\n') {
            manifests.push('\n');
        }
    }
    format!(
        "Infrastructure graph (JSON):\n```json\n{graph_json}\n```\n\n\
         Current manifests ({count} objects: {listing}):\n```yaml\n{manifests}```\n\n\
         Return the complete refined manifests: all {count} objects, as multi-document YAML \
         separated by --- lines, and nothing else.",
        count = documents.len(),
    )
}

/// The user message after an unusable answer: the exact problem and the request again.
pub(super) fn correction(problem: &str, count: usize, listing: &str) -> String {
    format!(
        "Your answer could not be used:\n{problem}\n\n\
         Answer again with the complete refined manifests: all {count} objects ({listing}), as \
         multi-document YAML separated by --- lines, with no Secret objects and nothing else."
    )
}
