//! The built-in lists, embedded from `data/*.txt` and parsed when first asked for. Each file
//! says its source, date and licence in its header; `scripts/refresh-intel` refreshes them.

use crate::matcher::{BuildError, Category, IntelBuilder, ListInfo, ListKind};
use crate::parse::{Format, ParseError, ParsedList, parse};

/// One embedded list.
#[derive(Clone, Copy, Debug)]
pub struct BuiltinList {
    /// The list's name, `threatListName` in findings (prefixed `Peregrine:`).
    pub name: &'static str,
    pub category: Category,
    /// The file's text (plaintext format, header comments included).
    pub text: &'static str,
}

macro_rules! builtin {
    ($name:literal, $cat:ident, $file:literal) => {
        BuiltinList {
            name: $name,
            category: Category::$cat,
            text: include_str!(concat!("../data/", $file)),
        }
    };
}

/// Every built-in list.
pub const BUILTIN: &[BuiltinList] = &[
    builtin!(
        "Peregrine:GuardDutyTesterC2",
        CommandAndControl,
        "guardduty-tester-c2.txt"
    ),
    builtin!(
        "Peregrine:GuardDutyTesterCrypto",
        CryptoCurrency,
        "guardduty-tester-crypto.txt"
    ),
    builtin!(
        "Peregrine:GuardDutyTesterBlackhole",
        Blackhole,
        "guardduty-tester-blackhole.txt"
    ),
    builtin!(
        "Peregrine:GuardDutyTesterDropPoint",
        DropPoint,
        "guardduty-tester-droppoint.txt"
    ),
    builtin!(
        "Peregrine:GuardDutyTesterPhishing",
        Phishing,
        "guardduty-tester-phishing.txt"
    ),
    builtin!(
        "Peregrine:GuardDutyTesterDriveBy",
        DriveBySource,
        "guardduty-tester-driveby.txt"
    ),
    builtin!(
        "Peregrine:GuardDutyTesterDGA",
        Dga,
        "guardduty-tester-dga.txt"
    ),
    builtin!("Peregrine:MiningPools", CryptoCurrency, "mining-pools.txt"),
    builtin!("Peregrine:MinerSha256", CryptoMiner, "miner-sha256.txt"),
    builtin!("Peregrine:TorRelays", TorRelay, "tor-relays.txt"),
    builtin!("Peregrine:Sinkholes", Blackhole, "sinkholes.txt"),
];

/// A built-in list that did not load: a broken build, reported rather than panicked on.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("built-in list {name}: {source}")]
    Parse {
        name: &'static str,
        source: ParseError,
    },
    #[error("built-in list {name}: {n} malformed lines, the first {first}")]
    Malformed {
        name: &'static str,
        n: usize,
        first: String,
    },
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl BuiltinList {
    /// Parses the list; any malformed line is an error (the files are ours).
    pub fn parse(&self) -> Result<ParsedList, BuiltinError> {
        let list =
            parse(Format::Txt, self.text.as_bytes()).map_err(|source| BuiltinError::Parse {
                name: self.name,
                source,
            })?;
        if let Some(first) = list.rejected.first() {
            return Err(BuiltinError::Malformed {
                name: self.name,
                n: list.rejected_total,
                first: first.to_string(),
            });
        }
        Ok(list)
    }

    pub fn info(&self) -> ListInfo {
        ListInfo {
            name: self.name.to_owned(),
            kind: ListKind::Threat,
            category: self.category,
        }
    }
}

/// Adds every built-in list to a builder (before the user's lists, by convention).
pub fn add_builtin(b: &mut IntelBuilder) -> Result<(), BuiltinError> {
    for l in BUILTIN {
        b.add_list(l.info(), l.parse()?.entries)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_list_loads_and_says_where_it_comes_from() {
        for l in BUILTIN {
            l.parse().unwrap_or_else(|e| panic!("{e}"));
            for key in ["# Source:", "# Date:", "# Licence:", "# Category:"] {
                assert!(
                    l.text.lines().any(|x| x.starts_with(key)),
                    "{} lacks {key}",
                    l.name
                );
            }
            let cat = format!("{:?}", l.category);
            assert!(
                l.text
                    .lines()
                    .any(|x| x.starts_with("# Category: ") && x.contains(&cat)),
                "{}: header category is not {cat}",
                l.name
            );
        }
        let mut b = IntelBuilder::new();
        add_builtin(&mut b).unwrap();
        let intel = b.build();
        let hit = intel
            .lookup_domain("c2.guarddutyc2activityb.com")
            .threat()
            .unwrap();
        assert_eq!(hit.hits[0].list.category, Category::CommandAndControl);
        let hit = intel
            .lookup_domain("xmr-eu1.nanopool.org")
            .threat()
            .unwrap();
        assert_eq!(hit.hits[0].list.name, "Peregrine:MiningPools");
    }
}
