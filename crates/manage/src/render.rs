//! `infra/daemonset.yaml`, rendered for one cluster: the file the operator docs tell people to
//! `envsubst`, compiled in, with only its six `${...}` placeholders replaced by checked values,
//! then parsed into the objects to apply.
//!
//! Rendering is substitution, not templating: a placeholder that is not one of the six is an
//! error, `$(VAR)` (Kubernetes' own expansion) is left alone, and each value is checked against
//! a character set that cannot break out of a YAML scalar (no quotes, spaces, `$`, `#`, `:` +
//! space, newlines). Two changes are structural, made on the parsed objects: the agent
//! container's image (the file's is an all-zero-digest placeholder), and, with Pod Identity,
//! dropping the service account's IRSA annotation.

use peregrine_event::ClusterArn;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ManageError;
use crate::validate;
use crate::{AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT};

/// The manifest, as shipped.
pub const MANIFEST: &str = include_str!("../../../infra/daemonset.yaml");

/// The placeholders docs/deploy.md lists, and the only ones replaced.
pub const PLACEHOLDERS: [&str; 6] = [
    "AGENT_ROLE_ARN",
    "AWS_REGION",
    "CLUSTER_NAME",
    "CLUSTER_ARN",
    "QUEUE_URL",
    "MONITORING_NAMESPACE",
];

const IRSA_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
const AGENT_CONTAINER: &str = "agent";

/// The placeholders' values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Values {
    pub agent_role_arn: String,
    /// The Peregrine stack's region (where the queue is).
    pub aws_region: String,
    pub cluster_name: String,
    /// `arn:<partition>:eks:<region>:<account>:cluster/<cluster_name>`.
    pub cluster_arn: String,
    pub queue_url: String,
    pub monitoring_namespace: String,
}

impl Values {
    fn check(&self) -> Result<(), ManageError> {
        let checks = [
            ("AGENT_ROLE_ARN", validate::role_arn(&self.agent_role_arn)),
            ("AWS_REGION", validate::region(&self.aws_region)),
            ("CLUSTER_NAME", validate::cluster_name(&self.cluster_name)),
            (
                "CLUSTER_ARN",
                ClusterArn::parse(&self.cluster_arn)
                    .is_ok_and(|a| a.cluster_name() == self.cluster_name),
            ),
            ("QUEUE_URL", validate::queue_url(&self.queue_url)),
            (
                "MONITORING_NAMESPACE",
                validate::dns_label(&self.monitoring_namespace),
            ),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((name, _)) => Err(ManageError::Render(format!(
                "the value for ${{{name}}} is not valid"
            ))),
            None => Ok(()),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        Some(match name {
            "AGENT_ROLE_ARN" => &self.agent_role_arn,
            "AWS_REGION" => &self.aws_region,
            "CLUSTER_NAME" => &self.cluster_name,
            "CLUSTER_ARN" => &self.cluster_arn,
            "QUEUE_URL" => &self.queue_url,
            "MONITORING_NAMESPACE" => &self.monitoring_namespace,
            _ => return None,
        })
    }
}

/// Whether an object lives in a namespace or in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Cluster,
    Namespaced,
}

/// The kinds the manifest may hold, with their REST names. A kind added to the manifest must
/// be added here (the tests render the shipped manifest).
const KINDS: [(&str, &str, &str, Scope); 6] = [
    ("v1", "Namespace", "namespaces", Scope::Cluster),
    ("v1", "ServiceAccount", "serviceaccounts", Scope::Namespaced),
    ("v1", "ConfigMap", "configmaps", Scope::Namespaced),
    (
        "scheduling.k8s.io/v1",
        "PriorityClass",
        "priorityclasses",
        Scope::Cluster,
    ),
    ("apps/v1", "DaemonSet", "daemonsets", Scope::Namespaced),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        Scope::Namespaced,
    ),
];

/// One object of the manifest, ready to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub scope: Scope,
    plural: &'static str,
    pub body: Value,
}

impl Object {
    /// The object's REST path, e.g. `/apis/apps/v1/namespaces/peregrine/daemonsets/peregrine-agent`.
    pub fn path(&self) -> String {
        let base = if self.api_version == "v1" {
            "/api/v1".to_owned()
        } else {
            format!("/apis/{}", self.api_version)
        };
        match self.scope {
            Scope::Cluster => format!("{base}/{}/{}", self.plural, self.name),
            Scope::Namespaced => format!(
                "{base}/namespaces/{AGENT_NAMESPACE}/{}/{}",
                self.plural, self.name
            ),
        }
    }

    /// `Kind namespace/name` or `Kind name`, for reports.
    pub fn label(&self) -> String {
        match self.scope {
            Scope::Cluster => format!("{} {}", self.kind, self.name),
            Scope::Namespaced => format!("{} {AGENT_NAMESPACE}/{}", self.kind, self.name),
        }
    }
}

