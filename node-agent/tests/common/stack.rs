//! The cloud half for the end-to-end test and the latency benchmark: a responder's queue behind
//! an EventBridge rule on the findings bus, and what arrives on it. moto stands in for AWS.

use std::time::{Duration, SystemTime};

use peregrine_local::runner::Runner;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use aws_sdk_eventbridge::types::Target;
use aws_sdk_sqs::types::QueueAttributeName;

/// The local runner doing Lambda's job (event-source mapping, schedule) on a runtime's tasks.
pub struct RunningRunner {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Runs `runner` on `rt` until [`RunningRunner::stop`].
pub fn spawn_runner(rt: &Runtime, runner: Runner) -> RunningRunner {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = rt.spawn(async move {
        runner
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    RunningRunner { stop, task }
}

impl RunningRunner {
    /// Stops the runner and waits for its last poll to finish.
    pub fn stop(self, rt: &Runtime) {
        let _ = self.stop.send(());
        rt.block_on(self.task).unwrap();
    }
}

/// A rule named `name` on `bus` sending every Peregrine finding to a new queue of that name, as
/// a responder would set one up. Returns the queue URL.
pub async fn all_findings_queue(sdk: &aws_config::SdkConfig, bus: &str, name: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let eb = aws_sdk_eventbridge::Client::new(sdk);
    eb.put_rule()
        .name(name)
        .event_bus_name(bus)
        .event_pattern(r#"{"source":["peregrine"],"detail-type":["Peregrine Finding"]}"#)
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule(name)
        .event_bus_name(bus)
        .targets(Target::builder().id("queue").arn(arn).build().unwrap())
        .send()
        .await
        .unwrap();
    url
}

/// Message bodies received from `url` in one long poll of up to 1 s; they are deleted from the
/// queue.
pub async fn receive_bodies(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for m in out.messages() {
        bodies.push(m.body().unwrap().to_string());
        sqs.delete_message()
            .queue_url(url)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }
    bodies
}

/// EventBridge envelopes received from `url` in one long poll, each with its arrival time.
pub async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<(serde_json::Value, SystemTime)> {
    let bodies = receive_bodies(sqs, url).await;
    let now = SystemTime::now();
    bodies
        .iter()
        .map(|b| (serde_json::from_str(b).unwrap(), now))
        .collect()
}

/// An RFC 3339 time from a finding (`eventFirstSeen`, `createdAt`).
pub fn iso_to_system(s: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(t.unix_timestamp_nanos()).unwrap())
}
