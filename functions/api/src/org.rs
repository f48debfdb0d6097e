//! DescribeOrganizationConfiguration and UpdateOrganizationConfiguration over ConfigTable
//! (`peregrine-store`'s `ConfigStore`, `peregrine-org`'s `OrgSettings` and `AccountSettings`),
//! the table the coverage sweeper reads at every sweep.
//!
//! GuardDuty's fields: `autoEnableOrganizationMembers` (`NEW`, `ALL`, `NONE`), the legacy
//! boolean `autoEnable`, `memberAccountLimitReached`, and `features` with the one feature
//! Peregrine has, `RUNTIME_MONITORING`, whose additional configuration `EKS_ADDON_MANAGEMENT`
//! is the agent management new accounts get (`ALL`/`NEW`: `AUTO`, `NONE`: `MANUAL`).
//! Peregrine's: `autoEnableSince`, `defaultAgentManagement`, `clusterScope`, `updatedAt`,
//! and `accounts`, each account's row (monitoring, management, cluster scope), which an update
//! may change (as GuardDuty's UpdateMemberDetectors would).

use std::collections::BTreeSet;

use peregrine_event::Timestamp;
use peregrine_org::config::{
    AccountSettings, AutoEnable, ClusterScope, Management, Monitoring, OrgSettings, Origin,
};
use peregrine_store::{ConfigStore, iso};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::ops::parse;
use crate::{ApiDeps, Operation, Request};
use peregrine_criteria::quoted;

/// Most account rows one update changes.
pub const MAX_ACCOUNTS_PER_UPDATE: usize = 50;
/// Conditional-write attempts per account row before giving up (500, retryable).
const WRITE_ATTEMPTS: usize = 5;

pub(crate) async fn run(
    deps: &ApiDeps,
    op: Operation,
    req: &Request<'_>,
) -> Result<Value, ApiError> {
    match op {
        Operation::DescribeOrganizationConfiguration => describe(deps).await,
        Operation::UpdateOrganizationConfiguration => update(deps, parse(&req.body)?).await,
        other => Err(ApiError::NotFound(format!(
            "{} is not an organization operation.",
            other.name()
        ))),
    }
}

/// `EKS_ADDON_MANAGEMENT`'s auto-enable for a default management.
fn addon_auto_enable(m: Management) -> &'static str {
    match m {
        Management::Auto => "ALL",
        Management::Manual => "NONE",
    }
}

fn account_json(a: &AccountSettings) -> Value {
    let mut v = json!({
        "accountId": a.account_id,
        "monitoring": a.monitoring.as_str(),
        "management": a.management.as_str(),
        "origin": a.origin.as_str(),
        "updatedAt": iso(a.updated_at),
    });
    if let (Some(scope), Some(o)) = (a.cluster_scope, v.as_object_mut()) {
        o.insert("clusterScope".into(), json!(scope.as_str()));
    }
    v
}

/// The organization's row, or what the first sweep will write (the template's defaults).
fn settings_or_default(deps: &ApiDeps, org: Option<OrgSettings>) -> (OrgSettings, bool) {
    match org {
        Some(o) => (o, true),
        None => (
            OrgSettings::initial(
                deps.config.default_auto_enable,
                deps.config.default_management,
                Timestamp::from_unix_nanos(0),
            ),
            false,
        ),
    }
}

