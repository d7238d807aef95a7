//! Health checks as pure rules: check kinds, the condition language (`status == 200`,
//! `$.status == "ok"`, `response_time < 500ms`, `certificate_expiry > 14d`, `connected`, …),
//! evaluating conditions against what a probe observed, and the hysteresis state machine.
//! No I/O lives here.

use std::time::Duration;

/// What a check probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// An HTTP(S) request to a URL.
    Http,
    /// A TCP connection to `host:port`.
    Tcp,
    /// A DNS query.
    Dns,
    /// A TLS handshake with `host:port`.
    Tls,
}

impl CheckKind {
    /// Every kind.
    pub const ALL: [CheckKind; 4] = [
        CheckKind::Http,
        CheckKind::Tcp,
        CheckKind::Dns,
        CheckKind::Tls,
    ];

    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Http => "http",
            CheckKind::Tcp => "tcp",
            CheckKind::Dns => "dns",
            CheckKind::Tls => "tls",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<CheckKind> {
        CheckKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The HTTP status code.
    Status,
    /// The response body as text.
    Body,
    /// A JSONPath into the response body (`$.status`).
    JsonPath(String),
    /// Time to the answer.
    ResponseTime,
    /// Time left until the peer certificate expires.
    CertificateExpiry,
    /// A response header (lower-cased name).
    Header(String),
    /// Whether the TCP connection was established.
    Connected,
    /// The DNS response code (`NOERROR`, `NXDOMAIN`, …).
    Rcode,
    /// The DNS answers, as text.
    Answer,
    /// Whether the certificate is valid for the host name.
    HostnameValid,
}

impl Subject {
    fn allowed_for(&self, kind: CheckKind) -> bool {
        use Subject::*;
        match kind {
            CheckKind::Http => matches!(
                self,
                Status | Body | JsonPath(_) | ResponseTime | CertificateExpiry | Header(_)
            ),
            CheckKind::Tcp => matches!(self, Connected | ResponseTime),
            CheckKind::Dns => matches!(self, Rcode | Answer | ResponseTime),
            CheckKind::Tls => matches!(
                self,
                CertificateExpiry | HostnameValid | Connected | ResponseTime
            ),
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `contains`
    Contains,
}

/// The right-hand side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A number (`200`).
    Number(f64),
    /// A duration (`500ms`, `14d`).
    Duration(Duration),
    /// A quoted string or a bare word (`"ok"`, `NOERROR`).
    Text(String),
    /// `true` / `false`.
    Bool(bool),
}

/// A parsed condition, with the text it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The expression as written.
    pub expr: String,
    /// What it looks at.
    pub subject: Subject,
    /// How it compares.
    pub op: Op,
    /// What it compares with.
    pub operand: Operand,
}

/// Operators as written, longest first so `<=` is not read as `<`.
const OPS: [(&str, Op); 7] = [
    ("==", Op::Eq),
    ("!=", Op::Ne),
    ("<=", Op::Le),
    (">=", Op::Ge),
    ("<", Op::Lt),
    (">", Op::Gt),
    ("contains", Op::Contains),
];

/// Where the operator starts (outside quotes and JSONPath brackets) and which it is.
fn find_op(expr: &str) -> Option<(usize, &'static str, Op)> {
    let bytes = expr.as_bytes();
    let (mut quoted, mut depth) = (false, 0i32);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if quoted {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                quoted = false;
            }
        } else if c == b'"' || c == b'\'' {
            quoted = c == b'"';
        } else if c == b'[' || c == b'(' {
            depth += 1;
        } else if c == b']' || c == b')' {
            depth -= 1;
        } else if depth == 0 {
            for (text, op) in OPS {
                // Bytes, not `str` slicing: `i` may sit inside a multi-byte character.
                if bytes[i..].starts_with(text.as_bytes()) {
                    let word = text.chars().all(char::is_alphabetic);
                    let before_ok = !word || i == 0 || bytes[i - 1].is_ascii_whitespace();
                    let after = i + text.len();
                    let after_ok =
                        !word || after >= bytes.len() || bytes[after].is_ascii_whitespace();
                    if before_ok && after_ok {
                        return Some((i, text, op));
                    }
                }
            }
        }
        i += 1;
    }
    None
}

