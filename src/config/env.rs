//! Reading single variables: durations, bounded numbers, URLs and the simulated-failure list.

use super::{invalid, ConfigError};
use std::time::Duration;

/// `GANTRY_SIMULATED_FAIL`: `name` or `name:N`, comma-separated.
pub(super) fn parse_failures(value: &str) -> Result<Vec<(String, Option<u32>)>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once(':') {
            None => Ok((item.to_owned(), None)),
            Some((name, times)) => {
                times
                    .parse()
                    .map(|n| (name.to_owned(), Some(n)))
                    .map_err(|_| {
                        invalid(
                            "GANTRY_SIMULATED_FAIL",
                            format!("{item:?}: expected name or name:N"),
                        )
                    })
            }
        })
        .collect()
}

/// A duration variable: `500ms`, `30s`, `2m`, or a bare number of seconds.
pub(super) fn duration(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => humantime::parse_duration(&v)
            .or_else(|_| v.parse::<u64>().map(Duration::from_secs))
            .map_err(|_| {
                invalid(
                    name,
                    format!("{v:?} is not a duration (e.g. 500ms, 30s, 2m)"),
                )
            }),
    }
}

/// A whole-number variable within `range`.
pub(super) fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                invalid(
                    name,
                    format!(
                        "{v:?} is not a number in {}..={}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

/// Checks `value` is an http(s) URL with a host.
pub(super) fn check_http_url(variable: &'static str, value: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(invalid(
            variable,
            format!("{value:?} is not an http(s) URL"),
        )),
    }
}
