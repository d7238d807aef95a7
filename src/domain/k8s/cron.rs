//! Kubernetes CronJob schedules: five cron fields or a macro.

/// Shorthands Kubernetes CronJobs accept instead of five fields.
const CRON_MACROS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];
/// Month names, `jan` = 1.
const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
/// Weekday names, `sun` = 0.
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field of a cron schedule: its name, value range and names (first name = `min`).
struct CronField {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

/// The five fields, in order.
const CRON_FIELDS: [CronField; 5] = [
    CronField {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    CronField {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    CronField {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    CronField {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTH_NAMES,
    },
    CronField {
        name: "day of week",
        min: 0,
        max: 7,
        names: &DAY_NAMES,
    },
];

/// A five-field cron schedule (`*/5 * * * *`, `0 3 * * MON-FRI`) or a macro (`@daily`).
pub fn check_cron(schedule: &str) -> Result<(), String> {
    let schedule = schedule.trim();
    if schedule.starts_with('@') {
        return if CRON_MACROS.contains(&schedule) {
            Ok(())
        } else {
            Err(format!(
                "unknown schedule `{schedule}`; macros: {}",
                CRON_MACROS.join(", ")
            ))
        };
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != CRON_FIELDS.len() {
        return Err(format!(
            "a cron schedule has 5 fields (minute hour day-of-month month day-of-week), not {}",
            fields.len()
        ));
    }
    for (text, field) in fields.iter().zip(CRON_FIELDS.iter()) {
        check_cron_field(text, field)
            .map_err(|why| format!("{} field `{text}`: {why}", field.name))?;
    }
    Ok(())
}

/// One cron field: a comma list of `*`, `?` (day fields), `v` or `a-b`, each with an optional
/// `/step`.
fn check_cron_field(text: &str, field: &CronField) -> Result<(), String> {
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            if !step.parse::<u32>().is_ok_and(|s| s > 0) {
                return Err(format!("step `{step}` must be a positive number"));
            }
        }
        // `?` means "any" in the two day fields only.
        let day_field = field.names.len() == DAY_NAMES.len() || field.name == "day of month";
        if range == "*" || (range == "?" && day_field) {
            continue;
        }
        let (low, high) = match range.split_once('-') {
            Some((low, high)) => (low, Some(high)),
            None => (range, None),
        };
        let low = cron_value(low, field)?;
        if let Some(high) = high {
            let high = cron_value(high, field)?;
            if high < low {
                return Err(format!("range `{range}` runs backwards"));
            }
        }
    }
    Ok(())
}

/// A number or name within a cron field's range.
fn cron_value(token: &str, field: &CronField) -> Result<u32, String> {
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
        return match token.parse::<u32>() {
            Ok(value) if (field.min..=field.max).contains(&value) => Ok(value),
            _ => Err(format!("`{token}` is outside {}–{}", field.min, field.max)),
        };
    }
    let position = field
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(token));
    match position.and_then(|p| u32::try_from(p).ok()) {
        Some(p) => Ok(field.min + p),
        None => Err(format!(
            "`{token}` is not a number or name this field accepts"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_schedules() {
        for ok in [
            "*/5 * * * *",
            "0 3 * * *",
            "0 0 1 1 *",
            "15,45 8-18 * * MON-FRI",
            "0 12 ? JAN-dec 0",
            "0 0 * * 7",
            "0-30/10 * 1-31/2 */3 ?",
            "@hourly",
            "  0 4 * * sun  ",
        ] {
            assert_eq!(check_cron(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "? * * * *",
            "* * * ? *",
            "1,,2 * * * *",
            "* * * * MONDAY",
            "* * * JAN-FOO *",
            "@every 5m",
            "CRON_TZ=UTC 0 * * * *",
            "99999999999 * * * *",
        ] {
            assert!(check_cron(bad).is_err(), "{bad}");
        }
    }
}
