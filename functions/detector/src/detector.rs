//! The detector Lambda: agent messages from SQS → findings in DynamoDB, published on
//! EventBridge. See `docs/pipeline.md` for the semantics.

use std::time::Instant;

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use peregrine_aws::backoff::RetryPolicy;
use peregrine_criteria::ArchiveRules;
use peregrine_detect::{Catalog, Engine, Match, RuleError, agent_blinded_finding, to_finding};
use peregrine_event::{Event, Timestamp};
use peregrine_finding::{Finding, FindingEnv, FindingError, flag_additional_info};
use peregrine_lambda::{InvocationError, partial_batch_until, stop_before};
use peregrine_store::{
    ChunkOutcome, ChunkWrite, Coverage, DynamoFindingStore, DynamoHeartbeatStore, EventBridgeBus,
    FindingBus, FindingStore, FindingWrite, HeartbeatRecord, HeartbeatStore, PublishCounts,
    PublishItem, StoreError, add, epoch_seconds, iso, send_and_mark, settle_write,
};
use peregrine_wire::{Header, Heartbeat, Message, ProbeState, WireError};
use serde::Serialize;

use crate::aggregate::{chunk, group_findings, plan_write};
use crate::config::{Config, ConfigError, HEARTBEAT_TTL};
use crate::sender::{Rejection, authorize};

/// The detector's adapters, engine and settings, built once per cold start.
pub struct Deps<S, B, H> {
    pub store: S,
    pub bus: B,
    pub heartbeats: H,
    pub engine: Engine,
    pub config: Config,
    pub retry: RetryPolicy,
}

/// The detector's production adapters.
pub type AwsDeps = Deps<DynamoFindingStore, EventBridgeBus, DynamoHeartbeatStore>;

impl<S, B, H> Deps<S, B, H> {
    /// Loads the built-in detection catalog once.
    pub fn new(store: S, bus: B, heartbeats: H, config: Config) -> Result<Self, DetectorError> {
        let engine = Engine::new([Catalog::builtin()?]);
        for w in engine.warnings() {
            tracing::warn!(warning = %w, "detection rules");
        }
        match &config.agent_senders {
            Some(m) => tracing::info!(
                roles = m.len(),
                "batches are bound to their senders' clusters"
            ),
            None => tracing::warn!(
                "AGENT_SENDERS is not set: any principal allowed to send to the queue can claim \
                 any cluster (see docs/deploy.md, Sender identity)"
            ),
        }
        Ok(Deps {
            store,
            bus,
            heartbeats,
            engine,
            config,
            retry: RetryPolicy::default(),
        })
    }
}

impl AwsDeps {
    /// DynamoDB and EventBridge clients from one SDK configuration.
    pub fn from_sdk(sdk: &SdkConfig, config: Config) -> Result<Self, DetectorError> {
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        Deps::new(
            DynamoFindingStore::new(dynamo.clone(), &config.findings_table, &config.dedupe_table)
                .with_security_hub_export(config.security_hub_product_arn.is_some())
                .with_filters_table(config.filters_table.as_deref()),
            EventBridgeBus::new(
                aws_sdk_eventbridge::Client::new(sdk),
                &config.event_bus_name,
            ),
            DynamoHeartbeatStore::new(dynamo, &config.heartbeats_table),
            config,
        )
    }
}

/// Failures of a whole invocation (every record is retried). Per-message failures are
/// [`MessageError`]s and only fail their message.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("invoked function ARN {0:?} does not name an account; it is needed for finding ids")]
    FunctionArn(String),
    #[error("no region: neither the invoked function ARN nor AWS_REGION names one")]
    NoRegion,
    #[error("the detection catalog failed to load: {0}")]
    Rules(#[from] RuleError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl InvocationError for DetectorError {
    fn error_type(&self) -> &'static str {
        match self {
            DetectorError::FunctionArn(_) | DetectorError::NoRegion => "InvocationError",
            DetectorError::Rules(_) => "RulesError",
            DetectorError::Config(_) => "ConfigError",
        }
    }
}

peregrine_lambda::into_diagnostic!(DetectorError);

