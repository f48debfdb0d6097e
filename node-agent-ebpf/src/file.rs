//! File changes: open (with write intent), rename, link, symlink, unlink and chmod, from the
//! syscalls in [`syscall`]'s table (entry and exit programs in [`crate::syscalls`]).

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{
    bpf_get_current_task, bpf_get_prandom_u32, bpf_probe_read_kernel, bpf_probe_read_user,
    bpf_probe_read_user_str,
};
use node_agent_common::{
    FileRecord, Kind, O_CREAT, O_TRUNC, O_WRONLY, PATH_CAP, PATH_CHANGED, PATH_RESOLVED,
    PATH_UNVERIFIED, TRUNC_NEW_PATH, TRUNC_PATH, WRITE_INTENT,
    sip::{SipHasher24, tail_mask},
};

use crate::{
    PATHSUM,
    common::{
        Builder, config, fd_file, fill_header, inode_info, off, read_ptr, walk_dentry, walk_path,
    },
    syscalls::{AT_FDCWD, Args, NO_BASE, OP_PATHS, Op, args},
};

/// `openat2`: flags and mode live in the user's `struct open_how` at `ptr2`.
const OP_OPENAT2: Op = 1;
/// `fchmod`: no path; the file is `dfd`.
const OP_FCHMOD: Op = 2;

const O_WRONLY_CREAT_TRUNC: u32 = O_WRONLY | O_CREAT | O_TRUNC;

#[cfg(bpf_target_arch = "x86_64")]
mod nr {
    pub const OPEN: i32 = 2;
    pub const CREAT: i32 = 85;
    pub const OPENAT: i32 = 257;
    pub const OPENAT2: i32 = 437;
    pub const RENAME: i32 = 82;
    pub const RENAMEAT: i32 = 264;
    pub const RENAMEAT2: i32 = 316;
    pub const LINK: i32 = 86;
    pub const LINKAT: i32 = 265;
    pub const SYMLINK: i32 = 88;
    pub const SYMLINKAT: i32 = 266;
    pub const UNLINK: i32 = 87;
    pub const UNLINKAT: i32 = 263;
    pub const CHMOD: i32 = 90;
    pub const FCHMOD: i32 = 91;
    pub const FCHMODAT: i32 = 268;
    pub const FCHMODAT2: i32 = 452;
}

#[cfg(not(bpf_target_arch = "x86_64"))]
mod nr {
    // asm-generic numbering (arm64). The legacy forms do not exist; -1 never matches.
    pub const OPEN: i32 = -1;
    pub const CREAT: i32 = -1;
    pub const OPENAT: i32 = 56;
    pub const OPENAT2: i32 = 437;
    pub const RENAME: i32 = -1;
    pub const RENAMEAT: i32 = 38;
    pub const RENAMEAT2: i32 = 276;
    pub const LINK: i32 = -1;
    pub const LINKAT: i32 = 37;
    pub const SYMLINK: i32 = -1;
    pub const SYMLINKAT: i32 = 36;
    pub const UNLINK: i32 = -1;
    pub const UNLINKAT: i32 = 35;
    pub const CHMOD: i32 = -1;
    pub const FCHMOD: i32 = 52;
    pub const FCHMODAT: i32 = 53;
    pub const FCHMODAT2: i32 = 452;
}

