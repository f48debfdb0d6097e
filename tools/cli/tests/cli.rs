//! The built `peregrine` binary against the local stack: moto provisioned from template.yaml,
//! findings made by the real detector from sample attacks, and the API served by the local
//! runner behind its AWS_IAM function URL on loopback (as `peregrine-local serve` does). Every
//! command runs in both JSON and table output; tables are checked for alignment and escaping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use peregrine_event::Timestamp;
use peregrine_local::functions::API_BINARY;
use peregrine_local::{FUNCTIONS, Runner, RunnerOptions};
use peregrine_provision::{ProvisionOptions, Template, function_config, provision};
use peregrine_testkit::builders::agent_identity;
use peregrine_testkit::{lambda, moto::Moto, samples};
use serde_json::Value;

/// A pod name an attacker chose (containerd's labels are the workload's): a colour, a title
/// change and a forged line.
const HOSTILE_POD: &str = "web-\u{1b}[31mred\u{1b}]0;pwned\u{7}\nforged";

/// Three findings per attacked pod (release_agent 8, SSH key 5, new binary 5).
const FINDINGS: usize = 9;

/// The local stack, served from a thread of its own until dropped.
struct Stack {
    url: String,
    detector: String,
    region: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Attacks in pods 0 and 1 of cluster-a and in pod 10 (named [`HOSTILE_POD`]) of cluster-b,
/// through the detector.
async fn detect(sdk: &aws_config::SdkConfig, stack: &peregrine_provision::LocalStack) {
    let config: peregrine_detector::Config =
        function_config(stack, peregrine_detector::BINARY).unwrap();
    let deps = peregrine_detector::AwsDeps::from_sdk(sdk, config).unwrap();
    let mut bodies = Vec::new();
    for (cluster, pods) in [("cluster-a", vec![0, 1]), ("cluster-b", vec![10])] {
        let mut events = Vec::new();
        for i in pods {
            for mut e in samples::attack(i, samples::T0 + i64::from(i) * 1_000_000_000) {
                if i == 10
                    && let Some(c) = e.container.as_mut()
                {
                    Arc::make_mut(c).pod_name = Some(HOSTILE_POD.into());
                }
                events.push(e);
            }
        }
        let identity = agent_identity(&format!("agent-{cluster}"), "node-1", cluster);
        for m in samples::encode_as(identity, 1, &events, Timestamp::now()).unwrap() {
            bodies.push(m.body);
        }
    }
    for (i, body) in bodies.iter().enumerate() {
        let id = format!("m-{i}");
        let event = lambda_runtime::LambdaEvent::new(
            lambda::sqs_event(&stack.queues["EventsQueue"].arn, &[(&id, body)]),
            lambda::context("req", &stack.functions["DetectorFunction"].arn),
        );
        let r = peregrine_detector::handle(&deps, event).await.unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
    }
}

impl Stack {
    fn start() -> Stack {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let moto = Moto::start().expect("moto starts (scripts/setup installs it)");
                let sdk = moto.sdk_config().await;
                let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
                let template = Template::load(&path).unwrap();
                let stack = provision(&sdk, &template, &ProvisionOptions::default())
                    .await
                    .unwrap();
                detect(&sdk, &stack).await;
                let api: Vec<_> = FUNCTIONS
                    .iter()
                    .filter(|f| f.binary == API_BINARY)
                    .copied()
                    .collect();
                let runner =
                    Runner::new(&sdk, &stack, RunnerOptions::from_stack(&stack), &api).unwrap();
                let endpoint = runner
                    .http_endpoints()
                    .into_iter()
                    .find(|e| e.function == "ApiFunction")
                    .expect("ApiFunction has an HTTP endpoint");
                let detector = stack.function_env("ApiFunction").unwrap()["DETECTOR_ID"].clone();
                ready_tx
                    .send((endpoint.url(), detector, stack.context.region.clone()))
                    .unwrap();
                runner
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await;
                drop(moto);
            });
        });
        let (url, detector, region) = ready_rx.recv().expect("the local stack started");
        Stack {
            url,
            detector,
            region,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_peregrine"));
        c.args(args)
            .env("PEREGRINE_API_URL", &self.url)
            .env("PEREGRINE_DETECTOR_ID", &self.detector)
            .env("AWS_REGION", &self.region)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            // Only the environment's credentials: no profile, no instance metadata.
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_DEFAULT_REGION");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Exit 0 and JSON on stdout (the default when stdout is not a terminal).
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", describe(&out)));
        v
    }

    /// Exit 0 and a table on stdout (`--output table`).
    fn table(&self, args: &[&str]) -> String {
        let out = self.run(&[args, &["--output", "table"]].concat());
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        let s = String::from_utf8(out.stdout).unwrap();
        assert_terminal_safe(&s);
        s
    }
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Nothing in `s` acts on a terminal but the newlines that end its lines.
fn assert_terminal_safe(s: &str) {
    for c in s.chars() {
        assert!(
            c == '\n' || !(c.is_control() || matches!(c, '\u{202a}'..='\u{202e}')),
            "{c:?} reaches the terminal in:\n{s}"
        );
    }
}

