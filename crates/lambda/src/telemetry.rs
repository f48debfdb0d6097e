//! JSON logs through `tracing-subscriber`, one object per line on stderr, filtered by
//! `RUST_LOG` (the template sets `info`). Spans carry the SQS message id, so every line about a
//! message names it. Payloads are never logged: they hold command lines.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber; a second call (tests, the local runner) is a no-op.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}
