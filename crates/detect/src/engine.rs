//! The engine: rules indexed by event kind, evaluated per event.

use std::fmt;

use peregrine_event::{Event, Kind};
use peregrine_finding::{Evidence, FindingEnv, MitreTag, RuntimeContext, ThreatIntelligenceDetail};
use peregrine_intel::Intel;
use std::sync::Arc;

use crate::field::Subject;
use crate::program::Program;
use crate::rule::{Maturity, Rule, RuleInfo, RuleSet};

/// One index slot per kind, from the kind table in node-agent-common.
const SLOTS: usize = Kind::ALL.len();

pub(crate) fn kind_slot(kind: Kind) -> Option<usize> {
    Some(kind.slot()).filter(|&s| s < SLOTS)
}

/// What makes a finding distinct: its type, the resource (the container, or the node for a
/// host process) and the rule's `aggregate_by` values. Occurrences with the same key fold into
/// one finding ([`peregrine_finding::Finding::record_occurrence`]). When rendered, the key is
/// scoped to the account and cluster ([`KeyScope`]), so two clusters with the same node names
/// or container ids never share a finding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AggregationKey {
    pub finding_type: String,
    pub resource: AggregationResource,
    pub values: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AggregationResource {
    /// The container id.
    Container(String),
    /// A process on the host: the node is named when the key is rendered, since events do not
    /// carry the node name (the agent or the batch does).
    Host,
}

/// Where the events came from, which events themselves do not say: the account, the cluster
/// and the node. Every rendered key carries the account and cluster; a host key also the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyScope<'a> {
    pub account_id: &'a str,
    pub cluster_name: &'a str,
    pub node_name: &'a str,
}

impl<'a> KeyScope<'a> {
    /// The scope of a finding environment: its account, cluster and node.
    pub fn of(env: &'a FindingEnv) -> KeyScope<'a> {
        KeyScope {
            account_id: &env.account_id,
            cluster_name: &env.cluster_name,
            node_name: &env.node_name,
        }
    }
}

impl AggregationKey {
    /// The key as one string: type, account, cluster, then `container:<id>` or
    /// `host:<node>`, then each value. Every part is length-prefixed, so attacker-controlled
    /// values (paths, names, a cluster name) cannot shift a boundary and merge two distinct
    /// findings.
    pub fn render(&self, scope: &KeyScope<'_>) -> String {
        let resource = match &self.resource {
            AggregationResource::Container(id) => format!("container:{id}"),
            AggregationResource::Host => format!("host:{}", scope.node_name),
        };
        let mut out = String::new();
        for part in [
            self.finding_type.as_str(),
            scope.account_id,
            scope.cluster_name,
            resource.as_str(),
        ]
        .into_iter()
        .chain(self.values.iter().map(String::as_str))
        {
            out.push_str(&part.len().to_string());
            out.push(':');
            out.push_str(part);
            out.push('|');
        }
        out
    }
}

/// A rule that fired on an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub rule_id: String,
    /// The rule's maturity and the version of the rule file it came from (not part of the
    /// GuardDuty finding; for logs and listings).
    pub maturity: Maturity,
    pub pack_version: String,
    /// The rule's title, a clause such as "Container escape via cgroups release_agent was attempted".
    pub title: String,
    pub description: String,
    pub finding_type: String,
    pub severity: f64,
    pub mitre: Vec<MitreTag>,
    /// Every predicate that decided the match, with the event's actual value.
    pub evidence: Vec<Evidence>,
    pub context: RuntimeContext,
    pub aggregation: AggregationKey,
    /// For a threat-list match, every list that matched: `service.evidence.threatIntelligenceDetails`.
    pub threat_intel: Vec<ThreatIntelligenceDetail>,
}

impl Match {
    /// The aggregation key string (see [`AggregationKey::render`]).
    pub fn aggregation_key(&self, scope: &KeyScope<'_>) -> String {
        self.aggregation.render(scope)
    }
}

/// Something [`Engine::new`] set aside rather than fail on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineWarning {
    /// A later set defined a rule id already taken; the first definition (built-in rules come
    /// first) is kept, so a user file cannot replace a built-in rule by accident.
    DuplicateRule {
        id: String,
        kept_from: String,
        ignored_from: String,
    },
    /// An override names a rule no set defines.
    UnknownOverrideTarget { set: String, rule: String },
}

impl fmt::Display for EngineWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineWarning::DuplicateRule {
                id,
                kept_from,
                ignored_from,
            } => write!(
                f,
                "rule {id:?} from rule set {ignored_from:?} ignored: already defined by {kept_from:?} (to change a rule, disable it with an override and add yours under a new id)"
            ),
            EngineWarning::UnknownOverrideTarget { set, rule } => {
                write!(
                    f,
                    "rule set {set:?} overrides rule {rule:?}, which no rule set defines"
                )
            }
        }
    }
}

