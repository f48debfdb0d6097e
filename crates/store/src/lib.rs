//! Where findings, heartbeats and the organization's coverage are kept and published, for every
//! function (the detector, the publisher, the coverage sweeper, and the API to come).
//!
//! Adapters sit behind small traits ([`FindingStore`], [`FindingBus`], [`FindingHub`],
//! [`HeartbeatStore`]) with DynamoDB, EventBridge and Security Hub implementations
//! ([`DynamoFindingStore`], [`DynamoHeartbeatStore`], [`EventBridgeBus`],
//! [`SecurityHubImporter`]) and in-memory ones ([`memory`]) for unit tests. The storage model
//! ([`StoredFinding`], its [`Outbox`] state, the chunk writes) is independent of DynamoDB's
//! attribute encoding, and [`send_and_mark`] is the outbox protocol: publish, then record the
//! publish. [`import_and_mark`] is the Security Hub export's: import what was published, then
//! record the import. See `docs/pipeline.md` and `docs/securityhub.md`.
//!
//! The organization's tables ([`ConfigStore`], [`CoverageStore`]) keep `peregrine-org`'s
//! values; see `docs/coverage.md`. EntitySetsTable ([`DynamoEntitySetStore`]) keeps the threat
//! and trusted entity sets the API manages and the detector loads; see `docs/api.md`.

mod dynamo;
mod eventbridge;
mod filters;
mod import;
pub mod memory;
mod model;
mod org;
mod outbox;
mod securityhub;
mod sets;
mod traits;

pub use crate::dynamo::{
    DynamoFindingStore, DynamoHeartbeatStore, HEARTBEAT_KEY, PUBLISH_INDEX, SECURITY_HUB_INDEX,
    attr, finding_item, heartbeat_from_item, heartbeat_item, stored_finding,
};
pub use crate::eventbridge::EventBridgeBus;
pub use crate::filters::{
    DynamoFilterStore, FilterWrite, MAX_FILTER_ITEM_BYTES, StoredFilter, filter_attr, filter_item,
    stored_filter,
};
pub use crate::import::{
    ImportCounts, ImportItem, MAX_IMPORT_CALL_BYTES, import_and_mark, import_ranges,
    import_retry_delay, loggable, set_back,
};
pub use crate::model::{
    BadRetention, ChunkOutcome, ChunkWrite, DEFAULT_RETENTION_DAYS, FindingWrite, HubPending,
    Outbox, PUBLISH_PENDING, PublishingFrequency, StoredFinding, UnknownFrequency, add, day,
    epoch_seconds, iso, parse_iso, retention_setting, settle_write,
};
pub use crate::org::{
    ConfigStore, CoverageStore, DynamoConfigStore, DynamoCoverageStore, KIND_INDEX, OrgConfig,
    StoredCluster, account_settings_from_item, account_settings_item, org_from_item, org_item,
};
pub use crate::outbox::{
    MAX_CALL_BYTES, MAX_ENTRIES_PER_CALL, PublishCounts, PublishItem, call_ranges, entry_bytes,
    send_and_mark,
};
pub use crate::securityhub::{
    BadProductArn, SecurityHubImporter, hub_failure, product_account, product_arn_setting,
    sdk_finding,
};
pub use crate::sets::{
    DynamoEntitySetStore, EntitySet, EntitySetFormat, EntitySetKind, EntitySetStatus, SET_KEY,
    entity_set_from_item, entity_set_item,
};
pub use crate::traits::{
    BusError, Coverage, Cursor, DuePage, EntryResult, FindingBus, FindingHub, FindingStore,
    HeartbeatReader, HeartbeatRecord, HeartbeatStore, HubError, ImportResult, StoreError,
    latest_per_node,
};
