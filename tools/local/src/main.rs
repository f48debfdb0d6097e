//! `peregrine-local`: provisions template.yaml's resources in any endpoint
//! (`AWS_ENDPOINT_URL`) and runs the functions there as Lambda would (see
//! `peregrine_local::functions`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use peregrine_event::Timestamp;
use peregrine_local::coverage::CoverageView;
use peregrine_local::functions::COVERAGE_BINARY;
use peregrine_local::runner::describe_env;
use peregrine_local::{
    FUNCTIONS, LocalStack, Mode, ProvisionOptions, Runner, RunnerOptions, Template,
    function_config, provision,
};
use peregrine_org::config::{AccountSettings, Management, Monitoring, Origin};
use peregrine_store::{ConfigStore, DynamoConfigStore, DynamoCoverageStore};
use peregrine_testkit::{builders, samples};

#[derive(Parser)]
#[command(
    version,
    about = "Run Peregrine's functions against any AWS endpoint (AWS_ENDPOINT_URL)"
)]
struct Cli {
    /// The SAM template: the source of every resource name and setting.
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// The local stack name: resources are named <prefix>-<LogicalId>.
    #[arg(long, default_value = "peregrine")]
    prefix: String,
    /// Create missing resources (without it they are only checked).
    #[arg(long)]
    provision: bool,
    /// Template parameter overrides, NAME=VALUE.
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    parameters: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision or check, print the environment, then run every function on its trigger
    /// (poll the queues, fire the schedules, serve the HTTP endpoints) until SIGINT/SIGTERM.
    Serve {
        /// Failed messages become visible again after this many seconds (Lambda waits the
        /// queue's visibility timeout).
        #[arg(long)]
        retry_after_seconds: Option<u64>,
        /// How often the publisher runs (default: the template's schedule, else 60).
        #[arg(long)]
        publish_interval_seconds: Option<u64>,
        /// How often the coverage sweeper runs (default: the template's CoverageSweepRate).
        #[arg(long)]
        sweep_interval_seconds: Option<u64>,
        /// Most messages per invocation of an SQS-triggered function (default: the template's
        /// BatchSize).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Also write the `export` lines to this file once the resources exist.
        #[arg(long)]
        exports_file: Option<PathBuf>,
        /// The port of the first HTTP endpoint (function URL, HTTP API) on 127.0.0.1; the next
        /// ones take the following ports. Default: any free port for each.
        #[arg(long, default_value_t = 0)]
        http_port: u16,
    },
    /// Provision or check, print the environment and exit.
    Env,
    /// Run one coverage sweep (as its schedule would) and print its summary as JSON; the
    /// coverage itself is in the CoverageTable the environment names (`coverage` prints it).
    Sweep,
    /// Print the coverage table of the latest sweep: per cluster its status, covered/compatible
    /// nodes, worst issue and the nodes without an agent; accounts not swept; the statistics.
    Coverage {
        /// Every node of every cluster too, with its last heartbeat.
        #[arg(long)]
        nodes: bool,
    },
    /// Turn runtime monitoring on or off for accounts, as an administrator does: the
    /// accounts' rows in ConfigTable (origin ADMINISTRATOR), which the next sweep reads.
    SetAccount {
        /// 12-digit account ids.
        #[arg(required = true, value_name = "ACCOUNT_ID")]
        accounts: Vec<String>,
        /// ENABLED or DISABLED.
        #[arg(long)]
        monitoring: Monitoring,
        /// AUTO or MANUAL (default: the row's, else the organization's default).
        #[arg(long)]
        management: Option<Management>,
    },
    /// Send the heartbeats of agents on nodes of one cluster (every probe attached, nothing
    /// dropped), as the agents would; with --every-seconds, again and again until
    /// SIGINT/SIGTERM.
    SendHeartbeat {
        /// Default: the detector's queue from the template.
        #[arg(long, env = "PEREGRINE_QUEUE_URL")]
        queue_url: Option<String>,
        /// The agents' --cluster-name.
        #[arg(long)]
        cluster_name: String,
        /// The agents' --cluster-arn (it must name --cluster-name); without it the heartbeats
        /// are keyed by the bare name, as from agents that were not told the ARN.
        #[arg(long)]
        cluster_arn: Option<peregrine_event::ClusterArn>,
        /// A node's name (EKS's default: the instance's private DNS name); one agent per node.
        #[arg(long = "node-name", required = true)]
        node_names: Vec<String>,
        /// Send again every N seconds (the agent's default heartbeat interval is 60).
        #[arg(long)]
        every_seconds: Option<u64>,
    },
    /// Send a sample batch (a compromised pod among ordinary node activity) and a heartbeat.
    SendSample {
        /// Default: the detector's queue from the template.
        #[arg(long, env = "PEREGRINE_QUEUE_URL")]
        queue_url: Option<String>,
        #[arg(long, default_value = "i-0sample0000000001")]
        agent_id: String,
        /// The batch's sequence number (a repeated one is a redelivery: counted once).
        #[arg(long, default_value_t = 1)]
        sequence: u64,
    },
}

