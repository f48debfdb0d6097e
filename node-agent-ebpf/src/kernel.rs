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
//!   every syscall of the node: their common path reads one word (x86-64: of the current task;
//!   arm64: of the saved registers) and returns.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::generated::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_task_btf,
        bpf_probe_read_user,
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use node_agent_common::{
    COMPAT_FROM_64BIT, COMPAT_RETURNED, CompatSyscallRecord, IoUringRecord, Kind,
};

use crate::{
    COMPAT_FOLDED, COMPAT_PENDING, COMPAT_SEEN,
    common::{Builder, config, fill_header, is_self, off, read_ptr, read_u32, read_u64, scratch},
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
    use super::*;

    /// `TS_COMPAT` in `thread_info.status`: set by the entry code for the duration of a 32-bit
    /// syscall, whichever instruction made it (arch/x86/include/asm/thread_info.h,
    /// `syscall_32_enter()` in arch/x86/entry/syscall_32.c), and cleared on the way back to
    /// user mode, after the `sys_exit` tracepoint.
    const TS_COMPAT: u32 = 0x0002;
    /// `__USER_CS`, the 64-bit user code segment. `int 0x80` saves the caller's real CS; the
    /// 32-bit `sysenter` and `syscall` entries save `__USER32_CS` (0x23).
    const USER64_CS: u64 = 0x33;

    /// The current syscall is a 32-bit one. The whole cost of both programs for every other
    /// syscall on the node: one helper call and one load. The task comes as a BTF pointer, so
    /// the load is a plain (fault-safe) instruction the verifier checks against `task_struct`'s
    /// BTF, not a `bpf_probe_read_kernel` call, which would cost several times more.
    #[inline(always)]
    pub unsafe fn compat(_regs: usize) -> bool {
        let task = bpf_get_current_task_btf() as *const u8;
        core::ptr::read_volatile(task.add(off!(task_compat_status)).cast::<u32>()) & TS_COMPAT != 0
    }

    /// The caller was running 64-bit code: `int 0x80`.
    #[inline(always)]
    pub unsafe fn from_64bit(regs: usize) -> bool {
        read_u64(regs + off!(pt_regs_mode)) & 0xffff == USER64_CS
    }

    /// i386 numbers of the syscalls that do not return to their caller.
    pub const EXIT: u32 = 1;
    pub const EXECVE: u32 = 11;
    pub const EXIT_GROUP: u32 = 252;
    pub const EXECVEAT: u32 = 358;
}

#[cfg(not(bpf_target_arch = "x86_64"))]
mod arch {
    use super::*;

    /// `PSR_MODE32_BIT` in the saved `pstate`: the caller runs in AArch32 state. It is
    /// architectural (SPSR_EL1.M[4]), unlike `TIF_32BIT`, whose number changed when arm64 moved
    /// to the generic TIF bits. An AArch64 task cannot make a 32-bit syscall, so the caller's
    /// state is the syscall's.
    const PSR_MODE32_BIT: u64 = 0x10;

    /// The current syscall is a 32-bit one: one 8-byte kernel read.
    #[inline(always)]
    pub unsafe fn compat(regs: usize) -> bool {
        read_u64(regs + off!(pt_regs_mode)) & PSR_MODE32_BIT != 0
    }

    /// No 64-bit code can make a 32-bit syscall here.
    #[inline(always)]
    pub unsafe fn from_64bit(_regs: usize) -> bool {
        false
    }

    /// arm EABI numbers (arch/arm/tools/syscall.tbl) of the syscalls that do not return.
    pub const EXIT: u32 = 1;
    pub const EXECVE: u32 = 11;
    pub const EXIT_GROUP: u32 = 248;
    pub const EXECVEAT: u32 = 387;
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
    let regs = ctx.arg::<u64>(0) as usize;
    if !arch::compat(regs) || is_self() {
        return Ok(0);
    }
    let task = bpf_get_current_task() as usize;
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
    let mut compat_flags = 0;
    if arch::from_64bit(regs) {
        compat_flags |= COMPAT_FROM_64BIT;
    }
    if config!(compat_results) == 0
        || nr == arch::EXIT
        || nr == arch::EXIT_GROUP
        || nr == arch::EXECVE
        || nr == arch::EXECVEAT
    {
        // No 32-bit sys_exit follows: the exit program is not attached, or exit never
        // returns, or an exec of a 64-bit program returns as a 64-bit process (x86:
        // set_personality_64bit() clears TS_COMPAT, arch/x86/kernel/process_64.c; the exec
        // itself is the exec event).
        emit_compat(nr, compat_flags, 0);
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
    if !arch::compat(ctx.arg::<u64>(0) as usize) {
        return Ok(0);
    }
    let key = bpf_get_current_pid_tgid();
    let Some(p) = COMPAT_PENDING.get(&key) else {
        return Ok(0);
    };
    let p = *p;
    let _ = COMPAT_PENDING.remove(&key);
    let ret = ctx.arg::<u64>(1) as i64;
    emit_compat(p.nr, p.compat_flags | COMPAT_RETURNED, ret);
    Ok(0)
}

#[inline(always)]
unsafe fn emit_compat(nr: u32, compat_flags: u32, ret: i64) {
    let Some(base) = scratch() else {
        return;
    };
    let task = bpf_get_current_task() as usize;
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
