//! The SQS interface endpoint in a covered cluster's VPC, and its security group.
//!
//! One endpoint per VPC serves every covered cluster in it (a VPC can hold only one SQS
//! endpoint with private DNS), so each cluster marks its share with a
//! `peregrine:cluster/<name>` tag on the endpoint and the security group, and the last cluster
//! to leave removes both. Both carry `peregrine:managed-by=peregrine`, which is how they are
//! found again, and the only thing that makes Peregrine touch them.
//!
//! - Subnets: one of the cluster's per Availability Zone (an interface endpoint takes one per
//!   AZ); a later cluster in new AZs adds its own.
//! - Security group `peregrine-sqs-endpoint`: TCP 443 from each cluster's security group (or
//!   the VPC's CIDR blocks, [`EndpointIngress::VpcCidr`]), no egress (an endpoint only answers).
//! - Private DNS on, so the agents' ordinary SQS URL resolves to the endpoint; the endpoint
//!   policy is AWS's default (full access): with private DNS every SQS call in the VPC goes
//!   through it, and narrowing it would cut off the VPC's other SQS users without their
//!   owners knowing. `infra/vpc-endpoint.yaml` is the narrow, manual alternative.
//! - As GuardDuty does, `enableDnsSupport`/`enableDnsHostnames` off or a VPC shared from another
//!   account are issues ("VPC Endpoint Creation Failed"), and no endpoint is created.
//! - An SQS endpoint with private DNS that Peregrine did not create is used as it is.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, SecurityGroup, State, Tag, TagSpecification,
    UserIdGroupPair, VpcAttributeName, VpcEndpoint, VpcEndpointType,
};
use sha2::{Digest, Sha256};

use crate::config::{EndpointIngress, ManageConfig};
use crate::error::{ManageError, Step};
use crate::inventory::ClusterInventory;
use crate::report::{IssueKind, ManageReport, Outcome, Resource};
use crate::{CLUSTER_TAG_PREFIX, MANAGED_BY_KEY, MANAGED_BY_VALUE};

/// The endpoint security group's name (unique within its VPC).
pub const SECURITY_GROUP_NAME: &str = "peregrine-sqs-endpoint";
const HTTPS: i32 = 443;

fn err<E, R>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_ec2::error::SdkError<E, R>) -> ManageError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| ManageError::aws(Step::VpcEndpoint, operation, &e)
}

pub fn service_name(region: &str) -> String {
    format!("com.amazonaws.{region}.sqs")
}

