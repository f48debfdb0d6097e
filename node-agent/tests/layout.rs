//! The kernel<->user records must have the same layout on both sides. The eBPF object carries
//! BTF describing the structs as the eBPF compiler laid them out; compare every member's offset
//! and every struct's size with what user space's compiler did (Tetragon's alignchecker idea).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::collections::HashMap;

use btf_rs::{Btf, Type};
use node_agent_common::{
    CgroupRecord, CompatSyscallRecord, ConnectRecord, EventHeader, ExecRecord, ExitRecord,
    FileRecord, ForkRecord, IoUringRecord, KernelOffsets, ProbeConfig,
};
use object::{Object, ObjectSection};

/// struct name -> (size, member name -> byte offset), from the eBPF object's BTF.
fn kernel_side_layouts() -> HashMap<String, (usize, HashMap<String, u32>)> {
    let elf =
        object::File::parse(node_agent::probes::OBJECT).expect("the embedded eBPF object is ELF");
    let btf_bytes = elf
        .section_by_name(".BTF")
        .expect("the eBPF object has a .BTF section")
        .data()
        .unwrap();
    let btf = Btf::from_bytes(btf_bytes).expect("parse the object's BTF");
    let mut out = HashMap::new();
    for name in [
        "EventHeader",
        "ExecRecord",
        "ForkRecord",
        "ExitRecord",
        "FileRecord",
        "ConnectRecord",
        "CgroupRecord",
        "IoUringRecord",
        "CompatSyscallRecord",
        "KernelOffsets",
        "ProbeConfig",
    ] {
        let st = btf
            .resolve_types_by_name(name)
            .unwrap_or_else(|e| panic!("{name} is not in the eBPF object's BTF: {e}"))
            .into_iter()
            .find_map(|t| {
                if let Type::Struct(s) = t {
                    Some(s)
                } else {
                    None
                }
            })
            .unwrap_or_else(|| panic!("{name} is not a struct in BTF"));
        let members = st
            .members
            .iter()
            .map(|m| (btf.resolve_name(m).unwrap(), m.bit_offset() / 8))
            .collect();
        out.insert(name.to_string(), (st.size(), members));
    }
    out
}

macro_rules! same_layout {
    ($k:expr, $ty:ident { $($field:ident),+ $(,)? }) => {{
        let (size, members) = &$k[stringify!($ty)];
        assert_eq!(*size, std::mem::size_of::<$ty>(), "size of {}", stringify!($ty));
        let fields = [$(stringify!($field)),+];
        assert_eq!(members.len(), fields.len(), "{}: BTF has members {:?}", stringify!($ty), members.keys());
        $(
            assert_eq!(
                members[stringify!($field)] as usize,
                std::mem::offset_of!($ty, $field),
                "offset of {}.{}", stringify!($ty), stringify!($field)
            );
        )+
    }};
}

#[test]
fn records_have_the_same_layout_in_the_kernel_and_in_user_space() {
    let k = kernel_side_layouts();
    same_layout!(
        k,
        EventHeader {
            kind,
            flags,
            ktime_ns,
            start_boottime_ns,
            parent_start_boottime_ns,
            cgroup_id,
            tgid,
            tid,
            ppid,
            uid,
            euid,
            gid,
            mnt_ns,
            data_len,
            comm,
        }
    );
    same_layout!(
        k,
        ExecRecord {
            header,
            exe_ino,
            exe_mtime_sec,
            exe_dev,
            exe_mtime_nsec,
            filename_len,
            exe_len,
            cwd_len,
            argv_len,
            env_len,
            _pad,
        }
    );
    same_layout!(
        k,
        ForkRecord {
            header,
            child_start_boottime_ns,
            child_tgid,
            _pad
        }
    );
    same_layout!(
        k,
        ExitRecord {
            header,
            exit_code,
            _pad
        }
    );
    same_layout!(
        k,
        FileRecord {
            header,
            result,
            ino,
            dev,
            flags,
            mode,
            syscall,
            path_len,
            path_base_len,
            new_path_len,
            new_path_base_len,
        }
    );
    same_layout!(
        k,
        ConnectRecord {
            header,
            result,
            addr,
            family,
            port,
            path_len,
            _pad
        }
    );
    same_layout!(
        k,
        CgroupRecord {
            header,
            cgroup_id,
            level,
            path_len,
            _pad
        }
    );
    same_layout!(
        k,
        IoUringRecord {
            header,
            result,
            entries,
            flags
        }
    );
    same_layout!(
        k,
        CompatSyscallRecord {
            header,
            result,
            nr,
            compat_flags
        }
    );
    same_layout!(
        k,
        ProbeConfig {
            self_tgid,
            capture_all_opens,
            cgroup_tp_root,
            cgroup_tp_level,
            cgroup_tp_id,
            cgroup_tp_path,
            wakeup_bytes,
            compat_results,
        }
    );
    let (size, members) = &k["KernelOffsets"];
    assert_eq!(*size, std::mem::size_of::<KernelOffsets>());
    assert_eq!(
        members.len(),
        std::mem::size_of::<KernelOffsets>() / 4,
        "KernelOffsets is all u32 fields"
    );
    assert_eq!(members["task_real_parent"], 0);
    for (name, offset) in [
        ("has_ovl", std::mem::offset_of!(KernelOffsets, has_ovl)),
        (
            "task_compat_status",
            std::mem::offset_of!(KernelOffsets, task_compat_status),
        ),
        (
            "pt_regs_mode",
            std::mem::offset_of!(KernelOffsets, pt_regs_mode),
        ),
    ] {
        assert_eq!(
            members[name] as usize, offset,
            "offset of KernelOffsets.{name}"
        );
    }
}
