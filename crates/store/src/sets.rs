//! EntitySetsTable: the threat and trusted entity sets (GuardDuty's `ThreatEntitySet` and
//! `TrustedEntitySet`) the findings API manages and the detector loads.
//!
//! One item per set, keyed by `setId` (S, 32 hex characters):
//!
//! | attribute | |
//! |---|---|
//! | `setId` | the key |
//! | `kind` | `THREAT` or `TRUSTED` |
//! | `name`, `format`, `location` | as given (`format`: `TXT`, `STIX`, `OTX_CSV`, `ALIEN_VAULT`, `PROOF_POINT`, `FIRE_EYE`; `location`: an S3 object URL) |
//! | `expectedBucketOwner` | optional, 12 digits |
//! | `status` | `INACTIVE`, `ACTIVATING`, `ACTIVE`, `DEACTIVATING`, `ERROR`, `DELETE_PENDING`, `DELETED` |
//! | `createdAt`, `updatedAt` | RFC 3339 |
//! | `tags` | map of strings |
//! | `errorDetails` | optional: why the object could not be read |
//! | `clientToken` | optional: the create request's idempotency token |
//!
//! The detector loads the sets whose `status` is `ACTIVE`. The format is stable: add
//! attributes, never rename or repurpose one.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use peregrine_event::Timestamp;

use crate::dynamo::{Item, aws_error, get_s, s};
use crate::model::{iso, parse_iso};
use crate::traits::StoreError;

/// The table's key attribute.
pub const SET_KEY: &str = "setId";

macro_rules! set_names {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The name's value, if it is one.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            /// Every name, for messages.
            pub fn names() -> &'static str {
                concat!($($text, " "),+).trim_ascii_end()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

set_names! {
    /// Threat sets raise findings on matches; trusted sets silence them.
    EntitySetKind {
        Threat = "THREAT",
        Trusted = "TRUSTED",
    }
}

set_names! {
    /// GuardDuty's `ThreatEntitySetFormat` / `TrustedEntitySetFormat`.
    EntitySetFormat {
        Txt = "TXT",
        Stix = "STIX",
        OtxCsv = "OTX_CSV",
        AlienVault = "ALIEN_VAULT",
        ProofPoint = "PROOF_POINT",
        FireEye = "FIRE_EYE",
    }
}

set_names! {
    /// GuardDuty's `ThreatEntitySetStatus` / `TrustedEntitySetStatus`.
    EntitySetStatus {
        Inactive = "INACTIVE",
        Activating = "ACTIVATING",
        Active = "ACTIVE",
        Deactivating = "DEACTIVATING",
        Error = "ERROR",
        DeletePending = "DELETE_PENDING",
        Deleted = "DELETED",
    }
}

/// One set, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntitySet {
    pub set_id: String,
    pub kind: EntitySetKind,
    pub name: String,
    pub format: EntitySetFormat,
    pub location: String,
    pub expected_bucket_owner: Option<String>,
    pub status: EntitySetStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub tags: BTreeMap<String, String>,
    pub error_details: Option<String>,
    pub client_token: Option<String>,
}

/// The item for a set.
pub fn entity_set_item(e: &EntitySet) -> Item {
    let mut item = Item::from([
        (SET_KEY.to_owned(), s(&e.set_id)),
        ("kind".to_owned(), s(e.kind.as_str())),
        ("name".to_owned(), s(&e.name)),
        ("format".to_owned(), s(e.format.as_str())),
        ("location".to_owned(), s(&e.location)),
        ("status".to_owned(), s(e.status.as_str())),
        ("createdAt".to_owned(), s(iso(e.created_at))),
        ("updatedAt".to_owned(), s(iso(e.updated_at))),
        (
            "tags".to_owned(),
            AttributeValue::M(e.tags.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
        ),
    ]);
    for (name, value) in [
        ("expectedBucketOwner", &e.expected_bucket_owner),
        ("errorDetails", &e.error_details),
        ("clientToken", &e.client_token),
    ] {
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
            item.insert(name.to_owned(), s(v));
        }
    }
    item
}

