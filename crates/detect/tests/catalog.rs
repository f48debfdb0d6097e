//! Table-driven tests for every built-in rule: events that must fire it and near misses that
//! must not (Tracee's detectors/*_test.go style), plus the context each rule fills.

// Test helpers outside #[test] functions (event builders, table checkers) fail by panicking,
// which clippy's allow-*-in-tests settings do not cover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use peregrine_detect::O_RDWR;
use serde_json::json;

#[test]
fn catalog_covers_the_required_types_with_guardduty_severities() {
    let want = [
        ("Execution:Runtime/NewBinaryExecuted", 5.0),
        (
            "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified",
            8.0,
        ),
        ("PrivilegeEscalation:Runtime/RuncContainerEscape", 8.0),
        ("PrivilegeEscalation:Runtime/DockerSocketAccessed", 5.0),
        ("Persistence:Runtime/SensitiveFileModified", 5.0),
        ("PrivilegeEscalation:Runtime/SensitiveFileModified", 5.0),
        ("DefenseEvasion:Runtime/SensitiveFileModified", 5.0),
        ("PrivilegeEscalation:Runtime/ElevationToRoot", 5.0),
        ("Impact:Runtime/CryptoMinerExecuted", 8.0),
    ];
    let rules: Vec<_> = builtin().rules().collect();
    for (t, sev) in want {
        let r = rules
            .iter()
            .find(|r| r.finding_type == t)
            .unwrap_or_else(|| panic!("no rule for {t}"));
        assert_eq!(r.severity, sev, "{t}");
        assert!(r.enabled);
        assert!(!r.mitre.is_empty(), "{t} has no MITRE tags");
    }
    let mut tool_sevs: Vec<f64> = rules
        .iter()
        .filter(|r| r.finding_type == "Execution:Runtime/SuspiciousTool")
        .map(|r| r.severity)
        .collect();
    tool_sevs.sort_by(f64::total_cmp);
    assert_eq!(tool_sevs, [2.0, 5.0, 8.0, 8.0]);
    assert!(
        builtin().warnings().is_empty(),
        "{:?}",
        builtin().warnings()
    );
}

#[test]
fn new_binary_executed() {
    check_rule(
        "new-binary-executed",
        vec![
            (
                "dropped payload",
                E::exec("/tmp/payload").new_binary(Some("/usr/bin/curl")),
                true,
            ),
            (
                "copied-up binary",
                E::exec("/usr/bin/python3.8").new_binary(None),
                true,
            ),
            ("image binary", E::exec("/usr/bin/python3.8"), false),
            (
                "new binary on the host",
                E::exec("/tmp/payload").new_binary(None).host(),
                false,
            ),
            ("write, not exec", E::open("/tmp/payload", WRITE), false),
        ],
    );
    let (m, _) = fire(
        "new-binary-executed",
        E::exec("/tmp/payload").new_binary(Some("/usr/bin/dpkg")),
    );
    let mp = m
        .context
        .modifying_process
        .as_ref()
        .expect("modifyingProcess");
    assert_eq!(mp.executable_path.as_deref(), Some("/usr/bin/dpkg"));
    assert_eq!(mp.name.as_deref(), Some("dpkg"));
    assert_eq!(
        m.context.modified_at.unwrap().unix_nanos(),
        T0 - 5_000_000_000
    );
    // Overlay evidence alone does not name a writer.
    let (m, _) = fire(
        "new-binary-executed",
        E::exec("/tmp/payload").new_binary(None),
    );
    assert!(m.context.modifying_process.is_none());
}

