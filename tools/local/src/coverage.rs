//! The coverage table as a terminal shows it (`peregrine-local coverage`): one line per cluster
//! (account, cluster, status, covered/compatible nodes, the worst issue) with the nodes that
//! lack an agent under it, one line per account that has no cluster to show (disabled, failed,
//! inactive, or swept with no cluster), and the statistics.
//!
//! Everything shown comes from the coverage table, which holds strings from member accounts
//! (account and cluster names, tags) and from agents (node names, versions): each is bounded
//! and stripped of control, line-separator and bidi characters again here
//! ([`peregrine_org::text::bounded`]), so no row can move the cursor, recolour or forge lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use peregrine_org::coverage::{
    AccountCoverage, ClusterCoverage, CoverageStatistics, NodeCoverage, SweepState,
};
use peregrine_org::text::bounded;
use peregrine_store::{CoverageStore, StoreError};

/// Most bytes of a name (account, cluster, node group) shown.
const MAX_NAME: usize = 64;
/// Most bytes of an issue shown (the sweeper keeps at most 480 of extra information).
const MAX_ISSUE: usize = 600;
/// Most bytes of a node name shown (a DNS name).
const MAX_NODE: usize = 253;

/// What the table shows, read from the coverage table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoverageView {
    pub accounts: Vec<AccountCoverage>,
    pub clusters: Vec<ClusterCoverage>,
    /// Each cluster's node rows, by (account, region, cluster); only when asked for.
    pub nodes: BTreeMap<(String, String, String), Vec<NodeCoverage>>,
    pub statistics: Option<CoverageStatistics>,
}

impl CoverageView {
    /// Reads the rows of the latest sweep; with `nodes`, every cluster's node rows too.
    pub async fn load<S: CoverageStore>(store: &S, nodes: bool) -> Result<Self, StoreError> {
        let mut accounts = store.accounts().await?;
        accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        let mut clusters: Vec<ClusterCoverage> = store
            .clusters()
            .await?
            .into_iter()
            .map(|c| c.coverage)
            .collect();
        clusters.sort_by(|a, b| {
            (&a.account_id, &a.region, &a.cluster_name).cmp(&(
                &b.account_id,
                &b.region,
                &b.cluster_name,
            ))
        });
        let mut by_cluster = BTreeMap::new();
        if nodes {
            for c in &clusters {
                let mut rows = store
                    .nodes(&c.account_id, &c.region, &c.cluster_name)
                    .await?;
                rows.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
                by_cluster.insert(
                    (
                        c.account_id.clone(),
                        c.region.clone(),
                        c.cluster_name.clone(),
                    ),
                    rows,
                );
            }
        }
        Ok(CoverageView {
            accounts,
            clusters,
            nodes: by_cluster,
            statistics: store.statistics().await?,
        })
    }

