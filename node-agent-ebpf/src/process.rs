//! Process lifecycle: exec, fork (a new process, not a thread) and exit (the last thread).

use aya_ebpf::{
    EbpfContext,
    helpers::generated::bpf_get_current_task,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use node_agent_common::{
    ARGV_CAP, ENV_CAP, ExecRecord, ExitRecord, FILENAME_CAP, ForkRecord, Kind, TRUNC_ARGV,
    TRUNC_CWD, TRUNC_ENV, TRUNC_EXE, TRUNC_FILENAME,
};

use crate::common::{
    Builder, fill_header, inode_info, is_self, off, read_ptr, read_u32, read_u64, scratch,
    walk_path,
};

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    match unsafe { try_exec(&ctx) } {
        Ok(r) | Err(r) => r,
    }
}

unsafe fn try_exec(ctx: &TracePointContext) -> Result<u32, u32> {
    if is_self() {
        return Ok(0);
    }
    let base = scratch().ok_or(0u32)?;
    let task = bpf_get_current_task() as usize;
    let rec = base.cast::<ExecRecord>();
    fill_header(&raw mut (*rec).header, Kind::Exec, task);
    let mut b = Builder::new(base, core::mem::size_of::<ExecRecord>());
    let mut flags = 0;

    // filename: __data_loc char[] at offset 8: low 16 bits = offset in the record.
    let loc: u32 = ctx.read_at(8).map_err(|_| 0u32)?;
    let (len, t) = b.kernel_str(
        ctx.as_ptr() as usize + (loc & 0xffff) as usize,
        FILENAME_CAP,
    );
    (*rec).filename_len = len;
    if t {
        flags |= TRUNC_FILENAME;
    }

    let mm = read_ptr(task + off!(task_mm));
    let exe_file = read_ptr(mm + off!(mm_exe_file));
    if exe_file != 0 {
        let w = walk_path(exe_file + off!(file_f_path), task);
        let (len, t) = b.path(w);
        (*rec).exe_len = len;
        if t {
            flags |= TRUNC_EXE;
        }
        let info = inode_info(exe_file);
        (*rec).exe_ino = info.ino;
        (*rec).exe_dev = info.dev;
        (*rec).exe_mtime_sec = info.mtime_sec;
        (*rec).exe_mtime_nsec = info.mtime_nsec;
        flags |= info.flags;
    } else {
        (*rec).exe_len = 0;
        (*rec).exe_ino = 0;
        (*rec).exe_dev = 0;
        (*rec).exe_mtime_sec = 0;
        (*rec).exe_mtime_nsec = 0;
    }

    let fs = read_ptr(task + off!(task_fs));
    let w = walk_path(fs + off!(fs_pwd), task);
    let (len, t) = b.path(w);
    (*rec).cwd_len = len;
    if t {
        flags |= TRUNC_CWD;
    }

    let arg_start = read_u64(mm + off!(mm_arg_start)) as usize;
    let arg_end = read_u64(mm + off!(mm_arg_end)) as usize;
    let (len, t) = b.user_bytes(arg_start, arg_end.saturating_sub(arg_start), ARGV_CAP);
    (*rec).argv_len = len;
    if t {
        flags |= TRUNC_ARGV;
    }

    let env_start = read_u64(mm + off!(mm_env_start)) as usize;
    let env_end = read_u64(mm + off!(mm_env_end)) as usize;
    let (len, t) = b.user_bytes(env_start, env_end.saturating_sub(env_start), ENV_CAP);
    (*rec).env_len = len;
    if t {
        flags |= TRUNC_ENV;
    }
    (*rec)._pad = [0; 3];
    (*rec).header.flags = flags;
    b.submit();
    Ok(0)
}

/// Raw tracepoint: `TP_PROTO(struct task_struct *parent, struct task_struct *child)`.
/// The plain tracepoint lacks the child's tgid, which tells a new process from a new thread.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    match unsafe { try_fork(&ctx) } {
        Ok(r) | Err(r) => r,
    }
}

unsafe fn try_fork(ctx: &RawTracePointContext) -> Result<i32, i32> {
    if is_self() {
        return Ok(0);
    }
    let child: usize = ctx.arg::<u64>(1) as usize;
    let child_pid = read_u32(child + off!(task_pid));
    let child_tgid = read_u32(child + off!(task_tgid));
    if child_pid != child_tgid {
        return Ok(0); // a thread
    }
    let base = scratch().ok_or(0i32)?;
    let task = bpf_get_current_task() as usize;
    let rec = base.cast::<ForkRecord>();
    fill_header(&raw mut (*rec).header, Kind::Fork, task);
    (*rec).child_tgid = child_tgid;
    (*rec).child_start_boottime_ns = read_u64(child + off!(task_start_boottime));
    (*rec)._pad = 0;
    Builder::new(base, core::mem::size_of::<ForkRecord>()).submit();
    Ok(0)
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    match unsafe { try_exit() } {
        Ok(r) | Err(r) => r,
    }
}

unsafe fn try_exit() -> Result<u32, u32> {
    if is_self() {
        return Ok(0);
    }
    let task = bpf_get_current_task() as usize;
    // Only the last thread of the group ends the process: do_exit() has already decremented
    // signal->live (kernel/exit.c), so it reads 0 here for the last one.
    let signal = read_ptr(task + off!(task_signal));
    if read_u32(signal + off!(signal_live)) != 0 {
        return Ok(0);
    }
    let base = scratch().ok_or(0u32)?;
    let rec = base.cast::<ExitRecord>();
    fill_header(&raw mut (*rec).header, Kind::Exit, task);
    (*rec).exit_code = read_u32(task + off!(task_exit_code));
    (*rec)._pad = 0;
    Builder::new(base, core::mem::size_of::<ExitRecord>()).submit();
    Ok(0)
}
