//! Record layouts shared by the eBPF programs (`node-agent-ebpf`) and the agent (`node-agent`).
//!
//! Every record the kernel writes into the `EVENTS` ring buffer starts with an [`EventHeader`],
//! followed by a fixed part that depends on the kind, followed by `header.data_len` bytes of
//! variable data (paths, argv, environment) whose per-field lengths sit in the fixed part.
//! All structs are `#[repr(C)]`, `Copy` and have no implicit padding; `tests/layout.rs` in the
//! agent pins their sizes and offsets as seen from user space, and the same constants are
//! asserted at compile time here so that the eBPF build checks them too.
#![no_std]

/// The families of event kinds. Each owns a range of kind numbers, so that a kind added to one
/// family never renumbers another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KindFamily {
    /// `0x0100..0x0200`: process lifecycle.
    Process,
    /// `0x0200..0x0300`: file changes.
    File,
    /// `0x0300..0x0400`: network.
    Network,
    /// `0x0400..0x0500`: kernel (modules, mounts, privileges).
    Kernel,
    /// `0x0f00..0x1000`: generated or consumed by the agent itself.
    Internal,
}

impl KindFamily {
    /// The kind numbers this family owns.
    pub const fn range(self) -> core::ops::Range<u32> {
        match self {
            KindFamily::Process => 0x0100..0x0200,
            KindFamily::File => 0x0200..0x0300,
            KindFamily::Network => 0x0300..0x0400,
            KindFamily::Kernel => 0x0400..0x0500,
            KindFamily::Internal => 0x0f00..0x1000,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            KindFamily::Process => "process",
            KindFamily::File => "file",
            KindFamily::Network => "network",
            KindFamily::Kernel => "kernel",
            KindFamily::Internal => "internal",
        }
    }
}

/// Defines [`Kind`] and everything derived from it from one table. See [`kinds!`]'s use below.
macro_rules! kinds {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $number:literal, $name:literal, $family:ident, $detail:expr;
    )*) => {
        /// Event kinds, numbered in families (see [`KindFamily`]) so that a new kind never renumbers
        /// an old one. Never reuse a retired number: it is on the wire and in stored batches.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Kind {
            $( $(#[$doc])* $variant = $number, )*
        }

        impl Kind {
            /// Every kind, in table order; [`Kind::slot`] is the index in this array.
            pub const ALL: [Kind; [$($name),*].len()] = [$(Kind::$variant),*];

            pub const fn from_u32(v: u32) -> Option<Kind> {
                match v {
                    $( $number => Some(Kind::$variant), )*
                    _ => None,
                }
            }

            /// The snake_case name used in JSON, rules and metrics labels.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Kind::$variant => $name, )*
                }
            }

            pub const fn family(self) -> KindFamily {
                match self {
                    $( Kind::$variant => KindFamily::$family, )*
                }
            }

            /// The JSON key of the kind's detail (`peregrine_event::Detail`), or `None` for a
            /// kind that the agent consumes itself and never emits.
            pub const fn detail(self) -> Option<&'static str> {
                match self {
                    $( Kind::$variant => $detail, )*
                }
            }
        }
    };
}

kinds! {
    Exec = 0x0100, "exec", Process, Some("exec");
    /// A new process (not a thread).
    Fork = 0x0101, "fork", Process, Some("fork");
    /// The last thread of a process exited.
    Exit = 0x0102, "exit", Process, Some("exit");
    Open = 0x0200, "open", File, Some("file");
    Rename = 0x0201, "rename", File, Some("file");
    Link = 0x0202, "link", File, Some("file");
    Symlink = 0x0203, "symlink", File, Some("file");
    Unlink = 0x0204, "unlink", File, Some("file");
    Chmod = 0x0205, "chmod", File, Some("file");
    Connect = 0x0300, "connect", Network, Some("net");
    /// An `io_uring_setup` attempt. io_uring operations are submitted through shared memory
    /// and run without passing the syscall tracepoints, so the ring's creation is what can be
    /// seen.
    IoUring = 0x0400, "io_uring", Kernel, Some("io_uring");
    /// A 32-bit (compat) syscall: from a 32-bit process, or `int 0x80` from a 64-bit one. Only
    /// `raw_syscalls` sees these; the per-syscall tracepoints skip them. Reported once per
    /// (process image, syscall number).
    CompatSyscall = 0x0401, "compat_syscall", Kernel, Some("compat_syscall");
    /// Generated in user space from the drop counters; never written by the kernel.
    Loss = 0x0f00, "loss", Internal, Some("loss");
    /// A cgroup v2 directory was created. Consumed by the agent to map cgroup ids to paths
    /// (and prefetch container metadata) before the cgroup's first process runs, so that even
    /// a container living a few milliseconds is attributed. Never emitted.
    CgroupMkdir = 0x0f01, "cgroup_mkdir", Internal, None;
    /// A cgroup v2 directory was removed. Never emitted.
    CgroupRmdir = 0x0f02, "cgroup_rmdir", Internal, None;
}

