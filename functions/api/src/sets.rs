//! Threat and trusted entity sets (GuardDuty's `Create/List/Get/Update/Delete` `ThreatEntitySet`
//! and `TrustedEntitySet`) in EntitySetsTable (`peregrine-store`'s [`DynamoEntitySetStore`]).
//!
//! A set points at an S3 object. Activating one (`activate: true` at creation or update) checks
//! that the object can be read (S3 `HeadObject`, with `ExpectedBucketOwner` when given) and is
//! at most [`MAX_OBJECT_BYTES`]: the set becomes `ACTIVE`, or `ERROR` with `errorDetails` when
//! the object is missing, unreadable or too large. A `location` that is not an S3 object URL is
//! a 400. The detector loads the `ACTIVE` sets.
//!
//! [`DynamoEntitySetStore`]: peregrine_store::DynamoEntitySetStore

use std::collections::BTreeMap;

use aws_sdk_s3::error::SdkError;
use peregrine_event::Timestamp;
use peregrine_store::{
    EntitySet, EntitySetFormat, EntitySetKind, EntitySetStatus, StoreError, iso,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::ops::parse;
use crate::{ApiDeps, Operation, Request, token};
use peregrine_criteria::{Scalar, SortKey, quoted};

/// GuardDuty's limits per detector.
pub const MAX_THREAT_SETS: usize = 6;
pub const MAX_TRUSTED_SETS: usize = 1;
/// GuardDuty's limit on a list's file: 35 MB.
pub const MAX_OBJECT_BYTES: i64 = 35 * 1024 * 1024;
/// `name`: 1 to this many of `[A-Za-z0-9_-]`.
pub const MAX_NAME_CHARS: usize = 300;
/// `location`: at most this many characters.
pub const MAX_LOCATION_CHARS: usize = 300;
/// Listings: `maxResults` 1 to this (the default).
pub const MAX_LIST_RESULTS: i64 = 50;
/// Tags per set, and their keys' and values' lengths (GuardDuty's, as for every AWS tag).
pub const MAX_TAGS: usize = 50;
const MAX_TAG_KEY: usize = 128;
const MAX_TAG_VALUE: usize = 256;
/// `clientToken`: at most this many characters.
const MAX_CLIENT_TOKEN: usize = 64;
/// Conditional-write attempts on an update before giving up (500, retryable).
const WRITE_ATTEMPTS: usize = 5;

fn limit(kind: EntitySetKind) -> usize {
    match kind {
        EntitySetKind::Threat => MAX_THREAT_SETS,
        EntitySetKind::Trusted => MAX_TRUSTED_SETS,
    }
}

/// GuardDuty's words for a kind: the id field, the list field, the noun.
fn words(kind: EntitySetKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        EntitySetKind::Threat => (
            "threatEntitySetId",
            "threatEntitySetIds",
            "threat entity set",
        ),
        EntitySetKind::Trusted => (
            "trustedEntitySetId",
            "trustedEntitySetIds",
            "trusted entity set",
        ),
    }
}

pub(crate) async fn run(
    deps: &ApiDeps,
    op: Operation,
    req: &Request<'_>,
) -> Result<Value, ApiError> {
    match op {
        Operation::CreateEntitySet(kind) => create(deps, kind, parse(&req.body)?).await,
        Operation::ListEntitySets(kind) => list(deps, kind, req).await,
        Operation::GetEntitySet(kind) => {
            let set = find(deps, kind, req.resource).await?;
            Ok(describe(&set))
        }
        Operation::UpdateEntitySet(kind) => {
            update(deps, kind, req.resource, parse(&req.body)?).await
        }
        Operation::DeleteEntitySet(kind) => {
            let set = find(deps, kind, req.resource).await?;
            deps.sets.delete(&set.set_id).await?;
            Ok(json!({}))
        }
        other => Err(ApiError::NotFound(format!(
            "{} is not an entity-set operation.",
            other.name()
        ))),
    }
}

/// An S3 object a `location` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
}

