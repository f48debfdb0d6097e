//! From a [`Match`] to a GuardDuty-shaped [`Finding`].

use peregrine_event::{Event, Timestamp};
use peregrine_finding::{
    Finding, FindingEnv, NewFinding, ProcessDetails, Resource, RuleExplanation, ServiceEvidence,
};

use crate::engine::{KeyScope, Match};

/// Longest attacker-controlled string quoted in a title or description; the full values are in
/// the structured members (`runtimeDetails`, `resource`).
const QUOTE_MAX: usize = 256;

/// Workload strings quoted in human sentences: control characters (newlines, terminal escapes)
/// become U+FFFD so a title cannot forge lines in a chat message or a terminal, and long
/// values are cut. The structured members keep the exact value.
pub(crate) fn quote(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(QUOTE_MAX)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if s.chars().nth(QUOTE_MAX).is_some() {
        out.push('…');
    }
    out
}

/// Where it happened, for the title: `pod default/web-1`, `container web` or `node ip-10-0-1-2`.
fn place(ev: &Event, env: &FindingEnv) -> String {
    match &ev.container {
        Some(c) => match (&c.pod_namespace, &c.pod_name) {
            (Some(ns), Some(pod)) => format!("pod {}/{}", quote(ns), quote(pod)),
            (None, Some(pod)) => format!("pod {}", quote(pod)),
            _ => match &c.name {
                Some(name) => format!("container {}", quote(name)),
                None => format!(
                    "container {}",
                    quote(&c.id.chars().take(12).collect::<String>())
                ),
            },
        },
        None => match (&env.node_name, &env.instance_id) {
            (n, Some(i)) if !n.is_empty() => format!("node {} ({})", quote(n), quote(i)),
            (n, None) if !n.is_empty() => format!("node {}", quote(n)),
            (_, Some(i)) => format!("EC2 instance {}", quote(i)),
            _ => "the host".to_owned(),
        },
    }
}

/// The container part of the description: `, container web, image nginx:1.27`.
fn container_detail(ev: &Event) -> String {
    let Some(c) = &ev.container else {
        return String::new();
    };
    let mut s = String::new();
    if let Some(n) = &c.name {
        s.push_str(&format!(", container {}", quote(n)));
    }
    if let Some(i) = &c.image {
        s.push_str(&format!(", image {}", quote(i)));
    }
    s
}

/// Builds the finding for a match: GuardDuty's shape, with the rule and its evidence under
/// `service.detection.rule`. `now` is when the finding is written (`createdAt`); the event's
/// own time becomes `eventFirstSeen`/`eventLastSeen`.
///
/// See the crate documentation for a complete example.
pub fn to_finding(m: &Match, ev: &Event, env: &FindingEnv, now: Timestamp) -> Finding {
    let where_ = place(ev, env);
    let title = format!("{} in {}.", m.title, where_);
    let p = &ev.process;
    let exe = if p.exe.is_empty() { &p.comm } else { &p.exe };
    let mut description = m.description.clone();
    if !description.is_empty() && !description.ends_with(' ') {
        description.push(' ');
    }
    description.push_str(&format!(
        "Process {} (pid {}, uid {}, euid {}) in {}{} matched rule {}.",
        quote(exe),
        p.pid,
        p.uid,
        p.euid,
        where_,
        container_detail(ev),
        m.rule_id
    ));
    let mut finding = Finding::new(
        env,
        NewFinding {
            finding_type: m.finding_type.clone(),
            severity: m.severity,
            title,
            description,
            aggregation_key: m.aggregation_key(&KeyScope::of(env)),
            rule: RuleExplanation {
                id: m.rule_id.clone(),
                title: m.title.clone(),
                mitre: m.mitre.clone(),
                evidence: m.evidence.clone(),
            },
            process: Some(ProcessDetails::from_process(p)),
            context: m.context.clone(),
            resource: Resource::for_workload(ev.container.as_deref(), env),
            event_time: ev.time,
            now,
        },
    );
    if !m.threat_intel.is_empty() {
        finding.service.evidence = Some(ServiceEvidence {
            threat_intelligence_details: m.threat_intel.clone(),
        });
    }
    finding
}
