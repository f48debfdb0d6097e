//! Test support: a moto per test with a covered cluster in it, and a stand-in Kubernetes API
//! server (no kube-apiserver can run here).
//!
//! The stand-in serves HTTPS with a self-signed certificate (its PEM is the cluster's CA data,
//! as DescribeCluster gives it), records every request, and keeps objects the way server-side
//! apply would: an apply whose body equals the last applied body changes nothing (same
//! `resourceVersion`); anything else stores it under a new `resourceVersion` with the field
//! manager in `managedFields`. It answers 404 for a namespaced object whose Namespace does not
//! exist, and can be told to refuse everything with a status (401, 403).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, VpcEndpoint};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use peregrine_manage::{AgentIdentity, ClusterInventory, ManageConfig};
use peregrine_testkit::moto::Moto;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const QUEUE_URL: &str =
    "https://sqs.us-east-1.amazonaws.com/123456789012/peregrine-EventsQueue";
pub const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:peregrine-EventsQueue";
pub const ROLE_TEMPLATE: &str = "arn:{partition}:iam::{account}:role/peregrine-agent-{cluster}";

pub fn image() -> String {
    format!(
        "registry.example/peregrine-agent:0.1.0@sha256:{}",
        "ab".repeat(32)
    )
}

pub fn config() -> ManageConfig {
    let mut cfg = ManageConfig::new(
        QUEUE_URL,
        QUEUE_ARN,
        image(),
        "monitoring",
        AgentIdentity::PodIdentity {
            role_arn: ROLE_TEMPLATE.into(),
        },
    );
    cfg.tags.insert("team".into(), "security".into());
    cfg
}

// --- the stand-in API server -----------------------------------------------------------------

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

// --- AWS side ----------------------------------------------------------------------------------

pub struct Cluster {
    pub inventory: ClusterInventory,
    pub cluster_sg: String,
}

pub struct Env {
    pub moto: Moto,
    pub sdk: SdkConfig,
    pub api: ApiServer,
}

impl Env {
    pub async fn start() -> Env {
        let moto = Moto::start().expect("moto starts (scripts/setup installs it)");
        let sdk = moto.sdk_config().await;
        let api = ApiServer::start().await;
        Env { moto, sdk, api }
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk)
    }

    pub fn eks(&self) -> aws_sdk_eks::Client {
        aws_sdk_eks::Client::new(&self.sdk)
    }

    /// A VPC (10.<n>.0.0/16) with DNS support and hostnames as given.
    pub async fn vpc(&self, n: u8, dns_support: bool, dns_hostnames: bool) -> String {
        let ec2 = self.ec2();
        let vpc = ec2
            .create_vpc()
            .cidr_block(format!("10.{n}.0.0/16"))
            .send()
            .await
            .unwrap()
            .vpc()
            .unwrap()
            .vpc_id()
            .unwrap()
            .to_owned();
        ec2.modify_vpc_attribute()
            .vpc_id(&vpc)
            .enable_dns_support(AttributeBooleanValue::builder().value(dns_support).build())
            .send()
            .await
            .unwrap();
        ec2.modify_vpc_attribute()
            .vpc_id(&vpc)
            .enable_dns_hostnames(
                AttributeBooleanValue::builder()
                    .value(dns_hostnames)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        vpc
    }

    pub async fn subnet(&self, vpc: &str, cidr: &str, az: &str) -> String {
        self.ec2()
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(cidr)
            .availability_zone(az)
            .send()
            .await
            .unwrap()
            .subnet()
            .unwrap()
            .subnet_id()
            .unwrap()
            .to_owned()
    }

    /// An EKS cluster in `vpc` on `subnets`, with a cluster security group, the Pod Identity
    /// agent add-on (unless `addon` is false) and the stand-in as its API server.
    pub async fn cluster(
        &self,
        name: &str,
        vpc: &str,
        subnets: &[String],
        auth_mode: &str,
        addon: bool,
    ) -> Cluster {
        let eks = self.eks();
        eks.create_cluster()
            .name(name)
            .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .set_subnet_ids(Some(subnets.to_vec()))
                    .build(),
            )
            .access_config(
                aws_sdk_eks::types::CreateAccessConfigRequest::builder()
                    .authentication_mode(auth_mode.into())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        if addon {
            eks.create_addon()
                .cluster_name(name)
                .addon_name("eks-pod-identity-agent")
                .send()
                .await
                .unwrap();
        }
        let described = eks.describe_cluster().name(name).send().await.unwrap();
        let mut inventory = ClusterInventory::from_eks(described.cluster().unwrap()).unwrap();
        assert_eq!(inventory.authentication_mode.as_deref(), Some(auth_mode));
        assert_eq!(inventory.vpc_id, vpc);
        let cluster_sg = inventory
            .cluster_security_group_id
            .clone()
            .expect("the launcher gives clusters a cluster security group");
        // The stand-in is the cluster's API server.
        inventory.endpoint = Some(self.api.endpoint.clone());
        inventory.certificate_authority = Some(self.api.ca_data.clone());
        Cluster {
            inventory,
            cluster_sg,
        }
    }

    /// A VPC with DNS on, two AZs (three subnets, two in the first AZ) and a cluster.
    pub async fn covered_cluster(&self, name: &str) -> Cluster {
        let vpc = self.vpc(1, true, true).await;
        let subnets = vec![
            self.subnet(&vpc, "10.1.1.0/24", "us-east-1a").await,
            self.subnet(&vpc, "10.1.2.0/24", "us-east-1a").await,
            self.subnet(&vpc, "10.1.3.0/24", "us-east-1b").await,
        ];
        self.cluster(name, &vpc, &subnets, "API_AND_CONFIG_MAP", true)
            .await
    }

    /// The VPC's SQS endpoints that are not deleted.
    pub async fn endpoints(&self, vpc: &str) -> Vec<VpcEndpoint> {
        self.ec2()
            .describe_vpc_endpoints()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .send()
            .await
            .unwrap()
            .vpc_endpoints()
            .iter()
            .filter(|e| e.state().map(|s| s.as_str()) != Some("deleted"))
            .cloned()
            .collect()
    }

    pub async fn security_group(
        &self,
        vpc: &str,
        name: &str,
    ) -> Option<aws_sdk_ec2::types::SecurityGroup> {
        self.ec2()
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .send()
            .await
            .unwrap()
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(name))
            .cloned()
    }
}
