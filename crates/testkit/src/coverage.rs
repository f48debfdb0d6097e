//! Events that cover the model: every kind, every optional field both set and unset, odd
//! strings and extreme values. What the wire's round-trip tests encode.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use peregrine_event::{
    Ancestor, CompatSyscallInfo, Container, Detail, Event, ExecInfo, ExitInfo, Family, FileInfo,
    ForkInfo, IoUringInfo, Kind, LossInfo, MetadataState, NetInfo, NewBinary, NewBinaryEvidence,
    Process, Timestamp, mode_octal,
};
use peregrine_wire::AgentIdentity;
use uuid::Uuid;

use crate::builders::{self, EventBuilder, Pod, agent_identity, pod_container};

/// 2025-11-24T16:00:00.123456789Z.
pub const T0: i64 = 1_764_000_000_123_456_789;

/// An agent of cluster `prod`, told its ARN.
pub fn identity() -> AgentIdentity {
    AgentIdentity {
        cluster_arn: peregrine_event::ClusterArn::parse(
            "arn:aws:eks:eu-west-1:111122223333:cluster/prod",
        )
        .ok(),
        ..agent_identity("i-0123456789abcdef0", "ip-10-0-1-23.ec2.internal", "prod")
    }
}

fn ancestor(pid: u32, exe: &str, start: i64) -> Ancestor {
    Ancestor {
        uuid: Uuid::from_u128(0xa000 + u128::from(pid)),
        parent_uuid: Uuid::from_u128(0xa000 + u128::from(pid) - 1),
        start_time: Timestamp::from_unix_nanos(start),
        ..builders::ancestor(pid, exe)
    }
}

pub fn shell() -> Process {
    Process {
        pid: 4242,
        ppid: 4200,
        uid: 1000,
        euid: 0,
        gid: 1000,
        comm: "bash".into(),
        exe: "/usr/bin/bash".into(),
        argv: vec![
            "bash".into(),
            "-c".into(),
            "echo \"x\"\n\u{1b}[31m | tee /tmp/ü".into(),
            String::new(),
        ],
        argv_truncated: true,
        cwd: "/home/ci".into(),
        uuid: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        parent_uuid: Uuid::from_u128(0xa000 + 4200),
        start_time: Timestamp::from_unix_nanos(T0 - 3_000_000_000),
        sha256: Some("30f31da8ba0660d6875fcfe48924bdf908c28c944e543728379623ad4691fe44".into()),
        cgroup_id: 0x1_0000_0042,
        mnt_ns: 4026531832,
        ld_preload: Some("/tmp/evil.so".into()),
        ld_library_path: Some(String::new()),
        lineage: vec![
            ancestor(4200, "/usr/bin/sudo", T0 - 9_000_000_000),
            ancestor(4199, "/usr/sbin/sshd", T0 - 90_000_000_000),
            Ancestor {
                parent_uuid: Uuid::nil(),
                ..ancestor(1, "", i64::MIN)
            },
        ],
    }
}

pub fn pod() -> Container {
    pod_container(
        "4f9a".repeat(16),
        Pod {
            namespace: "shop",
            name: "web-6d8f9c7b5-qz7xt",
            uid: "0c5e6a3e-2b7d-4c1e-9f3a-6b2d1e0f9a8c",
            container: "web",
            image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/web:3f9c2d1",
        },
    )
}

/// An event with an empty detail `dt` ns after [`T0`], on the process's main thread
/// (`tid == pid`).
pub fn bare(kind: Kind, dt: i64, process: Process, container: Option<Container>) -> Event {
    EventBuilder::new(kind)
        .at(T0 + dt)
        .by(process)
        .container(container.map(Arc::new))
        .build()
}

fn file(path: &str) -> FileInfo {
    FileInfo {
        path: path.into(),
        new_path: None,
        flags: 0o2101101,
        mode: 0o644,
        mode_octal: mode_octal(0o644),
        result: 3,
        resolved: true,
        ino: 1_234_567,
        dev: 0x10302,
        truncated: false,
        path_changed: false,
        path_unverified: false,
    }
}

