//! Peregrine's kernel programs.
//!
//! Only tracepoints and raw tracepoints are used: nodes may lack kprobes, fentry and BPF-LSM.
//! Kernel-struct fields are read at offsets the agent takes from the running kernel's BTF and
//! writes into `OFFSETS` at load time (rustc has no CO-RE), so one object serves every kernel.
//!
//! Events are assembled in a per-CPU scratch area (never on the 512-byte stack) and copied to
//! the `EVENTS` ring buffer with their real length; a failed copy is counted in `DROPS`.
#![no_std]
#![no_main]
#![allow(unsafe_op_in_unsafe_fn)]

mod syscalls;

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_str,
        bpf_probe_read_user, bpf_probe_read_user_str, bpf_ringbuf_output,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use node_agent_common::{
    AF_INET, AF_INET6, AF_UNIX, ARGV_CAP, COMM_LEN, CgroupRecord, ConnectRecord, DATA_MASK,
    DROP_NO_SCRATCH, DROP_RINGBUF_FULL, DROP_SLOTS, ENV_CAP, EventHeader, ExecRecord, ExitRecord,
    FILENAME_CAP, FileRecord, ForkRecord, IN_UPPER_LAYER, KernelOffsets, Kind, ON_OVERLAY,
    PATH_CAP, PATH_RESOLVED, ProbeConfig, SCRATCH_SIZE, SOCK_PATH_CAP, TRUNC_ARGV, TRUNC_CWD,
    TRUNC_ENV, TRUNC_EXE, TRUNC_FILENAME, TRUNC_NEW_PATH, TRUNC_PATH, WRITE_INTENT,
};
use syscalls::{Args, NO_BASE, OP_FCHMOD, OP_OPENAT2};

// ---------------------------------------------------------------------------------------------
// Load-time configuration (.rodata, rewritten by the loader; the verifier sees constants).

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
}

#[unsafe(no_mangle)]
#[used]
// SAFETY: all-zero is valid for these plain-integer records.
static RECORD_LAYOUTS: RecordLayouts = unsafe { core::mem::zeroed() };

macro_rules! off {
    ($field:ident) => {
        // SAFETY: reading a field of a static; volatile so the loader's value is used.
        (unsafe { ptr::read_volatile(&raw const OFFSETS.$field) } as usize)
    };
}

macro_rules! config {
    ($field:ident) => {
        (unsafe { ptr::read_volatile(&raw const CONFIG.$field) })
    };
}

// ---------------------------------------------------------------------------------------------
// Maps.

/// Resized by the loader (`--ring-buffer-bytes`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Per-CPU loss counters, indexed by `DROP_*`.
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

#[repr(C)]
struct Scratch {
    buf: [u8; SCRATCH_SIZE],
}

/// One event-assembly area per CPU. A plain array indexed by CPU because a per-CPU map value is
/// capped at 32 KiB. The loader sets max_entries to the number of possible CPUs.
#[map]
static SCRATCH: Array<Scratch> = Array::with_max_entries(1, 0);

/// Path components are written right to left into [0, PATH_CAP - 1); one name (<= 255 bytes)
/// plus its slash may overhang the masked position.
const PATHBUF_SIZE: usize = PATH_CAP + 256;

#[repr(C)]
struct PathBuf {
    pos: usize,
    truncated: u64,
    dentry: usize,
    vfsmnt: usize,
    buf: [u8; PATHBUF_SIZE],
}

#[map]
static PATHBUF: PerCpuArray<PathBuf> = PerCpuArray::with_max_entries(1, 0);

/// Arguments saved at syscall entry for the exit program, keyed by pid_tgid.
#[map]
static PENDING: LruHashMap<u64, Args> = LruHashMap::with_max_entries(16384, 0);

// ---------------------------------------------------------------------------------------------
// Kernel memory access.

#[inline(always)]
unsafe fn read_u64(p: usize) -> u64 {
    let mut v: u64 = 0;
    if p == 0 {
        return 0;
    }
    bpf_probe_read_kernel((&raw mut v).cast(), 8, p as *const c_void);
    v
}

