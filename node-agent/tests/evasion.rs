//! Evasion through names: a process that calls itself `yum` is not the package manager. The
//! real agent in standalone mode, running the built-in catalog, must still report it.
//! Needs root (eBPF).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{
    os::unix::process::CommandExt,
    process::Command,
    time::{Duration, Instant},
};

use common::{Agent, WAIT, unique};

#[test]
fn a_process_named_yum_appending_to_authorized_keys_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let findings = tmp.path().join("findings.jsonl");
    let args: Vec<String> = vec![
        "standalone".into(),
        "--output".into(),
        findings.to_string_lossy().into_owned(),
    ];
    let agent = Agent::start_with(&args, &[]);

    // A HOME-like directory the persistence rule covers (`**/.ssh/authorized_keys`).
    let home = tmp.path().join(unique("home"));
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let keys = home.join(".ssh/authorized_keys");
    // A copy of bash named yum, outside the package paths: its comm is `yum`; `arg0` sets
    // argv[0] as `exec -a yum` would. The append is bash's own open (echo is a builtin).
    let yum = tmp.path().join("yum");
    std::fs::copy("/bin/bash", &yum).expect("bash");
    let status = Command::new(&yum)
        .arg0("yum")
        .args(["-c", "echo ssh-ed25519 AAAA attacker >> \"$1\"", "yum"])
        .arg(&keys)
        .status()
        .unwrap();
    assert!(status.success());

    let keys = keys.to_string_lossy().into_owned();
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&findings).unwrap_or_default();
        let hit = text.lines().find(|l| {
            l.contains("Persistence:Runtime/SensitiveFileModified") && l.contains(keys.as_str())
        });
        if let Some(line) = hit {
            let f: serde_json::Value = serde_json::from_str(line).unwrap();
            let process = &f["service"]["runtimeDetails"]["process"];
            assert_eq!(process["name"], "yum", "{process}");
            assert_eq!(
                process["executablePath"],
                yum.to_string_lossy().as_ref(),
                "{process}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no persistence finding for {keys}\nfindings:\n{text}\nagent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
