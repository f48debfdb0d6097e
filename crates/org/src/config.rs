//! The organization's configuration and each account's, kept in the config table
//! (`peregrine-store`'s `ConfigStore`), and what they decide for an account.
//!
//! The semantics are GuardDuty's (`../shared/reference/guardduty-runtime.md` §4.4):
//!
//! - **`ALL`**: every active account is monitored, those an administrator turned off included;
//!   the sweep writes `ENABLED` into their rows, so that changing to `NONE` later turns nobody
//!   off.
//! - **`NEW`**: an account the sweeper has no row for is monitored when it joined the
//!   organization at or after the time auto-enable was set (`autoEnableSince`); one that was
//!   already there gets a row with monitoring off.
//! - **`NONE`**: an account without a row gets one with monitoring off.
//!
//! So every account the organization lists gets a row at its first sweep, and the next sweep
//! after an account joins picks it up. An account with a row keeps what the row says (under
//! `NEW` and `NONE`); an administrator (the API) changes rows.

use peregrine_event::Timestamp;
use serde::{Deserialize, Serialize};

use crate::names;

names! {
    /// Which accounts are monitored without an administrator turning them on (GuardDuty's
    /// `autoEnableOrganizationMembers`).
    pub enum AutoEnable ("autoEnable") {
        New = "NEW",
        All = "ALL",
        None = "NONE",
    }
}

names! {
    /// Runtime monitoring for an account.
    pub enum Monitoring ("monitoring") {
        Enabled = "ENABLED",
        Disabled = "DISABLED",
    }
}

names! {
    /// Who deploys the agent in an account's clusters: Peregrine's sweeper (`AUTO`: the VPC
    /// endpoint, the agent's identity, the DaemonSet) or the account's owners (`MANUAL`).
    pub enum Management ("management") {
        Auto = "AUTO",
        Manual = "MANUAL",
    }
}

names! {
    /// Which clusters of a monitored account are swept: all but those tagged
    /// `peregrine:managed=false`, or only those tagged `peregrine:managed=true`.
    pub enum ClusterScope ("clusterScope") {
        All = "ALL",
        IncludedOnly = "INCLUDED_ONLY",
    }
}

names! {
    /// Who last set an account's row.
    pub enum Origin ("origin") {
        /// The sweeper, applying auto-enable.
        AutoEnable = "AUTO_ENABLE",
        /// An administrator (the API, or an edit of the table).
        Administrator = "ADMINISTRATOR",
    }
}

names! {
    /// Why an account is monitored or not in a sweep.
    pub enum Reason ("reason") {
        /// Auto-enable `ALL`.
        AutoEnableAll = "AUTO_ENABLE_ALL",
        /// Auto-enable `NEW`, and the account joined after it was set.
        AutoEnableNew = "AUTO_ENABLE_NEW",
        /// Auto-enable `NEW`, and the account was already in the organization.
        JoinedBeforeAutoEnable = "JOINED_BEFORE_AUTO_ENABLE",
        /// Auto-enable `NONE` and no row yet.
        AutoEnableNone = "AUTO_ENABLE_NONE",
        /// The account's row.
        AccountSetting = "ACCOUNT_SETTING",
    }
}

/// The organization's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgSettings {
    pub auto_enable: AutoEnable,
    /// When `auto_enable` was last set: under `NEW`, accounts that joined at or after it are new.
    pub auto_enable_since: Timestamp,
    /// The management a new account row gets.
    pub default_management: Management,
    /// The cluster scope of accounts whose row sets none.
    pub cluster_scope: ClusterScope,
    pub updated_at: Timestamp,
}

impl OrgSettings {
    /// The row a first sweep writes when the table has none (from the template's
    /// `DefaultAutoEnable` and `DefaultAgentManagement`).
    pub fn initial(
        auto_enable: AutoEnable,
        default_management: Management,
        now: Timestamp,
    ) -> Self {
        OrgSettings {
            auto_enable,
            auto_enable_since: now,
            default_management,
            cluster_scope: ClusterScope::All,
            updated_at: now,
        }
    }

    /// What this configuration decides for `account`, whose row is `row`, at `now`.
    pub fn decide(
        &self,
        account: &MemberAccount,
        row: Option<&AccountSettings>,
        now: Timestamp,
    ) -> Decision {
        let new_row = |monitoring| AccountSettings {
            account_id: account.id.clone(),
            monitoring,
            management: self.default_management,
            cluster_scope: None,
            origin: Origin::AutoEnable,
            updated_at: now,
        };
        let (settings, reason, write) = match (self.auto_enable, row) {
            (AutoEnable::All, Some(r)) if r.monitoring == Monitoring::Enabled => {
                (r.clone(), Reason::AutoEnableAll, false)
            }
            (AutoEnable::All, Some(r)) => (
                AccountSettings {
                    monitoring: Monitoring::Enabled,
                    origin: Origin::AutoEnable,
                    updated_at: now,
                    ..r.clone()
                },
                Reason::AutoEnableAll,
                true,
            ),
            (AutoEnable::All, None) => (new_row(Monitoring::Enabled), Reason::AutoEnableAll, true),
            (_, Some(r)) => (r.clone(), Reason::AccountSetting, false),
            (AutoEnable::New, None) => {
                if account
                    .joined_at
                    .is_some_and(|joined| joined >= self.auto_enable_since)
                {
                    (new_row(Monitoring::Enabled), Reason::AutoEnableNew, true)
                } else {
                    (
                        new_row(Monitoring::Disabled),
                        Reason::JoinedBeforeAutoEnable,
                        true,
                    )
                }
            }
            (AutoEnable::None, None) => {
                (new_row(Monitoring::Disabled), Reason::AutoEnableNone, true)
            }
        };
        Decision {
            monitoring: settings.monitoring,
            management: settings.management,
            cluster_scope: settings.cluster_scope.unwrap_or(self.cluster_scope),
            reason,
            write: write.then_some(settings),
        }
    }
}