/// Why one message failed. Every variant makes it a `batchItemFailure`: redelivered, and after
/// `maxReceiveCount` receives moved to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the record has no body")]
    NoBody,
    /// Poison: corrupt framing, a newer schema, an inconsistent batch. The error names the
    /// field at fault, never payload contents.
    #[error("undecodable message ({kind}): {source}")]
    Decode {
        kind: &'static str,
        #[source]
        source: WireError,
    },
    #[error("aggregating findings: {0}")]
    Finding(#[from] FindingError),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Permanent: the sender may not speak for the cluster the header claims. Fails on every
    /// receive, so it reaches the dead-letter queue for inspection.
    #[error("rejected ({}): the sender may not send for this cluster", .0.reason())]
    Rejected(Rejection),
    #[error("chunk {chunk} still conflicted with concurrent writers after {attempts} attempts")]
    Contended { chunk: usize, attempts: u32 },
    /// The suppression filters could not be read or compiled: nothing is written, so no
    /// finding a filter suppresses is published; the message is redelivered.
    #[error("suppression filters unavailable: {0}")]
    Filters(String),
}

/// The kind of a wire error, for logs and metrics.
pub fn wire_error_kind(e: &WireError) -> &'static str {
    match e {
        WireError::BodyTooLarge { .. } => "BodyTooLarge",
        WireError::Base64(_) => "Base64",
        WireError::Decompress(_) => "Decompress",
        WireError::DecompressedTooLarge { .. } => "DecompressedTooLarge",
        WireError::Compress(_) => "Compress",
        WireError::Protobuf(_) => "Protobuf",
        WireError::UnsupportedVersion { .. } => "UnsupportedVersion",
        WireError::MissingHeader => "MissingHeader",
        WireError::MissingBody => "MissingBody",
        WireError::Inconsistent(_) => "Inconsistent",
        WireError::LimitExceeded { .. } => "LimitExceeded",
        WireError::EventTooLarge { .. } => "EventTooLarge",
        WireError::InvalidConfig(_) => "InvalidConfig",
    }
}

/// Where the detector runs: from the invocation's function ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub account_id: String,
    pub region: String,
    pub partition: String,
}

impl Invocation {
    /// `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`; the region
    /// falls back to `AWS_REGION`.
    pub fn from_function_arn(
        arn: &str,
        region_fallback: Option<&str>,
    ) -> Result<Invocation, DetectorError> {
        let parts: Vec<&str> = arn.split(':').collect();
        let (partition, region, account) = match parts.as_slice() {
            ["arn", partition, "lambda", region, account, ..] => (*partition, *region, *account),
            _ => return Err(DetectorError::FunctionArn(arn.to_owned())),
        };
        if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DetectorError::FunctionArn(arn.to_owned()));
        }
        let region = Some(region)
            .filter(|r| !r.is_empty())
            .or(region_fallback.filter(|r| !r.is_empty()))
            .ok_or(DetectorError::NoRegion)?;
        Ok(Invocation {
            account_id: account.to_owned(),
            region: region.to_owned(),
            partition: if partition.is_empty() {
                "aws"
            } else {
                partition
            }
            .to_owned(),
        })
    }
}

/// What one message did, for logs, tests and the benchmark.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReport {
    pub heartbeat: bool,
    pub sequence: u64,
    pub events: usize,
    /// Rule matches, before aggregation.
    pub matches: usize,
    /// Agent times (the header's and events') outside the skew window, clamped to the receive
    /// time.
    pub clamped: usize,
    pub store: StoreReport,
}

/// What writing a batch's findings did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreReport {
    /// Distinct findings (ids) in the batch.
    pub findings: usize,
    pub chunks_applied: usize,
    /// Chunks an earlier delivery already wrote.
    pub chunks_skipped: usize,
    pub new_findings: usize,
    pub updated_findings: usize,
    pub publish: PublishCounts,
    /// Retries after version conflicts or throttling.
    pub retries: u32,
    /// Findings an ARCHIVE filter matched: stored archived, not published.
    pub suppressed: usize,
}

