//! Peregrine's findings API Lambda, as a library: GuardDuty's findings operations over
//! FindingsTable, behind a function URL with `AuthType: AWS_IAM`. `main.rs` only builds the
//! client and hands [`handle`] to `lambda_runtime::run`; tests and the local runner
//! (`tools/local`) call the same function in-process.
//!
//! | Route                                        | GuardDuty operation     |
//! |----------------------------------------------|-------------------------|
//! | `POST /detector/{id}/findings`               | ListFindings            |
//! | `POST /detector/{id}/findings/get`           | GetFindings             |
//! | `POST /detector/{id}/findings/statistics`    | GetFindingsStatistics   |
//! | `POST /detector/{id}/findings/archive`       | ArchiveFindings         |
//! | `POST /detector/{id}/findings/unarchive`     | UnarchiveFindings       |
//! | `POST /detector/{id}/findings/feedback`      | UpdateFindingsFeedback  |
//! | `POST /detector/{id}/findings/create`        | CreateSampleFindings    |
//! | `POST /detector/{id}/filter`                 | CreateFilter            |
//! | `GET /detector/{id}/filter`                  | ListFilters             |
//! | `GET /detector/{id}/filter/{name}`           | GetFilter               |
//! | `POST /detector/{id}/filter/{name}`          | UpdateFilter            |
//! | `DELETE /detector/{id}/filter/{name}`        | DeleteFilter            |
//!
//! Every answer is a response (never an invocation error): a client's mistake is a 400
//! `BadRequestException`, a store failure a 500 `InternalServerErrorException` with no details.
//! See `docs/api.md`.

mod config;
mod error;
mod filters;
mod ops;
mod samples;
mod store;
mod token;

use aws_config::SdkConfig;
use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use base64::Engine;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

pub use crate::config::{Config, ConfigError};
pub use crate::error::ApiError;
pub use crate::samples::{SAMPLE_MARK, sample_finding, sample_problems};
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
    pub filters: peregrine_store::DynamoFilterStore,
}

impl ApiDeps {
    pub fn from_sdk(sdk: &SdkConfig, config: Config) -> ApiDeps {
        let client = aws_sdk_dynamodb::Client::new(sdk);
        let store = ApiStore::new(client.clone(), &config.findings_table);
        let filters = peregrine_store::DynamoFilterStore::new(client, &config.filters_table);
        ApiDeps {
            config,
            store,
            filters,
        }
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

/// The operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    List,
    Get,
    Statistics,
    Archive,
    Unarchive,
    Feedback,
    CreateSampleFindings,
    CreateFilter,
    ListFilters,
    GetFilter,
    UpdateFilter,
    DeleteFilter,
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
            Operation::CreateSampleFindings => "CreateSampleFindings",
            Operation::CreateFilter => "CreateFilter",
            Operation::ListFilters => "ListFilters",
            Operation::GetFilter => "GetFilter",
            Operation::UpdateFilter => "UpdateFilter",
            Operation::DeleteFilter => "DeleteFilter",
        }
    }
}

/// A routed request: the detector id, the operation and the path's name (`{filterName}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub detector: &'a str,
    pub op: Operation,
    pub name: Option<&'a str>,
}