#[test]
fn cgroups_release_agent_modified() {
    check_rule(
        "cgroups-release-agent-modified",
        vec![
            (
                "write in cgroupfs",
                E::open("/sys/fs/cgroup/rdma/release_agent", WRITE),
                true,
            ),
            (
                "GuardDuty tester path",
                E::open("/tmp/release_agent", O_WRONLY_ONLY),
                true,
            ),
            ("read-write", E::open("/mnt/x/release_agent", O_RDWR), true),
            (
                "denied attempt still counts",
                E::open("/sys/fs/cgroup/release_agent", WRITE).result(-13),
                true,
            ),
            (
                "from the host",
                E::open("/sys/fs/cgroup/release_agent", WRITE).host(),
                true,
            ),
            (
                "renamed into place",
                E::rename("/tmp/x", "/tmp/cg/release_agent"),
                true,
            ),
            (
                "symlinked into place",
                E::symlink("/tmp/payload", "/tmp/cg/release_agent"),
                true,
            ),
            (
                "read-only open",
                E::open("/sys/fs/cgroup/release_agent", O_RDONLY),
                false,
            ),
            (
                "similar name",
                E::open("/tmp/release_agent.bak", WRITE),
                false,
            ),
            (
                "notify_on_release",
                E::open("/sys/fs/cgroup/x/notify_on_release", WRITE),
                false,
            ),
            (
                "renamed away",
                E::rename("/tmp/cg/release_agent", "/tmp/x"),
                false,
            ),
        ],
    );
    let (m, _) = fire(
        "cgroups-release-agent-modified",
        E::open("/tmp/cg/release_agent", WRITE),
    );
    assert_eq!(
        m.context.release_agent_path.as_deref(),
        Some("/tmp/cg/release_agent")
    );
    let (m, _) = fire(
        "cgroups-release-agent-modified",
        E::rename("/tmp/x", "/tmp/cg/release_agent"),
    );
    assert_eq!(
        m.context.release_agent_path.as_deref(),
        Some("/tmp/cg/release_agent")
    );
}

const O_WRONLY_ONLY: u32 = peregrine_detect::O_WRONLY;

#[test]
fn runc_container_escape() {
    check_rule(
        "runc-container-escape",
        vec![
            (
                "GuardDuty tester writes /bin/runc",
                E::open("/bin/runc", WRITE),
                true,
            ),
            (
                "resolved host runc",
                E::open("/usr/sbin/runc", O_WRONLY_ONLY).result(-26),
                true,
            ),
            (
                "/proc/self/exe for writing",
                E::open("/proc/self/exe", O_WRONLY_ONLY),
                true,
            ),
            (
                "/proc/<pid>/exe for writing",
                E::open("/proc/1/exe", O_RDWR),
                true,
            ),
            (
                "CVE-2024-21626 cwd",
                E::exec("/bin/sh").cwd("/proc/self/fd/7"),
                true,
            ),
            (
                "CVE-2024-21626 cwd by pid",
                E::exec("/bin/sh").cwd("/proc/1/fd/8/../.."),
                true,
            ),
            (
                "host upgrades runc",
                E::open("/usr/bin/runc", WRITE).host(),
                false,
            ),
            (
                "read-only open of runc",
                E::open("/usr/bin/runc", O_RDONLY),
                false,
            ),
            (
                "read /proc/self/exe",
                E::open("/proc/self/exe", O_RDONLY),
                false,
            ),
            ("runc-like name", E::open("/tmp/runc.tar.gz", WRITE), false),
            ("ordinary cwd", E::exec("/bin/sh").cwd("/proc"), false),
            (
                "cwd on host",
                E::exec("/bin/sh").cwd("/proc/self/fd/7").host(),
                false,
            ),
        ],
    );
    let (m, _) = fire("runc-container-escape", E::open("/bin/runc", WRITE));
    assert_eq!(m.context.runc_binary_path.as_deref(), Some("/bin/runc"));
}

