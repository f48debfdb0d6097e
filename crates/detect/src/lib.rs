//! Peregrine's detection engine and built-in catalog. Pure: no I/O, and no clock but the
//! times in events and the `now` passed to [`to_finding`].
//!
//! Rules are YAML ([`RuleSet::from_yaml`]), compiled once into typed expression trees over a
//! closed set of event [`Field`]s; the [`Engine`] indexes them by event kind so an event only
//! visits rules that declared its kind. See `docs/rules.md` for the rule language.
//!
//! ```
//! use peregrine_detect::{to_finding, Catalog, Engine, RuleSet};
//! use peregrine_event::{Event, Timestamp};
//! use peregrine_finding::FindingEnv;
//!
//! let site = RuleSet::from_yaml("site.yaml", r#"
//! version: 1.0.0
//! rules:
//!   - id: shell-in-web-pod
//!     maturity: stable
//!     title: A shell was started in a web pod
//!     type: Execution:Runtime/SuspiciousCommand
//!     severity: 5
//!     kinds: [exec]
//!     condition:
//!       all:
//!         - {field: container.pod_name, op: prefix, value: web-}
//!         - {field: process.name, op: in, values: [sh, bash, dash]}
//! "#)?;
//! let engine = Engine::new([Catalog::builtin()?, site]);
//! assert!(engine.warnings().is_empty());
//!
//! // An event as the agent emits it (one JSON line).
//! let event: Event = serde_json::from_str(r#"{
//!   "kind": "open", "time": "2026-11-24T17:00:00Z", "tid": 4242, "container": null,
//!   "process": {"pid": 4242, "ppid": 1, "uid": 0, "euid": 0, "gid": 0,
//!     "comm": "sh", "exe": "/bin/sh", "argv": ["sh"], "cwd": "/",
//!     "uuid": "00000000-0000-0000-0000-000000000001", "parent_uuid": "00000000-0000-0000-0000-000000000000",
//!     "start_time": "2026-11-24T16:59:00Z", "sha256": null, "cgroup_id": 1, "mnt_ns": 1},
//!   "file": {"path": "/tmp/cgrp/release_agent", "flags": 577, "mode": 420, "result": 3}
//! }"#)?;
//!
//! let mut matches = Vec::new();
//! engine.evaluate(&event, &mut matches);
//! assert_eq!(matches[0].rule_id, "cgroups-release-agent-modified");
//!
//! let env = FindingEnv { node_name: "ip-10-0-1-2".into(), ..FindingEnv::default() };
//! let finding = to_finding(&matches[0], &event, &env, Timestamp::now());
//! assert_eq!(finding.title, "Container escape via cgroups release_agent was attempted in node ip-10-0-1-2.");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Event strings (paths, argv, names, labels) are attacker-controlled: they are only compared
//! against patterns compiled from rule text, never compiled into patterns themselves.

mod blinding;
#[cfg(any(test, feature = "cases"))]
pub mod cases;
mod catalog;
mod engine;
mod error;
mod field;
mod glob;
mod intel;
mod matcher;
mod pred;
mod program;
mod report;
mod rule;
mod strset;

pub use crate::blinding::{
    AGENT_BLINDED, AGENT_BLINDED_RULE_ID, AGENT_BLINDED_SEVERITY, agent_blinded_finding,
};
pub use crate::catalog::{Catalog, StateFindingType};
pub use crate::engine::{
    AggregationKey, AggregationResource, Engine, EngineWarning, KeyScope, Match,
};
pub use crate::error::{At, RuleError};
pub use crate::field::{Field, FieldType, O_APPEND, O_CREAT, O_RDWR, O_TRUNC, O_WRONLY};
pub use crate::intel::{INTEL_FINDING_TYPES, IntelFindingType, address_type, file_type};
pub use crate::report::to_finding;
pub use crate::rule::{Maturity, RULE_PACK_MAJOR, RuleInfo, RuleSet};
