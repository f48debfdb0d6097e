//! The agent's recent start times, kept in its state directory (`run`: the spool directory), so
//! that the agent itself sees a restart loop: killed again and again (an attacker blinding the
//! node a few seconds at a time), or crashing.
//!
//! The file `starts` holds one Unix time in seconds per line, oldest first, at most
//! [`MAX_STARTS`] lines. It is read with a size cap, written crash-safely (a temporary file,
//! fsync, rename) with mode 0600, and never trusted: a line that is not a number, a time in the
//! future (a clock stepped back) or a file over the cap is dropped with a warning, never an
//! error. A directory that cannot be written leaves this start in memory only; the agent runs
//! on either way.

use std::{
    fs::{self, DirBuilder, OpenOptions},
    io::{Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The file's name in the state directory.
pub const FILE: &str = "starts";
/// Starts remembered; a restart-loop threshold above it is lowered to it.
pub const MAX_STARTS: usize = 32;
/// A longer file is not one this agent wrote (32 lines of at most 21 bytes).
const MAX_FILE_BYTES: u64 = 4096;
/// A start this far in the future is not believed (the clock stepped back since).
const FUTURE_SLACK: Duration = Duration::from_secs(60);

/// Recent starts, this one included, oldest first (Unix seconds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartHistory {
    starts: Vec<u64>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl StartHistory {
    /// Reads the history in `dir`, adds a start at `now` and writes it back. Never fails (see
    /// the module documentation).
    pub fn record(dir: &Path, now: SystemTime) -> StartHistory {
        let path = dir.join(FILE);
        let mut starts = match read(&path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "start history unreadable; starting a new one");
                Vec::new()
            }
        };
        let now_s = secs(now);
        let before = starts.len();
        starts.retain(|&t| t <= now_s.saturating_add(FUTURE_SLACK.as_secs()));
        if starts.len() < before {
            tracing::warn!(
                dropped = before - starts.len(),
                "start history had times in the future (the clock stepped back); dropped"
            );
        }
        starts.sort_unstable();
        starts.push(now_s);
        let excess = starts.len().saturating_sub(MAX_STARTS);
        starts.drain(..excess);
        if let Err(e) = write(dir, &path, &starts) {
            tracing::warn!(path = %path.display(), error = %e, "cannot persist the start history; restart loops are not tracked across this start");
        }
        StartHistory { starts }
    }

    /// Starts at most `window` before `now` (this run's start included).
    pub fn within(&self, window: Duration, now: SystemTime) -> usize {
        let now_s = secs(now);
        let since = now_s.saturating_sub(window.as_secs());
        self.starts
            .iter()
            .filter(|&&t| t >= since && t <= now_s.saturating_add(FUTURE_SLACK.as_secs()))
            .count()
    }

    pub fn starts(&self) -> &[u64] {
        &self.starts
    }
}

/// The stored starts; a missing file is an empty history. Lines that are not numbers are
/// dropped (and said).
fn read(path: &Path) -> std::io::Result<Vec<u64>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("over {MAX_FILE_BYTES} bytes"),
        ));
    }
    let mut bad = 0usize;
    let starts: Vec<u64> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let t = l.trim().parse::<u64>().ok();
            bad += usize::from(t.is_none());
            t
        })
        .collect();
    if bad > 0 {
        tracing::warn!(
            lines = bad,
            "start history has corrupt lines; they are ignored"
        );
    }
    Ok(starts)
}

/// Writes `starts` to `path` crash-safely, 0600; creates `dir` 0700 if it is missing.
fn write(dir: &Path, path: &Path, starts: &[u64]) -> std::io::Result<()> {
    if !dir.is_dir() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut body = String::new();
    for t in starts {
        body.push_str(&t.to_string());
        body.push('\n');
    }
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(body.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    const MIN10: Duration = Duration::from_secs(600);

    #[test]
    fn starts_accumulate_and_count_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let h = StartHistory::record(&state, at(1_000));
        assert_eq!(h.starts(), [1_000]);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(FILE)), 0o600);
        StartHistory::record(&state, at(1_100));
        let h = StartHistory::record(&state, at(1_200));
        assert_eq!(h.within(MIN10, at(1_200)), 3);
        // Ten minutes later only the last start is in the window; an hour later none.
        assert_eq!(h.within(MIN10, at(1_800)), 1);
        assert_eq!(h.within(MIN10, at(4_800)), 0);
        assert!(!state.join("starts.tmp").exists());
    }

    #[test]
    fn the_history_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..100 {
            StartHistory::record(dir.path(), at(1_000 + i));
        }
        let h = StartHistory::record(dir.path(), at(2_000));
        assert_eq!(h.starts().len(), MAX_STARTS);
        assert_eq!(h.starts().last(), Some(&2_000));
        let text = fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), MAX_STARTS);
    }

    #[test]
    fn a_corrupt_file_is_survived() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE);
        // Garbage lines among good ones: the good ones stay.
        fs::write(&file, "900\nnot a time\n\u{0}\u{1}\n-5\n950\n").unwrap();
        let h = StartHistory::record(dir.path(), at(1_000));
        assert_eq!(h.starts(), [900, 950, 1_000]);
        // A file far over the cap is not read at all.
        fs::write(&file, "1\n".repeat(10_000)).unwrap();
        let h = StartHistory::record(dir.path(), at(1_000));
        assert_eq!(h.starts(), [1_000]);
        // Binary junk that is not UTF-8.
        fs::write(&file, [0xff, 0xfe, 0x00, 0x80]).unwrap();
        assert_eq!(
            StartHistory::record(dir.path(), at(1_001)).starts(),
            [1_001]
        );
        // Times in the future (the clock stepped back) are dropped.
        fs::write(&file, "5000\n990\n").unwrap();
        assert_eq!(
            StartHistory::record(dir.path(), at(1_000)).starts(),
            [990, 1_000]
        );
        // A directory where the file should be: this start is still counted.
        fs::remove_file(&file).unwrap();
        fs::create_dir(&file).unwrap();
        let h = StartHistory::record(dir.path(), at(1_000));
        assert_eq!(h.within(MIN10, at(1_000)), 1);
    }

    #[test]
    fn a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("starts.tmp")).unwrap();
        StartHistory::record(dir.path(), at(1_000));
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    }
}
