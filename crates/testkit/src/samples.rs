//! Realistic sample activity of an EKS node, for `peregrine-local send-sample`, the sample
//! Lambda events under `events/`, the tests and the benchmark: host daemons and pods doing
//! ordinary things, plus a few attacks from one compromised pod (a cgroups `release_agent`
//! write, an SSH key appended to `authorized_keys`, a dropped binary executed).
//!
//! Everything is deterministic: the same arguments give the same events.

use std::sync::Arc;

use peregrine_event::{
    Ancestor, BlindingKind, BlindingReason, Container, Event, Kind, NewBinary, NewBinaryEvidence,
    Process, Timestamp,
};
use peregrine_wire::{
    AgentIdentity, BatchEncoder, DropCounters, EncodedMessage, EncoderConfig, Heartbeat,
    ProbeState, SpoolDepth, WireError, encode_heartbeat,
};
use uuid::Uuid;

pub use crate::builders::O_CLOEXEC;
use crate::builders::{self, EventBuilder, Pod, agent_identity, pod_container, probes};
use crate::lambda::SqsEventBuilder;
use crate::rng::Rng;
pub use peregrine_event::{O_APPEND, O_CREAT, O_TRUNC, O_WRONLY};

/// 2026-11-24T10:00:00Z.
pub const T0: i64 = 1_795_514_400_000_000_000;

/// The agent of the sample node.
pub fn identity(agent_id: &str) -> AgentIdentity {
    agent_identity(
        agent_id,
        "ip-10-0-12-34.eu-west-1.compute.internal",
        "prod-eu",
    )
}

fn uuid(n: u64) -> Uuid {
    Uuid::from_u128(0x7e57_0000_0000_4000_8000_0000_0000_0000 | u128::from(n))
}

fn ancestor(n: u64, pid: u32, exe: &str, uid: u32, t: i64) -> Ancestor {
    Ancestor {
        uuid: uuid(n),
        parent_uuid: uuid(n.saturating_sub(1)),
        uid,
        euid: uid,
        start_time: Timestamp::from_unix_nanos(t),
        ..builders::ancestor(pid, exe)
    }
}

/// A pod's container.
pub fn container(index: u32, pod: &str, namespace: &str, name: &str, image: &str) -> Container {
    pod_container(
        format!(
            "{:064x}",
            0x5ee0_0000_u64 + u64::from(index) * 0x1_0000_0001
        ),
        Pod {
            namespace,
            name: pod,
            uid: &format!("8d6b5b4c-1f0e-4a7c-9a51-{:012x}", index),
            container: name,
            image,
        },
    )
}

/// A process snapshot: `exe` with `argv`, started under the given lineage.
pub fn process(
    n: u64,
    pid: u32,
    exe: &str,
    argv: &[&str],
    cwd: &str,
    uid: u32,
    lineage: Vec<Ancestor>,
) -> Process {
    builders::process(pid, exe)
        .argv(argv)
        .cwd(cwd)
        .user(uid)
        .uuid(uuid(n))
        .started(T0 - 3_600_000_000_000 + (n as i64) * 1_000_000)
        .sha256(format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15))
        .cgroup(10_000 + n, 4_026_532_000 + (n % 7) as u32)
        .lineage(lineage)
        .build()
}

/// `b` by `p` at `t`, in `c` or on the host.
fn on(b: EventBuilder, t: i64, p: &Arc<Process>, c: Option<&Arc<Container>>) -> Event {
    b.at(t).by(Arc::clone(p)).container(c.cloned()).build()
}

fn open(
    t: i64,
    p: &Arc<Process>,
    c: Option<&Arc<Container>>,
    path: &str,
    flags: u32,
    result: i64,
) -> Event {
    let b = EventBuilder::open(path, flags)
        .result(result)
        .resolved(0x803, 1_000 + t.rem_euclid(997) as u64);
    let b = if flags & O_CREAT != 0 {
        b.mode(0o644)
    } else {
        b
    };
    on(b, t, p, c)
}

fn connect_inet(
    t: i64,
    p: &Arc<Process>,
    c: Option<&Arc<Container>>,
    addr: [u8; 4],
    port: u16,
) -> Event {
    on(EventBuilder::connect_inet(addr.into(), port), t, p, c)
}

