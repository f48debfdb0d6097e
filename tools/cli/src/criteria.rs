//! FindingCriteria from the command line: a flag per field users filter on most, merged over
//! `--criteria JSON` (the API's own form, for everything else).

use clap::Args;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::error::CliError;

/// The criteria flags `findings list|stats` and `filters create|update` share.
#[derive(Args, Clone, Debug, Default)]
pub struct CriteriaArgs {
    /// A finding type (repeat for any of several), e.g. Execution:Runtime/NewBinaryExecuted.
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// low, medium, high or critical (GuardDuty's bands: 1-3.9, 4-6.9, 7-8.9, 9-10); repeat
    /// for adjacent bands, e.g. --severity high --severity critical.
    #[arg(long, value_name = "LEVEL", value_parser = ["low", "medium", "high", "critical"], ignore_case = true)]
    pub severity: Vec<String>,
    /// Findings of at least this severity (a number).
    #[arg(long, value_name = "N")]
    pub min_severity: Option<f64>,
    /// The EKS cluster's name (repeatable).
    #[arg(long, value_name = "NAME")]
    pub cluster: Vec<String>,
    /// The pod's namespace (repeatable).
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Vec<String>,
    /// The pod's name (repeatable).
    #[arg(long, value_name = "POD")]
    pub pod: Vec<String>,
    /// The AWS account id (repeatable).
    #[arg(long, value_name = "ID")]
    pub account: Vec<String>,
    /// Archived findings only (true) or unarchived only (false).
    #[arg(long, value_name = "BOOL")]
    pub archived: Option<bool>,
    /// Updated within this long (30m, 1h, 7d, 2w) or since this RFC 3339 time.
    #[arg(long, value_name = "AGE|TIME")]
    pub since: Option<String>,
    /// Updated before this long ago, or before this RFC 3339 time.
    #[arg(long, value_name = "AGE|TIME")]
    pub until: Option<String>,
    /// FindingCriteria as the API takes it, `{"criterion": {...}}`; the flags above are
    /// added to it (a flag replaces the same field's condition).
    #[arg(long, value_name = "JSON")]
    pub criteria: Option<String>,
}

impl CriteriaArgs {
    /// `{"criterion": {...}}`, or `None` when no criterion is given.
    pub fn finding_criteria(&self) -> Result<Option<Value>, CliError> {
        let criterion = self.criterion(OffsetDateTime::now_utc())?;
        Ok((!criterion.is_empty()).then(|| json!({ "criterion": criterion })))
    }

    fn criterion(&self, now: OffsetDateTime) -> Result<Map<String, Value>, CliError> {
        let mut c = match &self.criteria {
            None => Map::new(),
            Some(text) => parse_criteria(text)?,
        };
        let mut eq = |field: &str, values: &[String]| {
            if !values.is_empty() {
                c.insert(field.to_owned(), json!({ "eq": values }));
            }
        };
        eq("type", &self.types);
        eq("resource.eksClusterDetails.name", &self.cluster);
        eq(
            "resource.kubernetesDetails.kubernetesWorkloadDetails.namespace",
            &self.namespace,
        );
        eq(
            "resource.kubernetesDetails.kubernetesWorkloadDetails.name",
            &self.pod,
        );
        eq("accountId", &self.account);
        if let Some(a) = self.archived {
            c.insert("service.archived".into(), json!({ "eq": [a.to_string()] }));
        }
        let mut severity = Map::new();
        if !self.severity.is_empty() {
            let (low, high) = severity_range(&self.severity)?;
            severity.insert("gte".into(), json!(low));
            if let Some(high) = high {
                severity.insert("lt".into(), json!(high));
            }
        }
        if let Some(min) = self.min_severity {
            let low = severity.get("gte").and_then(Value::as_f64).unwrap_or(min);
            severity.insert("gte".into(), json!(low.max(min)));
        }
        if !severity.is_empty() {
            c.insert("severity".into(), Value::Object(severity));
        }
        let mut updated = Map::new();
        if let Some(s) = &self.since {
            updated.insert("gte".into(), json!(epoch_ms(s, now, "--since")?));
        }
        if let Some(s) = &self.until {
            updated.insert("lt".into(), json!(epoch_ms(s, now, "--until")?));
        }
        if !updated.is_empty() {
            c.insert("updatedAt".into(), Value::Object(updated));
        }
        Ok(c)
    }
}

fn parse_criteria(text: &str) -> Result<Map<String, Value>, CliError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| CliError::Usage(format!("--criteria is not JSON: {e}")))?;
    match v.get("criterion").unwrap_or(&v) {
        Value::Object(m) => Ok(m.clone()),
        _ => Err(CliError::Usage(
            "--criteria: expected {\"criterion\": {\"<field>\": {\"eq\": [...]}}}".into(),
        )),
    }
}

