//! Threat and trusted entity sets against moto (DynamoDB and S3): create, list with pages,
//! get, update, activate (the object present: ACTIVE; missing or too large: ERROR), delete,
//! GuardDuty's limits, clientToken idempotency, and bad requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::collections::BTreeSet;

use common::{Api, api};
use peregrine_store::{EntitySetKind, EntitySetStatus};
use serde_json::{Value, json};

const BUCKET: &str = "peregrine-lists";

async fn bucket(a: &Api) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&a.sdk)
        .force_path_style(true)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    s3
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, bytes: Vec<u8>) {
    s3.put_object()
        .bucket(BUCKET)
        .key(key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
}

fn set(name: &str, location: &str, activate: bool) -> Value {
    json!({"name": name, "format": "TXT", "location": location, "activate": activate})
}

/// Every id a listing returns, page by page of `page`; the number of pages.
async fn list_all(a: &Api, path: &str, field: &str, page: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut query = vec![("maxResults", page)];
        if !token.is_empty() {
            query.push(("nextToken", token.as_str()));
        }
        let (status, v) = a.call("GET", path, &query, None).await;
        assert_eq!(status, 200, "{v}");
        pages += 1;
        ids.extend(
            v[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_owned()),
        );
        match v["nextToken"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_owned(),
            _ => return (ids, pages),
        }
    }
}