fn exec(
    t: i64,
    p: &Arc<Process>,
    c: Option<&Arc<Container>>,
    new_binary: Option<NewBinary>,
) -> Event {
    let b = EventBuilder::exec(&p.exe).with_exec(|e| {
        (e.exe_dev, e.exe_ino, e.new_binary) = (0x2d, 4_000 + u64::from(p.pid), new_binary);
    });
    on(b, t, p, c)
}

/// The attacks of one compromised pod, at `t` (ns): a cgroups `release_agent` written
/// (PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified, severity 8), an SSH key appended
/// to root's `authorized_keys` (Persistence:Runtime/SensitiveFileModified, 5) and a binary
/// downloaded into the container and executed (Execution:Runtime/NewBinaryExecuted, 5).
pub fn attack(index: u32, t: i64) -> Vec<Event> {
    let c = Arc::new(container(
        index,
        &format!("payments-api-7d9f{index:02}"),
        "payments",
        "api",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/payments/api:2.14.1",
    ));
    let base = 100_000 + u64::from(index) * 100;
    let pid = 31_000 + index * 100;
    let shim = ancestor(
        base,
        2_100 + index,
        "/usr/bin/containerd-shim-runc-v2",
        0,
        T0 - 7_200_000_000_000,
    );
    let app = ancestor(
        base + 1,
        pid,
        "/usr/local/bin/python3.12",
        0,
        T0 - 3_000_000_000_000,
    );
    let sh = ancestor(base + 2, pid + 1, "/bin/sh", 0, t - 5_000_000_000);
    let lineage = vec![sh.clone(), app.clone(), shim.clone()];
    let shell = Arc::new(process(
        base + 3,
        pid + 2,
        "/bin/sh",
        &["sh", "-c", "echo '#!/bin/sh' > /tmp/x/release_agent"],
        "/tmp",
        0,
        lineage.clone(),
    ));
    let keys = Arc::new(process(
        base + 4,
        pid + 3,
        "/bin/busybox",
        &[
            "sh",
            "-c",
            "echo ssh-ed25519 AAAA... >> /root/.ssh/authorized_keys",
        ],
        "/root",
        0,
        lineage.clone(),
    ));
    let curl = ancestor(base + 5, pid + 4, "/usr/bin/curl", 0, t - 2_000_000_000);
    let dropped = Arc::new(process(
        base + 6,
        pid + 5,
        "/tmp/.cache/kworker",
        &["/tmp/.cache/kworker", "-o", "pool.example:3333"],
        "/tmp/.cache",
        0,
        lineage,
    ));
    vec![
        open(
            t,
            &shell,
            Some(&c),
            "/tmp/x/release_agent",
            O_WRONLY | O_CREAT | O_TRUNC,
            3,
        ),
        open(
            t + 1_000_000,
            &keys,
            Some(&c),
            "/root/.ssh/authorized_keys",
            O_WRONLY | O_CREAT | O_APPEND,
            3,
        ),
        exec(
            t + 2_000_000,
            &dropped,
            Some(&c),
            Some(NewBinary {
                evidence: NewBinaryEvidence::ObservedWrite,
                modified_by: Some(curl),
                modified_at: Some(Timestamp::from_unix_nanos(t - 1_000_000_000)),
            }),
        ),
    ]
}

/// A Medium-severity finding only: an SSH key appended in pod `index`.
pub fn ssh_key_append(index: u32, t: i64) -> Vec<Event> {
    attack(index, t)
        .into_iter()
        .filter(|e| {
            e.kind == Kind::Open
                && e.file()
                    .is_some_and(|f| f.path.ends_with("authorized_keys"))
        })
        .collect()
}

/// A release_agent write only (High severity).
pub fn release_agent_write(index: u32, t: i64) -> Vec<Event> {
    attack(index, t)
        .into_iter()
        .filter(|e| e.file().is_some_and(|f| f.path.ends_with("release_agent")))
        .collect()
}

/// A string of `len` bytes, mostly control characters (NUL, BEL, newlines, terminal escapes),
/// starting with a terminal title escape that names `tag`.
pub fn hostile_path(len: usize, tag: usize) -> String {
    let mut s = format!("/\u{1b}]0;pwned{tag}\u{7}\n");
    while s.len() < len {
        s.push(['\0', '\u{7}', '\n', '\r', '\u{1b}', '\u{9b}'][s.len() % 6]);
    }
    while s.len() > len {
        s.pop();
    }
    s
}

