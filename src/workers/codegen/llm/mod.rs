//! The `llm` engine: asks an OpenAI-compatible chat-completions endpoint to refine the templates
//! engine's manifests, and accepts the answer only if it parses back into the same typed objects.
//!
//! The protocol (prompt, message layout, retries, what counts as a usable answer) is documented
//! for operators in `docs/llm-engine.md`; keep the two in step.
//!
//! `prompt` says what the model is asked, `client` sends it (with retries, within a budget of
//! calls), `answer` checks what comes back and `allowed` what it may have changed.

mod allowed;
mod answer;
mod client;
mod prompt;

pub use prompt::SYSTEM_PROMPT;

use crate::config::LlmConfig;
use crate::domain::graph::Graph;
use crate::webhooks::sender::describe;
use crate::workers::codegen::objects::Object;
use allowed::disallowed_changes;
use answer::{check_answer, key, yaml_value, Expected};
use client::{excerpt, Budget, Message, Reply, DEFAULT_RETRY_BASE};
use prompt::{correction, user_message};
use std::time::Duration;

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
    /// The answer changed fields outside the allow-list (resources, probes, replicas,
    /// annotations, plain env values): refused outright, not asked again.
    #[error("LLM answer refused: {problem}")]
    Disallowed {
        /// The changes (at most 500 characters).
        problem: String,
    },
    /// `GANTRY_LLM_MAX_CALLS` requests were sent without a usable answer.
    #[error("LLM call budget of {calls} requests spent without a usable answer: {last}")]
    Budget {
        /// Requests sent.
        calls: u32,
        /// What the last one came to.
        last: String,
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
    max_calls: u32,
    retry_base: Duration,
}

/// Requests one refinement may send in all when the client is not told otherwise
/// (`GANTRY_LLM_MAX_CALLS`'s default).
pub const DEFAULT_MAX_CALLS: u32 = 10;

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log line.
        f.debug_struct("LlmClient")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("max_attempts", &self.max_attempts)
            .field("max_calls", &self.max_calls)
            .finish()
    }
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
            // The configured endpoint directly: no proxy from the environment in between.
            .no_proxy()
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
            max_calls: DEFAULT_MAX_CALLS,
            retry_base: DEFAULT_RETRY_BASE,
        })
    }

    /// Caps the requests one refinement sends in all (answers × HTTP tries; at least 1).
    pub fn with_max_calls(mut self, max_calls: u32) -> Self {
        self.max_calls = max_calls.max(1);
        self
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
        let mut budget = Budget::new(self.max_calls);
        for attempt in 1..=self.max_attempts {
            match self.complete(&messages, &mut budget).await? {
                Reply::Malformed(why) => {
                    tracing::warn!(attempt, problem = %why, "LLM response unusable; asking again");
                    problem = why;
                }
                Reply::Answer {
                    text,
                    finish_reason,
                } => match check_answer(&text, finish_reason.as_deref(), &expected) {
                    Ok(mut refined) => {
                        let changes: Vec<String> = expected
                            .iter()
                            .filter_map(|e| refined.get(&e.key).map(|(_, v)| (e, v)))
                            .flat_map(|(e, answer)| {
                                disallowed_changes(&e.value, answer)
                                    .into_iter()
                                    .map(|p| format!("{}/{}: {p}", e.key.0, e.key.1))
                            })
                            .collect();
                        if !changes.is_empty() {
                            tracing::warn!(
                                attempt,
                                problem = %excerpt(&changes.join("; ")),
                                "LLM answer changes fields outside the allow-list; refused"
                            );
                            return Err(LlmError::Disallowed {
                                problem: excerpt(&changes.join("\n")),
                            });
                        }
                        tracing::info!(
                            attempt,
                            objects = refined.len(),
                            "LLM refined the manifests"
                        );
                        // Given order, so rendering stays deterministic whatever order the model chose.
                        return Ok(expected
                            .iter()
                            .filter_map(|e| refined.remove(&e.key).map(|(object, _)| object))
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
}
