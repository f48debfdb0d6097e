//! Size bounds: no finding is too big to store or publish, whatever the workload put in it.
//!
//! Every attacker-controlled string in a finding (paths, names, labels, lineage, evidence and
//! context values) is cut to at most [`MAX_FIELD_BYTES`] bytes, the marker
//! [`TRUNCATION_MARKER`] included, and the serialised finding is kept under
//! [`MAX_FINDING_BYTES`]: below EventBridge's 256 KiB PutEvents entry and DynamoDB's 400 KB
//! item, with room for the item's other attributes. A cut finding says so in
//! `service.additionalInfo.value` (`"truncated": true`).
//!
//! The byte budget is measured on the JSON, where a control character costs six bytes
//! (`\u0001`), not one. When the finding is over it, the per-string cap is halved (so the
//! largest strings shrink first) down to [`MIN_FIELD_BYTES`]; then lists (lineage, evidence,
//! related paths) are halved from their tail. Every step is deterministic.

use std::io;

use serde::Serialize;

use crate::{
    Container, Evidence, Finding, KubernetesWorkloadDetails, LineageObject, ProcessDetails,
    Resource, RuntimeContext,
};

/// Appended to a cut string. Consumers can search for it; the value before it is a prefix of
/// the original.
pub const TRUNCATION_MARKER: &str = "…[truncated]";
/// Longest attacker-controlled string in a finding, in UTF-8 bytes, marker included. 2048 is
/// also DynamoDB's limit for a partition key (`clusterName` keys `byCluster`).
pub const MAX_FIELD_BYTES: usize = 2048;
/// The per-string cap never goes below this while shrinking to the budget.
pub const MIN_FIELD_BYTES: usize = 64;
/// Longest list (lineage, evidence, flags, memory regions, containers, JSON arrays in
/// evidence) kept in a finding.
pub const MAX_LIST_ITEMS: usize = 32;
/// Largest serialised finding, in bytes: 200 KiB, under EventBridge's 256 KiB entry (with
/// `Source` and `DetailType`) and DynamoDB's 400 KB item (with the other attributes).
pub const MAX_FINDING_BYTES: usize = 200 * 1024;

/// Cuts `s` to at most `max` bytes, marker included, on a character boundary. Returns whether
/// it cut.
pub fn truncate(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max.saturating_sub(TRUNCATION_MARKER.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(TRUNCATION_MARKER);
    true
}

/// The serialised length of a value, without building the string.
pub fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, value) {
        Ok(()) => c.0,
        // Only maps with non-string keys fail, and a finding has none; count it as too big so
        // the caller shrinks rather than trusts it.
        Err(_) => usize::MAX,
    }
}

/// Applies `cap` to every string reachable in one walk, recording whether anything was cut.
struct Cut {
    cap: usize,
    lists: usize,
    cut: bool,
}

impl Cut {
    fn s(&mut self, s: &mut String) {
        self.cut |= truncate(s, self.cap);
    }

    fn opt(&mut self, s: &mut Option<String>) {
        if let Some(s) = s {
            self.s(s);
        }
    }

    fn list<T>(&mut self, v: &mut Vec<T>) {
        if v.len() > self.lists {
            v.truncate(self.lists);
            self.cut = true;
        }
    }

