#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark harness: failing loudly is the point
//! Bytes per event on the wire, and encode/decode throughput, on a synthetic but realistic EKS
//! node: ~20 long-running processes (host daemons and pods, one with a deep lineage) doing
//! mostly write-opens and connects, plus liveness-probe shell pipelines (fork/exec/connect/
//! exit bursts), log rotation and the odd loss event. Batches of 500-2000 events.
//!
//! Run: `cargo bench -p peregrine-wire --bench bytes_per_event`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use peregrine_event::{Container, Event, Kind, LossInfo, Process, Timestamp};
use peregrine_testkit::builders::{
    self, EventBuilder, agent_identity, ancestor_of, pod_container, process,
};
use peregrine_wire::{BatchEncoder, EncodedMessage, EncoderConfig, Message, decode};
use uuid::Uuid;

/// splitmix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Like the agent's ids: a hash, i.e. 122 random bits.
    fn uuid(&mut self) -> Uuid {
        let v = (u128::from(self.next()) << 64) | u128::from(self.next());
        Uuid::from_u128((v & !(0xf << 76) & !(0x3 << 62)) | (0x8 << 76) | (0x2 << 62))
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }
}

/// A connect target.
#[derive(Clone)]
enum Peer {
    Ip(IpAddr, u16),
    Unix(&'static str),
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> Peer {
    Peer::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn v6(segments: [u16; 8], port: u16) -> Peer {
    Peer::Ip(IpAddr::V6(Ipv6Addr::from(segments)), port)
}

fn unix(path: &'static str) -> Peer {
    Peer::Unix(path)
}

/// A long-running process and what it does.
struct Spec {
    exe: &'static str,
    argv: &'static [&'static str],
    uid: u32,
    files: &'static [&'static str],
    peers: Vec<Peer>,
    /// Relative event rate.
    weight: u64,
    /// Number of threads producing events besides the main one.
    threads: u32,
}

struct Pod {
    container: &'static str,
    image: &'static str,
    pod: &'static str,
    namespace: &'static str,
    processes: Vec<Spec>,
}

fn node() -> (Vec<Spec>, Vec<Pod>) {
    let api = || v4(10, 0, 0, 1, 443);
    let redis = || v4(10, 0, 41, 5, 6379);
    let celery = &[
        "/usr/local/bin/python",
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "--loglevel=INFO",
        "--concurrency=4",
    ];
    let host = vec![
        Spec {
            exe: "/usr/bin/kubelet",
            argv: &[
                "/usr/bin/kubelet",
                "--config",
                "/etc/kubernetes/kubelet/kubelet-config.json",
                "--kubeconfig",
                "/var/lib/kubelet/kubeconfig",
                "--container-runtime-endpoint",
                "unix:///run/containerd/containerd.sock",
                "--node-ip=10.0.12.34",
            ],
            uid: 0,
            files: &[
                "/var/lib/kubelet/cpu_manager_state",
                "/var/lib/kubelet/memory_manager_state",
                "/var/log/kubelet.log",
            ],
            peers: vec![api(), unix("/run/containerd/containerd.sock")],
            weight: 6,
            threads: 12,
        },
        Spec {
            exe: "/usr/bin/containerd",
            argv: &["/usr/bin/containerd"],
            uid: 0,
            files: &["/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db"],
            peers: vec![],
            weight: 3,
            threads: 8,
        },
        Spec {
            exe: "/usr/bin/amazon-ssm-agent",
            argv: &["/usr/bin/amazon-ssm-agent"],
            uid: 0,
            files: &["/var/log/amazon/ssm/amazon-ssm-agent.log"],
            peers: vec![v4(52, 94, 133, 131, 443)],
            weight: 1,
            threads: 0,
        },
    ];
    let pods = vec![
        Pod {
            container: "aws-node",
            image: "602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni:v1.19.0",
            pod: "aws-node-7xk2p",
            namespace: "kube-system",
            processes: vec![Spec {
                exe: "/app/aws-k8s-agent",
                argv: &["/app/aws-k8s-agent"],
                uid: 0,
                files: &["/var/log/aws-routed-eni/ipamd.log"],
                peers: vec![api(), v4(169, 254, 169, 254, 80)],
                weight: 3,
                threads: 8,
            }],
        },
        Pod {
            container: "kube-proxy",
            image: "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/kube-proxy:v1.31.2-eksbuild.3",
            pod: "kube-proxy-l9wq4",
            namespace: "kube-system",
            processes: vec![Spec {
                exe: "/usr/local/bin/kube-proxy",
                argv: &[
                    "kube-proxy",
                    "--v=2",
                    "--config=/var/lib/kube-proxy-config/config",
                    "--hostname-override=ip-10-0-12-34.ec2.internal",
                ],
                uid: 0,
                files: &[],
                peers: vec![api()],
                weight: 2,
                threads: 6,
            }],
        },
        Pod {
            container: "fluent-bit",
            image: "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.4",
            pod: "fluent-bit-8hd2k",
            namespace: "amazon-cloudwatch",
            processes: vec![Spec {
                exe: "/fluent-bit/bin/fluent-bit",
                argv: &[
                    "/fluent-bit/bin/fluent-bit",
                    "-e",
                    "/fluent-bit/firehose.so",
                    "-e",
                    "/fluent-bit/cloudwatch.so",
                    "-c",
                    "/fluent-bit/etc/fluent-bit.conf",
                ],
                uid: 0,
                files: &[
                    "/var/fluent-bit/state/flb_container.db",
                    "/var/fluent-bit/state/flb_container.db-journal",
                    "/var/fluent-bit/state/flb_log.db",
                ],
                peers: vec![
                    v4(52, 46, 157, 23, 443),
                    v6([0x2600, 0x1f18, 0x4d3, 0x8e00, 0, 0, 0, 0x11], 443),
                ],
                weight: 6,
                threads: 4,
            }],
        },
        Pod {
            container: "coredns",
            image: "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/coredns:v1.11.3-eksbuild.2",
            pod: "coredns-787cb67946-5xs9q",
            namespace: "kube-system",
            processes: vec![Spec {
                exe: "/coredns",
                argv: &["/coredns", "-conf", "/etc/coredns/Corefile"],
                uid: 65532,
                files: &[],
                peers: vec![v4(10, 0, 0, 2, 53)],
                weight: 4,
                threads: 6,
            }],
        },
        Pod {
            container: "web",
            image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/web:3f9c2d1",
            pod: "web-6d8f9c7b5-qz7xt",
            namespace: "shop",
            processes: (0..3)
                .map(|i| Spec {
                    exe: "/usr/sbin/nginx",
                    argv: if i == 0 {
                        &["nginx: master process nginx -g daemon off;"]
                    } else {
                        &["nginx: worker process"]
                    },
                    uid: if i == 0 { 0 } else { 101 },
                    files: &[
                        "/var/log/nginx/access.log",
                        "/var/cache/nginx/proxy_temp/1/00/0000000001",
                    ],
                    peers: vec![v4(172, 20, 33, 9, 8080)],
                    weight: if i == 0 { 1 } else { 8 },
                    threads: 0,
                })
                .collect(),
        },
        Pod {
            container: "orders",
            image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/orders:1.42.0",
            pod: "orders-5c9b8d7f6-2mk8d",
            namespace: "shop",
            processes: vec![Spec {
                exe: "/opt/java/openjdk/bin/java",
                argv: &[
                    "java",
                    "-XX:MaxRAMPercentage=75.0",
                    "-Dspring.profiles.active=prod",
                    "-jar",
                    "/app/orders.jar",
                ],
                uid: 1000,
                files: &[
                    "/app/logs/orders.log",
                    "/tmp/tomcat.8080.4401982317442238172/work/Tomcat/localhost/ROOT/upload_tmp",
                ],
                peers: vec![v4(10, 0, 40, 17, 5432), redis(), v4(172, 20, 1, 10, 53)],
                weight: 12,
                threads: 40,
            }],
        },
        Pod {
            container: "worker",
            image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/worker:2025.11.3",
            pod: "worker-7f6d5c4b3-h4k2n",
            namespace: "shop",
            processes: (0..4)
                .map(|i| Spec {
                    exe: "/usr/local/bin/python3.12",
                    argv: celery,
                    uid: 1000,
                    files: if i == 0 {
                        &["/app/celerybeat-schedule", "/tmp/worker.log"]
                    } else {
                        &["/tmp/worker.log"]
                    },
                    peers: if i == 0 {
                        vec![
                            redis(),
                            v6(
                                [
                                    0x2600, 0x1f18, 0x4d3, 0x8e01, 0x1a2b, 0x3c4d, 0x5e6f, 0x7081,
                                ],
                                443,
                            ),
                        ]
                    } else {
                        vec![redis()]
                    },
                    weight: if i == 0 { 8 } else { 5 },
                    threads: if i == 0 { 4 } else { 0 },
                })
                .collect(),
        },
        Pod {
            container: "node-exporter",
            image: "quay.io/prometheus/node-exporter:v1.8.2",
            pod: "node-exporter-9sl2v",
            namespace: "monitoring",
            processes: vec![Spec {
                exe: "/bin/node_exporter",
                argv: &[
                    "/bin/node_exporter",
                    "--path.procfs=/host/proc",
                    "--path.sysfs=/host/sys",
                    "--path.rootfs=/host/root",
                ],
                uid: 65534,
                files: &["/tmp/node_exporter.prom.tmp"],
                peers: vec![],
                weight: 1,
                threads: 5,
            }],
        },
    ];
    (host, pods)
}

const BOOT: i64 = 1_764_000_000_000_000_000;

/// Like the agent's process table, every event of an actor shares one process (and container)
/// snapshot.
struct Actor {
    process: Arc<Process>,
    container: Option<Arc<Container>>,
    threads: Vec<u32>,
    files: Vec<(String, u64)>,
    peers: Vec<Peer>,
    weight: u64,
}

/// `b` by `process` at `time`, in `container` or on the host, on the main thread until `tid`.
fn on(
    b: EventBuilder,
    time: Timestamp,
    process: &Arc<Process>,
    container: &Option<Arc<Container>>,
) -> EventBuilder {
    b.time(time)
        .by(Arc::clone(process))
        .container(container.clone())
}

struct World {
    rng: Rng,
    now: i64,
    next_pid: u32,
    hashes: Vec<(String, String)>,
    actors: Vec<Actor>,
    /// (containerd-shim, its container) per pod: where liveness probes run.
    shims: Vec<(Arc<Process>, Arc<Container>)>,
}

impl World {
    fn new() -> World {
        let mut w = World {
            rng: Rng(0x5eed),
            now: BOOT + 86_400_000_000_000,
            next_pid: 3000,
            hashes: Vec::new(),
            actors: Vec::new(),
            shims: Vec::new(),
        };
        let systemd = process(1, "/usr/lib/systemd/systemd")
            .argv(&["/usr/lib/systemd/systemd", "--switched-root"])
            .cwd("/")
            .uuid(w.rng.uuid())
            .started(BOOT)
            .cgroup(1, 4026531841)
            .build();
        let (host, pods) = node();
        let mut containerd = None;
        for spec in host {
            let p = w.spawn(&systemd, spec.exe, spec.argv, "/", spec.uid);
            if spec.exe.ends_with("containerd") {
                containerd = Some(p.clone());
            }
            w.add_actor(p, None, &spec);
        }
        let containerd = containerd.expect("containerd");
        for pod in pods {
            let c = Arc::new(pod_container(
                w.rng.hex(64),
                builders::Pod {
                    namespace: pod.namespace,
                    name: pod.pod,
                    uid: &w.rng.uuid().to_string(),
                    container: pod.container,
                    image: pod.image,
                },
            ));
            let shim_argv: &[&str] = &["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io"];
            let shim = w.spawn(
                &containerd,
                "/usr/bin/containerd-shim-runc-v2",
                shim_argv,
                "/",
                0,
            );
            w.shims.push((Arc::new(shim.clone()), Arc::clone(&c)));
            let cgroup_id = 8000 + w.rng.below(4000);
            let mnt_ns = 4026532000 + w.rng.below(1000) as u32;
            let mut first: Option<Process> = None;
            for spec in &pod.processes {
                let parent = first.clone().unwrap_or_else(|| shim.clone());
                let mut p = w.spawn(&parent, spec.exe, spec.argv, "/app", spec.uid);
                p.cgroup_id = cgroup_id;
                p.mnt_ns = mnt_ns;
                first.get_or_insert_with(|| p.clone());
                w.add_actor(p, Some(Arc::clone(&c)), spec);
            }
        }
        // A deep lineage: a CI job nested through shells, sudo and make.
        let mut p = Process::clone(&w.actors[0].process);
        for exe in [
            "/usr/bin/bash",
            "/usr/bin/sudo",
            "/usr/bin/bash",
            "/usr/bin/make",
            "/usr/bin/bash",
            "/usr/local/bin/runner",
            "/usr/bin/bash",
        ] {
            p = w.spawn(
                &p,
                exe,
                &[exe, "-c", "./ci/run.sh --stage test"],
                "/home/ci/work",
                1001,
            );
        }
        let leaf = w.spawn(
            &p,
            "/usr/local/go/bin/go",
            &["go", "test", "./..."],
            "/home/ci/work/svc",
            1001,
        );
        let spec = Spec {
            exe: "",
            argv: &[],
            uid: 1001,
            files: &[
                "/home/ci/.cache/go-build/trim.txt",
                "/tmp/go-build/b001/testlog.txt",
            ],
            peers: vec![v4(140, 82, 112, 3, 443)],
            weight: 2,
            threads: 6,
        };
        w.add_actor(leaf, None, &spec);
        w
    }

