//! `peregrine`: Peregrine's findings API from the command line (docs/cli.md).
//!
//! Each command is one or a few SigV4-signed calls to the API (`functions/api`, GuardDuty's
//! shapes), whose answer is printed as the API's JSON or, for people, an aligned table with
//! every attacker-controlled string escaped. Exit codes: [`error::exit`].

mod client;
mod commands;
mod criteria;
mod error;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::{Client, Settings};
use crate::criteria::CriteriaArgs;
use crate::error::CliError;

#[derive(Parser, Debug)]
#[command(
    name = "peregrine",
    version,
    about = "Peregrine's findings API: findings, suppression filters, entity sets, coverage, organization settings, sample findings",
    after_help = "Exit codes: 0 success, 1 the API refused the request (4xx), 2 usage, 3 credentials or access denied, 4 endpoint unreachable, 5 server error (5xx). See docs/cli.md."
)]
struct Cli {
    /// The API's URL (the stack's ApiUrl output).
    #[arg(long, global = true, env = "PEREGRINE_API_URL", value_name = "URL")]
    endpoint: Option<String>,
    /// The detector id: the stack's name.
    #[arg(long, global = true, env = "PEREGRINE_DETECTOR_ID", value_name = "ID")]
    detector_id: Option<String>,
    /// The region to sign for (default: the AWS configuration's, else the function URL's).
    #[arg(long, global = true, value_name = "REGION")]
    region: Option<String>,
    /// table (default on a terminal) or json (default otherwise: the API's JSON).
    #[arg(long, short = 'o', global = true, value_enum)]
    output: Option<Output>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List, read, count, archive findings and give feedback.
    #[command(subcommand)]
    Findings(FindingsCommand),
    /// Suppression filters (an ARCHIVE filter archives matching findings as they are made).
    #[command(subcommand)]
    Filters(FiltersCommand),
    /// Threat entity sets (S3 lists of known-bad IPs and domains).
    #[command(subcommand)]
    ThreatSets(SetsCommand),
    /// Trusted entity sets (S3 lists of IPs and domains never reported).
    #[command(subcommand)]
    TrustedSets(SetsCommand),
    /// Which clusters are covered by agents.
    #[command(subcommand)]
    Coverage(CoverageCommand),
    /// The organization's configuration (auto-enable, agent management).
    #[command(subcommand)]
    Org(OrgCommand),
    /// Create one sample finding per type (all types, or those given), published like real ones.
    SampleFindings {
        /// A finding type (repeatable; default: every type).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
    },
}

/// Paging flags of the list commands.
#[derive(Args, Debug, Clone)]
pub struct Paging {
    /// Results per page (the API's maxResults).
    #[arg(long, value_name = "N")]
    max: Option<u32>,
    /// Start at this page (a previous answer's nextToken).
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    next_token: Option<String>,
    /// Follow nextToken to the last page.
    #[arg(long)]
    all: bool,
}

