//! `DefenseEvasion:Runtime/PeregrineAgentBlinded`: the agent says it cannot see what happens on
//! its node. Not a rule over events: the agent's own state (its heartbeat in the cloud, its
//! status tick in standalone mode) says so, and this builds the finding, the same way for the
//! detector Lambda and the standalone agent.
//!
//! The type is Peregrine's own, not one of GuardDuty's: GuardDuty reports an agent that
//! stopped reporting as a coverage status (`UNHEALTHY`), not as a finding. Blinding the sensor
//! (flooding it until it drops events, detaching its probes, killing it until it restarts in
//! a loop) is what an attacker does before acting, so it is reported as a finding, with High
//! severity, MITRE T1562.001.

use peregrine_event::{BlindingKind, BlindingReason, MAX_BLINDING_REASONS, Timestamp};
use peregrine_finding::{
    Finding, FindingEnv, MitreTag, NewFinding, Resource, RuleExplanation, RuntimeContext,
};

use crate::engine::{AggregationKey, AggregationResource, KeyScope};
use crate::report::quote;

/// The finding type. Peregrine's own: GuardDuty has no such type.
pub const AGENT_BLINDED: &str = "DefenseEvasion:Runtime/PeregrineAgentBlinded";
/// Its severity: High.
pub const AGENT_BLINDED_SEVERITY: f64 = 8.0;
/// The id under `service.detection.rule.id` and `additionalInfo.ruleId`.
pub const AGENT_BLINDED_RULE_ID: &str = "peregrine-agent-blinded";
const TITLE: &str = "The Peregrine agent is blinded";

fn sentence(kind: Option<BlindingKind>) -> &'static str {
    match kind {
        Some(BlindingKind::SustainedDrops) => {
            "it lost events (kernel ring buffer or its own queue) in consecutive ticks"
        }
        Some(BlindingKind::ProbesFailed) => "some of its probes failed to attach",
        Some(BlindingKind::ProbesDetached) => "some of its probes were detached after attaching",
        Some(BlindingKind::RestartLoop) => "it restarted again and again",
        None => "a reason this detector does not know",
    }
}

/// The finding for an agent that reports `reasons` (at most [`MAX_BLINDING_REASONS`] are
/// kept). `seen_at` is when the agent said so (its heartbeat's time, or the tick's): the
/// finding's `eventFirstSeen`/`eventLastSeen`. `now` is when it is written. One finding per
/// node (account, cluster, node): each report adds an occurrence (`count`).
///
/// The reasons' codes and details come from the node, so they appear only in
/// `service.additionalInfo.value` (`blindingReasons`, escaped as JSON); the title and
/// description name only the codes this build knows.
pub fn agent_blinded_finding(
    reasons: &[BlindingReason],
    env: &FindingEnv,
    seen_at: Timestamp,
    now: Timestamp,
) -> Finding {
    let reasons = &reasons[..reasons.len().min(MAX_BLINDING_REASONS)];
    let node = match (&env.node_name, &env.instance_id) {
        (n, _) if !n.is_empty() => format!("node {}", quote(n)),
        (_, Some(i)) => format!("EC2 instance {}", quote(i)),
        _ => "the host".to_owned(),
    };
    let mut said: Vec<&str> = Vec::new();
    for r in reasons {
        let s = sentence(r.kind());
        if !said.contains(&s) {
            said.push(s);
        }
    }
    let description = format!(
        "Peregrine's agent on {node} reports that it cannot see everything that happens there: \
         {}. Activity on the node may go unseen; an attacker floods the agent, detaches its \
         probes or kills it to act unobserved. The agent's figures are in \
         service.additionalInfo.value (blindingReasons).",
        said.join("; ")
    );
    let key = AggregationKey {
        finding_type: AGENT_BLINDED.to_owned(),
        resource: AggregationResource::Host,
        values: Vec::new(),
    };
    let mut finding = Finding::new(
        env,
        NewFinding {
            finding_type: AGENT_BLINDED.to_owned(),
            severity: AGENT_BLINDED_SEVERITY,
            title: format!("{TITLE} on {node}."),
            description,
            aggregation_key: key.render(&KeyScope::of(env)),
            rule: RuleExplanation {
                id: AGENT_BLINDED_RULE_ID.to_owned(),
                title: TITLE.to_owned(),
                mitre: vec![MitreTag {
                    tactic: "Defense Evasion".to_owned(),
                    technique: "T1562.001".to_owned(),
                    name: "Impair Defenses: Disable or Modify Tools".to_owned(),
                }],
                evidence: Vec::new(),
            },
            process: None,
            context: RuntimeContext::default(),
            resource: Resource::for_workload(None, env),
            event_time: seen_at,
            now,
        },
    );
    add_reasons(&mut finding, reasons);
    finding
}