/// The detection engine. Build once, then call [`Engine::evaluate`] per event; it is `Sync`,
/// so one engine serves many threads.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    /// Per kind slot, the enabled rules that declared the kind, each with its condition
    /// specialised for that kind: an event visits only these.
    by_kind: Vec<Box<[(usize, Program)]>>,
    warnings: Vec<EngineWarning>,
    /// Threat and trusted lists, looked up for connect and exec events.
    intel: Option<Arc<Intel>>,
}

impl Engine {
    /// Combines rule sets in order (built-in first). Each set was validated when it was
    /// compiled, so this cannot fail; clashes between sets become [`EngineWarning`]s.
    pub fn new<I: IntoIterator<Item = RuleSet>>(sets: I) -> Engine {
        let mut rules: Vec<Rule> = Vec::new();
        let mut overrides = Vec::new();
        let mut warnings = Vec::new();
        for set in sets {
            for r in set.rules {
                if let Some(first) = rules.iter().find(|x| x.id == r.id) {
                    warnings.push(EngineWarning::DuplicateRule {
                        id: r.id.clone(),
                        kept_from: first.set.clone(),
                        ignored_from: set.name.clone(),
                    });
                    continue;
                }
                rules.push(r);
            }
            overrides.extend(set.overrides.into_iter().map(|o| (set.name.clone(), o)));
        }
        for (set, o) in overrides {
            match rules.iter_mut().find(|r| r.id == o.rule) {
                Some(r) => {
                    if let Some(enabled) = o.enabled {
                        r.enabled = enabled;
                    }
                    r.exceptions.extend(o.exceptions);
                }
                None => warnings.push(EngineWarning::UnknownOverrideTarget { set, rule: o.rule }),
            }
        }
        let mut by_kind: Vec<Vec<(usize, Program)>> = (0..SLOTS).map(|_| Vec::new()).collect();
        for (i, r) in rules.iter().enumerate().filter(|(_, r)| r.enabled) {
            for k in &r.kinds {
                // A condition no event of this kind can satisfy is not indexed for it.
                let (Some(slot), Some(program)) = (
                    kind_slot(*k).and_then(|s| by_kind.get_mut(s)),
                    Program::for_kind(&r.condition, *k),
                ) else {
                    continue;
                };
                slot.push((i, program));
            }
        }
        Engine {
            rules,
            by_kind: by_kind.into_iter().map(Vec::into_boxed_slice).collect(),
            warnings,
            intel: None,
        }
    }

    /// Adds threat-intelligence lists: connect events' remote addresses and exec events'
    /// SHA-256s are looked up in them (docs/threat-intel.md). Replaces lists set before.
    pub fn with_intel(mut self, intel: Arc<Intel>) -> Engine {
        self.intel = Some(intel);
        self
    }

    /// The threat-intelligence lists in use, if any.
    pub fn intel(&self) -> Option<&Intel> {
        self.intel.as_deref()
    }

    /// Evaluates one event, appending a [`Match`] per rule that fires. Allocates nothing unless
    /// a rule fires (or reads `process.cmdline`).
    pub fn evaluate(&self, ev: &Event, out: &mut Vec<Match>) {
        if let Some(intel) = &self.intel {
            crate::intel::evaluate(intel, ev, out);
        }
        let Some(candidates) = kind_slot(ev.kind).and_then(|s| self.by_kind.get(s)) else {
            return;
        };
        if candidates.is_empty() {
            return;
        }
        let s = Subject::new(ev);
        for (i, program) in candidates.iter() {
            if program.eval(&s)
                && let Some(rule) = self.rules.get(*i)
                && !rule.excepted(&s)
            {
                out.push(make_match(rule, &s));
            }
        }
    }

    /// The ids of the rules an event of `kind` is shown to, in evaluation order.
    pub fn candidates(&self, kind: Kind) -> impl Iterator<Item = &str> {
        kind_slot(kind)
            .and_then(|s| self.by_kind.get(s))
            .into_iter()
            .flat_map(|c| c.iter())
            .filter_map(|(i, _)| self.rules.get(*i))
            .map(|r| r.id.as_str())
    }

    /// Every loaded rule, enabled or not.
    pub fn rules(&self) -> impl Iterator<Item = RuleInfo<'_>> {
        self.rules.iter().map(RuleInfo::from)
    }

    pub fn warnings(&self) -> &[EngineWarning] {
        &self.warnings
    }
}

fn make_match(rule: &Rule, s: &Subject<'_>) -> Match {
    let (evidence, context) = rule.explain(s);
    let resource = match &s.ev.container {
        Some(c) => AggregationResource::Container(c.id.clone()),
        None => AggregationResource::Host,
    };
    Match {
        rule_id: rule.id.clone(),
        maturity: rule.maturity,
        pack_version: rule.pack_version.to_string(),
        title: rule.title.clone(),
        description: rule.description.clone(),
        finding_type: rule.finding_type.clone(),
        severity: rule.severity,
        mitre: rule.mitre.clone(),
        evidence,
        context,
        aggregation: AggregationKey {
            finding_type: rule.finding_type.clone(),
            resource,
            values: rule.aggregation_values(s),
        },
        threat_intel: Vec::new(),
    }
}
