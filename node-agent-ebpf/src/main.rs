//! Peregrine's kernel programs.
//!
//! Only tracepoints and raw tracepoints are used: nodes may lack kprobes, fentry and BPF-LSM.
//! Kernel-struct fields are read at offsets the agent takes from the running kernel's BTF and
//! writes into `OFFSETS` at load time (rustc has no CO-RE), so one object serves every kernel.
//!
//! Events are assembled in a per-CPU scratch area (never on the 512-byte stack) and copied to
//! the `EVENTS` ring buffer with their real length; a failed copy is counted in `DROPS`.
//!
//! One module per family of event kinds holds its programs and the code that fills its records:
//! [`process`] (exec, fork, exit), [`file`], [`net`], [`kernel`] (io_uring, compat syscalls) and
//! [`cgroup`]. File, network and io_uring kinds come from one pair of syscall programs in
//! [`syscalls`]; [`common`] has what every family shares
//! (kernel reads, the scratch area, the header, path resolution). This file keeps the load-time
//! configuration and the maps.
#![no_std]
#![no_main]
#![allow(unsafe_op_in_unsafe_fn)]

mod common;

mod cgroup;
mod file;
mod kernel;
mod net;
mod process;
mod syscalls;

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
};
use node_agent_common::{
    CgroupRecord, CompatSyscallRecord, ConnectRecord, DROP_SLOTS, EventHeader, ExecRecord,
    ExitRecord, FileRecord, ForkRecord, IoUringRecord, KernelOffsets, ProbeConfig,
};

use common::{PathBuf, Scratch};
use file::SumBuf;
use kernel::{CompatKey, CompatPending};
use syscalls::Args;

// ---------------------------------------------------------------------------------------------
// Load-time configuration (.rodata, rewritten by the loader; the verifier sees constants).
// Read through `common::off!` and `common::config!`.

#[unsafe(no_mangle)]
// SAFETY: all-zero is a valid KernelOffsets (plain integers); the loader overwrites it.
static OFFSETS: KernelOffsets = unsafe { core::mem::zeroed() };

#[unsafe(no_mangle)]
static CONFIG: ProbeConfig = ProbeConfig {
    self_tgid: 0,
    capture_all_opens: 0,
    cgroup_tp_root: 0,
    cgroup_tp_level: 0,
    cgroup_tp_id: 0,
    cgroup_tp_path: 0,
    wakeup_bytes: 0,
    compat_results: 0,
};

/// Not used by any program: it anchors every record type in the object's BTF, so the agent's
/// layout test can compare the eBPF side's sizes and offsets with user space's (the idea of
/// Tetragon's pkg/alignchecker).
#[repr(C)]
pub struct RecordLayouts {
    header: EventHeader,
    exec: ExecRecord,
    fork: ForkRecord,
    exit: ExitRecord,
    file: FileRecord,
    connect: ConnectRecord,
    cgroup: CgroupRecord,
    io_uring: IoUringRecord,
    compat_syscall: CompatSyscallRecord,
}

#[unsafe(no_mangle)]
#[used]
// SAFETY: all-zero is valid for these plain-integer records.
static RECORD_LAYOUTS: RecordLayouts = unsafe { core::mem::zeroed() };

// ---------------------------------------------------------------------------------------------
// Maps.

/// Resized by the loader (`--ring-buffer-bytes`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Per-CPU loss counters, indexed by `DROP_*`.
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

/// One event-assembly area per CPU. A plain array indexed by CPU because a per-CPU map value is
/// capped at 32 KiB. The loader sets max_entries to the number of possible CPUs.
#[map]
static SCRATCH: Array<Scratch> = Array::with_max_entries(1, 0);

/// Where `common::walk_path` assembles a path, right to left.
#[map]
static PATHBUF: PerCpuArray<PathBuf> = PerCpuArray::with_max_entries(1, 0);

/// Where a path argument is hashed, at syscall entry and again at exit (`file::PathCheck`).
#[map]
static PATHSUM: PerCpuArray<SumBuf> = PerCpuArray::with_max_entries(1, 0);

/// Arguments saved at syscall entry for the exit program, keyed by pid_tgid.
#[map]
static PENDING: LruHashMap<u64, Args> = LruHashMap::with_max_entries(16384, 0);

/// The 32-bit syscalls each process image has made, with how many repeats were folded into
/// the one event (`bpftool map dump name COMPAT_SEEN`). Least recently used keys go first.
#[map]
static COMPAT_SEEN: LruHashMap<CompatKey, u64> = LruHashMap::with_max_entries(16384, 0);

/// A first 32-bit syscall waiting for its result, keyed by pid_tgid.
#[map]
static COMPAT_PENDING: LruHashMap<u64, CompatPending> = LruHashMap::with_max_entries(4096, 0);

/// Per-CPU count of 32-bit syscalls folded into an earlier event (exported as
/// `peregrine_compat_syscalls_folded_total`).
#[map]
static COMPAT_FOLDED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
