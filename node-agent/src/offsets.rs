//! Kernel struct-member offsets, read from the running kernel's BTF at load time.
//!
//! rustc cannot emit CO-RE relocations, so the eBPF programs read kernel structs at offsets we
//! compute here and pass in through the `OFFSETS` global. Fields that moved between kernel
//! versions list every known spelling, newest first.

use std::path::Path;

use btf_rs::{Btf, Type};
use node_agent_common::KernelOffsets;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The saved-register field that holds the caller's mode (node-agent-ebpf/src/kernel.rs reads
/// it to tell 32-bit callers).
#[cfg(target_arch = "x86_64")]
const PT_REGS_MODE: &str = "cs";
#[cfg(not(target_arch = "x86_64"))]
const PT_REGS_MODE: &str = "pstate";

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(
        "cannot read kernel BTF at {path}: {source}; the kernel must be built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    Read { path: String, source: btf_rs::Error },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has none of the members {candidates}")]
    NoMember { strukt: String, candidates: String },
    #[error("kernel BTF is inconsistent: {0}")]
    Btf(#[from] btf_rs::Error),
}

pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn open(path: &Path) -> Result<Self, OffsetError> {
        let btf = Btf::from_file(path).map_err(|source| OffsetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(KernelBtf { btf })
    }

    fn find_struct(&self, name: &str) -> Result<btf_rs::Struct, OffsetError> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|_| OffsetError::NoStruct(name.into()))?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) => Some(s),
                _ => None,
            })
            .ok_or_else(|| OffsetError::NoStruct(name.into()))
    }

    /// Byte offset of `member` in `st`, descending into anonymous structs and unions.
    fn member_in(&self, st: &btf_rs::Struct, member: &str) -> Result<Option<u32>, OffsetError> {
        for m in &st.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            if name == member {
                return Ok(Some(m.bit_offset() / 8));
            }
            if name.is_empty() {
                let inner = match self.strip(self.btf.resolve_chained_type(m)?)? {
                    Type::Struct(s) | Type::Union(s) => s,
                    _ => continue,
                };
                if let Some(off) = self.member_in(&inner, member)? {
                    return Ok(Some(m.bit_offset() / 8 + off));
                }
            }
        }
        Ok(None)
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip(&self, mut t: Type) -> Result<Type, OffsetError> {
        for _ in 0..16 {
            t = match t {
                Type::Typedef(ref x) => self.btf.resolve_chained_type(x)?,
                Type::Const(ref x) => self.btf.resolve_chained_type(x)?,
                Type::Volatile(ref x) => self.btf.resolve_chained_type(x)?,
                Type::Restrict(ref x) => self.btf.resolve_chained_type(x)?,
                Type::TypeTag(ref x) => self.btf.resolve_chained_type(x)?,
                other => return Ok(other),
            };
        }
        Ok(t)
    }

    /// The type of member `member` of struct `st`, as a struct.
    fn member_struct(
        &self,
        st: &btf_rs::Struct,
        member: &str,
    ) -> Result<Option<btf_rs::Struct>, OffsetError> {
        for m in &st.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            let t = self.strip(self.btf.resolve_chained_type(m)?)?;
            if name == member {
                return Ok(match t {
                    Type::Struct(s) | Type::Union(s) => Some(s),
                    _ => None,
                });
            }
            if name.is_empty()
                && let Type::Struct(inner) | Type::Union(inner) = t
                && let Some(s) = self.member_struct(&inner, member)?
            {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// Offset of a dotted member path (`"__i_mtime.tv_sec"`) in struct `strukt`, trying each
    /// candidate spelling in turn.
    pub fn offset(&self, strukt: &str, candidates: &[&str]) -> Result<u32, OffsetError> {
        let root = self.find_struct(strukt)?;
        'candidate: for cand in candidates {
            let mut st = root.clone();
            let mut total = 0;
            let parts: Vec<&str> = cand.split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                let Some(off) = self.member_in(&st, part)? else {
                    continue 'candidate;
                };
                total += off;
                if i + 1 < parts.len() {
                    match self.member_struct(&st, part)? {
                        Some(next) => st = next,
                        None => continue 'candidate,
                    }
                }
            }
            return Ok(total);
        }
        Err(OffsetError::NoMember {
            strukt: strukt.into(),
            candidates: candidates.join(" | "),
        })
    }

    pub fn has_struct(&self, name: &str) -> bool {
        self.find_struct(name).is_ok()
    }

    /// Every offset the probes use.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, OffsetError> {
        let o = |s: &str, c: &[&str]| self.offset(s, c);
        let has_ovl = self.has_struct("ovl_inode");
        Ok(KernelOffsets {
            task_real_parent: o("task_struct", &["real_parent"])?,
            task_group_leader: o("task_struct", &["group_leader"])?,
            task_tgid: o("task_struct", &["tgid"])?,
            task_pid: o("task_struct", &["pid"])?,
            task_start_boottime: o("task_struct", &["start_boottime", "real_start_time"])?,
            task_real_cred: o("task_struct", &["real_cred"])?,
            task_nsproxy: o("task_struct", &["nsproxy"])?,
            task_mm: o("task_struct", &["mm"])?,
            task_fs: o("task_struct", &["fs"])?,
            task_files: o("task_struct", &["files"])?,
            task_exit_code: o("task_struct", &["exit_code"])?,
            task_signal: o("task_struct", &["signal"])?,
            signal_live: o("signal_struct", &["live.counter", "live"])?,
            cred_uid: o("cred", &["uid.val", "uid"])?,
            cred_euid: o("cred", &["euid.val", "euid"])?,
            cred_gid: o("cred", &["gid.val", "gid"])?,
            nsproxy_mnt_ns: o("nsproxy", &["mnt_ns"])?,
            mnt_ns_inum: o("mnt_namespace", &["ns.inum", "proc_inum"])?,
            mm_arg_start: o("mm_struct", &["arg_start"])?,
            mm_arg_end: o("mm_struct", &["arg_end"])?,
            mm_env_start: o("mm_struct", &["env_start"])?,
            mm_env_end: o("mm_struct", &["env_end"])?,
            mm_exe_file: o("mm_struct", &["exe_file"])?,
            fs_root: o("fs_struct", &["root"])?,
            fs_pwd: o("fs_struct", &["pwd"])?,
            files_fdt: o("files_struct", &["fdt"])?,
            fdtable_max_fds: o("fdtable", &["max_fds"])?,
            fdtable_fd: o("fdtable", &["fd"])?,
            file_f_path: o("file", &["f_path", "__f_path"])?,
            file_f_inode: o("file", &["f_inode"])?,
            path_mnt: o("path", &["mnt"])?,
            path_dentry: o("path", &["dentry"])?,
            dentry_d_parent: o("dentry", &["d_parent"])?,
            dentry_d_name: o("dentry", &["d_name"])?,
            dentry_d_inode: o("dentry", &["d_inode"])?,
            qstr_len: o("qstr", &["len"])?,
            qstr_name: o("qstr", &["name"])?,
            mount_mnt: o("mount", &["mnt"])?,
            mount_mnt_parent: o("mount", &["mnt_parent"])?,
            mount_mnt_mountpoint: o("mount", &["mnt_mountpoint"])?,
            vfsmount_mnt_root: o("vfsmount", &["mnt_root"])?,
            inode_i_ino: o("inode", &["i_ino"])?,
            inode_i_sb: o("inode", &["i_sb"])?,
            inode_i_mtime_sec: o(
                "inode",
                &["i_mtime_sec", "__i_mtime.tv_sec", "i_mtime.tv_sec"],
            )?,
            inode_i_mtime_nsec: o(
                "inode",
                &["i_mtime_nsec", "__i_mtime.tv_nsec", "i_mtime.tv_nsec"],
            )?,
            sb_s_dev: o("super_block", &["s_dev"])?,
            sb_s_magic: o("super_block", &["s_magic"])?,
            ovl_inode_vfs_inode: if has_ovl {
                o("ovl_inode", &["vfs_inode"])?
            } else {
                0
            },
            ovl_inode_upperdentry: if has_ovl {
                o("ovl_inode", &["__upperdentry"])?
            } else {
                0
            },
            has_ovl: u32::from(has_ovl),
            task_compat_status: if cfg!(target_arch = "x86_64") {
                o("task_struct", &["thread_info.status"])?
            } else {
                0
            },
            task_self_exec_id: o("task_struct", &["self_exec_id"])?,
            pt_regs_mode: o("pt_regs", &[PT_REGS_MODE])?,
        })
    }
}

impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelBtf")
    }
}
