//! The HTTP trigger's conversions: an HTTP request to the event Lambda delivers, the handler's
//! answer back to an HTTP response, the routing of an `HttpApi` and the local IAM check. The
//! listeners themselves are in [`crate::runner`].
//!
//! - **Function URL** (`FunctionUrlConfig`): every method and path reaches the function as a
//!   `LambdaFunctionUrlRequest` (payload format 2.0). A function error or timeout, or an answer
//!   that is not a valid response, is a 502, as Lambda URLs answer.
//! - **HTTP API** (`Events: {Type: HttpApi}`, payload format 2.0): requests are routed by method
//!   and path template (`/findings/{id}`, `/files/{proxy+}`, the `$default` route) and arrive as
//!   `ApiGatewayV2httpRequest` with `routeKey` and `pathParameters`; no route is a 404. A
//!   function error is a 500 and a timeout a 503, as API Gateway answers.
//! - **Payload limit.** A body over 6 MB (Lambda's invocation payload limit), or an event that
//!   serializes to more, is a 413 and never reaches the function.
//! - **Responses.** An object with `statusCode` is a response (`headers`, `cookies`, `body`,
//!   `isBase64Encoded`); any other JSON is a 200 `application/json` with that JSON as its body.
//! - **IAM** (`AuthType: AWS_IAM`, `Authorizer: AWS_IAM`): see [`check_sigv4`] for what is
//!   checked locally. The signature itself is not verified.

use std::collections::HashMap;
use std::net::SocketAddr;

use aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription,
    ApiGatewayV2httpRequest, ApiGatewayV2httpRequestContext,
    ApiGatewayV2httpRequestContextHttpDescription,
};
use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlRequestContext,
    LambdaFunctionUrlRequestContextAuthorizerDescription,
    LambdaFunctionUrlRequestContextAuthorizerIamDescription,
    LambdaFunctionUrlRequestContextHttpDescription,
};
use aws_lambda_events::query_map::QueryMap;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use peregrine_provision::HttpRoute;
use serde_json::Value;

/// Lambda's limit on a synchronous invocation's payload: bodies (and events) beyond it are 413.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Which front a listener stands in for, and so which event its requests become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpKind {
    /// A function URL: `LambdaFunctionUrlRequest`.
    FunctionUrl,
    /// An HTTP API (API Gateway v2, payload format 2.0): `ApiGatewayV2httpRequest`.
    HttpApi,
}

impl HttpKind {
    /// The SigV4 service name a signed request to this front is scoped to.
    pub fn service(self) -> &'static str {
        match self {
            HttpKind::FunctionUrl => "lambda",
            HttpKind::HttpApi => "execute-api",
        }
    }
}

/// A request with its body read.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: Method,
    /// The path as sent (not decoded).
    pub path: String,
    /// The query string as sent, without `?`.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
}

/// The caller a signed request names, as it goes into `requestContext.authorizer.iam`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IamCaller {
    pub access_key: String,
    pub account_id: String,
    /// Known only when the key is the runner's own (STS GetCallerIdentity); locally no other
    /// key can be looked up.
    pub user_arn: Option<String>,
    pub user_id: Option<String>,
}

/// What the front adds to every event.
#[derive(Clone, Debug)]
pub struct EventContext {
    pub account_id: String,
    pub request_id: String,
    pub iam: Option<IamCaller>,
}

