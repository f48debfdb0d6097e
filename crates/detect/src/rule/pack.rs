//! A rule file's pack version and each rule's maturity.

use std::fmt;

use serde_yaml_ng::Value as Yaml;

use crate::rule::schema::describe;

/// The rule-pack major version this build reads. A pack's major changes only when the rule
/// language changes incompatibly; a newer major needs a newer Peregrine.
pub const RULE_PACK_MAJOR: u64 = 1;

/// How far a rule has been proven, as in Falco: what the catalog loads is chosen by maturity
/// ([`Catalog::with_maturities`](crate::Catalog::with_maturities)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Maturity {
    /// Production rules: low false-positive rate, known exceptions, tested against real
    /// workloads. The only maturity the catalog loads by default.
    Stable,
    /// Useful and tested, but still being tuned: expect noise on some workloads.
    Incubating,
    /// Experimental or narrow: for hunting and evaluation, not for paging anyone.
    Sandbox,
}

impl Maturity {
    pub const ALL: [Maturity; 3] = [Maturity::Stable, Maturity::Incubating, Maturity::Sandbox];

    pub fn name(self) -> &'static str {
        match self {
            Maturity::Stable => "stable",
            Maturity::Incubating => "incubating",
            Maturity::Sandbox => "sandbox",
        }
    }

    pub fn parse(s: &str) -> Option<Maturity> {
        Maturity::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl fmt::Display for Maturity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule's `maturity`, or why it is not one.
pub(super) fn parse_maturity(v: Option<&Yaml>) -> Result<Maturity, String> {
    let known = "give stable, incubating or sandbox (see docs/rules.md#maturity)";
    match v {
        None | Some(Yaml::Null) => Err(format!("`maturity` is missing; {known}")),
        Some(Yaml::String(s)) => {
            Maturity::parse(s).ok_or_else(|| format!("unknown maturity {s:?}; {known}"))
        }
        Some(other) => Err(format!(
            "`maturity` must be a string, got {}; {known}",
            describe(other)
        )),
    }
}

/// A file's `version` (`MAJOR.MINOR.PATCH`), checked against [`RULE_PACK_MAJOR`]; or why it
/// cannot be read.
pub(super) fn parse_pack_version(v: Option<&Yaml>) -> Result<String, String> {
    let example = format!("`version: {RULE_PACK_MAJOR}.0.0`");
    let s = match v {
        None | Some(Yaml::Null) => {
            return Err(format!(
                "`version` is missing; start the file with {example} (the rule-pack version, see docs/rules.md#rule-files)"
            ));
        }
        Some(Yaml::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "`version` must be MAJOR.MINOR.PATCH, such as {example}; got {}",
                describe(other)
            ));
        }
    };
    let parts: Vec<Option<u64>> = s.split('.').map(|p| p.parse().ok()).collect();
    let [Some(major), Some(_), Some(_)] = parts[..] else {
        return Err(format!(
            "`version` {s:?} is not MAJOR.MINOR.PATCH (three numbers), such as {example}"
        ));
    };
    if major != RULE_PACK_MAJOR {
        let why = if major > RULE_PACK_MAJOR {
            "is newer than this Peregrine understands; upgrade Peregrine to load it"
        } else {
            "is unknown"
        };
        return Err(format!(
            "pack version {s:?} {why} (this Peregrine reads rule packs {RULE_PACK_MAJOR}.x.y)"
        ));
    }
    Ok(s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(s: &str) -> Result<String, String> {
        let y: Yaml = serde_yaml_ng::from_str(s).unwrap();
        parse_pack_version(Some(&y))
    }

    #[test]
    fn pack_versions() {
        assert_eq!(version("1.0.0").unwrap(), "1.0.0");
        assert_eq!(version("1.12.3").unwrap(), "1.12.3");
        assert!(version("2.0.0").unwrap_err().contains("upgrade Peregrine"));
        assert!(version("0.9.0").unwrap_err().contains("is unknown"));
        assert!(version("1.0").unwrap_err().contains("MAJOR.MINOR.PATCH"));
        assert!(version("'1.0'").unwrap_err().contains("three numbers"));
        assert!(version("1.x.0").unwrap_err().contains("three numbers"));
        assert!(parse_pack_version(None).unwrap_err().contains("missing"));
    }

    #[test]
    fn maturities() {
        let m = |s: &str| parse_maturity(Some(&serde_yaml_ng::from_str(s).unwrap()));
        assert_eq!(m("stable"), Ok(Maturity::Stable));
        assert_eq!(m("incubating"), Ok(Maturity::Incubating));
        assert_eq!(m("sandbox"), Ok(Maturity::Sandbox));
        assert!(m("beta").unwrap_err().contains("unknown maturity \"beta\""));
        assert!(m("1").unwrap_err().contains("must be a string"));
        assert!(parse_maturity(None).unwrap_err().contains("missing"));
    }
}
