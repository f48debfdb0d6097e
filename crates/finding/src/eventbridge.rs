//! EventBridge delivery (reference §3.1).
//!
//! GuardDuty publishes with `source: aws.guardduty` and `detail-type: GuardDuty Finding`, and
//! `detail` is one finding. EventBridge forbids custom `aws.*` sources, so Peregrine uses its own
//! source and detail-type but the same `detail`: an existing GuardDuty rule such as
//! `{"source":["aws.guardduty"],"detail-type":["GuardDuty Finding"],"detail":{"severity":[{"numeric":[">=",7]}]}}`
//! ports by changing only `source` and `detail-type`.

use serde::Serialize;

use crate::{Finding, FindingError};

/// The `source` of Peregrine finding events.
pub const SOURCE: &str = "peregrine";
/// The `detail-type` of Peregrine finding events.
pub const DETAIL_TYPE: &str = "Peregrine Finding";
/// PutEvents rejects an entry larger than 256 KiB (source, detail-type, detail and resources).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// One PutEvents request entry (`PutEventsRequestEntry`; the API's member names are PascalCase).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutEventsEntry {
    pub source: String,
    pub detail_type: String,
    /// The finding as a JSON string, camelCase, as in GuardDuty's `detail`.
    pub detail: String,
    /// GuardDuty sends none; kept empty so rules that match on `resources` behave the same.
    pub resources: Vec<String>,
}

/// The PutEvents `Detail` string: the finding as compact camelCase JSON.
pub fn detail(finding: &Finding) -> Result<String, FindingError> {
    Ok(serde_json::to_string(finding)?)
}

/// The PutEvents entry for a finding, checked against EventBridge's size limit so an oversize
/// finding fails here with a clear error rather than as a partial PutEvents failure.
pub fn entry(finding: &Finding) -> Result<PutEventsEntry, FindingError> {
    let detail = detail(finding)?;
    let bytes = SOURCE.len() + DETAIL_TYPE.len() + detail.len();
    if bytes > MAX_ENTRY_BYTES {
        return Err(FindingError::TooLarge {
            bytes,
            limit: MAX_ENTRY_BYTES,
        });
    }
    Ok(PutEventsEntry {
        source: SOURCE.to_owned(),
        detail_type: DETAIL_TYPE.to_owned(),
        detail,
        resources: Vec::new(),
    })
}
