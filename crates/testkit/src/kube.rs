//! A stand-in Kubernetes API server for tests (no kube-apiserver can run on these machines).
//!
//! It serves HTTPS on 127.0.0.1 with a self-signed certificate (its PEM, base64, is the
//! cluster's CA data, as DescribeCluster gives it), records every request, and keeps objects
//! the way server-side apply would: an apply whose body equals the last applied body changes
//! nothing (same `resourceVersion`); anything else stores it under a new `resourceVersion`
//! with the field manager in `managedFields`. It answers 404 for a namespaced object whose
//! Namespace does not exist, and can be told to refuse everything with a status (401, 403).
//! What it does not do (admission, RBAC, scheduling) is listed in docs/deploy.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: failing loudly is the point

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub body: Option<Value>,
}

#[derive(Default)]
struct State {
    /// path → (object as served, body as last applied)
    objects: BTreeMap<String, (Value, Value)>,
    requests: Vec<Recorded>,
    version: u64,
    refuse: Option<u16>,
}

pub struct ApiServer {
    pub endpoint: String,
    /// The CA data for the inventory: base64 of the certificate's PEM.
    pub ca_data: String,
    state: Arc<Mutex<State>>,
}

fn status(code: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "message": message, "code": code.as_u16()});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn ok(v: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .unwrap()
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, authorization) = (header("content-type"), header("authorization"));
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let mut s = state.lock().unwrap();
    s.requests.push(Recorded {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        authorization,
        body: body.clone(),
    });
    if let Some(code) = s.refuse {
        let code = StatusCode::from_u16(code).unwrap();
        return status(code, "refused by the stand-in");
    }
    match method.as_str() {
        "GET" => match s.objects.get(&path) {
            Some((served, _)) => ok(served),
            None => status(StatusCode::NOT_FOUND, "not found"),
        },
        "PATCH" => {
            if content_type.as_deref() != Some("application/apply-patch+yaml") {
                return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not an apply patch");
            }
            let params: BTreeMap<&str, &str> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .collect();
            let Some(manager) = params.get("fieldManager").map(|m| (*m).to_owned()) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "fieldManager is required for apply",
                );
            };
            if let Some(rest) = path.split("/namespaces/").nth(1)
                && rest.contains('/')
            {
                let ns = rest.split('/').next().unwrap();
                if !s.objects.contains_key(&format!("/api/v1/namespaces/{ns}")) {
                    return status(
                        StatusCode::NOT_FOUND,
                        &format!("namespaces \"{ns}\" not found"),
                    );
                }
            }
            let Some(applied) = body else {
                return status(StatusCode::BAD_REQUEST, "the body does not parse");
            };
            if let Some((served, last)) = s.objects.get(&path)
                && *last == applied
            {
                return ok(served);
            }
            s.version += 1;
            let mut served = applied.clone();
            served["metadata"]["resourceVersion"] = json!(s.version.to_string());
            served["metadata"]["managedFields"] =
                json!([{"manager": manager, "operation": "Apply"}]);
            s.objects.insert(path, (served.clone(), applied));
            ok(&served)
        }
        "DELETE" => {
            if s.objects.remove(&path).is_none() {
                return status(StatusCode::NOT_FOUND, "not found");
            }
            if let Some(ns) = path.strip_prefix("/api/v1/namespaces/") {
                let inside = format!("/namespaces/{ns}/");
                s.objects.retain(|p, _| !p.contains(&inside));
            }
            ok(&json!({"kind": "Status", "status": "Success"}))
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "no"),
    }
}

impl ApiServer {
    pub async fn start() -> ApiServer {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let pem = cert.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, st) = (acceptor.clone(), st.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        ApiServer {
            endpoint: format!("https://127.0.0.1:{port}"),
            ca_data: STANDARD.encode(pem),
            state,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// The object at `path` as served.
    pub fn object(&self, path: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(path)
            .map(|(v, _)| v.clone())
    }

    pub fn paths(&self) -> Vec<String> {
        self.state.lock().unwrap().objects.keys().cloned().collect()
    }

    /// Puts an object there as someone else's (another field manager).
    pub fn put_foreign(&self, path: &str, mut v: Value) {
        let mut s = self.state.lock().unwrap();
        s.version += 1;
        v["metadata"]["resourceVersion"] = json!(s.version.to_string());
        v["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply"}]);
        s.objects.insert(path.to_owned(), (v.clone(), v));
    }

    /// From now on every request is answered with `code` (None: served normally).
    pub fn refuse(&self, code: Option<u16>) {
        self.state.lock().unwrap().refuse = code;
    }
}

/// The presigned STS URL inside a recorded request's bearer token, checked for the shape
/// aws-iam-authenticator gives it.
pub fn token_url(r: &Recorded, cluster: &str) -> String {
    let auth = r
        .authorization
        .as_deref()
        .expect("a bearer token on every request");
    let token = auth
        .strip_prefix("Bearer k8s-aws-v1.")
        .expect("Bearer k8s-aws-v1. token");
    assert!(!token.contains('='), "base64url without padding");
    let url = String::from_utf8(URL_SAFE_NO_PAD.decode(token).expect("base64url")).unwrap();
    assert!(
        url.starts_with(
            "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
        ),
        "{url}"
    );
    for part in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Expires=60",
        "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
        "X-Amz-Credential=",
        "X-Amz-Date=",
        "X-Amz-Signature=",
    ] {
        assert!(url.contains(part), "{part} missing from {url}");
    }
    let _ = cluster;
    url
}
