//! Probe loading: the eBPF object, this kernel's offsets, and one status per attachment.
//!
//! A probe that fails to attach is recorded as degraded coverage (exported as a metric and in
//! heartbeats), never a crash: the rest keep running.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
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
}

impl AttachState {
    pub fn name(self) -> &'static str {
        match self {
            AttachState::Attached => "attached",
            AttachState::Failed => "failed",
            AttachState::Absent => "absent",
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
    ebpf: Ebpf,
    pub status: Vec<ProbeStatus>,
    compat_folded: PerCpuArray<MapData, u64>,
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

        let mut status = Vec::new();
        attach_tracepoint(
            &mut ebpf,
            "sched_process_exec",
            "sched",
            "sched_process_exec",
            true,
            &mut status,
        );
        attach_tracepoint(
            &mut ebpf,
            "sched_process_exit",
            "sched",
            "sched_process_exit",
            true,
            &mut status,
        );
        attach_raw(
            &mut ebpf,
            "sched_process_fork",
            "sched_process_fork",
            &mut status,
        );
        attach_tracepoint(
            &mut ebpf,
            "cgroup_mkdir",
            "cgroup",
            "cgroup_mkdir",
            true,
            &mut status,
        );
        attach_tracepoint(
            &mut ebpf,
            "cgroup_rmdir",
            "cgroup",
            "cgroup_rmdir",
            true,
            &mut status,
        );
        // Compat syscalls pass only the raw syscall tracepoints (node-agent-ebpf/src/kernel.rs).
        if opts.compat_syscalls != CompatSyscalls::Off {
            attach_raw(&mut ebpf, "compat_sys_enter", "sys_enter", &mut status);
        }
        if opts.compat_syscalls == CompatSyscalls::Results {
            attach_raw(&mut ebpf, "compat_sys_exit", "sys_exit", &mut status);
        }
        for (name, required) in TRACKED_SYSCALLS {
            attach_tracepoint(
                &mut ebpf,
                "sys_enter_tracked",
                "syscalls",
                &format!("sys_enter_{name}"),
                *required,
                &mut status,
            );
            attach_tracepoint(
                &mut ebpf,
                "sys_exit_tracked",
                "syscalls",
                &format!("sys_exit_{name}"),
                *required,
                &mut status,
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
        Ok((
            Probes {
                ebpf,
                status,
                compat_folded,
            },
            events,
            DropCounters { map: drops },
        ))
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

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &'static str,
    category: &str,
    name: &str,
    required: bool,
    out: &mut Vec<ProbeStatus>,
) {
    let target = format!("{category}/{name}");
    if !required && !tracepoint_exists(category, name) {
        out.push(ProbeStatus {
            program,
            target,
            state: AttachState::Absent,
            error: None,
        });
        return;
    }
    let result = (|| -> Result<(), String> {
        let prog: &mut TracePoint = ebpf
            .program_mut(program)
            .ok_or_else(|| format!("program {program} missing from the object"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| verifier_error(&e))?;
        }
        prog.attach(category, name).map_err(|e| error_chain(&e))?;
        Ok(())
    })();
    push_status(out, program, target, result);
}

fn attach_raw(ebpf: &mut Ebpf, program: &'static str, tp: &str, out: &mut Vec<ProbeStatus>) {
    let target = format!("raw/{tp}");
    let result = (|| -> Result<(), String> {
        let prog: &mut RawTracePoint = ebpf
            .program_mut(program)
            .ok_or_else(|| format!("program {program} missing from the object"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        prog.load().map_err(|e| verifier_error(&e))?;
        prog.attach(tp).map_err(|e| error_chain(&e))?;
        Ok(())
    })();
    push_status(out, program, target, result);
}

fn push_status(
    out: &mut Vec<ProbeStatus>,
    program: &'static str,
    target: String,
    r: Result<(), String>,
) {
    match r {
        Ok(()) => out.push(ProbeStatus {
            program,
            target,
            state: AttachState::Attached,
            error: None,
        }),
        Err(e) => {
            tracing::warn!(program, target = %target, error = %e, "probe not attached; coverage is degraded");
            out.push(ProbeStatus {
                program,
                target,
                state: AttachState::Failed,
                error: Some(e),
            });
        }
    }
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
