//! Peregrine's findings API Lambda, as a library: GuardDuty's findings, entity-set, coverage and
//! organization operations over Peregrine's tables, behind a function URL with `AuthType:
//! AWS_IAM`. `main.rs` only builds the clients and hands [`handle`] to `lambda_runtime::run`;
//! tests and the local runner (`tools/local`) call the same function in-process.
//!
//! | Route                                         | GuardDuty operation     |
//! |-----------------------------------------------|-------------------------|
//! | `POST /detector/{id}/findings`                | ListFindings            |
//! | `POST /detector/{id}/findings/get`            | GetFindings             |
//! | `POST /detector/{id}/findings/statistics`     | GetFindingsStatistics   |
//! | `POST /detector/{id}/findings/archive`        | ArchiveFindings         |
//! | `POST /detector/{id}/findings/unarchive`      | UnarchiveFindings       |
//! | `POST /detector/{id}/findings/feedback`       | UpdateFindingsFeedback  |
//! | `POST /detector/{id}/findings/create`         | CreateSampleFindings    |
//! | `POST`, `GET /detector/{id}/filter`           | CreateFilter, ListFilters |
//! | `GET`, `POST`, `DELETE /detector/{id}/filter/{name}` | Get, Update, DeleteFilter |
//! | `POST`, `GET /detector/{id}/threatentityset`  | CreateThreatEntitySet, ListThreatEntitySets |
//! | `GET`, `POST`, `DELETE /detector/{id}/threatentityset/{setId}` | Get, Update, DeleteThreatEntitySet |
//! | the same five under `trustedentityset`        | the *TrustedEntitySet operations |
//! | `POST /detector/{id}/coverage`                | ListCoverage            |
//! | `POST /detector/{id}/coverage/statistics`     | GetCoverageStatistics   |
//! | `GET`, `POST /detector/{id}/admin`            | Describe, UpdateOrganizationConfiguration |
//!
//! Every answer is a response (never an invocation error): a client's mistake is a 400
//! `BadRequestException`, a store failure a 500 `InternalServerErrorException` with no details.
//! See `docs/api.md`.

mod config;
mod coverage;
mod error;
mod filters;
mod ops;
mod org;
mod samples;
mod sets;
mod store;
mod token;

use aws_config::SdkConfig;
use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use base64::Engine;
use lambda_runtime::{Diagnostic, LambdaEvent};
use peregrine_store::{
    DynamoConfigStore, DynamoCoverageStore, DynamoEntitySetStore, EntitySetKind,
};
use serde::Serialize;
use serde_json::Value;

pub use crate::config::{Config, ConfigError};
pub use crate::error::ApiError;
pub use crate::samples::{SAMPLE_MARK, sample_finding, sample_problems};
pub use crate::sets::{
    MAX_OBJECT_BYTES, MAX_THREAT_SETS, MAX_TRUSTED_SETS, S3Object, parse_location,
};
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
    pub sets: DynamoEntitySetStore,
    pub org: DynamoConfigStore,
    pub coverage: DynamoCoverageStore,
    /// HeadObject on entity-set objects.
    pub s3: aws_sdk_s3::Client,
}

impl ApiDeps {
    pub fn from_sdk(sdk: &SdkConfig, config: Config) -> ApiDeps {
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        // A stand-in endpoint (AWS_ENDPOINT_URL: moto, the local stack) serves buckets by path,
        // not by a DNS name per bucket.
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        ApiDeps {
            store: ApiStore::new(dynamo.clone(), &config.findings_table),
            filters: peregrine_store::DynamoFilterStore::new(dynamo.clone(), &config.filters_table),
            sets: DynamoEntitySetStore::new(dynamo.clone(), &config.entity_sets_table),
            org: DynamoConfigStore::new(dynamo.clone(), &config.config_table),
            coverage: DynamoCoverageStore::new(dynamo, &config.coverage_table),
            s3: aws_sdk_s3::Client::from_conf(s3),
            config,
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
    CreateEntitySet(EntitySetKind),
    ListEntitySets(EntitySetKind),
    GetEntitySet(EntitySetKind),
    UpdateEntitySet(EntitySetKind),
    DeleteEntitySet(EntitySetKind),
    ListCoverage,
    GetCoverageStatistics,
    DescribeOrganizationConfiguration,
    UpdateOrganizationConfiguration,
}

impl Operation {
    pub fn name(self) -> &'static str {
        use EntitySetKind::{Threat, Trusted};
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
            Operation::CreateEntitySet(Threat) => "CreateThreatEntitySet",
            Operation::CreateEntitySet(Trusted) => "CreateTrustedEntitySet",
            Operation::ListEntitySets(Threat) => "ListThreatEntitySets",
            Operation::ListEntitySets(Trusted) => "ListTrustedEntitySets",
            Operation::GetEntitySet(Threat) => "GetThreatEntitySet",
            Operation::GetEntitySet(Trusted) => "GetTrustedEntitySet",
            Operation::UpdateEntitySet(Threat) => "UpdateThreatEntitySet",
            Operation::UpdateEntitySet(Trusted) => "UpdateTrustedEntitySet",
            Operation::DeleteEntitySet(Threat) => "DeleteThreatEntitySet",
            Operation::DeleteEntitySet(Trusted) => "DeleteTrustedEntitySet",
            Operation::ListCoverage => "ListCoverage",
            Operation::GetCoverageStatistics => "GetCoverageStatistics",
            Operation::DescribeOrganizationConfiguration => "DescribeOrganizationConfiguration",
            Operation::UpdateOrganizationConfiguration => "UpdateOrganizationConfiguration",
        }
    }
}