pub fn cluster_tag_key(cluster: &str) -> String {
    format!("{CLUSTER_TAG_PREFIX}{cluster}")
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn has_tag(tags: &[Tag], key: &str, value: Option<&str>) -> bool {
    tags.iter()
        .any(|t| t.key() == Some(key) && value.is_none_or(|v| t.value() == Some(v)))
}

fn ours(tags: &[Tag]) -> bool {
    has_tag(tags, MANAGED_BY_KEY, Some(MANAGED_BY_VALUE))
}

fn cluster_tags(tags: &[Tag]) -> BTreeSet<String> {
    tags.iter()
        .filter_map(Tag::key)
        .filter(|k| k.starts_with(CLUSTER_TAG_PREFIX))
        .map(str::to_owned)
        .collect()
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// The tags of a resource created for `c`.
fn creation_tags(c: &ClusterInventory, cfg: &ManageConfig, name: &str) -> Vec<Tag> {
    let mut tags = vec![
        tag(MANAGED_BY_KEY, MANAGED_BY_VALUE),
        tag(&cluster_tag_key(&c.name), &c.arn),
        tag("Name", name),
    ];
    tags.extend(
        cfg.tags
            .iter()
            .filter(|(k, _)| k.as_str() != "Name")
            .map(|(k, v)| tag(k, v)),
    );
    tags
}

/// Not on its way out. EC2 models the states capitalised (`Deleted`) but answers in lower
/// case (`deleted`), which the SDK keeps as an unknown variant: compare the text.
fn live(e: &VpcEndpoint) -> bool {
    let state = e.state().map(State::as_str).unwrap_or_default();
    !["deleted", "deleting", "failed", "rejected", "expired"]
        .iter()
        .any(|s| state.eq_ignore_ascii_case(s))
}

/// The VPC's SQS endpoints that are not on their way out.
async fn sqs_endpoints(
    ec2: &Client,
    vpc: &str,
    region: &str,
) -> Result<Vec<VpcEndpoint>, ManageError> {
    let pages = ec2
        .describe_vpc_endpoints()
        .filters(filter("vpc-id", vpc))
        .filters(filter("service-name", &service_name(region)))
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(err("DescribeVpcEndpoints"))?;
    Ok(pages
        .into_iter()
        .flat_map(|p| p.vpc_endpoints.unwrap_or_default())
        .filter(|e| e.vpc_id() == Some(vpc) && live(e))
        .collect())
}

/// Peregrine's endpoint security group in the VPC, if there is one.
async fn our_security_group(ec2: &Client, vpc: &str) -> Result<Option<SecurityGroup>, ManageError> {
    let pages = ec2
        .describe_security_groups()
        .filters(filter("vpc-id", vpc))
        .filters(filter(&format!("tag:{MANAGED_BY_KEY}"), MANAGED_BY_VALUE))
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(err("DescribeSecurityGroups"))?;
    Ok(pages
        .into_iter()
        .flat_map(|p| p.security_groups.unwrap_or_default())
        .find(|g| {
            g.vpc_id() == Some(vpc) && g.group_name() == Some(SECURITY_GROUP_NAME) && ours(g.tags())
        }))
}

struct Vpc {
    owner: String,
    cidrs: Vec<String>,
}

async fn describe_vpc(ec2: &Client, vpc: &str) -> Result<Vpc, ManageError> {
    let out = ec2
        .describe_vpcs()
        .vpc_ids(vpc)
        .send()
        .await
        .map_err(err("DescribeVpcs"))?;
    let v = out.vpcs().first().ok_or_else(|| ManageError::Aws {
        step: Step::VpcEndpoint,
        operation: "DescribeVpcs",
        failure: peregrine_aws::Failure::Invalid,
        code: None,
        message: format!("VPC {vpc} not found"),
    })?;
    let mut cidrs: Vec<String> = v
        .cidr_block_association_set()
        .iter()
        .filter(|a| {
            a.cidr_block_state()
                .and_then(|s| s.state())
                .is_none_or(|s| s.as_str() == "associated")
        })
        .filter_map(|a| a.cidr_block().map(str::to_owned))
        .collect();
    if cidrs.is_empty() {
        cidrs.extend(v.cidr_block().map(str::to_owned));
    }
    Ok(Vpc {
        owner: v.owner_id().unwrap_or_default().to_owned(),
        cidrs,
    })
}

/// Which of `enableDnsSupport` and `enableDnsHostnames` are off.
async fn dns_attributes_off(ec2: &Client, vpc: &str) -> Result<Vec<&'static str>, ManageError> {
    let mut off = Vec::new();
    for (attr, name) in [
        (VpcAttributeName::EnableDnsSupport, "enableDnsSupport"),
        (VpcAttributeName::EnableDnsHostnames, "enableDnsHostnames"),
    ] {
        let out = ec2
            .describe_vpc_attribute()
            .vpc_id(vpc)
            .attribute(attr)
            .send()
            .await
            .map_err(err("DescribeVpcAttribute"))?;
        let on = out
            .enable_dns_support()
            .or(out.enable_dns_hostnames())
            .and_then(|v| v.value())
            .unwrap_or(false);
        if !on {
            off.push(name);
        }
    }
    Ok(off)
}

/// Subnet id → Availability Zone, for subnets of `vpc`.
async fn subnet_zones(
    ec2: &Client,
    vpc: &str,
    ids: &[String],
) -> Result<BTreeMap<String, String>, ManageError> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let unique: BTreeSet<&String> = ids.iter().collect();
    let out = ec2
        .describe_subnets()
        .set_subnet_ids(Some(unique.into_iter().cloned().collect()))
        .send()
        .await
        .map_err(err("DescribeSubnets"))?;
    Ok(out
        .subnets()
        .iter()
        .filter(|s| s.vpc_id() == Some(vpc))
        .filter_map(|s| Some((s.subnet_id()?.to_owned(), s.availability_zone()?.to_owned())))
        .collect())
}

