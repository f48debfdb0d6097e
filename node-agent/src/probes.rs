//! Probe loading: the eBPF object, this kernel's offsets, and one status per attachment.
//!
//! A probe that fails to attach is recorded as degraded coverage (exported as a metric and in
//! heartbeats), never a crash: the rest keep running.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint, links::FdLink},
};
use node_agent_common::{DROP_NO_SCRATCH, DROP_RINGBUF_FULL, ProbeConfig};

use crate::offsets::{KernelBtf, OffsetError, VMLINUX_BTF};

/// The eBPF object built by build.rs (aya-build), embedded aligned for the loader.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/peregrine"));

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Syscalls whose entry and exit are traced, with their argument layouts decoded in the
/// kernel (node-agent-ebpf/src/syscalls.rs). The legacy forms exist only on some
/// architectures (x86_64 has them, arm64 does not).
pub const TRACKED_SYSCALLS: &[(&str, bool)] = &[
    ("openat", true),
    ("openat2", true),
    ("renameat2", true),
    ("renameat", false),
    ("linkat", true),
    ("symlinkat", true),
    ("unlinkat", true),
    ("fchmodat", true),
    ("fchmodat2", false),
    ("fchmod", true),
    ("connect", true),
    // Absent when the kernel is built without io_uring (CONFIG_IO_URING=n).
    ("io_uring_setup", false),
    ("open", false),
    ("creat", false),
    ("rename", false),
    ("link", false),
    ("symlink", false),
    ("unlink", false),
    ("chmod", false),
];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    #[error(
        "this agent was built without its eBPF object (AYA_BUILD_SKIP=1, meant for lints only): rebuild without it"
    )]
    NoObject,
    #[error(
        "loading the eBPF object failed: {0}; the agent needs root (or CAP_BPF + CAP_PERFMON) and a kernel with BPF ring buffers (5.8+)"
    )]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object lacks map {0}")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("counting CPUs: {0}")]
    Cpus(String),
    #[error("tracefs is not mounted at {TRACEFS} and mounting it failed: {0}")]
    Tracefs(std::io::Error),
    #[error("tracepoint {0} format: {1}")]
    TracepointFormat(String, String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachState {
    Attached,
    Failed,
    /// The tracepoint does not exist on this kernel or architecture; nothing to cover.
    Absent,
    /// Attached at start, then found gone by the re-check ([`LinkWatch`]). Heartbeats carry
    /// it as `failed` with the error saying so (the wire's states predate it).
    Detached,
}

impl AttachState {
    pub fn name(self) -> &'static str {
        match self {
            AttachState::Attached => "attached",
            AttachState::Failed => "failed",
            AttachState::Absent => "absent",
            AttachState::Detached => "detached",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProbeStatus {
    pub program: &'static str,
    /// `category/name` of the tracepoint.
    pub target: String,
    pub state: AttachState,
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    pub ring_buffer_bytes: u32,
    pub capture_all_opens: bool,
    pub compat_syscalls: CompatSyscalls,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ring_buffer_bytes: 4 << 20,
            capture_all_opens: false,
            compat_syscalls: CompatSyscalls::Results,
        }
    }
}

/// How 32-bit syscalls are watched. Their programs sit on the raw `sys_enter` and `sys_exit`
/// tracepoints, so each costs something on every syscall of the node, 32-bit or not
/// (docs/benchmarks.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CompatSyscalls {
    /// Reported with their results: both programs.
    #[default]
    Results,
    /// Reported at entry, without results: the `sys_enter` program only.
    Entry,
    /// Not watched: neither program (32-bit syscalls go unseen).
    Off,
}

/// Loaded and attached programs. Dropping it detaches every probe.
pub struct Probes {
    /// The attachments that are bpf links, owned here (closing one detaches it). Declared
    /// before `ebpf`, so they are dropped first.
    links: Vec<FdLink>,
    ebpf: Ebpf,
    pub status: Vec<ProbeStatus>,
    /// What the re-check looks for, one entry per attached probe.
    watch: Vec<Watched>,
    compat_folded: PerCpuArray<MapData, u64>,
}

