//! The API's reads and writes on FindingsTable. Reads: a GSI `Query` when the criteria pin one
//! index's key, else a `Scan`, each page by page and bounded; `BatchGetItem` by id. Writes:
//! `PutItem` of the whole item conditional on the `version` read, the detector's discipline
//! (`peregrine-store`'s `DynamoFindingStore`), so neither side overwrites the other.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use peregrine_event::Timestamp;
use peregrine_store::{StoreError, StoredFinding, attr, finding_item, iso, stored_finding};

use crate::error::ApiError;
use peregrine_criteria::Criteria;

type Item = HashMap<String, AttributeValue>;

/// A listing or statistics reads at most this many findings (after the index's key condition,
/// before the filter); criteria that match more are refused (400) and must be narrowed.
pub const MAX_CANDIDATES: usize = 10_000;

/// How one request reads candidates.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// `Query` on a GSI whose hash key the criteria fix, with `updatedAt` (every GSI's range
    /// key but byPublishState's) bounded when the criteria bound it.
    Query {
        index: &'static str,
        hash_attr: &'static str,
        hash: String,
        updated: (Option<String>, Option<String>),
    },
    Scan,
}

fn millis_iso(ms: f64) -> String {
    iso(Timestamp::from_unix_nanos(
        (ms.floor() as i64).saturating_mul(1_000_000),
    ))
}

impl Plan {
    pub fn for_criteria(c: &Criteria) -> Plan {
        let (lo, hi) = c.updated_range();
        // Inclusive bounds: exact ones are re-checked on each finding.
        let updated = (lo.map(millis_iso), hi.map(|h| millis_iso(h.ceil())));
        if let Some(t) = c.single_eq("type") {
            return Plan::Query {
                index: "byType",
                hash_attr: attr::TYPE,
                hash: t.to_owned(),
                updated,
            };
        }
        for (field, index, hash_attr) in [
            (
                "resource.eksClusterDetails.name",
                "byCluster",
                attr::CLUSTER_NAME,
            ),
            (
                "resource.kubernetesDetails.kubernetesWorkloadDetails.namespace",
                "byNamespace",
                attr::NAMESPACE,
            ),
            ("accountId", "byAccount", attr::ACCOUNT_ID),
        ] {
            if let Some(hash) = c.single_eq(field) {
                return Plan::Query {
                    index,
                    hash_attr,
                    hash: hash.to_owned(),
                    updated: updated.clone(),
                };
            }
        }
        Plan::Scan
    }
}

/// FindingsTable through the API's permissions (template.yaml's ApiFunctionRole).
#[derive(Clone, Debug)]
pub struct ApiStore {
    client: Client,
    table: String,
}

fn sdk_error<E, R>(
    operation: &'static str,
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Aws {
        operation,
        failure: peregrine_aws::classify(e),
        message: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    }
}

/// Reads an item; a row that is not a finding is logged and skipped.
fn readable(item: &Item) -> Option<StoredFinding> {
    match stored_finding(item) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable finding row skipped");
            None
        }
    }
}

/// A BatchGetItem takes at most 100 keys.
const MAX_BATCH_GET: usize = 100;
/// Rounds for unprocessed keys before giving up.
const BATCH_GET_ROUNDS: usize = 8;

impl ApiStore {
    pub fn new(client: Client, table: &str) -> ApiStore {
        ApiStore {
            client,
            table: table.to_owned(),
        }
    }

