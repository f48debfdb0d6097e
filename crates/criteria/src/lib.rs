//! GuardDuty's `FindingCriteria` and `SortCriteria`: parsed strictly (an unknown field, operator
//! or value is a [`CriteriaError`], which the API answers as a 400), compiled once, and
//! evaluated on a finding's JSON. One implementation serves the findings API (ListFindings,
//! statistics, CreateFilter/UpdateFilter) and the detector (ARCHIVE filters applied when a
//! finding is created or updated), so a filter matches in the detector exactly what the same
//! criteria list in the API. A DynamoDB index the API may query is only a pre-filter: every
//! criterion is checked here.
//!
//! Filters (`CreateFilter`) may also use GuardDuty's `matches` and `notMatches`: wildcard
//! patterns where `*` is any run of characters and `?` one character, compiled once to a
//! linear-time regex so an attacker-chosen string cannot make matching slow.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod filter;

pub use crate::filter::{
    Action, ArchiveRules, Filter, MAX_DESCRIPTION_CHARS, MAX_FILTERS, MAX_RANK, MAX_TAGS,
    check_description, check_name, check_tags,
};

/// A criterion, sort or filter that is not valid; the message says what is wrong and is safe
/// to return to the client (client strings in it are bounded and escaped by [`quoted`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CriteriaError(pub String);

impl CriteriaError {
    pub fn bad(message: impl Into<String>) -> CriteriaError {
        CriteriaError(message.into())
    }
}

/// Where criteria are used: `matches`/`notMatches` are filter-only, as in GuardDuty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// ListFindings and GetFindingsStatistics.
    Listing,
    /// CreateFilter and UpdateFilter (and the detector evaluating them).
    Filter,
}

/// At most this many patterns in one `matches` or `notMatches`.
pub const MAX_PATTERNS: usize = 10;

/// At most this many fields in one `criterion`.
pub const MAX_CRITERIA: usize = 50;
/// At most this many values in one `eq` or `neq`.
pub const MAX_VALUES: usize = 50;
/// At most this many bytes in one value.
pub const MAX_VALUE_BYTES: usize = 512;

/// What a field holds, and so which operators apply and how values are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    Num,
    /// An RFC 3339 time in the finding; compared (and given in criteria) as epoch milliseconds.
    Time,
    Bool,
}

/// The fields a criterion or a sort may name: GuardDuty's names, the JSON pointer into the
/// finding, and the kind.
pub const FIELDS: &[(&str, &str, Kind)] = &[
    ("id", "/id", Kind::Str),
    ("type", "/type", Kind::Str),
    ("severity", "/severity", Kind::Num),
    ("confidence", "/confidence", Kind::Num),
    ("accountId", "/accountId", Kind::Str),
    ("region", "/region", Kind::Str),
    ("createdAt", "/createdAt", Kind::Time),
    ("updatedAt", "/updatedAt", Kind::Time),
    ("service.archived", "/service/archived", Kind::Bool),
    ("service.count", "/service/count", Kind::Num),
    ("service.userFeedback", "/service/userFeedback", Kind::Str),
    (
        "service.eventFirstSeen",
        "/service/eventFirstSeen",
        Kind::Time,
    ),
    (
        "service.eventLastSeen",
        "/service/eventLastSeen",
        Kind::Time,
    ),
    ("resource.resourceType", "/resource/resourceType", Kind::Str),
    (
        "resource.eksClusterDetails.name",
        "/resource/eksClusterDetails/name",
        Kind::Str,
    ),
    (
        "resource.eksClusterDetails.arn",
        "/resource/eksClusterDetails/arn",
        Kind::Str,
    ),
    (
        "resource.kubernetesDetails.kubernetesWorkloadDetails.name",
        "/resource/kubernetesDetails/kubernetesWorkloadDetails/name",
        Kind::Str,
    ),
    (
        "resource.kubernetesDetails.kubernetesWorkloadDetails.namespace",
        "/resource/kubernetesDetails/kubernetesWorkloadDetails/namespace",
        Kind::Str,
    ),
    (
        "resource.kubernetesDetails.kubernetesWorkloadDetails.type",
        "/resource/kubernetesDetails/kubernetesWorkloadDetails/type",
        Kind::Str,
    ),
    (
        "resource.containerDetails.id",
        "/resource/containerDetails/id",
        Kind::Str,
    ),
    (
        "resource.containerDetails.name",
        "/resource/containerDetails/name",
        Kind::Str,
    ),
    (
        "resource.containerDetails.image",
        "/resource/containerDetails/image",
        Kind::Str,
    ),
    (
        "resource.instanceDetails.instanceId",
        "/resource/instanceDetails/instanceId",
        Kind::Str,
    ),
    (
        "service.runtimeDetails.process.name",
        "/service/runtimeDetails/process/name",
        Kind::Str,
    ),
    (
        "service.runtimeDetails.process.executablePath",
        "/service/runtimeDetails/process/executablePath",
        Kind::Str,
    ),
    (
        "service.runtimeDetails.process.executableSha256",
        "/service/runtimeDetails/process/executableSha256",
        Kind::Str,
    ),
    ("service.featureName", "/service/featureName", Kind::Str),
    (
        "service.runtimeDetails.context.filePath",
        "/service/runtimeDetails/context/filePath",
        Kind::Str,
    ),
    (
        "service.runtimeDetails.context.commandLineExample",
        "/service/runtimeDetails/context/commandLineExample",
        Kind::Str,
    ),
];

