//! Which EKS cluster: its ARN, the one name that is unique across an organization. A cluster's
//! name is unique only within one account and region, so two accounts (or two regions) can each
//! have a `prod`; everything that joins agents to clusters across accounts keys on the ARN.

use std::fmt;

/// A checked `arn:<partition>:eks:<region>:<account>:cluster/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterArn {
    arn: String,
    /// Byte ranges of the parts within `arn`.
    partition: (usize, usize),
    region: (usize, usize),
    account: (usize, usize),
    name: usize,
}

/// A string that is not an EKS cluster ARN. Carries the offending value, bounded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an EKS cluster ARN (arn:<partition>:eks:<region>:<account>:cluster/<name>)")]
pub struct ClusterArnError(pub String);

/// The longest ARN accepted: the fixed parts plus a 32-byte region and a 100-byte name.
pub const MAX_CLUSTER_ARN_BYTES: usize = 200;

fn all(s: &str, ok: impl Fn(char) -> bool) -> bool {
    s.chars().all(ok)
}

/// An EKS cluster name: `^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$`.
pub fn valid_cluster_name(s: &str) -> bool {
    s.len() <= 100
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && all(s, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// An AWS region name such as `eu-west-1` or `us-gov-west-1`.
pub fn valid_region(s: &str) -> bool {
    (4..=32).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_digit())
        && all(s, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        })
}

/// A 12-digit AWS account id.
pub fn valid_account_id(s: &str) -> bool {
    s.len() == 12 && all(s, |c| c.is_ascii_digit())
}

/// The partitions EKS runs in whose DNS suffix we know.
pub fn valid_partition(s: &str) -> bool {
    matches!(s, "aws" | "aws-cn" | "aws-us-gov")
}

impl ClusterArn {
    /// Parses and checks every part; nothing else is accepted (no wildcards, no paths).
    pub fn parse(s: &str) -> Result<ClusterArn, ClusterArnError> {
        let err = || {
            let mut shown: String = s.chars().take(MAX_CLUSTER_ARN_BYTES).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            ClusterArnError(shown)
        };
        if s.len() > MAX_CLUSTER_ARN_BYTES {
            return Err(err());
        }
        let mut at = 0;
        let mut spans = [(0usize, 0usize); 6];
        let mut parts = s.splitn(6, ':');
        for span in spans.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            *span = (at, at + part.len());
            at += part.len() + 1;
        }
        let get = |(a, b): (usize, usize)| &s[a..b];
        let resource = get(spans[5]);
        let name = resource.strip_prefix("cluster/").ok_or_else(err)?;
        let ok = get(spans[0]) == "arn"
            && valid_partition(get(spans[1]))
            && get(spans[2]) == "eks"
            && valid_region(get(spans[3]))
            && valid_account_id(get(spans[4]))
            && valid_cluster_name(name);
        if !ok {
            return Err(err());
        }
        Ok(ClusterArn {
            arn: s.to_owned(),
            partition: spans[1],
            region: spans[3],
            account: spans[4],
            name: spans[5].0 + "cluster/".len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }

    pub fn partition(&self) -> &str {
        &self.arn[self.partition.0..self.partition.1]
    }

    pub fn region(&self) -> &str {
        &self.arn[self.region.0..self.region.1]
    }

    pub fn account_id(&self) -> &str {
        &self.arn[self.account.0..self.account.1]
    }

    pub fn cluster_name(&self) -> &str {
        &self.arn[self.name..]
    }
}

impl fmt::Display for ClusterArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl std::str::FromStr for ClusterArn {
    type Err = ClusterArnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClusterArn::parse(s)
    }
}

impl serde::Serialize for ClusterArn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.arn)
    }
}

impl<'de> serde::Deserialize<'de> for ClusterArn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ClusterArn::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_cluster_arn() {
        let a = ClusterArn::parse("arn:aws-us-gov:eks:us-gov-west-1:111122223333:cluster/prod_2")
            .unwrap();
        assert_eq!(a.partition(), "aws-us-gov");
        assert_eq!(a.region(), "us-gov-west-1");
        assert_eq!(a.account_id(), "111122223333");
        assert_eq!(a.cluster_name(), "prod_2");
        assert_eq!(
            a.to_string(),
            "arn:aws-us-gov:eks:us-gov-west-1:111122223333:cluster/prod_2"
        );
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<ClusterArn>(&json).unwrap(), a);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "prod",
            "arn:aws:eks:eu-west-1:111122223333:cluster/",
            "arn:aws:eks:eu-west-1:111122223333:nodegroup/prod/ng/1",
            "arn:aws:iam::111122223333:role/prod",
            "arn:aws:eks:eu-west-1:11112222333:cluster/prod",
            "arn:aws:eks:eu-west-1:111122223333:cluster/prod:x",
            "arn:aws:eks:eu-west-1:111122223333:cluster/pr od",
            "arn:aws:eks:eu-west-1:111122223333:cluster/-prod",
            "arn:aws:eks:EU-WEST-1:111122223333:cluster/prod",
            "arn:evil:eks:eu-west-1:111122223333:cluster/prod",
            "arn:aws:eks:eu-west-1:111122223333:cluster/prod\n",
            "arn:aws:eks:eu-west-1:111122223333",
        ] {
            assert!(ClusterArn::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!(
            "arn:aws:eks:eu-west-1:111122223333:cluster/{}",
            "a".repeat(300)
        );
        let err = ClusterArn::parse(&long).unwrap_err();
        assert!(err.0.chars().count() <= MAX_CLUSTER_ARN_BYTES + 1, "{err}");
    }
}
