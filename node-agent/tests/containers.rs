//! Container and pod attribution with a real containerd and runc, and new-binary tracking.
//! Needs root, containerd, runc and busybox-static (scripts/setup installs them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{
    ffi::CString,
    os::unix::{net::UnixListener, process::CommandExt},
    path::Path,
    process::Command,
    time::Duration,
};

use common::{
    Agent, CgroupParents, Containerd, Overlay, Pod, busybox_rootfs, cgroup2_mount, pod,
    run_container, run_in_kubelet_cgroup, unique,
};
use peregrine_event::{Event, Kind, MetadataState, NewBinaryEvidence};

fn exec_with(agent: &Agent, what: &str, arg: &str) -> Event {
    agent.wait_for(what, |e| {
        e.kind == Kind::Exec && e.process.argv.iter().any(|a| a == arg)
    })
}

fn assert_pod(ev: &Event, p: &Pod) {
    let c = ev
        .container
        .as_ref()
        .unwrap_or_else(|| panic!("no container on {ev:?}"));
    assert_eq!(c.id, p.cid);
    assert_eq!(c.metadata, MetadataState::Complete, "{c:?}");
    assert_eq!(c.pod_name.as_deref(), Some(p.name.as_str()));
    assert_eq!(c.pod_namespace.as_deref(), Some(p.namespace.as_str()));
    assert_eq!(c.pod_uid.as_deref(), Some(p.uid.as_str()));
    assert_eq!(c.name.as_deref(), Some(p.container.as_str()));
    assert_eq!(c.namespace.as_deref(), Some("k8s.io"));
}

/// A private containerd and an agent asking it for container metadata.
fn containerd_and_agent() -> (Containerd, Agent) {
    let cd = Containerd::start();
    let agent = Agent::start(&["--containerd-socket", cd.socket.to_str().unwrap()]);
    (cd, agent)
}

#[test]
fn kubelet_cgroup_container_is_attributed_and_a_copied_binary_is_new() {
    let (cd, agent) = containerd_and_agent();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let p = pod();
    let (new_marker, old_marker) = (unique("new"), unique("old"));
    let script = format!(
        "cp /bin/busybox /tmp/busybox && /tmp/busybox echo {new_marker} && /bin/busybox echo {old_marker}"
    );
    let _cleanup = run_in_kubelet_cgroup(&cd, &rootfs, &p, &script);

    let new = exec_with(&agent, "exec of the copied binary", &new_marker);
    assert_pod(&new, &p);
    assert_eq!(new.process.exe, "/tmp/busybox");
    let nb = new
        .exec()
        .unwrap()
        .new_binary
        .as_ref()
        .expect("copied binary must be marked new");
    assert_eq!(nb.evidence, NewBinaryEvidence::ObservedWrite);
    let writer = nb.modified_by.as_ref().expect("the writer is known");
    assert_eq!(writer.exe, "/bin/busybox");
    assert!(nb.modified_at.is_some());

    let old = exec_with(&agent, "exec of the rootfs busybox", &old_marker);
    assert_pod(&old, &p);
    assert_eq!(old.process.exe, "/bin/busybox");
    assert!(
        old.exec().unwrap().new_binary.is_none(),
        "the rootfs's own busybox is not new"
    );
    // The forked command's lineage reaches the container's shell, then the runtime's shim.
    assert_eq!(
        (
            new.process.lineage[0].comm.as_str(),
            new.process.lineage[0].exe.as_str()
        ),
        ("sh", "/bin/busybox")
    );
    assert!(
        new.process.lineage[1].exe.contains("containerd-shim"),
        "{:?}",
        new.process.lineage
    );

    // The copy itself was seen as a write by the container.
    let write = agent.wait_for("cp's write of /tmp/busybox", |e| {
        e.kind == Kind::Open
            && e.file().is_some_and(|f| f.path == "/tmp/busybox")
            && e.container.is_some()
    });
    assert_pod(&write, &p);

    // Host processes (ctr on this host) carry no container.
    let host = agent.wait_for("ctr exec on the host", |e| {
        e.kind == Kind::Exec
            && e.process.argv.iter().any(|a| a == &p.cid)
            && e.process.exe.ends_with("/ctr")
    });
    assert!(host.container.is_none());
}

#[test]
fn overlay_upper_layer_marks_new_binaries_under_plain_containerd_layout() {
    let (cd, agent) = containerd_and_agent();
    let tmp = tempfile::tempdir().unwrap();
    let lower = busybox_rootfs(tmp.path());
    let overlay = Overlay::mount(&lower, tmp.path());
    let p = pod();
    let (new_marker, old_marker) = (unique("new"), unique("old"));
    let script = format!(
        "cp /bin/busybox /tmp/busybox && /tmp/busybox echo {new_marker} && /bin/busybox echo {old_marker}"
    );
    // No --cgroup: containerd's default /<namespace>/<id> layout.
    run_container(&cd, &overlay.merged, &p, None, &script);

    let new = exec_with(&agent, "exec of the copied binary", &new_marker);
    assert_pod(&new, &p);
    let nb = new
        .exec()
        .unwrap()
        .new_binary
        .as_ref()
        .expect("copied binary must be marked new");
    assert_eq!(
        nb.evidence,
        NewBinaryEvidence::OverlayUpper,
        "the kernel saw it in the upper layer"
    );
    assert!(overlay.upper.join("tmp/busybox").exists());

    let old = exec_with(&agent, "exec of the lower-layer busybox", &old_marker);
    assert_pod(&old, &p);
    assert!(old.exec().unwrap().new_binary.is_none());
}