/// Adds `"blindingReasons": [{code, detail}]` to `additionalInfo.value` (a JSON object as a
/// string). Bounded: at most [`MAX_BLINDING_REASONS`] reasons, each within the wire format's
/// byte bounds (longer strings are cut here too, for reasons built by hand).
fn add_reasons(f: &mut Finding, reasons: &[BlindingReason]) {
    let Some(info) = &mut f.service.additional_info else {
        return;
    };
    let mut value = match serde_json::from_str::<serde_json::Value>(&info.value) {
        Ok(serde_json::Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    let cut = |s: &str, max: usize| -> String {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_owned()
    };
    let list: Vec<serde_json::Value> = reasons
        .iter()
        .map(|r| {
            serde_json::json!({
                "code": cut(&r.code, peregrine_event::MAX_BLINDING_CODE_BYTES),
                "detail": cut(&r.detail, peregrine_event::MAX_BLINDING_DETAIL_BYTES),
            })
        })
        .collect();
    value.insert("blindingReasons".to_owned(), list.into());
    if let Ok(s) = serde_json::to_string(&value) {
        info.value = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(node: &str) -> FindingEnv {
        FindingEnv {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
            partition: "aws".into(),
            detector_id: "det".into(),
            cluster_name: "prod".into(),
            node_name: node.into(),
            agent_id: "agent".into(),
            agent_version: "0.1.0".into(),
            ..FindingEnv::default()
        }
    }

    fn info(f: &Finding) -> serde_json::Value {
        serde_json::from_str(&f.service.additional_info.as_ref().unwrap().value).unwrap()
    }

    #[test]
    fn one_finding_per_node_with_the_reasons_as_data() {
        let t = Timestamp::from_unix_nanos(1_764_000_000_000_000_000);
        let drops = BlindingReason::new(
            BlindingKind::SustainedDrops,
            "kernel 10, queue 0 events lost in each of the last 3 ticks",
        );
        let hostile = BlindingReason {
            code: "\u{1b}[2J".into(),
            detail: "\"},{\"code\":\"forged".into(),
        };
        let f = agent_blinded_finding(&[drops.clone(), hostile.clone()], &env("node-1"), t, t);
        assert_eq!(f.finding_type, AGENT_BLINDED);
        assert_eq!(f.severity, 8.0);
        assert_eq!(f.severity_label(), "High");
        assert_eq!(f.title, "The Peregrine agent is blinded on node node-1.");
        assert!(
            f.description.contains("consecutive ticks"),
            "{}",
            f.description
        );
        assert!(!f.description.contains('\u{1b}') && !f.description.contains("forged"));
        let v = info(&f);
        assert_eq!(v["ruleId"], AGENT_BLINDED_RULE_ID);
        assert_eq!(
            v["blindingReasons"],
            serde_json::json!([
                {"code": "sustained_drops", "detail": drops.detail},
                {"code": hostile.code, "detail": hostile.detail},
            ])
        );
        assert_eq!(
            f.resource
                .instance_details
                .as_ref()
                .unwrap()
                .node_name
                .as_deref(),
            Some("node-1")
        );
        assert!(
            f.service
                .runtime_details
                .as_ref()
                .unwrap()
                .process
                .is_none()
        );

        // Another report from the same node is the same finding; another node's is not.
        let again = agent_blinded_finding(
            &[BlindingReason::new(BlindingKind::RestartLoop, "3 starts")],
            &env("node-1"),
            t,
            t,
        );
        assert_eq!(again.id, f.id);
        let other = agent_blinded_finding(&[drops], &env("node-2"), t, t);
        assert_ne!(other.id, f.id);
    }

    #[test]
    fn reasons_are_bounded() {
        let t = Timestamp::from_unix_nanos(0);
        let huge = BlindingReason {
            code: "c".repeat(10_000),
            detail: "é".repeat(10_000),
        };
        let f = agent_blinded_finding(&vec![huge; 100], &env("n"), t, t);
        let v = info(&f);
        let list = v["blindingReasons"].as_array().unwrap();
        assert_eq!(list.len(), MAX_BLINDING_REASONS);
        assert!(list[0]["code"].as_str().unwrap().len() <= 64);
        assert!(list[0]["detail"].as_str().unwrap().len() <= 512);
        assert_eq!(
            f.description
                .matches("a reason this detector does not know")
                .count(),
            1
        );
    }
}