/// Replaces the six placeholders in `text`; any other `${...}` is an error. Whole-line
/// comments are left as they are (the YAML parser drops them; the manifest's own comments
/// mention `${...}`), and the parsed objects are checked for survivors afterwards.
pub fn substitute(text: &str, values: &Values) -> Result<String, ManageError> {
    values.check()?;
    let mut out = String::with_capacity(text.len() + 512);
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            substitute_line(line, values, &mut out)?;
        }
    }
    Ok(out)
}

fn substitute_line(line: &str, values: &Values, out: &mut String) -> Result<(), ManageError> {
    let mut rest = line;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ManageError::Render("an unterminated ${ in the manifest".into()))?;
        let name = &after[..end];
        let value = values.get(name).ok_or_else(|| {
            ManageError::Render(format!(
                "unknown placeholder ${{{}}} in the manifest",
                validate::bounded(name, 64)
            ))
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// Renders `manifest` (normally [`MANIFEST`]) into its objects, in file order.
pub fn render_manifest(
    manifest: &str,
    values: &Values,
    image: &str,
    pod_identity: bool,
) -> Result<Vec<Object>, ManageError> {
    if !validate::image(image) {
        return Err(ManageError::Render(
            "the agent image must be pinned by digest".into(),
        ));
    }
    let text = substitute(manifest, values)?;
    let mut objects = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let body = Value::deserialize(doc)
            .map_err(|e| ManageError::Render(format!("the manifest does not parse: {e}")))?;
        if body.is_null() {
            continue; // the leading comment block
        }
        objects.push(object(body)?);
    }
    for o in &mut objects {
        match o.kind.as_str() {
            "DaemonSet" => set_image(&mut o.body, image)?,
            "ServiceAccount" if pod_identity && o.name == AGENT_SERVICE_ACCOUNT => {
                if let Some(a) = o
                    .body
                    .pointer_mut("/metadata/annotations")
                    .and_then(Value::as_object_mut)
                {
                    a.remove(IRSA_ANNOTATION);
                }
            }
            _ => {}
        }
    }
    if let Some(left) = objects.iter().find_map(|o| unreplaced(&o.body)) {
        return Err(ManageError::Render(format!(
            "a placeholder survived rendering: {}",
            validate::bounded(&left, 128)
        )));
    }
    Ok(objects)
}

/// [`render_manifest`] on the shipped manifest.
pub fn render(
    values: &Values,
    image: &str,
    pod_identity: bool,
) -> Result<Vec<Object>, ManageError> {
    render_manifest(MANIFEST, values, image, pod_identity)
}

fn object(body: Value) -> Result<Object, ManageError> {
    let field = |p: &str| body.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind, name) = (
        field("/apiVersion"),
        field("/kind"),
        field("/metadata/name"),
    );
    let Some(&(_, _, plural, scope)) = KINDS
        .iter()
        .find(|(v, k, _, _)| *v == api_version && *k == kind)
    else {
        return Err(ManageError::Render(format!(
            "the manifest holds a {} {} that management does not know how to apply",
            validate::bounded(api_version, 64),
            validate::bounded(kind, 64)
        )));
    };
    if !validate::dns_subdomain(name) {
        return Err(ManageError::Render(format!(
            "{kind} has an invalid name {:?}",
            validate::bounded(name, 64)
        )));
    }
    let namespace = body.pointer("/metadata/namespace").and_then(Value::as_str);
    let in_place = match scope {
        Scope::Namespaced => namespace == Some(AGENT_NAMESPACE),
        Scope::Cluster => namespace.is_none() && (kind != "Namespace" || name == AGENT_NAMESPACE),
    };
    if !in_place {
        return Err(ManageError::Render(format!(
            "{kind} {name} is outside the {AGENT_NAMESPACE} namespace, which is all management \
             may touch"
        )));
    }
    Ok(Object {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        scope,
        plural,
        body,
    })
}

fn set_image(daemonset: &mut Value, image: &str) -> Result<(), ManageError> {
    let container = daemonset
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .and_then(|cs| {
            cs.iter_mut()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(AGENT_CONTAINER))
        })
        .ok_or_else(|| {
            ManageError::Render(format!(
                "the DaemonSet has no container named {AGENT_CONTAINER}"
            ))
        })?;
    container["image"] = Value::String(image.to_owned());
    Ok(())
}

