//! The runner's HTTP trigger against moto: echo functions behind a function URL (open and
//! AWS_IAM) and an HTTP API (tests/http-template.yaml), called over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use lambda_runtime::{Diagnostic, LambdaEvent};
use peregrine_local::{
    HttpKind, LocalFunction, ProvisionOptions, Runner, RunnerOptions, Template, Trigger, provision,
};
use peregrine_testkit::moto::Moto;
use serde_json::{Value, json};

/// Answers with the event it got (as its body), a header and a cookie; fails on a path ending
/// in `/fail`; answers bare JSON on one ending in `/bare`.
fn echo(binary: &'static str) -> LocalFunction {
    LocalFunction {
        binary,
        trigger: Trigger::Http,
        start: |_, _| {
            Ok(peregrine_local::Handler::new(
                (),
                |_, event: LambdaEvent<Value>| async move {
                    let path = event.payload["rawPath"].as_str().unwrap_or_default();
                    if path.ends_with("/fail") {
                        return Err(Diagnostic {
                            error_type: "Echo".into(),
                            error_message: "asked to fail".into(),
                        });
                    }
                    if path.ends_with("/bare") {
                        return Ok(json!({"bare": true}));
                    }
                    Ok(json!({
                        "statusCode": 201,
                        "headers": {"content-type": "application/json", "x-echo": "yes"},
                        "cookies": ["seen=1"],
                        "body": event.payload.to_string(),
                        "isBase64Encoded": false,
                    }))
                },
            ))
        },
    }
}

struct Local {
    _moto: Moto,
    runner: Runner,
}

async fn local() -> Local {
    let moto = Moto::start().expect("moto starts (scripts/setup installs it)");
    let sdk = moto.sdk_config().await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/http-template.yaml");
    let template = Template::load(&path).unwrap();
    let stack = provision(&sdk, &template, &ProvisionOptions::default())
        .await
        .unwrap();
    let table = [echo("echo-url"), echo("echo-iam"), echo("echo-api")];
    let runner = Runner::new(&sdk, &stack, RunnerOptions::from_stack(&stack), &table).unwrap();
    Local {
        _moto: moto,
        runner,
    }
}

impl Local {
    fn addr(&self, function: &str, kind: HttpKind) -> SocketAddr {
        self.runner
            .http_endpoints()
            .into_iter()
            .find(|e| e.function == function && e.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} endpoint for {function}"))
            .addr
    }

    /// Runs the runner while `client` runs.
    async fn with_runner<F: Future<Output = ()>>(&self, client: F) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve = self.runner.run(async {
            let _ = stopped.await;
        });
        let client = async {
            client.await;
            let _ = stop.send(());
        };
        tokio::join!(serve, client);
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The event the echo function got.
    fn event(&self) -> Value {
        assert_eq!(self.status, StatusCode::CREATED, "{:?}", self.body);
        self.json()
    }
}

