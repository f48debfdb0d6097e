//! One sweep of the organization (see the crate's documentation and `docs/coverage.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use aws_config::SdkConfig;
use futures_util::{FutureExt, StreamExt};
use peregrine_event::Timestamp;
use peregrine_finding::eventbridge::PutEventsEntry;
use peregrine_lambda::InvocationError;
use peregrine_org::config::{
    ClusterScope, Decision, Management, MemberAccount, Monitoring, OrgSettings, Reason,
};
use peregrine_org::coverage::{
    AccountCoverage, ClusterCoverage, CoverageStatistics, CoverageStatus, EVENT_DETAIL_TYPE,
    EVENT_SOURCE, Issue, IssueKind, ManagementType, StatusChange, SweepState, rank,
};
use peregrine_org::inventory::ClusterInventory;
use peregrine_org::tags::{TagChoice, select};
use peregrine_store::{
    ConfigStore, CoverageStore, DynamoConfigStore, DynamoCoverageStore, DynamoHeartbeatStore,
    EntryResult, EventBridgeBus, FindingBus, HeartbeatReader, StoreError, StoredCluster,
};
use serde::{Deserialize, Serialize};

use crate::assess::{Thresholds, assess, oldest_version};
use crate::config::Config;
use crate::discover::{
    CallFailure, MemberRole, RegionInventory, in_region, list_accounts, partition, region_inventory,
};
use crate::manage::{AgentManager, AutoManagement, ManagementOutcome};

/// Clusters of one account and region assessed at the same time.
const CLUSTER_CONCURRENCY: usize = 4;

/// The sweeper's clients, tables and settings, built once per cold start.
pub struct CoverageDeps<M = AutoManagement> {
    pub config: Config,
    /// The sweeper's own configuration: its credentials assume the member roles.
    pub sdk: SdkConfig,
    /// The regions swept in each account (the configured ones, else the function's own).
    pub regions: Vec<String>,
    pub organizations: aws_sdk_organizations::Client,
    pub sts: aws_sdk_sts::Client,
    pub settings: DynamoConfigStore,
    pub coverage: DynamoCoverageStore,
    pub heartbeats: DynamoHeartbeatStore,
    pub bus: EventBridgeBus,
    pub role: MemberRole,
    pub manager: M,
}

impl CoverageDeps<AutoManagement> {
    /// The deps of the Lambda: automatic agent management with the configuration's settings.
    pub fn from_sdk(sdk: &SdkConfig, config: Config) -> Self {
        let own_region = sdk
            .region()
            .map(|r| r.as_ref().to_owned())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let regions = if config.regions.is_empty() {
            vec![own_region.clone()]
        } else {
            config.regions.clone()
        };
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        CoverageDeps {
            regions,
            organizations: aws_sdk_organizations::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            settings: DynamoConfigStore::new(dynamo.clone(), &config.config_table),
            coverage: DynamoCoverageStore::new(dynamo.clone(), &config.coverage_table),
            heartbeats: DynamoHeartbeatStore::new(dynamo, &config.heartbeats_table),
            bus: EventBridgeBus::new(
                aws_sdk_eventbridge::Client::new(sdk),
                &config.event_bus_name,
            ),
            role: MemberRole {
                role_name: config.member_role_name.clone(),
                external_id: config.external_id.clone(),
                partition: partition(&own_region).to_owned(),
            },
            manager: AutoManagement::new(config.manage.clone()),
            sdk: sdk.clone(),
            config,
        }
    }
}

impl<M> CoverageDeps<M> {
    /// The same deps with another agent manager (`crates/manage`'s, or a test's).
    pub fn with_manager<N: AgentManager>(self, manager: N) -> CoverageDeps<N> {
        CoverageDeps {
            config: self.config,
            sdk: self.sdk,
            regions: self.regions,
            organizations: self.organizations,
            sts: self.sts,
            settings: self.settings,
            coverage: self.coverage,
            heartbeats: self.heartbeats,
            bus: self.bus,
            role: self.role,
            manager,
        }
    }
}

/// A sweep that could not run at all: the next scheduled one repeats it. (A failing account
/// never fails the sweep; it is that account's issue.)
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("reading or writing the organization's tables: {0}")]
    Store(#[from] StoreError),
    #[error("listing the organization's accounts: {0}")]
    Organization(CallFailure),
}