/// The first string still holding `${`, if any.
fn unreplaced(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.contains("${") => Some(s.clone()),
        Value::Array(a) => a.iter().find_map(unreplaced),
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            if k.contains("${") {
                Some(k.clone())
            } else {
                unreplaced(v)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn values() -> Values {
        Values {
            agent_role_arn: "arn:aws:iam::111122223333:role/peregrine-agent-prod".into(),
            aws_region: "eu-west-1".into(),
            cluster_name: "prod".into(),
            cluster_arn: "arn:aws:eks:eu-west-1:111122223333:cluster/prod".into(),
            queue_url: "https://sqs.eu-west-1.amazonaws.com/444455556666/peregrine-EventsQueue"
                .into(),
            monitoring_namespace: "monitoring".into(),
        }
    }

    fn image() -> String {
        format!(
            "registry.example/peregrine-agent:0.1.0@sha256:{}",
            "ab".repeat(32)
        )
    }

    #[test]
    fn the_shipped_manifest_renders_every_object_in_the_namespace() {
        let objects = render(&values(), &image(), false).unwrap();
        let labels: Vec<String> = objects.iter().map(Object::label).collect();
        assert_eq!(
            labels,
            [
                "Namespace peregrine",
                "ServiceAccount peregrine/peregrine-agent",
                "ConfigMap peregrine/peregrine-agent",
                "PriorityClass peregrine-agent",
                "DaemonSet peregrine/peregrine-agent",
                "NetworkPolicy peregrine/peregrine-agent",
            ]
        );
        let ds = &objects[4];
        assert_eq!(
            ds.path(),
            "/apis/apps/v1/namespaces/peregrine/daemonsets/peregrine-agent"
        );
        assert_eq!(
            ds.body["spec"]["template"]["spec"]["containers"][0]["image"],
            image().as_str()
        );
        // Kubernetes' own $(VAR) expansion is left alone.
        assert!(ds.body.to_string().contains("$(QUEUE_URL)"));
        let cm = &objects[2];
        assert_eq!(cm.body["data"]["CLUSTER_NAME"], "prod");
        assert_eq!(
            cm.body["data"]["CLUSTER_ARN"],
            "arn:aws:eks:eu-west-1:111122223333:cluster/prod"
        );
        assert_eq!(cm.body["data"]["AWS_REGION"], "eu-west-1");
        let sa = &objects[1];
        assert_eq!(
            sa.body["metadata"]["annotations"][IRSA_ANNOTATION],
            "arn:aws:iam::111122223333:role/peregrine-agent-prod"
        );
        assert_eq!(objects[0].path(), "/api/v1/namespaces/peregrine");
        assert_eq!(
            objects[3].path(),
            "/apis/scheduling.k8s.io/v1/priorityclasses/peregrine-agent"
        );
    }

    #[test]
    fn pod_identity_drops_the_irsa_annotation() {
        let objects = render(&values(), &image(), true).unwrap();
        let sa = objects.iter().find(|o| o.kind == "ServiceAccount").unwrap();
        assert!(
            sa.body["metadata"]["annotations"]
                .get(IRSA_ANNOTATION)
                .is_none()
        );
        assert_eq!(
            sa.body["metadata"]["annotations"]["eks.amazonaws.com/sts-regional-endpoints"],
            "true"
        );
    }

    #[test]
    fn values_that_could_break_the_yaml_are_refused() {
        for bad in [
            "prod\"\n  injected: true",
            "prod: x",
            "${CLUSTER_NAME}",
            "prod #",
        ] {
            let v = Values {
                cluster_name: bad.into(),
                ..values()
            };
            assert!(matches!(
                render(&v, &image(), false),
                Err(ManageError::Render(_))
            ));
        }
        let v = Values {
            queue_url: "https://q\n---\nkind: Secret".into(),
            ..values()
        };
        assert!(render(&v, &image(), false).is_err());
        for bad in [
            "arn:aws:eks:eu-west-1:111122223333:cluster/other",
            "arn:aws:eks:eu-west-1:111122223333:cluster/prod\"\n  injected: true",
            "",
        ] {
            let v = Values {
                cluster_arn: bad.into(),
                ..values()
            };
            assert!(render(&v, &image(), false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_placeholders_and_kinds_and_namespaces_are_refused() {
        let m = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: peregrine\ndata:\n  a: ${HOME}\n";
        assert!(render_manifest(m, &values(), &image(), false).is_err());
        let m = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n  namespace: peregrine\n";
        assert!(render_manifest(m, &values(), &image(), false).is_err());
        let m = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: kube-system\n";
        assert!(render_manifest(m, &values(), &image(), false).is_err());
        let m = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n";
        assert!(render_manifest(m, &values(), &image(), false).is_err());
        // A `#` line inside a block scalar is content, not a comment: a placeholder there is
        // not substituted, and caught after parsing.
        let m = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: peregrine\ndata:\n  a: |\n    # ${CLUSTER_NAME}\n";
        assert!(matches!(
            render_manifest(m, &values(), &image(), false),
            Err(ManageError::Render(e)) if e.contains("survived")
        ));
    }

    #[test]
    fn the_placeholder_image_is_refused() {
        let zero = format!(
            "ghcr.io/peregrine-sec/peregrine-agent:0.1.0@sha256:{}",
            "0".repeat(64)
        );
        assert!(render(&values(), &zero, false).is_err());
        assert!(
            render(
                &values(),
                "ghcr.io/peregrine-sec/peregrine-agent:latest",
                false
            )
            .is_err()
        );
    }
}
