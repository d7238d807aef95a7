//! The `llm` engine: asks an OpenAI-compatible chat-completions endpoint to refine the templates
//! engine's manifests, and accepts the answer only if it parses back into the same typed objects.
//!
//! The protocol (prompt, message layout, retries, what counts as a usable answer) is documented
//! for operators in `docs/llm-engine.md`; keep the two in step.

use super::objects::{Object, ObjectError};
use crate::config::LlmConfig;
use crate::domain::graph::Graph;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

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

/// Tries of one HTTP request while the endpoint is busy or unreachable (429, 408, 5xx, transport).
const TRIES_PER_REQUEST: u32 = 5;
/// The longest wait between two tries, whatever `Retry-After` asks for.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The first backoff delay when the endpoint gives no `Retry-After`; it doubles per try.
const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// Largest successful response read; a bigger one is treated as an unusable answer.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Longest body or answer excerpt carried in an error or a log line.
const EXCERPT_CHARS: usize = 500;

/// Why the `llm` engine produced no objects.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The client could not be built (bad base URL, TLS setup).
    #[error("cannot set up the LLM client: {0}")]
    Setup(String),
    /// The given objects or graph could not be written into the prompt.
    #[error("cannot write the LLM request: {0}")]
    Input(String),
    /// The endpoint stayed busy or unreachable (429, 408, 5xx, timeouts) for every try.
    #[error("LLM endpoint unavailable after {tries} tries: {last}")]
    Unavailable {
        /// Requests sent.
        tries: u32,
        /// What the last one came to.
        last: String,
    },
    /// The endpoint refused the request (a 4xx other than 408/429, or a redirect).
    #[error("LLM endpoint answered {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Start of the response body (at most 500 characters, API key redacted).
        body: String,
    },
    /// No answer parsed into the same set of objects within the allowed attempts.
    #[error("LLM answer unusable after {attempts} attempts: {problem}")]
    Unusable {
        /// Answers received.
        attempts: u32,
        /// What was wrong with the last one (at most 500 characters).
        problem: String,
    },
}

impl LlmError {
    /// Whether running the job again later may succeed (only an unavailable endpoint).
    pub fn is_retryable(&self) -> bool {
        matches!(self, LlmError::Unavailable { .. })
    }
}

/// A chat-completions client for one configured endpoint and model.
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: String,
    api_key: Option<String>,
    model: String,
    max_attempts: u32,
    retry_base: Duration,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log line.
        f.debug_struct("LlmClient")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// One chat message as the API spells it.
#[derive(Debug, Clone, Serialize)]
struct Message {
    role: &'static str,
    content: String,
}

impl Message {
    fn system(content: &str) -> Self {
        Self {
            role: "system",
            content: content.to_owned(),
        }
    }
    fn user(content: String) -> Self {
        Self {
            role: "user",
            content,
        }
    }
    fn assistant(content: String) -> Self {
        Self {
            role: "assistant",
            content,
        }
    }
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    temperature: u8,
    messages: &'a [Message],
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<AnswerMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct AnswerMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

/// What one completed request brought back.
#[derive(Debug)]
enum Reply {
    /// The assistant's text.
    Answer {
        text: String,
        finish_reason: Option<String>,
    },
    /// A 2xx response without usable content; nothing to show the model, so it is asked again.
    Malformed(String),
}

/// What one HTTP try came to.
enum Try {
    Done(Reply),
    Busy {
        reason: String,
        retry_after: Option<Duration>,
    },
    Refused(LlmError),
}

/// One given object: how it is matched, and the facts an answer must keep.
struct Expected {
    key: (String, String),
    value: Value,
}

impl LlmClient {
    /// A client for `config`, with `timeout` per request and `max_attempts` answers per refinement.
    pub fn new(
        config: &LlmConfig,
        timeout: Duration,
        max_attempts: u32,
    ) -> Result<LlmClient, LlmError> {
        let endpoint = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        match reqwest::Url::parse(&endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(LlmError::Setup(format!(
                    "{:?} is not an http(s) URL",
                    config.base_url
                )))
            }
        }
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // A redirected POST may turn into a GET; a wrong base URL should fail loudly instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Gantry-Codegen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Setup(describe(&e)))?;
        Ok(LlmClient {
            http,
            endpoint,
            api_key: config.api_key.clone(),
            model: config.model.clone(),
            // Zero would mean "never ask", which can only be a misconfiguration.
            max_attempts: max_attempts.max(1),
            retry_base: DEFAULT_RETRY_BASE,
        })
    }

