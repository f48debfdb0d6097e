//! The trust policies of the roles in infra/, resolved the way CloudFormation resolves them
//! (parameters, `!Sub`, `!If`), compared whole: a condition dropped or loosened fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::{collections::BTreeMap, path::PathBuf};

use peregrine_provision::template::{Resolver, StackContext, Template};
use serde_json::{Value, json};

fn infra(name: &str) -> Template {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../infra")
        .join(name);
    Template::load(&path).unwrap()
}

fn context() -> StackContext {
    StackContext {
        stack_name: "peregrine-agent-role".into(),
        account_id: "111122223333".into(),
        region: "eu-west-1".into(),
        partition: "aws".into(),
    }
}

/// The resolved `AssumeRolePolicyDocument` of `role` with `params`; a document written as a
/// JSON string (`!Sub |` with condition keys built from parameters) is parsed.
fn trust_policy(t: &Template, role: &str, params: &[(&str, &str)]) -> Value {
    let ctx = context();
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let r = Resolver::new(t, &ctx, &params);
    let doc = &t.properties(role).unwrap()["AssumeRolePolicyDocument"];
    match r.resolve(doc, role).unwrap().unwrap() {
        Value::String(s) => serde_json::from_str(&s).unwrap(),
        v => v,
    }
}

const AGENT_PARAMS: [(&str, &str); 1] = [(
    "EventsQueueArn",
    "arn:aws:sqs:eu-west-1:999988887777:peregrine-EventsQueue",
)];

#[test]
fn pod_identity_admits_only_this_clusters_agent_service_account() {
    let t = infra("agent-role.yaml");
    let mut params = AGENT_PARAMS.to_vec();
    params.push(("ClusterName", "prod-eu"));
    assert_eq!(
        trust_policy(&t, "AgentRole", &params),
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "OnlyThePeregrineAgentOfThisCluster",
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {
                    "StringEquals": {
                        "aws:SourceAccount": "111122223333",
                        "aws:RequestTag/eks-cluster-name": "prod-eu",
                        "aws:RequestTag/kubernetes-namespace": "peregrine",
                        "aws:RequestTag/kubernetes-service-account": "peregrine-agent",
                    },
                    "ArnEquals": {
                        "aws:SourceArn": "arn:aws:eks:eu-west-1:111122223333:cluster/prod-eu",
                    },
                },
            }],
        })
    );
}

#[test]
fn irsa_admits_only_the_agent_service_account_of_the_clusters_issuer() {
    let t = infra("agent-role.yaml");
    let issuer = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    let provider = format!("arn:aws:iam::111122223333:oidc-provider/{issuer}");
    let mut params = AGENT_PARAMS.to_vec();
    params.push(("OidcProviderArn", &provider));
    params.push(("OidcProviderUrl", issuer));
    assert_eq!(
        trust_policy(&t, "AgentRole", &params),
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    format!("{issuer}:sub"): "system:serviceaccount:peregrine:peregrine-agent",
                    format!("{issuer}:aud"): "sts.amazonaws.com",
                }},
            }],
        })
    );
}

#[test]
fn the_member_role_trusts_only_the_sweeper_role_with_external_id_inside_the_organization() {
    let t = infra("member-account-role.yaml");
    let policy = trust_policy(
        &t,
        "PeregrineCoverageRole",
        &[
            ("DeployingAccountId", "444455556666"),
            ("OrganizationId", "o-a1b2c3d4e5"),
            ("ExternalId", "peregrine-7f3e9c"),
        ],
    );
    assert_eq!(
        policy,
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "OnlyTheCoverageSweeper",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {
                        "sts:ExternalId": "peregrine-7f3e9c",
                        "aws:PrincipalOrgID": "o-a1b2c3d4e5",
                        "aws:PrincipalAccount": "444455556666",
                    },
                    "ArnEquals": {
                        "aws:PrincipalArn": "arn:aws:iam::444455556666:role/PeregrineCoverageSweeper",
                    },
                },
            }],
        })
    );
    // The role name is a parameter, for organizations that prefix their roles.
    let renamed = trust_policy(
        &t,
        "PeregrineCoverageRole",
        &[
            ("DeployingAccountId", "444455556666"),
            ("OrganizationId", "o-a1b2c3d4e5"),
            ("ExternalId", "peregrine-7f3e9c"),
            ("SweeperRoleName", "sec-peregrine-sweeper"),
        ],
    );
    assert_eq!(
        renamed["Statement"][0]["Condition"]["ArnEquals"]["aws:PrincipalArn"],
        "arn:aws:iam::444455556666:role/sec-peregrine-sweeper"
    );
}

