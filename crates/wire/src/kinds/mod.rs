//! Event details ([`Detail`]) ↔ their protobuf form ([`pb::EventDetails`]), one module per
//! family of kinds: [`process`] (exec, fork, exit), [`file`], [`net`], [`kernel`] (io_uring,
//! compat syscalls) and [`internal`] (loss).
//!
//! Each family module has, for each of its payloads, the four conversions the codec needs:
//! encode (interning strings and ancestors in the batch tables), decode (resolving them),
//! `cost` (the decoded size estimate, from the wire form) and `strings` (the strings an event
//! carries, for the encoder's cheap size check). This module only dispatches on the payload;
//! its matches are exhaustive so that a new payload cannot be forgotten in any of the four.

mod file;
mod internal;
mod kernel;
mod net;
mod process;

use peregrine_event::{Ancestor, Detail};

use crate::decode::Strings;
use crate::encode::Builder;
use crate::error::{Inconsistency, WireError};
use crate::pb;
use crate::pb::event_details::Detail as D;

/// What a payload's decoder may resolve references against.
pub(crate) struct Tables<'a> {
    pub(crate) strings: &'a Strings<'a>,
    pub(crate) ancestors: &'a [Ancestor],
    /// The batch's base time, Unix ns.
    pub(crate) base: i64,
}

/// A payload's share of the decoded-size estimate, computed from the wire form.
pub(crate) struct CostTables<'a> {
    pub(crate) strings: &'a Strings<'a>,
    /// The estimated size of each entry of the ancestor table.
    pub(crate) ancestors: &'a [u64],
}

/// An event's detail, its strings and ancestors interned in `b`'s tables.
pub(crate) fn encode<'a>(
    b: &mut Builder<'a>,
    detail: &'a Detail,
) -> Result<pb::EventDetails, WireError> {
    let detail = match detail {
        Detail::Exec(x) => D::Exec(process::encode_exec(b, x)?),
        Detail::Fork(f) => D::Fork(process::encode_fork(f)),
        Detail::Exit(x) => D::Exit(process::encode_exit(x)),
        Detail::File(f) => D::File(file::encode(b, f)?),
        Detail::Net(n) => D::Net(net::encode(b, n)?),
        Detail::IoUring(u) => D::IoUring(kernel::encode_io_uring(u)),
        Detail::CompatSyscall(c) => D::CompatSyscall(kernel::encode_compat(b, c)?),
        Detail::Loss(l) => D::Loss(internal::encode_loss(l)),
    };
    Ok(pb::EventDetails {
        detail: Some(detail),
    })
}

/// An event's kind-specific part; every shipped kind has one.
pub(crate) fn decode(e: &pb::EventDetails, t: &Tables<'_>) -> Result<Detail, Inconsistency> {
    Ok(match &e.detail {
        None => return Err(Inconsistency::MissingDetail),
        Some(D::Exec(x)) => Detail::Exec(process::decode_exec(x, t)?),
        Some(D::Fork(f)) => Detail::Fork(process::decode_fork(f)?),
        Some(D::Exit(x)) => Detail::Exit(process::decode_exit(x)),
        Some(D::File(f)) => Detail::File(file::decode(f, t)?),
        Some(D::Net(n)) => Detail::Net(net::decode(n, t)?),
        Some(D::IoUring(u)) => Detail::IoUring(kernel::decode_io_uring(u)),
        Some(D::CompatSyscall(c)) => Detail::CompatSyscall(kernel::decode_compat(c, t)?),
        Some(D::Loss(l)) => Detail::Loss(internal::decode_loss(l)),
    })
}

/// Estimated heap bytes of the decoded detail (beyond the event itself); validates every
/// string and ancestor reference it makes.
pub(crate) fn cost(e: &pb::EventDetails, t: &CostTables<'_>) -> Result<u64, Inconsistency> {
    match &e.detail {
        Some(D::Exec(x)) => process::cost_exec(x, t),
        Some(D::File(f)) => file::cost(f, t),
        Some(D::Net(n)) => net::cost(n, t),
        Some(D::CompatSyscall(c)) => kernel::cost_compat(c, t),
        Some(D::Fork(_) | D::Exit(_) | D::Loss(_) | D::IoUring(_)) | None => Ok(0),
    }
}

/// Calls `f` on every string the detail carries, duplicates included.
pub(crate) fn for_each_string<'a>(detail: &'a Detail, f: &mut impl FnMut(&'a str)) {
    match detail {
        Detail::Exec(x) => process::exec_strings(x, f),
        Detail::File(file) => file::strings(file, f),
        Detail::Net(n) => net::strings(n, f),
        Detail::CompatSyscall(c) => kernel::compat_strings(c, f),
        Detail::Fork(_) | Detail::Exit(_) | Detail::Loss(_) | Detail::IoUring(_) => {}
    }
}

/// How many ancestor-table entries the detail adds beyond its process's lineage.
pub(crate) fn ancestors(detail: &Detail) -> usize {
    match detail {
        Detail::Exec(x) => process::exec_ancestors(x),
        Detail::Fork(_)
        | Detail::Exit(_)
        | Detail::File(_)
        | Detail::Net(_)
        | Detail::IoUring(_)
        | Detail::CompatSyscall(_)
        | Detail::Loss(_) => 0,
    }
}
