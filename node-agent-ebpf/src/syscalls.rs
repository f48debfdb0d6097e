//! Which syscalls are tracked, and where their arguments sit.
//!
//! One entry program serves every tracked syscall: the `sys_enter_*` record carries the syscall
//! number, and this table turns (number, raw args) into [`Args`]. Numbers are per architecture
//! (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h for arm64); arm64
//! has only the `*at` forms.

use node_agent_common::{Kind, O_CREAT, O_TRUNC, O_WRONLY};

/// How the exit program must treat the saved arguments.
pub type Op = u32;
pub const OP_PATHS: Op = 0;
/// `openat2`: flags and mode live in the user's `struct open_how` at `ptr2`.
pub const OP_OPENAT2: Op = 1;
/// `fchmod`: no path; the file is `dfd`.
pub const OP_FCHMOD: Op = 2;
/// `connect`: `dfd` is the socket, `ptr1` the sockaddr, `mode` its length.
pub const OP_CONNECT: Op = 3;

/// `dfd` value meaning "store the path verbatim": a symlink's target is not resolved against
/// anything when the link is created.
pub const NO_BASE: i64 = i64::MIN;
const AT_FDCWD: i64 = -100;

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
}

const O_WRONLY_CREAT_TRUNC: u32 = O_WRONLY | O_CREAT | O_TRUNC;

#[inline(always)]
fn args(nr: i32, kind: Kind, op: Op) -> Args {
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
    }
}

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
    pub const CONNECT: i32 = 42;
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
    pub const CONNECT: i32 = 203;
}

/// Decodes the raw syscall arguments `a` of syscall `n`; `None` for an untracked syscall.
#[inline(always)]
pub fn decode(n: i32, a: &[u64; 5]) -> Option<Args> {
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
        nr::CONNECT => {
            r = args(n, Kind::Connect, OP_CONNECT);
            r.dfd = a[0] as i32 as i64;
            r.ptr1 = a[1] as usize;
            r.mode = a[2] as u32;
        }
        _ => return None,
    }
    Some(r)
}