/// The operation a method and path name. `Err` for an unknown path (404) or a method the
/// path does not take (400, naming the methods it takes).
pub fn route<'a>(method: &str, path: &'a str) -> Result<Route<'a>, ApiError> {
    use Operation as O;
    let not_found = || {
        ApiError::NotFound(format!(
            "No operation at {}.",
            peregrine_criteria::quoted(path)
        ))
    };
    let rest = path.strip_prefix("/detector/").ok_or_else(not_found)?;
    let (detector, rest) = rest.split_once('/').ok_or_else(not_found)?;
    if detector.is_empty() {
        return Err(not_found());
    }
    let method = method.to_ascii_uppercase();
    // Each path: the operation per method.
    let (ops, name): (&[(&str, Operation)], Option<&str>) = match rest.trim_end_matches('/') {
        "findings" => (&[("POST", O::List)], None),
        "findings/get" => (&[("POST", O::Get)], None),
        "findings/statistics" => (&[("POST", O::Statistics)], None),
        "findings/archive" => (&[("POST", O::Archive)], None),
        "findings/unarchive" => (&[("POST", O::Unarchive)], None),
        "findings/feedback" => (&[("POST", O::Feedback)], None),
        "findings/create" => (&[("POST", O::CreateSampleFindings)], None),
        "filter" => (&[("POST", O::CreateFilter), ("GET", O::ListFilters)], None),
        other => match other.strip_prefix("filter/") {
            Some(name) if !name.is_empty() && !name.contains('/') => (
                &[
                    ("GET", O::GetFilter),
                    ("POST", O::UpdateFilter),
                    ("DELETE", O::DeleteFilter),
                ],
                Some(name),
            ),
            _ => return Err(not_found()),
        },
    };
    match ops.iter().find(|(m, _)| *m == method) {
        Some(&(_, op)) => Ok(Route { detector, op, name }),
        None => {
            let takes: Vec<String> = ops
                .iter()
                .map(|(m, op)| format!("{m} ({})", op.name()))
                .collect();
            Err(ApiError::bad(format!(
                "{} takes {}, not {}.",
                peregrine_criteria::quoted(path),
                takes.join(" or "),
                peregrine_criteria::quoted(&method)
            )))
        }
    }
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
    let method = req.request_context.http.method.as_deref().unwrap_or("POST");
    let Route { detector, op, name } = route(method, path)?;
    if detector != deps.config.detector_id {
        // GuardDuty's answer for a detector that is not the caller's.
        return Err(ApiError::bad(
            "The request is rejected because the input detectorId is not owned by the current account.",
        ));
    }
    match op {
        Operation::ListFilters => {
            tracing::info!(operation = op.name(), "request");
            return filters::list(deps, req.raw_query_string.as_deref().unwrap_or_default()).await;
        }
        // GET and DELETE bodies are ignored.
        Operation::GetFilter | Operation::DeleteFilter => {
            tracing::info!(operation = op.name(), "request");
            let name = name.unwrap_or_default();
            return if op == Operation::GetFilter {
                filters::get(deps, name).await
            } else {
                filters::delete(deps, name).await
            };
        }
        _ => {}
    }
    let body = body_bytes(req)?;
    tracing::info!(operation = op.name(), bytes = body.len(), "request");
    match op {
        Operation::CreateFilter => filters::create(deps, &body).await,
        Operation::UpdateFilter => filters::update(deps, name.unwrap_or_default(), &body).await,
        Operation::CreateSampleFindings => {
            // The function owner's account (the function URL's requestContext.accountId).
            let account = req
                .request_context
                .account_id
                .as_deref()
                .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
                .unwrap_or("000000000000");
            samples::create(deps, &body, account).await
        }
        _ => ops::run(deps, op, &body).await,
    }
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
        fn r<'a>(m: &str, p: &'a str) -> Option<(&'a str, Operation, Option<&'a str>)> {
            route(m, p).map(|r| (r.detector, r.op, r.name)).ok()
        }
        assert_eq!(
            r("POST", "/detector/d/findings"),
            Some(("d", Operation::List, None))
        );
        assert_eq!(
            r("post", "/detector/d/findings/get"),
            Some(("d", Operation::Get, None))
        );
        assert_eq!(
            r("POST", "/detector/d/findings/feedback/"),
            Some(("d", Operation::Feedback, None))
        );
        assert_eq!(
            r("GET", "/detector/d/filter"),
            Some(("d", Operation::ListFilters, None))
        );
        assert_eq!(
            r("DELETE", "/detector/d/filter/f1"),
            Some(("d", Operation::DeleteFilter, Some("f1")))
        );
        assert_eq!(
            r("POST", "/detector/d/filter/f1"),
            Some(("d", Operation::UpdateFilter, Some("f1")))
        );
        let status = |m: &str, p: &str| route(m, p).err().map(|e| e.status());
        assert_eq!(status("POST", "/detector//findings"), Some(404));
        assert_eq!(status("POST", "/detector/d/filter/a/b"), Some(404));
        assert_eq!(status("POST", "/"), Some(404));
        assert_eq!(status("GET", "/detector/d/findings"), Some(400));
        assert_eq!(status("DELETE", "/detector/d/filter"), Some(400));
        assert_eq!(status("PUT", "/detector/d/filter/x"), Some(400));
    }
}