/// The `[gte, lt)` range of adjacent severity bands; `lt` is `None` for critical.
fn severity_range(levels: &[String]) -> Result<(f64, Option<f64>), CliError> {
    const BANDS: [(&str, f64, Option<f64>); 4] = [
        ("low", 1.0, Some(4.0)),
        ("medium", 4.0, Some(7.0)),
        ("high", 7.0, Some(9.0)),
        ("critical", 9.0, None),
    ];
    let mut idx: Vec<usize> = levels
        .iter()
        .filter_map(|l| BANDS.iter().position(|b| b.0.eq_ignore_ascii_case(l)))
        .collect();
    idx.sort_unstable();
    idx.dedup();
    let (Some(&first), Some(&last)) = (idx.first(), idx.last()) else {
        return Err(CliError::Usage("--severity: no level given".into()));
    };
    if last - first + 1 != idx.len() {
        return Err(CliError::Usage(
            "--severity: the levels must be adjacent (criteria are ANDed; list non-adjacent \
             bands in two calls)"
                .into(),
        ));
    }
    Ok((BANDS[first].1, BANDS[last].2))
}

/// `1h` ago, or an RFC 3339 time, in epoch milliseconds (how the API compares times).
fn epoch_ms(s: &str, now: OffsetDateTime, flag: &str) -> Result<i64, CliError> {
    let at = match age(s) {
        Some(age) => now - age,
        None => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(
            |_| {
                CliError::Usage(format!(
                    "{flag} {s:?}: expected an age (30s, 15m, 1h, 7d, 2w) or an RFC 3339 time"
                ))
            },
        )?,
    };
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| CliError::Usage(format!("{flag} {s:?}: out of range")))
}

fn age(s: &str) -> Option<time::Duration> {
    let unit = s.chars().last()?;
    let n: i64 = s.get(..s.len() - unit.len_utf8())?.parse().ok()?;
    if n < 0 {
        return None;
    }
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    Some(time::Duration::seconds(n.checked_mul(seconds)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn args() -> CriteriaArgs {
        CriteriaArgs::default()
    }

    #[test]
    fn flags_become_criteria() {
        let now = datetime!(2026-12-03 12:00 UTC);
        let a = CriteriaArgs {
            types: vec!["T".into()],
            severity: vec!["high".into(), "CRITICAL".into()],
            cluster: vec!["prod".into()],
            namespace: vec!["payments".into()],
            archived: Some(false),
            since: Some("1h".into()),
            ..args()
        };
        let c = Value::Object(a.criterion(now).unwrap());
        assert_eq!(
            c,
            json!({
                "type": {"eq": ["T"]},
                "severity": {"gte": 7.0},
                "resource.eksClusterDetails.name": {"eq": ["prod"]},
                "resource.kubernetesDetails.kubernetesWorkloadDetails.namespace": {"eq": ["payments"]},
                "service.archived": {"eq": ["false"]},
                "updatedAt": {"gte": 1_796_295_600_000_i64},
            })
        );
        let medium = CriteriaArgs {
            severity: vec!["medium".into()],
            ..args()
        };
        assert_eq!(
            Value::Object(medium.criterion(now).unwrap())["severity"],
            json!({"gte": 4.0, "lt": 7.0})
        );
    }

    #[test]
    fn the_json_escape_hatch_is_merged_under_the_flags() {
        let a = CriteriaArgs {
            criteria: Some(
                r#"{"criterion": {"service.count": {"gt": 3}, "type": {"eq": ["A"]}}}"#.into(),
            ),
            types: vec!["B".into()],
            ..args()
        };
        let c = a.finding_criteria().unwrap().unwrap();
        assert_eq!(
            c,
            json!({"criterion": {"service.count": {"gt": 3}, "type": {"eq": ["B"]}}})
        );
        assert!(args().finding_criteria().unwrap().is_none());
        let bad = CriteriaArgs {
            criteria: Some("[1]".into()),
            ..args()
        };
        assert_eq!(bad.finding_criteria().unwrap_err().exit_code(), 2);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let gap = CriteriaArgs {
            severity: vec!["low".into(), "high".into()],
            ..args()
        };
        assert_eq!(gap.finding_criteria().unwrap_err().exit_code(), 2);
        let since = CriteriaArgs {
            since: Some("yesterday".into()),
            ..args()
        };
        assert_eq!(since.finding_criteria().unwrap_err().exit_code(), 2);
        let rfc = CriteriaArgs {
            since: Some("2026-12-03T11:00:00Z".into()),
            ..args()
        };
        assert_eq!(
            rfc.finding_criteria().unwrap().unwrap()["criterion"]["updatedAt"]["gte"],
            1_796_295_600_000_i64
        );
    }
}
