//! `peregrine-agent`: the node agent binary.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use node_agent::{
    agent::{self, AgentConfig},
    enrich::EnrichConfig,
    probes::LoadOptions,
    sink::JsonLines,
};

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
    /// Run on this host with no cloud: capture, enrich and print.
    Standalone {
        /// Print every enriched event as one JSON object per line.
        #[arg(long)]
        events: bool,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
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
    /// Events buffered between the ring-buffer reader and enrichment.
    #[arg(long, default_value_t = 16384)]
    queue_capacity: usize,
    /// How often the ring buffer is drained when the kernel has not woken the reader, in ms
    /// (the upper bound on capture latency at low event rates).
    #[arg(long, default_value_t = 10)]
    poll_interval_ms: u64,
    /// Processes kept in the process table.
    #[arg(long, default_value_t = 32768)]
    process_table_size: usize,
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
            },
            enrich: EnrichConfig {
                process_table_size: self.process_table_size,
                lineage_depth: self.lineage_depth,
                container_cache_size: self.container_cache_size,
                containerd_socket: self.containerd_socket.clone(),
                containerd_timeout: Duration::from_millis(self.containerd_timeout_ms),
                ..EnrichConfig::default()
            },
            queue_capacity: self.queue_capacity,
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(1)),
            metrics_addr,
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        match cli.command {
            Command::Standalone {
                events: _,
                output,
                common,
            } => {
                let cfg = common.config()?;
                let summary = match output {
                    Some(path) => {
                        let f = std::fs::File::create(&path)
                            .with_context(|| format!("creating {}", path.display()))?;
                        agent::run(cfg, &mut JsonLines::new(f), agent::shutdown_signal()).await?
                    }
                    None => {
                        agent::run(
                            cfg,
                            &mut JsonLines::new(std::io::stdout()),
                            agent::shutdown_signal(),
                        )
                        .await?
                    }
                };
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
