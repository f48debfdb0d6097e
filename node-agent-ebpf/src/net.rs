//! Network: connect, from the syscall in [`syscall`]'s table (entry and exit programs in
//! [`crate::syscalls`]).

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_probe_read_user;
use node_agent_common::{AF_INET, AF_INET6, AF_UNIX, ConnectRecord, Kind, SOCK_PATH_CAP};

use crate::{
    common::{Builder, fill_header},
    syscalls::{Args, Op, args},
};

/// `connect`: `dfd` is the socket, `ptr1` the sockaddr, `mode` its length.
const OP_CONNECT: Op = 3;

#[cfg(bpf_target_arch = "x86_64")]
mod nr {
    pub const CONNECT: i32 = 42;
}

#[cfg(not(bpf_target_arch = "x86_64"))]
mod nr {
    // asm-generic numbering (arm64).
    pub const CONNECT: i32 = 203;
}

/// Decodes the raw arguments `a` of syscall `n`; `None` when it is not a network syscall.
#[inline(always)]
pub fn syscall(n: i32, a: &[u64; 5]) -> Option<Args> {
    let mut r;
    match n {
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

/// Emits the [`ConnectRecord`] of a finished connect that returned `ret`.
#[inline(always)]
pub unsafe fn emit(base: *mut u8, task: usize, args: &Args, ret: i64) {
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