impl InvocationError for SweepError {
    fn error_type(&self) -> &'static str {
        "SweepError"
    }
}

peregrine_lambda::into_diagnostic!(SweepError);

/// What a sweep did (the function's response).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepSummary {
    /// Accounts the organization listed.
    pub accounts: usize,
    pub count_by_sweep_state: BTreeMap<SweepState, u64>,
    /// Clusters by status, as the coverage table now says.
    pub count_by_coverage_status: BTreeMap<CoverageStatus, u64>,
    /// Clusters assessed in this sweep.
    pub clusters_swept: usize,
    /// Rows of clusters that no longer exist, or are no longer swept, removed.
    pub clusters_removed: usize,
    /// Clusters handed to the agent manager.
    pub clusters_managed: usize,
    /// Clusters (and regions releasing deleted clusters) where the agent manager changed
    /// something: zero when everything was already in place.
    pub management_changes: usize,
    /// Status-change events published.
    pub events_published: usize,
    /// Status changes whose event could not be published (retried at the next sweep).
    pub events_failed: usize,
    /// Every enabled account was reached before the deadline.
    pub complete: bool,
    pub duration_ms: u64,
}

/// One cluster assessed.
struct ClusterResult {
    coverage: ClusterCoverage,
    published: bool,
    publish_failed: bool,
    managed: bool,
    /// The agent manager changed something.
    management_changed: bool,
}

/// One account swept.
struct AccountResult {
    account: MemberAccount,
    decision: Decision,
    state: SweepState,
    issues: Vec<Issue>,
    clusters: Vec<ClusterResult>,
    /// Regions whose inventory failed: their previous rows are kept.
    failed_regions: BTreeSet<String>,
    excluded: u64,
    removed: usize,
    /// Regions where releasing deleted clusters changed something.
    releases_changed: usize,
}

fn hint_for_role(role: &MemberRole, account: &str) -> String {
    format!(
        "is {} deployed in the account (the template's MemberRoleStackSet) and does its ExternalId match?",
        role.arn(account)
    )
}

/// The `Decision` for an account whose config row cannot be read: leave it alone.
fn untouched(reason: Reason) -> Decision {
    Decision {
        monitoring: Monitoring::Disabled,
        management: Management::Manual,
        cluster_scope: ClusterScope::All,
        reason,
        write: None,
    }
}

impl<M: AgentManager> CoverageDeps<M> {
    /// The organization's row, written from the defaults if there is none yet.
    async fn org_settings(
        &self,
        stored: Option<OrgSettings>,
        now: Timestamp,
    ) -> Result<OrgSettings, SweepError> {
        if let Some(org) = stored {
            return Ok(org);
        }
        let initial = OrgSettings::initial(
            self.config.default_auto_enable,
            self.config.default_management,
            now,
        );
        if self.settings.put_org(&initial, true).await? {
            tracing::info!(auto_enable = %initial.auto_enable, "organization configuration initialised");
            return Ok(initial);
        }
        // Somebody wrote it meanwhile.
        Ok(self.settings.load().await?.org.unwrap_or(initial))
    }

    /// The organization's accounts; an account outside any organization sweeps itself.
    async fn accounts(&self) -> Result<Vec<MemberAccount>, SweepError> {
        match list_accounts(&self.organizations).await {
            Ok(accounts) => Ok(accounts),
            Err(f) if f.code == "AWSOrganizationsNotInUseException" => {
                let me = self.sts.get_caller_identity().send().await.map_err(|e| {
                    SweepError::Organization(CallFailure::from_sdk("GetCallerIdentity", &e))
                })?;
                tracing::info!("not in an organization: sweeping this account only");
                Ok(vec![MemberAccount {
                    id: me.account().unwrap_or_default().to_owned(),
                    name: String::new(),
                    state: "ACTIVE".into(),
                    joined_at: None,
                }])
            }
            Err(f) => Err(SweepError::Organization(f)),
        }
    }