/// Decodes the raw arguments `a` of syscall `n`; `None` when it is not a file syscall.
#[inline(always)]
pub fn syscall(n: i32, a: &[u64; 5]) -> Option<Args> {
    let mut r;
    match n {
        nr::OPEN => {
            r = args(n, Kind::Open, OP_PATHS);
            r.ptr1 = a[0] as usize;
            r.flags = a[1] as u32;
            r.mode = a[2] as u32;
        }
        nr::CREAT => {
            r = args(n, Kind::Open, OP_PATHS);
            r.ptr1 = a[0] as usize;
            r.flags = O_WRONLY_CREAT_TRUNC;
            r.mode = a[1] as u32;
        }
        nr::OPENAT => {
            r = args(n, Kind::Open, OP_PATHS);
            r.dfd = a[0] as i32 as i64;
            r.ptr1 = a[1] as usize;
            r.flags = a[2] as u32;
            r.mode = a[3] as u32;
        }
        nr::OPENAT2 => {
            r = args(n, Kind::Open, OP_OPENAT2);
            r.dfd = a[0] as i32 as i64;
            r.ptr1 = a[1] as usize;
            r.ptr2 = a[2] as usize;
        }
        nr::RENAME | nr::LINK => {
            r = args(
                n,
                if n == nr::RENAME {
                    Kind::Rename
                } else {
                    Kind::Link
                },
                OP_PATHS,
            );
            r.ptr1 = a[0] as usize;
            r.ptr2 = a[1] as usize;
        }
        nr::RENAMEAT | nr::RENAMEAT2 | nr::LINKAT => {
            r = args(
                n,
                if n == nr::LINKAT {
                    Kind::Link
                } else {
                    Kind::Rename
                },
                OP_PATHS,
            );
            r.dfd = a[0] as i32 as i64;
            r.ptr1 = a[1] as usize;
            r.dfd2 = a[2] as i32 as i64;
            r.ptr2 = a[3] as usize;
            if n != nr::RENAMEAT {
                r.flags = a[4] as u32;
            }
        }
        nr::SYMLINK => {
            r = args(n, Kind::Symlink, OP_PATHS);
            r.dfd = NO_BASE;
            r.ptr1 = a[0] as usize;
            r.ptr2 = a[1] as usize;
        }
        nr::SYMLINKAT => {
            r = args(n, Kind::Symlink, OP_PATHS);
            r.dfd = NO_BASE;
            r.ptr1 = a[0] as usize;
            r.dfd2 = a[1] as i32 as i64;
            r.ptr2 = a[2] as usize;
        }
        nr::UNLINK => {
            r = args(n, Kind::Unlink, OP_PATHS);
            r.ptr1 = a[0] as usize;
        }
        nr::UNLINKAT => {
            r = args(n, Kind::Unlink, OP_PATHS);
            r.dfd = a[0] as i32 as i64;
            r.ptr1 = a[1] as usize;
            r.flags = a[2] as u32;
        }
        nr::CHMOD => {
            r = args(n, Kind::Chmod, OP_PATHS);
            r.ptr1 = a[0] as usize;
            r.mode = a[1] as u32;
        }
        nr::FCHMOD => {
            r = args(n, Kind::Chmod, OP_FCHMOD);
            r.dfd = a[0] as i32 as i64;
            r.mode = a[1] as u32;
        }
        nr::FCHMODAT | nr::FCHMODAT2 => {
            r = args(n, Kind::Chmod, OP_PATHS);
            r.dfd = a[0] as i32 as i64;
            r.ptr1 = a[1] as usize;
            r.mode = a[2] as u32;
            if n == nr::FCHMODAT2 {
                r.flags = a[3] as u32;
            }
        }
        _ => return None,
    }
    Some(r)
}

/// Completes the arguments at syscall entry; `false` drops the syscall (a plain read).
#[inline(always)]
pub unsafe fn at_entry(args: &mut Args) -> bool {
    if args.op == OP_OPENAT2 {
        // struct open_how { u64 flags; u64 mode; u64 resolve; }
        let mut how = [0u64; 2];
        if bpf_probe_read_user((&raw mut how).cast(), 16, args.ptr2 as *const c_void) != 0 {
            return false;
        }
        args.flags = how[0] as u32;
        args.mode = how[1] as u32;
    }
    // A plain read never crosses to user space.
    let keep = !(args.kind == Kind::Open as u32
        && args.flags & WRITE_INTENT == 0
        && config!(capture_all_opens) == 0);
    if keep && (args.op == OP_PATHS || args.op == OP_OPENAT2) {
        let task = bpf_get_current_task() as usize;
        let c = &mut args.check;
        c.k0 = random_u64();
        c.k1 = random_u64();
        c.path = entry_sum(task, args.dfd, args.ptr1, c.k0, c.k1);
        if args.op == OP_PATHS {
            c.new_path = entry_sum(task, args.dfd2, args.ptr2, c.k0, c.k1);
        }
    }
    keep
}

// ---------------------------------------------------------------------------------------------
// Path arguments rewritten during the syscall.
//
// Except for an open that succeeds (whose path comes from the kernel's own `struct file`), the
// paths are copied from the caller's memory at exit, after the kernel made its own copy
// (`getname()`, fs/namei.c). Another thread can rewrite the buffer in between, so that the
// event names a file the kernel never touched (the "Phantom attack" on syscall tracing, DEF CON
// 29). No tracepoint sees the kernel's copy, so the programs detect the rewrite instead: each
// path is read and hashed at entry as well, and a different hash or length at exit sets
// `PATH_CHANGED`. The directory a relative path is reported against (the cwd, which another
// thread can change with chdir, or the `dirfd`, which it can replace with dup2) is compared by
// identity the same way. A rewrite and its undoing both between the entry and the kernel's
// copy, or both after the copy and before the exit, go unseen; so does any change when the
// buffer could not be read at entry (its page was not resident), which sets `PATH_UNVERIFIED`
// instead.

