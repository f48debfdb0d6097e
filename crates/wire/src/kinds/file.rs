//! File-change payloads: open, rename, link, symlink, unlink and chmod share [`FileInfo`].

use peregrine_event::{FileInfo, mode_octal};

use super::{CostTables, Tables};
use crate::encode::Builder;
use crate::error::{Inconsistency, WireError};
use crate::pb;

pub(super) fn encode<'a>(b: &mut Builder<'a>, f: &'a FileInfo) -> Result<pb::FileInfo, WireError> {
    // `mode_octal` is nearly always derived from `mode`: then only which of the two it is
    // travels, not the text.
    let (mode_text, mode_octal_text) = if f.mode_octal.is_empty() {
        (pb::ModeText::Empty, 0)
    } else if f.mode_octal == mode_octal(f.mode) {
        (pb::ModeText::Octal, 0)
    } else {
        (pb::ModeText::Explicit, b.string(&f.mode_octal)?)
    };
    Ok(pb::FileInfo {
        path: b.string(&f.path)?,
        new_path: b.opt_string(&f.new_path)?,
        flags: f.flags,
        mode: f.mode,
        mode_text: mode_text as i32,
        mode_octal_text,
        result: f.result,
        resolved: f.resolved,
        ino: f.ino,
        dev: f.dev,
        truncated: f.truncated,
        path_changed: f.path_changed,
        path_unverified: f.path_unverified,
    })
}

pub(super) fn decode(f: &pb::FileInfo, t: &Tables<'_>) -> Result<FileInfo, Inconsistency> {
    let s = t.strings;
    let mode_octal = match pb::ModeText::try_from(f.mode_text) {
        Ok(pb::ModeText::Empty) => String::new(),
        Ok(pb::ModeText::Octal) => mode_octal(f.mode),
        Ok(pb::ModeText::Explicit) => s.owned(f.mode_octal_text, "FileInfo.mode_octal_text")?,
        Err(_) => {
            return Err(Inconsistency::InvalidEnum {
                field: "FileInfo.mode_text",
                value: f.mode_text,
            });
        }
    };
    Ok(FileInfo {
        path: s.owned(f.path, "FileInfo.path")?,
        new_path: s.opt(f.new_path, "FileInfo.new_path")?,
        flags: f.flags,
        mode: f.mode,
        mode_octal,
        result: f.result,
        resolved: f.resolved,
        ino: f.ino,
        dev: f.dev,
        truncated: f.truncated,
        path_changed: f.path_changed,
        path_unverified: f.path_unverified,
    })
}

/// Number of octal digits in `mode & 0o7777` (the length of `peregrine_event::mode_octal`).
fn octal_len(mode: u32) -> u64 {
    let m = mode & 0o7777;
    let bits = 32 - m.leading_zeros();
    u64::from(bits.div_ceil(3).max(1))
}

pub(super) fn cost(f: &pb::FileInfo, t: &CostTables<'_>) -> Result<u64, Inconsistency> {
    let s = t.strings;
    let mut c = s.len(f.path, "FileInfo.path")? + s.opt_len(f.new_path, "FileInfo.new_path")?;
    c += match pb::ModeText::try_from(f.mode_text) {
        Ok(pb::ModeText::Octal) => octal_len(f.mode),
        Ok(pb::ModeText::Explicit) => s.len(f.mode_octal_text, "FileInfo.mode_octal_text")?,
        _ => 0,
    };
    Ok(c)
}

pub(super) fn strings<'a>(file: &'a FileInfo, f: &mut impl FnMut(&'a str)) {
    f(&file.path);
    f(&file.mode_octal);
    if let Some(n) = &file.new_path {
        f(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_len_matches_mode_octal() {
        for mode in [0, 1, 7, 8, 0o644, 0o755, 0o4755, 0o7777, 0o17777, u32::MAX] {
            assert_eq!(
                octal_len(mode),
                peregrine_event::mode_octal(mode).len() as u64,
                "{mode:o}"
            );
        }
    }
}