async fn send(addr: SocketAddr, request: http::request::Builder, body: impl Into<Bytes>) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request: Request<Full<Bytes>> = request
        .header("host", addr.to_string())
        .body(Full::new(body.into()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

fn get(path: &str) -> http::request::Builder {
    Request::builder().method("GET").uri(path)
}

fn post(path: &str) -> http::request::Builder {
    Request::builder().method("POST").uri(path)
}

/// A well-formed SigV4 header for `service`, with an arbitrary signature (not verified locally).
fn signed(request: http::request::Builder, service: &str) -> http::request::Builder {
    let credential = format!("test/20250102/us-east-1/{service}/aws4_request");
    request.header("x-amz-date", "20250102T030405Z").header(
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host;x-amz-date, Signature={}",
            "ab".repeat(32)
        ),
    )
}

#[tokio::test]
async fn function_url_requests_become_events_and_answers_responses() {
    let local = local().await;
    let url = local.addr("EchoUrlFunction", HttpKind::FunctionUrl);
    local
        .with_runner(async {
            // GET: method, path, query (decoded, repeats joined), headers, cookies.
            let a = send(
                url,
                get("/findings/f-1?severity=high&tag=a&tag=b%20c")
                    .header("x-trace", "t1")
                    .header("x-trace", "t2")
                    .header("cookie", "a=1; b=2")
                    .header("user-agent", "peregrine-test"),
                Bytes::new(),
            )
            .await;
            assert_eq!(a.headers["x-echo"], "yes");
            assert_eq!(a.headers["content-type"], "application/json");
            assert_eq!(a.headers["set-cookie"], "seen=1");
            let e = a.event();
            assert_eq!(e["version"], "2.0");
            assert_eq!(e["rawPath"], "/findings/f-1");
            assert_eq!(e["rawQueryString"], "severity=high&tag=a&tag=b%20c");
            assert_eq!(
                e["queryStringParameters"],
                json!({"severity": "high", "tag": "a,b c"})
            );
            assert_eq!(e["headers"]["x-trace"], "t1,t2");
            assert_eq!(e["headers"]["host"], url.to_string());
            assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
            assert!(e["headers"].get("cookie").is_none());
            let http = &e["requestContext"]["http"];
            assert_eq!(http["method"], "GET");
            assert_eq!(http["path"], "/findings/f-1");
            assert_eq!(http["sourceIp"], "127.0.0.1");
            assert_eq!(http["userAgent"], "peregrine-test");
            assert_eq!(e["requestContext"]["accountId"], "123456789012");
            assert!(e["requestContext"]["authorizer"].is_null());
            assert_eq!(e["isBase64Encoded"], false);

            // POST: a text body as is, a binary one in base64.
            let e = send(
                url,
                post("/findings").header("content-type", "application/json"),
                r#"{"note":"hi"}"#,
            )
            .await
            .event();
            assert_eq!(e["requestContext"]["http"]["method"], "POST");
            assert_eq!(e["body"], r#"{"note":"hi"}"#);
            assert_eq!(e["isBase64Encoded"], false);
            let e = send(
                url,
                post("/blob").header("content-type", "application/octet-stream"),
                vec![0u8, 159, 146, 150],
            )
            .await
            .event();
            assert_eq!(e["body"], "AJ+Slg==");
            assert_eq!(e["isBase64Encoded"], true);

            // Bare JSON is a 200 application/json.
            let a = send(url, get("/bare"), Bytes::new()).await;
            assert_eq!(a.status, StatusCode::OK);
            assert_eq!(a.headers["content-type"], "application/json");
            assert_eq!(a.json(), json!({"bare": true}));

            // A function error is a 502, as Lambda URLs answer.
            let a = send(url, get("/fail"), Bytes::new()).await;
            assert_eq!(a.status, StatusCode::BAD_GATEWAY);

            // Over Lambda's 6 MB payload limit: 413, and the function is not called.
            let a = send(url, post("/big"), vec![b'x'; 6 * 1024 * 1024 + 1]).await;
            assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
        })
        .await;
}

#[tokio::test]
async fn iam_endpoints_need_a_sigv4_header_and_name_the_caller() {
    let local = local().await;
    let url = local.addr("EchoIamFunction", HttpKind::FunctionUrl);
    let api = local.addr("EchoApiFunction", HttpKind::HttpApi);
    local
        .with_runner(async {
            // No Authorization: 403, as AWS answers.
            let a = send(url, get("/findings"), Bytes::new()).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN);
            assert!(a.json()["Message"].is_string());
            // Malformed, or scoped to another service: 403.
            let a = send(
                url,
                get("/findings").header("authorization", "AWS4-HMAC-SHA256 Credential=x"),
                Bytes::new(),
            )
            .await;
            assert_eq!(a.status, StatusCode::FORBIDDEN);
            let a = send(url, signed(get("/findings"), "execute-api"), Bytes::new()).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN);

            // Signed: the caller in requestContext.authorizer.iam. "test" is the runner's own
            // key (moto's), so STS names the user too.
            let e = send(url, signed(get("/findings"), "lambda"), Bytes::new())
                .await
                .event();
            let iam = &e["requestContext"]["authorizer"]["iam"];
            assert_eq!(iam["accessKey"], "test");
            assert_eq!(iam["accountId"], "123456789012");
            assert!(
                iam["userArn"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("arn:"))
            );

            // The HTTP API: GET /items/{id} takes the API's default authorizer (AWS_IAM).
            let a = send(api, get("/items/i-7?x=1"), Bytes::new()).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN);
            assert!(a.json()["message"].is_string());
            let e = send(
                api,
                signed(get("/items/i-7?x=1"), "execute-api"),
                Bytes::new(),
            )
            .await
            .event();
            assert_eq!(e["routeKey"], "GET /items/{id}");
            assert_eq!(e["rawPath"], "/items/i-7");
            assert_eq!(e["pathParameters"], json!({"id": "i-7"}));
            assert_eq!(e["queryStringParameters"], json!({"x": "1"}));
            assert_eq!(e["requestContext"]["http"]["method"], "GET");
            assert_eq!(
                e["requestContext"]["authorizer"]["iam"]["accessKey"],
                "test"
            );
            // POST /items says Authorizer: NONE.
            let e = send(
                api,
                post("/items").header("content-type", "text/plain"),
                "a new item",
            )
            .await
            .event();
            assert_eq!(e["routeKey"], "POST /items");
            assert_eq!(e["body"], "a new item");
            assert!(e["requestContext"].get("authorizer").is_none());
            // No route: 404; a function error: 500, as API Gateway answers.
            let a = send(api, get("/nowhere"), Bytes::new()).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND);
            let a = send(api, signed(get("/items/fail"), "execute-api"), Bytes::new()).await;
            assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        })
        .await;
}
