//! Sender identity and clock bounds: which cluster an SQS sender may speak for, and how far an
//! agent's clock may be from the detector's before its times are not believed.

use std::collections::BTreeMap;
use std::time::Duration;

use peregrine_event::{ClusterArn, Timestamp, valid_cluster_name};

/// `AGENT_SENDERS` is not a list of `ROLEID=cluster` pairs.
#[derive(Debug, thiserror::Error)]
#[error(
    "AGENT_SENDERS entry {0:?} is not ROLEID=<cluster name or EKS cluster ARN> \
     (e.g. AROAEXAMPLEID=arn:aws:eks:eu-west-1:111122223333:cluster/prod)"
)]
pub struct SenderMapError(pub String);

/// The cluster one agent role may send for: by name only, or by ARN (which also fixes its
/// account and region).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    Name(String),
    Arn(ClusterArn),
}

impl Bound {
    pub fn cluster_name(&self) -> &str {
        match self {
            Bound::Name(n) => n,
            Bound::Arn(a) => a.cluster_name(),
        }
    }
}

/// Agent role unique ids (`AROA…`, from `aws iam get-role --query Role.RoleId`) → the one
/// cluster each may send for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderMap(BTreeMap<String, Bound>);

impl SenderMap {
    /// `ROLEID=cluster,ROLEID=arn:aws:eks:…:cluster/name`; whitespace around entries is
    /// ignored. `None` when the setting is empty: no mapping is configured.
    pub fn parse(s: &str) -> Result<Option<SenderMap>, SenderMapError> {
        let mut map = BTreeMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || SenderMapError(entry.to_owned());
            let (role, cluster) = entry.split_once('=').ok_or_else(bad)?;
            let (role, cluster) = (role.trim(), cluster.trim());
            if role.is_empty() || role.contains(':') || cluster.is_empty() {
                return Err(bad());
            }
            let bound = if cluster.starts_with("arn:") {
                Bound::Arn(ClusterArn::parse(cluster).map_err(|_| bad())?)
            } else if valid_cluster_name(cluster) {
                Bound::Name(cluster.to_owned())
            } else {
                return Err(bad());
            };
            map.insert(role.to_owned(), bound);
        }
        Ok((!map.is_empty()).then_some(SenderMap(map)))
    }

    /// The cluster the sender may speak for. `sender_id` is SQS's `SenderId`: for an assumed
    /// role `AROA…:session`, of which only the role id counts.
    pub fn cluster_of(&self, sender_id: &str) -> Option<&Bound> {
        let role = sender_id.split(':').next().unwrap_or(sender_id);
        self.0.get(role)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a message is refused for who sent it. Permanent: the message fails on every receive and
/// reaches the dead-letter queue after `maxReceiveCount`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The record carries no `SenderId` attribute.
    NoSender,
    /// The sender is not one of the configured agent roles.
    UnknownSender,
    /// The header claims another cluster than the sender's.
    ClusterMismatch,
}

impl Rejection {
    /// The reason as logged (`rejected=<reason>`).
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::NoSender => "NoSender",
            Rejection::UnknownSender => "UnknownSender",
            Rejection::ClusterMismatch => "ClusterMismatch",
        }
    }
}

/// Checks that `sender_id` may send for the cluster its header claims (`claimed_cluster`, and
/// `claimed_arn` when the agent sent one), and returns the cluster's ARN as far as it is known:
/// the mapping's when the sender is bound to an ARN (an agent that sent none gets it), else
/// the agent's own claim. Everything is allowed when no mapping is configured.
pub fn authorize(
    senders: Option<&SenderMap>,
    sender_id: Option<&str>,
    claimed_cluster: &str,
    claimed_arn: Option<&ClusterArn>,
) -> Result<Option<ClusterArn>, Rejection> {
    let Some(map) = senders else {
        return Ok(claimed_arn.cloned());
    };
    let sender = sender_id
        .filter(|s| !s.is_empty())
        .ok_or(Rejection::NoSender)?;
    let bound = map.cluster_of(sender).ok_or(Rejection::UnknownSender)?;
    if bound.cluster_name() != claimed_cluster {
        return Err(Rejection::ClusterMismatch);
    }
    match bound {
        Bound::Name(_) => Ok(claimed_arn.cloned()),
        Bound::Arn(a) if claimed_arn.is_none_or(|c| c == a) => Ok(Some(a.clone())),
        Bound::Arn(_) => Err(Rejection::ClusterMismatch),
    }
}

/// How far from the receive time an agent's timestamps are believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkewWindow {
    pub future: Duration,
    pub past: Duration,
}