#[test]
fn docker_socket_accessed() {
    check_rule(
        "docker-socket-accessed",
        vec![
            ("docker.sock", E::connect_unix("/var/run/docker.sock"), true),
            (
                "containerd.sock",
                E::connect_unix("/run/containerd/containerd.sock"),
                true,
            ),
            (
                "containerd ttrpc",
                E::connect_unix("/run/containerd/containerd.sock.ttrpc"),
                true,
            ),
            ("crio", E::connect_unix("/var/run/crio/crio.sock"), true),
            (
                "dockershim",
                E::connect_unix("/var/run/dockershim.sock"),
                true,
            ),
            (
                "cri-dockerd",
                E::connect_unix("/run/cri-dockerd.sock"),
                true,
            ),
            (
                "mounted elsewhere",
                E::connect_unix("/host/run/docker.sock"),
                true,
            ),
            ("relative path", E::connect_unix("docker.sock"), true),
            (
                "permission denied is still an attempt",
                E::connect_unix("/var/run/docker.sock").result(-13),
                true,
            ),
            (
                "shim abstract socket",
                E::connect_unix("@/containerd-shim/k8s.io/abc/shim.sock"),
                true,
            ),
            (
                "from the host",
                E::connect_unix("/run/containerd/containerd.sock").host(),
                false,
            ),
            (
                "no socket there",
                E::connect_unix("/var/run/docker.sock").result(-2),
                false,
            ),
            (
                "nobody listening",
                E::connect_unix("/var/run/docker.sock").result(-111),
                false,
            ),
            (
                "other socket",
                E::connect_unix("/var/run/nginx.sock"),
                false,
            ),
            (
                "suffix without slash",
                E::connect_unix("/tmp/notdocker.sock"),
                false,
            ),
            (
                "TCP to the Docker port",
                E::connect_inet("10.0.0.1", 2375),
                false,
            ),
            (
                "Peregrine's own agent",
                E::connect_unix("/run/containerd/containerd.sock")
                    .by("/usr/local/bin/peregrine-agent"),
                false,
            ),
            (
                "agent name on another socket",
                E::connect_unix("/var/run/docker.sock").by("/usr/local/bin/peregrine-agent"),
                true,
            ),
        ],
    );
    let (m, _) = fire(
        "docker-socket-accessed",
        E::connect_unix("/var/run/docker.sock"),
    );
    assert_eq!(
        m.context.socket_path.as_deref(),
        Some("/var/run/docker.sock")
    );
}

