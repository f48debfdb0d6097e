//! Process lifecycle payloads: exec, fork and exit.

use peregrine_event::{ExecInfo, ExitInfo, ForkInfo, NewBinary, NewBinaryEvidence};

use super::{CostTables, Tables};
use crate::decode::{entry, time, uuid};
use crate::encode::{Builder, delta, uuid_bytes};
use crate::error::{Inconsistency, WireError};
use crate::pb;

pub(super) fn encode_exec<'a>(
    b: &mut Builder<'a>,
    x: &'a ExecInfo,
) -> Result<pb::ExecInfo, WireError> {
    let new_binary = match &x.new_binary {
        None => None,
        Some(n) => Some(pb::NewBinary {
            evidence: match n.evidence {
                NewBinaryEvidence::OverlayUpper => pb::NewBinaryEvidence::OverlayUpper,
                NewBinaryEvidence::ObservedWrite => pb::NewBinaryEvidence::ObservedWrite,
            } as i32,
            modified_by: n.modified_by.as_ref().map(|a| b.ancestor(a)).transpose()?,
            modified_at_delta_ns: n.modified_at.map(|t| delta(t, b.base)),
        }),
    };
    Ok(pb::ExecInfo {
        filename: b.string(&x.filename)?,
        exe_dev: x.exe_dev,
        exe_ino: x.exe_ino,
        env_truncated: x.env_truncated,
        new_binary,
    })
}

pub(super) fn encode_fork(f: &ForkInfo) -> pb::ForkInfo {
    pb::ForkInfo {
        child_pid: f.child_pid,
        child_uuid: uuid_bytes(&f.child_uuid),
    }
}

pub(super) fn encode_exit(x: &ExitInfo) -> pb::ExitInfo {
    pb::ExitInfo {
        code: x.code,
        signal: x.signal,
    }
}

fn evidence(value: i32) -> Result<NewBinaryEvidence, Inconsistency> {
    match pb::NewBinaryEvidence::try_from(value) {
        Ok(pb::NewBinaryEvidence::OverlayUpper) => Ok(NewBinaryEvidence::OverlayUpper),
        Ok(pb::NewBinaryEvidence::ObservedWrite) => Ok(NewBinaryEvidence::ObservedWrite),
        Ok(pb::NewBinaryEvidence::Unspecified) | Err(_) => Err(Inconsistency::InvalidEnum {
            field: "NewBinary.evidence",
            value,
        }),
    }
}

pub(super) fn decode_exec(x: &pb::ExecInfo, t: &Tables<'_>) -> Result<ExecInfo, Inconsistency> {
    let new_binary = match &x.new_binary {
        None => None,
        Some(n) => Some(NewBinary {
            evidence: evidence(n.evidence)?,
            modified_by: n
                .modified_by
                .map(|i| entry(t.ancestors, i, "NewBinary.modified_by", "ancestor").cloned())
                .transpose()?,
            modified_at: n.modified_at_delta_ns.map(|d| time(t.base, d)),
        }),
    };
    Ok(ExecInfo {
        filename: t.strings.owned(x.filename, "ExecInfo.filename")?,
        exe_dev: x.exe_dev,
        exe_ino: x.exe_ino,
        env_truncated: x.env_truncated,
        new_binary,
    })
}

pub(super) fn decode_fork(f: &pb::ForkInfo) -> Result<ForkInfo, Inconsistency> {
    Ok(ForkInfo {
        child_pid: f.child_pid,
        child_uuid: uuid(&f.child_uuid, "ForkInfo.child_uuid")?,
    })
}

pub(super) fn decode_exit(x: &pb::ExitInfo) -> ExitInfo {
    ExitInfo {
        code: x.code,
        signal: x.signal,
    }
}

pub(super) fn cost_exec(x: &pb::ExecInfo, t: &CostTables<'_>) -> Result<u64, Inconsistency> {
    let mut c = t.strings.len(x.filename, "ExecInfo.filename")?;
    if let Some(by) = x.new_binary.as_ref().and_then(|n| n.modified_by) {
        c += entry(t.ancestors, by, "NewBinary.modified_by", "ancestor")?;
    }
    Ok(c)
}

pub(super) fn exec_strings<'a>(x: &'a ExecInfo, f: &mut impl FnMut(&'a str)) {
    f(&x.filename);
    if let Some(a) = x.new_binary.as_ref().and_then(|n| n.modified_by.as_ref()) {
        f(&a.exe);
        f(&a.comm);
    }
}

pub(super) fn exec_ancestors(x: &ExecInfo) -> usize {
    usize::from(
        x.new_binary
            .as_ref()
            .is_some_and(|n| n.modified_by.is_some()),
    )
}