    /// The agent manager on the managed clusters of one account and region. Clusters of one
    /// VPC share its SQS endpoint: they are managed one after the other; VPCs in parallel.
    async fn manage_region(
        &self,
        member: &SdkConfig,
        jobs: &[(&ClusterInventory, bool)],
    ) -> BTreeMap<String, ManagementOutcome> {
        let mut by_vpc: BTreeMap<&str, Vec<&ClusterInventory>> = BTreeMap::new();
        // A cluster being created, deleted or failed has no API server to deploy to (and one
        // being deleted would only get an endpoint share back): it waits for a later sweep.
        let ready = |c: &ClusterInventory| matches!(c.status.as_str(), "ACTIVE" | "UPDATING");
        for (cluster, _) in jobs
            .iter()
            .filter(|(cluster, managed)| *managed && ready(cluster))
        {
            // A cluster without a VPC id is a group of its own (management reports it).
            let key = cluster.vpc_id.as_deref().unwrap_or(cluster.name.as_str());
            by_vpc.entry(key).or_default().push(cluster);
        }
        let futures: Vec<_> = by_vpc
            .into_values()
            .map(|clusters| {
                async move {
                    let mut done = Vec::with_capacity(clusters.len());
                    for cluster in clusters {
                        let outcome = self.manager.manage(member, cluster).await;
                        done.push((cluster.name.clone(), outcome));
                    }
                    done
                }
                .boxed()
            })
            .collect();
        futures_util::stream::iter(futures)
            .buffer_unordered(CLUSTER_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn sweep_cluster(
        &self,
        cluster: &ClusterInventory,
        inventory: &RegionInventory,
        management: Option<ManagementOutcome>,
        thresholds: &Thresholds,
        now: Timestamp,
    ) -> Result<ClusterResult, StoreError> {
        let managed = management.is_some();
        let management_changed = management.as_ref().is_some_and(|m| m.changed);
        let mut extra = Vec::new();
        if !self.config.allowed_source_vpce.is_empty()
            && let Some(issue) =
                vpc_endpoint_issue(cluster, inventory, &self.config.allowed_source_vpce)
        {
            extra.push(issue);
        }
        extra.extend(management.map(|m| m.issues).unwrap_or_default());
        let heartbeats = self
            .heartbeats
            .cluster_heartbeats(&cluster.arn, &cluster.name)
            .await?;
        let previous = self
            .coverage
            .nodes(&cluster.account_id, &cluster.region, &cluster.name)
            .await?;
        let management = if managed {
            ManagementType::AutoManaged
        } else {
            ManagementType::Manual
        };
        let (coverage, nodes) = assess(
            cluster,
            &heartbeats,
            &previous,
            extra,
            management,
            thresholds,
            now,
        );
        let current: BTreeSet<&str> = nodes.iter().map(|n| n.instance_id.as_str()).collect();
        let gone: Vec<String> = previous
            .iter()
            .filter(|p| !current.contains(p.instance_id.as_str()))
            .map(|p| p.instance_id.clone())
            .collect();
        self.coverage
            .write_nodes(
                &cluster.account_id,
                &cluster.region,
                &cluster.name,
                &nodes,
                &gone,
            )
            .await?;
        let old = self.coverage.put_cluster(&coverage).await?;
        let (published, publish_failed) = self.announce(&coverage, old.as_ref()).await?;
        Ok(ClusterResult {
            coverage,
            published,
            publish_failed,
            managed,
            management_changed,
        })
    }

    /// Publishes the cluster's status if it differs from the one last published (once per
    /// change: the row remembers what was published), and records a change of status.
    /// Returns (published, failed to publish).
    async fn announce(
        &self,
        c: &ClusterCoverage,
        old: Option<&StoredCluster>,
    ) -> Result<(bool, bool), StoreError> {
        let changed_from = old
            .map(|o| o.coverage.coverage_status)
            .filter(|s| *s != c.coverage_status);
        let last = old.and_then(|o| o.last_published);
        // A cluster seen for the first time counts as having been healthy: a healthy one
        // publishes nothing, an unhealthy one publishes with `previousStatus: null`.
        let baseline = last.unwrap_or(CoverageStatus::Healthy);
        let mut record = last.is_none() && c.coverage_status == baseline;
        let (mut published, mut failed) = (false, false);
        if c.coverage_status != baseline {
            let detail = StatusChange::new(c, last, oldest_version(c).as_deref());
            let entry = PutEventsEntry {
                source: EVENT_SOURCE.to_owned(),
                detail_type: EVENT_DETAIL_TYPE.to_owned(),
                detail: serde_json::to_string(&detail).unwrap_or_default(),
                resources: vec![c.cluster_arn.clone()]
                    .into_iter()
                    .filter(|a| !a.is_empty())
                    .collect(),
            };
            match self.bus.put_events(std::slice::from_ref(&entry)).await {
                Ok(results) if matches!(results.first(), Some(EntryResult::Published { .. })) => {
                    published = true;
                    record = true;
                }
                Ok(results) => {
                    failed = true;
                    tracing::warn!(cluster = %c.cluster_name, account = %c.account_id, result = ?results.first(), "status change not published; retried at the next sweep");
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(cluster = %c.cluster_name, account = %c.account_id, error = %e, "status change not published; retried at the next sweep");
                }
            }
        }
        if changed_from.is_some() || record {
            self.coverage
                .settle_cluster(c, changed_from, record)
                .await?;
        }
        Ok((published, failed))
    }

    async fn sweep_account(
        &self,
        account: MemberAccount,
        decision: Decision,
        previous: &[StoredCluster],
        thresholds: &Thresholds,
        now: Timestamp,
        deadline: Option<Instant>,
    ) -> AccountResult {
        let mut result = AccountResult {
            account,
            decision,
            state: SweepState::Swept,
            issues: Vec::new(),
            clusters: Vec::new(),
            failed_regions: BTreeSet::new(),
            excluded: 0,
            removed: 0,
            releases_changed: 0,
        };
        let id = result.account.id.clone();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            result.state = SweepState::NotSwept;
            result.issues.push(Issue::new(
                IssueKind::NotSwept,
                "the sweep's deadline came first; the previous rows are kept",
            ));
            result.failed_regions = self.regions.iter().cloned().collect();
            return result;
        }
        let member = match self.role.assume(&self.sts, &self.sdk, &id).await {
            Ok(m) => m,
            Err(f) => {
                tracing::warn!(account = %id, error = %f, "member role not assumable; account skipped");
                result.state = SweepState::Failed;
                result
                    .issues
                    .push(f.issue(&self.role.arn(&id), &hint_for_role(&self.role, &id)));
                result.failed_regions = self.regions.iter().cloned().collect();
                return result;
            }
        };
        for region in &self.regions {
            let cfg = in_region(&member, region);
            let inventory = match region_inventory(
                &cfg,
                &id,
                region,
                !self.config.allowed_source_vpce.is_empty(),
            )
            .await
            {
                Ok(i) => i,
                Err(f) => {
                    tracing::warn!(account = %id, region = %region, error = %f, "region not swept");
                    result.issues.push(f.issue(region, ""));
                    result.failed_regions.insert(region.clone());
                    continue;
                }
            };
            let mut swept_names = BTreeSet::new();
            let mut jobs = Vec::new();
            for cluster in &inventory.clusters {
                let selection = select(
                    TagChoice::of(&cluster.tags),
                    result.decision.cluster_scope,
                    result.decision.management,
                );
                if !selection.swept {
                    result.excluded += 1;
                    continue;
                }
                swept_names.insert(cluster.name.clone());
                jobs.push((cluster, selection.managed));
            }
            let mut management = self.manage_region(&cfg, &jobs).await;
            // Every cluster of the region, swept or not, counts as existing: only deleted
            // clusters give their endpoint share back.
            let existing: BTreeSet<String> =
                inventory.clusters.iter().map(|c| c.name.clone()).collect();
            let released = self
                .manager
                .release_departed(&cfg, &id, region, &existing)
                .await;
            result.releases_changed += usize::from(released.changed);
            result.issues.extend(
                released
                    .issues
                    .into_iter()
                    .map(|i| Issue::new(i.kind, format!("{region}: {}", i.detail))),
            );
            // The futures are built first and streamed as a vector: a stream holding the
            // closure over borrowed jobs is not `Send` for every lifetime (rust-lang/rust#102211).
            let futures: Vec<_> = jobs
                .into_iter()
                .map(|(cluster, managed)| {
                    let inventory = &inventory;
                    let outcome =
                        managed.then(|| management.remove(&cluster.name).unwrap_or_default());
                    async move {
                        let r = self
                            .sweep_cluster(cluster, inventory, outcome, thresholds, now)
                            .await;
                        (cluster.name.clone(), r)
                    }
                    .boxed()
                })
                .collect();
            let outcomes: Vec<(String, Result<ClusterResult, StoreError>)> =
                futures_util::stream::iter(futures)
                    .buffer_unordered(CLUSTER_CONCURRENCY)
                    .collect()
                    .await;
            for (name, outcome) in outcomes {
                match outcome {
                    Ok(c) => result.clusters.push(c),
                    Err(e) => {
                        tracing::warn!(account = %id, region = %region, cluster = %name, error = %e, "cluster not updated");
                        result.issues.push(Issue::new(
                            IssueKind::InventoryFailed,
                            format!("{region}: cluster {name}: {e}"),
                        ));
                        result.failed_regions.insert(region.clone());
                    }
                }
            }
            // Rows of clusters that are gone, or no longer swept (tagged out).
            for old in previous.iter().filter(|p| p.coverage.region == *region) {
                if swept_names.contains(&old.coverage.cluster_name) {
                    continue;
                }
                match self
                    .coverage
                    .delete_cluster(&id, region, &old.coverage.cluster_name)
                    .await
                {
                    Ok(()) => result.removed += 1,
                    Err(e) => {
                        tracing::warn!(account = %id, cluster = %old.coverage.cluster_name, error = %e, "stale cluster row not removed")
                    }
                }
            }
        }
        result.state = if result.failed_regions.is_empty() {
            SweepState::Swept
        } else if result.failed_regions.len() < self.regions.len() || !result.clusters.is_empty() {
            SweepState::Partial
        } else {
            SweepState::Failed
        };
        result
    }

    /// Sweeps the organization at `now`, starting no account after `deadline`.
    pub async fn sweep(
        &self,
        now: Timestamp,
        deadline: Option<Instant>,
    ) -> Result<SweepSummary, SweepError> {
        let started = Instant::now();
        let stored = self.settings.load().await?;
        let org = self.org_settings(stored.org.clone(), now).await?;
        let accounts = self.accounts().await?;
        let mut previous: BTreeMap<String, Vec<StoredCluster>> = BTreeMap::new();
        for c in self.coverage.clusters().await? {
            previous
                .entry(c.coverage.account_id.clone())
                .or_default()
                .push(c);
        }
        // Each account's state in the last sweep: accounts it did not reach go first this time.
        let last_state: BTreeMap<String, SweepState> = self
            .coverage
            .accounts()
            .await?
            .into_iter()
            .map(|a| (a.account_id, a.sweep_state))
            .collect();
        let thresholds = Thresholds {
            stale_after: self.config.stale_after,
            minimum_version: self.config.minimum_agent_version.clone(),
        };
        let mut summary = SweepSummary {
            accounts: accounts.len(),
            complete: true,
            ..SweepSummary::default()
        };
        let mut stats = CoverageStatistics {
            sweep_started_at: Some(now),
            ..CoverageStatistics::default()
        };

        // What the configuration decides, and the rows it writes.
        let mut to_sweep = Vec::new();
        let mut skipped = Vec::new();
        for account in &accounts {
            if let Some(why) = stored.invalid.get(&account.id) {
                tracing::error!(account = %account.id, reason = %why, "unreadable config row; account left alone");
                skipped.push((
                    account.clone(),
                    untouched(Reason::AccountSetting),
                    SweepState::Failed,
                    vec![Issue::new(
                        IssueKind::InventoryFailed,
                        format!("the account's config row is unreadable: {why}"),
                    )],
                ));
                continue;
            }
            let row = stored.accounts.get(&account.id);
            let decision = org.decide(account, row, now);
            if let Some(write) = &decision.write {
                match self
                    .settings
                    .put_account(write, row.map(|r| r.updated_at))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(account = %account.id, "config row changed meanwhile; this sweep uses what it read")
                    }
                    Err(e) => {
                        tracing::warn!(account = %account.id, error = %e, "config row not written")
                    }
                }
            }
            if !account.is_active() {
                skipped.push((account.clone(), decision, SweepState::Inactive, Vec::new()));
            } else if decision.monitoring == Monitoring::Disabled {
                skipped.push((account.clone(), decision, SweepState::Disabled, Vec::new()));
            } else {
                to_sweep.push((account.clone(), decision));
            }
        }

