//! The API's HTTP client: each request SigV4-signed for service `lambda` (the function URL's
//! `AuthType: AWS_IAM`) with credentials from the default chain, and each answer mapped to a
//! [`CliError`] by what it means for the caller (and the exit code).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::error::CliError;

/// The service the function URL signs for (GuardDuty's own API would be `guardduty`).
pub const SERVICE: &str = "lambda";

/// A reply larger than this is refused (a page of 50 large findings is a few MiB).
const MAX_REPLY_BYTES: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Where the API is and who calls it.
pub struct Client {
    http: HyperClient<Connector, Full<Bytes>>,
    /// Without a trailing slash.
    endpoint: String,
    detector: String,
    region: String,
    credentials: Credentials,
}

/// The settings a client is built from (flags and environment).
pub struct Settings {
    pub endpoint: Option<String>,
    pub detector_id: Option<String>,
    pub region: Option<String>,
}

impl Client {
    /// Checks the settings, then loads the region and credentials from the default chain.
    pub async fn new(settings: Settings) -> Result<Client, CliError> {
        let endpoint = settings.endpoint.filter(|e| !e.is_empty()).ok_or_else(|| {
            CliError::Usage(
                "no endpoint: pass --endpoint or set PEREGRINE_API_URL (the stack's ApiUrl output)"
                    .into(),
            )
        })?;
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| CliError::Usage(format!("--endpoint {endpoint}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(CliError::Usage(format!(
                "--endpoint {endpoint}: expected an http(s) URL"
            )));
        }
        let detector = settings
            .detector_id
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                CliError::Usage(
                    "no detector id: pass --detector-id or set PEREGRINE_DETECTOR_ID (the stack's name)"
                        .into(),
                )
            })?;
        let sdk = peregrine_aws::sdk_config().await;
        let region = settings
            .region
            .filter(|r| !r.is_empty())
            .or_else(|| sdk.region().map(|r| r.to_string()))
            .or_else(|| uri.host().and_then(region_of_function_url))
            .ok_or_else(|| CliError::Usage("no region: pass --region or set AWS_REGION".into()))?;
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| CliError::Credentials("no credentials provider is configured".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| CliError::Credentials(error_chain(&e)))?;
        Ok(Client {
            http: http_client()?,
            endpoint,
            detector,
            region,
            credentials,
        })
    }

    /// `/detector/{id}` followed by `path` (already percent-encoded), plus a query string.
    fn uri(&self, path: &str, query: &[(&str, String)]) -> Result<Uri, CliError> {
        let mut s = format!(
            "{}/detector/{}{path}",
            self.endpoint,
            segment(&self.detector)
        );
        for (i, (k, v)) in query.iter().enumerate() {
            s.push(if i == 0 { '?' } else { '&' });
            s.push_str(k);
            s.push('=');
            s.push_str(&segment(v));
        }
        s.parse()
            .map_err(|e| CliError::Usage(format!("the request URL {s}: {e}")))
    }

    /// POST a JSON body to `/detector/{id}{path}`.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let uri = self.uri(path, &[])?;
        self.send(Method::POST, uri, body.to_string().into_bytes())
            .await
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        let uri = self.uri(path, query)?;
        self.send(Method::GET, uri, Vec::new()).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        let uri = self.uri(path, &[])?;
        self.send(Method::DELETE, uri, Vec::new()).await
    }

    async fn send(&self, method: Method, uri: Uri, body: Vec<u8>) -> Result<Value, CliError> {
        let request = self.signed(method, uri, body)?;
        let unreachable = |reason: String| CliError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let bytes = tokio::time::timeout(
            REQUEST_TIMEOUT,
            Limited::new(response.into_body(), MAX_REPLY_BYTES).collect(),
        )
        .await
        .map_err(|_| unreachable(format!("the reply did not end within {REQUEST_TIMEOUT:?}")))?
        .map_err(|e| unreachable(format!("reading the reply: {e}")))?
        .to_bytes();
        reply(status, &bytes)
    }

    fn signed(
        &self,
        method: Method,
        uri: Uri,
        body: Vec<u8>,
    ) -> Result<Request<Full<Bytes>>, CliError> {
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let headers = [
            ("host", authority.as_str()),
            ("content-type", "application/json"),
        ];
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| CliError::Credentials(format!("signing: {e}")))?
            .into();
        let uri_text = uri.to_string();
        let signable = SignableRequest::new(
            method.as_str(),
            &uri_text,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| CliError::Credentials(format!("signing: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| CliError::Credentials(format!("signing: {e}")))?
            .into_parts();
        let mut builder = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(k, v);
        }
        let mut request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CliError::Usage(format!("building the request: {e}")))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }
}

