//! Management against moto (AWS, with the EKS operations moto lacks added by the test launcher)
//! and a stand-in Kubernetes API server (see tests/common).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, config, image, token_url};
use peregrine_manage::kube::KubeError;
use peregrine_manage::{
    AgentIdentity, IssueKind, ManageError, ManageReport, Outcome, Resource, manage_cluster,
    unmanage_cluster,
};
use serde_json::json;

const KINDS: [&str; 6] = [
    "/api/v1/namespaces/peregrine",
    "/api/v1/namespaces/peregrine/serviceaccounts/peregrine-agent",
    "/api/v1/namespaces/peregrine/configmaps/peregrine-agent",
    "/apis/scheduling.k8s.io/v1/priorityclasses/peregrine-agent",
    "/apis/apps/v1/namespaces/peregrine/daemonsets/peregrine-agent",
    "/apis/networking.k8s.io/v1/namespaces/peregrine/networkpolicies/peregrine-agent",
];

fn outcomes(r: &ManageReport, resource: Resource) -> Vec<Outcome> {
    r.actions
        .iter()
        .filter(|a| a.resource == resource)
        .map(|a| a.outcome.clone())
        .collect()
}

fn count(r: &ManageReport, resource: Resource, outcome: &Outcome) -> usize {
    r.actions
        .iter()
        .filter(|a| a.resource == resource && a.outcome == *outcome)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_creates_everything_once_and_a_second_call_changes_nothing() {
    let env = Env::start().await;
    let c = env.covered_cluster("prod").await;
    let inv = &c.inventory;
    let cfg = config();

    let first = manage_cluster(&env.sdk, inv, &cfg).await.unwrap();
    assert!(first.complete, "{first:#?}");
    assert!(first.issues.is_empty(), "{:?}", first.issues);
    assert_eq!(outcomes(&first, Resource::VpcEndpoint), [Outcome::Created]);
    assert_eq!(
        outcomes(&first, Resource::EndpointSecurityGroup),
        [Outcome::Created]
    );
    assert_eq!(
        outcomes(&first, Resource::PodIdentityAssociation),
        [Outcome::Created]
    );
    assert_eq!(outcomes(&first, Resource::AccessEntry), [Outcome::Created]);
    // The namespace-scoped admin policy stays; cluster admin comes and goes.
    assert_eq!(
        outcomes(&first, Resource::AccessPolicy),
        [Outcome::Created, Outcome::Created, Outcome::Removed]
    );
    assert_eq!(
        count(&first, Resource::KubernetesObject, &Outcome::Created),
        6
    );

    // AWS: one endpoint, one subnet per AZ, private DNS, tagged; its group admits the
    // cluster's on 443 and sends nothing out.
    let endpoints = env.endpoints(&inv.vpc_id).await;
    assert_eq!(endpoints.len(), 1);
    let e = &endpoints[0];
    assert_eq!(e.service_name(), Some("com.amazonaws.us-east-1.sqs"));
    assert_eq!(e.private_dns_enabled(), Some(true));
    assert_eq!(e.subnet_ids().len(), 2, "one per AZ: {:?}", e.subnet_ids());
    assert!(e.subnet_ids().contains(&inv.subnet_ids[2]));
    let tags: Vec<(&str, &str)> = e
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert!(tags.contains(&("peregrine:managed-by", "peregrine")));
    assert!(tags.contains(&("peregrine:cluster/prod", inv.arn.as_str())));
    assert!(tags.contains(&("team", "security")));
    let sg = env
        .security_group(&inv.vpc_id, "peregrine-sqs-endpoint")
        .await
        .unwrap();
    assert_eq!(e.groups()[0].group_id(), sg.group_id());
    assert_eq!(sg.ip_permissions().len(), 1);
    let p = &sg.ip_permissions()[0];
    assert_eq!(
        (p.ip_protocol(), p.from_port(), p.to_port()),
        (Some("tcp"), Some(443), Some(443))
    );
    assert_eq!(
        p.user_id_group_pairs()[0].group_id(),
        Some(c.cluster_sg.as_str())
    );
    assert!(sg.ip_permissions_egress().is_empty());

    // EKS: the association with the agent role, the access entry with only the namespaced
    // admin policy left.
    let eks = env.eks();
    let assocs = eks
        .list_pod_identity_associations()
        .cluster_name("prod")
        .send()
        .await
        .unwrap();
    assert_eq!(assocs.associations().len(), 1);
    let a = eks
        .describe_pod_identity_association()
        .cluster_name("prod")
        .association_id(assocs.associations()[0].association_id().unwrap())
        .send()
        .await
        .unwrap();
    let a = a.association().unwrap();
    assert_eq!(
        (a.namespace(), a.service_account(), a.role_arn()),
        (
            Some("peregrine"),
            Some("peregrine-agent"),
            Some("arn:aws:iam::123456789012:role/peregrine-agent-prod")
        )
    );
    let principal = "arn:aws:iam::123456789012:role/PeregrineCoverageRole";
    let policies = eks
        .list_associated_access_policies()
        .cluster_name("prod")
        .principal_arn(principal)
        .send()
        .await
        .unwrap();
    let policies = policies.associated_access_policies();
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(
        policies[0].policy_arn(),
        Some("arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy")
    );
    let scope = policies[0].access_scope().unwrap();
    assert_eq!(scope.r#type().map(|t| t.as_str()), Some("namespace"));
    assert_eq!(scope.namespaces(), ["peregrine"]);

    // Kubernetes: every object applied with server-side apply, as peregrine, forced, the
    // rendered bodies holding the cluster's values and no placeholder; every request carrying
    // aws-iam-authenticator's token.
    let requests = env.api.requests();
    let patches: Vec<_> = requests.iter().filter(|r| r.method == "PATCH").collect();
    let paths: Vec<&str> = patches.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [KINDS[0], KINDS[3], KINDS[1], KINDS[2], KINDS[4], KINDS[5]],
        "cluster-scoped objects first, then the namespaced ones, each in file order"
    );
    for r in &patches {
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(r.query, "fieldManager=peregrine&force=true");
        let body = r.body.as_ref().unwrap().to_string();
        assert!(!body.contains("${"), "{body}");
    }
    for r in &requests {
        token_url(r, "prod");
    }
    let cm = env.api.object(KINDS[2]).unwrap();
    assert_eq!(cm["data"]["CLUSTER_NAME"], "prod");
    assert_eq!(cm["data"]["AWS_REGION"], "us-east-1");
    assert_eq!(cm["data"]["QUEUE_URL"], common::QUEUE_URL);
    let ds = env.api.object(KINDS[4]).unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        image().as_str()
    );
    let sa = env.api.object(KINDS[1]).unwrap();
    assert!(
        sa["metadata"]["annotations"]
            .get("eks.amazonaws.com/role-arn")
            .is_none(),
        "Pod Identity: no IRSA annotation"
    );
    let np = env.api.object(KINDS[5]).unwrap();
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    let versions: Vec<_> = KINDS
        .iter()
        .map(|p| env.api.object(p).unwrap()["metadata"]["resourceVersion"].clone())
        .collect();

    // Second call: nothing changes anywhere.
    env.api.clear_requests();
    let second = manage_cluster(&env.sdk, inv, &cfg).await.unwrap();
    assert!(second.complete && !second.changed(), "{second:#?}");
    assert!(
        second
            .actions
            .iter()
            .all(|a| matches!(a.outcome, Outcome::Unchanged | Outcome::LeftAlone(_))),
        "{second:#?}"
    );
    assert_eq!(env.endpoints(&inv.vpc_id).await.len(), 1);
    let again: Vec<_> = KINDS
        .iter()
        .map(|p| env.api.object(p).unwrap()["metadata"]["resourceVersion"].clone())
        .collect();
    assert_eq!(versions, again);
    let requests = env.api.requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.method == "PATCH" && (r.path == KINDS[0] || r.path == KINDS[3])),
        "cluster-scoped objects are not applied again when their rendering is unchanged"
    );
    let policies = eks
        .list_associated_access_policies()
        .cluster_name("prod")
        .principal_arn(principal)
        .send()
        .await
        .unwrap();
    assert_eq!(policies.associated_access_policies().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_put_back_and_a_new_image_is_rolled_out() {
    let env = Env::start().await;
    let c = env.covered_cluster("prod").await;
    let mut cfg = config();
    manage_cluster(&env.sdk, &c.inventory, &cfg).await.unwrap();

    cfg.agent_image = format!(
        "registry.example/peregrine-agent:0.2.0@sha256:{}",
        "cd".repeat(32)
    );
    let r = manage_cluster(&env.sdk, &c.inventory, &cfg).await.unwrap();
    assert!(r.complete, "{r:#?}");
    let updated: Vec<&str> = r
        .actions
        .iter()
        .filter(|a| a.outcome == Outcome::Updated)
        .map(|a| a.id.as_str())
        .collect();
    assert_eq!(updated, ["DaemonSet peregrine/peregrine-agent"]);
    assert_eq!(
        env.api.object(KINDS[4]).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        cfg.agent_image.as_str()
    );

    // Someone removes the endpoint's security group rule: it comes back.
    let sg = env
        .security_group(&c.inventory.vpc_id, "peregrine-sqs-endpoint")
        .await
        .unwrap();
    env.ec2()
        .revoke_security_group_ingress()
        .group_id(sg.group_id().unwrap())
        .set_ip_permissions(Some(sg.ip_permissions().to_vec()))
        .send()
        .await
        .unwrap();
    let r = manage_cluster(&env.sdk, &c.inventory, &cfg).await.unwrap();
    assert_eq!(
        count(&r, Resource::SecurityGroupRule, &Outcome::Created),
        1,
        "{r:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_attributes_off_are_an_issue_and_no_endpoint_is_made() {
    let env = Env::start().await;
    let vpc = env.vpc(2, true, false).await;
    let subnets = vec![env.subnet(&vpc, "10.2.1.0/24", "us-east-1a").await];
    let c = env
        .cluster("dev", &vpc, &subnets, "API_AND_CONFIG_MAP", true)
        .await;

    let r = manage_cluster(&env.sdk, &c.inventory, &config())
        .await
        .unwrap();
    assert!(!r.complete);
    assert_eq!(r.issues.len(), 1, "{:?}", r.issues);
    assert_eq!(r.issues[0].kind, IssueKind::VpcEndpointCreationFailed);
    let issue = r.issue_string().unwrap();
    assert!(
        issue.starts_with(
            "VPC Endpoint Creation Failed:private DNS needs enableDnsSupport and enableDnsHostnames"
        ),
        "{issue}"
    );
    assert!(issue.ends_with("off: enableDnsHostnames"), "{issue}");
    assert!(env.endpoints(&vpc).await.is_empty());
    assert!(
        env.security_group(&vpc, "peregrine-sqs-endpoint")
            .await
            .is_none()
    );
    // The rest of management still happened.
    assert_eq!(count(&r, Resource::KubernetesObject, &Outcome::Created), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanage_removes_what_peregrine_made_and_nothing_else() {
    let env = Env::start().await;
    let c = env.covered_cluster("prod").await;
    let inv = &c.inventory;
    let cfg = config();
    manage_cluster(&env.sdk, inv, &cfg).await.unwrap();
    // Not Peregrine's: an unrelated object in the namespace, and another SQS endpoint user's
    // security group.
    env.api.put_foreign(
        "/api/v1/namespaces/peregrine/configmaps/someone-elses",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "someone-elses"}}),
    );

    let r = unmanage_cluster(&env.sdk, inv, &cfg).await.unwrap();
    assert!(r.complete, "{r:#?}");
    assert_eq!(count(&r, Resource::KubernetesObject, &Outcome::Removed), 6);
    assert!(env.api.paths().is_empty(), "{:?}", env.api.paths());
    assert_eq!(outcomes(&r, Resource::VpcEndpoint), [Outcome::Removed]);
    assert_eq!(
        outcomes(&r, Resource::EndpointSecurityGroup),
        [Outcome::Removed]
    );
    assert!(env.endpoints(&inv.vpc_id).await.is_empty());
    assert!(
        env.security_group(&inv.vpc_id, "peregrine-sqs-endpoint")
            .await
            .is_none()
    );
    assert!(
        env.ec2()
            .describe_security_groups()
            .group_ids(&c.cluster_sg)
            .send()
            .await
            .is_ok(),
        "the cluster's own security group stays"
    );
    let eks = env.eks();
    assert!(
        eks.list_pod_identity_associations()
            .cluster_name("prod")
            .send()
            .await
            .unwrap()
            .associations()
            .is_empty()
    );
    assert!(
        eks.list_access_entries()
            .cluster_name("prod")
            .send()
            .await
            .unwrap()
            .access_entries()
            .is_empty()
    );
    // The Kubernetes objects went with cluster admin associated, through the token.
    let deletes: Vec<_> = env
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(
        deletes.last().unwrap().path,
        KINDS[0],
        "the Namespace goes last"
    );

    // Again: nothing left to do.
    let again = unmanage_cluster(&env.sdk, inv, &cfg).await.unwrap();
    assert!(again.complete && !again.changed(), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanage_leaves_objects_peregrine_did_not_apply() {
    let env = Env::start().await;
    let c = env.covered_cluster("prod").await;
    let cfg = config();
    manage_cluster(&env.sdk, &c.inventory, &cfg).await.unwrap();
    // Someone re-applied the PriorityClass as their own.
    env.api.put_foreign(
        KINDS[3],
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
               "metadata": {"name": "peregrine-agent"}, "value": 1}),
    );
    let r = unmanage_cluster(&env.sdk, &c.inventory, &cfg)
        .await
        .unwrap();
    assert!(env.api.object(KINDS[3]).is_some());
    assert!(
        r.actions
            .iter()
            .any(|a| a.id == "PriorityClass peregrine-agent"
                && matches!(a.outcome, Outcome::LeftAlone(_)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_of_one_vpc_share_its_endpoint_until_the_last_leaves() {
    let env = Env::start().await;
    let a = env.covered_cluster("alpha").await;
    let vpc = a.inventory.vpc_id.clone();
    let subnets = vec![env.subnet(&vpc, "10.1.4.0/24", "us-east-1c").await];
    let b = env
        .cluster("beta", &vpc, &subnets, "API_AND_CONFIG_MAP", true)
        .await;
    let cfg = config();

    manage_cluster(&env.sdk, &a.inventory, &cfg).await.unwrap();
    let rb = manage_cluster(&env.sdk, &b.inventory, &cfg).await.unwrap();
    assert_eq!(
        outcomes(&rb, Resource::VpcEndpoint),
        [Outcome::Updated],
        "{rb:#?}"
    );
    let endpoints = env.endpoints(&vpc).await;
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].subnet_ids().len(), 3, "beta's AZ added");
    let keys: Vec<&str> = endpoints[0].tags().iter().filter_map(|t| t.key()).collect();
    assert!(keys.contains(&"peregrine:cluster/alpha") && keys.contains(&"peregrine:cluster/beta"));
    let sg = env
        .security_group(&vpc, "peregrine-sqs-endpoint")
        .await
        .unwrap();
    let sources: Vec<&str> = sg.ip_permissions()[0]
        .user_id_group_pairs()
        .iter()
        .filter_map(|p| p.group_id())
        .collect();
    assert_eq!(sources.len(), 2, "{sources:?}");

    let ra = unmanage_cluster(&env.sdk, &a.inventory, &cfg)
        .await
        .unwrap();
    assert!(ra.complete, "{ra:#?}");
    let endpoints = env.endpoints(&vpc).await;
    assert_eq!(endpoints.len(), 1, "beta still uses it");
    assert!(
        !endpoints[0]
            .tags()
            .iter()
            .any(|t| t.key() == Some("peregrine:cluster/alpha"))
    );
    let sg = env
        .security_group(&vpc, "peregrine-sqs-endpoint")
        .await
        .unwrap();
    let sources: Vec<&str> = sg
        .ip_permissions()
        .iter()
        .flat_map(|p| p.user_id_group_pairs())
        .filter_map(|p| p.group_id())
        .collect();
    assert_eq!(sources, [b.cluster_sg.as_str()]);

    unmanage_cluster(&env.sdk, &b.inventory, &cfg)
        .await
        .unwrap();
    assert!(env.endpoints(&vpc).await.is_empty());
    assert!(
        env.security_group(&vpc, "peregrine-sqs-endpoint")
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_endpoint_with_private_dns_that_is_not_ours_is_used() {
    let env = Env::start().await;
    let c = env.covered_cluster("prod").await;
    let vpc = &c.inventory.vpc_id;
    let theirs = env
        .ec2()
        .create_vpc_endpoint()
        .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
        .vpc_id(vpc)
        .service_name("com.amazonaws.us-east-1.sqs")
        .subnet_ids(&c.inventory.subnet_ids[0])
        .private_dns_enabled(true)
        .send()
        .await
        .unwrap();
    let theirs = theirs.vpc_endpoint().unwrap().vpc_endpoint_id().unwrap();

    let r = manage_cluster(&env.sdk, &c.inventory, &config())
        .await
        .unwrap();
    assert!(r.complete, "{r:#?}");
    assert!(r.actions.iter().any(|a| a.resource == Resource::VpcEndpoint
        && a.id == theirs
        && matches!(a.outcome, Outcome::LeftAlone(_))));
    assert_eq!(env.endpoints(vpc).await.len(), 1);
    assert!(
        env.security_group(vpc, "peregrine-sqs-endpoint")
            .await
            .is_none()
    );

    // And unmanaging never touches it.
    unmanage_cluster(&env.sdk, &c.inventory, &config())
        .await
        .unwrap();
    assert_eq!(env.endpoints(vpc).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_api_server_is_a_typed_error() {
    let env = Env::start().await;
    let mut c = env.covered_cluster("prod").await;
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    c.inventory.endpoint = Some(format!("https://127.0.0.1:{port}"));
    let err = manage_cluster(&env.sdk, &c.inventory, &config())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ManageError::Kube {
                source: KubeError::Connect(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.failure(), peregrine_aws::Failure::Unavailable);
    assert!(
        err.issue()
            .starts_with("Agent Creation Failed:Kubernetes API https://127.0.0.1:"),
        "{}",
        err.issue()
    );

    // One that accepts and never answers: bounded by the timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    c.inventory.endpoint = Some(format!("https://127.0.0.1:{port}"));
    let mut cfg = config();
    cfg.kube_timeout = std::time::Duration::from_millis(500);
    let err = manage_cluster(&env.sdk, &c.inventory, &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ManageError::Kube {
                source: KubeError::Timeout(_),
                ..
            }
        ),
        "{err:?}"
    );
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_with_another_ca_is_refused_before_the_token_is_sent() {
    let env = Env::start().await;
    let mut c = env.covered_cluster("prod").await;
    let other = common::ApiServer::start().await;
    c.inventory.certificate_authority = Some(other.ca_data.clone());
    let err = manage_cluster(&env.sdk, &c.inventory, &config())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ManageError::Kube {
                source: KubeError::Tls(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        env.api.requests().is_empty(),
        "no request reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_pending_right_after_access_is_granted_and_denied_later() {
    let env = Env::start().await;
    let c = env.covered_cluster("prod").await;
    let cfg = config();

    // The access entry was just created: a 401 means "not yet".
    env.api.refuse(Some(401));
    let r = manage_cluster(&env.sdk, &c.inventory, &cfg).await.unwrap();
    assert!(!r.complete);
    assert_eq!(r.issues[0].kind, IssueKind::ProvisioningInProgress);
    assert!(
        r.issue_string()
            .unwrap()
            .starts_with("Agent provisioning in progress:"),
        "{:?}",
        r.issue_string()
    );

    // The next sweep carries on.
    env.api.refuse(None);
    let r = manage_cluster(&env.sdk, &c.inventory, &cfg).await.unwrap();
    assert!(r.complete, "{r:#?}");
    assert_eq!(count(&r, Resource::KubernetesObject, &Outcome::Created), 6);

    // Access in place for a while and still refused: a typed permission error.
    env.api.refuse(Some(403));
    let err = manage_cluster(&env.sdk, &c.inventory, &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ManageError::Kube {
                source: KubeError::Status { status: 403, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.failure(), peregrine_aws::Failure::Denied);
    assert!(
        err.issue()
            .starts_with("Agent management permission not granted:"),
        "{}",
        err.issue()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_only_cluster_is_an_issue_and_gets_no_kubernetes_calls() {
    let env = Env::start().await;
    let vpc = env.vpc(3, true, true).await;
    let subnets = vec![env.subnet(&vpc, "10.3.1.0/24", "us-east-1a").await];
    let c = env
        .cluster("legacy", &vpc, &subnets, "CONFIG_MAP", true)
        .await;
    let r = manage_cluster(&env.sdk, &c.inventory, &config())
        .await
        .unwrap();
    assert_eq!(r.issues.len(), 1, "{:?}", r.issues);
    assert_eq!(r.issues[0].kind, IssueKind::KubernetesAccessNotGranted);
    assert!(env.api.requests().is_empty());
    // The endpoint and the identity are still there.
    assert_eq!(env.endpoints(&vpc).await.len(), 1);

    // Even when the inventory did not say so, EKS's refusal is the same issue.
    let mut inv = c.inventory.clone();
    inv.authentication_mode = None;
    let r = manage_cluster(&env.sdk, &inv, &config()).await.unwrap();
    assert_eq!(
        r.issues[0].kind,
        IssueKind::KubernetesAccessNotGranted,
        "{r:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_conflicts_and_the_missing_pod_identity_agent_are_issues() {
    let env = Env::start().await;
    let vpc = env.vpc(4, true, true).await;
    let subnets = vec![env.subnet(&vpc, "10.4.1.0/24", "us-east-1a").await];
    let c = env
        .cluster("prod", &vpc, &subnets, "API_AND_CONFIG_MAP", false)
        .await;
    env.eks()
        .create_pod_identity_association()
        .cluster_name("prod")
        .namespace("peregrine")
        .service_account("peregrine-agent")
        .role_arn("arn:aws:iam::123456789012:role/someone-else")
        .send()
        .await
        .unwrap();

    let r = manage_cluster(&env.sdk, &c.inventory, &config())
        .await
        .unwrap();
    let kinds: Vec<IssueKind> = r.issues.iter().map(|i| i.kind).collect();
    assert_eq!(
        kinds,
        [
            IssueKind::AgentIdentityConflict,
            IssueKind::PodIdentityAgentMissing
        ],
        "{r:#?}"
    );
    // Left alone, not changed.
    let a = env
        .eks()
        .list_pod_identity_associations()
        .cluster_name("prod")
        .send()
        .await
        .unwrap();
    let a = env
        .eks()
        .describe_pod_identity_association()
        .cluster_name("prod")
        .association_id(a.associations()[0].association_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        a.association().unwrap().role_arn(),
        Some("arn:aws:iam::123456789012:role/someone-else")
    );
    // Unmanaging leaves it too.
    unmanage_cluster(&env.sdk, &c.inventory, &config())
        .await
        .unwrap();
    assert_eq!(
        env.eks()
            .list_pod_identity_associations()
            .cluster_name("prod")
            .send()
            .await
            .unwrap()
            .associations()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irsa_keeps_the_annotation_and_drops_peregrines_association() {
    let env = Env::start().await;
    let c = env.covered_cluster("prod").await;
    manage_cluster(&env.sdk, &c.inventory, &config())
        .await
        .unwrap();

    let mut cfg = config();
    cfg.agent_identity = AgentIdentity::Irsa {
        role_arn: common::ROLE_TEMPLATE.into(),
    };
    let r = manage_cluster(&env.sdk, &c.inventory, &cfg).await.unwrap();
    assert!(r.complete, "{r:#?}");
    assert_eq!(
        outcomes(&r, Resource::PodIdentityAssociation)[0],
        Outcome::Removed
    );
    let sa = env.api.object(KINDS[1]).unwrap();
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/peregrine-agent-prod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_in_another_region_than_the_queue_gets_no_endpoint() {
    let env = Env::start().await;
    let c = env.covered_cluster("prod").await;
    let mut cfg = config();
    cfg.queue_arn = "arn:aws:sqs:eu-west-1:123456789012:peregrine-EventsQueue".into();
    cfg.queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/peregrine-EventsQueue".into();
    let r = manage_cluster(&env.sdk, &c.inventory, &cfg).await.unwrap();
    assert!(r.complete, "{r:#?}");
    assert!(env.endpoints(&c.inventory.vpc_id).await.is_empty());
    assert_eq!(
        env.api.object(KINDS[2]).unwrap()["data"]["AWS_REGION"],
        "eu-west-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_typed_errors_before_any_call() {
    let env = Env::start().await;
    let c = env.covered_cluster("prod").await;
    let mut cfg = config();
    cfg.agent_image = "ghcr.io/peregrine-sec/peregrine-agent:latest".into();
    assert!(matches!(
        manage_cluster(&env.sdk, &c.inventory, &cfg).await,
        Err(ManageError::Config(_))
    ));
    let mut inv = c.inventory.clone();
    inv.name = "prod\n---".into();
    assert!(matches!(
        manage_cluster(&env.sdk, &inv, &config()).await,
        Err(ManageError::Inventory(_))
    ));
    assert!(env.endpoints(&c.inventory.vpc_id).await.is_empty());
}