/// A field by its GuardDuty name.
pub fn field(name: &str) -> Option<Field> {
    FIELDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(name, pointer, kind)| Field {
            name,
            pointer,
            kind,
        })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub pointer: &'static str,
    pub kind: Kind,
}

/// A field's value in one finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Num(f64),
    Str(String),
}

impl Scalar {
    fn cmp(&self, other: &Scalar) -> Ordering {
        match (self, other) {
            (Scalar::Num(a), Scalar::Num(b)) => a.total_cmp(b),
            (Scalar::Str(a), Scalar::Str(b)) => a.cmp(b),
            (Scalar::Bool(a), Scalar::Bool(b)) => a.cmp(b),
            // Never mixed within one field; any fixed order will do.
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Scalar::Bool(_) => 0,
            Scalar::Num(_) => 1,
            Scalar::Str(_) => 2,
        }
    }
}

/// An RFC 3339 time as epoch milliseconds.
pub fn epoch_millis(s: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as f64)
}

impl Field {
    /// The field's value in a finding; `None` when absent (or of another shape).
    pub fn value(&self, finding: &Value) -> Option<Scalar> {
        let v = finding.pointer(self.pointer)?;
        match self.kind {
            Kind::Str => v.as_str().map(|s| Scalar::Str(s.to_owned())),
            Kind::Num => v.as_f64().map(Scalar::Num),
            Kind::Time => v.as_str().and_then(epoch_millis).map(Scalar::Num),
            Kind::Bool => v.as_bool().map(Scalar::Bool),
        }
    }

    /// A value of an `eq`/`neq` list, read as this field's kind.
    fn parse(&self, s: &str) -> Result<Scalar, CriteriaError> {
        let bad = |what: &str| {
            CriteriaError::bad(format!(
                "The value {} of criterion {} is not {what}.",
                quoted(s),
                self.name
            ))
        };
        match self.kind {
            Kind::Str => Ok(Scalar::Str(s.to_owned())),
            Kind::Num => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Scalar::Num)
                .ok_or_else(|| bad("a number")),
            Kind::Time => s
                .trim()
                .parse::<i64>()
                .ok()
                .map(|v| v as f64)
                .or_else(|| epoch_millis(s.trim()))
                .map(Scalar::Num)
                .ok_or_else(|| bad("epoch milliseconds or an RFC 3339 time")),
            Kind::Bool => match s.trim() {
                "true" | "TRUE" | "True" => Ok(Scalar::Bool(true)),
                "false" | "FALSE" | "False" => Ok(Scalar::Bool(false)),
                _ => Err(bad("true or false")),
            },
        }
    }
}

/// A client's string in a message: bounded and escaped (it is data, not text to trust).
pub fn quoted(s: &str) -> String {
    let mut short: String = s.chars().take(64).collect();
    if short.len() < s.len() {
        short.push('…');
    }
    format!("{short:?}")
}