/// Parses a duration such as `500ms`, `30s`, `14d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

fn parse_subject(text: &str) -> Result<Subject, String> {
    Ok(match text {
        "status" => Subject::Status,
        "body" => Subject::Body,
        "response_time" => Subject::ResponseTime,
        "certificate_expiry" => Subject::CertificateExpiry,
        "connected" => Subject::Connected,
        "rcode" => Subject::Rcode,
        "answer" => Subject::Answer,
        "hostname_valid" => Subject::HostnameValid,
        path if path.starts_with('$') => {
            jsonpath_rust::parser::parse_json_path(path)
                .map_err(|e| format!("{path:?} is not a JSONPath: {e}"))?;
            Subject::JsonPath(path.to_owned())
        }
        header if header.starts_with("header.") && header.len() > "header.".len() => {
            Subject::Header(header["header.".len()..].to_ascii_lowercase())
        }
        other => {
            return Err(format!(
                "unknown subject {other:?}: expected status, body, $.<jsonpath>, response_time, \
                 certificate_expiry, header.<name>, connected, rcode, answer or hostname_valid"
            ))
        }
    })
}

fn parse_operand(text: &str) -> Result<Operand, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("nothing to compare with".to_owned());
    }
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text)
            .map(Operand::Text)
            .map_err(|_| format!("{text} is not a well-formed quoted string"));
    }
    if let Ok(number) = text.parse::<f64>() {
        return Ok(Operand::Number(number));
    }
    match text {
        "true" => return Ok(Operand::Bool(true)),
        "false" => return Ok(Operand::Bool(false)),
        _ => {}
    }
    if let Some(duration) = parse_duration(text) {
        return Ok(Operand::Duration(duration));
    }
    if text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Ok(Operand::Text(text.to_owned()));
    }
    Err(format!(
        "{text:?} is not a number, duration, true/false, word or quoted string"
    ))
}

/// Parses one condition of a check of `kind`; the error says what is wrong with it.
pub fn parse_condition(expr: &str, kind: CheckKind) -> Result<Condition, String> {
    let trimmed = expr.trim();
    let (subject, op, operand) = match find_op(trimmed) {
        Some((at, text, op)) => (
            trimmed[..at].trim(),
            op,
            parse_operand(&trimmed[at + text.len()..])?,
        ),
        // A bare boolean subject: `connected`, `hostname_valid`.
        None => (trimmed, Op::Eq, Operand::Bool(true)),
    };
    let subject = parse_subject(subject)?;
    if !subject.allowed_for(kind) {
        return Err(format!(
            "{subject:?} does not apply to a {} check",
            kind.as_str()
        ));
    }
    let ordered = matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge);
    let fits = match (&subject, &operand) {
        (Subject::Status, Operand::Number(_)) => op != Op::Contains,
        (Subject::ResponseTime | Subject::CertificateExpiry, Operand::Duration(_)) => ordered,
        (Subject::Body | Subject::Header(_) | Subject::Answer, Operand::Text(_)) => {
            matches!(op, Op::Eq | Op::Ne | Op::Contains)
        }
        (Subject::JsonPath(_), Operand::Text(_) | Operand::Bool(_)) => {
            matches!(op, Op::Eq | Op::Ne | Op::Contains)
        }
        (Subject::JsonPath(_), Operand::Number(_)) => op != Op::Contains,
        (Subject::Connected | Subject::HostnameValid, Operand::Bool(_)) => {
            matches!(op, Op::Eq | Op::Ne)
        }
        (Subject::Rcode, Operand::Text(_)) => matches!(op, Op::Eq | Op::Ne),
        _ => false,
    };
    if !fits {
        return Err(format!(
            "cannot compare {subject:?} with {operand:?} using {op:?} (e.g. \"status == 200\", \
             \"response_time < 500ms\", \"body contains \\\"ok\\\"\")"
        ));
    }
    Ok(Condition {
        expr: expr.to_owned(),
        subject,
        op,
        operand,
    })
}