/// The member role's inline policies, resolved, by name.
fn member_role_policies(agent_management: &str) -> Vec<(String, Value)> {
    let t = infra("member-account-role.yaml");
    let ctx = context();
    let params: BTreeMap<String, String> = [
        ("DeployingAccountId", "444455556666"),
        ("OrganizationId", "o-a1b2c3d4e5"),
        ("ExternalId", "peregrine-7f3e9c"),
        ("AgentManagement", agent_management),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let r = Resolver::new(&t, &ctx, &params);
    let props = t.properties("PeregrineCoverageRole").unwrap();
    let policies = r.resolve(&props["Policies"], "Policies").unwrap().unwrap();
    policies
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["PolicyName"].as_str().unwrap().to_owned(),
                p["PolicyDocument"].clone(),
            )
        })
        .collect()
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn agent_management_changes_only_what_peregrine_tagged_or_its_own_access() {
    let names: Vec<String> = member_role_policies("disabled")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["coverage-read-only"], "disabled: inventory only");

    let policies = member_role_policies("enabled");
    let (_, doc) = policies
        .iter()
        .find(|(n, _)| n == "agent-management")
        .expect("enabled: the agent-management policy");
    let own_entry =
        "arn:aws:eks:*:111122223333:access-entry/*/role/111122223333/PeregrineCoverageRole/*";
    for s in doc["Statement"].as_array().unwrap() {
        let sid = s["Sid"].as_str().unwrap();
        let actions = list(&s["Action"]);
        let resources = list(&s["Resource"]);
        let cond = &s["Condition"];
        let writes: Vec<&String> = actions
            .iter()
            .filter(|a| {
                let verb = a.split(':').nth(1).unwrap();
                !(verb.starts_with("Describe") || verb.starts_with("List"))
            })
            .collect();
        if writes.is_empty() {
            continue;
        }
        assert!(
            !resources.iter().any(|r| r == "*"),
            "{sid}: a write on every resource"
        );
        // Every write is conditioned on Peregrine's tag, its own principal or policy, or
        // names only the VPC and subnets that creating an endpoint needs.
        let vpc_and_subnets = resources
            .iter()
            .all(|r| r.ends_with(":vpc/*") || r.ends_with(":subnet/*"));
        assert!(
            cond.is_object() || vpc_and_subnets,
            "{sid}: {writes:?} without a condition"
        );
        if actions.iter().any(|a| a.ends_with("AssociateAccessPolicy")) {
            assert_eq!(resources, [own_entry], "{sid}");
            let policy = cond["ArnEquals"]["eks:policyArn"].as_str().unwrap();
            match policy {
                "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy" => {
                    assert_eq!(cond["StringEquals"]["eks:accessScope"], "namespace");
                    assert_eq!(
                        cond["ForAllValues:StringEquals"]["eks:namespaces"],
                        "peregrine"
                    );
                }
                "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy" => {}
                other => panic!("{sid}: associates {other}"),
            }
        }
        if actions.iter().any(|a| a == "iam:PassRole") {
            assert_eq!(
                resources,
                ["arn:aws:iam::111122223333:role/peregrine-agent-*"],
                "{sid}"
            );
            assert_eq!(
                cond["StringEquals"]["iam:PassedToService"],
                "pods.eks.amazonaws.com"
            );
        }
        if actions.iter().any(|a| a == "eks:CreateAccessEntry") {
            assert_eq!(
                cond["ArnEquals"]["eks:principalArn"],
                "arn:aws:iam::111122223333:role/PeregrineCoverageRole"
            );
        }
    }
}
