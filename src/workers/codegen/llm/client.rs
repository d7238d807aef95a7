//! The chat-completions API: its request and response shapes, one request tried again while
//! the endpoint is busy or unreachable (honouring `Retry-After`), and bounded, redacted bodies.

use super::{LlmClient, LlmError};
use crate::webhooks::sender::describe;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Tries of one HTTP request while the endpoint is busy or unreachable (429, 408, 5xx, transport).
const TRIES_PER_REQUEST: u32 = 5;
/// The longest wait between two tries, whatever `Retry-After` asks for.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The first backoff delay when the endpoint gives no `Retry-After`; it doubles per try.
pub(super) const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// Largest successful response read; a bigger one is treated as an unusable answer.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Longest body or answer excerpt carried in an error or a log line.
const EXCERPT_CHARS: usize = 500;

/// One chat message as the API spells it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Message {
    role: &'static str,
    content: String,
}

impl Message {
    /// A `system` message.
    pub(super) fn system(content: &str) -> Self {
        Self {
            role: "system",
            content: content.to_owned(),
        }
    }
    /// A `user` message.
    pub(super) fn user(content: String) -> Self {
        Self {
            role: "user",
            content,
        }
    }
    /// An `assistant` message (an earlier answer, replayed).
    pub(super) fn assistant(content: String) -> Self {
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
pub(super) enum Reply {
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

/// Requests one refinement may still send (`GANTRY_LLM_MAX_CALLS` across answers and tries).
pub(super) struct Budget {
    left: u32,
    spent: u32,
}

impl Budget {
    /// A budget of `calls` requests.
    pub(super) fn new(calls: u32) -> Self {
        Self {
            left: calls,
            spent: 0,
        }
    }

    /// Takes one request from the budget; false when it is spent.
    fn take(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        self.spent += 1;
        true
    }
}

impl LlmClient {
    /// Sends the conversation, trying again while the endpoint is busy or unreachable, as long
    /// as `budget` allows.
    pub(super) async fn complete(
        &self,
        messages: &[Message],
        budget: &mut Budget,
    ) -> Result<Reply, LlmError> {
        let request = ChatRequest {
            model: &self.model,
            temperature: 0,
            messages,
        };
        let mut last = String::new();
        for attempt in 1..=TRIES_PER_REQUEST {
            if !budget.take() {
                return Err(LlmError::Budget {
                    calls: budget.spent,
                    last: if last.is_empty() {
                        "no answer was usable".to_owned()
                    } else {
                        last
                    },
                });
            }
            let wait = match self.try_once(&request).await {
                Try::Done(reply) => return Ok(reply),
                Try::Refused(err) => return Err(err),
                Try::Busy {
                    reason,
                    retry_after,
                } => {
                    last = reason;
                    // Jitter, so jobs failing together do not come back together.
                    retry_after.unwrap_or_else(|| {
                        crate::workers::backoff::full_jitter(self.retry_base, MAX_WAIT, attempt)
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

    /// One HTTP try of `request`.
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
pub(super) fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
