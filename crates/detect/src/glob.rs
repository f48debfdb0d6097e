//! Path-style globs, compiled once when a rule loads.
//!
//! Syntax (only the rule author's pattern is parsed; event strings are only ever matched):
//! - `*` matches any run of characters except `/` (within one path segment);
//! - `**` matches anything, `/` included; written as a whole segment (`/a/**/b`, `**/b`) it
//!   matches zero or more whole segments, so `/a/**/b` matches `/a/b` and `/a/x/y/b`;
//! - `?` matches one character except `/`;
//! - `\` makes the next character literal.
//!
//! `[`, `]`, `{` and `}` are rejected rather than taken literally: a rule author who writes
//! `/etc/cron.{daily,weekly}/*` expects alternation and would otherwise get a rule that never
//! fires. List several patterns instead.
//!
//! Most patterns in practice are a literal, a literal prefix or a literal suffix; those compile
//! to plain comparisons. The rest run a position-set simulation (a bitset over the subject's
//! byte offsets, one pass per token) that takes O(tokens × length) time whatever the input,
//! so an attacker-chosen path cannot make matching slow, and allocates nothing for subjects up
//! to 8 KiB.

use std::fmt;

/// A compiled glob.
#[derive(Clone, Debug)]
pub(crate) struct Glob {
    pub(crate) shape: Shape,
}

/// What a glob reduces to. Literals are stored ASCII-lowercased when the glob ignores case.
#[derive(Clone, Debug)]
pub(crate) enum Shape {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// `**/name`: exactly `name`, or ending in `/name`.
    ExactOrSuffix {
        exact: Box<str>,
        suffix: Box<str>,
    },
    Contains(Box<str>),
    /// `**/lit/**`: `lit` at the start or right after a `/`; `with_slash` is `/` + `lit`.
    SegmentContains {
        lit: Box<str>,
        with_slash: Box<str>,
    },
    General(General),
}