    fn add_actor(&mut self, process: Process, container: Option<Arc<Container>>, spec: &Spec) {
        let threads = (1..=spec.threads).map(|i| process.pid + i).collect();
        let files = spec
            .files
            .iter()
            .map(|f| ((*f).to_owned(), 1_000 + self.rng.below(1 << 20)))
            .collect();
        self.next_pid += spec.threads;
        self.actors.push(Actor {
            process: Arc::new(process),
            container,
            threads,
            files,
            peers: spec.peers.clone(),
            weight: spec.weight,
        });
    }

    fn sha(&mut self, exe: &str) -> String {
        if let Some((_, h)) = self.hashes.iter().find(|(e, _)| e == exe) {
            return h.clone();
        }
        let h = self.rng.hex(64);
        self.hashes.push((exe.into(), h.clone()));
        h
    }

    fn spawn(
        &mut self,
        parent: &Process,
        exe: &str,
        argv: &[&str],
        cwd: &str,
        uid: u32,
    ) -> Process {
        self.next_pid += 1 + self.rng.below(3) as u32;
        let mut lineage = vec![ancestor_of(parent)];
        lineage.extend(parent.lineage.iter().take(7).cloned());
        let start = self.now - self.rng.below(3_600_000_000_000) as i64;
        process(self.next_pid, exe)
            .argv(argv)
            .cwd(cwd)
            .user(uid)
            .uuid(self.rng.uuid())
            .started(start)
            .sha256(self.sha(exe))
            .cgroup(parent.cgroup_id, parent.mnt_ns)
            .lineage(lineage)
            .build()
    }