#[test]
fn persistence_sensitive_file_modified() {
    check_rule(
        "persistence-sensitive-file-modified",
        vec![
            (
                "root authorized_keys",
                E::open("/root/.ssh/authorized_keys", APPEND),
                true,
            ),
            (
                "user authorized_keys2",
                E::open("/home/ec2-user/.ssh/authorized_keys2", WRITE),
                true,
            ),
            ("passwd", E::open("/etc/passwd", RDWR), true),
            ("shadow", E::open("/etc/shadow", WRITE), true),
            (
                "group via rename",
                E::rename("/etc/group+", "/etc/group"),
                true,
            ),
            ("gshadow", E::open("/etc/gshadow", WRITE), true),
            ("crontab", E::open("/etc/crontab", APPEND), true),
            (
                "cron.d dropped in",
                E::rename("/tmp/job", "/etc/cron.d/job"),
                true,
            ),
            (
                "cron.daily",
                E::open("/etc/cron.daily/backdoor", WRITE),
                true,
            ),
            (
                "user crontab",
                E::open("/var/spool/cron/crontabs/root", WRITE),
                true,
            ),
            (
                "systemd unit",
                E::open("/etc/systemd/system/evil.service", WRITE),
                true,
            ),
            (
                "systemd enable symlink",
                E::symlink(
                    "/etc/systemd/system/evil.service",
                    "/etc/systemd/system/multi-user.target.wants/evil.service",
                ),
                true,
            ),
            (
                "vendor unit",
                E::open("/usr/lib/systemd/system/sshd.service", WRITE),
                true,
            ),
            (
                "lib unit",
                E::open("/lib/systemd/system/x.service", WRITE),
                true,
            ),
            (
                "user unit",
                E::open("/home/bob/.config/systemd/user/x.service", WRITE),
                true,
            ),
            ("init.d", E::open("/etc/init.d/evil", WRITE), true),
            ("rc.local", E::chmod("/etc/rc.local", 0o755), true),
            ("profile", E::open("/etc/profile", APPEND), true),
            ("profile.d", E::open("/etc/profile.d/evil.sh", WRITE), true),
            ("bash.bashrc", E::open("/etc/bash.bashrc", APPEND), true),
            ("~/.bashrc", E::open("/root/.bashrc", APPEND), true),
            (
                "~/.bash_profile",
                E::open("/home/u/.bash_profile", APPEND),
                true,
            ),
            ("~/.profile", E::open("/home/u/.profile", APPEND), true),
            ("~/.zshrc", E::open("/home/u/.zshrc", APPEND), true),
            (
                "authorized_keys deleted",
                E::unlink("/root/.ssh/authorized_keys"),
                true,
            ),
            (
                "passwd moved away",
                E::rename("/etc/passwd", "/tmp/p"),
                true,
            ),
            (
                "hard link to shadow",
                E::link("/etc/shadow", "/tmp/s"),
                true,
            ),
            ("from the host", E::open("/etc/passwd", WRITE).host(), true),
            (
                "authorized_keys read",
                E::open("/root/.ssh/authorized_keys", O_RDONLY),
                false,
            ),
            ("passwd read", E::open("/etc/passwd", O_RDONLY), false),
            (
                "write denied",
                E::open("/etc/shadow", WRITE).result(-13),
                false,
            ),
            ("passwd backup", E::open("/etc/passwd-", WRITE), false),
            ("similar dir", E::open("/etc/cron.allow", WRITE), false),
            (
                "known_hosts",
                E::open("/root/.ssh/known_hosts", WRITE),
                false,
            ),
            ("bashrc-like", E::open("/root/.bashrc.swp", WRITE), false),
            (
                "dpkg installs a unit",
                E::open("/lib/systemd/system/nginx.service", WRITE).by("/usr/bin/dpkg"),
                false,
            ),
            (
                "maintainer script adds a user",
                E::open("/etc/passwd", WRITE)
                    .by("/usr/sbin/useradd")
                    .parent("/bin/sh")
                    .parent("/usr/bin/dpkg"),
                false,
            ),
            (
                "yum (Python) writes",
                E::open("/etc/group", WRITE)
                    .by("/usr/bin/python3.9")
                    .comm("yum"),
                false,
            ),
            (
                "useradd by hand",
                E::open("/etc/passwd", WRITE).by("/usr/sbin/useradd"),
                true,
            ),
        ],
    );
    let (m, _) = fire(
        "persistence-sensitive-file-modified",
        E::rename("/tmp/job", "/etc/cron.d/job"),
    );
    assert_eq!(m.context.file_operation.as_deref(), Some("Rename"));
    assert_eq!(m.context.file_path.as_deref(), Some("/etc/cron.d/job"));
    let (m, _) = fire(
        "persistence-sensitive-file-modified",
        E::rename("/etc/passwd", "/tmp/p"),
    );
    assert_eq!(
        m.context.file_path.as_deref(),
        Some("/etc/passwd"),
        "the path that matched, not the other one"
    );
    for (e, op) in [
        (E::open("/etc/shadow", WRITE), "Write"),
        (E::chmod("/etc/shadow", 0o666), "Write"),
        (E::unlink("/etc/shadow"), "Delete"),
        (E::link("/etc/shadow", "/tmp/s"), "Link"),
        (E::symlink("/tmp/x", "/root/.bashrc"), "Symlink"),
    ] {
        let (m, _) = fire("persistence-sensitive-file-modified", e);
        assert_eq!(m.context.file_operation.as_deref(), Some(op));
    }
}

