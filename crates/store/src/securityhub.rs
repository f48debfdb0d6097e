//! The Security Hub implementation of [`FindingHub`]: BatchImportFindings with findings mapped
//! by `peregrine_finding::asff` (which holds ASFF's limits); this module only converts them to
//! the SDK's types and reads the per-finding results.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_securityhub::Client;
use aws_sdk_securityhub::error::ProvideErrorMetadata;
use aws_sdk_securityhub::types::{
    AwsEksClusterDetails, AwsSecurityFinding, ContainerDetails, FindingProviderFields,
    FindingProviderSeverity, Partition, ProcessDetails, RecordState, Resource, ResourceDetails,
    Severity, SeverityLabel, Workflow, WorkflowStatus,
};
use peregrine_aws::{Failure, classify};
use peregrine_finding::asff::{AsffFinding, AsffResource};

use crate::traits::{FindingHub, HubError, ImportResult};

/// Imports into the calling account's Security Hub, in the client's region.
#[derive(Clone, Debug)]
pub struct SecurityHubImporter {
    client: Client,
}

impl SecurityHubImporter {
    pub fn new(client: Client) -> Self {
        SecurityHubImporter { client }
    }
}

fn map(m: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn resource(r: &AsffResource) -> Resource {
    let details = r.details.as_ref().map(|d| {
        ResourceDetails::builder()
            .set_aws_eks_cluster(d.aws_eks_cluster.as_ref().map(|c| {
                AwsEksClusterDetails::builder()
                    .set_arn(c.arn.clone())
                    .set_name(c.name.clone())
                    .build()
            }))
            .set_container(d.container.as_ref().map(|c| {
                ContainerDetails::builder()
                    .set_container_runtime(c.container_runtime.clone())
                    .set_name(c.name.clone())
                    .set_image_id(c.image_id.clone())
                    .set_image_name(c.image_name.clone())
                    .build()
            }))
            .set_other(map(&d.other))
            .build()
    });
    Resource::builder()
        .r#type(&r.resource_type)
        .id(&r.id)
        .set_partition(r.partition.as_deref().map(Partition::from))
        .set_region(r.region.clone())
        .set_details(details)
        .build()
}

/// The SDK's finding for an ASFF finding, member for member.
pub fn sdk_finding(a: &AsffFinding) -> AwsSecurityFinding {
    let label = SeverityLabel::from(a.severity.label.as_str());
    AwsSecurityFinding::builder()
        .schema_version(&a.schema_version)
        .id(&a.id)
        .product_arn(&a.product_arn)
        .product_name(&a.product_name)
        .company_name(&a.company_name)
        .generator_id(&a.generator_id)
        .aws_account_id(&a.aws_account_id)
        .set_types(Some(a.types.clone()))
        .set_first_observed_at(a.first_observed_at.clone())
        .set_last_observed_at(a.last_observed_at.clone())
        .created_at(&a.created_at)
        .updated_at(&a.updated_at)
        .severity(
            Severity::builder()
                .label(label.clone())
                .normalized(a.severity.normalized)
                .original(&a.severity.original)
                .build(),
        )
        .title(&a.title)
        .description(&a.description)
        .set_product_fields(map(&a.product_fields))
        .set_resources(Some(a.resources.iter().map(resource).collect()))
        .set_process(a.process.as_ref().map(|p| {
            ProcessDetails::builder()
                .set_name(p.name.clone())
                .set_path(p.path.clone())
                .set_pid(p.pid)
                .set_parent_pid(p.parent_pid)
                .set_launched_at(p.launched_at.clone())
                .build()
        }))
        .record_state(RecordState::from(a.record_state.as_str()))
        .workflow(
            Workflow::builder()
                .status(WorkflowStatus::from(a.workflow.status.as_str()))
                .build(),
        )
        .finding_provider_fields(
            FindingProviderFields::builder()
                .severity(
                    FindingProviderSeverity::builder()
                        .label(label)
                        .original(&a.finding_provider_fields.severity.original)
                        .build(),
                )
                .set_types(Some(a.finding_provider_fields.types.clone()))
                .build(),
        )
        .build()
}

/// A `SECURITY_HUB_PRODUCT_ARN` that is not a Security Hub product ARN.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not a Security Hub product ARN; expected arn:<partition>:securityhub:<region>:<account>:product/<account>/default (template.yaml sets it from SecurityHubExport)"
)]
pub struct BadProductArn(pub String);