/// Default: 10 minutes ahead, 24 hours behind (an agent's spool can hold a day's backlog).
pub const DEFAULT_SKEW: SkewWindow = SkewWindow {
    future: Duration::from_secs(10 * 60),
    past: Duration::from_secs(24 * 60 * 60),
};

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl SkewWindow {
    /// `t`, or `now` when `t` is outside the window; `true` when it was clamped.
    pub fn clamp(self, t: Timestamp, now: Timestamp) -> (Timestamp, bool) {
        let n = now.unix_nanos();
        let t_ns = t.unix_nanos();
        let too_new = t_ns > n.saturating_add(nanos(self.future));
        let too_old = t_ns < n.saturating_sub(nanos(self.past));
        if too_new || too_old {
            (now, true)
        } else {
            (t, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_map_parses_role_ids_and_strips_sessions() {
        let m = SenderMap::parse(" AROAONE=prod , AROATWO=stage ")
            .unwrap()
            .unwrap();
        assert_eq!(m.len(), 2);
        let name = |s: &str| m.cluster_of(s).map(Bound::cluster_name);
        assert_eq!(name("AROAONE:i-0abc"), Some("prod"));
        assert_eq!(name("AROATWO"), Some("stage"));
        assert_eq!(name("AROATHREE:x"), None);
        assert_eq!(SenderMap::parse("").unwrap(), None);
        assert_eq!(SenderMap::parse(" , ").unwrap(), None);
        let m = SenderMap::parse("AROAONE=arn:aws:eks:eu-west-1:111122223333:cluster/prod")
            .unwrap()
            .unwrap();
        assert!(matches!(
            m.cluster_of("AROAONE:s"),
            Some(Bound::Arn(a)) if a.account_id() == "111122223333"
        ));
        for bad in [
            "AROAONE",
            "=prod",
            "AROAONE=",
            "AROA:x=prod",
            "AROAONE=arn:aws:eks:eu-west-1:1:cluster/prod",
            "AROAONE=pr od",
        ] {
            assert!(SenderMap::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn authorization_binds_a_sender_to_its_cluster() {
        let m = SenderMap::parse("AROAONE=prod").unwrap();
        let m = m.as_ref();
        let arn = |s: &str| ClusterArn::parse(s).unwrap();
        let prod_a = arn("arn:aws:eks:eu-west-1:111122223333:cluster/prod");
        let prod_b = arn("arn:aws:eks:eu-west-1:444455556666:cluster/prod");
        assert_eq!(authorize(m, Some("AROAONE:s"), "prod", None), Ok(None));
        // Bound by name: the agent's own ARN is taken as claimed.
        assert_eq!(
            authorize(m, Some("AROAONE:s"), "prod", Some(&prod_b)),
            Ok(Some(prod_b.clone()))
        );
        assert_eq!(
            authorize(m, Some("AROAONE:s"), "stage", None),
            Err(Rejection::ClusterMismatch)
        );
        assert_eq!(
            authorize(m, Some("AROAXX:s"), "prod", None),
            Err(Rejection::UnknownSender)
        );
        assert_eq!(authorize(m, None, "prod", None), Err(Rejection::NoSender));
        assert_eq!(
            authorize(None, None, "anything", Some(&prod_a)),
            Ok(Some(prod_a.clone()))
        );

        // Bound by ARN: an agent that sends none gets the mapping's; another account's ARN
        // for the same name is refused.
        let m = SenderMap::parse(&format!("AROAONE={prod_a}")).unwrap();
        let m = m.as_ref();
        assert_eq!(
            authorize(m, Some("AROAONE:s"), "prod", None),
            Ok(Some(prod_a.clone()))
        );
        assert_eq!(
            authorize(m, Some("AROAONE:s"), "prod", Some(&prod_a)),
            Ok(Some(prod_a.clone()))
        );
        assert_eq!(
            authorize(m, Some("AROAONE:s"), "prod", Some(&prod_b)),
            Err(Rejection::ClusterMismatch)
        );
        assert_eq!(
            authorize(m, Some("AROAONE:s"), "stage", None),
            Err(Rejection::ClusterMismatch)
        );
    }

    #[test]
    fn times_outside_the_window_are_clamped() {
        let now = Timestamp::from_unix_nanos(1_000_000 * 1_000_000_000);
        let s = 1_000_000_000;
        let w = DEFAULT_SKEW;
        let at = |d: i64| Timestamp::from_unix_nanos(now.unix_nanos() + d * s);
        assert_eq!(w.clamp(at(599), now), (at(599), false));
        assert_eq!(w.clamp(at(601), now), (now, true));
        assert_eq!(w.clamp(at(-86_399), now), (at(-86_399), false));
        assert_eq!(w.clamp(at(-86_401), now), (now, true));
    }
}