impl Kind {
    /// A dense index (`0..Kind::ALL.len()`) for per-kind tables such as the detection engine's
    /// index. Not stable across versions: persist [`Kind`]'s number, never its slot.
    pub const fn slot(self) -> usize {
        SLOT_OF[(self as u32 & 0x0fff) as usize] as usize
    }
}

/// Kind number → slot, for every number below 0x1000 (the end of the last family's range).
const SLOT_OF: [u8; 0x1000] = {
    let mut table = [u8::MAX; 0x1000];
    let mut i = 0;
    while i < Kind::ALL.len() {
        table[Kind::ALL[i] as usize] = i as u8;
        i += 1;
    }
    table
};

// Every kind's number lies in its family's range, and names and numbers are unique.
const _: () = {
    let mut i = 0;
    while i < Kind::ALL.len() {
        let k = Kind::ALL[i];
        let range = k.family().range();
        assert!(range.start <= k as u32 && (k as u32) < range.end);
        assert!((k as u32) < 0x1000 && i < u8::MAX as usize);
        assert!(k.slot() == i);
        let mut j = i + 1;
        while j < Kind::ALL.len() {
            assert!(Kind::ALL[j] as u32 != k as u32);
            assert!(!str_eq(Kind::ALL[j].name(), k.name()));
            j += 1;
        }
        i += 1;
    }
};

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `open(2)` flags, shared by the kernel filter and the rules' `file.write` field
/// (`include/uapi/asm-generic/fcntl.h`; x86-64 and arm64 agree on these).
pub const O_WRONLY: u32 = 0o1;
pub const O_RDWR: u32 = 0o2;
pub const O_CREAT: u32 = 0o100;
pub const O_TRUNC: u32 = 0o1000;
pub const O_APPEND: u32 = 0o2000;
/// An open with any of these bits can change the file: the kernel reports it, and the rules'
/// `file.write` is true for it. Plain reads never cross to user space.
pub const WRITE_INTENT: u32 = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC;

/// Socket address families (`include/linux/socket.h`).
pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Capacities of the variable-length fields. A field that hits its cap has its `TRUNC_*` flag set.
pub const PATH_CAP: usize = 4096;
pub const FILENAME_CAP: usize = 1024;
pub const ARGV_CAP: usize = 8192;
pub const ENV_CAP: usize = 8192;
pub const SOCK_PATH_CAP: usize = 108;
pub const COMM_LEN: usize = 16;

/// Bits in [`EventHeader::flags`].
pub const TRUNC_ARGV: u32 = 1 << 0;
pub const TRUNC_ENV: u32 = 1 << 1;
pub const TRUNC_EXE: u32 = 1 << 2;
pub const TRUNC_CWD: u32 = 1 << 3;
pub const TRUNC_FILENAME: u32 = 1 << 4;
pub const TRUNC_PATH: u32 = 1 << 5;
pub const TRUNC_NEW_PATH: u32 = 1 << 6;
/// The executable (exec) or file (open) lives on overlayfs.
pub const ON_OVERLAY: u32 = 1 << 8;
/// ... and its overlayfs inode has an upper dentry: it was created or copied up (modified)
/// after the overlay was mounted, i.e. after the container started.
pub const IN_UPPER_LAYER: u32 = 1 << 9;
/// `path` of a file event was resolved by the kernel from the opened file (absolute, symlinks
/// followed) rather than copied from the syscall argument.
pub const PATH_RESOLVED: u32 = 1 << 10;
/// A path argument of a file event (`path` or `new_path`, as copied from the caller's memory)
/// read differently at syscall entry and at exit: another thread (or a process sharing the
/// memory) rewrote the buffer while the syscall ran, so the reported path may not be the one
/// the kernel used. Never set for a path the kernel resolved ([`PATH_RESOLVED`]).
pub const PATH_CHANGED: u32 = 1 << 11;
/// A path argument could not be read at syscall entry (its page was not resident, which is how
/// a caller delays the kernel's own copy), so whether it changed during the syscall is unknown.
pub const PATH_UNVERIFIED: u32 = 1 << 12;