fn exports(stack: &LocalStack) -> String {
    let mut out = String::new();
    let mut vars = stack.exports();
    // The API's detector id (the stack's name), which the `peregrine` CLI reads.
    if let Some(id) = stack
        .function_env("ApiFunction")
        .and_then(|env| env.get("DETECTOR_ID").cloned())
    {
        vars.push(("PEREGRINE_DETECTOR_ID".to_owned(), id));
    }
    for (k, v) in vars {
        out.push_str(&format!("export {k}='{}'\n", v.replace('\'', "'\\''")));
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    peregrine_lambda::init_logging();
    let cli = Cli::parse();
    let template = Template::load(&cli.template)?;
    let mut parameters = BTreeMap::new();
    for p in &cli.parameters {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--parameter {p:?}: expected NAME=VALUE");
        };
        parameters.insert(k.to_owned(), v.to_owned());
    }
    let sdk = peregrine_aws::sdk_config().await;
    let options = ProvisionOptions {
        prefix: cli.prefix.clone(),
        parameters,
        mode: if cli.provision {
            Mode::Create
        } else {
            Mode::Check
        },
    };
    let stack = provision(&sdk, &template, &options)
        .await
        .context("provisioning the template's resources")?;
    for (name, reason) in &stack.skipped_outputs {
        tracing::debug!(output = %name, reason = %reason, "output has no local value");
    }
    match cli.command {
        Command::Env => {
            print!("{}", exports(&stack));
        }
        Command::Sweep => {
            let runner = Runner::from_stack(&sdk, &stack, RunnerOptions::from_stack(&stack))?;
            match runner.sweep_once().await? {
                Some(summary) => println!("{}", serde_json::to_string_pretty(&summary)?),
                None => bail!("the sweep timed out"),
            }
        }
        Command::Coverage { nodes } => {
            let config: peregrine_coverage::Config = function_config(&stack, COVERAGE_BINARY)?;
            let store = DynamoCoverageStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                &config.coverage_table,
            );
            print!("{}", CoverageView::load(&store, nodes).await?.render());
        }
        Command::SetAccount {
            accounts,
            monitoring,
            management,
        } => {
            let config: peregrine_coverage::Config = function_config(&stack, COVERAGE_BINARY)?;
            let store =
                DynamoConfigStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.config_table);
            for account in &accounts {
                set_account(&store, account, monitoring, management).await?;
                println!("{account}: monitoring {monitoring}");
            }
        }
        Command::SendHeartbeat {
            queue_url,
            cluster_name,
            cluster_arn,
            node_names,
            every_seconds,
        } => {
            if let Some(arn) = &cluster_arn
                && arn.cluster_name() != cluster_name
            {
                anyhow::bail!("--cluster-arn {arn} does not name --cluster-name {cluster_name}");
            }
            let url = match queue_url {
                Some(u) => u,
                None => detector_queue(&stack)?,
            };
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let every = every_seconds.map(|s| Duration::from_secs(s.max(1)));
            let cluster = (cluster_name.as_str(), cluster_arn.as_ref());
            send_heartbeats(&sqs, &url, cluster, &node_names, every).await?;
        }
        Command::Serve {
            retry_after_seconds,
            publish_interval_seconds,
            sweep_interval_seconds,
            batch_size,
            exports_file,
            http_port,
        } => {
            let mut text = exports(&stack);
            for f in FUNCTIONS {
                if let Some(env) = describe_env(&stack, f.binary) {
                    tracing::info!(function = f.binary, trigger = ?f.trigger, environment = ?env, "handler environment");
                }
            }
            let mut runner_options = RunnerOptions::from_stack(&stack);
            if let Some(s) = retry_after_seconds {
                runner_options.retry_after = Some(Duration::from_secs(s));
            }
            if let Some(s) = publish_interval_seconds {
                runner_options.publish_interval = Duration::from_secs(s.max(1));
            }
            if let Some(s) = sweep_interval_seconds {
                runner_options.sweep_interval = Duration::from_secs(s.max(1));
            }
            if let Some(n) = batch_size {
                runner_options.batch_size = n.max(1);
            }
            runner_options.http_port = http_port;
            let runner = Runner::from_stack(&sdk, &stack, runner_options)?;
            // The template's ApiUrl output, as the local listener serves it (the CLI's
            // PEREGRINE_API_URL).
            if let Some(api) = runner
                .http_endpoints()
                .into_iter()
                .find(|e| e.function == "ApiFunction")
            {
                text.push_str(&format!("export PEREGRINE_API_URL='{}'\n", api.url()));
            }
            print!("{text}");
            for e in runner.http_endpoints() {
                println!("# {} ({:?}): {}", e.function, e.kind, e.url());
            }
            std::io::stdout().flush()?;
            if let Some(path) = exports_file {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, &text)?;
                std::fs::rename(&tmp, &path)?;
            }
            tracing::info!(
                queue = runner.queue().map(|q| q.url.as_str()).unwrap_or(""),
                "serving"
            );
            runner.run(shutdown_signal()).await;
        }
        Command::SendSample {
            queue_url,
            agent_id,
            sequence,
        } => {
            let url = match queue_url {
                Some(u) => u,
                None => detector_queue(&stack)?,
            };
            let now = Timestamp::now();
            let events = samples::busy_node(2_000, 2, 3, sequence);
            let mut bodies: Vec<String> = samples::encode(&agent_id, sequence, &events, now)?
                .into_iter()
                .map(|m| m.body)
                .collect();
            bodies.push(samples::heartbeat_body(&agent_id, sequence + 1, now)?);
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            for body in &bodies {
                let sent = sqs
                    .send_message()
                    .queue_url(&url)
                    .message_body(body)
                    .send()
                    .await?;
                println!(
                    "sent {} ({} bytes)",
                    sent.message_id().unwrap_or("?"),
                    body.len()
                );
            }
        }
    }
    Ok(())
}