/// What a probe saw; fields a kind does not produce stay empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The target answered (HTTP response, TCP connection, DNS reply, TLS handshake).
    pub answered: bool,
    /// Why it did not answer (or what else went wrong).
    pub error: Option<String>,
    /// Time to the answer.
    pub response_time: Duration,
    /// HTTP status.
    pub status: Option<u16>,
    /// HTTP body (possibly truncated).
    pub body: Option<String>,
    /// HTTP headers (lower-cased names).
    pub headers: Vec<(String, String)>,
    /// Time left on the peer certificate (negative: expired), if there was one.
    pub certificate_expiry: Option<chrono::Duration>,
    /// Whether the certificate chain and host name verified (TLS).
    pub hostname_valid: Option<bool>,
    /// DNS response code.
    pub rcode: Option<String>,
    /// DNS answers as text.
    pub answers: Vec<String>,
}

/// One condition's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The expression.
    pub expr: String,
    /// Whether it held.
    pub success: bool,
    /// What was observed, as text (`None` when nothing was).
    pub actual: Option<String>,
}

fn compare_f64(actual: f64, op: Op, expected: f64) -> bool {
    match op {
        Op::Eq => actual == expected,
        Op::Ne => actual != expected,
        Op::Lt => actual < expected,
        Op::Le => actual <= expected,
        Op::Gt => actual > expected,
        Op::Ge => actual >= expected,
        Op::Contains => false,
    }
}

fn compare_text(actual: &str, op: Op, expected: &str) -> bool {
    match op {
        Op::Eq => actual == expected,
        Op::Ne => actual != expected,
        Op::Contains => actual.contains(expected),
        _ => false,
    }
}

fn format_duration(ms: f64) -> String {
    format!("{}ms", ms.round() as i64)
}

/// Evaluates `condition` against `seen`.
pub fn evaluate(condition: &Condition, seen: &Observation) -> Verdict {
    let (success, actual) = match (&condition.subject, &condition.operand) {
        (Subject::Status, Operand::Number(n)) => match seen.status {
            Some(s) => (
                compare_f64(f64::from(s), condition.op, *n),
                Some(s.to_string()),
            ),
            None => (false, None),
        },
        (Subject::ResponseTime, Operand::Duration(d)) => {
            let ms = seen.response_time.as_secs_f64() * 1000.0;
            (
                seen.answered && compare_f64(ms, condition.op, d.as_secs_f64() * 1000.0),
                Some(format_duration(ms)),
            )
        }
        (Subject::CertificateExpiry, Operand::Duration(d)) => match seen.certificate_expiry {
            Some(left) => {
                let ms = left.num_milliseconds() as f64;
                (
                    compare_f64(ms, condition.op, d.as_secs_f64() * 1000.0),
                    Some(format!("{}h", left.num_hours())),
                )
            }
            None => (false, None),
        },
        (Subject::Body, Operand::Text(t)) => match &seen.body {
            Some(body) => (
                compare_text(body, condition.op, t),
                Some(body.chars().take(200).collect()),
            ),
            None => (false, None),
        },
        (Subject::Header(name), Operand::Text(t)) => {
            match seen.headers.iter().find(|(n, _)| n == name) {
                Some((_, value)) => (compare_text(value, condition.op, t), Some(value.clone())),
                None => (false, None),
            }
        }
        (Subject::JsonPath(path), operand) => evaluate_json_path(path, condition.op, operand, seen),
        (Subject::Connected, Operand::Bool(b)) => (
            (seen.answered == *b) == (condition.op == Op::Eq),
            Some(seen.answered.to_string()),
        ),
        (Subject::HostnameValid, Operand::Bool(b)) => match seen.hostname_valid {
            Some(valid) => (
                (valid == *b) == (condition.op == Op::Eq),
                Some(valid.to_string()),
            ),
            None => (false, None),
        },
        (Subject::Rcode, Operand::Text(t)) => match &seen.rcode {
            Some(rcode) => (
                compare_text(
                    &rcode.to_ascii_uppercase(),
                    condition.op,
                    &t.to_ascii_uppercase(),
                ),
                Some(rcode.clone()),
            ),
            None => (false, None),
        },
        (Subject::Answer, Operand::Text(t)) => {
            let joined = seen.answers.join(", ");
            let success = match condition.op {
                Op::Contains => seen.answers.iter().any(|a| a.contains(t.as_str())),
                op => compare_text(&joined, op, t),
            };
            (success, Some(joined))
        }
        _ => (false, None),
    };
    Verdict {
        expr: condition.expr.clone(),
        success,
        actual,
    }
}