/// Common prefix of every kernel record. 88 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// A [`Kind`] discriminant.
    pub kind: u32,
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns()` at capture.
    pub ktime_ns: u64,
    /// `start_boottime` of the thread-group leader, in ns since boot.
    pub start_boottime_ns: u64,
    /// `start_boottime` of the real parent's thread-group leader.
    pub parent_start_boottime_ns: u64,
    /// cgroup v2 id (the cgroup directory's inode number).
    pub cgroup_id: u64,
    pub tgid: u32,
    pub tid: u32,
    /// tgid of the real parent.
    pub ppid: u32,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    /// Inode number of the mount namespace.
    pub mnt_ns: u32,
    /// Bytes of variable data after the fixed part of the record.
    pub data_len: u32,
    pub comm: [u8; COMM_LEN],
}

/// `Kind::Exec`. Data: filename (as passed to execve), exe path, cwd, argv (NUL-separated),
/// environment (NUL-separated).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub header: EventHeader,
    pub exe_ino: u64,
    pub exe_mtime_sec: i64,
    pub exe_dev: u32,
    pub exe_mtime_nsec: u32,
    pub filename_len: u16,
    pub exe_len: u16,
    pub cwd_len: u16,
    pub argv_len: u16,
    pub env_len: u16,
    pub _pad: [u16; 3],
}

/// `Kind::Fork`: a new process (not a thread). The header describes the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    pub header: EventHeader,
    pub child_start_boottime_ns: u64,
    pub child_tgid: u32,
    pub _pad: u32,
}

/// `Kind::Exit`: the last thread of a process exited.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub header: EventHeader,
    /// `task_struct::exit_code`: a wait(2) status (`code << 8` or the signal number).
    pub exit_code: u32,
    pub _pad: u32,
}

/// Open, rename, link, symlink, unlink and chmod. Data: path, path base, new path, new path base.
///
/// A base is present when the matching path is relative: it is the directory the kernel resolved
/// it against (the cwd or the `dirfd`). `path` is the old name for rename and link, the target for
/// symlink; `new_path` the new name or the link's path.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileRecord {
    pub header: EventHeader,
    /// Syscall return value.
    pub result: i64,
    /// Inode of the opened file, when the open succeeded (else 0).
    pub ino: u64,
    pub dev: u32,
    /// Open flags, rename flags or unlinkat flags.
    pub flags: u32,
    /// Open/create mode, or the chmod mode.
    pub mode: u32,
    /// The syscall number that produced it (arch-specific; diagnostic only).
    pub syscall: u32,
    pub path_len: u16,
    pub path_base_len: u16,
    pub new_path_len: u16,
    pub new_path_base_len: u16,
}

/// `Kind::Connect`. Data: the unix socket path (`AF_UNIX` only; abstract names keep the leading NUL).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectRecord {
    pub header: EventHeader,
    pub result: i64,
    /// IPv4 in the first 4 bytes, or IPv6, in network order.
    pub addr: [u8; 16],
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    pub path_len: u16,
    pub _pad: u16,
}

/// `Kind::CgroupMkdir` / `Kind::CgroupRmdir` (cgroup v2 only). Data: the cgroup's path.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CgroupRecord {
    pub header: EventHeader,
    pub cgroup_id: u64,
    pub level: u32,
    pub path_len: u16,
    pub _pad: u16,
}

/// `Kind::IoUring`: an `io_uring_setup(entries, params)` attempt.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IoUringRecord {
    pub header: EventHeader,
    /// Syscall return value: the ring's file descriptor, or -errno.
    pub result: i64,
    /// The requested number of submission-queue entries.
    pub entries: u32,
    /// `io_uring_params.flags` (`IORING_SETUP_*`), read when the syscall returns; 0 when the
    /// parameters could not be read.
    pub flags: u32,
}

/// [`CompatSyscallRecord::compat_flags`]: `result` holds the syscall's return value. Unset for
/// syscalls that do not return to the caller (exit, exit_group, execve), which are reported at
/// entry.
pub const COMPAT_RETURNED: u32 = 1 << 0;
/// [`CompatSyscallRecord::compat_flags`]: the caller was running 64-bit code (x86-64: `int
/// 0x80` from a 64-bit process).
pub const COMPAT_FROM_64BIT: u32 = 1 << 1;

/// `Kind::CompatSyscall`: the first 32-bit syscall of its number by a process image.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CompatSyscallRecord {
    pub header: EventHeader,
    /// Syscall return value, when `compat_flags` has [`COMPAT_RETURNED`].
    pub result: i64,
    /// The 32-bit syscall number (i386 numbering on x86-64, arm EABI on arm64).
    pub nr: u32,
    /// `COMPAT_*` bits.
    pub compat_flags: u32,
}

