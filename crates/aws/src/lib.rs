//! AWS plumbing shared by the agent, the functions and the local runner: one SDK configuration
//! built from the standard sources, one way of telling retryable failures from permanent
//! ones, and one backoff ([`backoff`]) for retrying them.
//!
//! Endpoints, region and credentials come only from standard AWS configuration: environment
//! (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`), shared config files, and the
//! default credential chain (IRSA and EKS Pod Identity on nodes, the execution role in Lambda).
//! A VPC endpoint with private DNS needs no configuration at all; a local stand-in is just
//! `AWS_ENDPOINT_URL`.

pub mod backoff;

use aws_smithy_http_client::{
    Builder,
    tls::{self, rustls_provider::CryptoMode},
};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The SDK configuration from the standard sources, with a rustls (ring) HTTPS client.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let http = Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}

/// What a failed AWS call means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Throttled or over a rate limit: back off and retry.
    Throttled,
    /// The endpoint did not answer (DNS, connect, timeout, 5xx): back off and retry.
    Unavailable,
    /// Credentials or permissions: retry slowly (a role may be fixed), and say so loudly.
    Denied,
    /// The request itself is wrong (validation, missing resource): retrying cannot help.
    Invalid,
}

impl Failure {
    pub fn is_retryable(self) -> bool {
        !matches!(self, Failure::Invalid)
    }
}

/// Classifies an SDK error by its kind and error code.
pub fn classify<E: ProvideErrorMetadata, R: std::fmt::Debug>(err: &SdkError<E, R>) -> Failure {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Unavailable
        }
        SdkError::ConstructionFailure(_) => Failure::Invalid,
        SdkError::ServiceError(s) => classify_code(s.err().code()),
        _ => Failure::Unavailable,
    }
}

/// Classifies an AWS error code.
pub fn classify_code(code: Option<&str>) -> Failure {
    match code {
        Some(c)
            if c.contains("Throttl")
                || c.contains("TooManyRequests")
                || c == "RequestLimitExceeded"
                || c == "ProvisionedThroughputExceededException"
                || c == "SlowDown"
                || c.contains("OverLimit") =>
        {
            Failure::Throttled
        }
        Some(c)
            if c.contains("AccessDenied")
                || c.contains("Unauthorized")
                || c.contains("InvalidClientTokenId")
                || c.contains("ExpiredToken")
                || c.contains("SignatureDoesNotMatch")
                || c == "KMS.AccessDeniedException"
                || c.contains("UnrecognizedClient") =>
        {
            Failure::Denied
        }
        Some(c)
            if c.contains("InternalError")
                || c.contains("InternalFailure")
                || c.contains("ServiceUnavailable")
                || c.contains("InternalServerError") =>
        {
            Failure::Unavailable
        }
        // An error page instead of an AWS error (e.g. a proxy or a stand-in lacking the call).
        None => Failure::Unavailable,
        Some(_) => Failure::Invalid,
    }
}

/// The partition of a region (`aws`, `aws-cn`, `aws-us-gov`).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_classify() {
        assert_eq!(
            classify_code(Some("ThrottlingException")),
            Failure::Throttled
        );
        assert_eq!(
            classify_code(Some("AWS.SimpleQueueService.RequestThrottled")),
            Failure::Throttled
        );
        assert_eq!(
            classify_code(Some("ProvisionedThroughputExceededException")),
            Failure::Throttled
        );
        assert_eq!(classify_code(Some("AccessDenied")), Failure::Denied);
        assert_eq!(
            classify_code(Some("AccessDeniedException")),
            Failure::Denied
        );
        assert_eq!(
            classify_code(Some("ExpiredTokenException")),
            Failure::Denied
        );
        assert_eq!(classify_code(Some("InternalFailure")), Failure::Unavailable);
        assert_eq!(classify_code(None), Failure::Unavailable);
        assert_eq!(
            classify_code(Some("AWS.SimpleQueueService.NonExistentQueue")),
            Failure::Invalid
        );
        assert!(!Failure::Invalid.is_retryable());
        assert!(Failure::Denied.is_retryable());
    }
}