/// The detector Lambda's handler.
pub async fn handle<S: FindingStore, B: FindingBus, H: HeartbeatStore>(
    deps: &Deps<S, B, H>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, DetectorError> {
    handle_at(deps, event, Timestamp::now()).await
}

/// [`handle`] with the clock as a parameter (tests run it forward).
pub async fn handle_at<S: FindingStore, B: FindingBus, H: HeartbeatStore>(
    deps: &Deps<S, B, H>,
    event: LambdaEvent<SqsEvent>,
    now: Timestamp,
) -> Result<SqsBatchResponse, DetectorError> {
    let inv = Invocation::from_function_arn(
        &event.context.invoked_function_arn,
        deps.config.region.as_deref(),
    )?;
    let records = event.payload.records;
    let total = records.len();
    let inv = &inv;
    // Records not started by then are returned for redelivery rather than lost to a timeout.
    let stop_at = stop_before(event.context.deadline, deps.config.deadline_margin);
    // The filters are read once per invocation. If they cannot be, every record fails and is
    // redelivered (SQS partial failure): nothing is written, so nothing a filter suppresses
    // is published, and nothing is lost.
    let rules = load_archive_rules(deps).await;
    if let Err(e) = &rules {
        tracing::error!(error = %e, records = total, "suppression filters unavailable; the batch is retried");
    }
    let rules = &rules;
    let response = partial_batch_until(records, stop_at, |record| async move {
        let rules = rules
            .as_ref()
            .map_err(|e| MessageError::Filters(e.to_string()))?;
        let body = record.body.as_deref().ok_or(MessageError::NoBody)?;
        let sender = record.attributes.get("SenderId").map(String::as_str);
        let report = process_message_with(deps, inv, body, sender, now, rules).await?;
        tracing::info!(
            heartbeat = report.heartbeat,
            sequence = report.sequence,
            events = report.events,
            matches = report.matches,
            findings = report.store.findings,
            new = report.store.new_findings,
            updated = report.store.updated_findings,
            chunks_applied = report.store.chunks_applied,
            chunks_skipped = report.store.chunks_skipped,
            published = report.store.publish.published,
            publish_failed = report.store.publish.failed,
            retries = report.store.retries,
            suppressed = report.store.suppressed,
            clamped = report.clamped,
            "message processed"
        );
        Ok::<(), MessageError>(())
    })
    .await;
    tracing::info!(
        records = total,
        failed = response.batch_item_failures.len(),
        "invocation done"
    );
    Ok(response)
}

/// The ARCHIVE filters, read from the store (retrying throttling with the detector's backoff)
/// and compiled. A filter that does not compile is an error, never skipped.
pub async fn load_archive_rules<S: FindingStore, B, H>(
    deps: &Deps<S, B, H>,
) -> Result<ArchiveRules, MessageError> {
    let mut attempt = 0;
    let filters = loop {
        attempt += 1;
        match deps.store.filters().await {
            Ok(f) => break f,
            Err(e) if e.is_transient() && attempt < deps.retry.max_attempts => {
                tracing::info!(attempt, error = %e, "reading the filters failed; backing off");
                tokio::time::sleep(deps.retry.delay(attempt)).await;
            }
            Err(e) => return Err(MessageError::Filters(e.to_string())),
        }
    };
    ArchiveRules::new(&filters)
        .map_err(|(name, e)| MessageError::Filters(format!("filter {name:?}: {e}")))
}

/// Decodes and processes one message body. `sender` is the record's `SenderId` attribute.
/// Reads the filters itself; [`handle`] reads them once per invocation and calls
/// [`process_message_with`].
pub async fn process_message<S: FindingStore, B: FindingBus, H: HeartbeatStore>(
    deps: &Deps<S, B, H>,
    inv: &Invocation,
    body: &str,
    sender: Option<&str>,
    now: Timestamp,
) -> Result<MessageReport, MessageError> {
    let rules = load_archive_rules(deps).await?;
    process_message_with(deps, inv, body, sender, now, &rules).await
}

/// [`process_message`] with the ARCHIVE filters already read.
pub async fn process_message_with<S: FindingStore, B: FindingBus, H: HeartbeatStore>(
    deps: &Deps<S, B, H>,
    inv: &Invocation,
    body: &str,
    sender: Option<&str>,
    now: Timestamp,
    rules: &ArchiveRules,
) -> Result<MessageReport, MessageError> {
    let mut message = peregrine_wire::decode(body).map_err(|source| {
        let kind = wire_error_kind(&source);
        tracing::warn!(kind, bytes = body.len(), "poison message");
        MessageError::Decode { kind, source }
    })?;
    let header = match &mut message {
        Message::Heartbeat { header, .. } | Message::Batch { header, .. } => header,
    };
    match authorize(
        deps.config.agent_senders.as_ref(),
        sender,
        &header.cluster_name,
        header.cluster_arn.as_ref(),
    ) {
        // From here on the header's ARN is the one the sender may speak for.
        Ok(arn) => header.cluster_arn = arn,
        Err(rejection) => {
            // `rejected` is the metric's dimension; the claimed cluster is the agent's own word,
            // logged so an operator can see who was impersonated.
            tracing::warn!(
                rejected = rejection.reason(),
                sender = sender.unwrap_or_default(),
                claimed_cluster = %header.cluster_name,
                "message rejected for its sender"
            );
            return Err(MessageError::Rejected(rejection));
        }
    }
    match message {
        Message::Heartbeat { header, heartbeat } => {
            let record = heartbeat_record(&header, &heartbeat, now);
            let clamped = usize::from(header.created_at > now);
            if clamped > 0 {
                tracing::warn!(
                    skew_clamped = clamped,
                    "heartbeat from the future; stored with the receive time"
                );
            }
            if !deps.heartbeats.put(&record).await? {
                tracing::info!(
                    sequence = header.sequence,
                    "heartbeat older than the stored one; ignored"
                );
            }
            // A blinded agent is a finding whatever the row did: a late heartbeat still says
            // the node was blind then. Its key makes a redelivery count once.
            let store = if heartbeat.blinding.is_empty() {
                StoreReport::default()
            } else {
                let codes: Vec<&str> = heartbeat.blinding.iter().map(|r| r.code.as_str()).collect();
                tracing::warn!(reasons = ?codes, "agent reports itself blinded");
                let env = finding_env(inv, &header, &deps.config.detector_id);
                let seen = header.created_at.min(now);
                let mut finding = agent_blinded_finding(&heartbeat.blinding, &env, seen, now);
                if clamped > 0 {
                    flag_additional_info(&mut finding, "clockSkewClamped");
                }
                store_findings_with(
                    deps,
                    &heartbeat_key(inv, &header),
                    vec![finding],
                    now,
                    rules,
                )
                .await?
            };
            Ok(MessageReport {
                heartbeat: true,
                sequence: header.sequence,
                matches: usize::from(!heartbeat.blinding.is_empty()),
                clamped,
                store,
                ..MessageReport::default()
            })
        }
        Message::Batch {
            mut header,
            mut events,
        } => {
            let skewed = clamp_times(&mut header, &mut events, deps.config.skew, now);
            let clamped = skewed.count();
            if clamped > 0 {
                tracing::warn!(
                    skew_clamped = clamped,
                    "agent times outside the skew window; clamped to the receive time"
                );
            }
            let env = finding_env(inv, &header, &deps.config.detector_id);
            let (matches, findings) =
                detect_flagged(&deps.engine, &events, &skewed.events, &env, now);
            let key = batch_key(inv, &header);
            let store = store_findings_with(deps, &key, findings, now, rules).await?;
            Ok(MessageReport {
                heartbeat: false,
                sequence: header.sequence,
                events: events.len(),
                matches,
                clamped,
                store,
            })
        }
    }
}

/// Which of a batch's times [`clamp_times`] clamped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clamped {
    pub header: bool,
    /// One flag per event, in order.
    pub events: Vec<bool>,
}