/// What a request's method and path name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub detector: &'a str,
    pub op: Operation,
    /// The path's last segment when it names one resource (`{setId}`).
    pub resource: Option<&'a str>,
}

/// The operation at a method and path: `NotFound` for no path, a 400 for a path that does
/// not take the method.
pub fn route<'a>(method: &str, path: &'a str) -> Result<Route<'a>, ApiError> {
    use EntitySetKind::{Threat, Trusted};
    use Operation::*;
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
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    // Each path and the methods it takes.
    let (methods, resource): (&[(&str, Operation)], Option<&str>) = match parts.as_slice() {
        ["findings"] => (&[("POST", List)], None),
        ["findings", "get"] => (&[("POST", Get)], None),
        ["findings", "statistics"] => (&[("POST", Statistics)], None),
        ["findings", "archive"] => (&[("POST", Archive)], None),
        ["findings", "unarchive"] => (&[("POST", Unarchive)], None),
        ["findings", "feedback"] => (&[("POST", Feedback)], None),
        ["findings", "create"] => (&[("POST", CreateSampleFindings)], None),
        ["filter"] => (&[("POST", CreateFilter), ("GET", ListFilters)], None),
        ["filter", name] if !name.is_empty() => (
            &[
                ("GET", GetFilter),
                ("POST", UpdateFilter),
                ("DELETE", DeleteFilter),
            ],
            Some(*name),
        ),
        ["threatentityset"] => (
            &[
                ("POST", CreateEntitySet(Threat)),
                ("GET", ListEntitySets(Threat)),
            ],
            None,
        ),
        ["threatentityset", id] if !id.is_empty() => (
            &[
                ("GET", GetEntitySet(Threat)),
                ("POST", UpdateEntitySet(Threat)),
                ("DELETE", DeleteEntitySet(Threat)),
            ],
            Some(*id),
        ),
        ["trustedentityset"] => (
            &[
                ("POST", CreateEntitySet(Trusted)),
                ("GET", ListEntitySets(Trusted)),
            ],
            None,
        ),
        ["trustedentityset", id] if !id.is_empty() => (
            &[
                ("GET", GetEntitySet(Trusted)),
                ("POST", UpdateEntitySet(Trusted)),
                ("DELETE", DeleteEntitySet(Trusted)),
            ],
            Some(*id),
        ),
        ["coverage"] => (&[("POST", ListCoverage)], None),
        ["coverage", "statistics"] => (&[("POST", GetCoverageStatistics)], None),
        ["admin"] => (
            &[
                ("GET", DescribeOrganizationConfiguration),
                ("POST", UpdateOrganizationConfiguration),
            ],
            None,
        ),
        _ => return Err(not_found()),
    };
    match methods.iter().find(|(m, _)| method.eq_ignore_ascii_case(m)) {
        Some((_, op)) => Ok(Route {
            detector,
            op: *op,
            resource,
        }),
        None => {
            let takes: Vec<String> = methods
                .iter()
                .map(|(m, op)| format!("{m} ({})", op.name()))
                .collect();
            Err(ApiError::bad(format!(
                "This path takes {}, not {}.",
                takes.join(" or "),
                peregrine_criteria::quoted(method)
            )))
        }
    }
}