#[inline(always)]
unsafe fn read_u32(p: usize) -> u32 {
    let mut v: u32 = 0;
    if p == 0 {
        return 0;
    }
    bpf_probe_read_kernel((&raw mut v).cast(), 4, p as *const c_void);
    v
}

#[inline(always)]
unsafe fn read_ptr(p: usize) -> usize {
    read_u64(p) as usize
}

#[inline(always)]
fn count_drop(slot: u32) {
    if let Some(c) = DROPS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot; no other writer on this CPU while we run.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn scratch() -> Option<*mut u8> {
    // SAFETY: helper call without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    match SCRATCH.get_ptr_mut(cpu) {
        Some(s) => Some(s.cast::<u8>()),
        None => {
            count_drop(DROP_NO_SCRATCH);
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Event assembly.

/// Appends variable-length fields after a record's fixed part. Offsets are masked so that the
/// verifier can bound every write; the caps in node-agent-common guarantee the mask never bites.
struct Builder {
    base: *mut u8,
    fixed: usize,
    cursor: usize,
}

impl Builder {
    #[inline(always)]
    fn new(base: *mut u8, fixed: usize) -> Self {
        Builder {
            base,
            fixed,
            cursor: 0,
        }
    }

    #[inline(always)]
    fn dst(&self) -> *mut u8 {
        // SAFETY: fixed <= 256 and the masked cursor plus any field cap stay inside the scratch.
        unsafe { self.base.add(self.fixed + (self.cursor & DATA_MASK)) }
    }

    /// Copies a NUL-terminated user string of at most `cap - 1` bytes. Returns (len, truncated).
    #[inline(always)]
    unsafe fn user_str(&mut self, src: usize, cap: usize) -> (u16, bool) {
        if src == 0 {
            return (0, false);
        }
        let r = bpf_probe_read_user_str(self.dst().cast(), cap as u32, src as *const c_void);
        self.commit_str(r, cap)
    }

    #[inline(always)]
    unsafe fn kernel_str(&mut self, src: usize, cap: usize) -> (u16, bool) {
        if src == 0 {
            return (0, false);
        }
        let r = bpf_probe_read_kernel_str(self.dst().cast(), cap as u32, src as *const c_void);
        self.commit_str(r, cap)
    }

    #[inline(always)]
    fn commit_str(&mut self, r: i64, cap: usize) -> (u16, bool) {
        if r <= 0 {
            return (0, false);
        }
        // r counts the terminating NUL, which the next field overwrites.
        let len = (r as usize - 1) & (cap - 1);
        self.cursor += len;
        (len as u16, r as usize >= cap)
    }

    /// Copies `len` raw bytes of user memory, capped at `cap - 1`. Returns (len, truncated).
    #[inline(always)]
    unsafe fn user_bytes(&mut self, src: usize, len: usize, cap: usize) -> (u16, bool) {
        if src == 0 || len == 0 {
            return (0, false);
        }
        let truncated = len > cap - 1;
        let n = if truncated { cap - 1 } else { len } & (cap - 1);
        if bpf_probe_read_user(self.dst().cast(), n as u32, src as *const c_void) != 0 {
            return (0, false);
        }
        self.cursor += n;
        (n as u16, truncated)
    }

    /// Copies the path assembled by `walk_path` out of the per-CPU path buffer.
    #[inline(always)]
    unsafe fn path(&mut self, walked: Walked) -> (u16, bool) {
        let Some(pb) = PATHBUF.get_ptr_mut(0) else {
            return (0, false);
        };
        let start = walked.start & (PATH_CAP - 1);
        let len = (PATH_CAP - 1 - start) & (PATH_CAP - 1);
        if len == 0 {
            return (0, walked.truncated);
        }
        let src = (&raw const (*pb).buf).cast::<u8>().add(start);
        if bpf_probe_read_kernel(self.dst().cast(), len as u32, src as *const c_void) != 0 {
            return (0, false);
        }
        self.cursor += len;
        (len as u16, walked.truncated)
    }

    #[inline(always)]
    fn total(&self) -> usize {
        self.fixed + (self.cursor & DATA_MASK)
    }

    /// Sets `data_len` and copies the record into the ring buffer.
    #[inline(always)]
    unsafe fn submit(self) {
        let hdr = self.base.cast::<EventHeader>();
        (*hdr).data_len = (self.cursor & DATA_MASK) as u32;
        let len = self.total();
        let flags =
            if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= u64::from(config!(wakeup_bytes)) {
                u64::from(BPF_RB_FORCE_WAKEUP)
            } else {
                u64::from(BPF_RB_NO_WAKEUP)
            };
        if bpf_ringbuf_output(
            (&raw const EVENTS).cast_mut().cast(),
            self.base.cast(),
            len as u64,
            flags,
        ) != 0
        {
            count_drop(DROP_RINGBUF_FULL);
        }
    }
}

/// Fills the common header from the current task.
#[inline(always)]
unsafe fn fill_header(h: *mut EventHeader, kind: Kind, task: usize) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let leader = read_ptr(task + off!(task_group_leader));
    let parent = read_ptr(task + off!(task_real_parent));
    let parent_leader = read_ptr(parent + off!(task_group_leader));
    let cred = read_ptr(task + off!(task_real_cred));
    let nsproxy = read_ptr(task + off!(task_nsproxy));
    let mnt_ns = read_ptr(nsproxy + off!(nsproxy_mnt_ns));

    (*h).kind = kind as u32;
    (*h).flags = 0;
    (*h).ktime_ns = bpf_ktime_get_boot_ns();
    (*h).start_boottime_ns = read_u64(leader + off!(task_start_boottime));
    (*h).parent_start_boottime_ns = read_u64(parent_leader + off!(task_start_boottime));
    (*h).cgroup_id = bpf_get_current_cgroup_id();
    (*h).tgid = (pid_tgid >> 32) as u32;
    (*h).tid = pid_tgid as u32;
    (*h).ppid = read_u32(parent + off!(task_tgid));
    (*h).uid = uid_gid as u32;
    (*h).gid = (uid_gid >> 32) as u32;
    (*h).euid = read_u32(cred + off!(cred_euid));
    (*h).mnt_ns = if mnt_ns == 0 {
        0
    } else {
        read_u32(mnt_ns + off!(mnt_ns_inum))
    };
    (*h).data_len = 0;
    bpf_get_current_comm((&raw mut (*h).comm).cast(), COMM_LEN as u32);
}

#[inline(always)]
fn is_self() -> bool {
    // SAFETY: helper call without arguments.
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    tgid == config!(self_tgid)
}

// ---------------------------------------------------------------------------------------------
// Paths.

struct Walked {
    start: usize,
    truncated: bool,
}

const MAX_PATH_DEPTH: u32 = 48;

macro_rules! ld {
    ($p:expr) => {
        ptr::read_volatile(&raw const $p)
    };
}
macro_rules! st {
    ($p:expr, $v:expr) => {
        ptr::write_volatile(&raw mut $p, $v)
    };
}

/// Builds the absolute path of `path_ptr` (a `struct path *`) as seen from the task's root, by
/// walking dentries up to the root and crossing mount points, writing names right to left.
/// Mirrors the kernel's `prepend_path()` (fs/d_path.c) without its locking: a concurrent rename
/// can yield a stale name, never an unsafe read.
///
/// Every loop-carried value lives in the per-CPU map value, not in registers: the verifier then
/// sees the same state after the loop whichever iteration left it, prunes, and verifies the rest
/// of the program once instead of once per exit (which exceeds the 1M-instruction budget).
#[inline(always)]
unsafe fn walk_path(path_ptr: usize, task: usize) -> Walked {
    let mut out = Walked {
        start: PATH_CAP - 1,
        truncated: false,
    };
    let Some(pb) = PATHBUF.get_ptr_mut(0) else {
        return out;
    };
    let fs = read_ptr(task + off!(task_fs));
    let root_mnt = read_ptr(fs + off!(fs_root) + off!(path_mnt));
    let root_dentry = read_ptr(fs + off!(fs_root) + off!(path_dentry));
    let dentry = read_ptr(path_ptr + off!(path_dentry));
    let vfsmnt = read_ptr(path_ptr + off!(path_mnt));
    if dentry == 0 || vfsmnt == 0 {
        return out;
    }
    st!((*pb).dentry, dentry);
    st!((*pb).vfsmnt, vfsmnt);
    st!((*pb).pos, PATH_CAP - 1);
    // Stays 1 if the depth limit ends the walk.
    st!((*pb).truncated, 1);
    for _ in 0..MAX_PATH_DEPTH {
        let dentry = ld!((*pb).dentry);
        let vfsmnt = ld!((*pb).vfsmnt);
        if dentry == root_dentry && vfsmnt == root_mnt {
            st!((*pb).truncated, 0);
            break;
        }
        let mnt = vfsmnt - off!(mount_mnt);
        if dentry == read_ptr(vfsmnt + off!(vfsmount_mnt_root)) {
            let parent = read_ptr(mnt + off!(mount_mnt_parent));
            if parent == mnt || parent == 0 {
                st!((*pb).truncated, 0);
                break;
            }
            st!((*pb).dentry, read_ptr(mnt + off!(mount_mnt_mountpoint)));
            st!((*pb).vfsmnt, parent + off!(mount_mnt));
            continue;
        }
        let d_parent = read_ptr(dentry + off!(dentry_d_parent));
        if d_parent == dentry || d_parent == 0 {
            st!((*pb).truncated, 0);
            break;
        }
        let name = read_ptr(dentry + off!(dentry_d_name) + off!(qstr_name));
        let len = (read_u32(dentry + off!(dentry_d_name) + off!(qstr_len)) & 0xff) as usize;
        let pos = ld!((*pb).pos) & (PATH_CAP - 1);
        if len + 1 > pos {
            break;
        }
        let at = (pos - len - 1) & (PATH_CAP - 1);
        let buf = (&raw mut (*pb).buf).cast::<u8>();
        *buf.add(at) = b'/';
        bpf_probe_read_kernel(buf.add(at + 1).cast(), len as u32, name as *const c_void);
        st!((*pb).pos, at);
        st!((*pb).dentry, d_parent);
    }
    let mut pos = ld!((*pb).pos) & (PATH_CAP - 1);
    if pos == PATH_CAP - 1 {
        // The root itself.
        pos -= 1;
        *(&raw mut (*pb).buf).cast::<u8>().add(pos) = b'/';
    }
    out.start = pos;
    out.truncated = ld!((*pb).truncated) != 0;
    out
}

/// `struct file *` for descriptor `fd` of `task`, or 0.
#[inline(always)]
unsafe fn fd_file(task: usize, fd: i64) -> usize {
    if fd < 0 {
        return 0;
    }
    let files = read_ptr(task + off!(task_files));
    let fdt = read_ptr(files + off!(files_fdt));
    let max = read_u32(fdt + off!(fdtable_max_fds)) as i64;
    if fd >= max {
        return 0;
    }
    let arr = read_ptr(fdt + off!(fdtable_fd));
    read_ptr(arr + (fd as usize) * 8)
}

/// Inode identity and overlay state of a `struct file *`.
struct InodeInfo {
    ino: u64,
    dev: u32,
    mtime_sec: i64,
    mtime_nsec: u32,
    flags: u32,
}

const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

#[inline(always)]
unsafe fn inode_info(file: usize) -> InodeInfo {
    let inode = read_ptr(file + off!(file_f_inode));
    let sb = read_ptr(inode + off!(inode_i_sb));
    let mut info = InodeInfo {
        ino: read_u64(inode + off!(inode_i_ino)),
        dev: read_u32(sb + off!(sb_s_dev)),
        mtime_sec: read_u64(inode + off!(inode_i_mtime_sec)) as i64,
        mtime_nsec: read_u32(inode + off!(inode_i_mtime_nsec)),
        flags: 0,
    };
    if config_has_ovl() && read_u64(sb + off!(sb_s_magic)) == OVERLAYFS_SUPER_MAGIC {
        info.flags |= ON_OVERLAY;
        // container_of(inode, struct ovl_inode, vfs_inode)->__upperdentry
        let ovl = inode - off!(ovl_inode_vfs_inode);
        if read_ptr(ovl + off!(ovl_inode_upperdentry)) != 0 {
            info.flags |= IN_UPPER_LAYER;
        }
    }
    info
}

#[inline(always)]
fn config_has_ovl() -> bool {
    off!(has_ovl) != 0
}

// ---------------------------------------------------------------------------------------------
// Process lifecycle.

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

// ---------------------------------------------------------------------------------------------
// cgroup v2 lifecycle: tells user space a cgroup id's path before any process runs in it.

#[tracepoint(category = "cgroup", name = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    match unsafe { try_cgroup(&ctx, Kind::CgroupMkdir) } {
        Ok(r) | Err(r) => r,
    }
}

