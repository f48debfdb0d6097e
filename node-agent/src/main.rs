//! `peregrine-agent`: the node agent binary.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use node_agent::{
    agent::{self, AgentConfig},
    blinding::BlindingConfig,
    enrich::EnrichConfig,
    health::Health,
    metrics::Metrics,
    probes::{CompatSyscalls, LoadOptions},
    proctable::procfs,
    ship::{ShipConfig, ShippingSink},
    spool,
    standalone::{self, ColorChoice, FormatChoice, StandaloneConfig},
};
use peregrine_detect::Maturity;
use peregrine_event::ClusterArn;

#[derive(Parser)]
#[command(
    name = "peregrine-agent",
    version,
    about = "Peregrine runtime threat detection: the node agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run on this host with no cloud: capture, detect and print findings (one line each on a
    /// terminal; GuardDuty's finding format, one JSON object per line, otherwise or with
    /// --format json), or with --events every enriched event (JSON lines).
    Standalone {
        /// Print every enriched event instead of findings.
        #[arg(long)]
        events: bool,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        rules: RuleArgs,
        /// Cluster name written into findings.
        #[arg(long, default_value = "standalone", env = "PEREGRINE_CLUSTER_NAME")]
        cluster_name: String,
        /// A finding that repeats is printed again, with its count, at most this often.
        #[arg(long, default_value_t = 60)]
        update_interval_s: u64,
        /// How findings are printed: auto is text on a terminal and JSON otherwise (a pipe, a
        /// file given with --output).
        #[arg(long, value_enum, default_value_t = FormatChoice::Auto)]
        format: FormatChoice,
        /// Colour the severity in the text format; auto: on a terminal unless NO_COLOR is set.
        #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
        color: ColorChoice,
        #[command(flatten)]
        common: Common,
    },
    /// List the rules that would load (the built-in catalog and --rules files): id, maturity,
    /// severity, finding type, kinds and title. Needs no root.
    Rules {
        #[command(flatten)]
        rules: RuleArgs,
        /// One JSON object per rule instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run on an EKS node: capture and enrich, then batch, spool and ship to the events queue.
    /// Endpoint, region and credentials come from standard AWS configuration (IRSA or Pod
    /// Identity on EKS; AWS_ENDPOINT_URL for a local stand-in).
    Run {
        #[command(flatten)]
        ship: ShipArgs,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Clone)]
struct RuleArgs {
    /// Additional rule files (YAML), on top of the built-in catalog; repeatable. Every rule of
    /// such a file loads, whatever its maturity.
    #[arg(long = "rules", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Maturities of the built-in rules to load (stable, incubating, sandbox); comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "stable", value_parser = parse_maturity)]
    maturity: Vec<Maturity>,
}

fn parse_maturity(s: &str) -> Result<Maturity, String> {
    Maturity::parse(s).ok_or_else(|| format!("{s:?} is not stable, incubating or sandbox"))
}

#[derive(Args, Clone)]
struct ShipArgs {
    /// URL of the events queue (the stack's EventsQueueUrl output).
    #[arg(long, env = "PEREGRINE_QUEUE_URL")]
    queue_url: String,
    /// EKS cluster name.
    #[arg(long, env = "PEREGRINE_CLUSTER_NAME")]
    cluster_name: String,
    /// The cluster's ARN (`arn:aws:eks:<region>:<account>:cluster/<name>`). Findings then carry
    /// the cluster's account, region and ARN, and coverage joins this node to the right
    /// cluster when several accounts or regions have one of the same name. Managed installs
    /// set it; empty means not given.
    #[arg(long, env = "PEREGRINE_CLUSTER_ARN", default_value = "")]
    cluster_arn: String,
    /// Kubernetes node name (default: the host name).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Where sealed batches wait for SQS; keep it on the node's disk (a hostPath).
    #[arg(long, default_value = "/var/lib/peregrine/spool")]
    spool_dir: PathBuf,
    /// Spool bound, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    spool_max_bytes: u64,
    /// Spool bound, in messages.
    #[arg(long, default_value_t = 100_000)]
    spool_max_messages: usize,
    /// What a full spool drops.
    #[arg(long, value_enum, default_value_t = spool::FullPolicy::DropOldest)]
    spool_full_policy: spool::FullPolicy,
    /// Bound, in bytes, on messages held in memory while the spool cannot write to disk.
    #[arg(long, default_value_t = 64 << 20)]
    spool_max_memory_bytes: u64,
    /// Seal a batch at this many events...
    #[arg(long, default_value_t = 2000)]
    batch_max_events: usize,
    /// ... or when its oldest event is this old (ms).
    #[arg(long, default_value_t = 1000)]
    batch_max_delay_ms: u64,
    /// Heartbeat period (s).
    #[arg(long, default_value_t = 60)]
    heartbeat_interval_s: u64,
    /// At shutdown, wait this long (s) for the spool to drain; the rest is sent on next start.
    #[arg(long, default_value_t = 5)]
    drain_timeout_s: u64,
}