async fn describe(deps: &ApiDeps) -> Result<Value, ApiError> {
    let stored = deps.org.load().await?;
    let (org, written) = settings_or_default(deps, stored.org);
    let auto = org.auto_enable.as_str();
    let accounts: Vec<Value> = stored.accounts.values().map(account_json).collect();
    let mut out = json!({
        "autoEnable": org.auto_enable != AutoEnable::None,
        "autoEnableOrganizationMembers": auto,
        "memberAccountLimitReached": false,
        "features": [{
            "name": "RUNTIME_MONITORING",
            "autoEnable": auto,
            "additionalConfiguration": [{
                "name": "EKS_ADDON_MANAGEMENT",
                "autoEnable": addon_auto_enable(org.default_management),
            }],
        }],
        // Peregrine's.
        "defaultAgentManagement": org.default_management.as_str(),
        "clusterScope": org.cluster_scope.as_str(),
        "accounts": accounts,
        "invalidAccounts": stored.invalid.keys().collect::<Vec<_>>(),
    });
    if let (true, Some(o)) = (written, out.as_object_mut()) {
        o.insert("autoEnableSince".into(), json!(iso(org.auto_enable_since)));
        o.insert("updatedAt".into(), json!(iso(org.updated_at)));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateRequest {
    #[serde(default)]
    auto_enable_organization_members: Option<String>,
    /// GuardDuty's legacy boolean: `true` is `NEW`, `false` is `NONE`.
    #[serde(default)]
    auto_enable: Option<bool>,
    #[serde(default)]
    features: Option<Vec<Feature>>,
    #[serde(default)]
    default_agent_management: Option<String>,
    #[serde(default)]
    cluster_scope: Option<String>,
    #[serde(default)]
    accounts: Option<Vec<AccountUpdate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Feature {
    name: String,
    #[serde(default)]
    auto_enable: Option<String>,
    #[serde(default)]
    additional_configuration: Option<Vec<AdditionalConfiguration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AdditionalConfiguration {
    name: String,
    auto_enable: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AccountUpdate {
    account_id: String,
    #[serde(default)]
    monitoring: Option<String>,
    #[serde(default)]
    management: Option<String>,
    /// `ALL`, `INCLUDED_ONLY`, or `""` for the organization's.
    #[serde(default)]
    cluster_scope: Option<String>,
}

fn value<T: std::str::FromStr<Err = peregrine_org::UnknownValue>>(
    field: &str,
    v: &str,
) -> Result<T, ApiError> {
    v.parse().map_err(|e: peregrine_org::UnknownValue| {
        ApiError::bad(format!(
            "{field} {} is not one of {}.",
            quoted(v),
            e.expected.trim_end()
        ))
    })
}

/// Sets `slot` to `v`, or refuses two different values for it.
fn set_once<T: PartialEq + Copy>(slot: &mut Option<T>, v: T, what: &str) -> Result<(), ApiError> {
    match slot {
        Some(old) if *old != v => Err(ApiError::bad(format!(
            "The request gives {what} two different values."
        ))),
        _ => {
            *slot = Some(v);
            Ok(())
        }
    }
}

async fn update(deps: &ApiDeps, r: UpdateRequest) -> Result<Value, ApiError> {
    // Validate everything before writing anything.
    let mut auto_enable: Option<AutoEnable> = None;
    if let Some(a) = &r.auto_enable_organization_members {
        set_once(
            &mut auto_enable,
            value("autoEnableOrganizationMembers", a)?,
            "auto-enable",
        )?;
    }
    if let Some(b) = r.auto_enable {
        let legacy = if b { AutoEnable::New } else { AutoEnable::None };
        set_once(&mut auto_enable, legacy, "auto-enable")?;
    }
    let mut management: Option<Management> = None;
    if let Some(m) = &r.default_agent_management {
        set_once(
            &mut management,
            value("defaultAgentManagement", m)?,
            "the default agent management",
        )?;
    }
    let mut names = BTreeSet::new();
    for f in r.features.iter().flatten() {
        if f.name != "RUNTIME_MONITORING" && f.name != "EKS_RUNTIME_MONITORING" {
            return Err(ApiError::bad(format!(
                "feature {} is not one Peregrine has: RUNTIME_MONITORING (or the legacy EKS_RUNTIME_MONITORING).",
                quoted(&f.name)
            )));
        }
        names.insert(f.name.as_str());
        if let Some(a) = &f.auto_enable {
            set_once(
                &mut auto_enable,
                value("features.autoEnable", a)?,
                "auto-enable",
            )?;
        }
        for c in f.additional_configuration.iter().flatten() {
            if c.name != "EKS_ADDON_MANAGEMENT" {
                return Err(ApiError::bad(format!(
                    "additionalConfiguration {} is not EKS_ADDON_MANAGEMENT.",
                    quoted(&c.name)
                )));
            }
            let m = match value::<AutoEnable>("additionalConfiguration.autoEnable", &c.auto_enable)?
            {
                AutoEnable::All | AutoEnable::New => Management::Auto,
                AutoEnable::None => Management::Manual,
            };
            set_once(&mut management, m, "the default agent management")?;
        }
    }
    if names.len() > 1 {
        return Err(ApiError::bad(
            "Give RUNTIME_MONITORING or EKS_RUNTIME_MONITORING, not both.",
        ));
    }
    let scope: Option<ClusterScope> = r
        .cluster_scope
        .as_deref()
        .map(|s| value("clusterScope", s))
        .transpose()?;
    let accounts = r.accounts.unwrap_or_default();
    if accounts.len() > MAX_ACCOUNTS_PER_UPDATE {
        return Err(ApiError::bad(format!(
            "accounts has {} accounts; at most {MAX_ACCOUNTS_PER_UPDATE} per request.",
            accounts.len()
        )));
    }
    let mut changes = Vec::with_capacity(accounts.len());
    let mut seen = BTreeSet::new();
    for a in &accounts {
        if a.account_id.len() != 12 || !a.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::bad(format!(
                "accountId {} is not a 12-digit account id.",
                quoted(&a.account_id)
            )));
        }
        if !seen.insert(a.account_id.as_str()) {
            return Err(ApiError::bad(format!(
                "The account {} is given twice.",
                a.account_id
            )));
        }
        let monitoring: Option<Monitoring> = a
            .monitoring
            .as_deref()
            .map(|m| value("monitoring", m))
            .transpose()?;
        let management: Option<Management> = a
            .management
            .as_deref()
            .map(|m| value("management", m))
            .transpose()?;
        // "" puts the account back on the organization's scope.
        let scope: Option<Option<ClusterScope>> = match a.cluster_scope.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(s) => Some(Some(value("clusterScope", s)?)),
        };
        changes.push((a.account_id.clone(), monitoring, management, scope));
    }

    let now = Timestamp::now();
    let stored = deps.org.load().await?;
    let (mut org, written) = settings_or_default(deps, stored.org);
    let before = org.clone();
    if let Some(a) = auto_enable
        && a != org.auto_enable
    {
        org.auto_enable = a;
        // NEW counts accounts that join from now on.
        org.auto_enable_since = now;
    }
    if let Some(m) = management {
        org.default_management = m;
    }
    if let Some(s) = scope {
        org.cluster_scope = s;
    }
    if !written {
        org.auto_enable_since = now;
    }
    if org != before || !written {
        org.updated_at = now;
        deps.org.put_org(&org, false).await?;
    }

    for (id, monitoring, management, scope) in changes {
        let mut done = false;
        for attempt in 0..WRITE_ATTEMPTS {
            let current = if attempt == 0 {
                stored.accounts.get(&id).cloned()
            } else {
                deps.org.load().await?.accounts.get(&id).cloned()
            };
            let read_at = current.as_ref().map(|c| c.updated_at);
            let mut row = current.unwrap_or_else(|| AccountSettings {
                account_id: id.clone(),
                monitoring: Monitoring::Disabled,
                management: org.default_management,
                cluster_scope: None,
                origin: Origin::Administrator,
                updated_at: now,
            });
            if let Some(m) = monitoring {
                row.monitoring = m;
            }
            if let Some(m) = management {
                row.management = m;
            }
            if let Some(s) = scope {
                row.cluster_scope = s;
            }
            row.origin = Origin::Administrator;
            row.updated_at = match read_at {
                Some(t) if t >= now => Timestamp::from_unix_nanos(t.unix_nanos() + 1_000_000),
                _ => now,
            };
            if deps.org.put_account(&row, read_at).await? {
                done = true;
                break;
            }
        }
        if !done {
            return Err(ApiError::Contended(format!("account {id}")));
        }
    }
    Ok(json!({}))
}