/// Reads `location` as an S3 object URL: `s3://bucket/key`,
/// `https://bucket.s3.amazonaws.com/key`, `https://bucket.s3.<region>.amazonaws.com/key`,
/// `https://s3.amazonaws.com/bucket/key` or `https://s3.<region>.amazonaws.com/bucket/key`.
/// The error says what is wrong, for a 400.
pub fn parse_location(location: &str) -> Result<S3Object, String> {
    const FORMS: &str = "s3://bucket/key, https://bucket.s3.amazonaws.com/key, https://bucket.s3.<region>.amazonaws.com/key or https://s3.amazonaws.com/bucket/key";
    let wrong = || format!("it is not an S3 object URL ({FORMS})");
    if location.chars().count() > MAX_LOCATION_CHARS {
        return Err(format!("it is longer than {MAX_LOCATION_CHARS} characters"));
    }
    let (bucket, key) = if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').ok_or_else(wrong)?;
        (bucket.to_owned(), key.to_owned())
    } else if let Some(rest) = location.strip_prefix("https://") {
        if rest.contains(['?', '#']) {
            return Err("an object URL has no query or fragment".into());
        }
        let (host, path) = rest.split_once('/').ok_or_else(wrong)?;
        let host = host.to_ascii_lowercase();
        let stem = host.strip_suffix(".amazonaws.com").ok_or_else(wrong)?;
        let region_ok = |r: &str| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        // Path style: s3[.region].amazonaws.com/bucket/key.
        let path_style = stem == "s3" || stem.strip_prefix("s3.").is_some_and(region_ok);
        if path_style {
            let (bucket, key) = path.split_once('/').ok_or_else(wrong)?;
            (bucket.to_owned(), percent_decode(key)?)
        } else {
            // Virtual-hosted: bucket.s3[.region].amazonaws.com/key (bucket names may hold dots).
            let bucket = match stem.strip_suffix(".s3") {
                Some(b) => b,
                None => {
                    let (front, region) = stem.rsplit_once('.').ok_or_else(wrong)?;
                    if !region_ok(region) {
                        return Err(wrong());
                    }
                    front.strip_suffix(".s3").ok_or_else(wrong)?
                }
            };
            (bucket.to_owned(), percent_decode(path)?)
        }
    } else {
        return Err(wrong());
    };
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !bucket_ok {
        return Err(format!("{} is not an S3 bucket name", quoted(&bucket)));
    }
    if key.is_empty() {
        return Err("it names a bucket but no object".into());
    }
    if key.len() > 1024 || key.chars().any(char::is_control) {
        return Err("its object key is not valid".into());
    }
    Ok(S3Object { bucket, key })
}

/// `%XX` escapes of an HTTPS URL's path.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("its path has a bad %-escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "its path is not UTF-8".to_owned())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "name {} is not valid: use 1 to {MAX_NAME_CHARS} letters, digits, '_' or '-'.",
            quoted(name)
        )))
    }
}

fn check_location(location: &str) -> Result<S3Object, ApiError> {
    parse_location(location).map_err(|why| {
        ApiError::bad(format!(
            "location {} is not valid: {why}.",
            quoted(location)
        ))
    })
}

fn check_owner(owner: Option<&String>) -> Result<Option<String>, ApiError> {
    match owner.map(String::as_str).filter(|o| !o.is_empty()) {
        None => Ok(None),
        Some(o) if o.len() == 12 && o.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(o.to_owned())),
        Some(o) => Err(ApiError::bad(format!(
            "expectedBucketOwner {} is not a 12-digit account id.",
            quoted(o)
        ))),
    }
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad(format!(
            "tags has {} tags; at most {MAX_TAGS}.",
            tags.len()
        )));
    }
    for (k, v) in tags {
        let key_ok = (1..=MAX_TAG_KEY).contains(&k.chars().count())
            && !k.starts_with("aws:")
            && !k.chars().any(char::is_control);
        if !key_ok {
            return Err(ApiError::bad(format!(
                "The tag key {} is not valid: 1 to {MAX_TAG_KEY} characters, not starting with aws:.",
                quoted(k)
            )));
        }
        if v.chars().count() > MAX_TAG_VALUE || v.chars().any(char::is_control) {
            return Err(ApiError::bad(format!(
                "The value of tag {} is not valid: at most {MAX_TAG_VALUE} characters.",
                quoted(k)
            )));
        }
    }
    Ok(())
}

fn check_id(kind: EntitySetKind, id: Option<&str>) -> Result<String, ApiError> {
    let id = id.unwrap_or_default();
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(id.to_owned())
    } else {
        Err(ApiError::bad(format!(
            "{} is not a {} id (32 hexadecimal characters).",
            quoted(id),
            words(kind).2
        )))
    }
}