/// One subnet per AZ (the smallest id, so the choice is stable), for AZs not in `covered`.
fn one_per_zone(
    zones: &BTreeMap<String, String>,
    candidates: &[String],
    covered: &BTreeSet<String>,
) -> Vec<String> {
    let mut pick: BTreeMap<&str, &str> = BTreeMap::new();
    let mut sorted: Vec<&String> = candidates.iter().collect();
    sorted.sort();
    for id in sorted {
        if let Some(az) = zones.get(id)
            && !covered.contains(az)
        {
            pick.entry(az.as_str()).or_insert(id.as_str());
        }
    }
    pick.values().map(|s| (*s).to_owned()).collect()
}

/// Where HTTPS may come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Group(String),
    Cidr(String),
}

fn sources(c: &ClusterInventory, cfg: &ManageConfig, vpc: &Vpc) -> Vec<Source> {
    match (&cfg.endpoint_ingress, &c.cluster_security_group_id) {
        (EndpointIngress::ClusterSecurityGroup, Some(sg)) => vec![Source::Group(sg.clone())],
        _ => vpc.cidrs.iter().cloned().map(Source::Cidr).collect(),
    }
}

fn admits(g: &SecurityGroup, s: &Source) -> bool {
    g.ip_permissions().iter().any(|p| {
        p.ip_protocol() == Some("tcp")
            && p.from_port() == Some(HTTPS)
            && p.to_port() == Some(HTTPS)
            && match s {
                Source::Group(id) => p
                    .user_id_group_pairs()
                    .iter()
                    .any(|u| u.group_id() == Some(id.as_str())),
                Source::Cidr(cidr) => p
                    .ip_ranges()
                    .iter()
                    .any(|r| r.cidr_ip() == Some(cidr.as_str())),
            }
    })
}

fn permission(s: &Source, description: &str) -> IpPermission {
    let p = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(HTTPS)
        .to_port(HTTPS);
    match s {
        Source::Group(id) => p.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(id)
                .description(description)
                .build(),
        ),
        Source::Cidr(cidr) => p.ip_ranges(
            IpRange::builder()
                .cidr_ip(cidr)
                .description(description)
                .build(),
        ),
    }
    .build()
}

fn source_label(s: &Source) -> &str {
    match s {
        Source::Group(id) | Source::Cidr(id) => id,
    }
}

/// Ensures the endpoint security group exists, admits the cluster and sends nothing out.
async fn ensure_security_group(
    ec2: &Client,
    c: &ClusterInventory,
    cfg: &ManageConfig,
    vpc: &Vpc,
    report: &mut ManageReport,
) -> Result<String, ManageError> {
    let group = match our_security_group(ec2, &c.vpc_id).await? {
        Some(g) => {
            let id = g.group_id().unwrap_or_default().to_owned();
            if has_tag(g.tags(), &cluster_tag_key(&c.name), None) {
                report.record(Resource::EndpointSecurityGroup, &id, Outcome::Unchanged);
            } else {
                tag_share(ec2, &id, g.tags(), c, report).await?;
            }
            g
        }
        None => {
            let id = ec2
                .create_security_group()
                .group_name(SECURITY_GROUP_NAME)
                .description("Peregrine: HTTPS from covered EKS clusters to the SQS VPC endpoint")
                .vpc_id(&c.vpc_id)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::SecurityGroup)
                        .set_tags(Some(creation_tags(c, cfg, SECURITY_GROUP_NAME)))
                        .build(),
                )
                .send()
                .await
                .map_err(err("CreateSecurityGroup"))?
                .group_id()
                .unwrap_or_default()
                .to_owned();
            report.record(Resource::EndpointSecurityGroup, &id, Outcome::Created);
            // Read back for its default egress rule.
            let described = ec2
                .describe_security_groups()
                .group_ids(&id)
                .send()
                .await
                .map_err(err("DescribeSecurityGroups"))?;
            described
                .security_groups()
                .first()
                .cloned()
                .unwrap_or_else(|| SecurityGroup::builder().group_id(&id).build())
        }
    };
    let id = group.group_id().unwrap_or_default().to_owned();

    if !group.ip_permissions_egress().is_empty() {
        ec2.revoke_security_group_egress()
            .group_id(&id)
            .set_ip_permissions(Some(group.ip_permissions_egress().to_vec()))
            .send()
            .await
            .map_err(err("RevokeSecurityGroupEgress"))?;
        report.record(
            Resource::SecurityGroupRule,
            &format!("{id} egress"),
            Outcome::Removed,
        );
    }
    let description = match cfg.endpoint_ingress {
        EndpointIngress::ClusterSecurityGroup if c.cluster_security_group_id.is_some() => {
            cluster_tag_key(&c.name)
        }
        _ => "peregrine: HTTPS from the VPC".to_owned(),
    };
    for s in sources(c, cfg, vpc) {
        let label = format!("{id} tcp/{HTTPS} from {}", source_label(&s));
        if admits(&group, &s) {
            report.record(Resource::SecurityGroupRule, &label, Outcome::Unchanged);
            continue;
        }
        ec2.authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(permission(&s, &description))
            .send()
            .await
            .map_err(err("AuthorizeSecurityGroupIngress"))?;
        report.record(Resource::SecurityGroupRule, &label, Outcome::Created);
    }
    Ok(id)
}

