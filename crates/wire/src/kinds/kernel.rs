//! Kernel-family payloads: io_uring and compat syscalls.

use peregrine_event::{CompatSyscallInfo, IoUringInfo};

use super::{CostTables, Tables};
use crate::encode::Builder;
use crate::error::{Inconsistency, WireError};
use crate::pb;

pub(super) fn encode_io_uring(u: &IoUringInfo) -> pb::IoUringInfo {
    pb::IoUringInfo {
        entries: u.entries,
        flags: u.flags,
        result: u.result,
    }
}

pub(super) fn decode_io_uring(u: &pb::IoUringInfo) -> IoUringInfo {
    IoUringInfo {
        entries: u.entries,
        flags: u.flags,
        result: u.result,
    }
}

pub(super) fn encode_compat<'a>(
    b: &mut Builder<'a>,
    c: &'a CompatSyscallInfo,
) -> Result<pb::CompatSyscallInfo, WireError> {
    Ok(pb::CompatSyscallInfo {
        nr: c.nr,
        name: b.opt_string(&c.name)?,
        result: c.result,
        from_64bit: c.from_64bit,
    })
}

pub(super) fn decode_compat(
    c: &pb::CompatSyscallInfo,
    t: &Tables<'_>,
) -> Result<CompatSyscallInfo, Inconsistency> {
    Ok(CompatSyscallInfo {
        nr: c.nr,
        name: t.strings.opt(c.name, "CompatSyscallInfo.name")?,
        result: c.result,
        from_64bit: c.from_64bit,
    })
}

pub(super) fn cost_compat(
    c: &pb::CompatSyscallInfo,
    t: &CostTables<'_>,
) -> Result<u64, Inconsistency> {
    t.strings.opt_len(c.name, "CompatSyscallInfo.name")
}

pub(super) fn compat_strings<'a>(c: &'a CompatSyscallInfo, f: &mut impl FnMut(&'a str)) {
    if let Some(s) = &c.name {
        f(s);
    }
}
