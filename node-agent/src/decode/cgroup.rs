//! Internal cgroup v2 lifecycle records (mkdir, rmdir). The ring-buffer reader hands a new
//! cgroup to the container resolver ahead of the queue, and enrichment forgets a removed one;
//! neither is ever emitted as an event.

use node_agent_common::{CgroupRecord, Kind};

use super::{DecodeError, RawBody, checked, read, text};

/// Decodes an internal-family record of `kind`. `Loss` is generated in user space and never
/// comes from the kernel, so it is an unknown kind here.
pub(super) fn decode(kind: Kind, rec: &[u8]) -> Result<RawBody, DecodeError> {
    let created = match kind {
        Kind::CgroupMkdir => true,
        Kind::CgroupRmdir => false,
        _ => return Err(DecodeError::UnknownKind(kind as u32)),
    };
    let r: CgroupRecord = read(rec, "cgroup record")?;
    let lens = [usize::from(r.path_len)];
    let mut f = checked(kind, rec, std::mem::size_of::<CgroupRecord>(), &lens)?;
    Ok(RawBody::Cgroup {
        id: r.cgroup_id,
        path: text(f.take(lens[0])),
        created,
    })
}
