//! What the sweeper learned about a cluster from DescribeCluster: everything management needs,
//! so that it makes no DescribeCluster call of its own.

use peregrine_event::ClusterArn;

use crate::error::ManageError;
use crate::validate;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterInventory {
    pub name: String,
    /// `arn:<partition>:eks:<region>:<account>:cluster/<name>`.
    pub arn: String,
    pub account_id: String,
    pub region: String,
    /// `resourcesVpcConfig.vpcId`.
    pub vpc_id: String,
    /// `resourcesVpcConfig.subnetIds`: the endpoint gets one of them per Availability Zone.
    pub subnet_ids: Vec<String>,
    /// `resourcesVpcConfig.clusterSecurityGroupId`: the endpoint's security group takes HTTPS
    /// from it. Without one the VPC's CIDR blocks are used.
    pub cluster_security_group_id: Option<String>,
    /// `endpoint`: the API server's `https://` URL.
    pub endpoint: Option<String>,
    /// `certificateAuthority.data`: the base64 PEM of the API server's CA.
    pub certificate_authority: Option<String>,
    pub platform_version: Option<String>,
    /// `accessConfig.authenticationMode`: `API`, `API_AND_CONFIG_MAP` or `CONFIG_MAP`.
    pub authentication_mode: Option<String>,
    /// `identity.oidc.issuer` (IRSA needs it).
    pub oidc_issuer: Option<String>,
    /// `computeConfig.enabled`: EKS Auto Mode, which has Pod Identity built in.
    pub auto_mode: bool,
}

impl TryFrom<&peregrine_org::inventory::ClusterInventory> for ClusterInventory {
    type Error = ManageError;

    /// From the sweeper's inventory (`functions/coverage`'s discovery, which read
    /// DescribeCluster), validated.
    fn try_from(c: &peregrine_org::inventory::ClusterInventory) -> Result<Self, ManageError> {
        let inv = ClusterInventory {
            name: c.name.clone(),
            arn: c.arn.clone(),
            account_id: c.account_id.clone(),
            region: c.region.clone(),
            vpc_id: c.vpc_id.clone().unwrap_or_default(),
            subnet_ids: c.subnet_ids.clone(),
            cluster_security_group_id: c
                .cluster_security_group_id
                .clone()
                .filter(|s| !s.is_empty()),
            endpoint: c.endpoint.clone(),
            certificate_authority: c.certificate_authority.clone(),
            platform_version: c.platform_version.clone(),
            authentication_mode: c.authentication_mode.clone(),
            oidc_issuer: c.oidc_issuer.clone(),
            auto_mode: c.auto_mode,
        };
        inv.validate()?;
        Ok(inv)
    }
}

impl ClusterInventory {
    /// The ARN's partition (`aws`, `aws-cn`, `aws-us-gov`).
    pub fn partition(&self) -> &str {
        match parse_arn(&self.arn) {
            Ok(a) if a.partition() == "aws-cn" => "aws-cn",
            Ok(a) if a.partition() == "aws-us-gov" => "aws-us-gov",
            _ => "aws",
        }
    }

    /// Checks every field that ends up in a tag, a path or a manifest.
    pub fn validate(&self) -> Result<(), ManageError> {
        let bad = |what: &str, v: &str| {
            Err(ManageError::Inventory(format!(
                "{what} {:?} is not valid",
                validate::bounded(v, 128)
            )))
        };
        if !validate::cluster_name(&self.name) {
            return bad("cluster name", &self.name);
        }
        let arn = parse_arn(&self.arn)?;
        if arn.region() != self.region || arn.account_id() != self.account_id {
            return bad("cluster ARN (region or account differ)", &self.arn);
        }
        if arn.cluster_name() != self.name {
            return bad("cluster ARN (name differs)", &self.arn);
        }
        if !validate::ec2_id(&self.vpc_id, "vpc") {
            return bad("VPC id", &self.vpc_id);
        }
        if self.subnet_ids.is_empty() {
            return bad("subnet list", "");
        }
        if let Some(s) = self
            .subnet_ids
            .iter()
            .find(|s| !validate::ec2_id(s, "subnet"))
        {
            return bad("subnet id", s);
        }
        if let Some(sg) = &self.cluster_security_group_id
            && !validate::ec2_id(sg, "sg")
        {
            return bad("cluster security group id", sg);
        }
        Ok(())
    }
}

fn parse_arn(arn: &str) -> Result<ClusterArn, ManageError> {
    ClusterArn::parse(arn).map_err(|e| ManageError::Inventory(e.to_string()))
}