/// A `Authorization: AWS4-HMAC-SHA256 ...` header, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigV4 {
    pub access_key: String,
    /// `YYYYMMDD`, the credential scope's date.
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why a request to an IAM-authenticated endpoint is refused (403).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Forbidden: the request has no Authorization header (the endpoint's auth is AWS_IAM)")]
    Missing,
    #[error("the Authorization header is not text")]
    NotText,
    #[error("the Authorization header is not AWS4-HMAC-SHA256 (SigV4)")]
    Algorithm,
    #[error("the Authorization header requires one {0} parameter")]
    Parameter(&'static str),
    #[error(
        "the Authorization header's Credential is not AKID/YYYYMMDD/region/service/aws4_request"
    )]
    Credential,
    #[error(
        "the Authorization header's SignedHeaders must be lower case, ';'-separated and include host"
    )]
    SignedHeaders,
    #[error("the Authorization header's Signature is not 64 lower-case hex digits")]
    Signature,
    #[error("the signed header {0} is not in the request")]
    UnsignedHeader(String),
    #[error("the request has no X-Amz-Date (or Date) header")]
    NoDate,
    #[error("X-Amz-Date {0} is not YYYYMMDDTHHMMSSZ or is not the Credential's date")]
    Date(String),
    #[error("the credential is scoped to region {got}; this endpoint is in {want}")]
    Region { got: String, want: String },
    #[error("the credential is scoped to service {got}; this endpoint needs {want}")]
    Service { got: String, want: &'static str },
}

/// Parses a SigV4 `Authorization` header value.
pub fn parse_sigv4(value: &str) -> Result<SigV4, AuthError> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or(AuthError::Algorithm)?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(AuthError::Parameter(
            "Credential, SignedHeaders and Signature",
        ))?;
        let slot = match k {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => {
                return Err(AuthError::Parameter(
                    "Credential, SignedHeaders and Signature",
                ));
            }
        };
        if slot.replace(v).is_some() {
            return Err(AuthError::Parameter("of each"));
        }
    }
    let credential = credential.ok_or(AuthError::Parameter("Credential"))?;
    let signed = signed.ok_or(AuthError::Parameter("SignedHeaders"))?;
    let signature = signature.ok_or(AuthError::Parameter("Signature"))?;

    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(AuthError::Credential);
    };
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !word(access_key)
        || !word(region)
        || !word(service)
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(AuthError::Credential);
    }
    let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
    let header_name = |h: &String| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if !signed_headers.iter().all(header_name) || !signed_headers.iter().any(|h| h == "host") {
        return Err(AuthError::SignedHeaders);
    }
    if signature.len() != 64
        || !signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(AuthError::Signature);
    }
    Ok(SigV4 {
        access_key: (*access_key).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers,
        signature: signature.to_owned(),
    })
}

/// The local stand-in for IAM authentication. It checks that the request carries a
/// syntactically valid SigV4 `Authorization` header, that every header it says it signed is in
/// the request, that `X-Amz-Date` (or `Date`) is present and, as `X-Amz-Date`, of the
/// credential's date, and that the credential is scoped to this region and service. It does not
/// check the signature, the clock skew, the key's existence or any IAM policy; query-string
/// (presigned) authentication is not accepted.
pub fn check_sigv4(
    headers: &HeaderMap,
    region: &str,
    service: &'static str,
) -> Result<SigV4, AuthError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::NotText)?;
    let sig = parse_sigv4(value)?;
    if sig.region != region {
        return Err(AuthError::Region {
            got: sig.region,
            want: region.to_owned(),
        });
    }
    if sig.service != service {
        return Err(AuthError::Service {
            got: sig.service,
            want: service,
        });
    }
    if let Some(h) = sig
        .signed_headers
        .iter()
        .find(|h| !headers.contains_key(h.as_str()))
    {
        return Err(AuthError::UnsignedHeader(h.clone()));
    }
    match headers.get("x-amz-date") {
        Some(d) => {
            let d = d.to_str().unwrap_or_default();
            let b = d.as_bytes();
            let shape = b.len() == 16
                && b[8] == b'T'
                && b[15] == b'Z'
                && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
            if !shape || !d.starts_with(&sig.date) {
                return Err(AuthError::Date(d.to_owned()));
            }
        }
        None if headers.contains_key(header::DATE) => {}
        None => return Err(AuthError::NoDate),
    }
    Ok(sig)
}

/// How specific a matching route is, compared in order: a path (not `$default`), not greedy,
/// literal segments, a method (not `ANY`).
type Specificity = (bool, bool, usize, bool);

