//! Management as the sweeper runs it: in a member account, with the member-account role's
//! credentials (AssumeRole), and moto enforcing IAM from the moment management starts.
//!
//! The role gets the policies of `infra/member-account-role.yaml`, resolved as CloudFormation
//! resolves them. moto checks actions, not resources or conditions, so each statement's
//! resources become `*` and its conditions are dropped here: what this proves is that the
//! template names every call management makes (and that a role without them gets a typed
//! AccessDenied). `crates/provision/tests/iam.rs` checks the conditions themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use common::{ApiServer, Env, config};
use peregrine_manage::{ManageError, Step, manage_cluster, unmanage_cluster};
use peregrine_provision::template::{Resolver, StackContext, Template};
use peregrine_testkit::moto::Moto;
use serde_json::{Value, json};

/// The member role's inline policies with `AgentManagement` as given, resources widened to
/// `*` and conditions dropped (moto evaluates neither).
fn member_role_policies(agent_management: &str, account_id: &str) -> Vec<(String, Value)> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/member-account-role.yaml");
    let t = Template::load(&path).unwrap();
    let ctx = StackContext {
        stack_name: "peregrine-coverage-role".into(),
        account_id: account_id.into(),
        region: "us-east-1".into(),
        partition: "aws".into(),
    };
    let params: BTreeMap<String, String> = [
        ("DeployingAccountId", "123456789012"),
        ("OrganizationId", "o-a1b2c3d4e5"),
        ("ExternalId", "peregrine-test"),
        ("AgentManagement", agent_management),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let r = Resolver::new(&t, &ctx, &params);
    let props = t.properties("PeregrineCoverageRole").unwrap();
    let policies = r.resolve(&props["Policies"], "Policies").unwrap().unwrap();
    policies
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut doc = p["PolicyDocument"].clone();
            for s in doc["Statement"].as_array_mut().unwrap() {
                let s = s.as_object_mut().unwrap();
                s.remove("Condition");
                s.insert("Resource".into(), json!("*"));
            }
            (p["PolicyName"].as_str().unwrap().to_owned(), doc)
        })
        .collect()
}

async fn assume(base: &SdkConfig, role_arn: &str) -> SdkConfig {
    let sts = aws_sdk_sts::Client::new(base);
    let out = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("peregrine-sweep")
        .external_id("peregrine-test")
        .send()
        .await
        .unwrap();
    let c = out.credentials().unwrap();
    let creds = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "assumed",
    );
    base.to_builder()
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .build()
}

/// A member account with the coverage role (its policies from the template) and a covered
/// cluster, set up before IAM is enforced; the role's credentials.
async fn member_account(agent_management: &str) -> (Env, common::Cluster, SdkConfig) {
    let moto = Moto::start().expect("moto starts (scripts/setup installs it)");
    let admin = moto.sdk_config().await;
    // A member account made through Organizations, which gives it OrganizationAccountAccessRole
    // (the launcher refuses roles that do not exist).
    let orgs = aws_sdk_organizations::Client::new(&admin);
    orgs.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .unwrap();
    let member_id = orgs
        .create_account()
        .account_name("member")
        .email("member@example.com")
        .send()
        .await
        .unwrap()
        .create_account_status()
        .unwrap()
        .account_id()
        .unwrap()
        .to_owned();
    let member_admin = assume(
        &admin,
        &format!("arn:aws:iam::{member_id}:role/OrganizationAccountAccessRole"),
    )
    .await;
    let iam = aws_sdk_iam::Client::new(&member_admin);
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]});
    iam.create_role()
        .role_name("PeregrineCoverageRole")
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    for (name, doc) in member_role_policies(agent_management, &member_id) {
        iam.put_role_policy()
            .role_name("PeregrineCoverageRole")
            .policy_name(name)
            .policy_document(doc.to_string())
            .send()
            .await
            .unwrap();
    }
    let env = Env {
        sdk: member_admin,
        api: ApiServer::start().await,
        moto,
    };
    let cluster = env.covered_cluster("prod").await;
    assert_eq!(
        cluster.inventory.account_id, member_id,
        "the cluster is the member account's"
    );
    let member = assume(
        &admin,
        &format!("arn:aws:iam::{member_id}:role/PeregrineCoverageRole"),
    )
    .await;
    (env, cluster, member)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_role_names_every_call_management_makes() {
    let (env, c, member) = member_account("enabled").await;
    let cfg = config();
    env.moto.enforce_iam().unwrap();

    let r = manage_cluster(&member, &c.inventory, &cfg).await.unwrap();
    assert!(r.complete, "{r:#?}");
    assert!(r.changed());
    let again = manage_cluster(&member, &c.inventory, &cfg).await.unwrap();
    assert!(again.complete && !again.changed(), "{again:#?}");
    let gone = unmanage_cluster(&member, &c.inventory, &cfg).await.unwrap();
    assert!(gone.complete, "{gone:#?}");
    assert!(gone.changed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_agent_management_the_role_gets_a_typed_access_denied() {
    let (env, c, member) = member_account("disabled").await;
    env.moto.enforce_iam().unwrap();

    let err = manage_cluster(&member, &c.inventory, &config())
        .await
        .unwrap_err();
    match &err {
        ManageError::Aws {
            step,
            operation,
            failure,
            code,
            ..
        } => {
            assert_eq!(*step, Step::VpcEndpoint);
            assert_eq!(*operation, "DescribeVpcs");
            assert_eq!(*failure, peregrine_aws::Failure::Denied);
            assert!(
                code.as_deref().unwrap_or_default().contains("AccessDenied"),
                "{code:?}"
            );
        }
        other => panic!("expected an AWS AccessDenied, got {other:?}"),
    }
    assert!(
        err.issue()
            .starts_with("Agent management permission not granted:DescribeVpcs: AccessDenied"),
        "{}",
        err.issue()
    );
    // Nothing reached the cluster.
    assert!(env.api.requests().is_empty());
}