/// How an attached probe is recognised in the kernel's lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// A bpf link: its id, and the id of the program it runs.
    Link { link_id: u32, prog_id: u32 },
    /// No bpf link (a tracepoint attached through a perf event's ioctl, on kernels before
    /// 5.15): only its program can be looked for.
    Program { prog_id: u32 },
}

/// One attached probe to re-check: its index in [`Probes::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watched {
    pub index: usize,
    pub watch: Watch,
}

/// What the kernel lists right now: every bpf link (id → program id) and every program id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelView {
    pub links: HashMap<u32, u32>,
    pub programs: HashSet<u32>,
}

impl KernelView {
    /// Lists the kernel's links and programs (needs `CAP_SYS_ADMIN`). An entry that vanishes
    /// while being listed is skipped; a listing that fails as a whole is an error.
    pub fn read() -> Result<KernelView, String> {
        let mut v = KernelView::default();
        let mut errors = 0usize;
        for l in aya::programs::loaded_links() {
            match l {
                Ok(l) => {
                    v.links.insert(l.id(), l.program_id());
                }
                Err(_) => errors += 1,
            }
        }
        for p in aya::programs::loaded_programs() {
            match p {
                Ok(p) => {
                    v.programs.insert(p.id());
                }
                Err(_) => errors += 1,
            }
        }
        if v.programs.is_empty() && errors > 0 {
            return Err(format!(
                "listing the kernel's BPF programs failed ({errors} errors)"
            ));
        }
        Ok(v)
    }

    /// The watched probes the kernel no longer lists.
    pub fn missing(&self, watched: &[Watched]) -> Vec<usize> {
        watched
            .iter()
            .filter(|w| match w.watch {
                Watch::Link { link_id, prog_id } => self.links.get(&link_id) != Some(&prog_id),
                Watch::Program { prog_id } => !self.programs.contains(&prog_id),
            })
            .map(|w| w.index)
            .collect()
    }
}

/// The periodic re-check that every probe the agent attached is still attached.
///
/// A perf-event link (tracepoints) or raw-tracepoint link cannot be detached with
/// `BPF_LINK_DETACH` (the kernel answers `EOPNOTSUPP`: neither link type implements `detach`,
/// <https://elixir.bootlin.com/linux/v6.12/source/kernel/bpf/syscall.c>), and the agent holds
/// the only reference to each, so on a healthy kernel this finds nothing: it is defence in
/// depth against whatever does remove one (a kernel bug, a debugger in the agent, a future
/// link type). On kernels without BPF perf links (before 5.15) a tracepoint has no link and
/// only its program's presence can be checked. A probe must be missing from two checks in a
/// row to count, so a listing that races with another loader does not raise an alarm.
#[derive(Clone, Debug)]
pub struct LinkWatch {
    watched: Vec<Watched>,
    suspects: HashSet<usize>,
    /// Indices already reported (each is reported once).
    reported: HashSet<usize>,
}

impl LinkWatch {
    pub fn new(watched: Vec<Watched>) -> LinkWatch {
        LinkWatch {
            watched,
            suspects: HashSet::new(),
            reported: HashSet::new(),
        }
    }

    /// Compares with `view`; returns the probes newly found detached (missing twice in a row).
    pub fn check(&mut self, view: &KernelView) -> Vec<usize> {
        let missing: HashSet<usize> = view.missing(&self.watched).into_iter().collect();
        let mut newly: Vec<usize> = missing
            .intersection(&self.suspects)
            .filter(|i| !self.reported.contains(i))
            .copied()
            .collect();
        newly.sort_unstable();
        self.reported.extend(newly.iter().copied());
        self.suspects = missing;
        newly
    }
}

/// The kernel's loss counters.
pub struct DropCounters {
    map: PerCpuArray<MapData, u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelDrops {
    pub ringbuf_full: u64,
    pub no_scratch: u64,
}

impl DropCounters {
    /// Totals over all CPUs.
    pub fn read(&self) -> Result<KernelDrops, aya::maps::MapError> {
        let sum = |i: u32| -> Result<u64, aya::maps::MapError> {
            Ok(self.map.get(&i, 0)?.iter().copied().sum())
        };
        Ok(KernelDrops {
            ringbuf_full: sum(DROP_RINGBUF_FULL)?,
            no_scratch: sum(DROP_NO_SCRATCH)?,
        })
    }

