//! The bearer token EKS accepts for an IAM principal, made exactly as aws-iam-authenticator
//! (and `aws eks get-token`) makes it: a presigned STS `GetCallerIdentity` URL, signed with the
//! caller's credentials, with the cluster's name in the signed header `x-k8s-aws-id` and a 60 s
//! expiry, base64url-encoded without padding behind `k8s-aws-v1.`. The API server's
//! authenticator calls STS with it; whoever STS says signed it is the Kubernetes user, mapped
//! through the cluster's access entries.
//!
//! See https://github.com/kubernetes-sigs/aws-iam-authenticator/blob/master/pkg/token/token.go
//! (`GetWithSTS`: `presignedURLExpiration = 15 * time.Minute` is how long the server accepts a
//! token after its `X-Amz-Date`; the URL itself says `X-Amz-Expires=60`).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ManageError;

pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The signed header that binds a token to one cluster.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
pub const EXPIRES: Duration = Duration::from_secs(60);

/// The STS host of a region in a partition.
fn sts_host(partition: &str, region: &str) -> Result<String, ManageError> {
    let suffix = match partition {
        "aws" | "aws-us-gov" => "amazonaws.com",
        "aws-cn" => "amazonaws.com.cn",
        other => {
            return Err(ManageError::Token(format!(
                "no STS endpoint known for partition {other}"
            )));
        }
    };
    Ok(format!("sts.{region}.{suffix}"))
}

/// A token for `cluster` in `region`, signed at `now` with `credentials`.
pub fn token(
    credentials: Credentials,
    partition: &str,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, ManageError> {
    let url = format!(
        "https://{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_host(partition, region)?
    );
    let identity: Identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(EXPIRES);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| ManageError::Token(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        [(CLUSTER_ID_HEADER, cluster)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| ManageError::Token(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| ManageError::Token(e.to_string()))?
        .into_parts();
    let mut request = http::Request::builder()
        .uri(url.as_str())
        .body(())
        .map_err(|e| ManageError::Token(e.to_string()))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(request.uri().to_string())
    ))
}

/// A token signed now with the member-account credentials of `member`.
pub async fn token_for(
    member: &aws_config::SdkConfig,
    partition: &str,
    region: &str,
    cluster: &str,
) -> Result<String, ManageError> {
    let provider = member.credentials_provider().ok_or_else(|| {
        ManageError::Credentials("the SDK configuration has no credentials".into())
    })?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| ManageError::Credentials(e.to_string()))?;
    token(credentials, partition, region, cluster, SystemTime::now())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_token_is_a_presigned_get_caller_identity_bound_to_the_cluster() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), None, "t");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let t = token(creds.clone(), "aws", "eu-west-1", "prod", at).unwrap();
        let url =
            String::from_utf8(URL_SAFE_NO_PAD.decode(&t[TOKEN_PREFIX.len()..]).unwrap()).unwrap();
        assert!(url.starts_with(
            "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
        ));
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20251124%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Date=20251124T160000Z",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Security-Token=session",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
        // Deterministic for the same inputs, and bound to the cluster's name.
        assert_eq!(
            t,
            token(creds.clone(), "aws", "eu-west-1", "prod", at).unwrap()
        );
        assert_ne!(t, token(creds, "aws", "eu-west-1", "staging", at).unwrap());
    }

    #[test]
    fn china_uses_its_own_sts() {
        let creds = Credentials::new("AKID", "secret", None, None, "t");
        let t = token(creds, "aws-cn", "cn-north-1", "c", SystemTime::now()).unwrap();
        let url =
            String::from_utf8(URL_SAFE_NO_PAD.decode(&t[TOKEN_PREFIX.len()..]).unwrap()).unwrap();
        assert!(url.starts_with("https://sts.cn-north-1.amazonaws.com.cn/"));
    }
}
