//! String matching for `eq`, `in`, `prefix`, `suffix`, `contains`, `glob` and `regex`, grouped
//! so a predicate with many patterns costs one hash lookup plus a few comparisons (and one pass
//! of one automaton for all its regular expressions).

use std::fmt;

use regex::bytes::{Regex, RegexSet, RegexSetBuilder};

use crate::glob::{self, Glob, GlobError, Shape};
use crate::strset::StrSet;

/// Why a pattern does not compile.
#[derive(Debug)]
pub(crate) struct PatternError(String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<GlobError> for PatternError {
    fn from(e: GlobError) -> Self {
        PatternError(e.to_string())
    }
}

/// The most memory one predicate's compiled regular expressions may take. A rule file is
/// trusted input, but a pattern such as `\w{1000}` compiles to a large automaton; past this
/// the rule is refused with a load error rather than growing the detector's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A predicate's regular expressions: one set to test them all in one pass, and each one alone
/// to say which matched and to capture a context value.
#[derive(Clone, Debug)]
struct Regexes {
    set: RegexSet,
    each: Vec<Regex>,
}

/// One pattern as the rule wrote it, kept to say which one matched (evidence).
#[derive(Clone, Debug)]
struct Source {
    text: Box<str>,
    shape: Shape,
}

/// Matches a string against any of several patterns.
#[derive(Clone, Debug)]
pub(crate) struct StrMatcher {
    fold: bool,
    exact: StrSet,
    prefixes: AffixIndex,
    suffixes: AffixIndex,
    contains: Vec<Box<str>>,
    general: Vec<Shape>,
    regex: Option<Box<Regexes>>,
    /// Non-exact patterns in rule order, for [`StrMatcher::explain`].
    sources: Vec<Source>,
}

/// Literal prefixes or suffixes, bucketed by their first (prefixes) or last (suffixes) two
/// bytes. Paths all start with `/`, so one byte would not split them; two bytes (`/e`, `/v`,
/// `og`) do, and a subject only compares against its own bucket.
#[derive(Clone, Debug, Default)]
struct AffixIndex {
    suffix: bool,
    buckets: Vec<(u16, Vec<Box<str>>)>,
    /// Affixes shorter than two bytes, compared against every subject.
    short: Vec<Box<str>>,
}

impl AffixIndex {
    fn new(suffix: bool) -> Self {
        AffixIndex {
            suffix,
            buckets: Vec::new(),
            short: Vec::new(),
        }
    }

    fn key(&self, b: &[u8], fold: bool) -> Option<u16> {
        let pair = if self.suffix {
            b.last_chunk::<2>()
        } else {
            b.first_chunk::<2>()
        }?;
        let pair = if fold {
            pair.map(|c| c.to_ascii_lowercase())
        } else {
            *pair
        };
        Some(u16::from_le_bytes(pair))
    }

    fn push(&mut self, p: Box<str>, fold: bool) {
        match self.key(p.as_bytes(), fold) {
            None => self.short.push(p),
            Some(k) => match self.buckets.iter_mut().find(|(b, _)| *b == k) {
                Some((_, v)) => v.push(p),
                None => self.buckets.push((k, vec![p])),
            },
        }
    }

    fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.short.is_empty()
    }

    #[inline]
    fn is_match(&self, s: &[u8], fold: bool) -> bool {
        let test = |p: &str| {
            if self.suffix {
                glob::ends_with(s, p.as_bytes(), fold)
            } else {
                glob::starts_with(s, p.as_bytes(), fold)
            }
        };
        if self.short.iter().map(|p| &**p).any(test) {
            return true;
        }
        let Some(k) = self.key(s, fold) else {
            return false;
        };
        self.buckets
            .iter()
            .find(|(b, _)| *b == k)
            .is_some_and(|(_, v)| v.iter().map(|p| &**p).any(test))
    }
}

/// How the patterns of a predicate are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatternKind {
    Exact,
    Prefix,
    Suffix,
    Contains,
    Glob,
    /// Regular expressions (the `regex` crate's syntax, bytes and ASCII classes: `\s`, `\w`
    /// and `\b` are ASCII), matched anywhere in the subject unless anchored.
    Regex,
}

