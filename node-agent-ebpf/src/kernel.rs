//! Kernel: what slips past the per-syscall tracepoints the other families rely on.
//!
//! - `io_uring_setup`, from [`syscall`]'s table (entry and exit programs in
//!   [`crate::syscalls`]). The operations of a ring are submitted through shared memory and run
//!   in the kernel without passing any syscall tracepoint, so creating the ring is the moment
//!   to see.
//! - 32-bit (compat) syscalls, from raw tracepoints on `sys_enter` and `sys_exit`. The
//!   `syscalls:sys_{enter,exit}_*` tracepoints ignore compat syscalls
//!   (`trace_get_syscall_nr()` in kernel/trace/trace_syscalls.c returns -1 for them), so a
//!   32-bit process, or `int 0x80` from a 64-bit one, opens files unseen. Both programs run on
//!   every syscall of the node: their common path reads one word of the current task and
//!   returns.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::generated::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_user},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use node_agent_common::{
    COMPAT_FROM_64BIT, COMPAT_RETURNED, CompatSyscallRecord, IoUringRecord, Kind,
};

use crate::{
    COMPAT_FOLDED, COMPAT_PENDING, COMPAT_SEEN,
    common::{Builder, fill_header, is_self, off, read_ptr, read_u32, read_u64, scratch},
    syscalls::{Args, Op, args},
};

/// `io_uring_setup`: `flags` holds the entries, `ptr1` the `struct io_uring_params`.
const OP_IO_URING_SETUP: Op = 4;

/// `io_uring_setup` is 425 on both architectures (arch/x86/entry/syscalls/syscall_64.tbl,
/// include/uapi/asm-generic/unistd.h).
const IO_URING_SETUP: i32 = 425;

/// Offset of `flags` in `struct io_uring_params` (include/uapi/linux/io_uring.h: `sq_entries`,
/// `cq_entries`, then `flags`).
const IO_URING_PARAMS_FLAGS: usize = 8;

/// Decodes the raw arguments `a` of syscall `n`; `None` when it is not a kernel-family syscall.
#[inline(always)]
pub fn syscall(n: i32, a: &[u64; 5]) -> Option<Args> {
    if n != IO_URING_SETUP {
        return None;
    }
    let mut r = args(n, Kind::IoUring, OP_IO_URING_SETUP);
    r.flags = a[0] as u32;
    r.ptr1 = a[1] as usize;
    Some(r)
}

/// Emits the [`IoUringRecord`] of a finished `io_uring_setup` that returned `ret`.
#[inline(always)]
pub unsafe fn emit(base: *mut u8, task: usize, args: &Args, ret: i64) {
    let rec = base.cast::<IoUringRecord>();
    fill_header(&raw mut (*rec).header, Kind::IoUring, task);
    (*rec).result = ret;
    (*rec).entries = args.flags;
    // Read at exit: the kernel has copied the parameters in (and back out), so the page is
    // resident. A failed read leaves 0.
    let mut flags: u32 = 0;
    if args.ptr1 != 0 {
        bpf_probe_read_user(
            (&raw mut flags).cast(),
            4,
            (args.ptr1 + IO_URING_PARAMS_FLAGS) as *const core::ffi::c_void,
        );
    }
    (*rec).flags = flags;
    Builder::new(base, core::mem::size_of::<IoUringRecord>()).submit();
}

// ---------------------------------------------------------------------------------------------
// Compat syscalls.

#[cfg(bpf_target_arch = "x86_64")]
mod arch {
    /// `TS_COMPAT` in `thread_info.status`: set by the entry code for the duration of a 32-bit
    /// syscall, whichever way it was made (arch/x86/include/asm/thread_info.h,
    /// `syscall_32_enter()` in arch/x86/entry/syscall_32.c). Cleared on the way back to user
    /// mode, after the `sys_exit` tracepoint.
    pub const COMPAT_MASK: u32 = 0x0002;
    /// `__USER_CS`: the 64-bit user code segment. `int 0x80` pushes the caller's real CS; the
    /// 32-bit `sysenter`/`syscall` entries record `__USER32_CS` (0x23).
    pub const USER64_CS: u64 = 0x33;
    /// i386 numbers of the syscalls that do not return to their caller: reported at entry.
    pub const EXIT: u32 = 1;
    pub const EXECVE: u32 = 11;
    pub const EXIT_GROUP: u32 = 252;
    pub const EXECVEAT: u32 = 358;
}

#[cfg(not(bpf_target_arch = "x86_64"))]
mod arch {
    /// arm64: `TIF_32BIT` in `thread_info.flags` marks an AArch32 task
    /// (arch/arm64/include/asm/thread_info.h). An AArch64 task has no way to make a 32-bit
    /// syscall, so the task's mode is the syscall's.
    pub const COMPAT_MASK: u32 = 1 << 22;
    /// No 64-bit caller can make a compat syscall here.
    pub const USER64_CS: u64 = u64::MAX;
    /// arm EABI numbers (arch/arm/tools/syscall.tbl).
    pub const EXIT: u32 = 1;
    pub const EXECVE: u32 = 11;
    pub const EXIT_GROUP: u32 = 248;
    pub const EXECVEAT: u32 = 387;
}

