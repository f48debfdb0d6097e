"""moto 5.2.5 with the EKS operations it lacks, for Peregrine's tests and local stack.

    .venv/bin/python crates/testkit/moto/peregrine_moto.py -H 127.0.0.1 -p PORT

Starts `moto.server.main()` after registering, on moto's own EKS routes and response class:

- access entries: CreateAccessEntry, DescribeAccessEntry, ListAccessEntries, UpdateAccessEntry,
  DeleteAccessEntry, AssociateAccessPolicy, DisassociateAccessPolicy,
  ListAssociatedAccessPolicies;
- Pod Identity associations: CreatePodIdentityAssociation, DescribePodIdentityAssociation,
  ListPodIdentityAssociations, UpdatePodIdentityAssociation, DeletePodIdentityAssociation;
- add-ons (only what the tests set up and read): CreateAddon, DescribeAddon, ListAddons,
  DeleteAddon;
- CreateCluster/DescribeCluster keep `accessConfig.authenticationMode` (moto drops it); a
  cluster created without one gets API_AND_CONFIG_MAP. Like EKS, CreateCluster also fills
  `resourcesVpcConfig.vpcId` (from the first subnet) and creates the cluster security group
  (`eks-cluster-sg-<name>-<id>`, tagged `aws:eks:cluster-name`) as
  `resourcesVpcConfig.clusterSecurityGroupId`. A cluster created with the tags
  `peregrine-moto:endpoint` / `peregrine-moto:ca` gets them as its API endpoint and CA (moto's
  own endpoint is a made-up URL): tests point clusters at a stand-in API server that way.

And one change to moto's IAM enforcement (`Moto::enforce_iam`): moto re-computes each
request's SigV4 signature from what it parsed, and gets it wrong for valid SDK requests (form
bodies with a space, which it re-encodes as `+`; REST GETs), answering SignatureDoesNotMatch or
AuthFailure. The launcher skips that re-computation. Credentials must still be ones moto issued
(an unknown access key is refused), and every action is still authorized against the caller's
policies, which is what the tests use enforcement for.

And one check moto lacks: STS AssumeRole refuses a role that does not exist in the target
account, and one whose trust policy asks for an sts:ExternalId the caller did not give, with
AccessDenied as AWS does (moto assumes any role ARN, so a member account without the role would
look reachable to the coverage sweeper). moto itself creates OrganizationAccountAccessRole with
each account CreateAccount makes, as AWS does; tests reach member accounts through it.

And Security Hub's BatchImportFindings as AWS checks it (moto takes anything): refused with
InvalidAccessException unless EnableSecurityHub was called in the account and region, more than
100 findings refused as a whole, and each finding refused on its own (FailedFindings,
InvalidInput) unless it has the required members, is the calling account's (AwsAccountId)
under its default product ARN, and keeps ASFF's limits: Id and GeneratorId at most 512
characters, Title 1 to 256, Description 1 to 1024, at most 50 Types, at most 50 ProductFields
(key 128, value 2048 characters), 1 to 32 Resources (`Details.Other`: at most 50 pairs, keys
under 128 and values under 1024 characters), at most 240 KB of JSON, and every string
matching ASFF's `.*\\S.*` (a visible character, and, as the pattern reads in Java, no line
break).

And one change to how moto's DynamoDB finds a Query's items, not to what it returns: moto
reads and sorts the whole table for every Query on a table's own key (`Table.query` calls
`all_items()`), so a Query costs O(table) where DynamoDB reads one partition. At the coverage
benchmark's 500 accounts that made moto spend minutes of CPU on Queries of HeartbeatsTable and
CoverageTable. The launcher hands such a Query only the partition's items, from moto's own
per-partition dict; moto then filters, sorts, pages and limits them as before. Index Queries
and Scans are untouched.

Everything is stored on moto's own cluster objects, so `POST /moto-api/reset` wipes it and
each account and region sees only its own. What these stand-ins do not do, AWS does: no
validation that a role exists or trusts pods.eks.amazonaws.com, no access policy catalogue (any
policy ARN is accepted), no Kubernetes behind any of it. docs/deploy.md ("Automatic agent
management") lists the limits.
"""