/// An answer's meaning: 2xx its JSON (an empty body is `{}`), 403 the function URL's (or
/// IAM's) refusal, other 4xx the API's refusal, 5xx the server's failure.
pub fn reply(status: u16, body: &[u8]) -> Result<Value, CliError> {
    let json: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Some(Value::Object(Default::default()))
    } else {
        serde_json::from_slice(body).ok()
    };
    let text = || String::from_utf8_lossy(body).into_owned();
    // GuardDuty's `{"message", "__type"}`; Lambda's own refusals say `Message`.
    let message = || {
        json.as_ref()
            .and_then(|v| v.get("message").or_else(|| v.get("Message")))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(text)
    };
    let error_type = || {
        json.as_ref()
            .and_then(|v| v.get("__type"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match status {
        200..=299 => json.ok_or_else(|| CliError::Reply(format!("HTTP {status}: not JSON"))),
        401 | 403 => Err(CliError::Denied {
            status,
            message: message(),
        }),
        400..=499 => Err(CliError::Api {
            status,
            error_type: error_type(),
            message: message(),
        }),
        _ => Err(CliError::Server {
            status,
            error_type: error_type(),
            message: message(),
        }),
    }
}

fn http_client() -> Result<HyperClient<Connector, Full<Bytes>>, CliError> {
    // The system's roots; an endpoint on loopback (the local stack) is plain HTTP and needs
    // none, so a machine without any still reaches it.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| CliError::Unreachable {
        endpoint: String::new(),
        reason: format!("TLS: {e}"),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(HyperClient::builder(TokioExecutor::new()).build(connector))
}

/// `abc.lambda-url.eu-west-1.on.aws` → `eu-west-1`.
fn region_of_function_url(host: &str) -> Option<String> {
    let rest = host.split_once(".lambda-url.")?.1;
    let region = rest.strip_suffix(".on.aws")?;
    (!region.is_empty() && !region.contains('.')).then(|| region.to_owned())
}

/// A path segment or query value, percent-encoded (RFC 3986 unreserved characters kept).
pub fn segment(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(s, KEEP).to_string()
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_errors_by_status() {
        assert_eq!(reply(200, b"").unwrap(), serde_json::json!({}));
        assert_eq!(reply(200, b"{\"a\":1}").unwrap()["a"], 1);
        let e = reply(400, br#"{"message":"bad","__type":"BadRequestException"}"#).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("BadRequestException"), "{e}");
        assert_eq!(
            reply(403, br#"{"Message":"Forbidden"}"#)
                .unwrap_err()
                .exit_code(),
            3
        );
        assert_eq!(reply(500, b"oops").unwrap_err().exit_code(), 5);
        assert_eq!(reply(502, b"").unwrap_err().exit_code(), 5);
        assert_eq!(reply(200, b"<html>").unwrap_err().exit_code(), 5);
    }

    #[test]
    fn a_function_url_names_its_region() {
        assert_eq!(
            region_of_function_url("abcdef.lambda-url.eu-west-1.on.aws").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_of_function_url("127.0.0.1"), None);
        assert_eq!(region_of_function_url("x.lambda-url..on.aws"), None);
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("my-filter_1.x~"), "my-filter_1.x~");
        assert_eq!(segment("a b/c?d"), "a%20b%2Fc%3Fd");
    }
}