/// A request as an operation sees it.
pub(crate) struct Request<'a> {
    /// The decoded body (`{}` when absent; not read for GET and DELETE).
    pub body: Vec<u8>,
    /// The query string's parameters.
    pub query: &'a std::collections::HashMap<String, String>,
    pub resource: Option<&'a str>,
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
    let Route {
        detector,
        op,
        resource,
    } = route(method, path)?;
    if detector != deps.config.detector_id {
        // GuardDuty's answer for a detector that is not the caller's.
        return Err(ApiError::bad(
            "The request is rejected because the input detectorId is not owned by the current account.",
        ));
    }
    let body = if method.eq_ignore_ascii_case("POST") {
        body_bytes(req)?
    } else {
        b"{}".to_vec()
    };
    tracing::info!(operation = op.name(), bytes = body.len(), "request");
    let request = Request {
        body,
        query: &req.query_string_parameters,
        resource,
    };
    let name = resource.unwrap_or_default();
    match op {
        Operation::ListFilters => {
            filters::list(deps, req.raw_query_string.as_deref().unwrap_or_default()).await
        }
        Operation::GetFilter => filters::get(deps, name).await,
        Operation::DeleteFilter => filters::delete(deps, name).await,
        Operation::CreateFilter => filters::create(deps, &request.body).await,
        Operation::UpdateFilter => filters::update(deps, name, &request.body).await,
        Operation::CreateSampleFindings => {
            // The function owner's account (the function URL's requestContext.accountId).
            let account = req
                .request_context
                .account_id
                .as_deref()
                .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
                .unwrap_or("000000000000");
            samples::create(deps, &request.body, account).await
        }
        Operation::CreateEntitySet(_)
        | Operation::ListEntitySets(_)
        | Operation::GetEntitySet(_)
        | Operation::UpdateEntitySet(_)
        | Operation::DeleteEntitySet(_) => sets::run(deps, op, &request).await,
        Operation::ListCoverage | Operation::GetCoverageStatistics => {
            coverage::run(deps, op, &request).await
        }
        Operation::DescribeOrganizationConfiguration
        | Operation::UpdateOrganizationConfiguration => org::run(deps, op, &request).await,
        _ => ops::run(deps, op, &request.body).await,
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

    fn op(method: &str, path: &str) -> Option<(String, Operation, Option<String>)> {
        route(method, path)
            .ok()
            .map(|r| (r.detector.to_owned(), r.op, r.resource.map(str::to_owned)))
    }

    #[test]
    fn routes() {
        let d = || "d".to_owned();
        assert_eq!(
            op("POST", "/detector/d/findings"),
            Some((d(), Operation::List, None))
        );
        assert_eq!(
            op("POST", "/detector/d/findings/get"),
            Some((d(), Operation::Get, None))
        );
        assert_eq!(
            op("post", "/detector/d/findings/feedback/"),
            Some((d(), Operation::Feedback, None))
        );
        assert_eq!(op("POST", "/detector//findings"), None);
        assert_eq!(op("POST", "/detector/d/filterx"), None);
        assert_eq!(op("POST", "/"), None);
        let threat = EntitySetKind::Threat;
        assert_eq!(
            op("GET", "/detector/d/threatentityset"),
            Some((d(), Operation::ListEntitySets(threat), None))
        );
        assert_eq!(
            op("DELETE", "/detector/d/trustedentityset/abc"),
            Some((
                d(),
                Operation::DeleteEntitySet(EntitySetKind::Trusted),
                Some("abc".into())
            ))
        );
        assert_eq!(
            op("GET", "/detector/d/admin"),
            Some((d(), Operation::DescribeOrganizationConfiguration, None))
        );
        assert_eq!(op("POST", "/detector/d/threatentityset/a/b"), None);
        assert_eq!(
            op("GET", "/detector/d/filter"),
            Some((d(), Operation::ListFilters, None))
        );
        assert_eq!(
            op("DELETE", "/detector/d/filter/f1"),
            Some((d(), Operation::DeleteFilter, Some("f1".into())))
        );
        assert_eq!(
            op("POST", "/detector/d/filter/f1"),
            Some((d(), Operation::UpdateFilter, Some("f1".into())))
        );
        assert_eq!(
            op("POST", "/detector/d/findings/create"),
            Some((d(), Operation::CreateSampleFindings, None))
        );
        assert_eq!(op("POST", "/detector/d/filter/a/b"), None);
        assert_eq!(
            route("DELETE", "/detector/d/filter").unwrap_err().status(),
            400
        );
        assert_eq!(
            route("PUT", "/detector/d/filter/x").unwrap_err().status(),
            400
        );
        // A path that does not take the method is a 400 that says which it takes.
        let e = route("GET", "/detector/d/findings").unwrap_err();
        assert_eq!(e.status(), 400);
        let e = route("PUT", "/detector/d/threatentityset").unwrap_err();
        assert!(
            e.to_string()
                .contains("POST (CreateThreatEntitySet) or GET (ListThreatEntitySets)"),
            "{e}"
        );
        assert_eq!(route("GET", "/nope").unwrap_err().status(), 404);
    }
}
