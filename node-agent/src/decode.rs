//! Ring-buffer records → typed raw events.
//!
//! The kernel is trusted to write the layouts in node-agent-common, but every length is still
//! checked against the record: a mismatch is a typed error, never a panic or an out-of-bounds
//! read. The environment block is reduced here to `LD_PRELOAD`/`LD_LIBRARY_PATH`; the rest
//! (which can hold secrets) is never kept.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use node_agent_common::{
    CgroupRecord, ConnectRecord, EventHeader, ExecRecord, ExitRecord, FileRecord, ForkRecord, Kind,
};

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
    Connect(RawConnect),
    /// Internal: a cgroup v2 directory appeared (`created`) or went away.
    Cgroup {
        id: u64,
        path: String,
        created: bool,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawExec {
    pub filename: String,
    pub exe: String,
    pub cwd: String,
    pub argv: Vec<String>,
    pub ld_preload: Option<String>,
    pub ld_library_path: Option<String>,
    pub exe_ino: u64,
    pub exe_dev: u32,
    pub exe_mtime_sec: i64,
    pub exe_mtime_nsec: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawFile {
    /// Absolute when the kernel resolved it or gave a base; otherwise as passed.
    pub path: String,
    pub new_path: Option<String>,
    pub result: i64,
    pub ino: u64,
    pub dev: u32,
    pub flags: u32,
    pub mode: u32,
    pub syscall: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawConnect {
    pub family: u16,
    pub addr: Option<IpAddr>,
    pub port: u16,
    /// Unix socket path; an abstract name is rendered with a leading `@`.
    pub path: Option<String>,
    pub result: i64,
}

pub use node_agent_common::{AF_INET, AF_INET6, AF_UNIX};

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

/// Joins a relative path to the directory the kernel resolved it against.
fn join(base: &[u8], path: &[u8]) -> String {
    if base.is_empty() {
        return text(path);
    }
    let mut out = Vec::with_capacity(base.len() + path.len() + 1);
    out.extend_from_slice(base);
    if !base.ends_with(b"/") && !path.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(path);
    text(&out)
}

/// NUL-separated strings (argv, the environment). A trailing NUL does not make an empty item.
fn split_nul(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let b = b.strip_suffix(b"\0").unwrap_or(b);
    b.split(|&c| c == 0).filter(move |_| !b.is_empty())
}

pub fn decode(rec: &[u8]) -> Result<RawEvent, DecodeError> {
    let header: EventHeader = read(rec, "event header")?;
    let kind = Kind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let body = match kind {
        Kind::Exec => {
            let r: ExecRecord = read(rec, "exec record")?;
            let lens =
                [r.filename_len, r.exe_len, r.cwd_len, r.argv_len, r.env_len].map(usize::from);
            let mut f = checked(kind, rec, std::mem::size_of::<ExecRecord>(), &lens)?;
            let filename = text(f.take(lens[0]));
            let exe = text(f.take(lens[1]));
            let cwd = text(f.take(lens[2]));
            let argv = split_nul(f.take(lens[3])).map(text).collect();
            let mut ld_preload = None;
            let mut ld_library_path = None;
            for var in split_nul(f.take(lens[4])) {
                if let Some(v) = var.strip_prefix(b"LD_PRELOAD=") {
                    ld_preload = Some(text(v));
                } else if let Some(v) = var.strip_prefix(b"LD_LIBRARY_PATH=") {
                    ld_library_path = Some(text(v));
                }
            }
            RawBody::Exec(RawExec {
                filename,
                exe,
                cwd,
                argv,
                ld_preload,
                ld_library_path,
                exe_ino: r.exe_ino,
                exe_dev: r.exe_dev,
                exe_mtime_sec: r.exe_mtime_sec,
                exe_mtime_nsec: r.exe_mtime_nsec,
            })
        }
        Kind::Fork => {
            let r: ForkRecord = read(rec, "fork record")?;
            RawBody::Fork {
                child_tgid: r.child_tgid,
                child_start_boottime_ns: r.child_start_boottime_ns,
            }
        }
        Kind::Exit => {
            let r: ExitRecord = read(rec, "exit record")?;
            RawBody::Exit {
                exit_code: r.exit_code,
            }
        }
        Kind::Open | Kind::Rename | Kind::Link | Kind::Symlink | Kind::Unlink | Kind::Chmod => {
            let r: FileRecord = read(rec, "file record")?;
            let lens = [
                r.path_len,
                r.path_base_len,
                r.new_path_len,
                r.new_path_base_len,
            ]
            .map(usize::from);
            let mut f = checked(kind, rec, std::mem::size_of::<FileRecord>(), &lens)?;
            let path = f.take(lens[0]);
            let base = f.take(lens[1]);
            let new_path = f.take(lens[2]);
            let new_base = f.take(lens[3]);
            RawBody::File(RawFile {
                path: join(base, path),
                new_path: (!new_path.is_empty() || !new_base.is_empty())
                    .then(|| join(new_base, new_path)),
                result: r.result,
                ino: r.ino,
                dev: r.dev,
                flags: r.flags,
                mode: r.mode,
                syscall: r.syscall,
            })
        }
        Kind::Connect => {
            let r: ConnectRecord = read(rec, "connect record")?;
            let lens = [usize::from(r.path_len)];
            let mut f = checked(kind, rec, std::mem::size_of::<ConnectRecord>(), &lens)?;
            let raw_path = f.take(lens[0]);
            let (addr, path) = match r.family {
                AF_INET => {
                    let [a, b, c, d, ..] = r.addr;
                    (Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d))), None)
                }
                AF_INET6 => (Some(IpAddr::V6(Ipv6Addr::from(r.addr))), None),
                _ => (None, Some(unix_path(raw_path))),
            };
            RawBody::Connect(RawConnect {
                family: r.family,
                addr,
                port: r.port,
                path,
                result: r.result,
            })
        }
        Kind::CgroupMkdir | Kind::CgroupRmdir => {
            let r: CgroupRecord = read(rec, "cgroup record")?;
            let lens = [usize::from(r.path_len)];
            let mut f = checked(kind, rec, std::mem::size_of::<CgroupRecord>(), &lens)?;
            RawBody::Cgroup {
                id: r.cgroup_id,
                path: text(f.take(lens[0])),
                created: kind == Kind::CgroupMkdir,
            }
        }
        Kind::Loss => return Err(DecodeError::UnknownKind(header.kind)),
    };
    Ok(RawEvent { header, body })
}