fn evaluate_json_path(
    path: &str,
    op: Op,
    operand: &Operand,
    seen: &Observation,
) -> (bool, Option<String>) {
    use jsonpath_rust::JsonPath;
    let Some(body) = &seen.body else {
        return (false, None);
    };
    let Ok(document) = serde_json::from_str::<serde_json::Value>(body) else {
        return (false, Some("body is not JSON".to_owned()));
    };
    let found = match document.query(path) {
        Ok(found) => found,
        Err(_) => return (false, None),
    };
    let Some(first) = found.first() else {
        return (false, None);
    };
    let actual = match first {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let success = match (operand, first) {
        (Operand::Number(n), serde_json::Value::Number(v)) => {
            v.as_f64().is_some_and(|v| compare_f64(v, op, *n))
        }
        (Operand::Bool(b), serde_json::Value::Bool(v)) => (v == b) == (op == Op::Eq),
        (Operand::Text(t), serde_json::Value::String(v)) => compare_text(v, op, t),
        (Operand::Text(t), _) => compare_text(&actual, op, t),
        _ => false,
    };
    (success, Some(actual))
}

/// How one run went: every condition held, the target answered but some failed, or the target
/// did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All conditions held.
    Up,
    /// The target answered; some condition failed.
    Degraded,
    /// No answer.
    Down,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Up => "up",
            Outcome::Degraded => "degraded",
            Outcome::Down => "down",
        }
    }
}

/// Evaluates every condition and classifies the run.
pub fn judge(conditions: &[Condition], seen: &Observation) -> (Outcome, Vec<Verdict>) {
    let verdicts: Vec<Verdict> = conditions.iter().map(|c| evaluate(c, seen)).collect();
    let outcome = if !seen.answered {
        Outcome::Down
    } else if verdicts.iter().all(|v| v.success) {
        Outcome::Up
    } else {
        Outcome::Degraded
    };
    (outcome, verdicts)
}

/// A check's hysteresis state (what it is, not how it is displayed: `paused` and `maintenance`
/// are derived from `enabled` and the windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not enough runs yet.
    Unknown,
    /// Healthy.
    Up,
    /// Failing conditions, target answers.
    Degraded,
    /// Not answering.
    Down,
}

impl State {
    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Degraded => "degraded",
            State::Down => "down",
        }
    }

    /// The state named `name` (unknown for anything else).
    pub fn parse(name: &str) -> State {
        match name {
            "up" => State::Up,
            "degraded" => State::Degraded,
            "down" => State::Down,
            _ => State::Unknown,
        }
    }

    /// True for `down` and `degraded`.
    pub fn is_failing(self) -> bool {
        matches!(self, State::Down | State::Degraded)
    }
}

/// The counters hysteresis keeps between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    /// Current state.
    pub state: State,
    /// Failing runs in a row.
    pub failures: u32,
    /// Succeeding runs in a row.
    pub successes: u32,
}