/// The current task is in a 32-bit syscall. The whole cost of both programs for every other
/// syscall on the node: one helper call and one 4-byte kernel read.
#[inline(always)]
unsafe fn in_compat_syscall() -> Option<usize> {
    let task = bpf_get_current_task() as usize;
    (read_u32(task + off!(task_compat_word)) & arch::COMPAT_MASK != 0).then_some(task)
}

/// One process image's use of one 32-bit syscall: the `COMPAT_SEEN` key.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CompatKey {
    /// `start_boottime` of the thread-group leader: with `tgid`, a process across pid reuse.
    start_boottime_ns: u64,
    tgid: u32,
    /// Low 32 bits of `self_exec_id`: a new image after every exec.
    exec_id: u32,
    nr: u32,
    _pad: u32,
}

/// What the exit program needs from the entry: the syscall was a first, and how it was made.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CompatPending {
    nr: u32,
    compat_flags: u32,
}

/// Raw tracepoint: `TP_PROTO(struct pt_regs *regs, long id)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn compat_sys_enter(ctx: RawTracePointContext) -> i32 {
    match unsafe { try_compat_enter(&ctx) } {
        Ok(r) | Err(r) => r,
    }
}

unsafe fn try_compat_enter(ctx: &RawTracePointContext) -> Result<i32, i32> {
    let Some(task) = in_compat_syscall() else {
        return Ok(0);
    };
    if is_self() {
        return Ok(0);
    }
    let nr = ctx.arg::<u64>(1) as u32;
    let pid_tgid = bpf_get_current_pid_tgid();
    let leader = read_ptr(task + off!(task_group_leader));
    let key = CompatKey {
        start_boottime_ns: read_u64(leader + off!(task_start_boottime)),
        tgid: (pid_tgid >> 32) as u32,
        exec_id: read_u32(task + off!(task_self_exec_id)),
        nr,
        _pad: 0,
    };
    // Each (image, syscall) is reported once; repeats are only counted, so a 32-bit program
    // costs one event per distinct syscall it makes. An evicted key is reported again:
    // eviction can duplicate an event, never hide one.
    let repeat = match COMPAT_SEEN.get_ptr_mut(&key) {
        Some(n) => {
            *n += 1;
            true
        }
        // BPF_NOEXIST: of two threads racing here, one reports.
        None => COMPAT_SEEN
            .insert(&key, &0, u64::from(BPF_NOEXIST))
            .is_err(),
    };
    if repeat {
        count_folded();
        // A first syscall whose exit was never seen must not lend its number to this one's.
        let _ = COMPAT_PENDING.remove(&pid_tgid);
        return Ok(0);
    }
    let regs = ctx.arg::<u64>(0) as usize;
    let mut compat_flags = 0;
    if off!(pt_regs_cs) != 0 && read_u64(regs + off!(pt_regs_cs)) & 0xffff == arch::USER64_CS {
        compat_flags |= COMPAT_FROM_64BIT;
    }
    if nr == arch::EXIT || nr == arch::EXIT_GROUP || nr == arch::EXECVE || nr == arch::EXECVEAT {
        // No sys_exit with TS_COMPAT follows: exit never returns, and an exec of a 64-bit
        // program clears TS_COMPAT (arch/x86/kernel/process_64.c, set_personality_64bit);
        // the exec itself is the exec event.
        emit_compat(task, nr, compat_flags, 0);
        return Ok(0);
    }
    let pending = CompatPending { nr, compat_flags };
    let _ = COMPAT_PENDING.insert(&pid_tgid, &pending, 0);
    Ok(0)
}

/// Raw tracepoint: `TP_PROTO(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn compat_sys_exit(ctx: RawTracePointContext) -> i32 {
    match unsafe { try_compat_exit(&ctx) } {
        Ok(r) | Err(r) => r,
    }
}

unsafe fn try_compat_exit(ctx: &RawTracePointContext) -> Result<i32, i32> {
    let Some(task) = in_compat_syscall() else {
        return Ok(0);
    };
    let key = bpf_get_current_pid_tgid();
    let Some(p) = COMPAT_PENDING.get(&key) else {
        return Ok(0);
    };
    let p = *p;
    let _ = COMPAT_PENDING.remove(&key);
    let ret = ctx.arg::<u64>(1) as i64;
    emit_compat(task, p.nr, p.compat_flags | COMPAT_RETURNED, ret);
    Ok(0)
}

#[inline(always)]
unsafe fn emit_compat(task: usize, nr: u32, compat_flags: u32, ret: i64) {
    let Some(base) = scratch() else {
        return;
    };
    let rec = base.cast::<CompatSyscallRecord>();
    fill_header(&raw mut (*rec).header, Kind::CompatSyscall, task);
    (*rec).result = ret;
    (*rec).nr = nr;
    (*rec).compat_flags = compat_flags;
    Builder::new(base, core::mem::size_of::<CompatSyscallRecord>()).submit();
}

#[inline(always)]
fn count_folded() {
    if let Some(c) = COMPAT_FOLDED.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; no other writer on this CPU while we run.
        unsafe { *c += 1 };
    }
}