/// The set `id` of `kind`; GuardDuty answers 400 for one that does not exist.
async fn find(
    deps: &ApiDeps,
    kind: EntitySetKind,
    id: Option<&str>,
) -> Result<EntitySet, ApiError> {
    let id = check_id(kind, id)?;
    match deps.sets.get(&id).await? {
        Some(set) if set.kind == kind => Ok(set),
        _ => Err(ApiError::bad(format!(
            "The request is rejected because the {} {id} does not exist.",
            words(kind).2
        ))),
    }
}

/// GetThreatEntitySet's response.
fn describe(set: &EntitySet) -> Value {
    let mut v = json!({
        "name": set.name,
        "format": set.format.as_str(),
        "location": set.location,
        "status": set.status.as_str(),
        "tags": set.tags,
        "createdAt": iso(set.created_at),
        "updatedAt": iso(set.updated_at),
    });
    if let Some(o) = v.as_object_mut() {
        if let Some(owner) = &set.expected_bucket_owner {
            o.insert("expectedBucketOwner".into(), json!(owner));
        }
        if let Some(e) = &set.error_details {
            o.insert("errorDetails".into(), json!(e));
        }
    }
    v
}

/// What activating `set` gives: `ACTIVE`, or `ERROR` and why. A failure S3 may recover from
/// (throttling, an outage) is a 500, to retry.
async fn activation(
    deps: &ApiDeps,
    set: &EntitySet,
) -> Result<(EntitySetStatus, Option<String>), ApiError> {
    let object = check_location(&set.location)?;
    let url = format!("s3://{}/{}", object.bucket, object.key);
    let result = deps
        .s3
        .head_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_expected_bucket_owner(set.expected_bucket_owner.clone())
        .send()
        .await;
    let error = |why: String| Ok((EntitySetStatus::Error, Some(why)));
    match result {
        Ok(head) => {
            let size = head.content_length().unwrap_or(0);
            if size > MAX_OBJECT_BYTES {
                error(format!(
                    "The object {url} is {size} bytes; an entity set's file is at most {MAX_OBJECT_BYTES} bytes (35 MB)."
                ))
            } else {
                Ok((EntitySetStatus::Active, None))
            }
        }
        Err(SdkError::ServiceError(e)) => match e.raw().status().as_u16() {
            404 => error(format!("The object {url} does not exist.")),
            403 => error(format!(
                "Access to the object {url} is denied: the API's role reads only the buckets of the template's EntitySetBuckets parameter, and the bucket's policy and owner (expectedBucketOwner) must allow it."
            )),
            status @ (301 | 400 | 405 | 409) => error(format!(
                "S3 refused to read the object {url} (HTTP {status}): check the bucket's name and region."
            )),
            status => Err(s3_failure(format!("HeadObject answered HTTP {status}"))),
        },
        Err(e) => Err(s3_failure(
            aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        )),
    }
}