    /// Per-CPU ring-buffer-full counts.
    pub fn per_cpu_ringbuf_full(&self) -> Result<Vec<u64>, aya::maps::MapError> {
        Ok(self
            .map
            .get(&DROP_RINGBUF_FULL, 0)?
            .iter()
            .copied()
            .collect())
    }
}

/// Mounts tracefs at its usual place if it is missing (tracepoint ids are read from it).
pub fn ensure_tracefs() -> Result<(), ProbeError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; mount(2) has no other memory requirements.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(ProbeError::Tracefs(std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Probes {
    /// Loads the object for this kernel and attaches every program. Returns the ring buffer
    /// and the drop counters alongside.
    pub fn load(opts: LoadOptions) -> Result<(Probes, RingBuf<MapData>, DropCounters), ProbeError> {
        ensure_tracefs()?;
        let offsets = KernelBtf::open(Path::new(VMLINUX_BTF))?.kernel_offsets()?;
        let cg = tracepoint_fields("cgroup", "cgroup_mkdir", &["root", "level", "id", "path"])?;
        let config = ProbeConfig {
            self_tgid: std::process::id(),
            capture_all_opens: u32::from(opts.capture_all_opens),
            cgroup_tp_root: cg[0],
            cgroup_tp_level: cg[1],
            cgroup_tp_id: cg[2],
            cgroup_tp_path: cg[3],
            wakeup_bytes: wakeup_bytes(opts.ring_buffer_bytes.max(4096).next_power_of_two()),
            compat_results: u32::from(opts.compat_syscalls == CompatSyscalls::Results),
        };
        if OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        let cpus =
            aya::util::nr_cpus().map_err(|(what, e)| ProbeError::Cpus(format!("{what}: {e}")))?;
        let ring = opts.ring_buffer_bytes.max(4096).next_power_of_two();
        let mut ebpf = EbpfLoader::new()
            // The object has no CO-RE relocations (offsets come in OFFSETS), so aya need not
            // parse the kernel's BTF a second time.
            .btf(None)
            .override_global("OFFSETS", &offsets, true)
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", ring)
            .map_max_entries("SCRATCH", u32::try_from(cpus).unwrap_or(u32::MAX))
            .load(OBJECT)
            .map_err(ProbeError::Load)?;

        let mut out = Attached::default();
        attach_tracepoint(
            &mut ebpf,
            "sched_process_exec",
            "sched",
            "sched_process_exec",
            true,
            &mut out,
        );
        attach_tracepoint(
            &mut ebpf,
            "sched_process_exit",
            "sched",
            "sched_process_exit",
            true,
            &mut out,
        );
        attach_raw(
            &mut ebpf,
            "sched_process_fork",
            "sched_process_fork",
            &mut out,
        );
        attach_tracepoint(
            &mut ebpf,
            "cgroup_mkdir",
            "cgroup",
            "cgroup_mkdir",
            true,
            &mut out,
        );
        attach_tracepoint(
            &mut ebpf,
            "cgroup_rmdir",
            "cgroup",
            "cgroup_rmdir",
            true,
            &mut out,
        );
        // Compat syscalls pass only the raw syscall tracepoints (node-agent-ebpf/src/kernel.rs).
        if opts.compat_syscalls != CompatSyscalls::Off {
            attach_raw(&mut ebpf, "compat_sys_enter", "sys_enter", &mut out);
        }
        if opts.compat_syscalls == CompatSyscalls::Results {
            attach_raw(&mut ebpf, "compat_sys_exit", "sys_exit", &mut out);
        }
        for (name, required) in TRACKED_SYSCALLS {
            attach_tracepoint(
                &mut ebpf,
                "sys_enter_tracked",
                "syscalls",
                &format!("sys_enter_{name}"),
                *required,
                &mut out,
            );
            attach_tracepoint(
                &mut ebpf,
                "sys_exit_tracked",
                "syscalls",
                &format!("sys_exit_{name}"),
                *required,
                &mut out,
            );
        }

        let events = ebpf
            .take_map("EVENTS")
            .ok_or(ProbeError::MissingMap("EVENTS"))?;
        let events = RingBuf::try_from(events).map_err(|source| ProbeError::Map {
            name: "EVENTS",
            source,
        })?;
        let drops = ebpf
            .take_map("DROPS")
            .ok_or(ProbeError::MissingMap("DROPS"))?;
        let drops = PerCpuArray::try_from(drops).map_err(|source| ProbeError::Map {
            name: "DROPS",
            source,
        })?;
        let folded = ebpf
            .take_map("COMPAT_FOLDED")
            .ok_or(ProbeError::MissingMap("COMPAT_FOLDED"))?;
        let compat_folded = PerCpuArray::try_from(folded).map_err(|source| ProbeError::Map {
            name: "COMPAT_FOLDED",
            source,
        })?;
        let Attached {
            status,
            links,
            watch,
        } = out;
        Ok((
            Probes {
                links,
                ebpf,
                status,
                watch,
                compat_folded,
            },
            events,
            DropCounters { map: drops },
        ))
    }

    /// What [`LinkWatch`] looks for: each attached probe's link (or program).
    pub fn watch_list(&self) -> Vec<Watched> {
        self.watch.clone()
    }

    /// 32-bit syscalls the kernel folded into an earlier event of the same process image and
    /// syscall number (each is reported once), over all CPUs since load.
    pub fn compat_syscalls_folded(&self) -> Result<u64, aya::maps::MapError> {
        Ok(self.compat_folded.get(&0, 0)?.iter().copied().sum())
    }

    pub fn attached(&self) -> usize {
        self.status
            .iter()
            .filter(|s| s.state == AttachState::Attached)
            .count()
    }

    pub fn failed(&self) -> impl Iterator<Item = &ProbeStatus> {
        self.status
            .iter()
            .filter(|s| s.state == AttachState::Failed)
    }

    /// Detaches every probe now (also done on drop).
    pub fn detach(self) {
        drop(self.links);
        drop(self.ebpf);
    }
}

/// Wake the reader once a sixteenth of the ring is waiting (a quarter for tiny rings), at most
/// 1 MiB: it drains on its own timer before that at ordinary rates.
pub fn wakeup_bytes(ring: u32) -> u32 {
    if ring < 64 * 1024 {
        ring / 4
    } else {
        (ring / 16).min(1 << 20)
    }
}

/// Byte offsets of `fields` in a tracepoint's record, from its tracefs `format` file, so that
/// the probe does not depend on one kernel's record layout.
pub fn tracepoint_fields(
    category: &str,
    name: &str,
    fields: &[&str],
) -> Result<Vec<u32>, ProbeError> {
    let tp = format!("{category}/{name}");
    let path = Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ProbeError::TracepointFormat(tp.clone(), e.to_string()))?;
    fields
        .iter()
        .map(|f| {
            text.lines()
                .find_map(|l| {
                    // "\tfield:u64 id;\toffset:16;\tsize:8;\tsigned:0;"
                    let decl = l.trim().strip_prefix("field:")?.split(';').next()?;
                    let field = decl.rsplit([' ', '*']).next()?.split('[').next()?;
                    if field != *f {
                        return None;
                    }
                    l.split("offset:").nth(1)?.split(';').next()?.parse().ok()
                })
                .ok_or_else(|| ProbeError::TracepointFormat(tp.clone(), format!("no field {f}")))
        })
        .collect()
}

fn tracepoint_exists(category: &str, name: &str) -> bool {
    Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .is_dir()
}

/// What attaching produced: one status per attachment, the links taken over, and what the
/// re-check watches.
#[derive(Default)]
struct Attached {
    status: Vec<ProbeStatus>,
    links: Vec<FdLink>,
    watch: Vec<Watched>,
}

impl Attached {
    fn push(&mut self, program: &'static str, target: String, r: Result<Watch, String>) {
        match r {
            Ok(watch) => {
                self.watch.push(Watched {
                    index: self.status.len(),
                    watch,
                });
                self.status.push(ProbeStatus {
                    program,
                    target,
                    state: AttachState::Attached,
                    error: None,
                });
            }
            Err(e) => {
                tracing::warn!(program, target = %target, error = %e, "probe not attached; coverage is degraded");
                self.status.push(ProbeStatus {
                    program,
                    target,
                    state: AttachState::Failed,
                    error: Some(e),
                });
            }
        }
    }

    /// Takes over `link` and returns how to watch it. A link whose info cannot be read is
    /// watched through its program.
    fn keep(&mut self, link: FdLink, prog_id: u32) -> Watch {
        let watch = match link.info() {
            Ok(info) => Watch::Link {
                link_id: info.id(),
                prog_id: info.program_id(),
            },
            Err(_) => Watch::Program { prog_id },
        };
        self.links.push(link);
        watch
    }
}

fn program_id(info: Result<aya::programs::ProgramInfo, aya::programs::ProgramError>) -> u32 {
    info.map_or(0, |i| i.id())
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &'static str,
    category: &str,
    name: &str,
    required: bool,
    out: &mut Attached,
) {
    let target = format!("{category}/{name}");
    if !required && !tracepoint_exists(category, name) {
        out.status.push(ProbeStatus {
            program,
            target,
            state: AttachState::Absent,
            error: None,
        });
        return;
    }
    let result = (|| -> Result<Watch, String> {
        let prog: &mut TracePoint = ebpf
            .program_mut(program)
            .ok_or_else(|| format!("program {program} missing from the object"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| verifier_error(&e))?;
        }
        let link_id = prog.attach(category, name).map_err(|e| error_chain(&e))?;
        let prog_id = program_id(prog.info());
        // With BPF perf links (5.15+) the attachment is a bpf link the re-check can find by id.
        // Without, it is a perf event's ioctl, and converting would detach it: leave it to aya.
        if !aya::features().bpf_perf_link() {
            return Ok(Watch::Program { prog_id });
        }
        let link = prog.take_link(link_id).map_err(|e| e.to_string())?;
        let link = FdLink::try_from(link).map_err(|e| error_chain(&e))?;
        Ok(out.keep(link, prog_id))
    })();
    out.push(program, target, result);
}

fn attach_raw(ebpf: &mut Ebpf, program: &'static str, tp: &str, out: &mut Attached) {
    let target = format!("raw/{tp}");
    let result = (|| -> Result<Watch, String> {
        let prog: &mut RawTracePoint = ebpf
            .program_mut(program)
            .ok_or_else(|| format!("program {program} missing from the object"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        prog.load().map_err(|e| verifier_error(&e))?;
        let link_id = prog.attach(tp).map_err(|e| error_chain(&e))?;
        let prog_id = program_id(prog.info());
        let link = FdLink::from(prog.take_link(link_id).map_err(|e| e.to_string())?);
        Ok(out.keep(link, prog_id))
    })();
    out.push(program, target, result);
}

/// The verifier log's tail is the useful part of a load error.
fn verifier_error(e: &aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{io_error}; verifier: {}", tail.join(" | "))
        }
        other => other.to_string(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(links: &[(u32, u32)], programs: &[u32]) -> KernelView {
        KernelView {
            links: links.iter().copied().collect(),
            programs: programs.iter().copied().collect(),
        }
    }

    #[test]
    fn a_probe_is_detached_once_missing_from_two_checks_in_a_row() {
        let watched = vec![
            Watched {
                index: 0,
                watch: Watch::Link {
                    link_id: 10,
                    prog_id: 1,
                },
            },
            Watched {
                index: 2,
                watch: Watch::Link {
                    link_id: 11,
                    prog_id: 2,
                },
            },
            Watched {
                index: 3,
                watch: Watch::Program { prog_id: 3 },
            },
        ];
        let all = view(&[(10, 1), (11, 2), (99, 7)], &[1, 2, 3, 7]);
        assert!(all.missing(&watched).is_empty());
        // A link id reused by another program is not ours.
        let reused = view(&[(10, 1), (11, 7)], &[1, 2, 3, 7]);
        assert_eq!(reused.missing(&watched), [2]);

        let mut w = LinkWatch::new(watched);
        assert!(w.check(&all).is_empty());
        let gone = view(&[(11, 2)], &[1, 2]);
        assert!(w.check(&gone).is_empty(), "missing once: a suspect");
        assert!(w.check(&all).is_empty(), "back: cleared");
        assert!(w.check(&gone).is_empty());
        assert_eq!(w.check(&gone), [0, 3]);
        assert!(w.check(&gone).is_empty(), "reported once");
    }
}