impl StrMatcher {
    pub(crate) fn new(
        kind: PatternKind,
        patterns: &[String],
        fold: bool,
    ) -> Result<StrMatcher, PatternError> {
        let fold_str = |s: &str| -> Box<str> {
            if fold {
                s.to_ascii_lowercase().into()
            } else {
                s.into()
            }
        };
        let mut exact = Vec::new();
        let mut m = StrMatcher {
            fold,
            exact: StrSet::new(Vec::new(), fold),
            prefixes: AffixIndex::new(false),
            suffixes: AffixIndex::new(true),
            contains: Vec::new(),
            general: Vec::new(),
            regex: None,
            sources: Vec::new(),
        };
        if kind == PatternKind::Regex {
            m.regex = Some(Box::new(compile_regexes(patterns, fold)?));
            m.exact = StrSet::new(Vec::new(), fold);
            return Ok(m);
        }
        for p in patterns {
            let shape = match kind {
                PatternKind::Exact => {
                    exact.push(p.clone());
                    continue;
                }
                PatternKind::Prefix => Shape::Prefix(fold_str(p)),
                PatternKind::Suffix => Shape::Suffix(fold_str(p)),
                PatternKind::Contains => Shape::Contains(fold_str(p)),
                PatternKind::Glob => Glob::new(p, fold)?.shape,
                PatternKind::Regex => continue,
            };
            match &shape {
                Shape::Exact(e) => exact.push(e.to_string()),
                Shape::Prefix(x) => m.prefixes.push(x.clone(), fold),
                Shape::Suffix(x) => m.suffixes.push(x.clone(), fold),
                Shape::ExactOrSuffix { exact: e, suffix } => {
                    exact.push(e.to_string());
                    m.suffixes.push(suffix.clone(), fold);
                }
                Shape::Contains(x) => m.contains.push(x.clone()),
                Shape::SegmentContains { .. } | Shape::General(_) => m.general.push(shape.clone()),
            }
            m.sources.push(Source {
                text: p.as_str().into(),
                shape,
            });
        }
        m.exact = StrSet::new(exact, fold);
        Ok(m)
    }

    #[inline]
    pub(crate) fn is_match(&self, s: &str) -> bool {
        let b = s.as_bytes();
        let fold = self.fold;
        (!self.prefixes.is_empty() && self.prefixes.is_match(b, fold))
            || (!self.suffixes.is_empty() && self.suffixes.is_match(b, fold))
            || self.exact.contains(s)
            || self.contains.iter().any(|p| glob::contains(s, p, fold))
            || self.general.iter().any(|g| g.is_match(s, fold))
            || self.regex.as_ref().is_some_and(|r| r.set.is_match(b))
    }

    /// The value a context entry takes from `s`, which this matcher matched: the text the
    /// first matching regular expression captured in its group named `value`, else `s` itself.
    pub(crate) fn extract(&self, s: &str) -> String {
        let captured = self.regex.as_ref().and_then(|r| {
            let i = r.set.matches(s.as_bytes()).iter().next()?;
            let caps = r.each.get(i)?.captures(s.as_bytes())?;
            let v = caps.name("value")?;
            Some(String::from_utf8_lossy(v.as_bytes()).into_owned())
        });
        captured.unwrap_or_else(|| s.to_owned())
    }

    /// Relative cost of a test, for ordering predicates: exact sets and affixes are cheap,
    /// substring searches and general globs scan the subject.
    pub(crate) fn cost(&self) -> u32 {
        if self.regex.is_some() {
            10
        } else if !self.contains.is_empty() || !self.general.is_empty() {
            6
        } else if !self.prefixes.is_empty() || !self.suffixes.is_empty() {
            3
        } else {
            2
        }
    }

    /// The pattern, as written in the rule, that `s` matches. Only called for a rule that fired.
    pub(crate) fn explain(&self, s: &str) -> Option<String> {
        if let Some(r) = &self.regex {
            let i = r.set.matches(s.as_bytes()).iter().next()?;
            return r.set.patterns().get(i).cloned();
        }
        if let Some(e) = self.exact.find(s) {
            // An `eq`/`in` value is reported as written, except that `**/name` globs land in the
            // exact set as `name`; report the glob for those.
            return Some(
                self.sources
                    .iter()
                    .find(|src| matches!(&src.shape, Shape::ExactOrSuffix { exact, .. } if glob::eq_fold(exact.as_bytes(), e.as_bytes(), self.fold)))
                    .map_or_else(|| e.to_owned(), |src| src.text.to_string()),
            );
        }
        self.sources
            .iter()
            .find(|src| src.shape.is_match(s, self.fold))
            .map(|src| src.text.to_string())
    }
}