/// `findingCriteria`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FindingCriteria {
    #[serde(default)]
    pub criterion: BTreeMap<String, Condition>,
}

/// One field's `Condition`: GuardDuty's short operators and their long synonyms.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Condition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eq: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neq: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greater_than: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greater_than_or_equal: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub less_than: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub less_than_or_equal: Option<f64>,
    /// Filters only: wildcard patterns (`*`, `?`); the value must match one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<String>>,
    /// Filters only: wildcard patterns; the value must match none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_matches: Option<Vec<String>>,
}

/// One field's compiled condition: all of its parts must hold.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub field: Field,
    pub eq: Option<Vec<Scalar>>,
    pub neq: Vec<Scalar>,
    /// (bound, inclusive)
    pub lower: Option<(f64, bool)>,
    pub upper: Option<(f64, bool)>,
    /// `matches`: the value must match one of these (none given: no constraint).
    pub matches: Option<Wildcards>,
    /// `notMatches`: the value must match none of these.
    pub not_matches: Option<Wildcards>,
}

/// `matches`/`notMatches` patterns compiled to one anchored, linear-time regex.
#[derive(Clone, Debug)]
pub struct Wildcards(regex::Regex);

impl Wildcards {
    fn compile(name: &str, op: &str, patterns: &[String]) -> Result<Wildcards, CriteriaError> {
        if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
            return Err(CriteriaError::bad(format!(
                "Criterion {name} {op} needs 1 to {MAX_PATTERNS} patterns."
            )));
        }
        let mut alternatives = Vec::with_capacity(patterns.len());
        for p in patterns {
            if p.is_empty() || p.len() > MAX_VALUE_BYTES {
                return Err(CriteriaError::bad(format!(
                    "A pattern of criterion {name} {op} is empty or longer than {MAX_VALUE_BYTES} bytes."
                )));
            }
            let mut re = String::with_capacity(p.len() + 8);
            for c in p.chars() {
                match c {
                    '*' => re.push_str(".*"),
                    '?' => re.push('.'),
                    c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
                }
            }
            alternatives.push(format!("(?:{re})"));
        }
        regex::RegexBuilder::new(&format!("^(?s:{})$", alternatives.join("|")))
            .size_limit(1 << 20)
            .build()
            .map(Wildcards)
            .map_err(|_| {
                CriteriaError::bad(format!(
                    "The patterns of criterion {name} {op} are too complex."
                ))
            })
    }

    fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

/// Every criterion of a request, compiled.
#[derive(Clone, Debug, Default)]
pub struct Criteria {
    pub parts: Vec<Compiled>,
}

fn both<T>(
    name: &str,
    short: &'static str,
    a: Option<T>,
    long: &'static str,
    b: Option<T>,
) -> Result<Option<T>, CriteriaError> {
    match (a, b) {
        (Some(_), Some(_)) => Err(CriteriaError::bad(format!(
            "Criterion {name} gives both {short} and {long}; they are the same operator."
        ))),
        (a, b) => Ok(a.or(b)),
    }
}

impl Criteria {
    /// Criteria for ListFindings and statistics (no `matches`/`notMatches`).
    pub fn compile(criteria: Option<&FindingCriteria>) -> Result<Criteria, CriteriaError> {
        Criteria::compile_for(criteria, Use::Listing)
    }