impl Hysteresis {
    /// Applies one run; returns the new counters and the new state when it changed.
    pub fn apply(
        self,
        outcome: Outcome,
        failure_threshold: u32,
        success_threshold: u32,
    ) -> (Hysteresis, Option<State>) {
        let (failures, successes) = match outcome {
            Outcome::Up => (0, self.successes.saturating_add(1)),
            Outcome::Degraded | Outcome::Down => (self.failures.saturating_add(1), 0),
        };
        let target = match outcome {
            Outcome::Up if successes >= success_threshold => Some(State::Up),
            Outcome::Degraded if failures >= failure_threshold => Some(State::Degraded),
            Outcome::Down if failures >= failure_threshold => Some(State::Down),
            _ => None,
        };
        let changed = target.filter(|t| *t != self.state);
        let state = changed.unwrap_or(self.state);
        (
            Hysteresis {
                state,
                failures,
                successes,
            },
            changed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_with_multibyte_text_are_refused_not_a_panic() {
        for expr in ["\u{9c}", "\u{c3}x", "é == 200", "status == \u{e9}"] {
            assert!(parse_condition(expr, CheckKind::Http).is_err(), "{expr}");
        }
        assert!(parse_condition("body contains \"é\"", CheckKind::Http).is_ok());
    }

    fn seen_http(status: u16, body: &str, ms: u64) -> Observation {
        Observation {
            answered: true,
            response_time: Duration::from_millis(ms),
            status: Some(status),
            body: Some(body.to_owned()),
            headers: vec![("content-type".into(), "application/json".into())],
            ..Observation::default()
        }
    }

    #[test]
    fn conditions_parse_and_evaluate() {
        let seen = seen_http(200, r#"{"status": "ok", "n": 3}"#, 120);
        for (expr, expected) in [
            ("status == 200", true),
            ("status < 500", true),
            ("status != 200", false),
            (r#"$.status == "ok""#, true),
            (r#"$.status == "bad""#, false),
            ("$.n >= 3", true),
            (r#"body contains "ok""#, true),
            ("response_time < 500ms", true),
            ("response_time < 100ms", false),
            (r#"header.Content-Type contains "json""#, true),
        ] {
            let condition = parse_condition(expr, CheckKind::Http).expect(expr);
            assert_eq!(evaluate(&condition, &seen).success, expected, "{expr}");
        }
    }

    #[test]
    fn bad_conditions_are_refused() {
        for (expr, kind) in [
            ("status ==", CheckKind::Http),
            ("status contains 2", CheckKind::Http),
            ("latency < 5ms", CheckKind::Http),
            ("response_time < soon", CheckKind::Http),
            ("connected", CheckKind::Http),
            ("status == 200", CheckKind::Tcp),
            ("$[ == 1", CheckKind::Http),
            ("rcode == NOERROR", CheckKind::Http),
        ] {
            assert!(parse_condition(expr, kind).is_err(), "{expr}");
        }
        for (expr, kind) in [
            ("connected", CheckKind::Tcp),
            ("rcode == NOERROR", CheckKind::Dns),
            (r#"answer contains "127.0.0.1""#, CheckKind::Dns),
            ("certificate_expiry > 14d", CheckKind::Tls),
            ("hostname_valid", CheckKind::Tls),
        ] {
            assert!(parse_condition(expr, kind).is_ok(), "{expr}");
        }
    }

    #[test]
    fn runs_are_judged() {
        let conditions = vec![parse_condition("status == 200", CheckKind::Http).expect("ok")];
        assert_eq!(judge(&conditions, &seen_http(200, "", 1)).0, Outcome::Up);
        assert_eq!(
            judge(&conditions, &seen_http(503, "", 1)).0,
            Outcome::Degraded
        );
        assert_eq!(judge(&conditions, &Observation::default()).0, Outcome::Down);
    }

    #[test]
    fn hysteresis_waits_for_thresholds() {
        let mut h = Hysteresis {
            state: State::Unknown,
            failures: 0,
            successes: 0,
        };
        let mut changes = Vec::new();
        for outcome in [
            Outcome::Up,
            Outcome::Up,
            Outcome::Down,
            Outcome::Down,
            Outcome::Up,
            Outcome::Down,
            Outcome::Down,
            Outcome::Down,
            Outcome::Up,
            Outcome::Up,
        ] {
            let (next, changed) = h.apply(outcome, 3, 2);
            h = next;
            changes.push(changed);
        }
        assert_eq!(
            changes,
            [
                None,
                Some(State::Up),
                None,
                None,
                None,
                None,
                None,
                Some(State::Down),
                None,
                Some(State::Up)
            ]
        );
    }
}
