//! FiltersTable: the detector's suppression filters (GuardDuty's `CreateFilter`), keyed by
//! `name`. The API is the only writer (every write a transaction conditional on the versions
//! it read, so concurrent edits cannot break the rank order); the detector reads the whole
//! table once per invocation, with a strongly consistent `Scan` bounded by [`MAX_FILTERS`]
//! items of at most [`MAX_FILTER_ITEM_BYTES`] each (see `docs/pipeline.md` for the cost).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use peregrine_criteria::{Action, Filter, MAX_FILTERS};

use crate::dynamo::{aws_error, build_error, get_s, get_u64, n, s};
use crate::traits::StoreError;

type Item = HashMap<String, AttributeValue>;

/// A filter's `findingCriteria` JSON is at most this many bytes (the API refuses larger), so
/// the detector's read of all filters is bounded: 100 × 32 KiB ≈ 3.2 MB at worst, 4 Scan pages.
pub const MAX_FILTER_ITEM_BYTES: usize = 32 * 1024;

/// Scan pages the detector reads at most (1 MB each): the worst case above, with room.
const MAX_SCAN_PAGES: usize = 8;

/// Attribute names of a FiltersTable item.
pub mod filter_attr {
    pub const NAME: &str = "name";
    pub const DESCRIPTION: &str = "description";
    pub const ACTION: &str = "action";
    pub const RANK: &str = "rank";
    /// The criteria as GuardDuty's JSON, a string.
    pub const CRITERIA: &str = "findingCriteria";
    /// The tags as a JSON object, a string.
    pub const TAGS: &str = "tags";
    pub const CLIENT_TOKEN: &str = "clientToken";
    pub const VERSION: &str = "version";
}

/// A filter as stored: with its version (every write is conditional on the one read) and the
/// `clientToken` it was created with.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFilter {
    pub filter: Filter,
    pub version: u64,
    pub client_token: Option<String>,
}

/// One write of a filters transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterWrite {
    /// Writes the filter at `filter.version`; `expected` is the version read (`None`: it must
    /// not exist yet).
    Put {
        filter: StoredFilter,
        expected: Option<u64>,
    },
    /// Deletes the filter if still at `expected`.
    Delete { name: String, expected: u64 },
}

/// The FiltersTable item of a filter.
pub fn filter_item(f: &StoredFilter) -> Result<Item, serde_json::Error> {
    let mut item = Item::new();
    item.insert(filter_attr::NAME.into(), s(&f.filter.name));
    if !f.filter.description.is_empty() {
        item.insert(filter_attr::DESCRIPTION.into(), s(&f.filter.description));
    }
    item.insert(filter_attr::ACTION.into(), s(f.filter.action.as_str()));
    item.insert(filter_attr::RANK.into(), n(f.filter.rank));
    item.insert(
        filter_attr::CRITERIA.into(),
        s(serde_json::to_string(&f.filter.finding_criteria)?),
    );
    if !f.filter.tags.is_empty() {
        item.insert(
            filter_attr::TAGS.into(),
            s(serde_json::to_string(&f.filter.tags)?),
        );
    }
    if let Some(t) = &f.client_token {
        item.insert(filter_attr::CLIENT_TOKEN.into(), s(t));
    }
    item.insert(filter_attr::VERSION.into(), n(f.version));
    Ok(item)
}

/// Reads a FiltersTable item back.
pub fn stored_filter(item: &Item) -> Result<StoredFilter, StoreError> {
    let name = get_s(item, filter_attr::NAME).unwrap_or("?").to_owned();
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: format!("filter {name}"),
        reason: reason.to_owned(),
    };
    let action = match get_s(item, filter_attr::ACTION) {
        Some("ARCHIVE") => Action::Archive,
        Some("NOOP") => Action::Noop,
        _ => return Err(corrupt("`action` is not NOOP or ARCHIVE")),
    };
    let rank = get_u64(item, filter_attr::RANK)
        .and_then(|r| u32::try_from(r).ok())
        .ok_or_else(|| corrupt("no `rank`"))?;
    let criteria = get_s(item, filter_attr::CRITERIA)
        .ok_or_else(|| corrupt("no `findingCriteria`"))
        .and_then(|c| {
            serde_json::from_str(c).map_err(|_| corrupt("`findingCriteria` is not JSON"))
        })?;
    let tags: BTreeMap<String, String> = match get_s(item, filter_attr::TAGS) {
        Some(t) => serde_json::from_str(t).map_err(|_| corrupt("`tags` is not a JSON map"))?,
        None => BTreeMap::new(),
    };
    Ok(StoredFilter {
        filter: Filter {
            name: name.clone(),
            description: get_s(item, filter_attr::DESCRIPTION)
                .unwrap_or_default()
                .to_owned(),
            action,
            rank,
            finding_criteria: criteria,
            tags,
        },
        version: get_u64(item, filter_attr::VERSION).ok_or_else(|| corrupt("no `version`"))?,
        client_token: get_s(item, filter_attr::CLIENT_TOKEN).map(str::to_owned),
    })
}

