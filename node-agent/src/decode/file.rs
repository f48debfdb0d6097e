//! File-change records: open, rename, link, symlink, unlink and chmod.

use node_agent_common::{
    FileRecord, Kind, O_CREAT, PATH_CHANGED, PATH_RESOLVED, PATH_UNVERIFIED, TRUNC_NEW_PATH,
    TRUNC_PATH,
};
use peregrine_event::{Detail, FileInfo, mode_octal};

use super::{DecodeError, RawBody, checked, read, text};

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

/// Decodes a file-family record of `kind` (the caller dispatched on the family): every file
/// kind is written as a [`FileRecord`].
pub(super) fn decode(kind: Kind, rec: &[u8]) -> Result<RawBody, DecodeError> {
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
    Ok(RawBody::File(RawFile {
        path: join(base, path),
        new_path: (!new_path.is_empty() || !new_base.is_empty()).then(|| join(new_base, new_path)),
        result: r.result,
        ino: r.ino,
        dev: r.dev,
        flags: r.flags,
        mode: r.mode,
        syscall: r.syscall,
    }))
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

/// A file event's detail; `flags` are the record header's.
pub fn detail(kind: Kind, flags: u32, f: RawFile) -> Detail {
    // The mode means something only for chmod and for an open that may create the file.
    let mode = if kind == Kind::Chmod || f.flags & O_CREAT != 0 {
        f.mode
    } else {
        0
    };
    Detail::File(FileInfo {
        path: f.path,
        new_path: f.new_path,
        flags: f.flags,
        mode,
        mode_octal: if mode != 0 || kind == Kind::Chmod {
            mode_octal(mode)
        } else {
            String::new()
        },
        result: f.result,
        resolved: flags & PATH_RESOLVED != 0,
        ino: f.ino,
        dev: f.dev,
        truncated: flags & (TRUNC_PATH | TRUNC_NEW_PATH) != 0,
        path_changed: flags & PATH_CHANGED != 0,
        path_unverified: flags & PATH_UNVERIFIED != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{
        decode,
        tests::{bytes, header},
    };
    use super::*;

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
    fn header_flags_say_whether_a_path_was_rewritten_or_unchecked() {
        let f = RawFile {
            path: "/tmp/decoy".into(),
            ..RawFile::default()
        };
        for (flags, changed, unverified) in [
            (0, false, false),
            (PATH_CHANGED, true, false),
            (PATH_UNVERIFIED, false, true),
            (PATH_CHANGED | PATH_UNVERIFIED | TRUNC_PATH, true, true),
        ] {
            let Detail::File(d) = detail(Kind::Unlink, flags, f.clone()) else {
                panic!("not file")
            };
            assert_eq!((d.path_changed, d.path_unverified), (changed, unverified));
            assert!(!d.resolved);
        }
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
}
