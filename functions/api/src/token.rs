//! `nextToken`: where the next page of a listing starts. It is base64url of
//! `{"v":1,"q":<query digest>,"k":<sort value>,"id":<finding id>}`: the position (in the sort)
//! of the last finding returned, and a digest of the request's criteria and sort. It holds no
//! DynamoDB key: the next page is the findings after that position among those the same
//! criteria select, so an edited token can only move the start within the caller's own query.
//! A token that does not decode, is of another version, was made for other criteria or a
//! different sort, or is oversized is a 400.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use peregrine_criteria::{FindingCriteria, SortCriteria, SortKey};

/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_BYTES: usize = 2048;

// No deny_unknown_fields: serde does not support it with `flatten`.
#[derive(Serialize, Deserialize)]
struct Token {
    v: u8,
    q: String,
    #[serde(flatten)]
    after: SortKey,
}

/// The digest of a listing's criteria and sort, as the token carries it.
pub fn query_digest(criteria: Option<&FindingCriteria>, sort: Option<&SortCriteria>) -> String {
    digest_of(&serde_json::json!({"c": criteria, "s": sort}))
}

/// The digest of any listing's query (its criteria and sort as JSON), for [`encode`] and
/// [`decode`]: ListCoverage's, the entity-set listings'.
pub fn digest_of(query: &serde_json::Value) -> String {
    hex::encode(&Sha256::digest(query.to_string().as_bytes())[..16])
}

pub fn encode(digest: &str, after: &SortKey) -> String {
    let token = Token {
        v: 1,
        q: digest.to_owned(),
        after: after.clone(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

pub fn decode(token: &str, digest: &str) -> Result<SortKey, ApiError> {
    let bad = |why: &str| ApiError::bad(format!("The nextToken is not valid: {why}."));
    if token.len() > MAX_TOKEN_BYTES {
        return Err(bad("it is too long"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad("it is not one this API returned"))?;
    let t: Token =
        serde_json::from_slice(&bytes).map_err(|_| bad("it is not one this API returned"))?;
    if t.v != 1 {
        return Err(bad("it is of another version"));
    }
    if t.q != digest {
        return Err(bad(
            "it was returned for other criteria or another sort; repeat the same request with it",
        ));
    }
    if t.after.id.is_empty() || t.after.id.len() > 300 {
        return Err(bad("it names no finding"));
    }
    Ok(t.after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use peregrine_criteria::Scalar;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_query() {
        let key = SortKey {
            value: Some(Scalar::Num(8.0)),
            id: "abc".into(),
        };
        let d = query_digest(None, None);
        let t = encode(&d, &key);
        assert_eq!(decode(&t, &d).unwrap(), key);
        let other = query_digest(
            None,
            Some(&SortCriteria {
                attribute_name: Some("severity".into()),
                order_by: None,
            }),
        );
        assert!(decode(&t, &other).is_err());
        for bad in ["", "!!!", "e30", &"A".repeat(5000)] {
            assert!(decode(bad, &d).is_err(), "{bad}");
        }
    }
}