/// One event of every kind, with every optional field both set and unset somewhere.
pub fn every_kind() -> Vec<Event> {
    let sh = shell();
    let host = Process {
        pid: 1,
        comm: "systemd".into(),
        exe: "/usr/lib/systemd/systemd".into(),
        uuid: Uuid::nil(),
        sha256: None,
        ..Process::default()
    };
    // The shell's other threads: one above its pid, one below (a negative delta).
    let threaded = 4250;
    let low_tid = 7; // tid < pid: negative delta
    let pending = Container {
        id: "ab".repeat(32),
        runtime: "containerd".into(),
        metadata: MetadataState::Pending,
        ..Container::default()
    };
    let odd_sha = Process {
        sha256: Some("30F31DA8BA0660D6875FCFE48924BDF908C28C944E543728379623AD4691FE44".into()),
        ..sh.clone()
    };

    let mut v = Vec::new();
    let mut e = bare(Kind::Exec, 0, sh.clone(), Some(pod()));
    e.detail = Detail::Exec(ExecInfo {
        filename: "./run.sh".into(),
        exe_dev: 0x4c,
        exe_ino: 99,
        env_truncated: true,
        new_binary: Some(NewBinary {
            evidence: NewBinaryEvidence::ObservedWrite,
            modified_by: Some(ancestor(4100, "/usr/bin/curl", T0 - 5_000)),
            modified_at: Some(Timestamp::from_unix_nanos(T0 - 1_000)),
        }),
    });
    v.push(e);
    let mut e = bare(Kind::Exec, 10, odd_sha, None);
    e.detail = Detail::Exec(ExecInfo {
        filename: "/proc/self/fd/3".into(),
        new_binary: Some(NewBinary {
            evidence: NewBinaryEvidence::OverlayUpper,
            modified_by: None,
            modified_at: None,
        }),
        ..ExecInfo::default()
    });
    v.push(e);
    let mut e = bare(Kind::Fork, 5, host.clone(), None); // time goes backwards
    e.detail = Detail::Fork(ForkInfo {
        child_pid: 4243,
        child_uuid: Uuid::from_u128(77),
    });
    v.push(e);
    let mut e = bare(Kind::Exit, 20, sh.clone(), Some(pod()));
    e.tid = threaded;
    e.detail = Detail::Exit(ExitInfo {
        code: Some(0),
        signal: None,
    });
    v.push(e);
    let mut e = bare(Kind::Exit, 21, sh.clone(), Some(pending.clone()));
    e.tid = low_tid;
    e.detail = Detail::Exit(ExitInfo {
        code: None,
        signal: Some(9),
    });
    v.push(e);
    let mut e = bare(Kind::Exit, 22, host.clone(), None);
    e.detail = Detail::Exit(ExitInfo::default());
    v.push(e);

    let mut e = bare(Kind::Open, 30, sh.clone(), Some(pod()));
    e.tid = threaded;
    e.detail = Detail::File(file("/var/log/app.log"));
    v.push(e);
    let mut e = bare(Kind::Open, 31, sh.clone(), Some(pod()));
    e.tid = threaded;
    e.detail = Detail::File(FileInfo {
        mode: 0,
        mode_octal: String::new(),
        result: -13,
        resolved: false,
        ino: 0,
        dev: 0,
        truncated: true,
        ..file("relative/../path\n\"quoted\"")
    });
    v.push(e);
    let mut e = bare(Kind::Rename, 32, sh.clone(), Some(pod()));
    e.detail = Detail::File(FileInfo {
        new_path: Some("/var/log/app.log.1".into()),
        flags: 1,
        mode: 0,
        mode_octal: String::new(),
        result: 0,
        ..file("/var/log/app.log")
    });
    v.push(e);
    let mut e = bare(Kind::Link, 33, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        new_path: Some("/tmp/hard".into()),
        resolved: false,
        path_unverified: true,
        ..file("/etc/shadow")
    });
    v.push(e);
    let mut e = bare(Kind::Symlink, 34, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        new_path: Some(String::new()),
        ..file("/etc/passwd")
    });
    v.push(e);
    let mut e = bare(Kind::Unlink, 35, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        flags: 0x200,
        mode: 0,
        mode_octal: String::new(),
        resolved: false,
        path_changed: true,
        ..file("/tmp/x")
    });
    v.push(e);
    let mut e = bare(Kind::Chmod, 36, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        mode: 0o104755,
        mode_octal: mode_octal(0o104755),
        ..file("/tmp/suid")
    });
    v.push(e);
    let mut e = bare(Kind::Chmod, 37, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        mode: 0,
        mode_octal: mode_octal(0), // "0": not empty
        ..file("/tmp/none")
    });
    v.push(e);
    let mut e = bare(Kind::Chmod, 38, sh.clone(), None);
    e.detail = Detail::File(FileInfo {
        mode: 0o755,
        mode_octal: "0755 (not canonical)".into(),
        ..file("/tmp/odd")
    });
    v.push(e);

    let nets = [
        (
            Family::Inet,
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 40, 17))),
            Some(5432),
            None,
            0,
        ),
        (
            Family::Inet,
            Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            Some(0),
            None,
            -115,
        ),
        (
            Family::Inet6,
            Some(IpAddr::V6(Ipv6Addr::new(0x2600, 0x1f18, 0, 0, 0, 0, 0, 1))),
            Some(443),
            None,
            -111,
        ),
        (
            Family::Inet6,
            Some(IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped())),
            Some(65535),
            None,
            0,
        ),
        (
            Family::Unix,
            None,
            None,
            Some("/run/containerd/containerd.sock".to_owned()),
            0,
        ),
        (
            Family::Unix,
            None,
            None,
            Some("@abstract\u{0}name".to_owned()),
            -2,
        ),
        (Family::Unix, None, None, None, 0),
    ];
    for (i, (family, address, port, path, result)) in nets.into_iter().enumerate() {
        let mut e = bare(Kind::Connect, 40 + i as i64, sh.clone(), Some(pod()));
        e.tid = threaded;
        e.detail = Detail::Net(NetInfo {
            family,
            address,
            port,
            path,
            result,
        });
        v.push(e);
    }

    let mut e = bare(Kind::IoUring, 50, sh.clone(), Some(pod()));
    e.detail = Detail::IoUring(IoUringInfo {
        entries: 4096,
        flags: 0x2,
        result: 5,
    });
    v.push(e);
    let mut e = bare(Kind::IoUring, 51, sh.clone(), None);
    e.detail = Detail::IoUring(IoUringInfo {
        entries: u32::MAX,
        flags: u32::MAX,
        result: -1,
    });
    v.push(e);
    let mut e = bare(Kind::CompatSyscall, 52, sh.clone(), Some(pod()));
    e.tid = threaded;
    e.detail = Detail::CompatSyscall(CompatSyscallInfo {
        nr: 5,
        name: Some("open".into()),
        result: Some(3),
        from_64bit: true,
    });
    v.push(e);
    let mut e = bare(Kind::CompatSyscall, 53, sh.clone(), None);
    e.detail = Detail::CompatSyscall(CompatSyscallInfo {
        nr: u32::MAX,
        name: None,
        result: None,
        from_64bit: false,
    });
    v.push(e);
    let mut e = bare(Kind::CompatSyscall, 54, sh.clone(), None);
    e.detail = Detail::CompatSyscall(CompatSyscallInfo {
        nr: 252,
        name: Some(String::new()),
        result: Some(i64::MIN),
        from_64bit: false,
    });
    v.push(e);

    let mut e = bare(Kind::Loss, 60, host.clone(), None);
    e.detail = Detail::Loss(LossInfo {
        kernel_ringbuf_full: 12,
        kernel_no_scratch: 1,
        user_queue_full: u64::MAX,
        downstream: 0,
        tick: 7,
    });
    v.push(e);
    // Kinds the agent consumes itself (cgroup_mkdir, cgroup_rmdir) have no detail and are never
    // shipped; an exit with an empty detail stands in for the smallest event.
    v.push(bare(Kind::Exit, 61, host.clone(), None));
    let mut e = bare(Kind::Exit, 0, host, Some(pending));
    e.time = Timestamp::from_unix_nanos(i64::MIN); // the largest possible step back
    v.push(e);
    v
}