    fn json(&mut self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => self.s(s),
            serde_json::Value::Array(a) => {
                self.list(a);
                a.iter_mut().for_each(|v| self.json(v));
            }
            serde_json::Value::Object(o) => {
                if o.len() > self.lists {
                    let keep: Vec<String> = o.keys().take(self.lists).cloned().collect();
                    o.retain(|k, _| keep.contains(k));
                    self.cut = true;
                }
                o.values_mut().for_each(|v| self.json(v));
            }
            _ => {}
        }
    }

    fn container(&mut self, c: &mut Container) {
        self.opt(&mut c.container_runtime);
        self.opt(&mut c.id);
        self.opt(&mut c.name);
        self.opt(&mut c.image);
        self.opt(&mut c.image_prefix);
    }

    fn workload(&mut self, w: &mut KubernetesWorkloadDetails) {
        self.opt(&mut w.name);
        self.opt(&mut w.uid);
        self.opt(&mut w.namespace);
        self.list(&mut w.containers);
        w.containers.iter_mut().for_each(|c| self.container(c));
    }

    fn resource(&mut self, r: &mut Resource) {
        if let Some(c) = &mut r.eks_cluster_details {
            self.s(&mut c.name);
            self.opt(&mut c.arn);
            self.list(&mut c.tags);
            for t in &mut c.tags {
                self.s(&mut t.key);
                self.s(&mut t.value);
            }
        }
        if let Some(w) = r
            .kubernetes_details
            .as_mut()
            .and_then(|k| k.kubernetes_workload_details.as_mut())
        {
            self.workload(w);
        }
        if let Some(c) = &mut r.container_details {
            self.container(c);
        }
        if let Some(i) = &mut r.instance_details {
            self.opt(&mut i.instance_id);
            self.opt(&mut i.node_name);
        }
    }

    fn lineage(&mut self, l: &mut LineageObject) {
        self.opt(&mut l.name);
        self.opt(&mut l.executable_path);
    }

    fn process(&mut self, p: &mut ProcessDetails) {
        self.opt(&mut p.name);
        self.opt(&mut p.executable_path);
        self.opt(&mut p.executable_sha256);
        self.opt(&mut p.pwd);
        self.opt(&mut p.user);
        self.list(&mut p.lineage);
        p.lineage.iter_mut().for_each(|l| self.lineage(l));
    }

    fn context(&mut self, c: &mut RuntimeContext) {
        if let Some(p) = &mut c.modifying_process {
            self.process(p);
        }
        if let Some(p) = &mut c.target_process {
            self.process(p);
        }
        for s in [
            &mut c.script_path,
            &mut c.library_path,
            &mut c.ld_preload_value,
            &mut c.socket_path,
            &mut c.runc_binary_path,
            &mut c.release_agent_path,
            &mut c.mount_source,
            &mut c.mount_target,
            &mut c.file_system_type,
            &mut c.module_name,
            &mut c.module_file_path,
            &mut c.module_sha256,
            &mut c.shell_history_file_path,
            &mut c.address_family,
            &mut c.tool_name,
            &mut c.tool_category,
            &mut c.service_name,
            &mut c.command_line_example,
            &mut c.threat_file_path,
            &mut c.file_operation,
            &mut c.file_path,
        ] {
            self.opt(s);
        }
        for v in [
            &mut c.flags,
            &mut c.memory_regions,
            &mut c.related_file_paths,
        ] {
            self.list(v);
            v.iter_mut().for_each(|s| self.s(s));
        }
    }

    fn evidence(&mut self, e: &mut Evidence) {
        self.json(&mut e.expected);
        self.json(&mut e.actual);
    }

    fn finding(&mut self, f: &mut Finding) {
        self.s(&mut f.title);
        self.s(&mut f.description);
        self.resource(&mut f.resource);
        if let Some(r) = &mut f.service.runtime_details {
            if let Some(p) = &mut r.process {
                self.process(p);
            }
            if let Some(c) = &mut r.context {
                self.context(c);
            }
        }
        if let Some(rule) = f.service.detection.as_mut().and_then(|d| d.rule.as_mut()) {
            self.list(&mut rule.evidence);
            rule.evidence.iter_mut().for_each(|e| self.evidence(e));
        }
    }
}

/// Marks `additionalInfo.value` (a JSON object as a string) with `"truncated": true`.
fn mark_truncated(f: &mut Finding) {
    flag_additional_info(f, "truncated");
}

/// Sets `"<flag>": true` in `additionalInfo.value` (a JSON object as a string), when the
/// finding has one.
pub fn flag_additional_info(f: &mut Finding, flag: &str) {
    let Some(info) = &mut f.service.additional_info else {
        return;
    };
    let mut value = match serde_json::from_str::<serde_json::Value>(&info.value) {
        Ok(serde_json::Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    value.insert(flag.to_owned(), serde_json::Value::Bool(true));
    if let Ok(s) = serde_json::to_string(&value) {
        info.value = s;
    }
}

/// Whether `additionalInfo.value` says the finding was cut.
pub fn is_truncated(f: &Finding) -> bool {
    f.service
        .additional_info
        .as_ref()
        .and_then(|i| serde_json::from_str::<serde_json::Value>(&i.value).ok())
        .is_some_and(|v| v["truncated"] == serde_json::Value::Bool(true))
}

impl Finding {
    /// Applies the size bounds of this module: every attacker-controlled string at most
    /// [`MAX_FIELD_BYTES`], every list at most [`MAX_LIST_ITEMS`], and the JSON under
    /// [`MAX_FINDING_BYTES`]. Returns whether anything was cut (then `additionalInfo` says
    /// `"truncated": true`). Idempotent.
    pub fn bound(&mut self) -> bool {
        let mut cut = Cut {
            cap: MAX_FIELD_BYTES,
            lists: MAX_LIST_ITEMS,
            cut: false,
        };
        cut.finding(self);
        let mut truncated = cut.cut;
        // Room for the marker in additionalInfo, so marking cannot push it back over.
        let budget = MAX_FINDING_BYTES - 64;
        while json_len(self) > budget {
            if cut.cap > MIN_FIELD_BYTES {
                cut.cap = (cut.cap / 2).max(MIN_FIELD_BYTES);
            } else if cut.lists > 0 {
                cut.lists /= 2;
            } else {
                // Every string at the floor and every list empty: only fixed-size members and
                // the additionalInfo document are left. Nothing more to cut.
                break;
            }
            cut.cut = false;
            cut.finding(self);
            truncated |= cut.cut;
        }
        if truncated && !is_truncated(self) {
            mark_truncated(self);
        }
        truncated
    }
}