    /// The table, one line per row, columns padded to their widest cell.
    pub fn render(&self) -> String {
        let names: BTreeMap<&str, &str> = self
            .accounts
            .iter()
            .map(|a| (a.account_id.as_str(), a.account_name.as_str()))
            .collect();
        let account = |id: &str| match names.get(id) {
            Some(name) if !name.is_empty() => {
                format!("{} {}", bounded(id, 12), bounded(name, MAX_NAME))
            }
            _ => bounded(id, 12),
        };
        // (cells, lines under the row)
        let mut rows: Vec<([String; 6], Vec<String>)> = Vec::new();
        for c in &self.clusters {
            let mut under: Vec<String> = Vec::new();
            if !c.nodes_without_agent.is_empty() {
                let listed: Vec<String> = c
                    .nodes_without_agent
                    .iter()
                    .map(|n| bounded(n, MAX_NODE))
                    .collect();
                let missing = c.compatible_nodes.saturating_sub(c.covered_nodes);
                let more = missing.saturating_sub(listed.len() as u64);
                let mut line = format!("nodes without agent: {}", listed.join(", "));
                if more > 0 {
                    let _ = write!(line, " and {more} more");
                }
                under.push(line);
            }
            let key = (
                c.account_id.clone(),
                c.region.clone(),
                c.cluster_name.clone(),
            );
            for n in self.nodes.get(&key).into_iter().flatten() {
                let name = n.node_name.as_deref().unwrap_or(&n.instance_id);
                let heartbeat = match n.last_heartbeat_at {
                    Some(t) => format!("last heartbeat {t}"),
                    None => "no heartbeat".to_owned(),
                };
                let mut line = format!(
                    "node {} {} {} {heartbeat}",
                    bounded(&n.instance_id, 32),
                    bounded(name, MAX_NODE),
                    if n.counted {
                        n.coverage_status.as_str()
                    } else {
                        "NOT_COUNTED"
                    },
                );
                if let Some(issue) = &n.issue {
                    let _ = write!(line, ": {}", bounded(issue, MAX_ISSUE));
                }
                under.push(line);
            }
            let mut extra = Vec::new();
            if c.starting_nodes > 0 {
                extra.push(format!("{} starting", c.starting_nodes));
            }
            if c.incompatible_nodes > 0 {
                extra.push(format!("{} incompatible", c.incompatible_nodes));
            }
            let nodes = if extra.is_empty() {
                format!("{}/{}", c.covered_nodes, c.compatible_nodes)
            } else {
                format!(
                    "{}/{} ({})",
                    c.covered_nodes,
                    c.compatible_nodes,
                    extra.join(", ")
                )
            };
            rows.push((
                [
                    account(&c.account_id),
                    bounded(&c.region, 32),
                    bounded(&c.cluster_name, MAX_NAME),
                    c.coverage_status.as_str().to_owned(),
                    nodes,
                    c.issue
                        .as_deref()
                        .map(|i| bounded(i, MAX_ISSUE))
                        .unwrap_or_else(|| "-".to_owned()),
                ],
                under,
            ));
        }
        for a in &self.accounts {
            let has_clusters = self.clusters.iter().any(|c| c.account_id == a.account_id);
            let problem = matches!(
                a.sweep_state,
                SweepState::Failed | SweepState::Partial | SweepState::NotSwept
            );
            if has_clusters && !problem {
                continue;
            }
            let what = match a.sweep_state {
                SweepState::Disabled => format!(
                    "runtime monitoring {} ({}): not swept",
                    a.monitoring.as_str(),
                    a.reason.as_str()
                ),
                SweepState::Inactive => "not active in the organization: not swept".to_owned(),
                SweepState::Swept if a.excluded_clusters > 0 => format!(
                    "no cluster swept ({} excluded by peregrine:managed)",
                    a.excluded_clusters
                ),
                SweepState::Swept => "no clusters".to_owned(),
                _ => a
                    .issues
                    .first()
                    .map(|i| bounded(&i.text(), MAX_ISSUE))
                    .unwrap_or_default(),
            };
            rows.push((
                [
                    account(&a.account_id),
                    "-".to_owned(),
                    "-".to_owned(),
                    a.sweep_state.as_str().to_owned(),
                    "-".to_owned(),
                    what,
                ],
                Vec::new(),
            ));
        }
        rows.sort_by(|a, b| a.0[0].cmp(&b.0[0]).then(a.0[2].cmp(&b.0[2])));

        let header = [
            "ACCOUNT".to_owned(),
            "REGION".to_owned(),
            "CLUSTER".to_owned(),
            "STATUS".to_owned(),
            "NODES".to_owned(),
            "ISSUE".to_owned(),
        ];
        let mut widths = [0usize; 6];
        for cells in std::iter::once(&header).chain(rows.iter().map(|(c, _)| c)) {
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String; 6]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(cell);
                } else {
                    let _ = write!(out, "{cell:<w$}  ");
                }
            }
            out.trim_end().to_owned()
        };
        let indent = " ".repeat(widths[0] + 2);
        let mut out = String::new();
        out.push_str(&line(&header));
        out.push('\n');
        for (cells, under) in &rows {
            out.push_str(&line(cells));
            out.push('\n');
            for u in under {
                let _ = writeln!(out, "{indent}{u}");
            }
        }
        if let Some(s) = &self.statistics {
            let counts = |m: Vec<(String, u64)>| {
                m.into_iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "\nclusters: {}; nodes covered: {}/{}; accounts: {}{}",
                counts(
                    s.count_by_coverage_status
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), *v))
                        .collect()
                ),
                s.covered_nodes,
                s.compatible_nodes,
                counts(
                    s.count_by_sweep_state
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), *v))
                        .collect()
                ),
                if s.complete { "" } else { " (incomplete)" },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peregrine_event::Timestamp;
    use peregrine_org::config::{Management, Monitoring, Reason};
    use peregrine_org::coverage::{CoverageStatus, ManagementType};

    fn account(id: &str, name: &str, state: SweepState) -> AccountCoverage {
        AccountCoverage {
            account_id: id.into(),
            account_name: name.into(),
            monitoring: if state == SweepState::Disabled {
                Monitoring::Disabled
            } else {
                Monitoring::Enabled
            },
            management: Management::Manual,
            reason: Reason::AccountSetting,
            sweep_state: state,
            issues: Vec::new(),
            count_by_coverage_status: BTreeMap::new(),
            excluded_clusters: 0,
            updated_at: Timestamp::from_unix_nanos(0),
        }
    }

    fn cluster(account: &str, name: &str, covered: u64, missing: &[&str]) -> ClusterCoverage {
        ClusterCoverage {
            account_id: account.into(),
            region: "us-east-1".into(),
            cluster_name: name.into(),
            cluster_arn: String::new(),
            kubernetes_version: None,
            coverage_status: if missing.is_empty() {
                CoverageStatus::Healthy
            } else {
                CoverageStatus::Unhealthy
            },
            issue: (!missing.is_empty())
                .then(|| format!("Agent not reporting:{} of 3 nodes", missing.len())),
            issues: Vec::new(),
            covered_nodes: covered,
            compatible_nodes: covered + missing.len() as u64,
            degraded_nodes: 0,
            starting_nodes: 0,
            incompatible_nodes: 0,
            desired_nodes: None,
            nodes_without_agent: missing.iter().map(|s| (*s).to_owned()).collect(),
            agent_versions: BTreeMap::new(),
            management_type: ManagementType::Manual,
            updated_at: Timestamp::from_unix_nanos(0),
        }
    }

    #[test]
    fn clusters_and_accounts_without_clusters_are_rows() {
        let view = CoverageView {
            accounts: vec![
                account("111111111111", "payments", SweepState::Swept),
                account("222222222222", "analytics", SweepState::Swept),
                account("333333333333", "sandbox", SweepState::Disabled),
            ],
            clusters: vec![
                cluster("111111111111", "prod", 3, &[]),
                cluster("222222222222", "batch", 2, &["ip-10-0-1-6.ec2.internal"]),
            ],
            ..CoverageView::default()
        };
        let text = view.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ACCOUNT"), "{text}");
        let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            words(lines[1]),
            [
                "111111111111",
                "payments",
                "us-east-1",
                "prod",
                "HEALTHY",
                "3/3",
                "-"
            ]
        );
        assert_eq!(
            words(lines[2])[..6],
            [
                "222222222222",
                "analytics",
                "us-east-1",
                "batch",
                "UNHEALTHY",
                "2/3"
            ]
        );
        assert!(
            lines[2].ends_with("Agent not reporting:1 of 3 nodes"),
            "{text}"
        );
        assert_eq!(
            lines[3].trim(),
            "nodes without agent: ip-10-0-1-6.ec2.internal"
        );
        assert!(
            lines[3].starts_with(&" ".repeat("222222222222 analytics  ".len())),
            "{text}"
        );
        assert_eq!(
            words(lines[4])[..5],
            ["333333333333", "sandbox", "-", "-", "DISABLED"]
        );
        assert!(lines[4].contains("runtime monitoring DISABLED (ACCOUNT_SETTING)"));
    }

    #[test]
    fn names_from_accounts_and_agents_cannot_write_to_the_terminal() {
        let view = CoverageView {
            accounts: vec![account(
                "111111111111",
                "evil\u{1b}[2J\rname\u{202e}",
                SweepState::Swept,
            )],
            clusters: vec![cluster(
                "111111111111",
                "prod\nFAKE LINE",
                0,
                &["ip-1\u{1b}]0;title\u{7}"],
            )],
            ..CoverageView::default()
        };
        let text = view.render();
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.contains("evil\u{FFFD}[2J\u{FFFD}name\u{FFFD}"),
            "{text}"
        );
    }
}
