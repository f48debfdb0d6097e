//! Kernel-family records: io_uring (`io_uring_setup`) and compat (32-bit) syscalls.

use node_agent_common::{
    COMPAT_FROM_64BIT, COMPAT_RETURNED, CompatSyscallRecord, IoUringRecord, Kind,
};
use peregrine_event::{CompatSyscallInfo, Detail, IoUringInfo};

use super::{DecodeError, RawBody, read};

/// Decodes a kernel-family record of `kind`. Neither needs anything from enrichment: the
/// detail is final here.
pub(super) fn decode(kind: Kind, rec: &[u8]) -> Result<RawBody, DecodeError> {
    let detail = match kind {
        Kind::IoUring => {
            let r: IoUringRecord = read(rec, "io_uring record")?;
            Detail::IoUring(IoUringInfo {
                entries: r.entries,
                flags: r.flags,
                result: r.result,
            })
        }
        Kind::CompatSyscall => {
            let r: CompatSyscallRecord = read(rec, "compat_syscall record")?;
            Detail::CompatSyscall(CompatSyscallInfo {
                nr: r.nr,
                name: compat_name(r.nr).map(str::to_owned),
                result: (r.compat_flags & COMPAT_RETURNED != 0).then_some(r.result),
                from_64bit: r.compat_flags & COMPAT_FROM_64BIT != 0,
            })
        }
        _ => return Err(DecodeError::UnknownKind(kind as u32)),
    };
    Ok(RawBody::Detail(detail))
}

/// The name of 32-bit syscall `nr` on this architecture, when known.
#[cfg(target_arch = "x86_64")]
pub fn compat_name(nr: u32) -> Option<&'static str> {
    super::i386::name(nr)
}

/// arm64's compat syscalls are arm EABI's (arch/arm/tools/syscall.tbl); the agent reports their
/// numbers only.
#[cfg(not(target_arch = "x86_64"))]
pub fn compat_name(_nr: u32) -> Option<&'static str> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{
        decode as decode_record,
        tests::{bytes, header},
    };

    fn compat(nr: u32, compat_flags: u32, result: i64) -> CompatSyscallInfo {
        let rec = CompatSyscallRecord {
            header: header(Kind::CompatSyscall, 0),
            result,
            nr,
            compat_flags,
        };
        match decode_record(&bytes(&rec)).unwrap().body {
            RawBody::Detail(Detail::CompatSyscall(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compat_records() {
        let c = compat(5, COMPAT_RETURNED | COMPAT_FROM_64BIT, 3);
        assert_eq!(c.result, Some(3));
        assert!(c.from_64bit);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(c.name.as_deref(), Some("open"));
        // exit_group is reported at entry: no result, whatever the field holds.
        let c = compat(252, 0, 99);
        assert_eq!(c.result, None);
        assert!(!c.from_64bit);
        // A number nobody assigned keeps its number and has no name.
        let c = compat(0x7fff_0000, COMPAT_RETURNED, -38);
        assert_eq!((c.nr, c.name, c.result), (0x7fff_0000, None, Some(-38)));
    }

    #[test]
    fn io_uring_record() {
        let rec = IoUringRecord {
            header: header(Kind::IoUring, 0),
            result: -1,
            entries: 8,
            flags: 2,
        };
        let raw = decode_record(&bytes(&rec)).unwrap();
        assert_eq!(
            raw.body,
            RawBody::Detail(Detail::IoUring(IoUringInfo {
                entries: 8,
                flags: 2,
                result: -1
            }))
        );
        // Cut short: a typed error, not a panic.
        let short = &bytes(&rec)[..100];
        assert!(matches!(
            decode_record(short),
            Err(DecodeError::Short {
                what: "io_uring record",
                ..
            })
        ));
    }
}