#[derive(Clone, Debug)]
pub(crate) struct General {
    /// Literal text every match starts / ends with: a cheap filter before the simulation.
    prefix: Box<[u8]>,
    suffix: Box<[u8]>,
    required: Box<str>,
    tokens: Box<[Tok]>,
    fold: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(Box<[u8]>),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` inside a segment or at the end
    Any,
    /// `**/` as a whole segment: empty, or anything ending in `/`
    Dirs,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GlobError(pub(crate) String);

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Glob {
    pub(crate) fn new(pattern: &str, ignore_case: bool) -> Result<Glob, GlobError> {
        let tokens = tokenize(pattern, ignore_case)?;
        Ok(Glob {
            shape: classify(tokens, ignore_case),
        })
    }
}

fn tokenize(pattern: &str, fold: bool) -> Result<Vec<Tok>, GlobError> {
    if pattern.is_empty() {
        return Err(GlobError("empty glob".into()));
    }
    let mut toks: Vec<Tok> = Vec::new();
    let mut lit: Vec<u8> = Vec::new();
    let flush = |lit: &mut Vec<u8>, toks: &mut Vec<Tok>| {
        if !lit.is_empty() {
            toks.push(Tok::Lit(std::mem::take(lit).into_boxed_slice()));
        }
    };
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err(GlobError(format!(
                        "glob {pattern:?} ends with a lone backslash"
                    )));
                };
                push_char(&mut lit, next, fold);
                i += 2;
                continue;
            }
            '*' => {
                let mut n = 1;
                while chars.get(i + n) == Some(&'*') {
                    n += 1;
                }
                if n > 2 {
                    return Err(GlobError(format!(
                        "glob {pattern:?} has {n} stars in a row; use * or **"
                    )));
                }
                if n == 1 {
                    flush(&mut lit, &mut toks);
                    toks.push(Tok::Star);
                    i += 1;
                    continue;
                }
                let seg_start = i == 0 || chars.get(i - 1) == Some(&'/');
                let seg_end_slash = chars.get(i + 2) == Some(&'/');
                flush(&mut lit, &mut toks);
                if seg_start && seg_end_slash {
                    toks.push(Tok::Dirs);
                    i += 3;
                } else {
                    toks.push(Tok::Any);
                    i += 2;
                }
                continue;
            }
            '?' => {
                flush(&mut lit, &mut toks);
                toks.push(Tok::One);
            }
            '[' | ']' | '{' | '}' => {
                return Err(GlobError(format!(
                    "glob {pattern:?}: {c:?} is not supported (no classes or alternation); list several patterns, or escape it as \\{c}"
                )));
            }
            _ => push_char(&mut lit, c, fold),
        }
        i += 1;
    }
    flush(&mut lit, &mut toks);
    // `**` next to `*` or `**` adds nothing; collapse so the shapes below are recognised.
    let mut out: Vec<Tok> = Vec::with_capacity(toks.len());
    for t in toks {
        match (out.last(), &t) {
            (Some(Tok::Any), Tok::Any | Tok::Star | Tok::Dirs) => continue,
            (Some(Tok::Star | Tok::Dirs), Tok::Any) => {
                out.pop();
            }
            _ => {}
        }
        out.push(t);
    }
    Ok(out)
}

fn push_char(lit: &mut Vec<u8>, c: char, fold: bool) {
    let c = if fold { c.to_ascii_lowercase() } else { c };
    let mut buf = [0u8; 4];
    lit.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

fn to_str(b: &[u8]) -> Box<str> {
    // Literals are built from `char`s, so this is always valid UTF-8.
    String::from_utf8_lossy(b).into()
}

fn classify(tokens: Vec<Tok>, fold: bool) -> Shape {
    match tokens.as_slice() {
        [Tok::Lit(a)] => return Shape::Exact(to_str(a)),
        [Tok::Lit(a), Tok::Any] => return Shape::Prefix(to_str(a)),
        [Tok::Any] => return Shape::Prefix("".into()),
        [Tok::Any, Tok::Lit(a)] => return Shape::Suffix(to_str(a)),
        [Tok::Any, Tok::Lit(a), Tok::Any] => return Shape::Contains(to_str(a)),
        [Tok::Dirs, Tok::Lit(a), Tok::Any] if a.first() != Some(&b'/') => {
            let mut with_slash = Vec::with_capacity(a.len() + 1);
            with_slash.push(b'/');
            with_slash.extend_from_slice(a);
            return Shape::SegmentContains {
                lit: to_str(a),
                with_slash: to_str(&with_slash),
            };
        }
        [Tok::Dirs, Tok::Lit(a)] if a.first() != Some(&b'/') => {
            let mut suffix = Vec::with_capacity(a.len() + 1);
            suffix.push(b'/');
            suffix.extend_from_slice(a);
            return Shape::ExactOrSuffix {
                exact: to_str(a),
                suffix: to_str(&suffix),
            };
        }
        _ => {}
    }
    let prefix = match tokens.first() {
        Some(Tok::Lit(a)) => a.clone(),
        _ => Box::default(),
    };
    let suffix = match tokens.last() {
        Some(Tok::Lit(a)) if tokens.len() > 1 => a.clone(),
        _ => Box::default(),
    };
    // The longest literal must occur somewhere: a substring search rejects most subjects
    // before the simulation when the pattern has neither a literal prefix nor suffix.
    let required = tokens
        .iter()
        .filter_map(|t| match t {
            Tok::Lit(a) => Some(a.clone()),
            _ => None,
        })
        .max_by_key(|a| a.len())
        .map(|a| to_str(&a))
        .unwrap_or_default();
    Shape::General(General {
        prefix,
        suffix,
        required,
        tokens: tokens.into_boxed_slice(),
        fold,
    })
}

/// Subjects up to `64 * STACK_WORDS - 1` bytes are matched with bitsets on the stack.
const STACK_WORDS: usize = 130;

pub(crate) fn eq_fold(a: &[u8], b: &[u8], fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// `s` starts with `p`; `p` is already lowercased when folding.
pub(crate) fn starts_with(s: &[u8], p: &[u8], fold: bool) -> bool {
    s.get(..p.len()).is_some_and(|head| eq_fold(head, p, fold))
}

pub(crate) fn ends_with(s: &[u8], p: &[u8], fold: bool) -> bool {
    s.len() >= p.len()
        && s.get(s.len() - p.len()..)
            .is_some_and(|tail| eq_fold(tail, p, fold))
}

/// `s` contains `p`; `p` is already lowercased when folding.
pub(crate) fn contains(s: &str, p: &str, fold: bool) -> bool {
    if !fold {
        // The standard library's substring search (Two-Way, with a SIMD prefilter).
        return s.contains(p);
    }
    let (s, p) = (s.as_bytes(), p.as_bytes());
    let Some(&first) = p.first() else { return true };
    let upper = first.to_ascii_uppercase();
    // Only positions whose byte matches the needle's first byte (either case) are compared.
    s.windows(p.len())
        .any(|w| w.first().is_some_and(|&c| c == first || c == upper) && w.eq_ignore_ascii_case(p))
}

impl Shape {
    pub(crate) fn is_match(&self, s: &str, fold: bool) -> bool {
        let b = s.as_bytes();
        match self {
            Shape::Exact(e) => eq_fold(b, e.as_bytes(), fold),
            Shape::Prefix(p) => starts_with(b, p.as_bytes(), fold),
            Shape::Suffix(p) => ends_with(b, p.as_bytes(), fold),
            Shape::ExactOrSuffix { exact, suffix } => {
                ends_with(b, suffix.as_bytes(), fold) || eq_fold(b, exact.as_bytes(), fold)
            }
            Shape::Contains(p) => contains(s, p, fold),
            Shape::SegmentContains { lit, with_slash } => {
                starts_with(b, lit.as_bytes(), fold) || contains(s, with_slash, fold)
            }
            Shape::General(g) => g.is_match(s),
        }
    }
}

struct Bits<'a>(&'a mut [u64]);

impl Bits<'_> {
    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }
    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
    fn clear(&mut self) {
        self.0.fill(0);
    }
    /// The lowest set position.
    fn first(&self) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }
    /// Set positions in increasing order, up to and including `n`.
    fn ones(&self, n: usize) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(move |(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + b)
            })
            .take_while(move |&i| i <= n)
        })
    }
}

/// Length in bytes of the UTF-8 character starting with `lead`.
fn char_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn is_boundary(s: &[u8], i: usize) -> bool {
    // Not a UTF-8 continuation byte (10xxxxxx).
    s.get(i).is_none_or(|b| b & 0xc0 != 0x80)
}

impl General {
    fn is_match(&self, subject: &str) -> bool {
        let s = subject.as_bytes();
        if s.len() < self.prefix.len() + self.suffix.len()
            || !starts_with(s, &self.prefix, self.fold)
            || !ends_with(s, &self.suffix, self.fold)
            || (self.prefix.is_empty()
                && self.suffix.is_empty()
                && !contains(subject, &self.required, self.fold))
        {
            return false;
        }
        let words = (s.len() + 1).div_ceil(64);
        if words <= STACK_WORDS {
            let mut a = [0u64; STACK_WORDS];
            let mut b = [0u64; STACK_WORDS];
            self.simulate(s, &mut a[..words], &mut b[..words])
        } else {
            // Longer than any path the agent captures; argv elements can be. Rare, and still linear.
            let mut a = vec![0u64; words];
            let mut b = vec![0u64; words];
            self.simulate(s, &mut a, &mut b)
        }
    }

    /// `cur` holds the offsets reachable before a token, `next` those after it.
    fn simulate(&self, s: &[u8], cur: &mut [u64], next: &mut [u64]) -> bool {
        let n = s.len();
        let (mut cur, mut next) = (Bits(cur), Bits(next));
        cur.set(0);
        for tok in self.tokens.iter() {
            next.clear();
            match tok {
                Tok::Lit(l) => {
                    for p in cur.ones(n) {
                        if s.get(p..)
                            .is_some_and(|rest| starts_with(rest, l, self.fold))
                        {
                            next.set(p + l.len());
                        }
                    }
                }
                Tok::One => {
                    for p in cur.ones(n) {
                        if let Some(&c) = s.get(p)
                            && c != b'/'
                            && is_boundary(s, p)
                        {
                            next.set(p + char_len(c));
                        }
                    }
                }
                Tok::Star => {
                    let mut active = false;
                    for q in 0..=n {
                        active |= cur.get(q);
                        if active {
                            next.set(q);
                        }
                        if s.get(q) == Some(&b'/') {
                            active = false;
                        }
                    }
                }
                Tok::Any => {
                    if let Some(p) = cur.first() {
                        for q in p..=n {
                            next.set(q);
                        }
                    }
                }
                Tok::Dirs => {
                    if let Some(p) = cur.first() {
                        for q in cur.ones(n) {
                            next.set(q);
                        }
                        for q in p + 1..=n {
                            if s.get(q - 1) == Some(&b'/') {
                                next.set(q);
                            }
                        }
                    }
                }
            }
            std::mem::swap(&mut cur, &mut next);
            if cur.first().is_none() {
                return false;
            }
        }
        cur.get(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p, false).unwrap().shape.is_match(s, false)
    }

    #[test]
    fn shapes_take_fast_paths() {
        assert!(matches!(
            Glob::new("/etc/passwd", false).unwrap().shape,
            Shape::Exact(_)
        ));
        assert!(matches!(
            Glob::new("/etc/cron.d/**", false).unwrap().shape,
            Shape::Prefix(_)
        ));
        assert!(matches!(
            Glob::new("**.sock", false).unwrap().shape,
            Shape::Suffix(_)
        ));
        assert!(matches!(
            Glob::new("**/.ssh/authorized_keys", false).unwrap().shape,
            Shape::ExactOrSuffix { .. }
        ));
        assert!(matches!(
            Glob::new("**stratum**", false).unwrap().shape,
            Shape::Contains(_)
        ));
        assert!(matches!(
            Glob::new("/etc/cron.*/**", false).unwrap().shape,
            Shape::General(_)
        ));
        assert!(matches!(
            Glob::new("**/.config/systemd/**", false).unwrap().shape,
            Shape::SegmentContains { .. }
        ));
    }

    #[test]
    fn star_stays_within_a_segment() {
        assert!(m("/etc/cron.*/**", "/etc/cron.daily/logrotate"));
        assert!(m("/etc/cron.*/**", "/etc/cron.d/x/y"));
        assert!(!m("/etc/cron.*/**", "/etc/crontab"));
        assert!(!m("/etc/cron.*/**", "/etc/cron.d")); // the directory itself
        assert!(!m("/home/*/.bashrc", "/home/a/b/.bashrc"));
        assert!(m("/home/*/.bashrc", "/home/alice/.bashrc"));
        assert!(m("/proc/*/exe", "/proc/self/exe"));
        assert!(!m("/proc/*/exe", "/proc/1/task/1/exe"));
    }

    #[test]
    fn double_star_segments() {
        for s in ["/a/b", "/a/x/b", "/a/x/y/b"] {
            assert!(m("/a/**/b", s), "{s}");
        }
        assert!(!m("/a/**/b", "/a/xb"));
        assert!(!m("/a/**/b", "/ab"));
        for s in [
            ".ssh/authorized_keys",
            "/root/.ssh/authorized_keys",
            "/home/u/.ssh/authorized_keys",
        ] {
            assert!(m("**/.ssh/authorized_keys", s), "{s}");
        }
        assert!(!m("**/.ssh/authorized_keys", "/root/x.ssh/authorized_keys"));
        assert!(!m(
            "**/.ssh/authorized_keys",
            "/root/.ssh/authorized_keys.bak"
        ));
        assert!(m("**/.*_history", "/root/.bash_history"));
        assert!(m("**/.*_history", "/var/lib/postgresql/.psql_history"));
        assert!(!m("**/.*_history", "/root/bash_history"));
        assert!(!m("**/.*_history", "/root/.x/y_history"));
        assert!(m("/var/**/*.log", "/var/log/app/x.log"));
        assert!(m("/var/**/*.log", "/var/x.log"));
        assert!(m(
            "**/.config/systemd/user/**",
            "/home/u/.config/systemd/user/x.service"
        ));
        assert!(m("**/.config/systemd/user/**", ".config/systemd/user/x"));
        assert!(!m(
            "**/.config/systemd/user/**",
            "/home/u/x.config/systemd/user/x"
        ));
        assert!(!m(
            "**/.config/systemd/user/**",
            "/home/u/.config/systemd/user"
        ));
        assert!(m("**/a*b/**", "/x/aQb/y"));
        assert!(!m("**/a*b/**", "/x/a/b/y"));
        assert!(!m("/var/**/*.log", "/var/log/app/x.log.1"));
    }

    #[test]
    fn question_mark_and_escapes() {
        assert!(m("/dev/tty?", "/dev/tty1"));
        assert!(!m("/dev/tty?", "/dev/tty"));
        assert!(!m("/a?b", "/a/b"));
        assert!(m("/a?b", "/aéb"));
        assert!(m(r"/x/\*", "/x/*"));
        assert!(!m(r"/x/\*", "/x/y"));
        assert!(m(r"/x/\[1\]", "/x/[1]"));
    }

    #[test]
    fn unsupported_syntax_is_rejected() {
        assert!(Glob::new("/etc/cron.{daily,weekly}/*", false).is_err());
        assert!(Glob::new("/dev/tty[0-9]", false).is_err());
        assert!(Glob::new("/a/***", false).is_err());
        assert!(Glob::new("", false).is_err());
        assert!(Glob::new("/a\\", false).is_err());
    }

    #[test]
    fn case_folding_applies_to_literals() {
        let g = Glob::new("/TMP/*.SH", true).unwrap();
        assert!(g.shape.is_match("/tmp/X.sh", true));
        assert!(
            !Glob::new("/TMP/*.SH", false)
                .unwrap()
                .shape
                .is_match("/tmp/X.sh", false)
        );
    }

    #[test]
    fn adversarial_subjects_stay_linear_and_correct() {
        // Many stars against a long near-miss: exponential for a backtracking matcher.
        let p = "/**a**a**a**a**a**a**a**a**b";
        let s = format!("/{}", "a".repeat(4000));
        let t = std::time::Instant::now();
        assert!(!m(p, &s));
        assert!(m(p, &format!("{s}b")));
        assert!(t.elapsed().as_secs() < 2);
        // Longer than the stack bitset.
        let long = format!("/x/{}/y", "z".repeat(64 * STACK_WORDS + 10));
        assert!(m("/x/*/y", &long));
        assert!(!m("/x/*/q", &long));
    }
}
