//! File and network syscalls: arguments are saved at entry and the event is emitted at exit,
//! with the result. One program of each kind is attached to every tracked syscall (the loader's
//! list is `TRACKED_SYSCALLS` in node-agent/src/probes.rs); the `sys_enter_*` record carries the
//! syscall number, and each family's table ([`file::syscall`], [`net::syscall`]) turns
//! (number, raw args) into [`Args`]. Numbers are per architecture
//! (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h for arm64); arm64
//! has only the `*at` forms.
//!
//! `io_uring_setup` takes the same path, from the kernel family's table ([`kernel::syscall`]).

use aya_ebpf::{
    EbpfContext,
    helpers::generated::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
};
use node_agent_common::{Kind, KindFamily};

use crate::{
    PENDING,
    common::{is_self, scratch},
    file, kernel, net,
};

/// How the exit program must treat the saved arguments; the values other than [`OP_PATHS`]
/// belong to the family that sets them.
pub type Op = u32;
/// The arguments are paths (and their directory descriptors), read at exit.
pub const OP_PATHS: Op = 0;

/// `dfd` value meaning "store the path verbatim": a symlink's target is not resolved against
/// anything when the link is created.
pub const NO_BASE: i64 = i64::MIN;
pub const AT_FDCWD: i64 = -100;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Args {
    pub nr: u32,
    pub kind: u32,
    pub op: Op,
    pub flags: u32,
    pub mode: u32,
    pub _pad: u32,
    pub dfd: i64,
    pub ptr1: usize,
    pub dfd2: i64,
    pub ptr2: usize,
    /// What the entry program read of the path arguments, for the exit program to compare.
    pub check: file::PathCheck,
}

/// Arguments of syscall `nr` producing `kind`, with nothing read yet.
#[inline(always)]
pub fn args(nr: i32, kind: Kind, op: Op) -> Args {
    Args {
        nr: nr as u32,
        kind: kind as u32,
        op,
        flags: 0,
        mode: 0,
        _pad: 0,
        dfd: AT_FDCWD,
        ptr1: 0,
        dfd2: AT_FDCWD,
        ptr2: 0,
        check: file::PathCheck::NONE,
    }
}

#[inline(always)]
fn family(kind: u32) -> Option<KindFamily> {
    match Kind::from_u32(kind) {
        Some(k) => Some(k.family()),
        None => None,
    }
}

#[tracepoint]
pub fn sys_enter_tracked(ctx: TracePointContext) -> u32 {
    match unsafe { try_sys_enter(&ctx) } {
        Ok(r) | Err(r) => r,
    }
}

unsafe fn try_sys_enter(ctx: &TracePointContext) -> Result<u32, u32> {
    if is_self() {
        return Ok(0);
    }
    // struct trace_event_raw_sys_enter: common fields (8), int __syscall_nr, pad, args[6] at 16.
    // Only __syscall_nr is read directly: a direct context read past the shortest record this
    // program is attached to (unlink's, one argument) makes the kernel refuse the attachment.
    let nr = *(ctx.as_ptr() as *const i32).add(2);
    let mut raw = [0u64; 5];
    bpf_probe_read_kernel(
        (&raw mut raw).cast(),
        40,
        (ctx.as_ptr() as *const u8).add(16).cast(),
    );
    let Some(mut args) = file::syscall(nr, &raw)
        .or_else(|| net::syscall(nr, &raw))
        .or_else(|| kernel::syscall(nr, &raw))
    else {
        return Ok(0);
    };
    let keep = match family(args.kind) {
        Some(KindFamily::File) => file::at_entry(&mut args),
        _ => true,
    };
    if !keep {
        return Ok(0);
    }
    let key = bpf_get_current_pid_tgid();
    let _ = PENDING.insert(&key, &args, 0);
    Ok(0)
}

#[tracepoint]
pub fn sys_exit_tracked(ctx: TracePointContext) -> u32 {
    match unsafe { try_sys_exit(&ctx) } {
        Ok(r) | Err(r) => r,
    }
}

unsafe fn try_sys_exit(ctx: &TracePointContext) -> Result<u32, u32> {
    let key = bpf_get_current_pid_tgid();
    let Some(saved) = PENDING.get(&key) else {
        return Ok(0);
    };
    let args = *saved;
    let _ = PENDING.remove(&key);
    // struct trace_event_raw_sys_exit: common fields (8), int __syscall_nr, pad, long ret at 16.
    let ret = *(ctx.as_ptr() as *const i64).add(2);
    let base = scratch().ok_or(0u32)?;
    let task = bpf_get_current_task() as usize;
    match family(args.kind) {
        Some(KindFamily::Network) => net::emit(base, task, &args, ret),
        Some(KindFamily::File) => file::emit(base, task, &args, ret),
        Some(KindFamily::Kernel) => kernel::emit(base, task, &args, ret),
        _ => {}
    }
    Ok(0)
}
