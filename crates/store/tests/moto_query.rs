//! The moto launcher hands a table Query only its partition's items (moto itself reads the
//! whole table per Query; see `crates/testkit/moto/peregrine_moto.py`). What a Query returns
//! must not change: key conditions, order both ways, limits and pages, filters, and a
//! partition that does not exist.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use peregrine_testkit::moto::Moto;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

async fn table(client: &Client) {
    let def = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name("t")
        .attribute_definitions(def("pk"))
        .attribute_definitions(def("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    for p in ["a", "b", "c"] {
        for i in 0..7 {
            client
                .put_item()
                .table_name("t")
                .item("pk", s(p))
                .item("sk", s(&format!("{i:02}")))
                .item("odd", AttributeValue::Bool(i % 2 == 1))
                .send()
                .await
                .unwrap();
        }
    }
}

/// Every page of a Query of partition `p`, as (pk, sk) pairs.
async fn query(
    client: &Client,
    p: &str,
    range: Option<&str>,
    forward: bool,
    limit: Option<i32>,
    only_odd: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let mut q = client
            .query()
            .table_name("t")
            .expression_attribute_values(":p", s(p))
            .scan_index_forward(forward)
            .set_limit(limit)
            .set_exclusive_start_key(start.take());
        q = match range {
            Some(from) => q
                .key_condition_expression("pk = :p AND sk >= :from")
                .expression_attribute_values(":from", s(from)),
            None => q.key_condition_expression("pk = :p"),
        };
        if only_odd {
            q = q
                .filter_expression("odd = :t")
                .expression_attribute_values(":t", AttributeValue::Bool(true));
        }
        let page = q.send().await.unwrap();
        for item in page.items() {
            out.push((
                item["pk"].as_s().unwrap().clone(),
                item["sk"].as_s().unwrap().clone(),
            ));
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return out,
        }
    }
}

fn keys(p: &str, sks: &[u32]) -> Vec<(String, String)> {
    sks.iter()
        .map(|i| (p.to_owned(), format!("{i:02}")))
        .collect()
}

#[tokio::test]
async fn a_query_reads_its_partition_and_nothing_else() {
    let moto = Moto::start().expect("moto (scripts/setup installs it)");
    let client = Client::new(&moto.sdk_config().await);
    table(&client).await;

    let all: Vec<u32> = (0..7).collect();
    assert_eq!(
        query(&client, "b", None, true, None, false).await,
        keys("b", &all)
    );
    let mut back = all.clone();
    back.reverse();
    assert_eq!(
        query(&client, "c", None, false, None, false).await,
        keys("c", &back)
    );
    assert_eq!(
        query(&client, "a", Some("04"), true, None, false).await,
        keys("a", &[4, 5, 6])
    );
    // Pages of 2: the last key of each page starts the next, within the partition.
    assert_eq!(
        query(&client, "b", None, true, Some(2), false).await,
        keys("b", &all)
    );
    assert_eq!(
        query(&client, "a", None, false, Some(3), true).await,
        keys("a", &[5, 3, 1])
    );
    assert!(
        query(&client, "zzz", None, true, None, false)
            .await
            .is_empty()
    );
}
