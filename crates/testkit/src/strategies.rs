//! proptest strategies for the event model: strings with control characters and non-ASCII,
//! extreme times and ids, every detail variant, and batches whose events share processes and
//! containers as the agent's do.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use peregrine_event::{
    Ancestor, CompatSyscallInfo, Container, Detail, Event, ExecInfo, ExitInfo, Family, FileInfo,
    ForkInfo, IoUringInfo, Kind, LossInfo, MetadataState, NetInfo, NewBinary, NewBinaryEvidence,
    Process, Timestamp, mode_octal,
};
use proptest::prelude::*;
use uuid::Uuid;

use crate::coverage::T0;

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "(?s).{0,12}",
        1 => Just(String::new()),
        1 => "/[a-z/._-]{1,40}",
    ]
}

pub fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

pub fn uuid() -> impl Strategy<Value = Uuid> {
    prop_oneof![1 => Just(Uuid::nil()), 4 => any::<u128>().prop_map(Uuid::from_u128)]
}

pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        any::<i64>(),
        (T0 - 10_000_000_000..T0 + 10_000_000_000),
        Just(i64::MIN),
        Just(i64::MAX),
    ]
    .prop_map(Timestamp::from_unix_nanos)
}

pub fn ancestor_s() -> impl Strategy<Value = Ancestor> {
    (
        uuid(),
        uuid(),
        any::<u32>(),
        text(),
        text(),
        any::<u32>(),
        any::<u32>(),
        timestamp(),
    )
        .prop_map(
            |(uuid, parent_uuid, pid, exe, comm, uid, euid, start_time)| Ancestor {
                uuid,
                parent_uuid,
                pid,
                exe,
                comm,
                uid,
                euid,
                start_time,
            },
        )
}

pub fn sha256() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "[0-9a-f]{64}".prop_map(Some),
        "[0-9a-fA-F]{63,65}".prop_map(Some),
        text().prop_map(Some),
    ]
}

pub fn process_s() -> impl Strategy<Value = Process> {
    (
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (
            text(),
            text(),
            prop::collection::vec(text(), 0..5),
            any::<bool>(),
            text(),
        ),
        (
            uuid(),
            uuid(),
            timestamp(),
            sha256(),
            any::<u64>(),
            any::<u32>(),
        ),
        (
            opt_text(),
            opt_text(),
            prop::collection::vec(ancestor_s(), 0..4),
        ),
    )
        .prop_map(|(ids, names, place, env)| {
            let mut p = Process::default();
            (p.pid, p.ppid, p.uid, p.euid, p.gid) = ids;
            (p.comm, p.exe, p.argv, p.argv_truncated, p.cwd) = names;
            (
                p.uuid,
                p.parent_uuid,
                p.start_time,
                p.sha256,
                p.cgroup_id,
                p.mnt_ns,
            ) = place;
            (p.ld_preload, p.ld_library_path, p.lineage) = env;
            p
        })
}

pub fn container_s() -> impl Strategy<Value = Container> {
    (
        text(),
        text(),
        (
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
            opt_text(),
        ),
        prop::sample::select(vec![
            MetadataState::Complete,
            MetadataState::Pending,
            MetadataState::Unavailable,
            MetadataState::NotFound,
        ]),
    )
        .prop_map(
            |(
                id,
                runtime,
                (name, image, pod_name, pod_namespace, pod_uid, namespace),
                metadata,
            )| {
                Container {
                    id,
                    runtime,
                    name,
                    image,
                    pod_name,
                    pod_namespace,
                    pod_uid,
                    namespace,
                    metadata,
                }
            },
        )
}

pub fn exec_s() -> impl Strategy<Value = ExecInfo> {
    let new_binary = (
        prop::sample::select(vec![
            NewBinaryEvidence::OverlayUpper,
            NewBinaryEvidence::ObservedWrite,
        ]),
        prop::option::of(ancestor_s()),
        prop::option::of(timestamp()),
    )
        .prop_map(|(evidence, modified_by, modified_at)| NewBinary {
            evidence,
            modified_by,
            modified_at,
        });
    (
        text(),
        any::<u32>(),
        any::<u64>(),
        any::<bool>(),
        prop::option::of(new_binary),
    )
        .prop_map(
            |(filename, exe_dev, exe_ino, env_truncated, new_binary)| ExecInfo {
                filename,
                exe_dev,
                exe_ino,
                env_truncated,
                new_binary,
            },
        )
}