/// FiltersTable in DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoFilterStore {
    client: Client,
    table: String,
}

impl DynamoFilterStore {
    pub fn new(client: Client, table: &str) -> DynamoFilterStore {
        DynamoFilterStore {
            client,
            table: table.to_owned(),
        }
    }

    /// Every filter, read consistently (a filter created just before is seen), ordered by
    /// rank. Bounded: more than [`MAX_FILTERS`] rows or [`MAX_SCAN_PAGES`] pages is an error
    /// rather than a partial answer, since a filter left out could let a suppressed finding
    /// be published.
    pub async fn all(&self) -> Result<Vec<StoredFilter>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        for _ in 0..MAX_SCAN_PAGES {
            let r = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| aws_error("Scan", &e))?;
            for item in r.items() {
                out.push(stored_filter(item)?);
            }
            if out.len() > MAX_FILTERS {
                return Err(StoreError::Corrupt {
                    key: self.table.clone(),
                    reason: format!("more than {MAX_FILTERS} filters"),
                });
            }
            match r.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => {
                    out.sort_by(|a, b| {
                        (a.filter.rank, &a.filter.name).cmp(&(b.filter.rank, &b.filter.name))
                    });
                    return Ok(out);
                }
            }
        }
        Err(StoreError::Corrupt {
            key: self.table.clone(),
            reason: format!("more than {MAX_SCAN_PAGES} Scan pages"),
        })
    }

    /// One filter, read consistently.
    pub async fn get(&self, name: &str) -> Result<Option<StoredFilter>, StoreError> {
        let r = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(filter_attr::NAME, s(name))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("GetItem", &e))?;
        r.item.as_ref().map(stored_filter).transpose()
    }

    /// Applies the writes in one transaction (at most 100); `Ok(false)` when a filter changed
    /// since it was read (re-read and retry).
    pub async fn transact(&self, writes: &[FilterWrite]) -> Result<bool, StoreError> {
        let mut items = Vec::with_capacity(writes.len());
        for w in writes {
            let item = match w {
                FilterWrite::Put { filter, expected } => {
                    let put = Put::builder().table_name(&self.table).set_item(Some(
                        filter_item(filter).map_err(|e| build_error("TransactWriteItems", e))?,
                    ));
                    let put = match expected {
                        None => put
                            .condition_expression("attribute_not_exists(#n)")
                            .expression_attribute_names("#n", filter_attr::NAME),
                        Some(v) => put
                            .condition_expression("#v = :v")
                            .expression_attribute_names("#v", filter_attr::VERSION)
                            .expression_attribute_values(":v", n(v)),
                    };
                    TransactWriteItem::builder()
                        .put(
                            put.build()
                                .map_err(|e| build_error("TransactWriteItems", e))?,
                        )
                        .build()
                }
                FilterWrite::Delete { name, expected } => TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .key(filter_attr::NAME, s(name))
                            .condition_expression("#v = :v")
                            .expression_attribute_names("#v", filter_attr::VERSION)
                            .expression_attribute_values(":v", n(expected))
                            .build()
                            .map_err(|e| build_error("TransactWriteItems", e))?,
                    )
                    .build(),
            };
            items.push(item);
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if conflicted(&e) => Ok(false),
            Err(e) => Err(aws_error("TransactWriteItems", &e)),
        }
    }
}

/// A transaction cancelled because a condition failed or another transaction was writing.
fn conflicted<R>(e: &SdkError<TransactWriteItemsError, R>) -> bool {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
            c.cancellation_reasons().iter().any(|r| {
                matches!(
                    r.code(),
                    Some("ConditionalCheckFailed" | "TransactionConflict")
                )
            })
        }
        Some(TransactWriteItemsError::TransactionInProgressException(_)) => true,
        _ => false,
    }
}