/// Ensures the cluster's VPC has an SQS endpoint agents can use.
pub async fn ensure(
    ec2: &Client,
    c: &ClusterInventory,
    cfg: &ManageConfig,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    if cfg.stack_region() != c.region {
        report.left_alone(
            Resource::VpcEndpoint,
            &c.vpc_id,
            &format!(
                "the events queue is in {}, the cluster in {}: an SQS endpoint serves only its \
                 own region's queues",
                cfg.stack_region(),
                c.region
            ),
        );
        return Ok(());
    }
    let vpc = describe_vpc(ec2, &c.vpc_id).await?;
    if vpc.owner != c.account_id {
        report.issue(
            IssueKind::VpcEndpointCreationFailed,
            &format!(
                "VPC endpoint creation not supported for shared VPC {} (owned by {}); create \
                 the endpoint in the owner account",
                c.vpc_id, vpc.owner
            ),
        );
        return Ok(());
    }
    let dns_off = dns_attributes_off(ec2, &c.vpc_id).await?;
    if !dns_off.is_empty() {
        report.issue(
            IssueKind::VpcEndpointCreationFailed,
            &format!(
                "private DNS needs enableDnsSupport and enableDnsHostnames on {}; off: {}",
                c.vpc_id,
                dns_off.join(", ")
            ),
        );
    }

    let endpoints = sqs_endpoints(ec2, &c.vpc_id, &c.region).await?;
    let mine = endpoints.iter().find(|e| ours(e.tags()));
    if mine.is_none()
        && let Some(foreign) = endpoints
            .iter()
            .find(|e| e.private_dns_enabled() == Some(true))
    {
        report.left_alone(
            Resource::VpcEndpoint,
            foreign.vpc_endpoint_id().unwrap_or_default(),
            "an SQS endpoint with private DNS that Peregrine did not create: agents use it as it is",
        );
        return Ok(());
    }
    if mine.is_none() && !dns_off.is_empty() {
        return Ok(()); // EC2 would refuse private DNS; the issue says why.
    }

    let sg = ensure_security_group(ec2, c, cfg, &vpc, report).await?;
    let mut subnet_ids = c.subnet_ids.clone();
    if let Some(e) = mine {
        subnet_ids.extend(e.subnet_ids().iter().cloned());
    }
    let zones = subnet_zones(ec2, &c.vpc_id, &subnet_ids).await?;

    match mine {
        Some(e) => {
            let id = e.vpc_endpoint_id().unwrap_or_default().to_owned();
            let covered: BTreeSet<String> = e
                .subnet_ids()
                .iter()
                .filter_map(|s| zones.get(s).cloned())
                .collect();
            let add_subnets = one_per_zone(&zones, &c.subnet_ids, &covered);
            let has_sg = e.groups().iter().any(|g| g.group_id() == Some(sg.as_str()));
            tag_share(ec2, &id, e.tags(), c, report).await?;
            if add_subnets.is_empty() && has_sg {
                report.record(Resource::VpcEndpoint, &id, Outcome::Unchanged);
            } else {
                let mut m = ec2.modify_vpc_endpoint().vpc_endpoint_id(&id);
                if !add_subnets.is_empty() {
                    m = m.set_add_subnet_ids(Some(add_subnets));
                }
                if !has_sg {
                    m = m.add_security_group_ids(&sg);
                }
                m.send().await.map_err(err("ModifyVpcEndpoint"))?;
                report.record(Resource::VpcEndpoint, &id, Outcome::Updated);
            }
        }
        None => {
            let subnets = one_per_zone(&zones, &c.subnet_ids, &BTreeSet::new());
            if subnets.is_empty() {
                report.issue(
                    IssueKind::VpcEndpointCreationFailed,
                    &format!("none of the cluster's subnets is in {}", c.vpc_id),
                );
                return Ok(());
            }
            // Retrying the same creation (a timeout, a concurrent sweep) returns the same
            // endpoint instead of a second one.
            let mut h = Sha256::new();
            h.update(format!(
                "{}|{}|{}|{}",
                c.account_id,
                c.vpc_id,
                sg,
                subnets.join(",")
            ));
            let token = hex::encode(&h.finalize()[..16]);
            let name = format!("peregrine-sqs-{}", c.vpc_id);
            let out = ec2
                .create_vpc_endpoint()
                .vpc_endpoint_type(VpcEndpointType::Interface)
                .vpc_id(&c.vpc_id)
                .service_name(service_name(&c.region))
                .set_subnet_ids(Some(subnets))
                .security_group_ids(&sg)
                .private_dns_enabled(true)
                .client_token(token)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::VpcEndpoint)
                        .set_tags(Some(creation_tags(c, cfg, &name)))
                        .build(),
                )
                .send()
                .await
                .map_err(err("CreateVpcEndpoint"))?;
            let id = out
                .vpc_endpoint()
                .and_then(|e| e.vpc_endpoint_id())
                .unwrap_or_default();
            report.record(Resource::VpcEndpoint, id, Outcome::Created);
        }
    }
    Ok(())
}

