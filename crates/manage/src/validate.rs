//! Shape checks for every value that ends up in a manifest, a tag or a URL path. Each accepts a
//! small character set with no quoting, whitespace, `$` or YAML syntax in it, so substituting a
//! checked value into `infra/daemonset.yaml` cannot change the document's structure.

fn all(s: &str, ok: impl Fn(char) -> bool) -> bool {
    s.chars().all(ok)
}

pub use peregrine_event::{
    valid_account_id as account_id, valid_cluster_name as cluster_name,
    valid_partition as partition, valid_region as region,
};

/// An EC2 id with its prefix: `vpc-0abc…`, `subnet-…`, `sg-…`, `vpce-…`.
pub fn ec2_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|r| {
            (1..=32).contains(&r.len()) && all(r, |c| c.is_ascii_hexdigit() || c == '-')
        })
}

/// A Kubernetes namespace (a DNS label).
pub fn dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && all(s, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        })
}

/// A Kubernetes object name (a DNS subdomain).
pub fn dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len()) && s.split('.').all(dns_label)
}

/// An IAM role ARN: `arn:<partition>:iam::<account>:role/<path/><name>`.
pub fn role_arn(s: &str) -> bool {
    let mut parts = s.splitn(6, ':');
    let (Some("arn"), Some(p), Some("iam"), Some(""), Some(acct), Some(res)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let Some(path_name) = res.strip_prefix("role/") else {
        return false;
    };
    let name = path_name.rsplit('/').next().unwrap_or_default();
    partition(p)
        && account_id(acct)
        && s.len() <= 2048
        && (1..=64).contains(&name.len())
        && all(path_name, |c| {
            c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c)
        })
}

/// An IAM role name.
pub fn role_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && all(s, |c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// An SQS queue URL: `https://` and a host and path of letters, digits, `.-_/:`. Plain
/// `http://` only to a loopback host (a local AWS stand-in such as moto's): agents never send
/// signed requests unencrypted across a network.
pub fn queue_url(s: &str) -> bool {
    let rest = match (s.strip_prefix("https://"), s.strip_prefix("http://")) {
        (Some(rest), _) => rest,
        (None, Some(rest))
            if ["127.0.0.1:", "127.0.0.1/", "localhost:", "localhost/"]
                .iter()
                .any(|h| rest.starts_with(h)) =>
        {
            rest
        }
        _ => return false,
    };
    s.len() <= 1024
        && !rest.is_empty()
        && !rest.starts_with('/')
        && all(rest, |c| c.is_ascii_alphanumeric() || ".-_/:".contains(c))
}

/// An SQS queue ARN; gives its region.
pub fn queue_arn_region(s: &str) -> Option<&str> {
    let mut parts = s.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(p), Some("sqs"), Some(r), Some(a), Some(name))
            if partition(p)
                && region(r)
                && account_id(a)
                && (1..=80).contains(&name.len())
                && all(name, |c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            Some(r)
        }
        _ => None,
    }
}

/// A container image pinned by digest: `<repository>[:tag]@sha256:<64 hex>`, not the
/// manifest's all-zero placeholder.
pub fn image(s: &str) -> bool {
    let Some((repo, digest)) = s.rsplit_once("@sha256:") else {
        return false;
    };
    s.len() <= 512
        && !repo.is_empty()
        && all(repo, |c| c.is_ascii_alphanumeric() || "./:_-".contains(c))
        && digest.len() == 64
        && all(digest, |c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        && !all(digest, |c| c == '0')
}

/// An AWS tag key or value we write: letters, digits, spaces and `+-=._:/@`, bounded.
pub fn tag(s: &str, max: usize) -> bool {
    s.len() <= max
        && all(s, |c| c.is_ascii_alphanumeric() || " +-=._:/@".contains(c))
        && !s.starts_with("aws:")
}

/// `s` bounded to `max` bytes (on a character boundary) with control characters replaced:
/// AWS and API server messages are shown to users and land in logs.
pub fn bounded(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if out.len() + c.len_utf8() > max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(cluster_name("prod-eu_1"));
        assert!(!cluster_name("-prod"));
        assert!(!cluster_name("a\"b"));
        assert!(!cluster_name(&"a".repeat(101)));
        assert!(region("eu-west-1") && region("us-gov-west-1"));
        assert!(!region("eu-west-1\n") && !region("EU-WEST-1"));
        assert!(ec2_id("vpc-0123abcd", "vpc") && !ec2_id("vpc-", "vpc"));
        assert!(!ec2_id("sg-12 34", "sg"));
        assert!(role_arn(
            "arn:aws:iam::111122223333:role/peregrine-agent-prod"
        ));
        assert!(role_arn("arn:aws:iam::111122223333:role/team/peregrine"));
        assert!(!role_arn("arn:aws:iam::111122223333:role/x\"y"));
        assert!(!role_arn("arn:aws:iam::111122223333:user/x"));
        assert!(!role_arn(&format!(
            "arn:aws:iam::111122223333:role/{}",
            "a".repeat(65)
        )));
        assert!(queue_url(
            "https://sqs.eu-west-1.amazonaws.com/111122223333/peregrine-EventsQueue-1"
        ));
        assert!(!queue_url("http://sqs.eu-west-1.amazonaws.com/1/q"));
        assert!(queue_url("http://127.0.0.1:5000/123456789012/q"));
        assert!(!queue_url("http://127.0.0.1.evil.example/q"));
        assert!(!queue_url("http://localhost.evil.example:80/q"));
        assert!(!queue_url("https://sqs/q ${X}"));
        assert_eq!(
            queue_arn_region("arn:aws:sqs:eu-west-1:111122223333:peregrine-EventsQueue"),
            Some("eu-west-1")
        );
        assert_eq!(
            queue_arn_region("arn:aws:sns:eu-west-1:111122223333:x"),
            None
        );
        assert!(image(&format!(
            "ghcr.io/peregrine-sec/peregrine-agent:0.1.0@sha256:{}",
            "ab".repeat(32)
        )));
        assert!(!image(&format!("ghcr.io/p/a@sha256:{}", "0".repeat(64))));
        assert!(!image("ghcr.io/p/a:latest"));
        assert!(dns_label("monitoring") && !dns_label("Monitoring") && !dns_label("a_b"));
        assert_eq!(bounded("ab\ncd", 10), "ab cd");
        assert_eq!(bounded("abcdef", 3), "abc…");
    }
}