        // A sweep that meets its deadline leaves the rest for the next one; those go first then,
        // so no account is left behind sweep after sweep (new accounts count as not reached).
        not_reached_first(&mut to_sweep, &last_state);
        let results: Vec<AccountResult> = futures_util::stream::iter(to_sweep)
            .map(|(account, decision)| {
                let previous = previous
                    .get(&account.id)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let thresholds = &thresholds;
                async move {
                    self.sweep_account(account, decision, previous, thresholds, now, deadline)
                        .await
                }
                .boxed()
            })
            .buffer_unordered(self.config.account_concurrency)
            .collect()
            .await;

        let listed: BTreeSet<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
        for r in &results {
            let mut counts: BTreeMap<CoverageStatus, u64> = BTreeMap::new();
            for c in &r.clusters {
                *counts.entry(c.coverage.coverage_status).or_default() += 1;
                stats.covered_nodes += c.coverage.covered_nodes;
                stats.compatible_nodes += c.coverage.compatible_nodes;
                summary.clusters_swept += 1;
                summary.clusters_managed += usize::from(c.managed);
                summary.management_changes += usize::from(c.management_changed);
                summary.events_published += usize::from(c.published);
                summary.events_failed += usize::from(c.publish_failed);
            }
            // Rows kept from regions that could not be swept still count.
            let fresh: BTreeSet<(&str, &str)> = r
                .clusters
                .iter()
                .map(|c| (c.coverage.region.as_str(), c.coverage.cluster_name.as_str()))
                .collect();
            for old in previous.get(&r.account.id).into_iter().flatten() {
                let c = &old.coverage;
                if r.failed_regions.contains(&c.region)
                    && !fresh.contains(&(c.region.as_str(), c.cluster_name.as_str()))
                {
                    *counts.entry(c.coverage_status).or_default() += 1;
                    stats.covered_nodes += c.covered_nodes;
                    stats.compatible_nodes += c.compatible_nodes;
                }
            }
            summary.clusters_removed += r.removed;
            summary.management_changes += r.releases_changed;
            if r.state == SweepState::NotSwept {
                summary.complete = false;
            }
            self.record_account(
                r.account.clone(),
                &r.decision,
                r.state,
                r.issues.clone(),
                counts,
                r.excluded,
                now,
                &mut stats,
            )
            .await;
        }
        for (account, decision, state, issues) in skipped {
            let keep = state == SweepState::Failed;
            let mut counts = BTreeMap::new();
            for old in previous.get(&account.id).into_iter().flatten() {
                if keep {
                    *counts.entry(old.coverage.coverage_status).or_default() += 1;
                } else if self.remove(old).await {
                    summary.clusters_removed += 1;
                }
            }
            self.record_account(
                account, &decision, state, issues, counts, 0, now, &mut stats,
            )
            .await;
        }
        // Accounts that left the organization.
        for (id, rows) in &previous {
            if listed.contains(id.as_str()) {
                continue;
            }
            for old in rows {
                if self.remove(old).await {
                    summary.clusters_removed += 1;
                }
            }
        }
        for id in last_state.keys().filter(|id| !listed.contains(id.as_str())) {
            if let Err(e) = self.coverage.delete_account(id).await {
                tracing::warn!(account = %id, error = %e, "row of an account that left not removed");
            }
        }