/// Removes the cluster's share of the VPC endpoint; the endpoint and its security group go
/// when no covered cluster is left in the VPC.
/// Adds the cluster's share tag (`peregrine:cluster/<name>` = its ARN) to resource `id`,
/// unless `tags` has it.
async fn tag_share(
    ec2: &Client,
    id: &str,
    tags: &[Tag],
    c: &ClusterInventory,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    let key = cluster_tag_key(&c.name);
    if !has_tag(tags, &key, None) {
        ec2.create_tags()
            .resources(id)
            .tags(tag(&key, &c.arn))
            .send()
            .await
            .map_err(err("CreateTags"))?;
        report.record(
            Resource::ClusterTag,
            &format!("{id} {key}"),
            Outcome::Created,
        );
    }
    Ok(())
}

/// Removes the cluster's share tag `key` from resource `id`, if `tags` has it.
async fn untag(
    ec2: &Client,
    id: &str,
    tags: &[Tag],
    key: &str,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    if has_tag(tags, key, None) {
        ec2.delete_tags()
            .resources(id)
            .tags(Tag::builder().key(key).build())
            .send()
            .await
            .map_err(err("DeleteTags"))?;
        report.record(
            Resource::ClusterTag,
            &format!("{id} {key}"),
            Outcome::Removed,
        );
    }
    Ok(())
}

