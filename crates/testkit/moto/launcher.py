"""moto_server with what moto 5.2.5 lacks and Peregrine's tests rely on, registered before the
server starts (../../../shared/reference/aws-local.md). Only the test launcher knows about
these; product code talks to it as to AWS.

- STS AssumeRole refuses a role that does not exist in the target account, and one whose trust
  policy asks for an sts:ExternalId the caller did not give, with AccessDenied as AWS does
  (moto assumes any role ARN, so a member account without the role would look reachable).

(moto itself creates OrganizationAccountAccessRole with each account CreateAccount makes, as AWS
does; tests reach member accounts through it to set them up.)

Each patch is a function; add new ones (EKS add-ons, access entries, Pod Identity) beside them
and to PATCHES.
"""

import json
import sys
import urllib.parse


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


PATCHES = [patch_assume_role_trust]


if __name__ == "__main__":
    for patch in PATCHES:
        patch()
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