/// The queue of the template's SQS-triggered function (the detector's events queue).
fn detector_queue(stack: &LocalStack) -> anyhow::Result<String> {
    stack
        .functions
        .values()
        .find_map(|f| stack.event_source_queue(&f.logical_id))
        .map(|q| q.url.clone())
        .context("the template has no SQS event source")
}

/// Writes `account`'s row as an administrator (the API to come) would: monitoring as given,
/// management as given or kept, origin ADMINISTRATOR, conditional on the row read.
async fn set_account(
    store: &DynamoConfigStore,
    account: &str,
    monitoring: Monitoring,
    management: Option<Management>,
) -> anyhow::Result<()> {
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{account:?} is not an account id (12 digits)");
    }
    // A sweep writing the same row meanwhile makes the conditional put fail: read again.
    for _ in 0..5 {
        let config = store.load().await?;
        let row = config.accounts.get(account);
        let settings = AccountSettings {
            account_id: account.to_owned(),
            monitoring,
            management: management
                .or(row.map(|r| r.management))
                .or(config.org.as_ref().map(|o| o.default_management))
                .unwrap_or(Management::Manual),
            cluster_scope: row.and_then(|r| r.cluster_scope),
            origin: Origin::Administrator,
            updated_at: Timestamp::now(),
        };
        if store
            .put_account(&settings, row.map(|r| r.updated_at))
            .await?
        {
            return Ok(());
        }
    }
    bail!("{account}: the row kept changing while it was written")
}

/// Sends one heartbeat per node, then (with `every`) again every `every` until SIGINT/SIGTERM.
async fn send_heartbeats(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    (cluster, arn): (&str, Option<&peregrine_event::ClusterArn>),
    nodes: &[String],
    every: Option<Duration>,
) -> anyhow::Result<()> {
    // One agent per node, with an id of its own for this run (an agent keeps its id in its
    // spool; these agents have none).
    let agents: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (uuid::Uuid::new_v4().to_string(), n.clone()))
        .collect();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let now = Timestamp::now();
        for (agent_id, node) in &agents {
            let identity = peregrine_wire::AgentIdentity {
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                cluster_arn: arn.cloned(),
                ..builders::agent_identity(agent_id, node, cluster)
            };
            // No batch sent yet: the next batch's sequence stays 1.
            let body = samples::reporting_heartbeat_body(identity, 1, now)?;
            sqs.send_message()
                .queue_url(url)
                .message_body(body)
                .send()
                .await
                .with_context(|| format!("sending {node}'s heartbeat"))?;
        }
        tracing::info!(cluster, nodes = agents.len(), "heartbeats sent");
        let Some(every) = every else { return Ok(()) };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