/// A pathname socket ends at its first NUL; an abstract one starts with NUL and is shown as `@name`.
fn unix_path(raw: &[u8]) -> String {
    match raw.split_first() {
        Some((0, rest)) => format!("@{}", text(rest)),
        _ => text(raw.split(|&c| c == 0).next().unwrap_or_default()),
    }
}

impl RawEvent {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind, data_len: u32) -> EventHeader {
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

    fn bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a POD struct's bytes.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
                .to_vec()
        }
    }

    #[test]
    fn decodes_exec_and_keeps_only_ld_variables() {
        let data = b"./x/bin/x/homex\0-a\0b c\0HOME=/root\0LD_PRELOAD=/tmp/e.so\0SECRET=1\0";
        let rec = ExecRecord {
            header: header(Kind::Exec, data.len() as u32),
            exe_ino: 99,
            exe_mtime_sec: 1,
            exe_dev: 2,
            exe_mtime_nsec: 3,
            filename_len: 3,
            exe_len: 6,
            cwd_len: 5,
            argv_len: 9,
            env_len: (data.len() - 23) as u16,
            _pad: [0; 3],
        };
        let mut buf = bytes(&rec);
        buf.extend_from_slice(data);
        let ev = decode(&buf).unwrap();
        let RawBody::Exec(x) = ev.body else {
            panic!("not exec")
        };
        assert_eq!(x.filename, "./x");
        assert_eq!(x.exe, "/bin/x");
        assert_eq!(x.cwd, "/home");
        assert_eq!(x.argv, vec!["x", "-a", "b c"]);
        assert_eq!(x.ld_preload.as_deref(), Some("/tmp/e.so"));
        assert_eq!(x.ld_library_path, None);
        assert_eq!(comm(&ev.header), "sh");
    }

    #[test]
    fn joins_relative_paths_to_their_base() {
        // path, path base, new path, new path base.
        let data = b"targetpg-z/tmp";
        let rec = FileRecord {
            header: header(Kind::Symlink, data.len() as u32),
            result: 0,
            ino: 0,
            dev: 0,
            flags: 0,
            mode: 0,
            syscall: 88,
            path_len: 6,
            path_base_len: 0,
            new_path_len: 4,
            new_path_base_len: 4,
        };
        let mut buf = bytes(&rec);
        buf.extend_from_slice(data);
        let ev = decode(&buf).unwrap();
        let RawBody::File(f) = ev.body else {
            panic!("not file")
        };
        assert_eq!(f.path, "target");
        assert_eq!(f.new_path.as_deref(), Some("/tmp/pg-z"));
    }

    #[test]
    fn lengths_beyond_the_record_are_an_error() {
        let rec = FileRecord {
            header: header(Kind::Open, 0),
            result: 0,
            ino: 0,
            dev: 0,
            flags: 0,
            mode: 0,
            syscall: 0,
            path_len: 4000,
            path_base_len: 0,
            new_path_len: 0,
            new_path_base_len: 0,
        };
        let err = decode(&bytes(&rec)).unwrap_err();
        assert!(matches!(err, DecodeError::Lengths { .. }), "{err}");
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

    #[test]
    fn unix_paths() {
        assert_eq!(
            unix_path(b"/run/containerd/containerd.sock\0junk"),
            "/run/containerd/containerd.sock"
        );
        assert_eq!(unix_path(b"\0abstract"), "@abstract");
    }
}