pub fn file_s() -> impl Strategy<Value = FileInfo> {
    (
        (
            text(),
            opt_text(),
            any::<u32>(),
            any::<u32>(),
            0..3u8,
            text(),
        ),
        (
            any::<i64>(),
            any::<bool>(),
            any::<u64>(),
            any::<u32>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (path, new_path, flags, mode, how, other),
                (result, resolved, ino, dev, truncated, path_changed, path_unverified),
            )| {
                FileInfo {
                    path,
                    new_path,
                    flags,
                    mode,
                    mode_octal: match how {
                        0 => String::new(),
                        1 => mode_octal(mode),
                        _ => other,
                    },
                    result,
                    resolved,
                    ino,
                    dev,
                    truncated,
                    path_changed,
                    path_unverified,
                }
            },
        )
}

pub fn net_s() -> impl Strategy<Value = NetInfo> {
    let address = prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        any::<[u8; 4]>().prop_map(|b| IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())),
    ];
    (
        prop::sample::select(vec![Family::Inet, Family::Inet6, Family::Unix]),
        prop::option::of(address),
        prop::option::of(any::<u16>()),
        opt_text(),
        any::<i64>(),
    )
        .prop_map(|(family, address, port, path, result)| NetInfo {
            family,
            address,
            port,
            path,
            result,
        })
}

pub fn io_uring_s() -> impl Strategy<Value = IoUringInfo> {
    (any::<u32>(), any::<u32>(), any::<i64>()).prop_map(|(entries, flags, result)| IoUringInfo {
        entries,
        flags,
        result,
    })
}

pub fn compat_syscall_s() -> impl Strategy<Value = CompatSyscallInfo> {
    (
        any::<u32>(),
        opt_text(),
        prop::option::of(any::<i64>()),
        any::<bool>(),
    )
        .prop_map(|(nr, name, result, from_64bit)| CompatSyscallInfo {
            nr,
            name,
            result,
            from_64bit,
        })
}

pub fn loss_s() -> impl Strategy<Value = LossInfo> {
    any::<[u64; 5]>().prop_map(|[a, b, c, d, tick]| LossInfo {
        kernel_ringbuf_full: a,
        kernel_no_scratch: b,
        user_queue_full: c,
        downstream: d,
        tick,
    })
}

/// An event's kind and its detail: any kind that is shipped, with a detail of the variant the
/// kind table gives it.
pub fn kind_detail_s() -> impl Strategy<Value = (Kind, Detail)> {
    let fork = (any::<u32>(), uuid()).prop_map(|(child_pid, child_uuid)| ForkInfo {
        child_pid,
        child_uuid,
    });
    let exit = (
        prop::option::of(any::<i32>()),
        prop::option::of(any::<i32>()),
    )
        .prop_map(|(code, signal)| ExitInfo { code, signal });
    let detail = prop_oneof![
        2 => exec_s().prop_map(Detail::Exec),
        2 => fork.prop_map(Detail::Fork),
        2 => exit.prop_map(Detail::Exit),
        3 => file_s().prop_map(Detail::File),
        3 => net_s().prop_map(Detail::Net),
        1 => io_uring_s().prop_map(Detail::IoUring),
        1 => compat_syscall_s().prop_map(Detail::CompatSyscall),
        1 => loss_s().prop_map(Detail::Loss),
    ];
    (detail, any::<prop::sample::Index>()).prop_map(|(detail, i)| {
        let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| detail.fits(*k)).collect();
        (*i.get(&kinds), detail)
    })
}

/// A batch whose events share processes and containers (as real batches do), with varying
/// thread ids, so that the tables and the per-event deltas are both exercised.
pub fn batch_s(max_events: usize) -> impl Strategy<Value = Vec<Event>> {
    (
        prop::collection::vec(process_s().prop_map(Arc::new), 1..4),
        prop::collection::vec(container_s().prop_map(Arc::new), 0..3),
    )
        .prop_flat_map(move |(procs, conts)| {
            let n_p = procs.len();
            let n_c = conts.len();
            let event = (
                kind_detail_s(),
                timestamp(),
                0..n_p,
                prop::option::of(any::<u32>()),
                prop::option::of(0..n_c.max(1)),
            );
            prop::collection::vec(event, 0..max_events).prop_map(move |evs| {
                evs.into_iter()
                    .map(|((kind, detail), time, p, tid, c)| {
                        // Events of one process share its snapshot, as the agent's do.
                        let process = Arc::clone(&procs[p]);
                        Event {
                            kind,
                            time,
                            // The main thread unless another one was drawn.
                            tid: tid.unwrap_or(process.pid),
                            process,
                            container: c.and_then(|c| conts.get(c).cloned()),
                            detail,
                        }
                    })
                    .collect()
            })
        })
}