impl Clamped {
    pub fn count(&self) -> usize {
        usize::from(self.header) + self.events.iter().filter(|c| **c).count()
    }
}

/// Clamps the header's and the events' times outside `skew` to `now`.
pub fn clamp_times(
    header: &mut Header,
    events: &mut [Event],
    skew: crate::sender::SkewWindow,
    now: Timestamp,
) -> Clamped {
    let clamp = |t: &mut Timestamp| {
        let (v, was) = skew.clamp(*t, now);
        *t = v;
        was
    };
    Clamped {
        header: clamp(&mut header.created_at),
        events: events.iter_mut().map(|e| clamp(&mut e.time)).collect(),
    }
}

/// The batch identity: `<account>#<cluster>#<node>#<agentId>#<sequence>`. An agent's sequence
/// numbers persist across its restarts (in its spool), so the same key always means the same
/// batch; the account, cluster and node keep one sender from taking another's keys.
pub fn batch_key(inv: &Invocation, header: &Header) -> String {
    format!(
        "{}#{}#{}#{}#{}",
        cluster_account(inv, header),
        header.cluster_name,
        header.node_name,
        header.agent_id,
        header.sequence
    )
}

/// The identity of a heartbeat, for its findings' dedupe markers:
/// `<account>#<cluster>#<node>#<agentId>#heartbeat#<createdAt ns>`. A heartbeat carries the
/// sequence of the agent's next batch, which several heartbeats share, so its own time (as
/// sent, before any clamping) tells them apart; a redelivery has the same time.
pub fn heartbeat_key(inv: &Invocation, header: &Header) -> String {
    format!(
        "{}#{}#{}#{}#heartbeat#{}",
        cluster_account(inv, header),
        header.cluster_name,
        header.node_name,
        header.agent_id,
        header.created_at.unix_nanos()
    )
}