/// The release_agent write of pod 0 (High severity) by a process with a 120 KB argv, a 4 KiB
/// working directory and eight ancestors with 4 KiB paths, all full of control characters:
/// the largest, most hostile finding a workload can ask for.
pub fn hostile_release_agent_write() -> Option<Event> {
    let mut ev = release_agent_write(0, T0).into_iter().next()?;
    let p = Arc::make_mut(&mut ev.process);
    let first = p.lineage.first().cloned().unwrap_or_default();
    p.lineage = (0..8)
        .map(|i| Ancestor {
            exe: hostile_path(4096, i),
            comm: hostile_path(15, i),
            pid: 1000 + i as u32,
            ..first.clone()
        })
        .collect();
    p.argv = vec![
        "sh".into(),
        "-c".into(),
        format!("{}{}", hostile_path(60_000, 99), "A".repeat(60_000)),
    ];
    p.cwd = hostile_path(4096, 98);
    Some(ev)
}

/// `n` events of ordinary node activity starting at `t0`: kubelet and containerd on the host,
/// nginx, a JVM and fluent-bit in pods, liveness probes (fork, exec, connect, exit), log
/// writes, DNS and API connects. No rule fires on any of it.
pub fn benign(n: usize, t0: i64, seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed | 1);
    let systemd = ancestor(1, 1, "/usr/lib/systemd/systemd", 0, T0 - 86_400_000_000_000);
    let kubelet = Arc::new(process(
        10,
        1_800,
        "/usr/bin/kubelet",
        &[
            "/usr/bin/kubelet",
            "--config",
            "/etc/kubernetes/kubelet/config.json",
        ],
        "/",
        0,
        vec![systemd.clone()],
    ));
    let containerd = Arc::new(process(
        11,
        1_700,
        "/usr/bin/containerd",
        &["/usr/bin/containerd"],
        "/",
        0,
        vec![systemd.clone()],
    ));
    let shim = ancestor(
        12,
        2_000,
        "/usr/bin/containerd-shim-runc-v2",
        0,
        T0 - 80_000_000_000_000,
    );
    let web = Arc::new(container(
        900,
        "web-5c7d9",
        "default",
        "nginx",
        "public.ecr.aws/nginx/nginx:1.27",
    ));
    let jvm_c = Arc::new(container(
        901,
        "orders-6f8b4",
        "shop",
        "orders",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/orders:7.3.0",
    ));
    let fluent = Arc::new(container(
        902,
        "fluent-bit-x7k2p",
        "logging",
        "fluent-bit",
        "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.2",
    ));
    let nginx = Arc::new(process(
        20,
        5_001,
        "/usr/sbin/nginx",
        &["nginx: worker process"],
        "/",
        101,
        vec![
            ancestor(19, 5_000, "/usr/sbin/nginx", 0, T0 - 80_000_000_000_000),
            shim.clone(),
        ],
    ));
    let java = Arc::new(process(
        21,
        6_000,
        "/usr/lib/jvm/java-21-amazon-corretto/bin/java",
        &["java", "-jar", "/app/orders.jar"],
        "/app",
        1_000,
        vec![shim.clone()],
    ));
    let fb = Arc::new(process(
        22,
        7_000,
        "/fluent-bit/bin/fluent-bit",
        &[
            "/fluent-bit/bin/fluent-bit",
            "-c",
            "/fluent-bit/etc/fluent-bit.conf",
        ],
        "/",
        0,
        vec![shim.clone()],
    ));
    let probe_sh = Arc::new(process(
        23,
        8_000,
        "/bin/sh",
        &[
            "sh",
            "-c",
            "curl -fsS http://127.0.0.1:8080/healthz | grep -q ok",
        ],
        "/",
        101,
        vec![
            ancestor(20, 5_001, "/usr/sbin/nginx", 101, T0),
            shim.clone(),
        ],
    ));
    let probe_curl = Arc::new(process(
        24,
        8_001,
        "/usr/bin/curl",
        &["curl", "-fsS", "http://127.0.0.1:8080/healthz"],
        "/",
        101,
        vec![ancestor(23, 8_000, "/bin/sh", 101, T0), shim],
    ));
    let mut out = Vec::with_capacity(n);
    let mut t = t0;
    while out.len() < n {
        t += 1 + rng.below(2_000_000) as i64;
        let ev = match rng.below(12) {
            0 => open(
                t,
                &kubelet,
                None,
                &format!("/var/lib/kubelet/pods/{:08x}/volumes", rng.below(64)),
                O_CLOEXEC,
                9,
            ),
            1 => connect_inet(t, &kubelet, None, [10, 0, 0, 1], 443),
            2 => open(
                t,
                &containerd,
                None,
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/state.json",
                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                12,
            ),
            3 => open(
                t,
                &nginx,
                Some(&web),
                "/usr/share/nginx/html/index.html",
                0,
                11,
            ),
            4 => open(
                t,
                &nginx,
                Some(&web),
                &format!(
                    "/var/cache/nginx/proxy_temp/{}/{:05}",
                    rng.below(10),
                    rng.below(99_999)
                ),
                O_WRONLY | O_CREAT | O_TRUNC,
                13,
            ),
            5 => connect_inet(
                t,
                &java,
                Some(&jvm_c),
                [10, 100, 3, (rng.below(250) + 1) as u8],
                5432,
            ),
            6 => open(t, &java, Some(&jvm_c), "/app/lib/orders.jar", 0, 40),
            7 => on(
                EventBuilder::connect_unix("/var/run/fluent-bit/metrics.sock"),
                t,
                &fb,
                Some(&fluent),
            ),
            8 => open(
                t,
                &fb,
                Some(&fluent),
                &format!(
                    "/var/log/containers/web-5c7d9_default_nginx-{:08x}.log",
                    rng.below(4)
                ),
                0,
                14,
            ),
            9 => on(
                EventBuilder::fork(8_001, uuid(24)),
                t,
                &probe_sh,
                Some(&web),
            ),
            10 => exec(t, &probe_curl, Some(&web), None),
            _ => on(EventBuilder::exit(0), t, &probe_curl, Some(&web)),
        };
        out.push(ev);
    }
    out
}