    /// About 1,000 events/s on the node, with uneven gaps.
    fn tick(&mut self) -> Timestamp {
        self.now += 1 + self.rng.below(2_000_000) as i64;
        Timestamp::from_unix_nanos(self.now)
    }

    /// Appends the next event, or burst of events.
    fn step(&mut self, out: &mut Vec<Event>) {
        let roll = self.rng.below(1000);
        if roll < 12 {
            return self.liveness_probe(out);
        }
        if roll < 13 {
            let t = self.tick();
            let loss = EventBuilder::loss(LossInfo {
                kernel_ringbuf_full: self.rng.below(500),
                user_queue_full: self.rng.below(3),
                ..LossInfo::default()
            });
            return out.push(on(loss, t, &self.actors[0].process, &None).build());
        }
        let total: u64 = self.actors.iter().map(|a| a.weight).sum();
        let mut r = self.rng.below(total);
        let idx = self
            .actors
            .iter()
            .position(|a| {
                let hit = r < a.weight;
                r = r.saturating_sub(a.weight);
                hit
            })
            .unwrap_or(0);
        let t = self.tick();
        let a = &self.actors[idx];
        let process = Arc::clone(&a.process);
        let tid = if !a.threads.is_empty() && self.rng.chance(80) {
            *self.rng.pick(&a.threads)
        } else {
            process.pid
        };
        if !a.peers.is_empty() && (a.files.is_empty() || self.rng.chance(35)) {
            let peer = self.rng.pick(&a.peers).clone();
            let result = if matches!(peer, Peer::Unix(_)) || self.rng.chance(30) {
                0
            } else {
                -115
            };
            let connect = match peer {
                Peer::Ip(address, port) => EventBuilder::connect_inet(address, port),
                Peer::Unix(path) => EventBuilder::connect_unix(path),
            };
            let e = on(connect, t, &process, &a.container).tid(tid);
            return out.push(e.result(result).build());
        }
        let roll = self.rng.below(100);
        let (path, ino) = if a.files.is_empty() || roll < 15 {
            // A fresh temporary or cache file with a random name.
            let dir = if a.container.is_some() {
                "/tmp"
            } else {
                "/var/lib/kubelet/pods"
            };
            (
                format!("{dir}/tmp{}", self.rng.hex(8)),
                2_000_000 + self.rng.below(1 << 24),
            )
        } else {
            self.rng.pick(&a.files).clone()
        };
        let creat = roll < 40;
        // O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, or O_WRONLY|O_APPEND|O_CLOEXEC.
        let flags = if creat { 0o2001101 } else { 0o2002001 };
        let is_log = path.ends_with(".log");
        let result = 3 + self.rng.below(60) as i64;
        let dev = if a.container.is_some() { 0x4c } else { 0x10302 };
        let open = EventBuilder::open(&path, flags)
            .result(result)
            .resolved(dev, ino);
        let open = if creat { open.mode(0o644) } else { open };
        out.push(on(open, t, &process, &a.container).tid(tid).build());
        // Log rotation: rename, then chmod of the new file (same inode, no longer resolved).
        if is_log && self.rng.below(300) == 0 {
            let container = self.actors[idx].container.clone();
            let same_inode = |f: &mut peregrine_event::FileInfo| (f.dev, f.ino) = (dev, ino);
            let t = self.tick();
            let rename = EventBuilder::file2(Kind::Rename, &path, &format!("{path}.1"))
                .with_file(same_inode);
            out.push(on(rename, t, &process, &container).tid(tid).build());
            let t = self.tick();
            let chmod = EventBuilder::file(Kind::Chmod, &path)
                .mode(0o640)
                .with_file(same_inode);
            out.push(on(chmod, t, &process, &container).tid(tid).build());
        }
    }

