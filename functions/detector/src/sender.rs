//! Sender identity and clock bounds: which cluster an SQS sender may speak for, and how far an
//! agent's clock may be from the detector's before its times are not believed.

use std::collections::BTreeMap;
use std::time::Duration;

use peregrine_event::Timestamp;

/// `AGENT_SENDERS` is not a list of `ROLEID=cluster` pairs.
#[derive(Debug, thiserror::Error)]
#[error("AGENT_SENDERS entry {0:?} is not ROLEID=cluster (e.g. AROAEXAMPLEID=prod-eu)")]
pub struct SenderMapError(pub String);

/// Agent role unique ids (`AROA…`, from `aws iam get-role --query Role.RoleId`) → the one
/// cluster each may send for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderMap(BTreeMap<String, String>);

impl SenderMap {
    /// `ROLEID=cluster,ROLEID=cluster`; whitespace around entries is ignored. `None` when the
    /// setting is empty: no mapping is configured.
    pub fn parse(s: &str) -> Result<Option<SenderMap>, SenderMapError> {
        let mut map = BTreeMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.split_once('=') {
                Some((role, cluster))
                    if !role.trim().is_empty()
                        && !cluster.trim().is_empty()
                        && !role.contains(':') =>
                {
                    map.insert(role.trim().to_owned(), cluster.trim().to_owned());
                }
                _ => return Err(SenderMapError(entry.to_owned())),
            }
        }
        Ok((!map.is_empty()).then_some(SenderMap(map)))
    }

    /// The cluster the sender may speak for. `sender_id` is SQS's `SenderId`: for an assumed
    /// role `AROA…:session`, of which only the role id counts.
    pub fn cluster_of(&self, sender_id: &str) -> Option<&str> {
        let role = sender_id.split(':').next().unwrap_or(sender_id);
        self.0.get(role).map(String::as_str)
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

/// Checks that `sender_id` may send for `claimed_cluster`. Always allowed when no mapping is
/// configured.
pub fn authorize(
    senders: Option<&SenderMap>,
    sender_id: Option<&str>,
    claimed_cluster: &str,
) -> Result<(), Rejection> {
    let Some(map) = senders else {
        return Ok(());
    };
    let sender = sender_id
        .filter(|s| !s.is_empty())
        .ok_or(Rejection::NoSender)?;
    match map.cluster_of(sender) {
        None => Err(Rejection::UnknownSender),
        Some(c) if c == claimed_cluster => Ok(()),
        Some(_) => Err(Rejection::ClusterMismatch),
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
        assert_eq!(m.cluster_of("AROAONE:i-0abc"), Some("prod"));
        assert_eq!(m.cluster_of("AROATWO"), Some("stage"));
        assert_eq!(m.cluster_of("AROATHREE:x"), None);
        assert_eq!(SenderMap::parse("").unwrap(), None);
        assert_eq!(SenderMap::parse(" , ").unwrap(), None);
        for bad in ["AROAONE", "=prod", "AROAONE=", "AROA:x=prod"] {
            assert!(SenderMap::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn authorization_binds_a_sender_to_its_cluster() {
        let m = SenderMap::parse("AROAONE=prod").unwrap();
        let m = m.as_ref();
        assert_eq!(authorize(m, Some("AROAONE:s"), "prod"), Ok(()));
        assert_eq!(
            authorize(m, Some("AROAONE:s"), "stage"),
            Err(Rejection::ClusterMismatch)
        );
        assert_eq!(
            authorize(m, Some("AROAXX:s"), "prod"),
            Err(Rejection::UnknownSender)
        );
        assert_eq!(authorize(m, None, "prod"), Err(Rejection::NoSender));
        assert_eq!(authorize(None, None, "anything"), Ok(()));
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