/// Struct-member offsets read from the running kernel's BTF at load time, so that one eBPF
/// object runs on any kernel (rustc has no CO-RE `preserve_access_index`).
/// Every field is a byte offset from the start of the containing struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_start_boottime: u32,
    pub task_real_cred: u32,
    pub task_nsproxy: u32,
    pub task_mm: u32,
    pub task_fs: u32,
    pub task_files: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub signal_live: u32,
    pub cred_uid: u32,
    pub cred_euid: u32,
    pub cred_gid: u32,
    pub nsproxy_mnt_ns: u32,
    pub mnt_ns_inum: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    pub mm_exe_file: u32,
    pub fs_root: u32,
    pub fs_pwd: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_f_path: u32,
    pub file_f_inode: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name: u32,
    pub dentry_d_inode: u32,
    pub qstr_len: u32,
    pub qstr_name: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub vfsmount_mnt_root: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub inode_i_mtime_sec: u32,
    pub inode_i_mtime_nsec: u32,
    pub sb_s_dev: u32,
    pub sb_s_magic: u32,
    pub ovl_inode_vfs_inode: u32,
    pub ovl_inode_upperdentry: u32,
    /// 1 when the kernel has overlayfs in its BTF (the two fields above are valid).
    pub has_ovl: u32,
    /// x86-64: `task_struct.thread_info.status`, whose `TS_COMPAT` says the current syscall is
    /// a 32-bit one (0 elsewhere).
    pub task_compat_status: u32,
    /// `task_struct.self_exec_id`: changes at every exec, so it names a process image.
    pub task_self_exec_id: u32,
    /// The caller's mode in its saved registers: `pt_regs.cs` on x86-64 (tells `int 0x80` from
    /// 64-bit code), `pt_regs.pstate` on arm64 (AArch32 or not).
    pub pt_regs_mode: u32,
}

/// Load-time settings for the probes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The agent's own tgid: its events are never captured, so its own I/O cannot feed back.
    pub self_tgid: u32,
    /// 1 captures every open, including read-only ones (benchmarks and debugging only).
    pub capture_all_opens: u32,
    /// Field offsets in the cgroup_mkdir/cgroup_rmdir tracepoint record, from tracefs.
    pub cgroup_tp_root: u32,
    pub cgroup_tp_level: u32,
    pub cgroup_tp_id: u32,
    pub cgroup_tp_path: u32,
    /// Records are submitted without waking the reader (a wakeup is an IPI, costly in a VM)
    /// until this many bytes are waiting; the reader also drains on a short timer.
    pub wakeup_bytes: u32,
    /// 1 when the raw `sys_exit` program is attached, so that a compat syscall's event waits for
    /// its result; 0 reports it at entry, without one.
    pub compat_results: u32,
}

/// Indexes of the per-CPU `DROPS` counters.
pub const DROP_RINGBUF_FULL: u32 = 0;
/// The per-CPU scratch area could not be looked up (should never happen; counted anyway).
pub const DROP_NO_SCRATCH: u32 = 1;
pub const DROP_SLOTS: u32 = 2;

/// Size of the per-CPU scratch area an event is assembled in before it is copied to the ring
/// buffer. Variable data is appended at masked offsets (`& DATA_MASK`), so the area must hold
/// the fixed part, the largest masked offset and the largest single field.
pub const DATA_MASK: usize = 0x7fff;
pub const SCRATCH_SIZE: usize = 256 + DATA_MASK + 1 + ARGV_CAP;

const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 88);
    assert!(core::mem::size_of::<ExecRecord>() == 88 + 40);
    assert!(core::mem::size_of::<ForkRecord>() == 88 + 16);
    assert!(core::mem::size_of::<ExitRecord>() == 88 + 8);
    assert!(core::mem::size_of::<FileRecord>() == 88 + 40);
    assert!(core::mem::size_of::<ConnectRecord>() == 88 + 32);
    assert!(core::mem::size_of::<CgroupRecord>() == 88 + 16);
    assert!(core::mem::size_of::<IoUringRecord>() == 88 + 16);
    assert!(core::mem::size_of::<CompatSyscallRecord>() == 88 + 16);
    assert!(core::mem::size_of::<ProbeConfig>() == 8 * 4);
    assert!(core::mem::size_of::<KernelOffsets>() == 53 * 4);
    // The largest fixed part must fit in the 256 bytes reserved for it in the scratch area.
    assert!(core::mem::size_of::<ExecRecord>() <= 256);
    assert!(FILENAME_CAP + 2 * PATH_CAP + ARGV_CAP + ENV_CAP <= DATA_MASK + 1);
};

pub mod sip;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is repr(C), Copy, and every bit pattern is valid; no implicit padding
    // (asserted above and in node-agent/tests/layout.rs).
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for ProbeConfig {}
    unsafe impl aya::Pod for EventHeader {}
}