/// A batch like a busy node sends: `n` events of [`benign`] activity with the attacks of
/// `compromised_pods` pods spread through it, each pod attacking `repeats` times. Every pod
/// gives three distinct findings, so the batch has `3 * compromised_pods` findings.
pub fn busy_node(n: usize, compromised_pods: u32, repeats: u32, seed: u64) -> Vec<Event> {
    let attacks = (compromised_pods * repeats * 3) as usize;
    let mut events = benign(n.saturating_sub(attacks), T0, seed);
    let times: Vec<i64> = events.iter().map(|e| e.time.unix_nanos()).collect();
    let mut k = 0usize;
    for _ in 0..repeats {
        for pod in 0..compromised_pods {
            // Spread through the batch, at the time of some benign event.
            let t = times
                .get((k * 7_919) % times.len().max(1))
                .copied()
                .unwrap_or(T0);
            events.extend(attack(pod, t));
            k += 1;
        }
    }
    events.sort_by_key(|e| e.time);
    events
}

/// Encodes events as one agent's SQS bodies, starting at `sequence`.
pub fn encode(
    agent_id: &str,
    sequence: u64,
    events: &[Event],
    created_at: Timestamp,
) -> Result<Vec<EncodedMessage>, WireError> {
    BatchEncoder::new(identity(agent_id), EncoderConfig::default())?
        .with_next_sequence(sequence)
        .encode(events, created_at)
}

/// Encodes events as the SQS bodies of an agent on another node or cluster.
pub fn encode_as(
    identity: AgentIdentity,
    sequence: u64,
    events: &[Event],
    created_at: Timestamp,
) -> Result<Vec<EncodedMessage>, WireError> {
    BatchEncoder::new(identity, EncoderConfig::default())?
        .with_next_sequence(sequence)
        .encode(events, created_at)
}

/// A heartbeat of the sample node.
pub fn heartbeat(agent_id: &str, at: Timestamp) -> Heartbeat {
    Heartbeat {
        kernel_release: "6.1.155-176.282.amzn2023.x86_64".into(),
        probes: probes(&[
            (
                "sched_process_exec",
                "sched/sched_process_exec",
                ProbeState::Attached,
                None,
            ),
            (
                "sys_enter_openat",
                "syscalls/sys_enter_openat",
                ProbeState::Attached,
                None,
            ),
            (
                "security_socket_connect",
                "security_socket_connect",
                ProbeState::Failed,
                Some("BTF for security_socket_connect not found"),
            ),
        ]),
        drops: DropCounters {
            kernel_ringbuf_full: 12,
            kernel_no_scratch: 0,
            user_queue_full: 3,
            spool_dropped: 0,
        },
        spool: SpoolDepth {
            messages: 2,
            bytes: 40_960,
            degraded: false,
        },
        events_sent: 1_204_331,
        uptime: std::time::Duration::from_secs(86_400),
        timestamp: at,
        ..builders::heartbeat(identity(agent_id))
    }
}

