//! Ring-buffer records → typed raw events.
//!
//! The kernel is trusted to write the layouts in node-agent-common, but every length is still
//! checked against the record: a mismatch is a typed error, never a panic or an out-of-bounds
//! read. This module has the shared readers and the dispatch on the kind's family; each family
//! has its own module with its records' decoding and their conversion to
//! [`peregrine_event::Detail`]: [`process`] (exec, fork, exit), [`file`], [`net`], [`kernel`]
//! (io_uring, compat syscalls) and [`cgroup`] (internal: consumed by the agent, never emitted).

pub mod cgroup;
pub mod file;
#[cfg(any(target_arch = "x86_64", test))]
mod i386;
pub mod kernel;
pub mod net;
pub mod process;

use node_agent_common::{EventHeader, Kind, KindFamily};
use peregrine_event::Detail;

pub use self::file::RawFile;
pub use self::process::RawExec;
pub use node_agent_common::{AF_INET, AF_INET6, AF_UNIX};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte {what}")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown event kind {0:#x}")]
    UnknownKind(u32),
    #[error("{kind:?} record: field lengths ({fields}) exceed its {data} data bytes")]
    Lengths {
        kind: Kind,
        fields: usize,
        data: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub header: EventHeader,
    pub body: RawBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawBody {
    Exec(RawExec),
    Fork {
        child_tgid: u32,
        child_start_boottime_ns: u64,
    },
    Exit {
        exit_code: u32,
    },
    File(RawFile),
    /// A kind whose detail needs nothing from enrichment (the process table, containers):
    /// decoded straight into the event's detail (connect, and most kinds to come).
    Detail(Detail),
    /// Internal: a cgroup v2 directory appeared (`created`) or went away.
    Cgroup {
        id: u64,
        path: String,
        created: bool,
    },
}

/// Decodes one ring-buffer record.
pub fn decode(rec: &[u8]) -> Result<RawEvent, DecodeError> {
    let header: EventHeader = read(rec, "event header")?;
    let kind = Kind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let body = match kind.family() {
        KindFamily::Process => process::decode(kind, rec)?,
        KindFamily::File => file::decode(kind, rec)?,
        KindFamily::Network => net::decode(kind, rec)?,
        KindFamily::Kernel => kernel::decode(kind, rec)?,
        KindFamily::Internal => cgroup::decode(kind, rec)?,
    };
    Ok(RawEvent { header, body })
}

/// What the allocator spends on one heap block beyond its contents, roughly (glibc's chunk
/// header and rounding).
const ALLOCATION_OVERHEAD: usize = 16;
/// The weight taken for a detail decoded straight into the event (connect and similar: a few
/// small, kernel-bounded strings).
const DETAIL_WEIGHT: usize = 1024;

fn string_weight(s: &str, capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        capacity.max(s.len()) + ALLOCATION_OVERHEAD
    }
}

fn weight_of(s: &String) -> usize {
    string_weight(s, s.capacity())
}

impl RawEvent {
    /// The memory this event holds, the event itself included: every string's buffer and its
    /// allocation, and the argument vector. Used to bound queues in bytes.
    pub fn weight(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, weight_of);
        std::mem::size_of::<RawEvent>()
            + match &self.body {
                RawBody::Exec(e) => {
                    weight_of(&e.filename)
                        + weight_of(&e.exe)
                        + weight_of(&e.cwd)
                        + opt(&e.ld_preload)
                        + opt(&e.ld_library_path)
                        + e.argv.capacity() * std::mem::size_of::<String>()
                        + ALLOCATION_OVERHEAD
                        + e.argv.iter().map(weight_of).sum::<usize>()
                }
                RawBody::File(f) => weight_of(&f.path) + opt(&f.new_path),
                RawBody::Cgroup { path, .. } => weight_of(path),
                RawBody::Detail(_) => DETAIL_WEIGHT,
                RawBody::Fork { .. } | RawBody::Exit { .. } => 0,
            }
    }

    pub fn kind(&self) -> Kind {
        // decode() only builds RawEvents with valid kinds.
        Kind::from_u32(self.header.kind).unwrap_or(Kind::Loss)
    }
}

/// The `comm` field as text.
pub fn comm(h: &EventHeader) -> String {
    let end = h.comm.iter().position(|&c| c == 0).unwrap_or(h.comm.len());
    text(&h.comm[..end])
}

// ---- shared readers -------------------------------------------------------------------------

/// Reads a record's fixed part (`T` is one of node-agent-common's records).
fn read<T: Copy>(buf: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = std::mem::size_of::<T>();
    if buf.len() < need {
        return Err(DecodeError::Short {
            what,
            len: buf.len(),
            need,
        });
    }
    // SAFETY: length checked above; T is a repr(C) POD from node-agent-common for which every
    // bit pattern is valid; read_unaligned has no alignment requirement.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// Splits `data` into consecutive fields of the given lengths.
struct Fields<'a> {
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }
}

/// The variable data after a record's `fixed` bytes, checked to hold fields of lengths `lens`.
fn checked<'a>(
    kind: Kind,
    rec: &'a [u8],
    fixed: usize,
    lens: &[usize],
) -> Result<Fields<'a>, DecodeError> {
    let data = rec.get(fixed..).unwrap_or_default();
    let fields: usize = lens.iter().sum();
    if fields > data.len() {
        return Err(DecodeError::Lengths {
            kind,
            fields,
            data: data.len(),
        });
    }
    Ok(Fields { data })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn header(kind: Kind, data_len: u32) -> EventHeader {
        EventHeader {
            kind: kind as u32,
            flags: 0,
            ktime_ns: 1,
            start_boottime_ns: 2,
            parent_start_boottime_ns: 3,
            cgroup_id: 4,
            tgid: 5,
            tid: 6,
            ppid: 7,
            uid: 8,
            euid: 9,
            gid: 10,
            mnt_ns: 11,
            data_len,
            comm: *b"sh\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        }
    }

    pub(crate) fn bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a POD struct's bytes.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
                .to_vec()
        }
    }

    #[test]
    fn garbage_never_panics() {
        assert!(matches!(decode(&[1, 2, 3]), Err(DecodeError::Short { .. })));
        let mut h = bytes(&header(Kind::Exec, 0));
        h[..4].copy_from_slice(&0x77u32.to_ne_bytes());
        assert_eq!(decode(&h), Err(DecodeError::UnknownKind(0x77)));
        // A header that claims exec but has no exec body.
        let h = bytes(&header(Kind::Exec, 0));
        assert!(matches!(
            decode(&h),
            Err(DecodeError::Short {
                what: "exec record",
                ..
            })
        ));
    }
}
