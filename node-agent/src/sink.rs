//! Where enriched events go. Standalone mode writes JSON lines; shipping (the `run` command)
//! batches them to SQS.

use std::io::Write;

use peregrine_event::Event;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing events: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("shipping: {0}")]
    Ship(#[from] crate::ship::ShipError),
}

/// The agent's state, handed to the sink on every tick (heartbeats report it).
pub struct AgentStatus<'a> {
    pub probes: &'a [crate::probes::ProbeStatus],
    pub kernel_ringbuf_full: u64,
    pub kernel_no_scratch: u64,
    pub user_queue_full: u64,
}

impl SinkError {
    /// The reader went away (a closed pipe): stop quietly.
    pub fn is_closed_pipe(&self) -> bool {
        matches!(self, SinkError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

#[allow(async_fn_in_trait)] // used generically, never as a trait object
pub trait EventSink {
    async fn emit(&mut self, ev: Event) -> Result<(), SinkError>;
    /// Called when the input queue is empty and on each tick: write out what is due.
    async fn flush(&mut self) -> Result<(), SinkError>;
    /// Called once at shutdown, after the last event: write out everything.
    async fn close(&mut self) -> Result<(), SinkError> {
        self.flush().await
    }
    /// Called on every tick with the agent's state.
    async fn status(&mut self, _status: &AgentStatus<'_>) -> Result<(), SinkError> {
        Ok(())
    }
}

/// One JSON object per line. serde_json escapes every control character and quote, so a path
/// or argv holding newlines or terminal escapes stays one line of data.
pub struct JsonLines<W: Write> {
    out: std::io::BufWriter<W>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(w: W) -> Self {
        JsonLines {
            out: std::io::BufWriter::with_capacity(64 * 1024, w),
        }
    }
}

impl<W: Write> EventSink for JsonLines<W> {
    async fn emit(&mut self, ev: Event) -> Result<(), SinkError> {
        serde_json::to_writer(&mut self.out, &ev)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush()?;
        Ok(())
    }
}

/// Counts and discards (benchmarks).
#[derive(Default)]
pub struct CountingSink {
    pub events: u64,
}

impl EventSink for CountingSink {
    async fn emit(&mut self, _ev: Event) -> Result<(), SinkError> {
        self.events += 1;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
