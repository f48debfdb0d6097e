//! Peregrine's findings API Lambda, as a library: GuardDuty's findings operations over
//! FindingsTable, behind a function URL with `AuthType: AWS_IAM`. `main.rs` only builds the
//! client and hands [`handle`] to `lambda_runtime::run`; tests and the local runner
//! (`tools/local`) call the same function in-process.
//!
//! | Route (POST)                            | GuardDuty operation     |
//! |-----------------------------------------|-------------------------|
//! | `/detector/{id}/findings`               | ListFindings            |
//! | `/detector/{id}/findings/get`           | GetFindings             |
//! | `/detector/{id}/findings/statistics`    | GetFindingsStatistics   |
//! | `/detector/{id}/findings/archive`       | ArchiveFindings         |
//! | `/detector/{id}/findings/unarchive`     | UnarchiveFindings       |
//! | `/detector/{id}/findings/feedback`      | UpdateFindingsFeedback  |
//!
//! Every answer is a response (never an invocation error): a client's mistake is a 400
//! `BadRequestException`, a store failure a 500 `InternalServerErrorException` with no details.
//! See `docs/api.md`.

mod config;
mod error;
mod ops;
mod store;
mod token;

use aws_config::SdkConfig;
use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use base64::Engine;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

pub use crate::config::Config;
pub use crate::error::ApiError;
pub use crate::store::{ApiStore, MAX_CANDIDATES, Plan};
pub use peregrine_criteria::{FIELDS, Kind};

/// The Lambda binary (`BuildProperties.Binary` in template.yaml).
pub const BINARY: &str = "peregrine-api";

/// Request bodies beyond this are refused (400) before they are parsed.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What the handler needs, built once per cold start.
#[derive(Clone, Debug)]
pub struct ApiDeps {
    pub config: Config,
    pub store: ApiStore,
}

impl ApiDeps {
    pub fn from_sdk(sdk: &SdkConfig, config: Config) -> ApiDeps {
        let store = ApiStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.findings_table);
        ApiDeps { config, store }
    }
}

/// A function URL response (payload format 2.0).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResponse {
    pub status_code: u16,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
    pub is_base64_encoded: bool,
}

impl ApiResponse {
    fn json(status: u16, body: &Value, error_type: Option<&str>) -> ApiResponse {
        let mut headers = std::collections::BTreeMap::from([(
            "content-type".to_owned(),
            "application/json".to_owned(),
        )]);
        if let Some(t) = error_type {
            headers.insert("x-amzn-errortype".into(), t.to_owned());
        }
        ApiResponse {
            status_code: status,
            headers,
            body: body.to_string(),
            is_base64_encoded: false,
        }
    }

    fn error(e: &ApiError) -> ApiResponse {
        let body = serde_json::json!({"message": e.public_message(), "__type": e.error_type()});
        ApiResponse::json(e.status(), &body, Some(e.error_type()))
    }
}

/// The operations, by the path after `/detector/{id}/findings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    List,
    Get,
    Statistics,
    Archive,
    Unarchive,
    Feedback,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::List => "ListFindings",
            Operation::Get => "GetFindings",
            Operation::Statistics => "GetFindingsStatistics",
            Operation::Archive => "ArchiveFindings",
            Operation::Unarchive => "UnarchiveFindings",
            Operation::Feedback => "UpdateFindingsFeedback",
        }
    }
}

/// The detector id and operation a path names.
pub fn route(path: &str) -> Option<(&str, Operation)> {
    let rest = path.strip_prefix("/detector/")?;
    let (detector, rest) = rest.split_once('/')?;
    let op = match rest.trim_end_matches('/') {
        "findings" => Operation::List,
        "findings/get" => Operation::Get,
        "findings/statistics" => Operation::Statistics,
        "findings/archive" => Operation::Archive,
        "findings/unarchive" => Operation::Unarchive,
        "findings/feedback" => Operation::Feedback,
        _ => return None,
    };
    (!detector.is_empty()).then_some((detector, op))
}

/// One request through the API. Never an invocation error: every outcome is a response.
pub async fn handle(
    deps: &ApiDeps,
    event: LambdaEvent<LambdaFunctionUrlRequest>,
) -> Result<ApiResponse, Diagnostic> {
    let request_id = event.context.request_id.clone();
    let span = tracing::info_span!("request", request_id = %request_id);
    let _enter = span.enter();
    let result = serve(deps, &event.payload).await;
    Ok(match result {
        Ok(body) => ApiResponse::json(200, &body, None),
        Err(e) => {
            if e.status() >= 500 {
                tracing::error!(error = %e, "request failed");
            } else {
                tracing::info!(status = e.status(), error = %e, "request refused");
            }
            ApiResponse::error(&e)
        }
    })
}

async fn serve(deps: &ApiDeps, req: &LambdaFunctionUrlRequest) -> Result<Value, ApiError> {
    let path = req.raw_path.as_deref().unwrap_or("/");
    let Some((detector, op)) = route(path) else {
        return Err(ApiError::NotFound(format!(
            "No operation at {}.",
            peregrine_criteria::quoted(path)
        )));
    };
    let method = req.request_context.http.method.as_deref().unwrap_or("POST");
    if !method.eq_ignore_ascii_case("POST") {
        return Err(ApiError::bad(format!(
            "{} takes POST, not {}.",
            op.name(),
            peregrine_criteria::quoted(method)
        )));
    }
    if detector != deps.config.detector_id {
        // GuardDuty's answer for a detector that is not the caller's.
        return Err(ApiError::bad(
            "The request is rejected because the input detectorId is not owned by the current account.",
        ));
    }
    let body = body_bytes(req)?;
    tracing::info!(operation = op.name(), bytes = body.len(), "request");
    ops::run(deps, op, &body).await
}

/// The body, decoded and bounded. An absent body is `{}`.
fn body_bytes(req: &LambdaFunctionUrlRequest) -> Result<Vec<u8>, ApiError> {
    let too_big = || {
        ApiError::bad(format!(
            "The request body is larger than {MAX_BODY_BYTES} bytes."
        ))
    };
    let Some(body) = req.body.as_deref() else {
        return Ok(b"{}".to_vec());
    };
    // Base64 is 4/3 of the bytes: refuse before decoding.
    if body.len() > MAX_BODY_BYTES.div_ceil(3) * 4 + 4 {
        return Err(too_big());
    }
    let bytes = if req.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| ApiError::bad("The request body is not valid base64."))?
    } else {
        body.as_bytes().to_vec()
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_big());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(b"{}".to_vec());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/detector/d/findings"), Some(("d", Operation::List)));
        assert_eq!(
            route("/detector/d/findings/get"),
            Some(("d", Operation::Get))
        );
        assert_eq!(
            route("/detector/d/findings/feedback/"),
            Some(("d", Operation::Feedback))
        );
        assert_eq!(route("/detector//findings"), None);
        assert_eq!(route("/detector/d/filter"), None);
        assert_eq!(route("/"), None);
    }
}