    /// A liveness probe: the shim runs `sh -c 'curl -sf localhost:8080/healthz | grep -q ok'`
    /// in a pod; the shell forks curl and grep, curl connects, all three exit.
    fn liveness_probe(&mut self, out: &mut Vec<Event>) {
        let (shim, container) = self.rng.pick(&self.shims).clone();
        let container = Some(container);
        let argv = [
            "sh",
            "-c",
            "curl -sf http://localhost:8080/healthz | grep -q ok",
        ];
        let mut sh = self.spawn(&shim, "/bin/sh", &argv, "/app", 0);
        sh.start_time = self.tick();
        let sh = Arc::new(sh);
        let fork = EventBuilder::fork(sh.pid, sh.uuid);
        out.push(on(fork, sh.start_time, &shim, &container).build());
        let t = self.tick();
        let exec =
            EventBuilder::exec("/bin/sh").with_exec(|e| (e.exe_dev, e.exe_ino) = (0x4c, 1234));
        out.push(on(exec, t, &sh, &container).build());
        let mut children = Vec::new();
        for (exe, argv) in [
            (
                "/usr/bin/curl",
                &["curl", "-sf", "http://localhost:8080/healthz"][..],
            ),
            ("/bin/grep", &["grep", "-q", "ok"][..]),
        ] {
            let mut child = self.spawn(&sh, exe, argv, "/app", 0);
            child.start_time = self.tick();
            let child = Arc::new(child);
            let fork = EventBuilder::fork(child.pid, child.uuid);
            out.push(on(fork, child.start_time, &sh, &container).build());
            let t = self.tick();
            let exe_ino = 5000 + exe.len() as u64;
            let exec =
                EventBuilder::exec(exe).with_exec(|e| (e.exe_dev, e.exe_ino) = (0x4c, exe_ino));
            out.push(on(exec, t, &child, &container).build());
            children.push(child);
        }
        let t = self.tick();
        let connect = EventBuilder::connect_inet(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080).result(0);
        out.push(on(connect, t, &children[0], &container).build());
        for p in children.iter().chain([&sh]) {
            let t = self.tick();
            out.push(on(EventBuilder::exit(0), t, p, &container).build());
        }
    }