/// The Security Hub export's setting: the product ARN findings are imported under, or `None`
/// (unset or empty) when the export is off.
pub fn product_arn_setting(value: Option<&str>) -> Result<Option<String>, BadProductArn> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "securityhub", region, _, resource]
            if !partition.is_empty() && !region.is_empty() && resource.starts_with("product/") =>
        {
            Ok(Some(v.to_owned()))
        }
        _ => Err(BadProductArn(v.to_owned())),
    }
}

/// The account a product ARN belongs to (`arn:<partition>:securityhub:<region>:<account>:...`):
/// under its default product, Security Hub takes only that account's findings.
pub fn product_account(product_arn: &str) -> Option<&str> {
    product_arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// What a Security Hub error code means for the caller: Security Hub not enabled in the
/// account and region (`InvalidAccessException`) is a refusal like AccessDenied; its rate
/// limit (`LimitExceededException`) is throttling; `InternalException` is an outage.
pub fn hub_failure(code: Option<&str>) -> Option<Failure> {
    match code? {
        "InvalidAccessException" => Some(Failure::Denied),
        "LimitExceededException" => Some(Failure::Throttled),
        "InternalException" => Some(Failure::Unavailable),
        _ => None,
    }
}

impl FindingHub for SecurityHubImporter {
    async fn batch_import(&self, findings: &[AsffFinding]) -> Result<Vec<ImportResult>, HubError> {
        let resp = self
            .client
            .batch_import_findings()
            .set_findings(Some(findings.iter().map(sdk_finding).collect()))
            .send()
            .await
            .map_err(|e| {
                let code = e.code().map(str::to_owned);
                HubError {
                    failure: hub_failure(code.as_deref()).unwrap_or_else(|| classify(&e)),
                    code: code.unwrap_or_else(|| "None".to_owned()),
                    message: crate::traits::error_text(&e),
                }
            })?;
        // Every finding not listed as failed was taken (the response lists only failures).
        let failed: HashMap<&str, (&str, &str)> = resp
            .failed_findings()
            .iter()
            .filter_map(|f| {
                Some((
                    f.id()?,
                    (
                        f.error_code().unwrap_or("Unknown"),
                        f.error_message().unwrap_or_default(),
                    ),
                ))
            })
            .collect();
        let unaccounted =
            resp.failed_count().unwrap_or(0) > i32::try_from(failed.len()).unwrap_or(i32::MAX);
        Ok(findings
            .iter()
            .map(|f| match failed.get(f.id.as_str()) {
                Some((code, message)) => ImportResult::Failed {
                    code: (*code).to_owned(),
                    message: (*message).to_owned(),
                },
                // Failures the response does not name: none of the findings is known to
                // have been taken, so none is recorded as imported.
                None if unaccounted => ImportResult::Failed {
                    code: "Unaccounted".to_owned(),
                    message: format!(
                        "FailedCount {} but {} failures named",
                        resp.failed_count().unwrap_or(0),
                        failed.len()
                    ),
                },
                None => ImportResult::Imported,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_product_arn_is_the_export_switch() {
        assert_eq!(product_arn_setting(None).unwrap(), None);
        assert_eq!(product_arn_setting(Some(" ")).unwrap(), None);
        let arn = "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default";
        assert_eq!(
            product_arn_setting(Some(arn)).unwrap().as_deref(),
            Some(arn)
        );
        assert_eq!(product_account(arn), Some("111122223333"));
        for bad in [
            "Enabled",
            "arn:aws:securityhub:eu-west-1:111122223333:hub/default",
            "arn:aws:sqs:eu-west-1:111122223333:product/x",
        ] {
            assert!(product_arn_setting(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn security_hub_codes_classify() {
        assert_eq!(
            hub_failure(Some("InvalidAccessException")),
            Some(Failure::Denied)
        );
        assert_eq!(
            hub_failure(Some("LimitExceededException")),
            Some(Failure::Throttled)
        );
        assert_eq!(hub_failure(Some("InvalidInputException")), None);
    }
}