#[test]
fn privilege_escalation_sensitive_file_modified() {
    check_rule(
        "privilege-escalation-sensitive-file-modified",
        vec![
            ("sudoers", E::open("/etc/sudoers", APPEND), true),
            ("sudoers.d", E::open("/etc/sudoers.d/90-evil", WRITE), true),
            (
                "visudo rename",
                E::rename("/etc/sudoers.tmp", "/etc/sudoers"),
                true,
            ),
            ("pam.conf", E::open("/etc/pam.conf", WRITE), true),
            ("pam.d", E::open("/etc/pam.d/sshd", RDWR), true),
            (
                "security",
                E::open("/etc/security/limits.conf", WRITE),
                true,
            ),
            ("ld.so.preload", E::open("/etc/ld.so.preload", WRITE), true),
            ("ld.so.conf", E::open("/etc/ld.so.conf", APPEND), true),
            (
                "ld.so.conf.d",
                E::open("/etc/ld.so.conf.d/evil.conf", WRITE),
                true,
            ),
            (
                "symlink over sudoers",
                E::symlink("/tmp/mine", "/etc/sudoers.d/x"),
                true,
            ),
            ("sudoers chmod", E::chmod("/etc/sudoers", 0o666), true),
            ("sudoers read", E::open("/etc/sudoers", O_RDONLY), false),
            (
                "ld.so.cache (ldconfig)",
                E::open("/etc/ld.so.cache~", WRITE),
                false,
            ),
            ("similar name", E::open("/etc/sudoers.bak", WRITE), false),
            (
                "pam package upgrade",
                E::open("/etc/pam.d/common-auth", WRITE).by("/usr/bin/dpkg"),
                false,
            ),
        ],
    );
    let (m, _) = fire(
        "privilege-escalation-sensitive-file-modified",
        E::open("/etc/ld.so.preload", WRITE),
    );
    assert_eq!(m.context.file_path.as_deref(), Some("/etc/ld.so.preload"));
    assert_eq!(m.context.file_operation.as_deref(), Some("Write"));
}

