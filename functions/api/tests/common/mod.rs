//! The API against moto for the tests beyond findings: the template provisioned, the handler
//! called in-process with function URL requests of any method, path and query string.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lambda_runtime::LambdaEvent;
use peregrine_api::{ApiDeps, handle};
use peregrine_provision::{LocalStack, ProvisionOptions, Template, function_config, provision};
use peregrine_testkit::moto::Moto;
use serde_json::Value;

pub struct Api {
    pub _moto: Moto,
    pub sdk: aws_config::SdkConfig,
    pub stack: LocalStack,
    pub deps: ApiDeps,
    pub detector: String,
}

pub async fn api() -> Api {
    let moto = Moto::start().expect("moto (scripts/setup installs it)");
    let sdk = moto.sdk_config().await;
    let template = Template::load(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
    )
    .unwrap();
    let stack = provision(&sdk, &template, &ProvisionOptions::default())
        .await
        .unwrap();
    let config: peregrine_api::Config = function_config(&stack, peregrine_api::BINARY).unwrap();
    let detector = config.detector_id.clone();
    let deps = ApiDeps::from_sdk(&sdk, config);
    Api {
        _moto: moto,
        sdk,
        stack,
        deps,
        detector,
    }
}

/// One request through the handler: (status, JSON body).
pub async fn call(
    deps: &ApiDeps,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let request = peregrine_testkit::lambda::function_url_request(
        method,
        path,
        query,
        body.map(|b| b.to_string()),
    );
    let r = handle(deps, LambdaEvent::new(request, Default::default()))
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    if r.status_code != 200 {
        assert!(
            v["message"].is_string() && v["__type"].is_string(),
            "{method} {path}: {v}"
        );
    }
    (r.status_code, v)
}

impl Api {
    pub fn path(&self, rest: &str) -> String {
        format!("/detector/{}/{rest}", self.detector)
    }

    pub async fn call(
        &self,
        method: &str,
        rest: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        call(&self.deps, method, &self.path(rest), query, body).await
    }

    /// A 200's body.
    pub async fn ok(&self, method: &str, rest: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, rest, &[], body.clone()).await;
        assert_eq!(status, 200, "{method} {rest} {body:?}: {v}");
        v
    }

    /// A 400's message.
    pub async fn bad(&self, method: &str, rest: &str, body: Option<Value>) -> String {
        let (status, v) = self.call(method, rest, &[], body.clone()).await;
        assert_eq!(status, 400, "{method} {rest} {body:?}: {v}");
        assert_eq!(v["__type"], "BadRequestException");
        v["message"].as_str().unwrap().to_owned()
    }
}