/// The account the sender's cluster is in: its ARN's when known, else the detector's own.
fn cluster_account<'a>(inv: &'a Invocation, header: &'a Header) -> &'a str {
    header
        .cluster_arn
        .as_ref()
        .map_or(inv.account_id.as_str(), |a| a.account_id())
}

/// The finding environment of a batch: the sender (cluster, node, agent) and the detector.
/// With the cluster's ARN the finding is in the cluster's account and region, as GuardDuty's
/// are in the member account's; without it, the cluster may be in another account than the
/// detector, which the header does not say, so the detector's own account and region stand in
/// and no ARN is guessed.
pub fn finding_env(inv: &Invocation, header: &Header, detector_id: &str) -> FindingEnv {
    let arn = header.cluster_arn.as_ref();
    FindingEnv {
        account_id: cluster_account(inv, header).to_owned(),
        region: arn.map_or(inv.region.as_str(), |a| a.region()).to_owned(),
        partition: arn
            .map_or(inv.partition.as_str(), |a| a.partition())
            .to_owned(),
        detector_id: detector_id.to_owned(),
        cluster_name: header.cluster_name.clone(),
        cluster_arn: arn.map(|a| a.as_str().to_owned()),
        node_name: header.node_name.clone(),
        instance_id: None,
        agent_id: header.agent_id.clone(),
        agent_version: header.agent_version.clone(),
    }
}

/// Runs the engine over every event; returns the number of matches and one finding per match.
pub fn detect(
    engine: &Engine,
    events: &[Event],
    env: &FindingEnv,
    now: Timestamp,
) -> (usize, Vec<Finding>) {
    detect_flagged(engine, events, &[], env, now)
}

/// [`detect`], marking the findings of the events whose `skewed` flag is set (their time was
/// clamped) with `"clockSkewClamped": true` in `additionalInfo`.
pub fn detect_flagged(
    engine: &Engine,
    events: &[Event],
    skewed: &[bool],
    env: &FindingEnv,
    now: Timestamp,
) -> (usize, Vec<Finding>) {
    let mut matches: Vec<Match> = Vec::new();
    let mut findings = Vec::new();
    let mut count = 0;
    for (i, ev) in events.iter().enumerate() {
        matches.clear();
        engine.evaluate(ev, &mut matches);
        count += matches.len();
        let flag = skewed.get(i).copied().unwrap_or(false);
        findings.extend(matches.iter().map(|m| {
            let mut f = to_finding(m, ev, env, now);
            if flag {
                // The event's time was outside the skew window; it is the receive time.
                flag_additional_info(&mut f, "clockSkewClamped");
            }
            f
        }));
    }
    (count, findings)
}

/// Aggregates a batch's findings into the store exactly once per batch key, and publishes the
/// new ones. Safe to call again with the same key and findings (a redelivery): chunks already
/// written are skipped. Reads the filters itself (see [`store_findings_with`]).
pub async fn store_findings<S: FindingStore, B: FindingBus, H>(
    deps: &Deps<S, B, H>,
    batch_key: &str,
    findings: Vec<Finding>,
    now: Timestamp,
) -> Result<StoreReport, MessageError> {
    let rules = load_archive_rules(deps).await?;
    store_findings_with(deps, batch_key, findings, now, &rules).await
}