#[test]
fn defense_evasion_sensitive_file_modified() {
    check_rule(
        "defense-evasion-sensitive-file-modified",
        vec![
            ("log deleted", E::unlink("/var/log/auth.log"), true),
            (
                "log truncated",
                E::open("/var/log/secure", O_WRONLY_ONLY | common::WRITE),
                true,
            ),
            (
                "log renamed away",
                E::rename("/var/log/audit/audit.log", "/tmp/a"),
                true,
            ),
            (
                "log replaced by rename",
                E::rename("/tmp/empty", "/var/log/wtmp"),
                true,
            ),
            (
                "log symlinked to /dev/null",
                E::symlink("/dev/null", "/var/log/syslog"),
                true,
            ),
            ("history deleted", E::unlink("/root/.bash_history"), true),
            (
                "history truncated by another tool",
                E::open("/home/u/.bash_history", WRITE).by("/usr/bin/truncate"),
                true,
            ),
            (
                "zsh history symlinked",
                E::symlink("/dev/null", "/home/u/.zsh_history"),
                true,
            ),
            (
                "python history deleted",
                E::unlink("/root/.python_history"),
                true,
            ),
            (
                "audit rules changed",
                E::open("/etc/audit/rules.d/audit.rules", APPEND),
                true,
            ),
            (
                "auditd.conf replaced",
                E::rename("/tmp/a", "/etc/audit/auditd.conf"),
                true,
            ),
            ("rsyslog.conf", E::open("/etc/rsyslog.conf", WRITE), true),
            (
                "rsyslog.d",
                E::open("/etc/rsyslog.d/50-default.conf", APPEND),
                true,
            ),
            ("log append", E::open("/var/log/app.log", APPEND), false),
            (
                "log create+append",
                E::open("/var/log/app.log", APPEND | peregrine_detect::O_CREAT),
                false,
            ),
            ("log read", E::open("/var/log/auth.log", O_RDONLY), false),
            (
                "history append",
                E::open("/root/.bash_history", APPEND),
                false,
            ),
            (
                "history read",
                E::open("/root/.bash_history", O_RDONLY),
                false,
            ),
            (
                "failed unlink",
                E::unlink("/var/log/auth.log").result(-13),
                false,
            ),
            (
                "rsyslog.conf read",
                E::open("/etc/rsyslog.conf", O_RDONLY),
                false,
            ),
            (
                "logrotate rotates",
                E::rename("/var/log/syslog", "/var/log/syslog.1").by("/usr/sbin/logrotate"),
                false,
            ),
            (
                "logrotate's gzip",
                E::unlink("/var/log/syslog.1")
                    .by("/usr/bin/gzip")
                    .parent("/usr/sbin/logrotate"),
                false,
            ),
            (
                "kubelet rotates pod logs",
                E::rename("/var/log/pods/a/b/0.log", "/var/log/pods/a/b/0.log.2025")
                    .by("/usr/bin/kubelet")
                    .host(),
                false,
            ),
            (
                "fluent-bit state db",
                E::unlink("/var/log/flb_kube.db-journal").by("/fluent-bit/bin/fluent-bit"),
                false,
            ),
            (
                "bash rewrites its history",
                E::rename("/root/.bash_history-01234.tmp", "/root/.bash_history").by("/bin/bash"),
                false,
            ),
            (
                "python truncates its history",
                E::open("/root/.python_history", WRITE).by("/usr/bin/python3.11"),
                false,
            ),
            (
                "bash writes its temp file",
                E::open("/root/.bash_history-01234.tmp", WRITE).by("/bin/bash"),
                false,
            ),
            (
                "bash deleting another's history",
                E::rename("/tmp/x", "/root/.zsh_history").by("/bin/bash"),
                true,
            ),
        ],
    );
    let (m, _) = fire(
        "defense-evasion-sensitive-file-modified",
        E::unlink("/root/.bash_history"),
    );
    assert_eq!(
        m.context.shell_history_file_path.as_deref(),
        Some("/root/.bash_history")
    );
    assert_eq!(m.context.file_operation.as_deref(), Some("Delete"));
    let (m, _) = fire(
        "defense-evasion-sensitive-file-modified",
        E::symlink("/dev/null", "/home/u/.zsh_history"),
    );
    assert_eq!(
        m.context.shell_history_file_path.as_deref(),
        Some("/home/u/.zsh_history")
    );
    assert_eq!(m.context.file_path.as_deref(), Some("/home/u/.zsh_history"));
    // A log is not a history file.
    let (m, _) = fire(
        "defense-evasion-sensitive-file-modified",
        E::unlink("/var/log/auth.log"),
    );
    assert_eq!(m.context.shell_history_file_path, None);
    assert_eq!(m.context.file_path.as_deref(), Some("/var/log/auth.log"));
}

#[test]
fn elevation_to_root() {
    check_rule(
        "elevation-to-root",
        vec![
            (
                "pkexec (PwnKit)",
                E::exec("/usr/bin/pkexec").uid(1000, 0),
                true,
            ),
            (
                "setuid copy of bash",
                E::exec("/tmp/.x/bash").uid(1000, 0),
                true,
            ),
            (
                "sudo copied elsewhere",
                E::exec("/tmp/sudo").uid(1000, 0),
                true,
            ),
            (
                "on the host",
                E::exec("/usr/local/bin/suid-helper").uid(1000, 0).host(),
                true,
            ),
            ("sudo", E::exec("/usr/bin/sudo").uid(1000, 0), false),
            ("su", E::exec("/bin/su").uid(1000, 0), false),
            ("passwd", E::exec("/usr/bin/passwd").uid(1000, 0), false),
            ("mount", E::exec("/usr/bin/mount").uid(1000, 0), false),
            (
                "fusermount3",
                E::exec("/usr/bin/fusermount3").uid(1000, 0),
                false,
            ),
            ("ping", E::exec("/bin/ping").uid(1000, 0), false),
            (
                "unix_chkpwd",
                E::exec("/usr/sbin/unix_chkpwd").uid(1000, 0),
                false,
            ),
            (
                "root runs something",
                E::exec("/usr/bin/id").uid(0, 0),
                false,
            ),
            (
                "unprivileged",
                E::exec("/usr/bin/id").uid(1000, 1000),
                false,
            ),
            (
                "setuid to non-root",
                E::exec("/usr/bin/x").uid(0, 1000),
                false,
            ),
            (
                "root open, not exec",
                E::open("/tmp/x", WRITE).uid(1000, 0),
                false,
            ),
        ],
    );
}