    /// Sets the first backoff delay when the endpoint sends no `Retry-After` (default 1 s).
    pub fn with_retry_base(mut self, base: Duration) -> Self {
        self.retry_base = base;
        self
    }

    /// Refines `objects` (the templates' output for `graph`); the answer must parse into the same
    /// set of typed objects, returned in the order of `objects`.
    pub async fn refine(&self, graph: &Graph, objects: &[Object]) -> Result<Vec<Object>, LlmError> {
        if objects.is_empty() {
            // Nothing to refine, and an empty answer would be indistinguishable from a refusal.
            return Ok(Vec::new());
        }
        let mut documents = Vec::with_capacity(objects.len());
        let mut expected = Vec::with_capacity(objects.len());
        for object in objects {
            let yaml = object.to_yaml().map_err(|e| {
                LlmError::Input(format!("{}/{}: {e}", object.kind(), object.name()))
            })?;
            let value = yaml_value(&yaml).map_err(|e| {
                LlmError::Input(format!("{}/{}: {e}", object.kind(), object.name()))
            })?;
            let object_key = key(object);
            // Objects are matched by kind and name, so a repeated pair could never be answered.
            if expected.iter().any(|e: &Expected| e.key == object_key) {
                return Err(LlmError::Input(format!(
                    "{}/{} is given twice",
                    object_key.0, object_key.1
                )));
            }
            expected.push(Expected {
                key: object_key,
                value,
            });
            documents.push(yaml);
        }
        let graph_json = serde_json::to_string_pretty(graph)
            .map_err(|e| LlmError::Input(format!("graph: {e}")))?;
        let listing = expected
            .iter()
            .map(|e| format!("{}/{}", e.key.0, e.key.1))
            .collect::<Vec<_>>()
            .join(", ");

        let mut messages = vec![
            Message::system(SYSTEM_PROMPT),
            Message::user(user_message(&graph_json, &documents, &listing)),
        ];
        let mut problem = String::new();
        for attempt in 1..=self.max_attempts {
            match self.complete(&messages).await? {
                Reply::Malformed(why) => {
                    tracing::warn!(attempt, problem = %why, "LLM response unusable; asking again");
                    problem = why;
                }
                Reply::Answer {
                    text,
                    finish_reason,
                } => match check_answer(&text, finish_reason.as_deref(), &expected) {
                    Ok(mut refined) => {
                        tracing::info!(
                            attempt,
                            objects = refined.len(),
                            "LLM refined the manifests"
                        );
                        // Given order, so rendering stays deterministic whatever order the model chose.
                        return Ok(expected
                            .iter()
                            .filter_map(|e| refined.remove(&e.key))
                            .collect());
                    }
                    Err(why) => {
                        tracing::warn!(
                            attempt,
                            problem = %excerpt(&why),
                            "LLM answer does not parse into the given objects; asking again"
                        );
                        messages.push(Message::assistant(text));
                        messages.push(Message::user(correction(&why, objects.len(), &listing)));
                        problem = why;
                    }
                },
            }
        }
        Err(LlmError::Unusable {
            attempts: self.max_attempts,
            problem: excerpt(&problem),
        })
    }