/// `PathSum::state`: the argument is not a path, or there is none.
const SUM_NONE: u32 = 0;
/// The entry program hashed the argument.
const SUM_OK: u32 = 1;
/// The entry program could not read the argument.
const SUM_UNREAD: u32 = 2;

/// One path argument as read at syscall entry.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PathSum {
    pub hash: u64,
    /// When the path is relative, [`dir_id`] of the directory it is relative to.
    pub dir: u64,
    pub len: u32,
    pub state: u32,
}

/// The path arguments as read at syscall entry, hashed under a key drawn for this syscall: the
/// caller, who chooses both strings, never learns it (see node_agent_common::sip).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PathCheck {
    pub k0: u64,
    pub k1: u64,
    pub path: PathSum,
    pub new_path: PathSum,
}

impl PathSum {
    const NONE: PathSum = PathSum {
        hash: 0,
        dir: 0,
        len: 0,
        state: SUM_NONE,
    };
}

impl PathCheck {
    pub const NONE: PathCheck = PathCheck {
        k0: 0,
        k1: 0,
        path: PathSum::NONE,
        new_path: PathSum::NONE,
    };
}

/// A per-CPU buffer for one path: the entry program reads the argument into it, the exit
/// program copies the reported path into it; `state` is where `peregrine_sum_words` leaves its
/// result.
#[repr(C)]
pub struct SumBuf {
    state: SipHasher24,
    buf: [u8; PATH_CAP],
}

#[inline(always)]
unsafe fn random_u64() -> u64 {
    (u64::from(bpf_get_prandom_u32()) << 32) | u64::from(bpf_get_prandom_u32())
}

/// Reads and hashes the path at user address `ptr` (none when 0), as `Builder::user_str` will
/// copy it at exit: at most `PATH_CAP - 1` bytes; and, when it is relative, identifies the
/// directory `dfd` names.
#[inline(always)]
unsafe fn entry_sum(task: usize, dfd: i64, ptr: usize, k0: u64, k1: u64) -> PathSum {
    let mut s = PathSum::NONE;
    if ptr == 0 {
        return s;
    }
    let Some(b) = PATHSUM.get_ptr_mut(0) else {
        return s;
    };
    let r = bpf_probe_read_user_str(
        (&raw mut (*b).buf).cast(),
        PATH_CAP as u32,
        ptr as *const c_void,
    );
    if r <= 0 {
        s.state = SUM_UNREAD;
        return s;
    }
    let len = (r as usize - 1) & (PATH_CAP - 1);
    if dfd != NO_BASE && (len == 0 || *(&raw const (*b).buf).cast::<u8>() != b'/') {
        s.dir = dir_id(read_path(base_of(task, dfd)));
    }
    s.hash = sum(b, len, k0, k1);
    s.len = len as u32;
    s.state = SUM_OK;
    s
}

/// The `struct path *` a relative path of `task` is resolved against: its cwd, or the file
/// `dfd` names; 0 when `dfd` is not an open descriptor.
#[inline(always)]
unsafe fn base_of(task: usize, dfd: i64) -> usize {
    if dfd == AT_FDCWD {
        return read_ptr(task + off!(task_fs)) + off!(fs_pwd);
    }
    let f = fd_file(task, dfd);
    if f == 0 { 0 } else { f + off!(file_f_path) }
}

/// The `struct path` at `p` as (dentry, vfsmount), each read once; (0, 0) for none.
#[inline(always)]
unsafe fn read_path(p: usize) -> (usize, usize) {
    if p == 0 {
        return (0, 0);
    }
    (
        read_ptr(p + off!(path_dentry)),
        read_ptr(p + off!(path_mnt)),
    )
}

/// An identity of the directory (`dentry`, `vfsmnt`): the two pointers, mixed.
#[inline(always)]
fn dir_id((dentry, vfsmnt): (usize, usize)) -> u64 {
    dentry as u64 ^ (vfsmnt as u64).rotate_left(32)
}