#[test]
fn suspicious_tools_by_category() {
    let cat = |rule: &str, e: E| fire(rule, e).0.context.tool_category.unwrap();
    assert_eq!(
        cat("suspicious-tool-pentest", E::exec("/usr/bin/msfconsole")),
        "Pentest Tool"
    );
    assert_eq!(
        cat("suspicious-tool-backdoor", E::exec("/tmp/sliver-server")),
        "Backdoor Tool"
    );
    assert_eq!(
        cat("suspicious-tool-network-scanner", E::exec("/usr/bin/nmap")),
        "Network Scanner"
    );
    assert_eq!(
        cat(
            "suspicious-tool-network-sniffer",
            E::exec("/usr/sbin/tcpdump")
        ),
        "Network Sniffer"
    );

    check_rule(
        "suspicious-tool-pentest",
        vec![
            ("msfvenom", E::exec("/opt/metasploit/msfvenom"), true),
            ("pspy64", E::exec("/tmp/pspy64"), true),
            ("cdk binary", E::exec("/tmp/cdk"), true),
            ("peirates", E::exec("/tmp/peirates"), true),
            ("botb", E::exec("/tmp/botb"), true),
            ("mimipenguin", E::exec("/tmp/mimipenguin"), true),
            (
                "linpeas script",
                E::exec("/bin/sh")
                    .filename("./linpeas.sh")
                    .argv(&["/bin/sh", "./linpeas.sh"]),
                true,
            ),
            (
                "deepce script",
                E::exec("/bin/bash").filename("/tmp/deepce.sh"),
                true,
            ),
            (
                "kube-hunter (Python)",
                E::exec("/usr/bin/python3.11").filename("/usr/local/bin/kube-hunter"),
                true,
            ),
            (
                "AWS CDK CLI (a Node script named cdk)",
                E::exec("/usr/bin/node").filename("/usr/local/bin/cdk"),
                false,
            ),
            ("similar name", E::exec("/usr/bin/pspy-viewer"), false),
            (
                "tool name as an argument",
                E::exec("/usr/bin/vim").argv(&["vim", "linpeas.sh"]),
                false,
            ),
        ],
    );
    check_rule(
        "suspicious-tool-backdoor",
        vec![
            ("meterpreter", E::exec("/tmp/meterpreter"), true),
            (
                "pwncat-cs (Python)",
                E::exec("/usr/bin/python3").filename("/usr/local/bin/pwncat-cs"),
                true,
            ),
            ("sliverish", E::exec("/tmp/silverfish"), false),
        ],
    );
    check_rule(
        "suspicious-tool-network-scanner",
        vec![
            ("nmap", E::exec("/usr/bin/nmap"), true),
            ("masscan", E::exec("/usr/local/bin/masscan"), true),
            ("zmap", E::exec("/usr/sbin/zmap"), true),
            ("rustscan", E::exec("/root/.cargo/bin/rustscan"), true),
            ("nmapper", E::exec("/usr/bin/nmapper"), false),
            ("nmap.conf written", E::open("/etc/nmap", WRITE), false),
            ("NMAP is a different file", E::exec("/usr/bin/NMAP"), false),
        ],
    );
    check_rule(
        "suspicious-tool-network-sniffer",
        vec![
            ("tcpdump", E::exec("/usr/sbin/tcpdump"), true),
            ("tshark", E::exec("/usr/bin/tshark"), true),
            ("ettercap", E::exec("/usr/bin/ettercap"), true),
            ("dsniff", E::exec("/usr/sbin/dsniff"), true),
            ("tcpdump-exporter", E::exec("/bin/tcpdump-exporter"), false),
        ],
    );
    let (m, _) = fire(
        "suspicious-tool-pentest",
        E::exec("/bin/sh").filename("./linpeas.sh"),
    );
    assert_eq!(
        m.context.tool_name.as_deref(),
        Some("linpeas.sh"),
        "the name that matched, not the interpreter"
    );
    let (m, _) = fire("suspicious-tool-network-scanner", E::exec("/usr/bin/nmap"));
    assert_eq!(m.context.tool_name.as_deref(), Some("nmap"));
}