        stats
            .count_by_resource_type
            .insert("EKS".into(), stats.count_by_coverage_status.values().sum());
        stats.sweep_finished_at = Some(Timestamp::now().max(now));
        stats.complete = summary.complete;
        summary.count_by_coverage_status = stats.count_by_coverage_status.clone();
        summary.count_by_sweep_state = stats.count_by_sweep_state.clone();
        self.coverage.put_statistics(&stats).await?;
        summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            accounts = summary.accounts,
            clusters = summary.clusters_swept,
            events = summary.events_published,
            removed = summary.clusters_removed,
            complete = summary.complete,
            duration_ms = summary.duration_ms,
            states = ?summary.count_by_sweep_state,
            statuses = ?summary.count_by_coverage_status,
            "sweep"
        );
        Ok(summary)
    }

    async fn remove(&self, old: &StoredCluster) -> bool {
        let c = &old.coverage;
        match self
            .coverage
            .delete_cluster(&c.account_id, &c.region, &c.cluster_name)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(account = %c.account_id, cluster = %c.cluster_name, error = %e, "cluster row not removed");
                false
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_account(
        &self,
        account: MemberAccount,
        decision: &Decision,
        state: SweepState,
        issues: Vec<Issue>,
        counts: BTreeMap<CoverageStatus, u64>,
        excluded: u64,
        now: Timestamp,
        stats: &mut CoverageStatistics,
    ) {
        *stats.count_by_sweep_state.entry(state).or_default() += 1;
        for (status, n) in &counts {
            *stats.count_by_coverage_status.entry(*status).or_default() += n;
        }
        if !counts.is_empty() {
            stats
                .count_by_account
                .insert(account.id.clone(), counts.clone());
        }
        let row = AccountCoverage {
            account_id: account.id,
            account_name: peregrine_org::text::bounded(&account.name, 128),
            monitoring: decision.monitoring,
            management: decision.management,
            reason: decision.reason,
            sweep_state: state,
            issues: rank(issues),
            count_by_coverage_status: counts,
            excluded_clusters: excluded,
            updated_at: now,
        };
        if let Err(e) = self.coverage.put_account(&row).await {
            tracing::warn!(account = %row.account_id, error = %e, "account row not written");
        }
    }
}