/// An account's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSettings {
    pub account_id: String,
    pub monitoring: Monitoring,
    pub management: Management,
    /// Overrides the organization's cluster scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<ClusterScope>,
    pub origin: Origin,
    pub updated_at: Timestamp,
}

/// An account as Organizations lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberAccount {
    pub id: String,
    pub name: String,
    /// `ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`, `CLOSED` (Organizations' `State`).
    pub state: String,
    pub joined_at: Option<Timestamp>,
}

impl MemberAccount {
    /// Only active accounts are swept.
    pub fn is_active(&self) -> bool {
        self.state == "ACTIVE"
    }
}

/// What the configuration decides for one account in one sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub monitoring: Monitoring,
    pub management: Management,
    pub cluster_scope: ClusterScope,
    pub reason: Reason,
    /// The account's row to store: missing until now, or changed by auto-enable `ALL`.
    pub write: Option<AccountSettings>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    fn t(hours: i64) -> Timestamp {
        Timestamp::from_unix_nanos(1_764_000_000_000_000_000 + hours * HOUR)
    }

    fn account(joined: i64) -> MemberAccount {
        MemberAccount {
            id: "111111111111".into(),
            name: "a".into(),
            state: "ACTIVE".into(),
            joined_at: Some(t(joined)),
        }
    }

    fn org(auto_enable: AutoEnable) -> OrgSettings {
        OrgSettings::initial(auto_enable, Management::Manual, t(0))
    }

    fn row(monitoring: Monitoring, origin: Origin) -> AccountSettings {
        AccountSettings {
            account_id: "111111111111".into(),
            monitoring,
            management: Management::Auto,
            cluster_scope: Some(ClusterScope::IncludedOnly),
            origin,
            updated_at: t(-5),
        }
    }

    #[test]
    fn accounts_without_a_row_follow_auto_enable() {
        use AutoEnable::*;
        use Monitoring::*;
        let cases = [
            // (auto-enable, joined, monitoring, reason)
            (All, -10, Enabled, Reason::AutoEnableAll),
            (New, -10, Disabled, Reason::JoinedBeforeAutoEnable),
            (New, 0, Enabled, Reason::AutoEnableNew),
            (New, 3, Enabled, Reason::AutoEnableNew),
            (None, 3, Disabled, Reason::AutoEnableNone),
        ];
        for (auto, joined, monitoring, reason) in cases {
            let d = org(auto).decide(&account(joined), Option::None, t(4));
            assert_eq!(
                (d.monitoring, d.reason),
                (monitoring, reason),
                "{auto} {joined}"
            );
            let w = d.write.expect("a first sighting writes the row");
            assert_eq!(w.monitoring, monitoring);
            assert_eq!(w.origin, Origin::AutoEnable);
            assert_eq!(
                w.management,
                Management::Manual,
                "the organization's default"
            );
            assert_eq!(w.updated_at, t(4));
            assert_eq!(d.cluster_scope, ClusterScope::All);
        }
        let unknown_join = MemberAccount {
            joined_at: Option::None,
            ..account(0)
        };
        assert_eq!(
            org(New)
                .decide(&unknown_join, Option::None, t(4))
                .monitoring,
            Disabled
        );
    }

    #[test]
    fn rows_are_kept_except_that_all_turns_everyone_on() {
        use Monitoring::*;
        let off = row(Disabled, Origin::Administrator);
        for auto in [AutoEnable::New, AutoEnable::None] {
            let d = org(auto).decide(&account(3), Some(&off), t(4));
            assert_eq!((d.monitoring, d.reason), (Disabled, Reason::AccountSetting));
            assert_eq!(d.write, Option::None);
            assert_eq!(d.management, Management::Auto);
            assert_eq!(
                d.cluster_scope,
                ClusterScope::IncludedOnly,
                "the row's scope"
            );
        }
        let d = org(AutoEnable::All).decide(&account(3), Some(&off), t(4));
        assert_eq!((d.monitoring, d.reason), (Enabled, Reason::AutoEnableAll));
        let w = d.write.expect("ALL writes ENABLED into the row");
        assert_eq!(
            (w.monitoring, w.origin, w.management, w.cluster_scope),
            (
                Enabled,
                Origin::AutoEnable,
                Management::Auto,
                Some(ClusterScope::IncludedOnly)
            )
        );
        let on = row(Enabled, Origin::Administrator);
        let d = org(AutoEnable::All).decide(&account(3), Some(&on), t(4));
        assert_eq!(d.write, Option::None, "nothing to change");
    }

    #[test]
    fn names_round_trip() {
        for a in AutoEnable::ALL {
            assert_eq!(a.as_str().parse::<AutoEnable>(), Ok(*a));
        }
        let err = "SOME".parse::<AutoEnable>().unwrap_err();
        assert!(err.to_string().contains("NEW ALL NONE"), "{err}");
        let json = serde_json::to_string(&row(Monitoring::Enabled, Origin::AutoEnable)).unwrap();
        assert!(json.contains("\"monitoring\":\"ENABLED\""), "{json}");
        assert!(
            json.contains("\"clusterScope\":\"INCLUDED_ONLY\""),
            "{json}"
        );
        let back: AccountSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, row(Monitoring::Enabled, Origin::AutoEnable));
    }
}
