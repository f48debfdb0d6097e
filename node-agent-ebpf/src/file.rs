//! File changes: open (with write intent), rename, link, symlink, unlink and chmod, from the
//! syscalls in [`syscall`]'s table (entry and exit programs in [`crate::syscalls`]).

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_probe_read_user;
use node_agent_common::{
    FileRecord, Kind, O_CREAT, O_TRUNC, O_WRONLY, PATH_CAP, PATH_RESOLVED, TRUNC_NEW_PATH,
    TRUNC_PATH, WRITE_INTENT,
};

use crate::{
    common::{Builder, config, fd_file, fill_header, inode_info, off, read_ptr, walk_path},
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
    !(args.kind == Kind::Open as u32
        && args.flags & WRITE_INTENT == 0
        && config!(capture_all_opens) == 0)
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
