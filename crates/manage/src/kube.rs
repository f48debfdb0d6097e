//! A minimal Kubernetes API client: GET, server-side apply (PATCH) and DELETE of untyped JSON
//! objects, over one HTTP/1.1 connection verified against the cluster's own CA, with a bearer
//! token. That is all management does with the API, so this is hyper's client connection and
//! tokio-rustls (both already in the build for the AWS SDK) rather than kube-rs, whose client
//! would bring k8s-openapi's generated bindings and some thirty other crates for three verbs
//! on objects we keep as JSON anyway.
//!
//! Only `https://` endpoints are accepted, and only the CA given (no system roots: an EKS API
//! server's certificate is signed by the cluster's CA). Every request is bounded in time, every
//! response in size; API server messages are bounded and stripped of control characters.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use peregrine_aws::Failure;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::validate::bounded;

/// Largest response body read (a DaemonSet with its managedFields is a few tens of KiB).
const MAX_BODY: usize = 4 << 20;
pub const APPLY_CONTENT_TYPE: &str = "application/apply-patch+yaml";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("endpoint {0:?} is not an https:// URL with a host")]
    Endpoint(String),
    #[error("the cluster's certificate authority data: {0}")]
    Ca(String),
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[source] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("{method} {path}: {status} {message}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{method} {path}: the answer is not a JSON object: {detail}")]
    Body {
        method: &'static str,
        path: String,
        detail: String,
    },
}

impl KubeError {
    pub fn failure(&self) -> Failure {
        match self {
            KubeError::Endpoint(_) | KubeError::Ca(_) | KubeError::Body { .. } => Failure::Invalid,
            KubeError::Connect(_)
            | KubeError::Tls(_)
            | KubeError::Timeout(_)
            | KubeError::Http(_) => Failure::Unavailable,
            KubeError::Status { status, .. } => match *status {
                401 | 403 => Failure::Denied,
                429 => Failure::Throttled,
                s if s >= 500 => Failure::Unavailable,
                _ => Failure::Invalid,
            },
        }
    }

    /// The API server refused who we are (401) or what we asked (403).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            KubeError::Status {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// One cluster's API, one connection (opened on first use, reopened if the server closed it).
pub struct KubeClient {
    host: String,
    port: u16,
    authority: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    token: String,
    timeout: Duration,
    conn: Option<SendRequest<Full<bytes::Bytes>>>,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("KubeClient")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl KubeClient {
    /// `endpoint` is DescribeCluster's `https://…` URL, `ca_data` its base64 PEM CA.
    pub fn new(
        endpoint: &str,
        ca_data: &str,
        token: String,
        timeout: Duration,
    ) -> Result<KubeClient, KubeError> {
        let bad = || KubeError::Endpoint(bounded(endpoint, 256));
        let rest = endpoint.strip_prefix("https://").ok_or_else(bad)?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(bad());
        }
        let uri_authority: http::uri::Authority = authority.parse().map_err(|_| bad())?;
        let host = uri_authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri_authority.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone()).map_err(|_| bad())?;

        let pem = STANDARD
            .decode(ca_data.trim())
            .map_err(|e| KubeError::Ca(format!("not base64: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| KubeError::Ca(format!("not PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| KubeError::Ca(format!("unusable certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(KubeError::Ca("no certificate in it".into()));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| KubeError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(KubeClient {
            host,
            port,
            authority: authority.to_owned(),
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
            token,
            timeout,
            conn: None,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<bytes::Bytes>>, KubeError> {
        let tcp = self
            .bounded(TcpStream::connect((self.host.as_str(), self.port)))
            .await?
            .map_err(KubeError::Connect)?;
        let tls = self
            .bounded(self.tls.connect(self.server_name.clone(), tcp))
            .await?
            .map_err(KubeError::Tls)?;
        let (sender, conn) = self
            .bounded(hyper::client::conn::http1::handshake(TokioIo::new(tls)))
            .await?
            .map_err(|e| KubeError::Http(e.to_string()))?;
        tokio::spawn(async move {
            // Ends when the connection closes; the next request notices and reconnects.
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn bounded<F: std::future::Future>(&self, f: F) -> Result<F::Output, KubeError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| KubeError::Timeout(self.timeout))
    }

    /// One request; the answer's status and JSON body (`Value::Null` when empty).
    async fn request(
        &mut self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Value), KubeError> {
        let mut sender = match self.conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        if self.bounded(sender.ready()).await?.is_err() {
            sender = self.connect().await?;
        }
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("peregrine-manage/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let mut req = req
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| KubeError::Http(e.to_string()))?;
        let mut auth = http::HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|_| KubeError::Http("the token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        req.headers_mut().insert(header::AUTHORIZATION, auth);

        let response = self
            .bounded(sender.send_request(req))
            .await?
            .map_err(|e| KubeError::Http(e.to_string()))?;
        let status = response.status();
        let bytes = self
            .bounded(Limited::new(response.into_body(), MAX_BODY).collect())
            .await?
            .map_err(|e| KubeError::Http(format!("reading the answer: {e}")))?
            .to_bytes();
        self.conn = Some(sender);
        let path = path_and_query
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let method_name = method_name(&method);
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => v,
                Err(e) if status.is_success() => {
                    return Err(KubeError::Body {
                        method: method_name,
                        path,
                        detail: e.to_string(),
                    });
                }
                Err(_) => Value::Null,
            }
        };
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            let message = json
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| status.canonical_reason())
                .unwrap_or_default();
            return Err(KubeError::Status {
                method: method_name,
                path,
                status: status.as_u16(),
                message: bounded(message, 512),
            });
        }
        Ok((status, json))
    }

    /// The object at `path`, `None` if there is none.
    pub async fn get(&mut self, path: &str) -> Result<Option<Value>, KubeError> {
        let (status, body) = self.request(Method::GET, path, None, Vec::new()).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        object(body, "GET", path).map(Some)
    }

    /// Server-side apply of `body` at `path` as field manager `manager`, forcing ownership of
    /// conflicting fields (the manifest is the truth for the fields it sets). The applied
    /// object as the server now holds it.
    pub async fn apply(
        &mut self,
        path: &str,
        manager: &str,
        body: &Value,
    ) -> Result<Value, KubeError> {
        let url = format!("{path}?fieldManager={manager}&force=true");
        let bytes = serde_json::to_vec(body).map_err(|e| KubeError::Http(e.to_string()))?;
        let (status, answer) = self
            .request(Method::PATCH, &url, Some(APPLY_CONTENT_TYPE), bytes)
            .await?;
        if status == StatusCode::NOT_FOUND {
            // A namespaced object whose namespace does not exist.
            return Err(KubeError::Status {
                method: "PATCH",
                path: path.to_owned(),
                status: 404,
                message: bounded(
                    answer
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("not found"),
                    512,
                ),
            });
        }
        object(answer, "PATCH", path)
    }

    /// Deletes the object at `path` (dependents in the background); false if there was none.
    pub async fn delete(&mut self, path: &str) -> Result<bool, KubeError> {
        let body =
            br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#;
        let (status, _) = self
            .request(
                Method::DELETE,
                path,
                Some("application/json"),
                body.to_vec(),
            )
            .await?;
        Ok(status != StatusCode::NOT_FOUND)
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "request",
    }
}

fn object(v: Value, method: &'static str, path: &str) -> Result<Value, KubeError> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(KubeError::Body {
            method,
            path: path.to_owned(),
            detail: "expected an object".into(),
        })
    }
}
