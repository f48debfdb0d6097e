//! Writes the sample Lambda events under `events/` (repository root):
//! `cargo run -p peregrine-local --example sample_events`.
//! `tests/events.rs` checks that the committed files are what this writes.

use std::path::PathBuf;

use peregrine_testkit::samples;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events");
    std::fs::create_dir_all(&dir)?;
    let detector = serde_json::to_string_pretty(&samples::detector_event()?)?;
    std::fs::write(dir.join("detector-sqs.json"), detector + "\n")?;
    let publisher = serde_json::to_string_pretty(&samples::publisher_event())?;
    std::fs::write(dir.join("publisher-schedule.json"), publisher + "\n")?;
    println!("wrote {}", dir.display());
    Ok(())
}