/// Puts the accounts that the last sweep did not reach (or has no row of) first, keeping the
/// order otherwise.
fn not_reached_first<T>(
    to_sweep: &mut [(MemberAccount, T)],
    last_state: &BTreeMap<String, SweepState>,
) {
    to_sweep.sort_by_key(|(account, _)| {
        !matches!(
            last_state.get(&account.id),
            None | Some(SweepState::NotSwept)
        )
    });
}

/// "VPC endpoint missing" when the queue only takes sends through the endpoints in `allowed`
/// and the cluster's VPC has no available SQS endpoint among them.
fn vpc_endpoint_issue(
    cluster: &ClusterInventory,
    inventory: &RegionInventory,
    allowed: &[String],
) -> Option<Issue> {
    let vpc = cluster.vpc_id.as_deref()?;
    let endpoints = inventory
        .sqs_endpoints
        .get(vpc)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let usable = endpoints
        .iter()
        .any(|(id, state)| state == "available" && allowed.iter().any(|a| a == id));
    if usable {
        return None;
    }
    let detail = if endpoints.is_empty() {
        format!(
            "{vpc} has no SQS interface endpoint; the events queue only accepts agents' messages through AllowedSourceVpce"
        )
    } else {
        let found: Vec<String> = endpoints
            .iter()
            .map(|(id, s)| format!("{id} ({s})"))
            .collect();
        format!(
            "{vpc} has SQS endpoints {} but none is available and listed in AllowedSourceVpce",
            found.join(", ")
        )
    };
    Some(Issue::new(IssueKind::VpcEndpointMissing, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_the_last_sweep_did_not_reach_go_first() {
        let account = |id: &str| MemberAccount {
            id: id.into(),
            name: String::new(),
            state: "ACTIVE".into(),
            joined_at: None,
        };
        let mut order: Vec<(MemberAccount, ())> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .map(|id| (account(id), ()))
            .collect();
        let last: BTreeMap<String, SweepState> = [
            ("a", SweepState::Swept),
            ("b", SweepState::Failed),
            ("c", SweepState::NotSwept),
            ("e", SweepState::NotSwept),
        ]
        .into_iter()
        .map(|(id, s)| (id.to_owned(), s))
        .collect();
        not_reached_first(&mut order, &last);
        let ids: Vec<&str> = order.iter().map(|(a, ())| a.id.as_str()).collect();
        assert_eq!(ids, ["c", "d", "e", "a", "b"]);
    }

    #[test]
    fn a_vpc_needs_an_allowed_available_endpoint() {
        let cluster = ClusterInventory {
            vpc_id: Some("vpc-1".into()),
            ..ClusterInventory::default()
        };
        let mut inv = RegionInventory::default();
        let allowed = vec!["vpce-a".to_owned()];
        let issue = vpc_endpoint_issue(&cluster, &inv, &allowed).unwrap();
        assert!(
            issue
                .text()
                .starts_with("VPC endpoint missing:vpc-1 has no SQS"),
            "{}",
            issue.text()
        );
        inv.sqs_endpoints.insert(
            "vpc-1".into(),
            vec![
                ("vpce-b".into(), "available".into()),
                ("vpce-a".into(), "pending".into()),
            ],
        );
        let issue = vpc_endpoint_issue(&cluster, &inv, &allowed).unwrap();
        assert!(
            issue.detail.contains("vpce-b (available)"),
            "{}",
            issue.detail
        );
        inv.sqs_endpoints
            .insert("vpc-1".into(), vec![("vpce-a".into(), "available".into())]);
        assert_eq!(vpc_endpoint_issue(&cluster, &inv, &allowed), None);
    }
}