impl ShipArgs {
    /// `--cluster-arn`, checked against `--cluster-name`.
    fn cluster_arn(&self) -> anyhow::Result<Option<ClusterArn>> {
        if self.cluster_arn.is_empty() {
            return Ok(None);
        }
        let arn = ClusterArn::parse(&self.cluster_arn).context("--cluster-arn")?;
        if arn.cluster_name() != self.cluster_name {
            anyhow::bail!(
                "--cluster-arn {arn} names cluster {:?}, not --cluster-name {:?}",
                arn.cluster_name(),
                self.cluster_name
            );
        }
        Ok(Some(arn))
    }

    fn config(&self) -> anyhow::Result<ShipConfig> {
        Ok(ShipConfig {
            queue_url: self.queue_url.clone(),
            cluster_name: self.cluster_name.clone(),
            cluster_arn: self.cluster_arn()?,
            node_name: self.node_name.clone().unwrap_or_else(procfs::hostname),
            batch_max_events: self.batch_max_events.max(1),
            batch_max_delay: Duration::from_millis(self.batch_max_delay_ms),
            spool_dir: self.spool_dir.clone(),
            spool: spool::Limits {
                max_messages: self.spool_max_messages.max(1),
                max_bytes: self.spool_max_bytes,
                policy: self.spool_full_policy,
                max_memory_bytes: self.spool_max_memory_bytes,
            },
            heartbeat_interval: Duration::from_secs(self.heartbeat_interval_s.max(1)),
            drain_timeout: Duration::from_secs(self.drain_timeout_s),
        })
    }
}

#[derive(Args, Clone)]
struct Common {
    /// Prometheus /metrics and /healthz address; "off" disables it.
    #[arg(long, default_value = "127.0.0.1:9464", env = "PEREGRINE_METRICS_ADDR")]
    metrics_addr: String,
    /// Kernel ring buffer size (rounded up to a power of two).
    #[arg(long, default_value_t = 4 << 20)]
    ring_buffer_bytes: u32,
    /// Capture read-only opens too (benchmarks and debugging; very noisy).
    #[arg(long)]
    capture_all_opens: bool,
    /// How 32-bit syscalls are watched: with their results, at entry only (half the cost on
    /// every syscall of the node), or not at all.
    #[arg(long, value_enum, default_value_t = CompatSyscalls::Results)]
    compat_syscalls: CompatSyscalls,
    /// Events buffered between the ring-buffer reader and enrichment.
    #[arg(long, default_value_t = 16384)]
    queue_capacity: usize,
    /// Bytes those events may hold (strings and their allocations); an event that does not
    /// fit is dropped and counted as a full queue.
    #[arg(long, default_value_t = node_agent::eventq::DEFAULT_QUEUE_BYTES)]
    queue_bytes: usize,
    /// How often the ring buffer is drained when the kernel has not woken the reader, in ms
    /// (the upper bound on capture latency at low event rates).
    #[arg(long, default_value_t = 10)]
    poll_interval_ms: u64,
    /// Processes kept in the process table.
    #[arg(long, default_value_t = 32768)]
    process_table_size: usize,
    /// Bytes the process table may hold (its processes' exe, cwd, argv, LD_* values); the least
    /// recently used go first when either bound is reached.
    #[arg(long, default_value_t = node_agent::proctable::DEFAULT_MAX_BYTES)]
    process_table_bytes: usize,
    /// Ancestors reported in each process's lineage.
    #[arg(long, default_value_t = 8)]
    lineage_depth: usize,
    /// containerd's gRPC socket.
    #[arg(long, default_value = node_agent::container::DEFAULT_SOCKET, env = "PEREGRINE_CONTAINERD_SOCKET")]
    containerd_socket: PathBuf,
    /// Deadline for one containerd lookup, in milliseconds.
    #[arg(long, default_value_t = 500)]
    containerd_timeout_ms: u64,
    /// Containers whose metadata is cached.
    #[arg(long, default_value_t = 4096)]
    container_cache_size: usize,
    /// Bytes the container caches (cgroup paths and metadata: labels, image) may hold together.
    #[arg(long, default_value_t = node_agent::container::DEFAULT_MAX_BYTES)]
    container_cache_bytes: usize,
    /// Bytes the new-binary tracker's two indexes (written paths and inodes) may hold together.
    #[arg(long, default_value_t = node_agent::newbin::DEFAULT_MAX_BYTES)]
    new_binary_cache_bytes: usize,
    /// Where the agent keeps its start history, to see restart loops (default: none in
    /// standalone, the spool directory in run).
    #[arg(long, env = "PEREGRINE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Blinding: events lost in this many consecutive status ticks (1 s each) is sustained
    /// drops; 0 turns the check off.
    #[arg(long, default_value_t = 3, env = "PEREGRINE_BLIND_DROP_TICKS")]
    blind_drop_ticks: u32,
    /// Blinding: a tick counts only if more than this fraction of its events was lost
    /// (0 to 1; 0: any loss).
    #[arg(long, default_value_t = 0.0, value_parser = parse_ratio, env = "PEREGRINE_BLIND_DROP_RATIO")]
    blind_drop_ratio: f64,
    /// Blinding: this many starts within --blind-restart-window-s is a restart loop (at most
    /// 32); 0 turns the check off.
    #[arg(long, default_value_t = 3, env = "PEREGRINE_BLIND_RESTARTS")]
    blind_restarts: u32,
    /// Blinding: the restart-loop window, in seconds.
    #[arg(long, default_value_t = 600, env = "PEREGRINE_BLIND_RESTART_WINDOW_S")]
    blind_restart_window_s: u64,
    /// How often the probes' links are re-checked, in seconds; 0 turns the re-check off.
    #[arg(long, default_value_t = 10, env = "PEREGRINE_PROBE_CHECK_INTERVAL_S")]
    probe_check_interval_s: u64,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a fraction from 0 to below 1")),
    }
}

