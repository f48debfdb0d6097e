//! cgroup v2 lifecycle: tells user space a cgroup id's path before any process runs in it.
//! The agent consumes these records itself (container attribution); they are never emitted.

use aya_ebpf::{
    EbpfContext, helpers::generated::bpf_get_current_task, macros::tracepoint,
    programs::TracePointContext,
};
use node_agent_common::{CgroupRecord, Kind, PATH_CAP, TRUNC_PATH};

use crate::common::{Builder, config, fill_header, read_u32, read_u64, scratch};

#[tracepoint(category = "cgroup", name = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    match unsafe { try_cgroup(&ctx, Kind::CgroupMkdir) } {
        Ok(r) | Err(r) => r,
    }
}

#[tracepoint(category = "cgroup", name = "cgroup_rmdir")]
pub fn cgroup_rmdir(ctx: TracePointContext) -> u32 {
    match unsafe { try_cgroup(&ctx, Kind::CgroupRmdir) } {
        Ok(r) | Err(r) => r,
    }
}

unsafe fn try_cgroup(ctx: &TracePointContext, kind: Kind) -> Result<u32, u32> {
    let rec_base = ctx.as_ptr() as usize;
    // Only the default (v2) hierarchy, whose hierarchy id is 0: v1 hierarchies have their own
    // id spaces, and bpf_get_current_cgroup_id() reports v2 ids.
    if read_u32(rec_base + config!(cgroup_tp_root) as usize) != 0 {
        return Ok(0);
    }
    let base = scratch().ok_or(0u32)?;
    let task = bpf_get_current_task() as usize;
    let rec = base.cast::<CgroupRecord>();
    fill_header(&raw mut (*rec).header, kind, task);
    (*rec).cgroup_id = read_u64(rec_base + config!(cgroup_tp_id) as usize);
    (*rec).level = read_u32(rec_base + config!(cgroup_tp_level) as usize);
    (*rec)._pad = 0;
    let mut b = Builder::new(base, core::mem::size_of::<CgroupRecord>());
    // __data_loc: low 16 bits are the offset of the string in the record.
    let loc = read_u32(rec_base + config!(cgroup_tp_path) as usize);
    let (len, t) = b.kernel_str(rec_base + (loc & 0xffff) as usize, PATH_CAP);
    (*rec).path_len = len;
    (*rec).header.flags = if t { TRUNC_PATH } else { 0 };
    b.submit();
    Ok(0)
}
