//! Process lifecycle records: exec, fork and exit.
//!
//! The environment block is reduced here to `LD_PRELOAD`/`LD_LIBRARY_PATH`; the rest (which can
//! hold secrets) is never kept.

use node_agent_common::{ExecRecord, ExitRecord, ForkRecord, Kind, TRUNC_ENV};
use peregrine_event::{Detail, ExecInfo, ExitInfo, ForkInfo, NewBinary};
use uuid::Uuid;

use super::{DecodeError, RawBody, checked, read, text};

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

/// Decodes a process-family record of `kind`.
pub(super) fn decode(kind: Kind, rec: &[u8]) -> Result<RawBody, DecodeError> {
    Ok(match kind {
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
        _ => return Err(DecodeError::UnknownKind(kind as u32)),
    })
}

/// NUL-separated strings (argv, the environment). A trailing NUL does not make an empty item.
fn split_nul(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let b = b.strip_suffix(b"\0").unwrap_or(b);
    b.split(|&c| c == 0).filter(move |_| !b.is_empty())
}

/// An exec's detail; `flags` are the record header's, `new_binary` what the agent's tracker
/// concluded about the executable.
pub fn exec_detail(x: RawExec, flags: u32, new_binary: Option<NewBinary>) -> Detail {
    Detail::Exec(ExecInfo {
        filename: x.filename,
        exe_dev: x.exe_dev,
        exe_ino: x.exe_ino,
        env_truncated: flags & TRUNC_ENV != 0,
        new_binary,
    })
}

/// A fork's detail; `child_uuid` is the child's id in the agent's process table.
pub fn fork_detail(child_tgid: u32, child_uuid: Uuid) -> Detail {
    Detail::Fork(ForkInfo {
        child_pid: child_tgid,
        child_uuid,
    })
}

/// An exit's detail from `task_struct::exit_code`.
pub fn exit_detail(exit_code: u32) -> Detail {
    // A wait(2) status: low 7 bits the signal, else the exit code in bits 8-15.
    let signal = (exit_code & 0x7f) as i32;
    Detail::Exit(if signal == 0 {
        ExitInfo {
            code: Some(((exit_code >> 8) & 0xff) as i32),
            signal: None,
        }
    } else {
        ExitInfo {
            code: None,
            signal: Some(signal),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::{
        comm, decode,
        tests::{bytes, header},
    };
    use super::*;

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
}