import datetime
import json
import re
import sys
import threading
import urllib.parse
import uuid

import moto.eks.urls as eks_urls
from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.models import ec2_backends
from moto.iam import access_control
from moto.eks.exceptions import (
    InvalidParameterException,
    InvalidRequestException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from moto.eks.models import EKSBackend
from moto.eks.responses import EKSResponse
from moto.server import main

API_MODES = ("API", "API_AND_CONFIG_MAP")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _state(cluster, name):
    """A dict kept on moto's cluster object (created on first use)."""
    store = getattr(cluster, "_peregrine", None)
    if store is None:
        store = {"access_entries": {}, "pod_identity": {}, "addons": {}}
        cluster._peregrine = store
    return store[name]


def _cluster(response, name):
    backend: EKSBackend = response.eks_backend
    cluster = backend.clusters.get(name)
    if cluster is None:
        raise ResourceNotFoundException(
            clusterName=name,
            nodegroupName=None,
            fargateProfileName=None,
            addonName=None,
            message=f"No cluster found for name: {name}.",
        )
    return cluster


def _not_found(cluster_name, message):
    return ResourceNotFoundException(
        clusterName=cluster_name,
        nodegroupName=None,
        fargateProfileName=None,
        addonName=None,
        message=message,
    )


def _require_api_mode(cluster):
    mode = getattr(cluster, "access_config", {}).get("authenticationMode", "API_AND_CONFIG_MAP")
    if mode not in API_MODES:
        raise InvalidRequestException(
            message="The cluster's authentication mode must be set to one of "
            "[API, API_AND_CONFIG_MAP] to perform this operation."
        )


def _page(items, max_results, next_token):
    start = int(next_token) if next_token else 0
    size = int(max_results) if max_results else 100
    page = items[start : start + size]
    nxt = str(start + size) if start + size < len(items) else None
    return page, nxt


# --- CreateCluster / DescribeCluster: keep accessConfig ---------------------------------------

_original_create_cluster = EKSResponse.create_cluster


def create_cluster(self):
    result = _original_create_cluster(self)
    access = self._get_param("accessConfig") or {}
    cluster = self.eks_backend.clusters[self._get_param("name")]
    vpc_config = cluster.resources_vpc_config or {}
    subnets = vpc_config.get("subnetIds") or []
    ec2 = ec2_backends[self.current_account][self.region]
    if subnets and "vpcId" not in vpc_config:
        try:
            vpc_id = ec2.get_subnet(subnets[0]).vpc_id
        except Exception:  # a subnet moto does not know: leave the config as given
            vpc_id = None
        if vpc_id:
            group = ec2.create_security_group(
                name=f"eks-cluster-sg-{cluster.name}-{uuid.uuid4().hex[:10]}",
                description="EKS created security group applied to ENI that is attached to "
                "EKS Control Plane master nodes, as well as any managed workloads.",
                vpc_id=vpc_id,
                tags={"aws:eks:cluster-name": cluster.name},
            )
            vpc_config["vpcId"] = vpc_id
            vpc_config["clusterSecurityGroupId"] = group.id
            cluster.resources_vpc_config = vpc_config
    # Where the cluster's Kubernetes API is: moto makes up an https URL on amazonaws.com that
    # nothing answers. A test that has its own API server (or wants a refused connection)
    # names it with these tags, which only this launcher reads.
    tags = self._get_param("tags") or {}
    if "peregrine-moto:endpoint" in tags:
        cluster.endpoint = tags["peregrine-moto:endpoint"]
    if "peregrine-moto:ca" in tags:
        cluster.certificate_authority = {"data": tags["peregrine-moto:ca"]}
    cluster.access_config = {
        "authenticationMode": access.get("authenticationMode", "API_AND_CONFIG_MAP"),
        "bootstrapClusterCreatorAdminPermissions": access.get(
            "bootstrapClusterCreatorAdminPermissions", True
        ),
    }
    return result


# --- access entries ---------------------------------------------------------------------------


def _entry_view(cluster, entry):
    return {
        "clusterName": cluster.name,
        "principalArn": entry["principalArn"],
        "kubernetesGroups": entry["kubernetesGroups"],
        "accessEntryArn": entry["accessEntryArn"],
        "createdAt": entry["createdAt"],
        "modifiedAt": entry["modifiedAt"],
        "tags": entry["tags"],
        "username": entry["username"],
        "type": entry["type"],
    }


def _entry(cluster, principal_arn):
    entry = _state(cluster, "access_entries").get(principal_arn)
    if entry is None:
        raise _not_found(
            cluster.name,
            f"The specified access entry resource {principal_arn} could not be found.",
        )
    return entry


def create_access_entry(self):
    cluster = _cluster(self, self._get_param("name"))
    _require_api_mode(cluster)
    principal = self._get_param("principalArn")
    entries = _state(cluster, "access_entries")
    if principal in entries:
        raise ResourceInUseException(
            clusterName=cluster.name,
            nodegroupName=None,
            fargateProfileName=None,
            addonName=None,
            message=f"The specified access entry resource is already in use on this cluster.",
        )
    kind = self._get_param("type") or "STANDARD"
    now = _now()
    principal_name = principal.split(":")[-1]
    entries[principal] = {
        "principalArn": principal,
        "kubernetesGroups": self._get_param("kubernetesGroups") or [],
        "accessEntryArn": cluster.arn.replace(":cluster/", ":access-entry/")
        + f"/role/{cluster.arn.split(':')[4]}/{principal_name.replace('/', '-')}/{uuid.uuid4()}",
        "createdAt": now,
        "modifiedAt": now,
        "tags": self._get_param("tags") or {},
        "username": self._get_param("username") or principal,
        "type": kind,
        "policies": {},
    }
    return ActionResult({"accessEntry": _entry_view(cluster, entries[principal])})


def describe_access_entry(self):
    cluster = _cluster(self, self._get_param("name"))
    entry = _entry(cluster, self._get_param("principalArn"))
    return ActionResult({"accessEntry": _entry_view(cluster, entry)})


def list_access_entries(self):
    cluster = _cluster(self, self._get_param("name"))
    _require_api_mode(cluster)
    entries = list(_state(cluster, "access_entries").keys())
    page, nxt = _page(entries, self._get_param("maxResults"), self._get_param("nextToken"))
    result = {"accessEntries": page}
    if nxt:
        result["nextToken"] = nxt
    return ActionResult(result)


def update_access_entry(self):
    cluster = _cluster(self, self._get_param("name"))
    entry = _entry(cluster, self._get_param("principalArn"))
    groups = self._get_param("kubernetesGroups")
    if groups is not None:
        entry["kubernetesGroups"] = groups
    username = self._get_param("username")
    if username is not None:
        entry["username"] = username
    entry["modifiedAt"] = _now()
    return ActionResult({"accessEntry": _entry_view(cluster, entry)})


def delete_access_entry(self):
    cluster = _cluster(self, self._get_param("name"))
    principal = self._get_param("principalArn")
    _entry(cluster, principal)
    del _state(cluster, "access_entries")[principal]
    return EmptyResult()


def _policy_view(policy_arn, policy):
    return {
        "policyArn": policy_arn,
        "accessScope": policy["accessScope"],
        "associatedAt": policy["associatedAt"],
        "modifiedAt": policy["modifiedAt"],
    }


def associate_access_policy(self):
    cluster = _cluster(self, self._get_param("name"))
    principal = self._get_param("principalArn")
    entry = _entry(cluster, principal)
    policy_arn = self._get_param("policyArn")
    scope = self._get_param("accessScope") or {}
    if scope.get("type") not in ("cluster", "namespace"):
        raise InvalidParameterException(message="accessScope.type must be cluster or namespace")
    if scope.get("type") == "namespace" and not scope.get("namespaces"):
        raise InvalidParameterException(message="namespaces are required for a namespace scope")
    now = _now()
    # Associating a policy that is already associated replaces its scope, as in EKS.
    previous = entry["policies"].get(policy_arn)
    entry["policies"][policy_arn] = {
        "accessScope": {"type": scope["type"], "namespaces": scope.get("namespaces") or []},
        "associatedAt": previous["associatedAt"] if previous else now,
        "modifiedAt": now,
    }
    return ActionResult(
        {
            "clusterName": cluster.name,
            "principalArn": principal,
            "associatedAccessPolicy": _policy_view(policy_arn, entry["policies"][policy_arn]),
        }
    )


def disassociate_access_policy(self):
    cluster = _cluster(self, self._get_param("name"))
    entry = _entry(cluster, self._get_param("principalArn"))
    policy_arn = self._get_param("policyArn")
    if policy_arn not in entry["policies"]:
        raise _not_found(cluster.name, f"The specified policy {policy_arn} is not associated.")
    del entry["policies"][policy_arn]
    return EmptyResult()


def list_associated_access_policies(self):
    cluster = _cluster(self, self._get_param("name"))
    principal = self._get_param("principalArn")
    entry = _entry(cluster, principal)
    items = [_policy_view(arn, p) for arn, p in entry["policies"].items()]
    page, nxt = _page(items, self._get_param("maxResults"), self._get_param("nextToken"))
    result = {
        "clusterName": cluster.name,
        "principalArn": principal,
        "associatedAccessPolicies": page,
    }
    if nxt:
        result["nextToken"] = nxt
    return ActionResult(result)


# --- Pod Identity associations ----------------------------------------------------------------


def _association_view(assoc):
    return {k: v for k, v in assoc.items() if v is not None}


def _association(cluster, association_id):
    assoc = _state(cluster, "pod_identity").get(association_id)
    if assoc is None:
        raise _not_found(
            cluster.name, f"Pod Identity Association {association_id} could not be found."
        )
    return assoc


def create_pod_identity_association(self):
    cluster = _cluster(self, self._get_param("name"))
    namespace = self._get_param("namespace")
    service_account = self._get_param("serviceAccount")
    role_arn = self._get_param("roleArn")
    if not (namespace and service_account and role_arn):
        raise InvalidParameterException(
            message="namespace, serviceAccount and roleArn are required"
        )
    store = _state(cluster, "pod_identity")
    for existing in store.values():
        if existing["namespace"] == namespace and existing["serviceAccount"] == service_account:
            raise ResourceInUseException(
                clusterName=cluster.name,
                nodegroupName=None,
                fargateProfileName=None,
                addonName=None,
                message="Association already exists: " + existing["associationArn"],
            )
    association_id = "a-" + uuid.uuid4().hex[:17]
    now = _now()
    assoc = {
        "clusterName": cluster.name,
        "namespace": namespace,
        "serviceAccount": service_account,
        "roleArn": role_arn,
        "associationArn": cluster.arn.replace(":cluster/", ":podidentityassociation/")
        + "/"
        + association_id,
        "associationId": association_id,
        "tags": self._get_param("tags") or {},
        "createdAt": now,
        "modifiedAt": now,
        "disableSessionTags": bool(self._get_param("disableSessionTags")),
        "targetRoleArn": self._get_param("targetRoleArn"),
    }
    store[association_id] = assoc
    return ActionResult({"association": _association_view(assoc)})


def describe_pod_identity_association(self):
    cluster = _cluster(self, self._get_param("name"))
    assoc = _association(cluster, self._get_param("associationId"))
    return ActionResult({"association": _association_view(assoc)})


def list_pod_identity_associations(self):
    cluster = _cluster(self, self._get_param("name"))
    namespace = self._get_param("namespace")
    service_account = self._get_param("serviceAccount")
    items = [
        {
            "clusterName": a["clusterName"],
            "namespace": a["namespace"],
            "serviceAccount": a["serviceAccount"],
            "associationArn": a["associationArn"],
            "associationId": a["associationId"],
        }
        for a in _state(cluster, "pod_identity").values()
        if (not namespace or a["namespace"] == namespace)
        and (not service_account or a["serviceAccount"] == service_account)
    ]
    page, nxt = _page(items, self._get_param("maxResults"), self._get_param("nextToken"))
    result = {"associations": page}
    if nxt:
        result["nextToken"] = nxt
    return ActionResult(result)


def update_pod_identity_association(self):
    cluster = _cluster(self, self._get_param("name"))
    assoc = _association(cluster, self._get_param("associationId"))
    role_arn = self._get_param("roleArn")
    if role_arn:
        assoc["roleArn"] = role_arn
    assoc["modifiedAt"] = _now()
    return ActionResult({"association": _association_view(assoc)})


def delete_pod_identity_association(self):
    cluster = _cluster(self, self._get_param("name"))
    association_id = self._get_param("associationId")
    assoc = _association(cluster, association_id)
    del _state(cluster, "pod_identity")[association_id]
    return ActionResult({"association": _association_view(assoc)})


# --- add-ons (set up and read by tests) -------------------------------------------------------


def _addon(cluster, name):
    addon = _state(cluster, "addons").get(name)
    if addon is None:
        raise ResourceNotFoundException(
            clusterName=cluster.name,
            nodegroupName=None,
            fargateProfileName=None,
            addonName=name,
            message=f"No addon: {name} found in cluster: {cluster.name}",
        )
    return addon


def create_addon(self):
    cluster = _cluster(self, self._get_param("name"))
    name = self._get_param("addonName")
    addons = _state(cluster, "addons")
    if name in addons:
        raise ResourceInUseException(
            clusterName=cluster.name,
            nodegroupName=None,
            fargateProfileName=None,
            addonName=name,
            message=f"Addon already exists: {name}",
        )
    now = _now()
    addons[name] = {
        "addonName": name,
        "clusterName": cluster.name,
        "status": "ACTIVE",
        "addonVersion": self._get_param("addonVersion") or "v1.0.0-eksbuild.1",
        "health": {"issues": []},
        "addonArn": cluster.arn.replace(":cluster/", ":addon/") + f"/{name}/{uuid.uuid4()}",
        "createdAt": now,
        "modifiedAt": now,
        "tags": self._get_param("tags") or {},
    }
    return ActionResult({"addon": addons[name]})


def describe_addon(self):
    cluster = _cluster(self, self._get_param("name"))
    return ActionResult({"addon": _addon(cluster, self._get_param("addonName"))})


def list_addons(self):
    cluster = _cluster(self, self._get_param("name"))
    names = sorted(_state(cluster, "addons").keys())
    page, nxt = _page(names, self._get_param("maxResults"), self._get_param("nextToken"))
    result = {"addons": page}
    if nxt:
        result["nextToken"] = nxt
    return ActionResult(result)


def delete_addon(self):
    cluster = _cluster(self, self._get_param("name"))
    name = self._get_param("addonName")
    addon = _addon(cluster, name)
    del _state(cluster, "addons")[name]
    return ActionResult({"addon": addon})


# --- IAM enforcement without moto's signature re-computation ---------------------------------


def _check_signature(self):
    """The access key was looked up (unknown keys are refused); the signature is not checked."""


# --- STS AssumeRole: the target role must exist and its trust policy's ExternalId match ------


def _iam(account_id):
    from moto.iam.models import iam_backends

    backends = iam_backends[account_id]
    for key in ("aws", "global"):
        try:
            return backends[key]
        except KeyError:
            continue
    raise KeyError(f"no IAM backend for {account_id}")


def _trust_policy(role):
    doc = role.assume_role_policy_document
    if isinstance(doc, dict):
        return doc
    try:
        return json.loads(doc)
    except (TypeError, ValueError):
        return json.loads(urllib.parse.unquote(doc))


def _required_external_ids(policy):
    wanted = []
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for st in statements:
        for op, conds in (st.get("Condition") or {}).items():
            if op != "StringEquals":
                continue
            for key, value in conds.items():
                if key.lower() == "sts:externalid":
                    wanted.extend(value if isinstance(value, list) else [value])
    return wanted


def patch_assume_role_trust():
    from moto.sts.exceptions import STSClientError
    from moto.sts.models import STSBackend

    original = STSBackend.assume_role

    def assume_role(self, region_name, role_session_name, role_arn, policy, duration, external_id):
        parts = role_arn.split(":")
        account_id = parts[4] if len(parts) > 5 else ""
        role_name = role_arn.split("/")[-1]
        denied = STSClientError(
            "AccessDenied",
            f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
        )
        try:
            role = _iam(account_id).get_role(role_name)
        except Exception:
            raise denied
        wanted = _required_external_ids(_trust_policy(role))
        if wanted and external_id not in wanted:
            raise denied
        return original(self, region_name, role_session_name, role_arn, policy, duration, external_id)

    STSBackend.assume_role = assume_role


# --- Security Hub: BatchImportFindings as AWS checks it -----------------------------------------

ASFF_REQUIRED = (
    "SchemaVersion",
    "Id",
    "ProductArn",
    "GeneratorId",
    "AwsAccountId",
    "Types",
    "CreatedAt",
    "UpdatedAt",
    "Severity",
    "Title",
    "Description",
    "Resources",
)
ASFF_LENGTHS = {"Id": 512, "GeneratorId": 512, "Title": 256, "Description": 1024}
ASFF_MAX_BYTES = 240 * 1024
ASFF_TEXT = re.compile(r".*\S.*")


def _asff_strings(value, at):
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _asff_strings(k, f"{at}/<key>")
            yield from _asff_strings(v, f"{at}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _asff_strings(v, f"{at}/{i}")


def _asff_problem(backend, finding):
    """Why Security Hub would refuse this finding, or None."""
    missing = [k for k in ASFF_REQUIRED if k not in finding]
    if missing:
        return f"missing {', '.join(missing)}"
    if finding["AwsAccountId"] != backend.account_id:
        return f"AwsAccountId {finding['AwsAccountId']} is not the calling account {backend.account_id}"
    product = f"arn:aws:securityhub:{backend.region_name}:{backend.account_id}:product/{backend.account_id}/default"
    if finding["ProductArn"] != product:
        return f"ProductArn {finding['ProductArn']} is not {product}"
    for key, most in ASFF_LENGTHS.items():
        if len(finding[key]) > most:
            return f"{key} is {len(finding[key])} characters, over {most}"
    severity = finding["Severity"]
    if "Label" not in severity and "Normalized" not in severity:
        return "Severity has neither Label nor Normalized"
    if len(finding["Types"]) > 50:
        return "more than 50 Types"
    fields = finding.get("ProductFields", {})
    if len(fields) > 50:
        return f"{len(fields)} ProductFields, over 50"
    for k, v in fields.items():
        if len(k) > 128 or len(v) > 2048:
            return f"ProductFields {k[:40]}... over the key or value limit"
    if not 1 <= len(finding["Resources"]) <= 32:
        return f"{len(finding['Resources'])} Resources"
    for resource in finding["Resources"]:
        other = resource.get("Details", {}).get("Other", {})
        if len(other) > 50 or any(len(k) >= 128 or len(v) >= 1024 for k, v in other.items()):
            return "Details.Other over 50 pairs, or a key of 128 or a value of 1024 characters"
    for key in ("CreatedAt", "UpdatedAt", "FirstObservedAt", "LastObservedAt"):
        if key in finding:
            try:
                datetime.datetime.fromisoformat(finding[key])
            except ValueError:
                return f"{key} {finding[key]!r} is not a timestamp"
    for at, text in _asff_strings(finding, ""):
        if not ASFF_TEXT.fullmatch(text):
            return f"{at} does not match .*\\S.*"
    size = len(json.dumps(finding, separators=(",", ":"), ensure_ascii=False).encode())
    if size > ASFF_MAX_BYTES:
        return f"the finding is {size} bytes, over 240 KB"
    return None


def patch_security_hub():
    from moto.securityhub.exceptions import InvalidInputException, SecurityHubClientError
    from moto.securityhub.models import SecurityHubBackend

    original = SecurityHubBackend.batch_import_findings

    def batch_import_findings(self, findings):
        if not self.enabled:
            raise SecurityHubClientError(
                "InvalidAccessException",
                f"Account {self.account_id} is not subscribed to AWS Security Hub",
            )
        if len(findings) > 100:
            raise InvalidInputException(
                op="BatchImportFindings", msg=f"{len(findings)} findings, over 100"
            )
        taken, refused = [], []
        for finding in findings:
            problem = _asff_problem(self, finding)
            if problem is None:
                taken.append(finding)
            else:
                refused.append(
                    {"Id": finding.get("Id", ""), "ErrorCode": "InvalidInput", "ErrorMessage": problem}
                )
        failed, succeeded, failures = original(self, taken)
        return failed + len(refused), succeeded, failures + refused

    SecurityHubBackend.batch_import_findings = batch_import_findings
_partition = threading.local()


def patch_dynamodb_query_by_partition():
    from moto.dynamodb.models.table import Table

    all_items = Table.all_items
    query = Table.query

    def partition_items(self):
        wanted = getattr(_partition, "key", None)
        if wanted is None or wanted[0] is not self:
            return all_items(self)
        bucket = self.items.get(wanted[1])
        if bucket is None:
            return []
        return list(bucket.values()) if self.range_key_attr else [bucket]

    def partition_query(self, hash_key, *args, **kwargs):
        # index_name is the 8th parameter after self; a table Query has none.
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        _partition.key = (self, hash_key)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _partition.key = None

    Table.all_items = partition_items
    Table.query = partition_query


# --- registration -----------------------------------------------------------------------------

HANDLERS = {
    "create_cluster": create_cluster,
    "create_access_entry": create_access_entry,
    "describe_access_entry": describe_access_entry,
    "list_access_entries": list_access_entries,
    "update_access_entry": update_access_entry,
    "delete_access_entry": delete_access_entry,
    "associate_access_policy": associate_access_policy,
    "disassociate_access_policy": disassociate_access_policy,
    "list_associated_access_policies": list_associated_access_policies,
    "create_pod_identity_association": create_pod_identity_association,
    "describe_pod_identity_association": describe_pod_identity_association,
    "list_pod_identity_associations": list_pod_identity_associations,
    "update_pod_identity_association": update_pod_identity_association,
    "delete_pod_identity_association": delete_pod_identity_association,
    "create_addon": create_addon,
    "describe_addon": describe_addon,
    "list_addons": list_addons,
    "delete_addon": delete_addon,
}

# Flask only needs to reach EKSResponse.dispatch; moto then picks the operation from botocore's
# EKS model by method and raw path (so an ARN with encoded slashes is one label).
ROUTES = [
    "{0}/clusters/(?P<name>[^/]+)/access-entries$",
    "{0}/clusters/(?P<name>[^/]+)/access-entries/(?P<principalArn>.+)$",
    "{0}/clusters/(?P<name>[^/]+)/pod-identity-associations$",
    "{0}/clusters/(?P<name>[^/]+)/pod-identity-associations/(?P<associationId>[^/]+)$",
    "{0}/clusters/(?P<name>[^/]+)/addons$",
    "{0}/clusters/(?P<name>[^/]+)/addons/(?P<addonName>[^/]+)$",
]


def register():
    patch_assume_role_trust()
    patch_security_hub()
    patch_dynamodb_query_by_partition()
    access_control.IAMRequestBase.check_signature = _check_signature
    for method, handler in HANDLERS.items():
        setattr(EKSResponse, method, handler)
    for route in ROUTES:
        eks_urls.url_paths[route] = eks_urls.response.dispatch


if __name__ == "__main__":
    register()
    main(sys.argv[1:])