/// The SQS body of [`heartbeat`].
pub fn heartbeat_body(
    agent_id: &str,
    next_sequence: u64,
    at: Timestamp,
) -> Result<String, WireError> {
    encode_heartbeat(
        &heartbeat(agent_id, at),
        next_sequence,
        &EncoderConfig::default(),
    )
}

/// A heartbeat of a node whose agent sees everything: every probe attached, nothing dropped
/// (the sample heartbeat reports a failed probe and drops, which make coverage `DEGRADED`).
/// `peregrine-local send-heartbeat` sends it for `scripts/demo-org`'s agents.
pub fn reporting_heartbeat(identity: AgentIdentity, at: Timestamp) -> Heartbeat {
    let mut probes = heartbeat(&identity.agent_id, at).probes;
    for p in &mut probes {
        p.state = ProbeState::Attached;
        p.error = None;
    }
    Heartbeat {
        kernel_release: "6.1.155-176.282.amzn2023.x86_64".into(),
        probes,
        events_sent: 52_113,
        uptime: std::time::Duration::from_secs(3_600),
        timestamp: at,
        ..builders::heartbeat(identity)
    }
}

/// The SQS body of [`reporting_heartbeat`].
pub fn reporting_heartbeat_body(
    identity: AgentIdentity,
    next_sequence: u64,
    at: Timestamp,
) -> Result<String, WireError> {
    encode_heartbeat(
        &reporting_heartbeat(identity, at),
        next_sequence,
        &EncoderConfig::default(),
    )
}

/// A heartbeat of the sample node whose agent reports itself blind: events lost in consecutive
/// ticks, and a restart loop.
pub fn blinded_heartbeat(agent_id: &str, at: Timestamp) -> Heartbeat {
    Heartbeat {
        blinding: vec![
            BlindingReason::new(
                BlindingKind::SustainedDrops,
                "kernel 48213, queue 0 events lost in each of the last 3 ticks",
            ),
            BlindingReason::new(BlindingKind::RestartLoop, "4 starts within 600 s"),
        ],
        ..heartbeat(agent_id, at)
    }
}

/// The SQS body of [`blinded_heartbeat`].
pub fn blinded_heartbeat_body(
    agent_id: &str,
    next_sequence: u64,
    at: Timestamp,
) -> Result<String, WireError> {
    encode_heartbeat(
        &blinded_heartbeat(agent_id, at),
        next_sequence,
        &EncoderConfig::default(),
    )
}

/// The sample Lambda event for the detector under `events/`: one SQS record with an encoded
/// batch (a compromised pod among ordinary activity) and one with a heartbeat, shaped as
/// Lambda's SQS event source delivers them. Deterministic, so the files can be checked against
/// the current wire format.
pub fn detector_event() -> Result<aws_lambda_events::sqs::SqsEvent, WireError> {
    let agent = "i-0123456789abcdef0";
    let created = Timestamp::from_unix_nanos(T0 + 60_000_000_000);
    let mut events = benign(40, T0, 7);
    events.extend(attack(0, T0 + 30_000_000_000));
    events.sort_by_key(|e| e.time);
    let mut bodies: Vec<String> = encode(agent, 41, &events, created)?
        .into_iter()
        .map(|m| m.body)
        .collect();
    bodies.push(heartbeat_body(agent, 42, created)?);
    let sent_ms = (T0 + 61_000_000_000) / 1_000_000;
    let event = bodies.iter().enumerate().fold(
        SqsEventBuilder::new("arn:aws:sqs:eu-west-1:123456789012:peregrine-EventsQueue")
            .region("eu-west-1")
            .sent(sent_ms, &format!("AROAEXAMPLEROLEID:{agent}")),
        |b, (i, body)| {
            b.message(&format!("0f5e8c52-6c1b-4f0c-9a8e-2d1c3b4a5f{i:02}"), body)
                .receipt_handle(&format!("AQEBsample{i:02}receipthandle"))
        },
    );
    Ok(event.build())
}

/// The sample scheduled event for the publisher under `events/` (what an EventBridge
/// `rate(1 minute)` rule sends).
pub fn publisher_event() -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": Timestamp::from_unix_nanos(T0 + 120_000_000_000).to_rfc3339_millis(),
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/peregrine-PublisherFunctionEveryMinute"],
        "detail": {}
    })
}
