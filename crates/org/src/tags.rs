//! The cluster tag that scopes Peregrine, as GuardDuty's `GuardDutyManaged` tag scopes its
//! automated agent management:
//!
//! | `peregrine:managed` | swept (coverage) | agent managed |
//! |---|---|---|
//! | `false` | no: the cluster is excluded | no |
//! | `true` | yes | yes, even in a `MANUAL` account |
//! | absent (or any other value) | unless the cluster scope is `INCLUDED_ONLY` | when the account is `AUTO` |
//!
//! Whoever may tag clusters in a member account can take a cluster out of coverage; protect the
//! tag with an SCP, as GuardDuty advises for its own (docs/coverage.md).

use std::collections::BTreeMap;

use crate::config::{ClusterScope, Management};

/// The tag key.
pub const MANAGED_TAG: &str = "peregrine:managed";

/// What a cluster's `peregrine:managed` tag says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagChoice {
    /// `true`: include.
    Included,
    /// `false`: exclude.
    Excluded,
    /// Absent, or a value that is neither (read as absent).
    Untagged,
}

impl TagChoice {
    /// The choice a cluster's tags make (the value compared without case or surrounding space).
    pub fn of(tags: &BTreeMap<String, String>) -> TagChoice {
        match tags.get(MANAGED_TAG).map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "true" => TagChoice::Included,
            Some(v) if v == "false" => TagChoice::Excluded,
            _ => TagChoice::Untagged,
        }
    }
}

/// What the sweep does with a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Its coverage is assessed and reported.
    pub swept: bool,
    /// The agent manager (VPC endpoint, identity, DaemonSet) takes care of it.
    pub managed: bool,
}

/// The selection for a cluster with `choice`, in an account with `scope` and `management`.
pub fn select(choice: TagChoice, scope: ClusterScope, management: Management) -> Selection {
    match choice {
        TagChoice::Excluded => Selection {
            swept: false,
            managed: false,
        },
        TagChoice::Included => Selection {
            swept: true,
            managed: true,
        },
        TagChoice::Untagged => {
            let swept = scope == ClusterScope::All;
            Selection {
                swept,
                managed: swept && management == Management::Auto,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: Option<&str>) -> BTreeMap<String, String> {
        v.map(|v| (MANAGED_TAG.to_owned(), v.to_owned()))
            .into_iter()
            .collect()
    }

    #[test]
    fn the_tag_reads_true_false_or_nothing() {
        assert_eq!(TagChoice::of(&tags(Some("true"))), TagChoice::Included);
        assert_eq!(TagChoice::of(&tags(Some(" FALSE "))), TagChoice::Excluded);
        assert_eq!(TagChoice::of(&tags(Some("no"))), TagChoice::Untagged);
        assert_eq!(TagChoice::of(&tags(None)), TagChoice::Untagged);
        let mut other = BTreeMap::new();
        other.insert("Peregrine:Managed".to_owned(), "false".to_owned());
        assert_eq!(TagChoice::of(&other), TagChoice::Untagged, "keys are exact");
    }

    #[test]
    fn selection_table() {
        use ClusterScope::*;
        use Management::*;
        use TagChoice::*;
        let cases = [
            // (tag, scope, management) -> (swept, managed)
            (Excluded, All, Auto, false, false),
            (Excluded, IncludedOnly, Manual, false, false),
            (Included, All, Manual, true, true),
            (Included, IncludedOnly, Manual, true, true),
            (Untagged, All, Auto, true, true),
            (Untagged, All, Manual, true, false),
            (Untagged, IncludedOnly, Auto, false, false),
        ];
        for (choice, scope, management, swept, managed) in cases {
            assert_eq!(
                select(choice, scope, management),
                Selection { swept, managed },
                "{choice:?} {scope:?} {management:?}"
            );
        }
    }
}