    fn batch(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(n + 16);
        while out.len() < n {
            self.step(&mut out);
        }
        out
    }
}

struct Sizes {
    events: usize,
    raw: usize,
    body: usize,
}

impl Sizes {
    fn of(messages: &[EncodedMessage]) -> Sizes {
        Sizes {
            events: messages.iter().map(|m| m.event_count).sum(),
            raw: messages.iter().map(|m| m.raw_bytes).sum(),
            body: messages.iter().map(|m| m.body.len()).sum(),
        }
    }
    fn line(&self) -> String {
        let per = |b: usize| b as f64 / self.events as f64;
        // base64 turns 3 bytes into 4; the padding is negligible at these sizes.
        format!(
            "protobuf {:.1}, zstd {:.1}, base64 (on the wire) {:.1}",
            per(self.raw),
            per(self.body * 3 / 4),
            per(self.body)
        )
    }
}

/// Where the compressed bytes go: each part of every batch compressed on its own (so the parts
/// add up to a little more than the whole).
fn breakdown(messages: &[EncodedMessage]) -> String {
    use peregrine_testkit::wire::open_envelope;
    use peregrine_wire::pb;
    use prost::Message as _;

    type Part = (&'static str, fn(&pb::EventBatch) -> pb::EventBatch);
    let parts: [Part; 5] = [
        ("time deltas", |b| pb::EventBatch {
            time_deltas_ns: b.time_deltas_ns.clone(),
            ..Default::default()
        }),
        ("details", |b| pb::EventBatch {
            details: b.details.clone(),
            ..Default::default()
        }),
        ("tables", |b| pb::EventBatch {
            ancestors: b.ancestors.clone(),
            processes: b.processes.clone(),
            containers: b.containers.clone(),
            ..Default::default()
        }),
        ("strings", |b| pb::EventBatch {
            strings: b.strings.clone(),
            ..Default::default()
        }),
        ("other columns", |b| pb::EventBatch {
            kinds: b.kinds.clone(),
            process_refs: b.process_refs.clone(),
            tid_deltas: b.tid_deltas.clone(),
            container_refs: b.container_refs.clone(),
            ..Default::default()
        }),
    ];
    let mut totals = [0usize; 5];
    let mut events = 0;
    for m in messages {
        let Some(pb::envelope::Body::Batch(b)) = open_envelope(&m.body).body else {
            continue;
        };
        events += b.details.len();
        for (total, (_, part)) in totals.iter_mut().zip(&parts) {
            *total += zstd::bulk::compress(&part(&b).encode_to_vec(), 3)
                .unwrap()
                .len();
        }
    }
    let shares: Vec<String> = parts
        .iter()
        .zip(totals)
        .map(|((name, _), t)| format!("{name} {:.1}", t as f64 / events as f64))
        .collect();
    shares.join(", ")
}

fn main() {
    let mut world = World::new();
    let sizes = [500usize, 1000, 2000, 750, 1500];
    let batches: Vec<Vec<Event>> = (0..60)
        .map(|i| world.batch(sizes[i % sizes.len()]))
        .collect();
    let events: usize = batches.iter().map(Vec::len).sum();
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for e in batches.iter().flatten() {
        match kinds.iter_mut().find(|(k, _)| *k == e.kind.name()) {
            Some((_, n)) => *n += 1,
            None => kinds.push((e.kind.name(), 1)),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));

    let identity = agent_identity(
        "i-0a1b2c3d4e5f67890",
        "ip-10-0-12-34.ec2.internal",
        "prod-us-east-1",
    );
    let mut encoder = BatchEncoder::new(identity, EncoderConfig::default()).unwrap();
    let created = Timestamp::from_unix_nanos(world.now);

    for b in batches.iter().take(5) {
        black_box(encoder.encode(b, created).unwrap());
    }
    let start = Instant::now();
    let mut per_batch = Vec::new();
    for b in &batches {
        per_batch.push(encoder.encode(b, created).unwrap());
    }
    let encode_secs = start.elapsed().as_secs_f64();
    let messages: Vec<EncodedMessage> = per_batch.iter().flatten().cloned().collect();

    let start = Instant::now();
    let mut decoded = Vec::with_capacity(events);
    for m in &messages {
        match decode(&m.body).unwrap() {
            Message::Batch { events, .. } => decoded.extend(black_box(events)),
            Message::Heartbeat { .. } => unreachable!(),
        }
    }
    let decode_secs = start.elapsed().as_secs_f64();
    if !decoded.iter().eq(batches.iter().flatten()) {
        println!("ROUND TRIP MISMATCH");
    }

    let all = Sizes::of(&messages);
    println!(
        "peregrine-wire bytes_per_event: {} batches, {events} events, {} messages (zstd level 3)",
        batches.len(),
        messages.len()
    );
    let mix: Vec<String> = kinds
        .iter()
        .map(|(k, n)| format!("{k} {:.1}%", 100.0 * *n as f64 / events as f64))
        .collect();
    println!("mix: {}", mix.join(", "));
    println!("bytes/event, all batches: {}", all.line());
    for size in [500, 1000, 2000] {
        let ms: Vec<EncodedMessage> = batches
            .iter()
            .zip(&per_batch)
            .filter(|(b, _)| b.len().abs_diff(size) < 20)
            .flat_map(|(_, m)| m.iter().cloned())
            .collect();
        println!(
            "bytes/event, ~{size}-event batches: {}",
            Sizes::of(&ms).line()
        );
    }
    println!("zstd bytes/event by part: {}", breakdown(&messages));
    println!(
        "largest body: {} bytes",
        messages.iter().map(|m| m.body.len()).max().unwrap_or(0)
    );
    println!(
        "encode: {:.0} events/s ({:.1} MB/s of protobuf)",
        events as f64 / encode_secs,
        all.raw as f64 / encode_secs / 1e6
    );
    println!("decode: {:.0} events/s", events as f64 / decode_secs);
}