/// The route an HTTP API sends a request to, with its path parameters: the most specific
/// matching route (literal segments before `{parameters}` before `{greedy+}`, a method before
/// `ANY`), else the `$default` route.
pub fn match_route<'r>(
    routes: &'r [HttpRoute],
    method: &Method,
    path: &str,
) -> Option<(&'r HttpRoute, HashMap<String, String>)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut best: Option<(Specificity, &HttpRoute, HashMap<String, String>)> = None;
    for route in routes {
        if route.method != "ANY" && route.method != method.as_str() {
            continue;
        }
        let (key, params) = match &route.path {
            None => ((false, false, 0, false), HashMap::new()),
            Some(template) => {
                let Some((literals, greedy, params)) = match_path(template, &segments) else {
                    continue;
                };
                ((true, !greedy, literals, route.method != "ANY"), params)
            }
        };
        if best.as_ref().is_none_or(|(k, _, _)| key > *k) {
            best = Some((key, route, params));
        }
    }
    best.map(|(_, route, params)| (route, params))
}

/// Matches a path template: (literal segments, greedy, parameters).
fn match_path(template: &str, segments: &[&str]) -> Option<(usize, bool, HashMap<String, String>)> {
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let mut params = HashMap::new();
    let mut literals = 0;
    for (i, part) in parts.iter().enumerate() {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => {
                if let Some(name) = name.strip_suffix('+') {
                    let rest = segments.get(i..).filter(|r| !r.is_empty())?;
                    if rest.iter().all(|s| s.is_empty()) {
                        return None;
                    }
                    params.insert(name.to_owned(), rest.join("/"));
                    return Some((literals, true, params));
                }
                let s = segments.get(i).filter(|s| !s.is_empty())?;
                params.insert(name.to_owned(), (*s).to_owned());
            }
            None => {
                if segments.get(i) != Some(part) {
                    return None;
                }
                literals += 1;
            }
        }
    }
    (segments.len() == parts.len()).then_some((literals, false, params))
}

/// Headers as Lambda gives them: lower-case names, repeated values joined with commas, cookies
/// apart (payload format 2.0 moves them to `cookies`).
fn headers_and_cookies(headers: &HeaderMap) -> (HeaderMap, Option<Vec<String>>) {
    let mut out = HeaderMap::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if name == header::COOKIE {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(&values.join(",")) {
            out.insert(name.clone(), v);
        }
    }
    (out, (!cookies.is_empty()).then_some(cookies))
}

/// The query's parameters, decoded.
fn query_parameters(query: &str) -> QueryMap {
    query.parse().unwrap_or_default()
}

/// Repeated parameters joined with commas, as function URLs give them.
fn joined(query: &QueryMap) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (k, v) in query.iter() {
        out.entry(k.to_owned())
            .and_modify(|s| {
                s.push(',');
                s.push_str(v);
            })
            .or_insert_with(|| v.to_owned());
    }
    out
}

/// Whether a body of this content type arrives as text (else base64), as Lambda decides.
fn is_text(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/")
        || [
            "json",
            "xml",
            "javascript",
            "yaml",
            "x-www-form-urlencoded",
            "graphql",
        ]
        .iter()
        .any(|t| ct.contains(t))
}

/// The body and whether it is base64.
fn body(req: &HttpRequest) -> (Option<String>, bool) {
    if req.body.is_empty() {
        return (None, false);
    }
    match std::str::from_utf8(&req.body) {
        Ok(text) if is_text(&req.headers) => (Some(text.to_owned()), false),
        _ => (
            Some(base64::engine::general_purpose::STANDARD.encode(&req.body)),
            true,
        ),
    }
}

