//! Suppression filters (GuardDuty's `CreateFilter`): a named `findingCriteria` with an action
//! and a rank. The API validates and stores them (FiltersTable); the detector loads the
//! `ARCHIVE` ones once per invocation as [`ArchiveRules`] and archives, without publishing,
//! each finding one of them matches when it is created or updated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Criteria, CriteriaError, FindingCriteria, Use, quoted};

/// GuardDuty's limit: 100 filters per detector.
pub const MAX_FILTERS: usize = 100;
/// Ranks run 1..=100.
pub const MAX_RANK: u32 = 100;
/// `description` is at most 512 characters.
pub const MAX_DESCRIPTION_CHARS: usize = 512;
/// At most 50 tags.
pub const MAX_TAGS: usize = 50;

/// What a filter does to the findings it matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// A saved filter: nothing happens to findings.
    #[default]
    Noop,
    /// A suppression rule: matching findings are archived as they are created or updated and
    /// never published.
    Archive,
}

impl Action {
    pub fn parse(s: &str) -> Result<Action, CriteriaError> {
        match s {
            "NOOP" => Ok(Action::Noop),
            "ARCHIVE" => Ok(Action::Archive),
            other => Err(CriteriaError::bad(format!(
                "action {} is not NOOP or ARCHIVE.",
                quoted(other)
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Noop => "NOOP",
            Action::Archive => "ARCHIVE",
        }
    }
}

/// A stored filter, in GetFilter's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub action: Action,
    pub rank: u32,
    pub finding_criteria: Value,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `name`: 3 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), CriteriaError> {
    let ok = (3..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CriteriaError::bad(format!(
            "The filter name {} is not valid: use 3 to 64 letters, digits, '.', '_' or '-'.",
            quoted(name)
        )))
    }
}

pub fn check_description(d: &str) -> Result<(), CriteriaError> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(CriteriaError::bad(format!(
            "description is longer than {MAX_DESCRIPTION_CHARS} characters."
        )));
    }
    Ok(())
}

/// Tags as GuardDuty takes them: at most 50; keys 1..128 characters not starting with `aws:`,
/// values at most 256.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), CriteriaError> {
    if tags.len() > MAX_TAGS {
        return Err(CriteriaError::bad(format!(
            "tags has {} entries; at most {MAX_TAGS} are allowed.",
            tags.len()
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || k.starts_with("aws:") {
            return Err(CriteriaError::bad(format!(
                "The tag key {} is not valid.",
                quoted(k)
            )));
        }
        if v.chars().count() > 256 {
            return Err(CriteriaError::bad(format!(
                "The value of tag {} is longer than 256 characters.",
                quoted(k)
            )));
        }
    }
    Ok(())
}

impl Filter {
    /// The filter's criteria, compiled (with `matches`/`notMatches`).
    pub fn compile(&self) -> Result<Criteria, CriteriaError> {
        let fc: FindingCriteria = serde_json::from_value(self.finding_criteria.clone())
            .map_err(|e| CriteriaError::bad(format!("findingCriteria is not valid: {e}")))?;
        Criteria::compile_for(Some(&fc), Use::Filter)
    }
}

/// The `ARCHIVE` filters of a detector, compiled, in rank order.
#[derive(Clone, Debug, Default)]
pub struct ArchiveRules {
    rules: Vec<(String, Criteria)>,
}

impl ArchiveRules {
    /// Compiles the `ARCHIVE` filters among `filters` (any order; `NOOP` ones are left out).
    /// A filter that does not compile is an error: skipping it could publish a finding it
    /// suppresses.
    pub fn new(filters: &[Filter]) -> Result<ArchiveRules, (String, CriteriaError)> {
        let mut archive: Vec<&Filter> = filters
            .iter()
            .filter(|f| f.action == Action::Archive)
            .collect();
        archive.sort_by(|a, b| a.rank.cmp(&b.rank).then_with(|| a.name.cmp(&b.name)));
        let rules = archive
            .into_iter()
            .map(|f| {
                f.compile()
                    .map(|c| (f.name.clone(), c))
                    .map_err(|e| (f.name.clone(), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ArchiveRules { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The first (lowest-ranked) `ARCHIVE` filter the finding (its JSON) matches.
    pub fn first_match(&self, finding: &Value) -> Option<&str> {
        self.rules
            .iter()
            .find(|(_, c)| c.matches(finding))
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn filter(name: &str, action: Action, rank: u32, criterion: Value) -> Filter {
        Filter {
            name: name.into(),
            description: String::new(),
            action,
            rank,
            finding_criteria: json!({ "criterion": criterion }),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn archive_rules_match_in_rank_order_and_ignore_noop() {
        let f = json!({"type": "Execution:Runtime/ReverseShell", "severity": 8.0,
            "resource": {"containerDetails": {"image": "registry.example/app:1.2"}}});
        let rules = ArchiveRules::new(&[
            filter("noop", Action::Noop, 1, json!({"severity": {"gte": 1}})),
            filter(
                "second",
                Action::Archive,
                3,
                json!({"type": {"eq": ["Execution:Runtime/ReverseShell"]}}),
            ),
            filter(
                "first",
                Action::Archive,
                2,
                json!({"resource.containerDetails.image": {"matches": ["registry.example/*"]}}),
            ),
        ])
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules.first_match(&f), Some("first"));
        let other = json!({"type": "Execution:Runtime/NewBinaryExecuted"});
        assert_eq!(rules.first_match(&other), None);
    }

    #[test]
    fn wildcards_are_anchored_and_literal_otherwise() {
        let rules = ArchiveRules::new(&[filter(
            "w",
            Action::Archive,
            1,
            json!({"service.runtimeDetails.process.executablePath":
                {"matches": ["/usr/bin/*", "/opt/?.sh"], "notMatches": ["*python*"]}}),
        )])
        .unwrap();
        let at =
            |p: &str| json!({"service": {"runtimeDetails": {"process": {"executablePath": p}}}});
        assert!(rules.first_match(&at("/usr/bin/curl")).is_some());
        assert!(rules.first_match(&at("/opt/a.sh")).is_some());
        assert!(rules.first_match(&at("/opt/ab.sh")).is_none());
        assert!(rules.first_match(&at("/usr/bin/python3")).is_none());
        assert!(rules.first_match(&at("x/usr/bin/curl")).is_none());
        // Regex syntax in a pattern is literal.
        let dot = ArchiveRules::new(&[filter(
            "d",
            Action::Archive,
            1,
            json!({"type": {"matches": ["a.c"]}}),
        )])
        .unwrap();
        assert!(dot.first_match(&json!({"type": "abc"})).is_none());
        assert!(dot.first_match(&json!({"type": "a.c"})).is_some());
    }

    #[test]
    fn names_and_criteria_are_validated() {
        for ok in ["abc", "a.b_c-d", &"x".repeat(64)] {
            check_name(ok).unwrap();
        }
        for bad in ["ab", "has space", "é-no", &"x".repeat(65), ""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let empty = filter("e", Action::Archive, 1, json!({}));
        assert!(empty.compile().is_err());
        let matches_on_number = filter(
            "n",
            Action::Archive,
            1,
            json!({"severity": {"matches": ["8"]}}),
        );
        assert!(matches_on_number.compile().is_err());
        assert!(
            Criteria::compile(Some(
                &serde_json::from_value(json!({"criterion": {"type": {"matches": ["x"]}}}))
                    .unwrap()
            ))
            .is_err()
        );
    }
}