#[derive(Subcommand, Debug)]
enum FindingsCommand {
    /// Findings that meet the criteria (ListFindings; the table reads each with GetFindings).
    List {
        #[command(flatten)]
        criteria: CriteriaArgs,
        /// Sort by a field, e.g. updatedAt:desc, severity:asc (default updatedAt:desc).
        #[arg(long, value_name = "FIELD[:asc|desc]")]
        sort: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Findings by id (GetFindings).
    Get {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Counts: by severity, or grouped (GetFindingsStatistics).
    Stats {
        #[command(flatten)]
        criteria: CriteriaArgs,
        /// Group by account, date, type, resource, severity, cluster or namespace (default:
        /// counts by severity).
        #[arg(long, value_name = "GROUP", value_parser = ["account", "date", "type", "resource", "severity", "cluster", "namespace"], ignore_case = true)]
        group_by: Option<String>,
        /// asc or desc by count (with --group-by).
        #[arg(long, value_parser = ["asc", "desc"], ignore_case = true, requires = "group_by")]
        order: Option<String>,
        /// Most groups (with --group-by).
        #[arg(long, value_name = "N", requires = "group_by")]
        max: Option<u32>,
    },
    /// Archive findings.
    Archive {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Unarchive findings.
    Unarchive {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Mark findings useful or not useful, with a comment.
    Feedback {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[arg(
            long,
            conflicts_with = "not_useful",
            required_unless_present = "not_useful"
        )]
        useful: bool,
        #[arg(long)]
        not_useful: bool,
        /// At most 1,024 characters.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum FilterAction {
    Noop,
    Archive,
}

#[derive(Subcommand, Debug)]
enum FiltersCommand {
    /// Create a filter (CreateFilter).
    Create {
        /// 3 to 64 letters, digits, `-`, `_` or `.`.
        #[arg(long)]
        name: String,
        /// NOOP (default) or ARCHIVE (archive matching findings as they are made).
        #[arg(long, value_enum, ignore_case = true)]
        action: Option<FilterAction>,
        /// 1 to 100: the order filters are applied in.
        #[arg(long)]
        rank: Option<u32>,
        #[arg(long)]
        description: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        #[command(flatten)]
        criteria: CriteriaArgs,
    },
    /// Filter names (ListFilters).
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// A filter (GetFilter).
    Get { name: String },
    /// Change a filter; what is not given is kept (UpdateFilter).
    Update {
        name: String,
        #[arg(long, value_enum, ignore_case = true)]
        action: Option<FilterAction>,
        #[arg(long)]
        rank: Option<u32>,
        #[arg(long)]
        description: Option<String>,
        /// Criteria flags replace the filter's criteria as a whole.
        #[command(flatten)]
        criteria: CriteriaArgs,
    },
    /// Delete a filter (DeleteFilter).
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
enum SetsCommand {
    /// Create a set (Create*EntitySet).
    Create {
        #[arg(long)]
        name: String,
        /// TXT, STIX, OTX_CSV, ALIEN_VAULT, PROOF_POINT or FIRE_EYE.
        #[arg(long, default_value = "TXT", value_parser = ["TXT", "STIX", "OTX_CSV", "ALIEN_VAULT", "PROOF_POINT", "FIRE_EYE"], ignore_case = true)]
        format: String,
        /// The S3 object: s3://bucket/key or https://bucket.s3.amazonaws.com/key.
        #[arg(long)]
        location: String,
        /// Activate it now (the detector loads ACTIVE sets).
        #[arg(long)]
        activate: bool,
        #[arg(long, value_name = "ACCOUNT")]
        expected_bucket_owner: Option<String>,
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
    },
    /// Set ids (List*EntitySets).
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// A set (Get*EntitySet).
    Get { id: String },
    /// Change a set; what is not given is kept (Update*EntitySet).
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        location: Option<String>,
        /// true to activate, false to deactivate.
        #[arg(long, value_name = "BOOL")]
        activate: Option<bool>,
        #[arg(long, value_name = "ACCOUNT")]
        expected_bucket_owner: Option<String>,
    },
    /// Delete a set (Delete*EntitySet).
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
enum CoverageCommand {
    /// Covered resources: clusters and their agents' state (ListCoverage).
    List {
        #[command(flatten)]
        filter: CoverageFilter,
        /// Sort by an attribute, e.g. COVERAGE_STATUS:asc, UPDATED_AT:desc.
        #[arg(long, value_name = "ATTRIBUTE[:asc|desc]")]
        sort: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Counts by resource type and by coverage status (GetCoverageStatistics).
    Stats {
        #[command(flatten)]
        filter: CoverageFilter,
    },
}

/// Coverage's filterCriteria.
#[derive(Args, Debug, Clone, Default)]
pub struct CoverageFilter {
    /// The EKS cluster's name (CLUSTER_NAME).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// HEALTHY, UNHEALTHY (COVERAGE_STATUS).
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
    /// The account id (ACCOUNT_ID).
    #[arg(long, value_name = "ID")]
    account: Option<String>,
    /// Any criterion: KEY=VALUE (equals) or KEY!=VALUE (notEquals); repeatable.
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum OrgCommand {
    /// The organization's configuration (DescribeOrganizationConfiguration).
    Show,
    /// Change it (UpdateOrganizationConfiguration).
    Update {
        /// Which accounts are monitored as they join: NEW, ALL or NONE.
        #[arg(long, value_name = "MODE", value_parser = ["NEW", "ALL", "NONE"], ignore_case = true)]
        auto_enable: Option<String>,
        /// Whether new accounts' clusters get agents installed: AUTO or MANUAL.
        #[arg(long, value_name = "MODE", value_parser = ["AUTO", "MANUAL"], ignore_case = true)]
        default_agent_management: Option<String>,
        /// Which clusters are swept: ALL or INCLUDED_ONLY (tagged peregrine:managed).
        #[arg(long, value_name = "SCOPE", value_parser = ["ALL", "INCLUDED_ONLY"], ignore_case = true)]
        cluster_scope: Option<String>,
        /// More fields of the request, as JSON (e.g. the agent management settings); the
        /// flags above are added to it.
        #[arg(long, value_name = "JSON")]
        body: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not errors; everything else clap rejects is a usage error.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(error::exit::USAGE)
            } else {
                ExitCode::from(error::exit::OK)
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("peregrine: starting the runtime: {e}");
            return ExitCode::from(error::exit::SERVER);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(error::exit::OK),
        Err(e) => {
            // Messages quote the server and the caller's values: escaped like any other output.
            eprintln!(
                "peregrine: {}",
                peregrine_termsafe::field(&e.to_string(), 2048)
            );
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let output = cli.output.unwrap_or(if std::io::stdout().is_terminal() {
        Output::Table
    } else {
        Output::Json
    });
    // Arguments are checked before credentials are looked for.
    let request = commands::Request::new(cli.command)?;
    let client = Client::new(Settings {
        endpoint: cli.endpoint,
        detector_id: cli.detector_id,
        region: cli.region,
    })
    .await?;
    let mut stdout = std::io::stdout().lock();
    request.run(&client, output, &mut stdout).await
}
