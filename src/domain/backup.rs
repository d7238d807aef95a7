//! Pure rules of backup policies: schedules (cron through croner, in an IANA zone through
//! chrono-tz), label selectors, ages and hook timeouts. No I/O.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

/// A parsed schedule: a cron pattern evaluated in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl Schedule {
    /// Parses five cron fields (or `@daily`, `@hourly`, …) and an IANA zone name.
    pub fn parse(expression: &str, zone: &str) -> Result<Schedule, ScheduleError> {
        let expression = expression.trim();
        if !expression.starts_with('@') && expression.split_whitespace().count() != 5 {
            return Err(ScheduleError::Cron(
                "expected five fields (minute hour day month weekday) or a macro such as @daily"
                    .to_owned(),
            ));
        }
        if expression.starts_with('@')
            && !matches!(
                expression.to_ascii_lowercase().as_str(),
                "@yearly"
                    | "@annually"
                    | "@monthly"
                    | "@weekly"
                    | "@daily"
                    | "@midnight"
                    | "@hourly"
            )
        {
            return Err(ScheduleError::Cron(format!(
                "unknown macro {expression:?} (use @yearly, @monthly, @weekly, @daily or @hourly)"
            )));
        }
        let cron =
            croner::Cron::from_str(expression).map_err(|e| ScheduleError::Cron(e.to_string()))?;
        let zone = chrono_tz::Tz::from_str(zone)
            .map_err(|_| ScheduleError::Zone(format!("{zone:?} is not an IANA time zone")))?;
        let schedule = Schedule { cron, zone };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::Cron("the schedule never fires".to_owned()));
        }
        Ok(schedule)
    }

    /// The first due time strictly after `after`, in UTC.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The time between the next two due times after `after` (the alert's "interval").
    pub fn interval_after(&self, after: DateTime<Utc>) -> Option<Duration> {
        let first = self.next_after(after)?;
        let second = self.next_after(first)?;
        (second - first).to_std().ok()
    }
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression.
    #[error("invalid schedule: {0}")]
    Cron(String),
    /// The time zone.
    #[error("{0}")]
    Zone(String),
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value`.
    Equals(String, String),
    /// `key!=value` (also true when the label is absent).
    NotEquals(String, String),
    /// `key` (present).
    Exists(String),
    /// `!key` (absent).
    NotExists(String),
}

/// A parsed equality-based label selector (`app=web,tier!=cache`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

/// Whether `key` is a valid label key (optional DNS prefix + `/` + name of up to 63 chars).
fn valid_key(key: &str) -> bool {
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    valid_value(name) && !name.is_empty()
}

/// Whether `value` is a valid label value (≤ 63 of alphanumerics, `-`, `_`, `.`, alphanumeric
/// at both ends; empty is allowed).
fn valid_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value
            .chars()
            .next()
            .is_none_or(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .last()
            .is_none_or(|c| c.is_ascii_alphanumeric())
}

impl LabelSelector {
    /// Parses a comma-separated list of `k=v`, `k==v`, `k!=v`, `k`, `!k`.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err("empty requirement (two commas in a row?)".to_owned());
            }
            let requirement = if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("==") {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once('=') {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_owned())
            } else {
                Requirement::Exists(part.to_owned())
            };
            let (key, value) = match &requirement {
                Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, Some(v)),
                Requirement::Exists(k) | Requirement::NotExists(k) => (k, None),
            };
            if !valid_key(key) {
                return Err(format!("{key:?} is not a valid label key"));
            }
            if let Some(value) = value {
                if !valid_value(value) || value.contains('=') {
                    return Err(format!("{value:?} is not a valid label value"));
                }
            }
            requirements.push(requirement);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// Parses an age such as `30d`, `12h`, `90m` (days are accepted besides humantime's units).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.strip_suffix('d') {
        Some(days) if days.chars().all(|c| c.is_ascii_digit()) && !days.is_empty() => days
            .parse::<u64>()
            .map(|d| Duration::from_secs(d.saturating_mul(86_400)))
            .map_err(|e| e.to_string()),
        _ => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(age) if !age.is_zero() => Ok(age),
        Ok(_) => Err("must be more than zero".to_owned()),
        Err(_) => Err(format!("{text:?} is not an age (e.g. 30d, 12h)")),
    }
}

/// Parses a hook timeout (`30s`, `2m`), 1 s to 1 h.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(t) if t >= Duration::from_secs(1) && t <= Duration::from_secs(3600) => Ok(t),
        Ok(_) => Err("must be between 1s and 1h".to_owned()),
        Err(_) => Err(format!("{text:?} is not a duration (e.g. 30s)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_and_zones() {
        assert!(Schedule::parse("0 3 * * *", "UTC").is_ok());
        assert!(Schedule::parse("@daily", "Europe/Berlin").is_ok());
        assert!(matches!(
            Schedule::parse("0 3 * *", "UTC"),
            Err(ScheduleError::Cron(_))
        ));
        assert!(matches!(
            Schedule::parse("61 3 * * *", "UTC"),
            Err(ScheduleError::Cron(_))
        ));
        assert!(matches!(
            Schedule::parse("0 3 * * *", "Mars/Olympus"),
            Err(ScheduleError::Zone(_))
        ));
        let at = DateTime::parse_from_rfc3339("2026-06-01T00:30:00Z")
            .unwrap_or_default()
            .with_timezone(&Utc);
        let berlin = Schedule::parse("0 3 * * *", "Europe/Berlin").ok();
        // 03:00 in Berlin in summer is 01:00 UTC.
        assert_eq!(
            berlin
                .and_then(|s| s.next_after(at))
                .map(|t| t.to_rfc3339()),
            Some("2026-06-01T01:00:00+00:00".to_owned())
        );
        let hourly = Schedule::parse("@hourly", "UTC").ok();
        assert_eq!(
            hourly.and_then(|s| s.interval_after(at)),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn selectors() {
        let selector = LabelSelector::parse("app=web,tier!=cache").unwrap_or_default();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selector.matches(&labels(&[("app", "web")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "cache")])));
        assert!(!selector.matches(&labels(&[])));
        assert!(LabelSelector::parse("app=we b").is_err());
        assert!(LabelSelector::parse("app=,").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn ages_and_timeouts() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert!(parse_age("soon").is_err());
        assert!(parse_age("0d").is_err());
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_timeout("2h").is_err());
    }
}