    /// The findings a plan reads, at most [`MAX_CANDIDATES`].
    pub async fn candidates(&self, plan: &Plan) -> Result<Vec<StoredFinding>, ApiError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let (items, next) = match plan {
                Plan::Scan => {
                    let r = self
                        .client
                        .scan()
                        .table_name(&self.table)
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|e| sdk_error("Scan", &e))?;
                    (r.items, r.last_evaluated_key)
                }
                Plan::Query {
                    index,
                    hash_attr,
                    hash,
                    updated,
                } => {
                    let mut q = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .index_name(*index)
                        .expression_attribute_names("#h", *hash_attr)
                        .expression_attribute_values(":h", AttributeValue::S(hash.clone()))
                        .set_exclusive_start_key(start.take());
                    let range = match updated {
                        (Some(lo), Some(hi)) => {
                            q = q
                                .expression_attribute_values(":lo", AttributeValue::S(lo.clone()))
                                .expression_attribute_values(":hi", AttributeValue::S(hi.clone()));
                            " AND #u BETWEEN :lo AND :hi"
                        }
                        (Some(lo), None) => {
                            q = q.expression_attribute_values(":lo", AttributeValue::S(lo.clone()));
                            " AND #u >= :lo"
                        }
                        (None, Some(hi)) => {
                            q = q.expression_attribute_values(":hi", AttributeValue::S(hi.clone()));
                            " AND #u <= :hi"
                        }
                        (None, None) => "",
                    };
                    if !range.is_empty() {
                        q = q.expression_attribute_names("#u", attr::UPDATED_AT);
                    }
                    let r = q
                        .key_condition_expression(format!("#h = :h{range}"))
                        .send()
                        .await
                        .map_err(|e| sdk_error("Query", &e))?;
                    (r.items, r.last_evaluated_key)
                }
            };
            out.extend(items.unwrap_or_default().iter().filter_map(readable));
            if out.len() > MAX_CANDIDATES {
                return Err(ApiError::bad(format!(
                    "The criteria match more than {MAX_CANDIDATES} findings before filtering; narrow them (for example with type eq, resource.eksClusterDetails.name eq or an updatedAt range)."
                )));
            }
            match next {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// The findings with these ids (absent ones are left out), read consistently.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<StoredFinding>, ApiError> {
        let mut out = Vec::with_capacity(ids.len());
        for part in ids.chunks(MAX_BATCH_GET) {
            let keys: Vec<Item> = part
                .iter()
                .map(|id| HashMap::from([(attr::ID.to_owned(), AttributeValue::S(id.clone()))]))
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Aws {
                        operation: "BatchGetItem",
                        failure: peregrine_aws::Failure::Invalid,
                        message: e.to_string(),
                    })?,
            );
            for _ in 0..BATCH_GET_ROUNDS {
                let Some(request) = pending.take() else { break };
                let r = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", &e))?;
                if let Some(items) = r.responses.as_ref().and_then(|m| m.get(&self.table)) {
                    out.extend(items.iter().filter_map(readable));
                }
                pending = r
                    .unprocessed_keys
                    .and_then(|mut m| m.remove(&self.table))
                    .filter(|k| !k.keys.is_empty());
            }
            if pending.is_some() {
                return Err(ApiError::Store(StoreError::Aws {
                    operation: "BatchGetItem",
                    failure: peregrine_aws::Failure::Throttled,
                    message: "keys still unprocessed after retries".into(),
                }));
            }
        }
        Ok(out)
    }

    /// One finding, read consistently.
    pub async fn get(&self, id: &str) -> Result<Option<StoredFinding>, ApiError> {
        let r = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::ID, AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &e))?;
        Ok(r.item.as_ref().and_then(readable))
    }

    /// Writes a finding that must not exist yet (a sample finding, with its own new id).
    pub async fn put_new(&self, finding: &StoredFinding) -> Result<(), ApiError> {
        let item = finding_item(finding).map_err(|e| StoreError::Aws {
            operation: "PutItem",
            failure: peregrine_aws::Failure::Invalid,
            message: e.to_string(),
        })?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", attr::ID)
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", &e))?;
        Ok(())
    }

    /// Writes a finding read at `expected` as version `expected + 1`; `false` when it changed
    /// in between (re-read and retry).
    pub async fn put_if_version(
        &self,
        finding: &StoredFinding,
        expected: u64,
    ) -> Result<bool, ApiError> {
        let next = StoredFinding {
            version: expected + 1,
            ..finding.clone()
        };
        let item = finding_item(&next).map_err(|e| StoreError::Aws {
            operation: "PutItem",
            failure: peregrine_aws::Failure::Invalid,
            message: e.to_string(),
        })?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", attr::VERSION)
            .expression_attribute_values(":v", AttributeValue::N(expected.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("PutItem", &e).into()),
        }
    }
}