fn s3_failure(message: String) -> ApiError {
    ApiError::Store(StoreError::Aws {
        operation: "HeadObject",
        failure: peregrine_aws::Failure::Unavailable,
        message,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateRequest {
    name: String,
    format: String,
    location: String,
    activate: bool,
    #[serde(default)]
    expected_bucket_owner: Option<String>,
    #[serde(default)]
    client_token: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

async fn create(deps: &ApiDeps, kind: EntitySetKind, r: CreateRequest) -> Result<Value, ApiError> {
    let (id_field, _, noun) = words(kind);
    check_name(&r.name)?;
    let format = EntitySetFormat::parse(&r.format).ok_or_else(|| {
        ApiError::bad(format!(
            "format {} is not one of {}.",
            quoted(&r.format),
            EntitySetFormat::names()
        ))
    })?;
    check_location(&r.location)?;
    let owner = check_owner(r.expected_bucket_owner.as_ref())?;
    let tags = r.tags.unwrap_or_default();
    check_tags(&tags)?;
    let token = r.client_token.filter(|t| !t.is_empty());
    if let Some(t) = &token
        && (t.chars().count() > MAX_CLIENT_TOKEN || t.chars().any(char::is_control))
    {
        return Err(ApiError::bad(format!(
            "clientToken is not valid: at most {MAX_CLIENT_TOKEN} printable characters."
        )));
    }
    // With a clientToken the id is derived from it, so a retried create (even a concurrent one)
    // lands on the same set.
    let set_id = match &token {
        Some(t) => hex::encode(&Sha256::digest(format!("{kind}\0{t}").as_bytes())[..16]),
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let existing = deps.sets.all().await?;
    if let Some(same) = existing.iter().find(|s| s.set_id == set_id) {
        return if same.name == r.name && same.location == r.location && same.format == format {
            Ok(json!({ id_field: same.set_id }))
        } else {
            Err(ApiError::bad(
                "The clientToken was used for another request with other parameters.",
            ))
        };
    }
    let of_kind: Vec<&EntitySet> = existing.iter().filter(|s| s.kind == kind).collect();
    if of_kind.iter().any(|s| s.name == r.name) {
        return Err(ApiError::bad(format!(
            "A {noun} named {} already exists.",
            quoted(&r.name)
        )));
    }
    if of_kind.len() >= limit(kind) {
        return Err(ApiError::bad(format!(
            "The request is rejected because a detector has at most {} {noun}s; delete one first.",
            limit(kind)
        )));
    }
    let now = Timestamp::now();
    let mut set = EntitySet {
        set_id,
        kind,
        name: r.name,
        format,
        location: r.location,
        expected_bucket_owner: owner,
        status: EntitySetStatus::Inactive,
        created_at: now,
        updated_at: now,
        tags,
        error_details: None,
        client_token: token,
    };
    if r.activate {
        (set.status, set.error_details) = activation(deps, &set).await?;
    }
    if !deps.sets.create(&set).await? {
        // A concurrent create with the same clientToken won: that set is this one.
        return Ok(json!({ id_field: set.set_id }));
    }
    Ok(json!({ id_field: set.set_id }))
}

async fn list(deps: &ApiDeps, kind: EntitySetKind, req: &Request<'_>) -> Result<Value, ApiError> {
    let (_, list_field, _) = words(kind);
    for name in req.query.keys() {
        if name != "maxResults" && name != "nextToken" {
            return Err(ApiError::bad(format!(
                "The query parameter {} is not maxResults or nextToken.",
                quoted(name)
            )));
        }
    }
    let max = match req.query.get("maxResults").filter(|m| !m.is_empty()) {
        None => MAX_LIST_RESULTS,
        Some(m) => m
            .parse::<i64>()
            .ok()
            .filter(|m| (1..=MAX_LIST_RESULTS).contains(m))
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "maxResults is {}; it must be 1 to {MAX_LIST_RESULTS}.",
                    quoted(m)
                ))
            })?,
    };
    let digest = token::digest_of(&json!({"list": kind.as_str()}));
    let after = match req.query.get("nextToken").filter(|t| !t.is_empty()) {
        Some(t) => Some(token::decode(t, &digest)?),
        None => None,
    };
    let key = |s: &EntitySet| SortKey {
        value: Some(Scalar::Str(iso(s.created_at))),
        id: s.set_id.clone(),
    };
    let position = |k: &SortKey| {
        let value = match &k.value {
            Some(Scalar::Str(v)) => v.clone(),
            _ => String::new(),
        };
        (value, k.id.clone())
    };
    let mut sets: Vec<SortKey> = deps
        .sets
        .all()
        .await?
        .iter()
        .filter(|s| s.kind == kind)
        .map(key)
        .filter(|k| after.as_ref().is_none_or(|a| position(k) > position(a)))
        .collect();
    sets.sort_by_key(position);
    let max = usize::try_from(max).unwrap_or(1);
    let more = sets.len() > max;
    sets.truncate(max);
    let ids: Vec<&str> = sets.iter().map(|k| k.id.as_str()).collect();
    let mut out = json!({ list_field: ids });
    if let (true, Some(last), Some(o)) = (more, sets.last(), out.as_object_mut()) {
        o.insert("nextToken".into(), json!(token::encode(&digest, last)));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    activate: Option<bool>,
    #[serde(default)]
    expected_bucket_owner: Option<String>,
}

async fn update(
    deps: &ApiDeps,
    kind: EntitySetKind,
    id: Option<&str>,
    r: UpdateRequest,
) -> Result<Value, ApiError> {
    if let Some(name) = &r.name {
        check_name(name)?;
    }
    if let Some(location) = &r.location {
        check_location(location)?;
    }
    let owner = check_owner(r.expected_bucket_owner.as_ref())?;
    for _ in 0..WRITE_ATTEMPTS {
        let read = find(deps, kind, id).await?;
        let mut set = read.clone();
        if let Some(name) = &r.name
            && *name != set.name
        {
            let taken = deps
                .sets
                .all()
                .await?
                .iter()
                .any(|s| s.kind == kind && s.name == *name && s.set_id != set.set_id);
            if taken {
                return Err(ApiError::bad(format!(
                    "A {} named {} already exists.",
                    words(kind).2,
                    quoted(name)
                )));
            }
            set.name = name.clone();
        }
        let moved = r.location.as_ref().is_some_and(|l| *l != set.location)
            || (owner.is_some() && owner != set.expected_bucket_owner);
        if let Some(location) = &r.location {
            set.location = location.clone();
        }
        if owner.is_some() {
            set.expected_bucket_owner = owner.clone();
        }
        // Activate when asked, or check again when an active (or failed) set's object moved.
        let was_on = matches!(set.status, EntitySetStatus::Active | EntitySetStatus::Error);
        match r.activate {
            Some(false) => {
                set.status = EntitySetStatus::Inactive;
                set.error_details = None;
            }
            Some(true) => (set.status, set.error_details) = activation(deps, &set).await?,
            None if moved && was_on => {
                (set.status, set.error_details) = activation(deps, &set).await?;
            }
            None => {}
        }
        if set == read {
            return Ok(json!({}));
        }
        let now = Timestamp::now();
        // Strictly later than what was read, so the condition tells the two writes apart.
        set.updated_at = if now > read.updated_at {
            now
        } else {
            Timestamp::from_unix_nanos(read.updated_at.unix_nanos() + 1_000_000)
        };
        if deps.sets.replace(&set, read.updated_at).await? {
            return Ok(json!({}));
        }
    }
    Err(ApiError::Contended(check_id(kind, id)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bucket: &str, key: &str) -> S3Object {
        S3Object {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    #[test]
    fn locations_are_s3_object_urls() {
        for (url, want) in [
            (
                "s3://my-bucket/lists/ips.txt",
                object("my-bucket", "lists/ips.txt"),
            ),
            (
                "https://my-bucket.s3.amazonaws.com/lists/ips.txt",
                object("my-bucket", "lists/ips.txt"),
            ),
            (
                "https://s3.amazonaws.com/my-bucket/lists/ips.txt",
                object("my-bucket", "lists/ips.txt"),
            ),
            (
                "https://my.bucket.s3.eu-west-1.amazonaws.com/a%20b.txt",
                object("my.bucket", "a b.txt"),
            ),
            (
                "https://s3.eu-west-1.amazonaws.com/my-bucket/k",
                object("my-bucket", "k"),
            ),
        ] {
            assert_eq!(parse_location(url), Ok(want), "{url}");
        }
        for bad in [
            "",
            "my-bucket/key",
            "s3://my-bucket",
            "s3://my-bucket/",
            "s3://My_Bucket/key",
            "s3://ab/key",
            "http://my-bucket.s3.amazonaws.com/key",
            "https://example.com/my-bucket/key",
            "https://my-bucket.s3.amazonaws.com/",
            "https://my-bucket.s3.amazonaws.com/key?versionId=1",
            "https://my-bucket.s3.amazonaws.com/%zz",
            "https://s3.amazonaws.com/my-bucket",
            "s3://my-bucket/a\nb",
        ] {
            assert!(parse_location(bad).is_err(), "{bad:?}");
        }
        let long = format!("s3://my-bucket/{}", "k".repeat(400));
        assert!(parse_location(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn names_tags_owners_and_ids() {
        assert!(check_name("bad-ips_2").is_ok());
        for bad in ["", "has space", "dot.ted", &"a".repeat(301)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_owner(Some(&"111122223333".to_owned())).is_ok());
        assert!(check_owner(Some(&"1111".to_owned())).is_err());
        assert!(check_tags(&BTreeMap::from([("aws:x".to_owned(), "v".to_owned())])).is_err());
        assert!(check_tags(&BTreeMap::from([("team".to_owned(), "v".to_owned())])).is_ok());
        assert!(
            check_id(
                EntitySetKind::Threat,
                Some("0123456789abcdef0123456789abcdef")
            )
            .is_ok()
        );
        assert!(
            check_id(
                EntitySetKind::Threat,
                Some("0123456789ABCDEF0123456789abcdef")
            )
            .is_err()
        );
        assert!(check_id(EntitySetKind::Threat, None).is_err());
    }
}