/// Compiles a predicate's regular expressions. They match bytes with ASCII classes (`\s`, `\w`,
/// `\d`, `\b`), which keeps every pattern on the regex crate's fast automata: command lines and
/// paths are what rules match, and a Unicode word boundary would not change what they mean.
/// Matching takes time linear in the subject whatever it holds (no backtracking).
fn compile_regexes(patterns: &[String], fold: bool) -> Result<Regexes, PatternError> {
    let build = |ps: &[String]| {
        RegexSetBuilder::new(ps)
            .unicode(false)
            .case_insensitive(fold)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    let mut each = Vec::with_capacity(patterns.len());
    for p in patterns {
        let one = regex::bytes::RegexBuilder::new(p)
            .unicode(false)
            .case_insensitive(fold)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| PatternError(format!("regex {p:?}: {e}")))?;
        each.push(one);
    }
    let set = build(patterns).map_err(|e| PatternError(format!("regex: {e}")))?;
    Ok(Regexes { set, each })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn groups_answer_like_each_pattern_alone() {
        let pats = strings(&[
            "/etc/passwd",
            "/etc/cron.d/**",
            "**/.ssh/authorized_keys",
            "/etc/cron.*/**",
            "**.sock",
            "**/tmp/**",
            "/home/*/.bashrc",
        ]);
        let m = StrMatcher::new(PatternKind::Glob, &pats, false).unwrap();
        let cases = [
            ("/etc/passwd", Some("/etc/passwd")),
            ("/etc/passwd-", None),
            ("/etc/cron.d/job", Some("/etc/cron.d/**")),
            ("/etc/cron.daily/job", Some("/etc/cron.*/**")),
            (
                "/root/.ssh/authorized_keys",
                Some("**/.ssh/authorized_keys"),
            ),
            (".ssh/authorized_keys", Some("**/.ssh/authorized_keys")),
            ("/run/docker.sock", Some("**.sock")),
            ("/var/tmp/x", Some("**/tmp/**")),
            ("/home/bob/.bashrc", Some("/home/*/.bashrc")),
            ("/home/bob/x/.bashrc", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(m.is_match(s), want.is_some(), "{s}");
            assert_eq!(m.explain(s).as_deref(), want, "{s}");
        }
    }

    #[test]
    fn prefixes_by_first_byte_and_case() {
        let m = StrMatcher::new(
            PatternKind::Prefix,
            &strings(&["/proc/self/fd/", "Stratum+"]),
            true,
        )
        .unwrap();
        assert!(m.is_match("/PROC/self/fd/3"));
        assert!(m.is_match("stratum+tcp://x"));
        assert!(!m.is_match("/proc/self/f"));
        assert!(!m.is_match(""));
        let all = StrMatcher::new(PatternKind::Prefix, &strings(&[""]), false).unwrap();
        assert!(all.is_match(""));
    }

    #[test]
    fn regexes_match_anywhere_explain_and_capture() {
        let m = StrMatcher::new(
            PatternKind::Regex,
            &strings(&[
                r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba)?sh\b",
                r"systemctl\s+stop\s+(?P<value>[\w.@-]+)",
            ]),
            true,
        )
        .unwrap();
        assert!(m.is_match("sh -c curl -fsSL http://x/i.sh | sh"));
        assert!(m.is_match("CURL http://x |BASH"));
        assert!(!m.is_match("curl http://x | sha256sum"));
        assert!(!m.is_match("curl -o /tmp/x http://x"));
        assert_eq!(
            m.explain("wget -qO- x | sudo bash").as_deref(),
            Some(r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba)?sh\b")
        );
        assert_eq!(m.extract("bash -c systemctl stop firewalld"), "firewalld");
        // No `value` group: the whole subject.
        assert_eq!(m.extract("curl x | sh"), "curl x | sh");
        // Bytes, not characters: a subject with any UTF-8 still matches in linear time.
        assert!(m.is_match("échо; curl x|sh"));
    }

    #[test]
    fn bad_and_huge_regexes_are_load_errors() {
        for bad in [r"(", r"\w{100000}"] {
            let e = StrMatcher::new(PatternKind::Regex, &strings(&[bad]), false).unwrap_err();
            assert!(e.to_string().contains("regex"), "{e}");
        }
    }

    #[test]
    fn exact_in_sets() {
        let names: Vec<String> = (0..100).map(|i| format!("tool{i}")).collect();
        let m = StrMatcher::new(PatternKind::Exact, &names, false).unwrap();
        assert!(m.is_match("tool42"));
        assert!(!m.is_match("tool420"));
        assert_eq!(m.explain("tool7").as_deref(), Some("tool7"));
    }
}