/// [`store_findings`] with the ARCHIVE filters already read: each finding created or updated
/// is checked against them, and one they match is stored archived and not published.
pub async fn store_findings_with<S: FindingStore, B: FindingBus, H>(
    deps: &Deps<S, B, H>,
    batch_key: &str,
    findings: Vec<Finding>,
    now: Timestamp,
    rules: &ArchiveRules,
) -> Result<StoreReport, MessageError> {
    let grouped = group_findings(findings)?;
    let mut report = StoreReport {
        findings: grouped.len(),
        ..StoreReport::default()
    };
    let chunks = chunk(grouped, |f| {
        serde_json::to_vec(f).map(|v| v.len()).unwrap_or_default()
    });
    for (index, findings) in chunks.into_iter().enumerate() {
        let key = format!("{batch_key}#{index}");
        match apply_chunk(deps, &key, index, &findings, now, rules, &mut report).await? {
            None => {
                report.chunks_skipped += 1;
                tracing::info!(batch_key = %key, "chunk already applied by an earlier delivery; skipped");
            }
            Some(writes) => {
                report.chunks_applied += 1;
                let (new, updated): (Vec<&FindingWrite>, Vec<&FindingWrite>) =
                    writes.iter().partition(|w| w.is_new());
                report.new_findings += new.len();
                report.updated_findings += updated.len();
                // New findings are published at once; if that fails they stay pending (due
                // now) and the publisher picks them up. Suppressed ones have nothing due.
                let items: Vec<PublishItem> = new
                    .iter()
                    .filter(|w| w.item.outbox.pending_due.is_some())
                    .filter_map(|w| match PublishItem::new(&w.item) {
                        Ok(i) => Some(i),
                        Err(e) => {
                            tracing::error!(finding_id = %w.item.finding.id, error = %e, "finding cannot be published");
                            None
                        }
                    })
                    .collect();
                report
                    .publish
                    .add(send_and_mark(&deps.store, &deps.bus, &items, now).await);
            }
        }
    }
    Ok(report)
}

/// Reads, merges and writes one chunk, retrying conflicts and transient failures. `None` when
/// an earlier delivery already wrote it.
async fn apply_chunk<S: FindingStore, B, H>(
    deps: &Deps<S, B, H>,
    dedupe_key: &str,
    index: usize,
    findings: &[Finding],
    now: Timestamp,
    rules: &ArchiveRules,
    report: &mut StoreReport,
) -> Result<Option<Vec<FindingWrite>>, MessageError> {
    let ids: Vec<String> = findings.iter().map(|f| f.id.clone()).collect();
    let expires_at = epoch_seconds(add(now, deps.config.dedupe_ttl));
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let current = deps.store.get_many(&ids).await?;
            let mut suppressed = 0;
            let writes = findings
                .iter()
                .map(|f| {
                    let mut w =
                        plan_write(f, current.get(&f.id), now, deps.config.publishing_frequency)?;
                    if let Some(filter) =
                        settle_write(&mut w, rules, now, deps.config.finding_retention)?
                    {
                        suppressed += 1;
                        tracing::info!(finding_id = %w.item.finding.id, filter, "finding suppressed by an ARCHIVE filter");
                    }
                    Ok(w)
                })
                .collect::<Result<Vec<_>, FindingError>>()?;
            let chunk = ChunkWrite {
                dedupe_key: dedupe_key.to_owned(),
                dedupe_expires_at: expires_at,
                writes,
            };
            let outcome = deps.store.transact_chunk(&chunk).await?;
            if outcome == ChunkOutcome::Applied {
                report.suppressed += suppressed;
            }
            Ok::<_, MessageError>((outcome, chunk.writes))
        }
        .await;
        let retry = match result {
            Ok((ChunkOutcome::Applied, writes)) => return Ok(Some(writes)),
            Ok((ChunkOutcome::AlreadyApplied, _)) => return Ok(None),
            Ok((ChunkOutcome::Conflict, _)) => {
                tracing::info!(
                    chunk = index,
                    attempt,
                    "version conflict with a concurrent writer; re-reading"
                );
                None
            }
            Err(MessageError::Store(e)) if e.is_transient() => {
                tracing::info!(chunk = index, attempt, error = %e, "transient store failure; backing off");
                Some(e)
            }
            Err(e) => return Err(e),
        };
        if attempt >= deps.retry.max_attempts {
            tracing::warn!(
                chunk = index,
                attempt,
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "giving up on the chunk for this delivery"
            );
            return Err(match retry {
                Some(e) => MessageError::Store(e),
                None => MessageError::Contended {
                    chunk: index,
                    attempts: attempt,
                },
            });
        }
        report.retries += 1;
        tokio::time::sleep(deps.retry.delay(attempt)).await;
    }
}