/// `requestContext.time` (`12/Mar/2020:19:03:58 +0000`) and `timeEpoch` (ms).
fn now() -> (String, i64) {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    let text = now.format(&format).unwrap_or_default();
    let ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or_default();
    (text, ms)
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The host the request was sent to: `domainName`, and its first label `domainPrefix`.
fn domain(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let host = header_text(headers, header::HOST);
    let prefix = host
        .as_deref()
        .map(|h| h.split(['.', ':']).next().unwrap_or(h).to_owned());
    (host, prefix)
}

/// The event a function URL delivers.
pub fn function_url_event(req: &HttpRequest, ctx: &EventContext) -> LambdaFunctionUrlRequest {
    let (headers, cookies) = headers_and_cookies(&req.headers);
    let (body, is_base64_encoded) = body(req);
    let (time, time_epoch) = now();
    let (domain_name, domain_prefix) = domain(&req.headers);

    let mut http = LambdaFunctionUrlRequestContextHttpDescription::default();
    http.method = Some(req.method.as_str().to_owned());
    http.path = Some(req.path.clone());
    http.protocol = Some("HTTP/1.1".into());
    http.source_ip = Some(req.peer.ip().to_string());
    http.user_agent = header_text(&req.headers, header::USER_AGENT);

    let mut context = LambdaFunctionUrlRequestContext::default();
    context.account_id = Some(ctx.account_id.clone());
    context.request_id = Some(ctx.request_id.clone());
    context.apiid = domain_prefix.clone();
    context.domain_name = domain_name;
    context.domain_prefix = domain_prefix;
    context.time = Some(time);
    context.time_epoch = time_epoch;
    context.http = http;
    context.authorizer = ctx.iam.as_ref().map(|caller| {
        let mut iam = LambdaFunctionUrlRequestContextAuthorizerIamDescription::default();
        iam.access_key = Some(caller.access_key.clone());
        iam.account_id = Some(caller.account_id.clone());
        iam.caller_id = caller.user_id.clone();
        iam.user_arn = caller.user_arn.clone();
        iam.user_id = caller.user_id.clone();
        let mut authorizer = LambdaFunctionUrlRequestContextAuthorizerDescription::default();
        authorizer.iam = Some(iam);
        authorizer
    });

    let mut event = LambdaFunctionUrlRequest::default();
    event.version = Some("2.0".into());
    event.raw_path = Some(req.path.clone());
    event.raw_query_string = Some(req.query.clone());
    event.cookies = cookies;
    event.headers = headers;
    event.query_string_parameters = joined(&query_parameters(&req.query));
    event.request_context = context;
    event.body = body;
    event.is_base64_encoded = is_base64_encoded;
    event
}

/// The event an HTTP API (payload format 2.0) delivers for a request on `route`.
pub fn http_api_event(
    req: &HttpRequest,
    route: &HttpRoute,
    path_parameters: HashMap<String, String>,
    ctx: &EventContext,
) -> ApiGatewayV2httpRequest {
    let (headers, cookies) = headers_and_cookies(&req.headers);
    let (body, is_base64_encoded) = body(req);
    let (time, time_epoch) = now();
    let (domain_name, domain_prefix) = domain(&req.headers);
    let route_key = route.route_key();

    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = req.method.clone();
    http.path = Some(req.path.clone());
    http.protocol = Some("HTTP/1.1".into());
    http.source_ip = Some(req.peer.ip().to_string());
    http.user_agent = header_text(&req.headers, header::USER_AGENT);

    let mut context = ApiGatewayV2httpRequestContext::default();
    context.route_key = Some(route_key.clone());
    context.account_id = Some(ctx.account_id.clone());
    context.stage = Some("$default".into());
    context.request_id = Some(ctx.request_id.clone());
    context.apiid = domain_prefix.clone();
    context.domain_name = domain_name;
    context.domain_prefix = domain_prefix;
    context.time = Some(time);
    context.time_epoch = time_epoch;
    context.http = http;
    context.authorizer = ctx.iam.as_ref().map(|caller| {
        let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
        iam.access_key = Some(caller.access_key.clone());
        iam.account_id = Some(caller.account_id.clone());
        iam.caller_id = caller.user_id.clone();
        iam.user_arn = caller.user_arn.clone();
        iam.user_id = caller.user_id.clone();
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.iam = Some(iam);
        authorizer
    });

    let mut event = ApiGatewayV2httpRequest::default();
    #[allow(deprecated)] // serialized whatever we do; it should at least be the method
    {
        event.http_method = req.method.clone();
    }
    event.version = Some("2.0".into());
    event.route_key = Some(route_key);
    event.raw_path = Some(req.path.clone());
    event.raw_query_string = Some(req.query.clone());
    event.cookies = cookies;
    event.headers = headers;
    event.query_string_parameters = query_parameters(&req.query);
    event.path_parameters = path_parameters;
    event.request_context = context;
    event.body = body;
    event.is_base64_encoded = is_base64_encoded;
    event
}

pub type HttpResponse = Response<Full<Bytes>>;

/// A response with a JSON body.
pub fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer of the front itself (not of the function): function URLs say `Message`, API
/// Gateway `message`.
pub fn front_error(kind: HttpKind, status: StatusCode, message: &str) -> HttpResponse {
    let key = match kind {
        HttpKind::FunctionUrl => "Message",
        HttpKind::HttpApi => "message",
    };
    json_response(status, &serde_json::json!({ key: message }))
}

/// A header value of a response: a string, or a number or boolean as text.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The HTTP response for a handler's answer, or why it is not a valid one.
pub fn response(answer: Value) -> Result<HttpResponse, String> {
    let Some(object) = answer.as_object().filter(|o| o.contains_key("statusCode")) else {
        return Ok(json_response(StatusCode::OK, &answer));
    };
    let status = object
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or("statusCode is not an HTTP status")?;
    let base64 = match object.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("isBase64Encoded is not a boolean".into()),
    };
    let body = match object.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if base64 => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Bytes::from)
            .map_err(|e| format!("body is not base64: {e}"))?,
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(_) => return Err("body is not a string".into()),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut add = |name: &str, value: &str| -> Result<(), String> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header {name} is not valid"))?;
        headers.append(name, value);
        Ok(())
    };
    match object.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let v = value_text(v).ok_or_else(|| format!("header {k} is not a scalar"))?;
                add(k, &v)?;
            }
        }
        Some(_) => return Err("headers is not an object".into()),
    }
    match object.get("cookies") {
        None | Some(Value::Null) => {}
        Some(Value::Array(cookies)) => {
            for c in cookies {
                let c = c.as_str().ok_or("a cookie is not a string")?;
                add("set-cookie", c)?;
            }
        }
        Some(_) => return Err("cookies is not an array".into()),
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use peregrine_provision::{ApiKind, HttpAuth};

    const SIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn auth(credential: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host;x-amz-date, Signature={SIG}"
        )
    }

    fn signed(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1"));
        h.insert("x-amz-date", HeaderValue::from_static("20250102T030405Z"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn sigv4_headers_are_checked() {
        let good = auth("AKIDEXAMPLE/20250102/us-east-1/lambda/aws4_request");
        let sig = check_sigv4(&signed(&good), "us-east-1", "lambda").unwrap();
        assert_eq!(sig.access_key, "AKIDEXAMPLE");
        assert_eq!(sig.signed_headers, ["host", "x-amz-date"]);

        assert_eq!(
            check_sigv4(&HeaderMap::new(), "us-east-1", "lambda"),
            Err(AuthError::Missing)
        );
        let bad = [
            ("Bearer abc".to_owned(), AuthError::Algorithm),
            (
                "AWS4-HMAC-SHA256 Credential=AKID/20250102/us-east-1/lambda/aws4_request".into(),
                AuthError::Parameter("SignedHeaders"),
            ),
            (
                auth("AKID/2025-01-02/us-east-1/lambda/aws4_request"),
                AuthError::Credential,
            ),
            (
                auth("AKID/20250102/us-east-1/lambda"),
                AuthError::Credential,
            ),
            (
                auth("AKID/20250102/eu-west-1/lambda/aws4_request"),
                AuthError::Region {
                    got: "eu-west-1".into(),
                    want: "us-east-1".into(),
                },
            ),
            (
                auth("AKID/20250102/us-east-1/execute-api/aws4_request"),
                AuthError::Service {
                    got: "execute-api".into(),
                    want: "lambda",
                },
            ),
            (
                auth("AKID/20250101/us-east-1/lambda/aws4_request"),
                AuthError::Date("20250102T030405Z".into()),
            ),
            (good.replace(SIG, "XYZ"), AuthError::Signature),
            (
                good.replace("host;x-amz-date", "x-amz-date"),
                AuthError::SignedHeaders,
            ),
            (
                good.replace("host;x-amz-date", "host;x-amz-date;x-amz-content-sha256"),
                AuthError::UnsignedHeader("x-amz-content-sha256".into()),
            ),
        ];
        for (value, want) in bad {
            assert_eq!(
                check_sigv4(&signed(&value), "us-east-1", "lambda"),
                Err(want),
                "{value}"
            );
        }
    }

    fn route(method: &str, path: Option<&str>) -> HttpRoute {
        HttpRoute {
            event: "E".into(),
            api: ApiKind::HttpApi,
            method: method.into(),
            path: path.map(str::to_owned),
            auth: HttpAuth::None,
        }
    }

    #[test]
    fn routes_match_the_most_specific() {
        let routes = [
            route("ANY", None),
            route("GET", Some("/findings/{id}")),
            route("GET", Some("/findings/latest")),
            route("ANY", Some("/findings/{id}")),
            route("GET", Some("/files/{proxy+}")),
        ];
        let key = |m: Method, p: &str| {
            match_route(&routes, &m, p).map(|(r, params)| {
                let mut params: Vec<(String, String)> = params.into_iter().collect();
                params.sort();
                (r.route_key(), params)
            })
        };
        let kv = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert_eq!(
            key(Method::GET, "/findings/latest"),
            Some(("GET /findings/latest".into(), vec![]))
        );
        assert_eq!(
            key(Method::GET, "/findings/f-1"),
            Some(("GET /findings/{id}".into(), kv("id", "f-1")))
        );
        assert_eq!(
            key(Method::DELETE, "/findings/f-1"),
            Some(("ANY /findings/{id}".into(), kv("id", "f-1")))
        );
        assert_eq!(
            key(Method::GET, "/files/a/b.txt"),
            Some(("GET /files/{proxy+}".into(), kv("proxy", "a/b.txt")))
        );
        assert_eq!(
            key(Method::GET, "/files/"),
            Some(("$default".into(), vec![]))
        );
        assert_eq!(
            key(Method::POST, "/other"),
            Some(("$default".into(), vec![]))
        );
        assert_eq!(match_route(&routes[1..], &Method::POST, "/other"), None);
    }

    #[tokio::test]
    async fn answers_become_responses() {
        use http_body_util::BodyExt;

        let r = response(serde_json::json!({"ok": true})).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");

        let r = response(serde_json::json!({
            "statusCode": 201,
            "headers": {"x-a": "1", "x-n": 2},
            "cookies": ["a=1", "b=2"],
            "body": "aGk=",
            "isBase64Encoded": true,
        }))
        .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["x-n"], "2");
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, Bytes::from_static(b"hi"));

        for bad in [
            serde_json::json!({"statusCode": "200"}),
            serde_json::json!({"statusCode": 99}),
            serde_json::json!({"statusCode": 200, "body": 1}),
            serde_json::json!({"statusCode": 200, "headers": {"bad name": "x"}}),
            serde_json::json!({"statusCode": 200, "body": "***", "isBase64Encoded": true}),
        ] {
            assert!(response(bad.clone()).is_err(), "{bad}");
        }
    }
}