/// Reads an item back.
pub fn entity_set_from_item(item: &Item) -> Result<EntitySet, StoreError> {
    let key = get_s(item, SET_KEY).unwrap_or("?").to_owned();
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let text = |name: &str| {
        get_s(item, name)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(format!("no `{name}`")))
    };
    let time = |name: &str| -> Result<Timestamp, StoreError> {
        parse_iso(&text(name)?).ok_or_else(|| corrupt(format!("`{name}` is not a time")))
    };
    let kind = EntitySetKind::parse(&text("kind")?).ok_or_else(|| corrupt("bad `kind`".into()))?;
    let format =
        EntitySetFormat::parse(&text("format")?).ok_or_else(|| corrupt("bad `format`".into()))?;
    let status =
        EntitySetStatus::parse(&text("status")?).ok_or_else(|| corrupt("bad `status`".into()))?;
    let tags = match item.get("tags") {
        None => BTreeMap::new(),
        Some(AttributeValue::M(m)) => m
            .iter()
            .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), v.clone())))
            .collect(),
        Some(_) => return Err(corrupt("`tags` is not a map".into())),
    };
    let optional = |name: &str| get_s(item, name).map(str::to_owned);
    Ok(EntitySet {
        set_id: key.clone(),
        kind,
        name: text("name")?,
        format,
        location: text("location")?,
        expected_bucket_owner: optional("expectedBucketOwner"),
        status,
        created_at: time("createdAt")?,
        updated_at: time("updatedAt")?,
        tags,
        error_details: optional("errorDetails"),
        client_token: optional("clientToken"),
    })
}

/// EntitySetsTable in DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoEntitySetStore {
    client: Client,
    table: String,
}

/// Whether an SDK error is a failed condition.
fn condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

impl DynamoEntitySetStore {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoEntitySetStore {
            client,
            table: table.to_owned(),
        }
    }

    /// Every set (a consistent Scan: the table holds a handful of rows). Unreadable rows are
    /// logged and left out.
    pub async fn all(&self) -> Result<Vec<EntitySet>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| aws_error("Scan", &e))?;
            for item in page.items() {
                match entity_set_from_item(item) {
                    Ok(set) => out.push(set),
                    Err(e) => tracing::warn!(error = %e, "unreadable entity set skipped"),
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// The sets the detector uses: those of `kind` whose status is `ACTIVE`.
    pub async fn active(&self, kind: EntitySetKind) -> Result<Vec<EntitySet>, StoreError> {
        let mut sets = self.all().await?;
        sets.retain(|s| s.kind == kind && s.status == EntitySetStatus::Active);
        Ok(sets)
    }

    pub async fn get(&self, set_id: &str) -> Result<Option<EntitySet>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(SET_KEY, s(set_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("GetItem", &e))?;
        out.item().map(entity_set_from_item).transpose()
    }

    /// Writes a new set; `Ok(false)` when one with its id exists.
    pub async fn create(&self, set: &EntitySet) -> Result<bool, StoreError> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(entity_set_item(set)))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", SET_KEY)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(aws_error("PutItem", &e)),
        }
    }

    /// Rewrites a set read when it was last updated at `read_at`; `Ok(false)` when it changed
    /// (or went) meanwhile.
    pub async fn replace(&self, set: &EntitySet, read_at: Timestamp) -> Result<bool, StoreError> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(entity_set_item(set)))
            .condition_expression("#u = :u")
            .expression_attribute_names("#u", "updatedAt")
            .expression_attribute_values(":u", s(iso(read_at)))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(aws_error("PutItem", &e)),
        }
    }

    /// Removes a set (absent is fine).
    pub async fn delete(&self, set_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(SET_KEY, s(set_id))
            .send()
            .await
            .map_err(|e| aws_error("DeleteItem", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let set = EntitySet {
            set_id: "0123456789abcdef0123456789abcdef".into(),
            kind: EntitySetKind::Threat,
            name: "bad-ips".into(),
            format: EntitySetFormat::Txt,
            location: "s3://bucket/key.txt".into(),
            expected_bucket_owner: Some("111122223333".into()),
            status: EntitySetStatus::Error,
            created_at: Timestamp::from_unix_nanos(1_764_000_000_000_000_000),
            updated_at: Timestamp::from_unix_nanos(1_764_000_001_000_000_000),
            tags: BTreeMap::from([("team".to_owned(), "sec".to_owned())]),
            error_details: Some("not found".into()),
            client_token: None,
        };
        let item = entity_set_item(&set);
        assert_eq!(get_s(&item, "kind"), Some("THREAT"));
        assert_eq!(get_s(&item, "status"), Some("ERROR"));
        assert_eq!(entity_set_from_item(&item).unwrap(), set);
        assert_eq!(
            EntitySetFormat::parse("FIRE_EYE"),
            Some(EntitySetFormat::FireEye)
        );
        assert_eq!(EntitySetFormat::parse("fire_eye"), None);
        assert!(EntitySetStatus::names().starts_with("INACTIVE ACTIVATING"));
    }
}