fn probe_state(s: ProbeState) -> &'static str {
    match s {
        ProbeState::Attached => "attached",
        ProbeState::Failed => "failed",
        ProbeState::Absent => "absent",
    }
}

/// The HeartbeatsTable row for a heartbeat.
pub fn heartbeat_record(header: &Header, hb: &Heartbeat, now: Timestamp) -> HeartbeatRecord {
    let probes: Vec<serde_json::Value> = hb
        .probes
        .iter()
        .map(|p| {
            serde_json::json!({
                "program": p.program,
                "target": p.target,
                "state": probe_state(p.state),
                "error": p.error,
            })
        })
        .collect();
    let count = |s: ProbeState| hb.probes.iter().filter(|p| p.state == s).count() as u64;
    HeartbeatRecord {
        cluster_name: header.cluster_name.clone(),
        cluster_arn: header.cluster_arn.as_ref().map(|a| a.as_str().to_owned()),
        node_name: header.node_name.clone(),
        agent_id: header.agent_id.clone(),
        agent_version: header.agent_version.clone(),
        kernel_release: hb.kernel_release.clone(),
        // A heartbeat from the future would keep the row "fresher" than any later one (the
        // write is conditional on lastSeen): it counts as received now.
        last_seen: iso(header.created_at.min(now)),
        received_at: iso(now),
        probes_json: serde_json::Value::Array(probes).to_string(),
        probes_attached: count(ProbeState::Attached),
        probes_failed: count(ProbeState::Failed),
        kernel_ringbuf_full: hb.drops.kernel_ringbuf_full,
        kernel_no_scratch: hb.drops.kernel_no_scratch,
        user_queue_full: hb.drops.user_queue_full,
        spool_dropped: hb.drops.spool_dropped,
        spool_messages: hb.spool.messages,
        spool_bytes: hb.spool.bytes,
        events_sent: hb.events_sent,
        uptime_seconds: hb.uptime.as_secs(),
        next_sequence: header.sequence,
        coverage: if hb.blinding.is_empty() {
            Coverage::Healthy
        } else {
            Coverage::Degraded
        },
        blinding_json: serde_json::to_string(&hb.blinding).unwrap_or_else(|_| "[]".to_owned()),
        expires_at: epoch_seconds(add(now, HEARTBEAT_TTL)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_comes_from_the_function_arn() {
        let inv = Invocation::from_function_arn(
            "arn:aws:lambda:eu-west-1:210987654321:function:peregrine-DetectorFunction",
            Some("us-east-1"),
        )
        .unwrap();
        assert_eq!(inv.account_id, "210987654321");
        assert_eq!(inv.region, "eu-west-1");
        assert_eq!(inv.partition, "aws");
        let inv = Invocation::from_function_arn(
            "arn:aws-cn:lambda::210987654321:function:x:live",
            Some("cn-north-1"),
        )
        .unwrap();
        assert_eq!(
            (inv.region.as_str(), inv.partition.as_str()),
            ("cn-north-1", "aws-cn")
        );
        assert!(matches!(
            Invocation::from_function_arn("", Some("us-east-1")),
            Err(DetectorError::FunctionArn(_))
        ));
        assert!(matches!(
            Invocation::from_function_arn("arn:aws:lambda:::function:x", Some("us-east-1")),
            Err(DetectorError::FunctionArn(_))
        ));
        assert!(matches!(
            Invocation::from_function_arn("arn:aws:lambda::1:function:x", None),
            Err(DetectorError::NoRegion)
        ));
    }
}