/// The cells of a table's lines, split at the heading's column starts; asserts every line is
/// aligned on them (each column starts after two spaces, or at the line's end).
fn columns(table: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = table.lines();
    let heading = lines.next().unwrap();
    let mut starts = vec![0];
    let chars: Vec<char> = heading.chars().collect();
    for i in 1..chars.len() {
        if chars[i] != ' ' && chars[i - 1] == ' ' {
            starts.push(i);
        }
    }
    let split = |line: &str| -> Vec<String> {
        let chars: Vec<char> = line.chars().collect();
        starts
            .iter()
            .enumerate()
            .map(|(n, &s)| {
                if s > 0 && s <= chars.len() {
                    assert!(
                        s >= 2 && chars[s - 1] == ' ' && chars[s - 2] == ' ',
                        "column {n} does not start at {s} in {line:?}\n{table}"
                    );
                }
                let end = starts.get(n + 1).copied().unwrap_or(chars.len());
                chars
                    .get(s.min(chars.len())..end.min(chars.len()))
                    .unwrap()
                    .iter()
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    };
    let heads = split(heading);
    let rows = lines.map(split).collect();
    (heads, rows)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn findings_commands_in_json_and_table_output() {
    let stack = Stack::start();

    // list: one page, then every page of one.
    let all = stack.json(&["findings", "list"]);
    let explicit = stack.run(&["findings", "list", "--output", "json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&explicit.stdout).unwrap(),
        all,
        "--output json is the default off a terminal"
    );
    let ids = strings(&all["findingIds"]);
    assert_eq!(ids.len(), FINDINGS, "{all}");
    assert_eq!(all["nextToken"], "");
    let first = stack.json(&["findings", "list", "--max", "2"]);
    assert_eq!(strings(&first["findingIds"]), ids[..2]);
    let next = first["nextToken"].as_str().unwrap();
    assert!(!next.is_empty(), "{first}");
    let second = stack.json(&["findings", "list", "--max", "2", "--next-token", next]);
    assert_eq!(strings(&second["findingIds"]), ids[2..4]);
    let paged = stack.json(&["findings", "list", "--max", "1", "--all"]);
    assert_eq!(
        strings(&paged["findingIds"]),
        ids,
        "9 pages of one, in order"
    );

    // Criteria flags.
    let high = stack.json(&["findings", "list", "--severity", "high"]);
    assert_eq!(strings(&high["findingIds"]).len(), 3, "{high}");
    let b = stack.json(&[
        "findings",
        "list",
        "--cluster",
        "cluster-b",
        "--archived",
        "false",
    ]);
    assert_eq!(strings(&b["findingIds"]).len(), 3, "{b}");
    let typed = stack.json(&[
        "findings",
        "list",
        "--type",
        "Persistence:Runtime/SensitiveFileModified",
        "--namespace",
        "payments",
        "--since",
        "3650d",
        "--sort",
        "updatedAt:asc",
    ]);
    assert_eq!(strings(&typed["findingIds"]).len(), 3, "{typed}");
    let escape_hatch = stack.json(&[
        "findings",
        "list",
        "--criteria",
        r#"{"criterion": {"severity": {"gte": 7}, "resource.eksClusterDetails.name": {"eq": ["cluster-a"]}}}"#,
    ]);
    assert_eq!(
        strings(&escape_hatch["findingIds"]).len(),
        2,
        "{escape_hatch}"
    );

    // get: the API's findings, in the order asked for.
    let got = stack.json(&["findings", "get", &ids[1], &ids[0]]);
    let findings = got["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2);
    assert_eq!(findings[0]["id"], ids[1].as_str());
    assert_eq!(findings[1]["id"], ids[0].as_str());
    let every: Vec<&str> = ["findings", "get"]
        .into_iter()
        .chain(ids.iter().map(String::as_str))
        .collect();
    let hostile: Vec<Value> = stack.json(&every)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f.pointer("/resource/kubernetesDetails/kubernetesWorkloadDetails/name")
                == Some(&Value::from(HOSTILE_POD))
        })
        .cloned()
        .collect();
    assert_eq!(hostile.len(), 3, "the JSON keeps the pod name as it is");

    // The list table: every finding, aligned, the hostile pod escaped.
    let table = stack.table(&["findings", "list"]);
    let (heads, rows) = columns(&table);
    assert_eq!(
        heads,
        [
            "ID",
            "SEVERITY",
            "TYPE",
            "CLUSTER",
            "NAMESPACE",
            "POD",
            "PROCESS",
            "COUNT",
            "ARCHIVED",
            "UPDATED"
        ]
    );
    assert_eq!(rows.len(), FINDINGS, "{table}");
    let row_ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(row_ids, ids, "{table}");
    let escaped = "web-\\x1b[31mred\\x1b]0;pwned\\x07\\nforged";
    let pods: Vec<&str> = rows.iter().map(|r| r[5].as_str()).collect();
    assert_eq!(pods.iter().filter(|p| **p == escaped).count(), 3, "{table}");
    assert!(rows.iter().all(|r| r[8] == "false"), "{table}");
    assert_eq!(
        rows.iter().filter(|r| r[1] == "HIGH 8").count(),
        3,
        "{table}"
    );
    // A page of a longer list says how to go on, on stderr.
    let out = stack.run(&["findings", "list", "--max", "2", "--output", "table"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        columns(&String::from_utf8(out.stdout.clone()).unwrap())
            .1
            .len(),
        2
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--next-token"),
        "{}",
        describe(&out)
    );
    let all_pages = stack.table(&["findings", "list", "--max", "4", "--all"]);
    assert_eq!(columns(&all_pages).1.len(), FINDINGS, "{all_pages}");

    // The get table adds feedback and the title.
    let table = stack.table(&["findings", "get", &ids[0], &ids[1]]);
    let (heads, rows) = columns(&table);
    assert_eq!(heads.last().unwrap(), "TITLE");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], ids[0]);

    // stats: by severity and grouped.
    let stats = stack.json(&["findings", "stats"]);
    assert_eq!(
        stats["findingStatistics"]["countBySeverity"],
        serde_json::json!({"5.0": 6, "8.0": 3}),
        "{stats}"
    );
    let table = stack.table(&["findings", "stats"]);
    let (heads, rows) = columns(&table);
    assert_eq!(heads, ["SEVERITY", "COUNT"]);
    assert_eq!(rows, [["MEDIUM 5", "6"], ["HIGH 8", "3"]], "{table}");
    let by_ns = stack.json(&[
        "findings",
        "stats",
        "--group-by",
        "cluster",
        "--severity",
        "high",
    ]);
    let groups = by_ns["findingStatistics"]["groupedByCluster"]
        .as_array()
        .unwrap();
    assert_eq!(groups.len(), 2, "{by_ns}");
    assert_eq!(groups[0]["clusterName"], "cluster-a");
    assert_eq!(groups[0]["totalFindings"], 2);
    let table = stack.table(&["findings", "stats", "--group-by", "namespace"]);
    let (heads, rows) = columns(&table);
    assert_eq!(heads, ["CLUSTER", "NAMESPACE", "TOTAL", "LAST"]);
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(rows[0][..3], ["cluster-a", "payments", "6"], "{table}");

    // archive / unarchive, read back.
    let archived = |id: &str| {
        stack.json(&["findings", "get", id])["findings"][0]["service"]["archived"].clone()
    };
    assert_eq!(
        stack.json(&["findings", "archive", &ids[0], &ids[1]]),
        serde_json::json!({})
    );
    assert_eq!(archived(&ids[0]), true);
    assert_eq!(archived(&ids[1]), true);
    let open = stack.json(&["findings", "list", "--archived", "false"]);
    assert_eq!(strings(&open["findingIds"]).len(), FINDINGS - 2);
    assert_eq!(
        stack.json(&["findings", "unarchive", &ids[1]]),
        serde_json::json!({})
    );
    assert_eq!(archived(&ids[1]), false);
    assert_eq!(
        stack.table(&["findings", "archive", &ids[2]]),
        "archived: 1 finding(s)\n"
    );
    assert_eq!(archived(&ids[2]), true);
    assert_eq!(
        stack.table(&["findings", "unarchive", &ids[2], &ids[0]]),
        "unarchived: 2 finding(s)\n"
    );
    assert_eq!(archived(&ids[0]), false);
    assert_eq!(archived(&ids[2]), false);

    // feedback: set, then read back, in both outputs.
    assert_eq!(
        stack.json(&[
            "findings",
            "feedback",
            &ids[3],
            "--not-useful",
            "--comment",
            "test pod, expected"
        ]),
        serde_json::json!({})
    );
    let service = &stack.json(&["findings", "get", &ids[3]])["findings"][0]["service"];
    assert_eq!(service["userFeedback"], "NOT_USEFUL", "{service}");
    assert_eq!(service["userFeedbackComments"], "test pod, expected");
    assert_eq!(
        stack.table(&["findings", "feedback", &ids[3], &ids[4], "--useful"]),
        "feedback USEFUL: 2 finding(s)\n"
    );
    let table = stack.table(&["findings", "get", &ids[3], &ids[4]]);
    let (heads, rows) = columns(&table);
    let feedback = heads.iter().position(|h| h == "FEEDBACK").unwrap();
    assert_eq!(rows[0][feedback], "USEFUL", "{table}");
    assert_eq!(rows[1][feedback], "USEFUL", "{table}");
}

#[test]
fn exit_codes_say_what_failed() {
    let stack = Stack::start();
    let code = |out: &Output| out.status.code().unwrap();

    // A 400 from the API: exit 1, its message on stderr.
    let out = stack.run(&["findings", "list", "--max", "0"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BadRequestException") && err.contains("maxResults"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = stack.run(&["findings", "list", "--sort", "nonsense:asc"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));

    // Usage errors: clap's, and the CLI's own checks, before any request.
    for args in [
        &["findings", "list", "--bogus"][..],
        &["findings", "feedback", "some-id"],
        &[
            "findings",
            "list",
            "--severity",
            "low",
            "--severity",
            "high",
        ],
        &["findings", "list", "--since", "yesterday"],
        &["nothing"],
        &["findings", "get"],
    ] {
        let out = stack.run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", describe(&out));
        assert!(!out.stderr.is_empty());
    }
    let out = stack
        .command(&["findings", "list"])
        .env_remove("PEREGRINE_API_URL")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PEREGRINE_API_URL"));

    // Help is not an error.
    let out = stack.run(&["findings", "--help"]);
    assert_eq!(code(&out), 0, "{}", describe(&out));

    // The endpoint does not answer: exit 4.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = stack
        .command(&["findings", "list"])
        .env("PEREGRINE_API_URL", format!("http://{closed}"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 4, "{}", describe(&out));

    // Refused by the function URL (signed for another region): exit 3. No credentials: 3.
    let out = stack.run(&["findings", "list", "--region", "eu-west-1"]);
    assert_eq!(code(&out), 3, "{}", describe(&out));
    let out = stack
        .command(&["findings", "list"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", describe(&out));

    // An error message that quotes the caller's input is escaped too.
    let out = stack.run(&["findings", "get", "\u{1b}]0;pwned\u{7}"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert_terminal_safe(String::from_utf8_lossy(&out.stderr).trim_end());
}

/// The value of `key` in a KEY/VALUE table.
fn value_of(table: &str, key: &str) -> Option<String> {
    let (heads, rows) = columns(table);
    assert_eq!(heads, ["KEY", "VALUE"], "{table}");
    rows.into_iter().find(|r| r[0] == key).map(|r| r[1].clone())
}

#[test]
fn filter_commands_in_json_and_table_output() {
    let stack = Stack::start();
    let ssh = "Persistence:Runtime/SensitiveFileModified";

    let created = stack.json(&[
        "filters",
        "create",
        "--name",
        "suppress-ssh",
        "--action",
        "ARCHIVE",
        "--rank",
        "1",
        "--description",
        "test pods",
        "--type",
        ssh,
        "--cluster",
        "cluster-a",
    ]);
    assert_eq!(created, serde_json::json!({"name": "suppress-ssh"}));
    let table = stack.table(&[
        "filters",
        "create",
        "--name",
        "noop-high",
        "--severity",
        "high",
    ]);
    assert_eq!(
        value_of(&table, "name").as_deref(),
        Some("noop-high"),
        "{table}"
    );
    // A filter without criteria is refused before any request.
    let out = stack.run(&["filters", "create", "--name", "nothing"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));

    let list = stack.json(&["filters", "list"]);
    assert_eq!(
        strings(&list["filterNames"]),
        ["suppress-ssh", "noop-high"],
        "{list}"
    );
    let paged = stack.json(&["filters", "list", "--max", "1", "--all"]);
    assert_eq!(
        strings(&paged["filterNames"]),
        ["suppress-ssh", "noop-high"],
        "{paged}"
    );
    let one = stack.json(&["filters", "list", "--max", "1"]);
    assert_eq!(strings(&one["filterNames"]), ["suppress-ssh"], "{one}");
    assert!(
        !one["nextToken"].as_str().unwrap_or_default().is_empty(),
        "{one}"
    );

    let got = stack.json(&["filters", "get", "suppress-ssh"]);
    assert_eq!(got["name"], "suppress-ssh");
    assert_eq!(got["action"], "ARCHIVE");
    assert_eq!(got["rank"], 1);
    assert_eq!(got["description"], "test pods");
    assert_eq!(
        got["findingCriteria"]["criterion"]["type"]["eq"],
        serde_json::json!([ssh])
    );
    let table = stack.table(&["filters", "get", "noop-high"]);
    assert_eq!(
        value_of(&table, "action").as_deref(),
        Some("NOOP"),
        "{table}"
    );
    assert_eq!(
        value_of(&table, "findingCriteria.criterion.severity.gte").as_deref(),
        Some("7.0"),
        "{table}"
    );

    // update: JSON, then a hostile description shown escaped in the tables.
    let updated = stack.json(&["filters", "update", "noop-high", "--rank", "1"]);
    assert_eq!(updated["name"], "noop-high", "{updated}");
    let hostile = "ok\u{1b}[2J\u{202e}gnp.exe";
    stack.table(&[
        "filters",
        "update",
        "suppress-ssh",
        "--description",
        hostile,
    ]);
    assert_eq!(
        stack.json(&["filters", "get", "suppress-ssh"])["description"],
        hostile
    );
    let table = stack.table(&["filters", "get", "suppress-ssh"]);
    assert_eq!(
        value_of(&table, "description").as_deref(),
        Some("ok\\x1b[2J\\u{202e}gnp.exe"),
        "{table}"
    );
    let table = stack.table(&["filters", "list"]);
    let (heads, rows) = columns(&table);
    assert_eq!(heads, ["NAME", "ACTION", "RANK", "DESCRIPTION"]);
    assert_eq!(rows[0][..3], ["noop-high", "NOOP", "1"], "{table}");
    assert_eq!(rows[1][..3], ["suppress-ssh", "ARCHIVE", "2"], "{table}");
    assert_eq!(rows[1][3], "ok\\x1b[2J\\u{202e}gnp.exe", "{table}");

    // delete, in both outputs.
    assert_eq!(
        stack.json(&["filters", "delete", "noop-high"]),
        serde_json::json!({})
    );
    assert_eq!(
        stack.table(&["filters", "delete", "suppress-ssh"]),
        "deleted\n"
    );
    assert_eq!(
        stack.json(&["filters", "list"])["filterNames"],
        serde_json::json!([])
    );
    let out = stack.run(&["filters", "get", "noop-high"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

#[test]
fn entity_set_commands_in_json_and_table_output() {
    let stack = Stack::start();
    for (command, id_field, list_field) in [
        ("threat-sets", "threatEntitySetId", "threatEntitySetIds"),
        ("trusted-sets", "trustedEntitySetId", "trustedEntitySetIds"),
    ] {
        let created = stack.json(&[
            command,
            "create",
            "--name",
            "lists",
            "--format",
            "TXT",
            "--location",
            "s3://peregrine-sets/lists.txt",
            "--tag",
            "team=sec",
        ]);
        let id = created[id_field]
            .as_str()
            .unwrap_or_else(|| panic!("{created}"))
            .to_owned();
        assert_eq!(
            stack.json(&[command, "list"])[list_field],
            serde_json::json!([id])
        );
        let (heads, rows) = columns(&stack.table(&[command, "list"]));
        assert_eq!(heads, ["ID", "NAME", "FORMAT", "STATUS", "LOCATION"]);
        assert_eq!(
            rows,
            [[
                id.as_str(),
                "lists",
                "TXT",
                "INACTIVE",
                "s3://peregrine-sets/lists.txt"
            ]]
        );

        let got = stack.json(&[command, "get", &id]);
        assert_eq!(got["name"], "lists", "{got}");
        assert_eq!(got["status"], "INACTIVE", "{got}");
        assert_eq!(got["tags"]["team"], "sec", "{got}");
        assert_eq!(
            stack.json(&[command, "update", &id, "--name", "renamed"]),
            serde_json::json!({})
        );
        assert_eq!(
            stack.table(&[command, "update", &id, "--activate", "false"]),
            "updated\n"
        );
        let table = stack.table(&[command, "get", &id]);
        assert_eq!(
            value_of(&table, "name").as_deref(),
            Some("renamed"),
            "{table}"
        );
        assert_eq!(
            value_of(&table, "location").as_deref(),
            Some("s3://peregrine-sets/lists.txt")
        );

        if command == "threat-sets" {
            let table = stack.table(&[
                command,
                "create",
                "--name",
                "more",
                "--location",
                "s3://peregrine-sets/more.txt",
            ]);
            let second = value_of(&table, id_field).unwrap_or_else(|| panic!("{table}"));
            assert_eq!(
                strings(&stack.json(&[command, "list", "--max", "1", "--all"])[list_field]).len(),
                2
            );
            assert_eq!(
                stack.json(&[command, "delete", &second]),
                serde_json::json!({})
            );
        }
        assert_eq!(stack.table(&[command, "delete", &id]), "deleted\n");
        assert_eq!(
            stack.json(&[command, "list"])[list_field],
            serde_json::json!([])
        );
    }
}

#[test]
fn coverage_and_org_commands_in_json_and_table_output() {
    let stack = Stack::start();

    // coverage: no sweep has run, so nothing is covered yet; both outputs still answer.
    let list = stack.json(&[
        "coverage",
        "list",
        "--cluster",
        "cluster-a",
        "--sort",
        "UPDATED_AT:desc",
        "--all",
    ]);
    assert!(list["resources"].is_array(), "{list}");
    let table = stack.table(&["coverage", "list", "--status", "HEALTHY", "--max", "10"]);
    assert_eq!(
        columns(&table).0,
        [
            "RESOURCE", "ACCOUNT", "CLUSTER", "STATUS", "NODES", "ISSUE", "UPDATED"
        ]
    );
    let stats = stack.json(&["coverage", "stats"]);
    assert!(stats["coverageStatistics"].is_object(), "{stats}");
    let table = stack.table(&["coverage", "stats", "--filter", "ACCOUNT_ID=123456789012"]);
    assert_eq!(columns(&table).0, ["STATISTIC", "KEY", "COUNT"]);
    let out = stack.run(&["coverage", "list", "--filter", "NO_SUCH_KEY=1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    // org: show, update, read back.
    let org = stack.json(&["org", "show"]);
    assert!(org["autoEnableOrganizationMembers"].is_string(), "{org}");
    assert_eq!(
        stack.json(&[
            "org",
            "update",
            "--auto-enable",
            "NONE",
            "--cluster-scope",
            "INCLUDED_ONLY"
        ]),
        serde_json::json!({})
    );
    let org = stack.json(&["org", "show"]);
    assert_eq!(org["autoEnableOrganizationMembers"], "NONE", "{org}");
    assert_eq!(org["clusterScope"], "INCLUDED_ONLY", "{org}");
    assert_eq!(
        stack.table(&["org", "update", "--auto-enable", "new"]),
        "updated\n"
    );
    let table = stack.table(&["org", "show"]);
    assert_eq!(
        value_of(&table, "autoEnableOrganizationMembers").as_deref(),
        Some("NEW"),
        "{table}"
    );
    let out = stack.run(&["org", "update"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn sample_findings_command_in_json_and_table_output() {
    let stack = Stack::start();
    // sample findings: one type, then every type; they are listed like real findings.
    let before = strings(&stack.json(&["findings", "list", "--all"])["findingIds"]).len();
    assert_eq!(
        stack.json(&[
            "sample-findings",
            "--type",
            "Execution:Runtime/NewBinaryExecuted"
        ]),
        serde_json::json!({})
    );
    let after_one = strings(&stack.json(&["findings", "list", "--all"])["findingIds"]).len();
    assert_eq!(after_one, before + 1);
    assert_eq!(
        stack.table(&["sample-findings"]),
        "sample findings created: every type\n"
    );
    let ids = strings(&stack.json(&["findings", "list", "--max", "7", "--all"])["findingIds"]);
    assert_eq!(ids.len(), after_one + 46);
    let table = stack.table(&["findings", "list", "--all"]);
    assert_eq!(columns(&table).1.len(), ids.len(), "{table}");
    let out = stack.run(&["sample-findings", "--type", "NoSuch:Type/AtAll"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}