    /// Sends the conversation, trying again while the endpoint is busy or unreachable.
    async fn complete(&self, messages: &[Message]) -> Result<Reply, LlmError> {
        let request = ChatRequest {
            model: &self.model,
            temperature: 0,
            messages,
        };
        let mut last = String::new();
        for attempt in 1..=TRIES_PER_REQUEST {
            let wait = match self.try_once(&request).await {
                Try::Done(reply) => return Ok(reply),
                Try::Refused(err) => return Err(err),
                Try::Busy {
                    reason,
                    retry_after,
                } => {
                    last = reason;
                    retry_after.unwrap_or_else(|| {
                        crate::workers::backoff::ceiling(self.retry_base, MAX_WAIT, attempt)
                    })
                }
            };
            if attempt < TRIES_PER_REQUEST {
                tracing::warn!(
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    reason = %last,
                    "LLM endpoint busy or unreachable; retrying"
                );
                tokio::time::sleep(wait).await;
            }
        }
        Err(LlmError::Unavailable {
            tries: TRIES_PER_REQUEST,
            last,
        })
    }

    async fn try_once(&self, request: &ChatRequest<'_>) -> Try {
        let mut builder = self.http.post(&self.endpoint).json(request);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(err) => {
                return Try::Busy {
                    reason: describe(&err),
                    retry_after: None,
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            return match read_limited(&mut response, MAX_RESPONSE_BYTES).await {
                Ok(Some(body)) => Try::Done(parse_response(&body)),
                Ok(None) => Try::Done(Reply::Malformed(format!(
                    "the response is larger than {} MiB",
                    MAX_RESPONSE_BYTES / (1024 * 1024)
                ))),
                // The body broke off mid-way: a transport failure, worth another try.
                Err(err) => Try::Busy {
                    reason: describe(&err),
                    retry_after: None,
                },
            };
        }
        let retry_after = retry_after(response.headers(), Utc::now());
        let body = match read_limited(&mut response, 64 * 1024).await {
            Ok(Some(body)) => self.redact(&String::from_utf8_lossy(&body)),
            // The excerpt is a courtesy; the status is what matters.
            Ok(None) | Err(_) => String::new(),
        };
        let code = status.as_u16();
        if code == 429 || code == 408 || status.is_server_error() {
            Try::Busy {
                reason: format!("answered {status}: {body}"),
                retry_after,
            }
        } else {
            Try::Refused(LlmError::Rejected { status: code, body })
        }
    }

    /// A body excerpt with the API key removed, should the endpoint echo it.
    fn redact(&self, body: &str) -> String {
        let short = excerpt(body);
        match &self.api_key {
            Some(key) if !key.is_empty() => short.replace(key.as_str(), "<redacted>"),
            _ => short,
        }
    }
}

/// The first user message: the graph, the manifests and what to return.
fn user_message(graph_json: &str, documents: &[String], listing: &str) -> String {
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
fn correction(problem: &str, count: usize, listing: &str) -> String {
    format!(
        "Your answer could not be used:\n{problem}\n\n\
         Answer again with the complete refined manifests: all {count} objects ({listing}), as \
         multi-document YAML separated by --- lines, with no Secret objects and nothing else."
    )
}

/// The assistant's text of a 2xx body, or why there is none.
fn parse_response(body: &[u8]) -> Reply {
    let response: ChatResponse = match serde_json::from_slice(body) {
        Ok(response) => response,
        Err(err) => {
            return Reply::Malformed(format!(
                "the response is not chat-completions JSON ({err}): {}",
                excerpt(&String::from_utf8_lossy(body))
            ))
        }
    };
    let Some(choice) = response.choices.into_iter().next() else {
        return Reply::Malformed("the response has no choices".to_owned());
    };
    let message = choice.message.unwrap_or_default();
    match message.content {
        Some(text) if !text.trim().is_empty() => Reply::Answer {
            text,
            finish_reason: choice.finish_reason,
        },
        _ => Reply::Malformed(match message.refusal {
            Some(refusal) => format!("the model refused: {}", excerpt(&refusal)),
            None => format!(
                "choices[0].message.content is empty (finish_reason: {})",
                choice.finish_reason.as_deref().unwrap_or("none")
            ),
        }),
    }
}

/// Parses an answer into objects keyed by (kind, name), or says everything wrong with it.
fn check_answer(
    text: &str,
    finish_reason: Option<&str>,
    expected: &[Expected],
) -> Result<BTreeMap<(String, String), Object>, String> {
    let mut problems = Vec::new();
    if finish_reason == Some("length") {
        problems.push(
            "the answer was cut off (finish_reason: length); leave out anything not needed"
                .to_owned(),
        );
    }
    let wanted: BTreeMap<&(String, String), &Expected> =
        expected.iter().map(|e| (&e.key, e)).collect();
    let mut found: BTreeMap<(String, String), Object> = BTreeMap::new();
    for (index, document) in split_documents(text).iter().enumerate() {
        let number = index + 1;
        let object = match Object::from_yaml(document) {
            Ok(object) => object,
            Err(err) => {
                problems.push(document_problem(number, &err));
                continue;
            }
        };
        let object_key = key(&object);
        let label = format!("{}/{}", object_key.0, object_key.1);
        let Some(given) = wanted.get(&object_key) else {
            problems.push(format!(
                "document {number}: {label} was not given; add or rename no objects"
            ));
            continue;
        };
        if found.contains_key(&object_key) {
            problems.push(format!("document {number}: {label} appears more than once"));
            continue;
        }
        match object
            .to_yaml()
            .map_err(|e| e.to_string())
            .and_then(|y| yaml_value(&y))
        {
            Ok(value) => problems.extend(
                kept_facts(&given.value, &value)
                    .into_iter()
                    .map(|p| format!("{label}: {p}")),
            ),
            Err(err) => problems.push(format!("{label}: {err}")),
        }
        found.insert(object_key, object);
    }
    for e in expected {
        if !found.contains_key(&e.key) {
            problems.push(format!(
                "{}/{} is missing; return every object you were given",
                e.key.0, e.key.1
            ));
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems.join("\n"))
    }
}

/// What is wrong with a document that is not one of our objects, in words a model can act on.
fn document_problem(number: usize, err: &ObjectError) -> String {
    match err {
        ObjectError::Unsupported { kind, .. } if kind == "Secret" => format!(
            "document {number} is a Secret; never emit Secret objects or secret values, refer to \
             existing Secrets by name only"
        ),
        ObjectError::Unsupported { api_version, kind }
            if api_version.is_empty() || kind.is_empty() =>
        {
            format!(
                "document {number} has no apiVersion or kind (prose or a fragment?); answer with \
                 YAML manifests only"
            )
        }
        ObjectError::Unsupported { api_version, kind } => format!(
            "document {number}: {api_version} {kind} is not one of the given objects' kinds; \
             keep every apiVersion and kind as given"
        ),
        other => format!("document {number}: {other}"),
    }
}

/// Splits an answer into YAML documents: `---` and `...` lines separate them, documents with no
/// content are skipped, and when the answer has Markdown fences (```` ```yaml ````) only the
/// fenced parts are read (models often wrap YAML in a fence with a sentence around it).
///
/// Splitting on lines is exact here: YAML forbids a document marker at column 0 inside a
/// document, and a backtick cannot start a line of a block document, so neither is content.
fn split_documents(text: &str) -> Vec<String> {
    let fenced = text.lines().any(is_fence);
    let mut inside_fence = false;
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut finish = |current: &mut String| {
        if current.lines().any(is_content) {
            documents.push(std::mem::take(current));
        } else {
            current.clear();
        }
    };
    for line in text.lines() {
        if is_fence(line) {
            finish(&mut current);
            inside_fence = !inside_fence;
        } else if fenced && !inside_fence {
            // Prose around the fenced YAML.
        } else if line.starts_with('%') {
            // A directive belongs to no document's content.
            finish(&mut current);
        } else if let Some(rest) = marker(line, "---") {
            finish(&mut current);
            // `--- |` or `--- !tag` start the document on the marker's line.
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
            }
        } else if marker(line, "...").is_some() {
            finish(&mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    finish(&mut current);
    documents
}

/// The rest of `line` after a document marker, if it is one (the marker then a blank or the end).
fn marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t', '\r'])).then(|| rest.trim())
}

fn is_fence(line: &str) -> bool {
    line.starts_with("```")
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

/// How an object is matched between the given manifests and the answer.
fn key(object: &Object) -> (String, String) {
    (object.kind().to_owned(), object.name().to_owned())
}

/// An object's YAML as a JSON value, to compare the facts a refinement must keep.
fn yaml_value(yaml: &str) -> Result<Value, String> {
    serde_saphyr::from_str::<Value>(yaml).map_err(|e| e.to_string())
}

/// Fields that must be identical in the answer (where selectors and targets live).
const SAME: &[&str] = &[
    "/metadata/namespace",
    "/spec/selector",
    "/spec/podSelector",
    "/spec/scaleTargetRef",
    "/spec/serviceName",
];
/// Label maps whose given entries must all still be present.
const LABELS: &[&str] = &[
    "/metadata/labels",
    "/spec/template/metadata/labels",
    "/spec/jobTemplate/spec/template/metadata/labels",
];
/// Pod specs whose containers must keep their images.
const POD_SPECS: &[&str] = &[
    "/spec/template/spec",
    "/spec/jobTemplate/spec/template/spec",
];

/// The hard rules the code can check on one object: selectors, labels, namespace and images.
fn kept_facts(given: &Value, answer: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for pointer in SAME {
        if given.pointer(pointer) != answer.pointer(pointer) {
            problems.push(format!(
                "{} changed; keep it exactly as given",
                dotted(pointer)
            ));
        }
    }
    for pointer in LABELS {
        let Some(Value::Object(labels)) = given.pointer(pointer) else {
            continue;
        };
        for (name, value) in labels {
            let kept = answer.pointer(pointer).and_then(|l| l.get(name));
            if kept != Some(value) {
                problems.push(format!(
                    "{} must keep {name}: {}",
                    dotted(pointer),
                    value.as_str().unwrap_or_default()
                ));
            }
        }
    }
    for pointer in POD_SPECS {
        let answer_images = images(answer.pointer(pointer));
        for (container, image) in images(given.pointer(pointer)) {
            match answer_images.get(&container) {
                None => problems.push(format!("container {container} is missing")),
                Some(kept) if *kept != image => {
                    problems.push(format!("container {container} must keep image {image}"))
                }
                Some(_) => {}
            }
        }
    }
    problems
}

/// Container name → image of a pod spec (containers and init containers).
fn images(pod_spec: Option<&Value>) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let Some(pod_spec) = pod_spec else {
        return found;
    };
    for list in ["containers", "initContainers"] {
        for container in pod_spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = container
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let image = container
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or_default();
            found.insert(name.to_owned(), image.to_owned());
        }
    }
    found
}

/// `/spec/selector` → `spec.selector`.
fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// How long `Retry-After` asks to wait (delta-seconds or HTTP-date), capped at [`MAX_WAIT`].
fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds).min(MAX_WAIT));
    }
    let at = http_date(value)?;
    // A date in the past means "now".
    Some((at - now).to_std().unwrap_or(Duration::ZERO).min(MAX_WAIT))
}