/// Checks the `len` bytes at `at` (a path just copied into the record) against what the entry
/// program read, flagging a difference in `flags`.
#[inline(always)]
unsafe fn check_sum(at: *const u8, len: u16, expect: &PathSum, k0: u64, k1: u64, flags: &mut u32) {
    if expect.state == SUM_UNREAD {
        *flags |= PATH_UNVERIFIED;
        return;
    }
    if expect.state != SUM_OK {
        return;
    }
    let len = usize::from(len) & (PATH_CAP - 1);
    if len as u32 != expect.len {
        *flags |= PATH_CHANGED;
        return;
    }
    let Some(b) = PATHSUM.get_ptr_mut(0) else {
        return;
    };
    if bpf_probe_read_kernel((&raw mut (*b).buf).cast(), len as u32, at.cast()) != 0 {
        return;
    }
    if sum(b, len, k0, k1) != expect.hash {
        *flags |= PATH_CHANGED;
    }
}

/// SipHash-2-4 of the first `len` (< PATH_CAP) bytes of `b.buf`.
#[inline(always)]
unsafe fn sum(b: *mut SumBuf, len: usize, k0: u64, k1: u64) -> u64 {
    let len = len & (PATH_CAP - 1);
    peregrine_sum_words(len as u64, k0, k1);
    let words = (&raw const (*b).buf).cast::<u64>();
    // The bytes after the string are stale: the whole last word is read and masked.
    let tail = *words.add(len >> 3) & tail_mask(len as u64);
    core::ptr::read_volatile(&raw const (*b).state).finish(tail, len as u64)
}

/// Absorbs the whole words of the first `len` bytes of this CPU's `SumBuf` into a SipHash-2-4
/// state keyed by (`k0`, `k1`), left in `SumBuf::state`.
///
/// A global function (`no_mangle`, so its BTF linkage is global): the verifier checks it once,
/// alone, rather than at each of its four call sites, where a loop of up to 512 iterations
/// costs most of the budget of a million instructions per program (global functions: Linux
/// 5.6; `bpf_loop`, which would do as well, needs 5.17). It takes scalars only, as a global
/// function must, and finds its buffer itself.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn peregrine_sum_words(len: u64, k0: u64, k1: u64) -> u64 {
    let Some(b) = PATHSUM.get_ptr_mut(0) else {
        return 0;
    };
    let n = (len as usize & (PATH_CAP - 1)) >> 3;
    let mut h = SipHasher24::new(k0, k1);
    // SAFETY: `b` is this CPU's map value; every index is below PATH_CAP / 8.
    unsafe {
        let words = (&raw const (*b).buf).cast::<u64>();
        for i in 0..PATH_CAP / 8 {
            if i >= n {
                break;
            }
            h.word(*words.add(i));
        }
        core::ptr::write_volatile(&raw mut (*b).state, h);
    }
    0
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
    (check, sum): (&PathCheck, &PathSum),
) -> (u16, u16) {
    let at = b.dst();
    let (len, t) = b.user_str(path, PATH_CAP);
    if t {
        *flags |= trunc;
    }
    check_sum(at, len, sum, check.k0, check.k1, flags);
    let relative = len == 0 || *at != b'/';
    if !relative || dfd == NO_BASE {
        return (len, 0);
    }
    // Read once: the directory compared is the directory reported, even if another thread
    // changes the cwd meanwhile.
    let (dentry, vfsmnt) = read_path(base_of(task, dfd));
    // Another thread's chdir, or dup2 over `dfd`, since entry.
    if sum.state == SUM_OK && dir_id((dentry, vfsmnt)) != sum.dir {
        *flags |= PATH_CHANGED;
    }
    if dentry == 0 {
        return (len, 0);
    }
    let w = walk_dentry(dentry, vfsmnt, task);
    let (blen, bt) = b.path(w);
    if bt {
        *flags |= trunc;
    }
    (len, blen)
}

/// Emits the [`FileRecord`] of a finished syscall that returned `ret`.
#[inline(always)]
pub unsafe fn emit(base: *mut u8, task: usize, args: &Args, ret: i64) {
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
        let (len, blen) = push_user_path(
            &mut b,
            task,
            args.dfd,
            args.ptr1,
            &mut flags,
            TRUNC_PATH,
            (&args.check, &args.check.path),
        );
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
            (&args.check, &args.check.new_path),
        );
        (*rec).new_path_len = len;
        (*rec).new_path_base_len = blen;
    }
    (*rec).header.flags = flags;
    b.submit();
}