#[tracepoint(category = "cgroup", name = "cgroup_rmdir")]
pub fn cgroup_rmdir(ctx: TracePointContext) -> u32 {
    match unsafe { try_cgroup(&ctx, Kind::CgroupRmdir) } {
        Ok(r) | Err(r) => r,
    }
}

unsafe fn try_cgroup(ctx: &TracePointContext, kind: Kind) -> Result<u32, u32> {
    let rec_base = ctx.as_ptr() as usize;
    // Only the default (v2) hierarchy, whose hierarchy id is 0: v1 hierarchies have their own
    // id spaces, and bpf_get_current_cgroup_id() reports v2 ids.
    if read_u32(rec_base + config!(cgroup_tp_root) as usize) != 0 {
        return Ok(0);
    }
    let base = scratch().ok_or(0u32)?;
    let task = bpf_get_current_task() as usize;
    let rec = base.cast::<CgroupRecord>();
    fill_header(&raw mut (*rec).header, kind, task);
    (*rec).cgroup_id = read_u64(rec_base + config!(cgroup_tp_id) as usize);
    (*rec).level = read_u32(rec_base + config!(cgroup_tp_level) as usize);
    (*rec)._pad = 0;
    let mut b = Builder::new(base, core::mem::size_of::<CgroupRecord>());
    // __data_loc: low 16 bits are the offset of the string in the record.
    let loc = read_u32(rec_base + config!(cgroup_tp_path) as usize);
    let (len, t) = b.kernel_str(rec_base + (loc & 0xffff) as usize, PATH_CAP);
    (*rec).path_len = len;
    (*rec).header.flags = if t { TRUNC_PATH } else { 0 };
    b.submit();
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// File and network syscalls: arguments are saved at entry and the event is emitted at exit,
// with the result. One program of each kind is attached to every tracked syscall; the syscall
// number in the record says how to read its arguments (see syscalls.rs).

const AT_FDCWD: i64 = -100;

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
    let Some(mut args) = syscalls::decode(nr, &raw) else {
        return Ok(0);
    };
    if args.op == OP_OPENAT2 {
        // struct open_how { u64 flags; u64 mode; u64 resolve; }
        let mut how = [0u64; 2];
        if bpf_probe_read_user((&raw mut how).cast(), 16, args.ptr2 as *const c_void) != 0 {
            return Ok(0);
        }
        args.flags = how[0] as u32;
        args.mode = how[1] as u32;
    }
    if args.kind == Kind::Open as u32
        && args.flags & WRITE_INTENT == 0
        && config!(capture_all_opens) == 0
    {
        // A plain read never crosses to user space.
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
    if args.kind == Kind::Connect as u32 {
        emit_connect(base, task, &args, ret);
    } else {
        emit_file(base, task, &args, ret);
    }
    Ok(0)
}

/// Appends `path` (a user pointer, resolved against `dfd`) and, when it is relative, the
/// directory it is relative to.
#[inline(always)]
unsafe fn push_user_path(
    b: &mut Builder,
    task: usize,
    dfd: i64,
    path: usize,
    flags: &mut u32,
    trunc: u32,
) -> (u16, u16) {
    let at = b.dst();
    let (len, t) = b.user_str(path, PATH_CAP);
    if t {
        *flags |= trunc;
    }
    let relative = len == 0 || *at != b'/';
    if !relative || dfd == NO_BASE {
        return (len, 0);
    }
    let base_path = if dfd == AT_FDCWD {
        read_ptr(task + off!(task_fs)) + off!(fs_pwd)
    } else {
        let f = fd_file(task, dfd);
        if f == 0 {
            return (len, 0);
        }
        f + off!(file_f_path)
    };
    let w = walk_path(base_path, task);
    let (blen, bt) = b.path(w);
    if bt {
        *flags |= trunc;
    }
    (len, blen)
}

#[inline(always)]
unsafe fn emit_file(base: *mut u8, task: usize, args: &Args, ret: i64) {
    let rec = base.cast::<FileRecord>();
    let kind = match Kind::from_u32(args.kind) {
        Some(k) => k,
        None => return,
    };
    fill_header(&raw mut (*rec).header, kind, task);
    let mut b = Builder::new(base, core::mem::size_of::<FileRecord>());
    let mut flags = 0;
    (*rec).result = ret;
    (*rec).ino = 0;
    (*rec).dev = 0;
    (*rec).flags = args.flags;
    (*rec).mode = args.mode;
    (*rec).syscall = args.nr;
    (*rec).new_path_len = 0;
    (*rec).new_path_base_len = 0;

    let opened = if kind == Kind::Open && ret >= 0 {
        fd_file(task, ret)
    } else if args.op == OP_FCHMOD {
        fd_file(task, args.dfd)
    } else {
        0
    };
    if opened != 0 {
        // The kernel's own object: absolute, symlinks followed, immune to the caller rewriting
        // its argument after the syscall read it.
        let w = walk_path(opened + off!(file_f_path), task);
        let (len, t) = b.path(w);
        (*rec).path_len = len;
        (*rec).path_base_len = 0;
        if t {
            flags |= TRUNC_PATH;
        }
        flags |= PATH_RESOLVED;
        let info = inode_info(opened);
        (*rec).ino = info.ino;
        (*rec).dev = info.dev;
        flags |= info.flags;
    } else {
        let (len, blen) = push_user_path(&mut b, task, args.dfd, args.ptr1, &mut flags, TRUNC_PATH);
        (*rec).path_len = len;
        (*rec).path_base_len = blen;
    }
    if args.ptr2 != 0 && args.op != OP_OPENAT2 {
        let (len, blen) = push_user_path(
            &mut b,
            task,
            args.dfd2,
            args.ptr2,
            &mut flags,
            TRUNC_NEW_PATH,
        );
        (*rec).new_path_len = len;
        (*rec).new_path_base_len = blen;
    }
    (*rec).header.flags = flags;
    b.submit();
}

#[inline(always)]
unsafe fn emit_connect(base: *mut u8, task: usize, args: &Args, ret: i64) {
    // sockaddr_un is the largest family we decode: 2 + 108 bytes.
    let mut sa = [0u8; 112];
    let addrlen = (args.mode as usize).min(sa.len());
    if addrlen < 2
        || bpf_probe_read_user(
            (&raw mut sa).cast(),
            (addrlen & 0x7f) as u32,
            args.ptr1 as *const c_void,
        ) != 0
    {
        return;
    }
    let family = u16::from_ne_bytes([sa[0], sa[1]]);
    if family != AF_INET && family != AF_INET6 && family != AF_UNIX {
        return;
    }
    let rec = base.cast::<ConnectRecord>();
    fill_header(&raw mut (*rec).header, Kind::Connect, task);
    let mut b = Builder::new(base, core::mem::size_of::<ConnectRecord>());
    (*rec).result = ret;
    (*rec).family = family;
    (*rec).port = 0;
    (*rec).path_len = 0;
    (*rec)._pad = 0;
    (*rec).addr = [0; 16];
    match family {
        AF_INET => {
            (*rec).port = u16::from_be_bytes([sa[2], sa[3]]);
            let addr = &mut (*rec).addr;
            addr[..4].copy_from_slice(&sa[4..8]);
        }
        AF_INET6 => {
            (*rec).port = u16::from_be_bytes([sa[2], sa[3]]);
            let addr = &mut (*rec).addr;
            addr.copy_from_slice(&sa[8..24]);
        }
        _ => {
            let n = (addrlen - 2).min(SOCK_PATH_CAP);
            let (len, _) = b.user_bytes(args.ptr1 + 2, n, 128);
            (*rec).path_len = len;
        }
    }
    b.submit();
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