/// Runs `argv` inside cgroup `cg` (relative to the cgroup2 root), moving the child there
/// before it execs.
fn spawn_in_cgroup(cg: &Path, argv: &[&str]) -> std::process::Child {
    let procs = CString::new(cg.join("cgroup.procs").to_str().unwrap()).unwrap();
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd.spawn().unwrap()
}

/// Runs `sh -c 'exit 0' <marker>` in the cgroup `dir` and waits for the agent's event of it.
fn exec_in_cgroup(agent: &Agent, dir: &Path, tag: &str, what: &str) -> Event {
    let marker = unique(tag);
    assert!(
        spawn_in_cgroup(dir, &["/bin/sh", "-c", "exit 0", &marker])
            .wait()
            .unwrap()
            .success()
    );
    exec_with(agent, what, &marker)
}

#[test]
fn events_flow_while_containerd_hangs_and_the_lookup_is_retried() {
    common::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("containerd.sock");
    // A "containerd" that accepts connections and never answers.
    let hung = UnixListener::bind(&socket).unwrap();
    let agent = Agent::start(&[
        "--containerd-socket",
        socket.to_str().unwrap(),
        "--containerd-timeout-ms",
        "300",
    ]);

    let mount = cgroup2_mount().expect("cgroup2 mount");
    let p = pod();
    let qos = "/kubepods/burstable";
    let pod_cg = format!("{qos}/pod{}", p.uid);
    let ctr_cg = format!("{pod_cg}/{}", p.cid);
    let _cleanup = CgroupParents(vec![
        "/kubepods".into(),
        qos.into(),
        pod_cg.clone(),
        ctr_cg.clone(),
    ]);
    let dir = mount.join(ctr_cg.trim_start_matches('/'));
    std::fs::create_dir_all(&dir).unwrap();

    let ev = exec_in_cgroup(&agent, &dir, "hung", "exec while containerd hangs");
    let c = ev
        .container
        .as_ref()
        .expect("attributed from the cgroup path alone");
    assert_eq!(c.id, p.cid);
    assert_eq!(c.pod_uid.as_deref(), Some(p.uid.as_str()));
    assert_eq!(c.metadata, MetadataState::Unavailable);
    agent.wait_metric("peregrine_container_lookup_failures_total", 1.0);

    // containerd comes back on the same socket; after the backoff the lookup is retried and
    // answered (this container is unknown to it: not_found, but still a kubelet container).
    drop(hung);
    std::fs::remove_file(&socket).unwrap();
    let cd = Containerd::start_at(&socket);
    std::thread::sleep(Duration::from_millis(1500));
    let ev = exec_in_cgroup(&agent, &dir, "back", "exec after containerd returned");
    let c = ev.container.as_ref().unwrap();
    assert_eq!(c.id, p.cid);
    assert_eq!(
        c.metadata,
        MetadataState::NotFound,
        "containerd answered this time"
    );
    drop(cd);
}

/// A process that moves itself (here: is moved) into a child cgroup of its container's cgroup
/// is still that container's: attribution walks up the cgroup path to the runtime's segment.
#[test]
fn a_child_cgroup_of_a_container_stays_attributed_to_it() {
    let (cd, agent) = containerd_and_agent();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let p = pod();
    let mount = cgroup2_mount().expect("cgroup2 mount");
    let pod_cg = format!("/kubepods/besteffort/pod{}", p.uid);
    let ctr_dir = mount.join(format!("{}/{}", pod_cg.trim_start_matches('/'), p.cid));
    let child_rel = format!("{pod_cg}/{}/escape", p.cid);
    let child_dir = mount.join(child_rel.trim_start_matches('/'));
    // Removed before the runtime removes the container's own cgroup (and again, harmlessly,
    // by the guard run_in_kubelet_cgroup returns).
    let _child = CgroupParents(vec![child_rel]);
    let marker = unique("child");
    // The container waits for the go-ahead, then execs the marker from its new cgroup.
    let script =
        format!("while [ ! -e /tmp/go ]; do sleep 0.1; done; /bin/busybox echo {marker}; exit 0");
    std::thread::scope(|s| {
        let runner = s.spawn(|| run_in_kubelet_cgroup(&cd, &rootfs, &p, &script));
        // The container's shell, once runc has put it in the container's cgroup.
        let deadline = std::time::Instant::now() + common::WAIT;
        let pid = loop {
            let procs = std::fs::read_to_string(ctr_dir.join("cgroup.procs")).unwrap_or_default();
            if let Some(pid) = procs.lines().next() {
                break pid.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "container never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        std::fs::create_dir_all(&child_dir).unwrap();
        std::fs::write(child_dir.join("cgroup.procs"), &pid).unwrap();
        assert!(
            std::fs::read_to_string(child_dir.join("cgroup.procs"))
                .unwrap()
                .lines()
                .any(|l| l == pid),
            "the shell moved into the child cgroup"
        );
        std::fs::write(rootfs.join("tmp/go"), "").unwrap();
        let _guard = runner.join().unwrap();
        let ev = exec_with(&agent, "exec from the child cgroup", &marker);
        assert_pod(&ev, &p);
    });
}