/// An HTTP-date in any of the three forms RFC 9110 requires recipients to accept.
fn http_date(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(value, "%A, %d-%b-%y %H:%M:%S GMT")
                .ok()
                .map(|d| d.and_utc())
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(value, "%a %b %e %H:%M:%S %Y")
                .ok()
                .map(|d| d.and_utc())
        })
}

/// Reads a body up to `limit` bytes; `None` when it is larger.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// At most [`EXCERPT_CHARS`] characters of `text`, marked when cut.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

use crate::webhooks::sender::describe;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_fences_and_markers() {
        let answer = "```yaml\n---\na: 1\n--- # second\nb: 2\n...\n# only a comment\n---\n\n```\n";
        assert_eq!(split_documents(answer), ["a: 1\n", "b: 2\n"]);
        // Markers only count at column 0 and followed by a blank.
        let nested = "a: |\n  ---\n  x\nb: ---x\n";
        assert_eq!(split_documents(nested), [nested]);
        assert_eq!(split_documents("--- |\n  text\n"), ["|\n  text\n"]);
        assert!(split_documents("```\n```").is_empty());
        let wrapped = "Sure:\n```yaml\na: 1\n```\nand\n```\nb: 2\n```\nDone.";
        assert_eq!(split_documents(wrapped), ["a: 1\n", "b: 2\n"]);
        // A fence cut off by the token limit still yields what came before the cut.
        assert_eq!(split_documents("```yaml\na: 1\n"), ["a: 1\n"]);
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = DateTime::parse_from_rfc2822("Sun, 06 Nov 1994 08:49:37 GMT")
            .unwrap()
            .with_timezone(&Utc);
        let header = |v: &str| {
            let mut map = reqwest::header::HeaderMap::new();
            map.insert(reqwest::header::RETRY_AFTER, v.parse().unwrap());
            retry_after(&map, now)
        };
        assert_eq!(header("7"), Some(Duration::from_secs(7)));
        assert_eq!(header("3600"), Some(MAX_WAIT));
        assert_eq!(
            header("Sun, 06 Nov 1994 08:49:47 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            header("Sunday, 06-Nov-94 08:49:42 GMT"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            header("Sun Nov  6 08:49:39 1994"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            header("Sun, 06 Nov 1994 08:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(header("soon"), None);
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new(), now), None);
    }

    #[test]
    fn excerpts_are_short_and_cut_on_characters() {
        let long = "é".repeat(2000);
        let short = excerpt(&long);
        assert_eq!(short.chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt(" ok "), "ok");
    }

    #[test]
    fn responses_without_content_are_malformed() {
        for body in [
            &b"not json"[..],
            br#"{"choices": []}"#,
            br#"{"choices": [{"message": {"content": null, "refusal": "no"}}]}"#,
            br#"{"choices": [{"message": {"content": "  "}, "finish_reason": "stop"}]}"#,
        ] {
            assert!(matches!(parse_response(body), Reply::Malformed(_)));
        }
        let ok = br#"{"choices": [{"message": {"role": "assistant", "content": "a: 1"}, "finish_reason": "stop"}]}"#;
        assert!(matches!(parse_response(ok), Reply::Answer { .. }));
    }

    #[test]
    fn kept_facts_catch_selector_label_and_image_changes() {
        let given = serde_json::json!({
            "metadata": {"namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
                }
            }
        });
        assert!(kept_facts(&given, &given).is_empty());
        let mut refined = given.clone();
        refined["metadata"]["labels"]["tier"] = "frontend".into();
        refined["spec"]["template"]["spec"]["containers"][0]["resources"] =
            serde_json::json!({"limits": {"memory": "256Mi"}});
        assert!(
            kept_facts(&given, &refined).is_empty(),
            "additions are fine"
        );
        let mut broken = given.clone();
        broken["metadata"]["namespace"] = "other".into();
        broken["spec"]["selector"]["matchLabels"]["app"] = "x".into();
        broken["spec"]["template"]["metadata"]["labels"] = serde_json::json!({});
        broken["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:latest".into();
        let problems = kept_facts(&given, &broken);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}