pub async fn remove(
    ec2: &Client,
    c: &ClusterInventory,
    report: &mut ManageReport,
) -> Result<(), ManageError> {
    let key = cluster_tag_key(&c.name);
    let endpoints = sqs_endpoints(ec2, &c.vpc_id, &c.region).await?;
    let mut endpoint_left = false;
    for e in endpoints.iter().filter(|e| ours(e.tags())) {
        let id = e.vpc_endpoint_id().unwrap_or_default().to_owned();
        untag(ec2, &id, e.tags(), &key, report).await?;
        let others: Vec<String> = cluster_tags(e.tags())
            .into_iter()
            .filter(|k| *k != key)
            .collect();
        if others.is_empty() {
            let out = ec2
                .delete_vpc_endpoints()
                .vpc_endpoint_ids(&id)
                .send()
                .await
                .map_err(err("DeleteVpcEndpoints"))?;
            if let Some(failed) = out.unsuccessful().first() {
                report.issue(
                    IssueKind::VpcEndpointDeletionFailed,
                    &format!(
                        "{id}: {}",
                        failed
                            .error()
                            .and_then(|e| e.message())
                            .unwrap_or("not deleted")
                    ),
                );
                endpoint_left = true;
            } else {
                report.record(Resource::VpcEndpoint, &id, Outcome::Removed);
            }
        } else {
            endpoint_left = true;
            report.left_alone(
                Resource::VpcEndpoint,
                &id,
                &format!("still serves {}", others.join(", ")),
            );
        }
    }

    let Some(g) = our_security_group(ec2, &c.vpc_id).await? else {
        return Ok(());
    };
    let id = g.group_id().unwrap_or_default().to_owned();
    if let Some(sg) = &c.cluster_security_group_id {
        // The rule as it stands (with its description), which is what EC2 matches on.
        let pairs: Vec<UserIdGroupPair> = g
            .ip_permissions()
            .iter()
            .filter(|p| {
                p.ip_protocol() == Some("tcp")
                    && p.from_port() == Some(HTTPS)
                    && p.to_port() == Some(HTTPS)
            })
            .flat_map(|p| p.user_id_group_pairs())
            .filter(|u| u.group_id() == Some(sg.as_str()))
            .cloned()
            .collect();
        if !pairs.is_empty() {
            ec2.revoke_security_group_ingress()
                .group_id(&id)
                .ip_permissions(
                    IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(HTTPS)
                        .to_port(HTTPS)
                        .set_user_id_group_pairs(Some(pairs))
                        .build(),
                )
                .send()
                .await
                .map_err(err("RevokeSecurityGroupIngress"))?;
            report.record(
                Resource::SecurityGroupRule,
                &format!("{id} tcp/{HTTPS} from {sg}"),
                Outcome::Removed,
            );
        }
    }
    untag(ec2, &id, g.tags(), &key, report).await?;
    let others = cluster_tags(g.tags()).into_iter().any(|k| k != key);
    if others || endpoint_left {
        report.left_alone(
            Resource::EndpointSecurityGroup,
            &id,
            "still used by the endpoint of other covered clusters",
        );
        return Ok(());
    }
    match ec2.delete_security_group().group_id(&id).send().await {
        Ok(_) => report.record(Resource::EndpointSecurityGroup, &id, Outcome::Removed),
        Err(e)
            if e.as_service_error().and_then(|s| s.meta().code())
                == Some("DependencyViolation") =>
        {
            // The endpoint's network interfaces go a little after the endpoint.
            report.issue(
                IssueKind::VpcEndpointDeletionFailed,
                &format!("{id} is still in use while the endpoint is deleted; retried next sweep"),
            );
        }
        Err(e) => return Err(err("DeleteSecurityGroup")(e)),
    }
    Ok(())
}

/// The clusters of `region` that Peregrine's SQS endpoints still carry a share for
/// (`peregrine:cluster/<name>` tags) but that are not in `existing`: deleted clusters, whose
/// share nobody would otherwise remove. Each comes back as the inventory [`remove`] needs (its
/// name and ARN from the tag, the VPC and subnets from the endpoint); a tag whose value is not
/// that cluster's ARN in this account and region is reported, never acted on.
pub async fn departed(
    ec2: &Client,
    account_id: &str,
    region: &str,
    existing: &BTreeSet<String>,
    report: &mut ManageReport,
) -> Result<Vec<ClusterInventory>, ManageError> {
    let pages = ec2
        .describe_vpc_endpoints()
        .filters(filter("service-name", &service_name(region)))
        .filters(filter(&format!("tag:{MANAGED_BY_KEY}"), MANAGED_BY_VALUE))
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(err("DescribeVpcEndpoints"))?;
    let mut gone = Vec::new();
    for e in pages
        .into_iter()
        .flat_map(|p| p.vpc_endpoints.unwrap_or_default())
        .filter(|e| live(e) && ours(e.tags()))
    {
        for t in e.tags() {
            let (Some(key), Some(arn)) = (t.key(), t.value()) else {
                continue;
            };
            let Some(name) = key.strip_prefix(CLUSTER_TAG_PREFIX) else {
                continue;
            };
            if existing.contains(name) {
                continue;
            }
            let inv = ClusterInventory {
                name: name.to_owned(),
                arn: arn.to_owned(),
                account_id: account_id.to_owned(),
                region: region.to_owned(),
                vpc_id: e.vpc_id().unwrap_or_default().to_owned(),
                subnet_ids: e.subnet_ids().to_vec(),
                ..ClusterInventory::default()
            };
            match inv.validate() {
                Ok(()) => gone.push(inv),
                Err(why) => report.left_alone(
                    Resource::ClusterTag,
                    &format!("{} {key}", e.vpc_endpoint_id().unwrap_or_default()),
                    &format!("names no cluster of this account and region: {why}"),
                ),
            }
        }
    }
    Ok(gone)
}
