//! The findings API as `peregrine-local serve` serves it: template.yaml's ApiFunction behind its
//! AWS_IAM function URL on 127.0.0.1, over real HTTP against moto. The operations themselves
//! are tested in functions/api/tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use peregrine_local::functions::API_BINARY;
use peregrine_local::{
    FUNCTIONS, HttpKind, ProvisionOptions, Runner, RunnerOptions, Template, provision,
};
use peregrine_testkit::moto::Moto;
use serde_json::{Value, json};

async fn send(
    addr: SocketAddr,
    request: http::request::Builder,
    body: &str,
) -> (StatusCode, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request: Request<Full<Bytes>> = request
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A well-formed SigV4 header for the function URL's service (the signature is not verified
/// locally).
fn signed(request: http::request::Builder) -> http::request::Builder {
    request.header("x-amz-date", "20250102T030405Z").header(
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential=test/20250102/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
            "ab".repeat(32)
        ),
    )
}

#[tokio::test]
async fn the_local_stack_serves_the_api_behind_its_iam_function_url() {
    let moto = Moto::start().expect("moto starts (scripts/setup installs it)");
    let sdk = moto.sdk_config().await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let template = Template::load(&path).unwrap();
    let stack = provision(&sdk, &template, &ProvisionOptions::default())
        .await
        .unwrap();
    let api: Vec<_> = FUNCTIONS
        .iter()
        .filter(|f| f.binary == API_BINARY)
        .copied()
        .collect();
    assert_eq!(api.len(), 1, "the runner's table has the API");
    let runner = Runner::new(&sdk, &stack, RunnerOptions::from_stack(&stack), &api).unwrap();
    let endpoint = runner
        .http_endpoints()
        .into_iter()
        .find(|e| e.function == "ApiFunction")
        .expect("ApiFunction has an HTTP endpoint");
    assert_eq!(endpoint.kind, HttpKind::FunctionUrl);
    assert!(endpoint.addr.ip().is_loopback());
    let addr = endpoint.addr;
    let detector = stack.function_env("ApiFunction").unwrap()["DETECTOR_ID"].clone();
    let findings = format!("/detector/{detector}/findings");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = runner.run(async {
        let _ = stopped.await;
    });
    let client = async {
        let post = || Request::builder().method("POST").uri(findings.as_str());
        // Unsigned: refused by the front (AWS_IAM), as AWS answers.
        let (status, _) = send(addr, post(), "{}").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Signed: the operation's answer.
        let (status, body) = send(addr, signed(post()), "{}").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"findingIds": [], "nextToken": ""}));
        // A client error is the API's 400, not the front's 502.
        let (status, body) = send(addr, signed(post()), "{\"maxResults\": 0}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["__type"], "BadRequestException");
        let _ = stop.send(());
    };
    tokio::join!(serve, client);
}