impl Common {
    fn config(&self) -> anyhow::Result<AgentConfig> {
        let metrics_addr = match self.metrics_addr.as_str() {
            "off" | "" => None,
            a => Some(
                a.parse::<SocketAddr>()
                    .with_context(|| format!("--metrics-addr {a:?}"))?,
            ),
        };
        Ok(AgentConfig {
            load: LoadOptions {
                ring_buffer_bytes: self.ring_buffer_bytes,
                capture_all_opens: self.capture_all_opens,
                compat_syscalls: self.compat_syscalls,
            },
            enrich: EnrichConfig {
                process_table_size: self.process_table_size,
                process_table_bytes: self.process_table_bytes,
                lineage_depth: self.lineage_depth,
                container_cache_size: self.container_cache_size,
                container_cache_bytes: self.container_cache_bytes,
                new_binary_cache_bytes: self.new_binary_cache_bytes,
                containerd_socket: self.containerd_socket.clone(),
                containerd_timeout: Duration::from_millis(self.containerd_timeout_ms),
                ..EnrichConfig::default()
            },
            queue_capacity: self.queue_capacity,
            queue_bytes: self.queue_bytes,
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(1)),
            metrics_addr,
            blinding: BlindingConfig {
                drop_ticks: self.blind_drop_ticks,
                drop_ratio: self.blind_drop_ratio,
                restarts: self
                    .blind_restarts
                    .min(node_agent::starts::MAX_STARTS as u32),
                restart_window: Duration::from_secs(self.blind_restart_window_s),
                probe_check_interval: Duration::from_secs(self.probe_check_interval_s),
            },
            state_dir: self.state_dir.clone(),
            ..AgentConfig::default()
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Command::Rules { rules, json } = &cli.command {
        let engine = standalone::load_rules(&rules.maturity, &rules.files)?;
        let stdout = std::io::stdout();
        return standalone::write_rules(&engine, *json, std::io::BufWriter::new(stdout.lock()))
            .context("writing the rule list");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        match cli.command {
            Command::Standalone {
                events,
                output,
                rules,
                cluster_name,
                update_interval_s,
                format,
                color,
                common,
            } => {
                if events && format == FormatChoice::Text {
                    anyhow::bail!("--format text is for findings; --events prints JSON lines");
                }
                let cfg = common.config()?;
                let standalone = StandaloneConfig {
                    events,
                    output,
                    rules: rules.files,
                    maturities: rules.maturity,
                    cluster_name,
                    update_interval: Duration::from_secs(update_interval_s),
                    format,
                    color,
                };
                let summary = standalone::run(
                    cfg,
                    standalone,
                    Metrics::default(),
                    Health::default(),
                    agent::shutdown_signal(),
                )
                .await?;
                if let Some(findings) = summary.findings {
                    tracing::info!(findings, "detection summary");
                }
                tracing::info!(
                    events = summary.agent.events,
                    loss_events = summary.agent.loss_events,
                    "stopped"
                );
                Ok(())
            }
            Command::Rules { .. } => Ok(()),
            Command::Run { ship, common } => {
                let mut cfg = common.config()?;
                // The spool directory is the agent's persistent directory on the node.
                cfg.state_dir.get_or_insert_with(|| ship.spool_dir.clone());
                let metrics = Metrics::default();
                let health = Health::default();
                let sdk = peregrine_aws::sdk_config().await;
                let mut sink =
                    ShippingSink::start(&sdk, ship.config()?, metrics.clone(), health.clone())
                        .with_context(|| {
                            format!("opening the spool in {}", ship.spool_dir.display())
                        })?;
                tracing::info!(agent_id = sink.agent_id(), queue = %ship.queue_url, "shipping");
                let summary =
                    agent::run(cfg, metrics, health, &mut sink, agent::shutdown_signal()).await?;
                tracing::info!(
                    events = summary.events,
                    loss_events = summary.loss_events,
                    "stopped"
                );
                Ok(())
            }
        }
    })
}