#[test]
fn crypto_miner_executed() {
    check_rule(
        "crypto-miner-executed",
        vec![
            ("xmrig", E::exec("/tmp/xmrig"), true),
            ("PhoenixMiner (case)", E::exec("/opt/PhoenixMiner"), true),
            ("t-rex", E::exec("/opt/t-rex"), true),
            (
                "renamed miner with pool URL",
                E::exec("/tmp/kworker").argv(&["kworker", "-o", "stratum+tcp://pool.example:3333"]),
                true,
            ),
            (
                "pool URL upper case",
                E::exec("/tmp/x").argv(&["x", "--url=STRATUM+SSL://pool:443"]),
                true,
            ),
            (
                "stratum2",
                E::exec("/tmp/x").argv(&["x", "-o", "stratum2+tcp://pool:3333"]),
                true,
            ),
            (
                "renamed xmrig donate-level",
                E::exec("/tmp/.cache").argv(&[".cache", "--donate-level", "1"]),
                true,
            ),
            (
                "donate-level=",
                E::exec("/tmp/.cache").argv(&[".cache", "--donate-level=0"]),
                true,
            ),
            ("on the host", E::exec("/usr/local/bin/xmrig").host(), true),
            ("xmrigger", E::exec("/usr/bin/xmrigger"), false),
            (
                "mining-pool docs",
                E::exec("/usr/bin/curl").argv(&["curl", "https://stratum.example/docs"]),
                false,
            ),
            ("miner config written", E::open("/tmp/xmrig", WRITE), false),
        ],
    );
    let (m, _) = fire(
        "crypto-miner-executed",
        E::exec("/tmp/kworker").argv(&[
            "kworker",
            "-o",
            "stratum+tcp://pool.example:3333",
            "-u",
            "wallet",
        ]),
    );
    assert_eq!(
        m.context.command_line_example.as_deref(),
        Some("kworker -o stratum+tcp://pool.example:3333 -u wallet")
    );
    let ev = m
        .evidence
        .iter()
        .find(|e| e.field == "process.argv")
        .unwrap();
    assert_eq!(ev.operator, "contains");
    assert_eq!(ev.expected, json!("stratum+tcp://"));
    assert_eq!(
        ev.actual,
        json!("stratum+tcp://pool.example:3333"),
        "the argv element that matched"
    );
}

#[test]
fn unrelated_activity_fires_nothing() {
    let quiet = [
        E::open("/var/lib/app/data.db", RDWR),
        E::open("/tmp/upload-123", WRITE),
        E::open("/etc/nginx/nginx.conf", O_RDONLY),
        E::open("/var/log/nginx/access.log", APPEND),
        E::connect_inet("10.0.12.7", 5432),
        E::connect_unix("/var/run/nscd/socket"),
        E::exec("/usr/bin/python3"),
        E::exec("/usr/bin/curl").argv(&["curl", "-s", "http://svc"]),
        E::fork(),
        E::unlink("/tmp/upload-123"),
        E::rename("/var/lib/app/tmp", "/var/lib/app/data"),
    ];
    for e in quiet {
        let ev = e.ev();
        let got = eval(builtin(), &ev);
        assert!(
            got.is_empty(),
            "{:?} fired {:?}",
            ev.kind,
            got.iter().map(|m| &m.rule_id).collect::<Vec<_>>()
        );
    }
}