    /// Criteria for their use; an empty `criterion` map is refused for a filter (it would
    /// match, and with ARCHIVE suppress, every finding).
    pub fn compile_for(
        criteria: Option<&FindingCriteria>,
        usage: Use,
    ) -> Result<Criteria, CriteriaError> {
        if usage == Use::Filter && criteria.is_none_or(|c| c.criterion.is_empty()) {
            return Err(CriteriaError::bad(
                "findingCriteria.criterion needs at least one criterion.",
            ));
        }
        let Some(criteria) = criteria else {
            return Ok(Criteria::default());
        };
        if criteria.criterion.len() > MAX_CRITERIA {
            return Err(CriteriaError::bad(format!(
                "findingCriteria has {} criteria; at most {MAX_CRITERIA} are allowed.",
                criteria.criterion.len()
            )));
        }
        let mut parts = Vec::with_capacity(criteria.criterion.len());
        for (name, c) in &criteria.criterion {
            let field = field(name).ok_or_else(|| {
                CriteriaError::bad(format!(
                    "The criterion {} is not a field findings can be filtered on.",
                    quoted(name)
                ))
            })?;
            let n = field.name;
            let eq = both(n, "eq", c.eq.clone(), "equals", c.equals.clone())?;
            let neq = both(n, "neq", c.neq.clone(), "notEquals", c.not_equals.clone())?;
            let gt = both(n, "gt", c.gt, "greaterThan", c.greater_than)?;
            let gte = both(
                n,
                "gte",
                c.gte,
                "greaterThanOrEqual",
                c.greater_than_or_equal,
            )?;
            let lt = both(n, "lt", c.lt, "lessThan", c.less_than)?;
            let lte = both(n, "lte", c.lte, "lessThanOrEqual", c.less_than_or_equal)?;
            if usage == Use::Listing && (c.matches.is_some() || c.not_matches.is_some()) {
                return Err(CriteriaError::bad(format!(
                    "Criterion {n} uses matches or notMatches, which only filters take."
                )));
            }
            if (c.matches.is_some() || c.not_matches.is_some()) && field.kind != Kind::Str {
                return Err(CriteriaError::bad(format!(
                    "Criterion {n} takes matches and notMatches only on text fields."
                )));
            }
            let matches = c
                .matches
                .as_deref()
                .map(|p| Wildcards::compile(n, "matches", p))
                .transpose()?;
            let not_matches = c
                .not_matches
                .as_deref()
                .map(|p| Wildcards::compile(n, "notMatches", p))
                .transpose()?;
            if eq.is_none()
                && neq.is_none()
                && matches.is_none()
                && not_matches.is_none()
                && [gt, gte, lt, lte].iter().all(Option::is_none)
            {
                return Err(CriteriaError::bad(format!(
                    "Criterion {n} has no operator."
                )));
            }
            let ranged = [gt, gte, lt, lte].iter().any(Option::is_some);
            if ranged && !matches!(field.kind, Kind::Num | Kind::Time) {
                return Err(CriteriaError::bad(format!(
                    "Criterion {n} takes only eq and neq; gt, gte, lt and lte apply to numbers and times."
                )));
            }
            if [gt, gte, lt, lte].iter().flatten().any(|v| !v.is_finite()) {
                return Err(CriteriaError::bad(format!(
                    "Criterion {n} has a bound that is not a number."
                )));
            }
            if gt.is_some() && gte.is_some() || lt.is_some() && lte.is_some() {
                return Err(CriteriaError::bad(format!(
                    "Criterion {n} gives two lower or two upper bounds."
                )));
            }
            let values = |list: Option<Vec<String>>,
                          op: &str|
             -> Result<Option<Vec<Scalar>>, CriteriaError> {
                let Some(list) = list else { return Ok(None) };
                if list.is_empty() || list.len() > MAX_VALUES {
                    return Err(CriteriaError::bad(format!(
                        "Criterion {n} {op} needs 1 to {MAX_VALUES} values."
                    )));
                }
                list.iter()
                    .map(|v| {
                        if v.len() > MAX_VALUE_BYTES {
                            return Err(CriteriaError::bad(format!(
                                "A value of criterion {n} is longer than {MAX_VALUE_BYTES} bytes."
                            )));
                        }
                        field.parse(v)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            };
            parts.push(Compiled {
                field,
                eq: values(eq, "eq")?,
                neq: values(neq, "neq")?.unwrap_or_default(),
                lower: gt.map(|v| (v, false)).or(gte.map(|v| (v, true))),
                upper: lt.map(|v| (v, false)).or(lte.map(|v| (v, true))),
                matches,
                not_matches,
            });
        }
        Ok(Criteria { parts })
    }

    /// Whether a finding (its JSON) meets every criterion.
    pub fn matches(&self, finding: &Value) -> bool {
        self.parts.iter().all(|c| c.matches(finding))
    }

    /// The one value `eq` names for a field, if it names exactly one.
    pub fn single_eq(&self, name: &str) -> Option<&str> {
        self.parts
            .iter()
            .filter(|c| c.field.name == name)
            .find_map(|c| match c.eq.as_deref() {
                Some([Scalar::Str(s)]) => Some(s.as_str()),
                _ => None,
            })
    }

    /// The (lower, upper) bounds on `updatedAt`, inclusive, in epoch milliseconds.
    pub fn updated_range(&self) -> (Option<f64>, Option<f64>) {
        let mut lo: Option<f64> = None;
        let mut hi: Option<f64> = None;
        for c in self.parts.iter().filter(|c| c.field.name == "updatedAt") {
            if let Some((v, _)) = c.lower {
                lo = Some(lo.map_or(v, |l| l.max(v)));
            }
            if let Some((v, _)) = c.upper {
                hi = Some(hi.map_or(v, |h| h.min(v)));
            }
        }
        (lo, hi)
    }
}

fn same(a: &Scalar, b: &Scalar) -> bool {
    match (a, b) {
        (Scalar::Num(a), Scalar::Num(b)) => (a - b).abs() < 1e-9,
        (a, b) => a == b,
    }
}

impl Compiled {
    fn matches(&self, finding: &Value) -> bool {
        let value = self.field.value(finding);
        if let Some(eq) = &self.eq {
            match &value {
                Some(v) if eq.iter().any(|e| same(v, e)) => {}
                _ => return false,
            }
        }
        if let Some(v) = &value
            && self.neq.iter().any(|e| same(v, e))
        {
            return false;
        }
        if let Some(m) = &self.matches {
            match &value {
                Some(Scalar::Str(v)) if m.is_match(v) => {}
                _ => return false,
            }
        }
        if let (Some(m), Some(Scalar::Str(v))) = (&self.not_matches, &value)
            && m.is_match(v)
        {
            return false;
        }
        if self.lower.is_some() || self.upper.is_some() {
            let Some(Scalar::Num(v)) = value else {
                return false;
            };
            if let Some((b, inclusive)) = self.lower
                && !(v > b || inclusive && v >= b)
            {
                return false;
            }
            if let Some((b, inclusive)) = self.upper
                && !(v < b || inclusive && v <= b)
            {
                return false;
            }
        }
        true
    }
}

/// `sortCriteria`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SortCriteria {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
}

/// A compiled sort: by a field, then by id, ascending or descending.
#[derive(Clone, Copy, Debug)]
pub struct Sort {
    pub field: Field,
    pub descending: bool,
}

impl Sort {
    /// The default is `updatedAt`; `orderBy` defaults to `DESC` (newest, most severe first).
    pub fn compile(sort: Option<&SortCriteria>) -> Result<Sort, CriteriaError> {
        let name = sort
            .and_then(|s| s.attribute_name.as_deref())
            .unwrap_or("updatedAt");
        let field = field(name).ok_or_else(|| {
            CriteriaError::bad(format!(
                "sortCriteria.attributeName {} is not a field findings can be sorted by.",
                quoted(name)
            ))
        })?;
        let descending = match sort.and_then(|s| s.order_by.as_deref()) {
            None | Some("DESC") => true,
            Some("ASC") => false,
            Some(other) => {
                return Err(CriteriaError::bad(format!(
                    "sortCriteria.orderBy {} is not ASC or DESC.",
                    quoted(other)
                )));
            }
        };
        Ok(Sort { field, descending })
    }

    /// A finding's position: the field's value (absent first), then the id.
    pub fn key(&self, finding: &Value) -> SortKey {
        SortKey {
            value: self.field.value(finding),
            id: finding
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// The order of two positions in this sort.
    pub fn cmp(&self, a: &SortKey, b: &SortKey) -> Ordering {
        let o = match (&a.value, &b.value) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => x.cmp(y),
        }
        .then_with(|| a.id.cmp(&b.id));
        if self.descending { o.reverse() } else { o }
    }
}

/// Where a finding sits in a sort; a `nextToken` carries the last one returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SortKey {
    #[serde(rename = "k")]
    pub value: Option<Scalar>,
    pub id: String,
}