#[tokio::test]
async fn threat_sets_activate_against_s3_list_in_pages_and_stop_at_six() {
    let a = api().await;
    let s3 = bucket(&a).await;
    put(&s3, "lists/ips.txt", b"198.51.100.7\n".to_vec()).await;

    // Present object: ACTIVE, and what the detector loads.
    let created = a
        .ok(
            "POST",
            "threatentityset",
            Some(json!({
                "name": "bad-ips", "format": "TXT", "location": format!("s3://{BUCKET}/lists/ips.txt"),
                "activate": true, "expectedBucketOwner": "123456789012", "tags": {"team": "sec"},
            })),
        )
        .await;
    let id = created["threatEntitySetId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let got = a.ok("GET", &format!("threatentityset/{id}"), None).await;
    assert_eq!(got["status"], "ACTIVE", "{got}");
    assert_eq!(got["name"], "bad-ips");
    assert_eq!(got["format"], "TXT");
    assert_eq!(got["tags"], json!({"team": "sec"}));
    assert_eq!(got["expectedBucketOwner"], "123456789012");
    assert!(got["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(got.get("errorDetails").is_none());
    let active = a.deps.sets.active(EntitySetKind::Threat).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].set_id, id);

    // Missing object: ERROR with the reason, not a request error; not loaded.
    let missing = a
        .ok(
            "POST",
            "threatentityset",
            Some(set(
                "missing",
                &format!("https://{BUCKET}.s3.amazonaws.com/lists/nothing.txt"),
                true,
            )),
        )
        .await;
    let missing = missing["threatEntitySetId"].as_str().unwrap().to_owned();
    let got = a
        .ok("GET", &format!("threatentityset/{missing}"), None)
        .await;
    assert_eq!(got["status"], "ERROR", "{got}");
    assert!(
        got["errorDetails"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{got}"
    );
    assert_eq!(
        a.deps
            .sets
            .active(EntitySetKind::Threat)
            .await
            .unwrap()
            .len(),
        1
    );

    // The object appears; activating again makes it ACTIVE. Deactivating: INACTIVE.
    put(&s3, "lists/nothing.txt", b"203.0.113.9\n".to_vec()).await;
    let path = format!("threatentityset/{missing}");
    a.ok("POST", &path, Some(json!({"activate": true}))).await;
    let got = a.ok("GET", &path, None).await;
    assert_eq!(
        (got["status"].as_str(), got.get("errorDetails")),
        (Some("ACTIVE"), None)
    );
    a.ok(
        "POST",
        &path,
        Some(json!({"activate": false, "name": "renamed"})),
    )
    .await;
    let got = a.ok("GET", &path, None).await;
    assert_eq!(got["status"], "INACTIVE");
    assert_eq!(got["name"], "renamed");
    assert!(got["updatedAt"].as_str() >= got["createdAt"].as_str());

    // An object over 35 MB: ERROR.
    put(&s3, "lists/huge.txt", vec![b'1'; 35 * 1024 * 1024 + 1]).await;
    let huge = a
        .ok(
            "POST",
            "threatentityset",
            Some(set("huge", &format!("s3://{BUCKET}/lists/huge.txt"), true)),
        )
        .await;
    let got = a
        .ok(
            "GET",
            &format!(
                "threatentityset/{}",
                huge["threatEntitySetId"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(got["status"], "ERROR");
    assert!(
        got["errorDetails"].as_str().unwrap().contains("35 MB"),
        "{got}"
    );

    // Moving an active set's location to a missing object: ERROR.
    let first = format!("threatentityset/{id}");
    a.ok(
        "POST",
        &first,
        Some(json!({"location": format!("s3://{BUCKET}/lists/gone.txt")})),
    )
    .await;
    assert_eq!(a.ok("GET", &first, None).await["status"], "ERROR");

    // Six threat sets in all; the seventh is refused.
    for i in 0..3 {
        a.ok(
            "POST",
            "threatentityset",
            Some(set(
                &format!("more-{i}"),
                &format!("s3://{BUCKET}/lists/ips.txt"),
                false,
            )),
        )
        .await;
    }
    let message = a
        .bad(
            "POST",
            "threatentityset",
            Some(set(
                "seventh",
                &format!("s3://{BUCKET}/lists/ips.txt"),
                false,
            )),
        )
        .await;
    assert!(message.contains("at most 6"), "{message}");

    // Pages of 4: two pages, every set once.
    let (ids, pages) = list_all(&a, "threatentityset", "threatEntitySetIds", "4").await;
    assert_eq!(pages, 2);
    assert_eq!(ids.len(), 6);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 6);
    let (_, pages) = list_all(&a, "threatentityset", "threatEntitySetIds", "50").await;
    assert_eq!(pages, 1);
    let (status, v) = a
        .call("GET", "threatentityset", &[("maxResults", "2")], None)
        .await;
    assert_eq!(status, 200);
    let token = v["nextToken"].as_str().unwrap().to_owned();
    // A token is bound to its listing.
    let (status, _) = a
        .call("GET", "trustedentityset", &[("nextToken", &token)], None)
        .await;
    assert_eq!(status, 400);
    for query in [
        vec![("maxResults", "0")],
        vec![("maxResults", "51")],
        vec![("maxResults", "x")],
        vec![("nextToken", "garbage!")],
        vec![("other", "1")],
    ] {
        let (status, v) = a.call("GET", "threatentityset", &query, None).await;
        assert_eq!(status, 400, "{query:?}: {v}");
    }

    // Delete: gone from Get and List; a second delete is a 400 (no such set).
    a.ok("DELETE", &first, None).await;
    a.bad("GET", &first, None).await;
    a.bad("DELETE", &first, None).await;
    let (ids, _) = list_all(&a, "threatentityset", "threatEntitySetIds", "50").await;
    assert_eq!(ids.len(), 5);
    assert!(!ids.contains(&id));
    // Room for one again.
    a.ok(
        "POST",
        "threatentityset",
        Some(set(
            "sixth-again",
            &format!("s3://{BUCKET}/lists/ips.txt"),
            false,
        )),
    )
    .await;
    let stored: Vec<_> = a.deps.sets.all().await.unwrap();
    assert!(stored.iter().all(|s| s.status != EntitySetStatus::Deleted));
}

#[tokio::test]
async fn one_trusted_set_idempotent_creates_and_bad_requests() {
    let a = api().await;
    let s3 = bucket(&a).await;
    put(&s3, "trusted.txt", b"10.0.0.1\n".to_vec()).await;
    let location = format!("s3://{BUCKET}/trusted.txt");
    let body = json!({"name": "ours", "format": "OTX_CSV", "location": location, "activate": true,
                      "clientToken": "token-1"});
    let first = a.ok("POST", "trustedentityset", Some(body.clone())).await;
    let id = first["trustedEntitySetId"].as_str().unwrap().to_owned();
    // The same clientToken: the same set, not a second one (which the limit would refuse).
    let again = a.ok("POST", "trustedentityset", Some(body)).await;
    assert_eq!(again["trustedEntitySetId"], id.as_str());
    let got = a.ok("GET", &format!("trustedentityset/{id}"), None).await;
    assert_eq!(got["status"], "ACTIVE", "{got}");
    assert_eq!(got["format"], "OTX_CSV");
    let message = a
        .bad(
            "POST",
            "trustedentityset",
            Some(set("second", &location, false)),
        )
        .await;
    assert!(message.contains("at most 1"), "{message}");
    // Kinds do not mix: a trusted set is not a threat set.
    a.bad("GET", &format!("threatentityset/{id}"), None).await;
    let (status, v) = a.call("GET", "trustedentityset", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"trustedEntitySetIds": [id]}));

    // Bad requests: each a 400 that says what is wrong.
    for (body, says) in [
        (set("bad name", &location, false), "name"),
        (set("x", "s3://bucket-only", false), "location"),
        (set("x", "https://example.com/a/b", false), "location"),
        (set("x", "ftp://b/k", false), "location"),
        (
            json!({"name": "x", "format": "CSV", "location": location, "activate": false}),
            "format",
        ),
        (
            json!({"name": "x", "format": "TXT", "location": location}),
            "activate",
        ),
        (
            json!({"name": "x", "format": "TXT", "location": location, "activate": false, "colour": 1}),
            "colour",
        ),
        (
            json!({"name": "x", "format": "TXT", "location": location, "activate": false,
                   "expectedBucketOwner": "me"}),
            "expectedBucketOwner",
        ),
        (
            json!({"name": "x", "format": "TXT", "location": location, "activate": false,
                   "tags": {"aws:reserved": "v"}}),
            "tag",
        ),
    ] {
        let message = a.bad("POST", "threatentityset", Some(body.clone())).await;
        assert!(message.contains(says), "{body}: {message}");
    }
    a.bad("POST", "threatentityset/not-an-id", Some(json!({})))
        .await;
    a.bad(
        "POST",
        &format!("trustedentityset/{id}"),
        Some(json!({"location": "s3://x"})),
    )
    .await;
    // A method the path does not take.
    let message = a.bad("PUT", "threatentityset", None).await;
    assert!(
        message.contains("POST (CreateThreatEntitySet)"),
        "{message}"
    );
    assert!(a.deps.sets.all().await.unwrap().len() == 1);
}
