#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark harness: failing loudly is the point
//! Agent overhead and throughput on this machine (root; loads the real eBPF programs).
//!
//!   cargo bench -p node-agent --bench overhead
//!
//! 1. exec storm and open storm: operations/s without the agent and with it, alternating for
//!    five rounds in one run; the slowdown compares the medians;
//! 2. the highest open rate delivered into user space with zero drops, in capture-all mode;
//! 3. the agent's RSS (current and peak) and CPU during each load;
//! 4. `compat`: what the 32-bit syscall programs (raw `sys_enter`/`sys_exit`, run for every
//!    syscall on the node) cost, with each `--compat-syscalls` setting in turn.
//!
//! Figures and their interpretation go in docs/benchmarks.md.

use std::{
    fs::OpenOptions,
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const EXECS: usize = 3000;
const OPENS: usize = 300_000;
const ROUNDS: usize = 5;
const SYSCALLS: usize = 1_000_000;

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the overhead benchmark loads eBPF programs: run it as root"
    );
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let run = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let tmp = tempfile::tempdir().unwrap();

    println!("machine: {} CPUs, kernel {}", num_cpus(), kernel());
    if run("exec") {
        storm(
            "exec storm (fork+exec+wait of /bin/true)",
            EXECS,
            &[],
            exec_storm,
        );
    }
    if run("open") {
        let path = tmp.path().join("w");
        storm(
            "open storm (O_WRONLY open+close, captured)",
            OPENS,
            &[],
            |n| open_storm(&path, n, true),
        );
        let path = tmp.path().join("r");
        std::fs::write(&path, b"x").unwrap();
        storm(
            "open storm (O_RDONLY open+close, filtered in the kernel)",
            OPENS,
            &[],
            |n| open_storm(&path, n, false),
        );
    }
    if run("lossless") {
        lossless(tmp.path());
    }
    if run("compat") {
        let settings: &[(&str, &[&str])] = &[
            ("--compat-syscalls off", &["--compat-syscalls", "off"]),
            ("--compat-syscalls entry", &["--compat-syscalls", "entry"]),
            (
                "--compat-syscalls results",
                &["--compat-syscalls", "results"],
            ),
        ];
        compare(
            "exec storm (fork+exec+wait of /bin/true)",
            EXECS,
            settings,
            exec_storm,
        );
        compare(
            "syscall storm (1-byte reads of /dev/zero)",
            SYSCALLS,
            settings,
            syscall_storm,
        );
    }
}

/// Runs `work` without the agent and then with it under each of `settings` (a fresh agent
/// each time), for [`ROUNDS`] rounds, and compares the medians: the differences between
/// settings are the cost of what they switch.
fn compare(name: &str, n: usize, settings: &[(&str, &[&str])], work: impl Fn(usize) -> Duration) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    work(n / 10); // warm caches
    let mut base = Vec::new();
    let mut with = vec![Vec::new(); settings.len()];
    for _ in 0..ROUNDS {
        base.push(rate(work(n)));
        for (i, (_, args)) in settings.iter().enumerate() {
            let agent = Agent::start(args);
            work(n / 10);
            with[i].push(rate(work(n)));
            drop(agent);
        }
    }
    let b = median(&mut base);
    println!("\n## {name}, n = {n}, {ROUNDS} rounds");
    println!("without agent:                   {b:>10.0} ops/s median");
    for ((label, _), runs) in settings.iter().zip(&mut with) {
        let w = median(runs);
        println!(
            "{label:<32} {w:>10.0} ops/s median  slowdown {:>5.1} %  {:>6.0} ns/op more",
            (b - w) / b * 100.0,
            (1e9 / w - 1e9 / b)
        );
    }
}

/// One-byte reads: about the cheapest syscall there is, so what runs on every syscall shows.
fn syscall_storm(n: usize) -> Duration {
    let mut f = std::fs::File::open("/dev/zero").unwrap();
    let mut b = [0u8; 1];
    let t = Instant::now();
    for _ in 0..n {
        f.read_exact(&mut b).unwrap();
    }
    t.elapsed()
}

/// Runs `work` without the agent and with it, alternating for [`ROUNDS`] rounds (a fresh agent
/// each round), and compares the medians: on a shared VM, one pair of runs differs by more than
/// the effect being measured. Prints rates, slowdown, and the agent's resources under load.
fn storm(name: &str, n: usize, agent_args: &[&str], work: impl Fn(usize) -> Duration) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    work(n / 10); // warm caches
    let mut base = Vec::new();
    let mut with = Vec::new();
    let mut cpu = Vec::new();
    let (mut rss, mut hwm, mut delivered, mut drops) = (0, 0, 0, 0);
    for _ in 0..ROUNDS {
        base.push(rate(work(n)));
        let agent = Agent::start(agent_args);
        work(n / 10);
        let before = agent.cpu_ticks();
        let took = work(n);
        with.push(rate(took));
        cpu.push((agent.cpu_ticks() - before) as f64 / clk_tck() / took.as_secs_f64() * 100.0);
        let (r, h) = agent.rss_kib();
        rss = rss.max(r);
        hwm = hwm.max(h);
        delivered += agent.events_total();
        drops += agent.drops();
    }
    let (b, w) = (median(&mut base), median(&mut with));
    let runs = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("\n## {name}, n = {n}, {ROUNDS} rounds");
    println!(
        "without agent: {b:>10.0} ops/s median  (runs: {})",
        runs(&base)
    );
    println!(
        "with agent:    {w:>10.0} ops/s median  (runs: {})",
        runs(&with)
    );
    println!("slowdown:      {:>9.1} %", (b - w) / b * 100.0);
    println!(
        "agent: CPU {:.1} % of one core (median), RSS up to {rss} KiB (peak {hwm} KiB), events delivered {delivered}, drops {drops}",
        median(&mut cpu)
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn exec_storm(n: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let s = Command::new("/bin/true").status().unwrap();
        assert!(s.success());
    }
    t.elapsed()
}

fn open_storm(path: &std::path::Path, n: usize, write: bool) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let f = OpenOptions::new()
            .read(!write)
            .write(write)
            .create(write)
            .truncate(false)
            .open(path)
            .unwrap();
        drop(f);
    }
    t.elapsed()
}

/// Capture-all mode: every open reaches user space. Opens are issued at a fixed rate for a few
/// seconds; the rate is raised until drops appear. Reports the highest rate with zero drops.
fn lossless(dir: &std::path::Path) {
    println!("\n## lossless events/s into user space (capture-all mode, 2 s per step)");
    let path = dir.join("r");
    std::fs::write(&path, b"x").unwrap();
    let mut best: Option<(f64, f64, u64, u64)> = None;
    for target in [100_000u64, 150_000, 200_000, 250_000, 300_000, 400_000] {
        let agent = Agent::start(&["--capture-all-opens"]);
        let before_cpu = agent.cpu_ticks();
        let before = agent.events_total();
        let secs = 2.0;
        let (issued, took) = paced_opens(&path, target, Duration::from_secs_f64(secs));
        // Let the agent drain, then read its counters.
        std::thread::sleep(Duration::from_millis(1500));
        let delivered = agent.events_total() - before;
        let drops = agent.drops();
        let cpu = (agent.cpu_ticks() - before_cpu) as f64 / clk_tck() / (took.as_secs_f64() + 1.5)
            * 100.0;
        let (rss, hwm) = agent.rss_kib();
        let achieved = issued as f64 / took.as_secs_f64();
        println!(
            "target {target:>7}/s: issued {achieved:>7.0}/s ({issued} opens in {:.1} s), delivered {delivered} events, drops {drops}, agent CPU {cpu:.1} %, RSS {rss} KiB (peak {hwm} KiB)",
            took.as_secs_f64()
        );
        if drops == 0 {
            best = Some((achieved, cpu, rss, hwm));
        } else {
            break;
        }
    }
    match best {
        Some((rate, cpu, rss, hwm)) => println!(
            "highest lossless rate: {rate:.0} events/s (agent CPU {cpu:.1} %, RSS {rss} KiB, peak {hwm} KiB)"
        ),
        None => println!("highest lossless rate: below 100000 events/s"),
    }
}

/// Opens `path` read-only at `rate` per second for `dur`, spread over one thread per CPU (one
/// thread cannot issue 200 k opens/s with the probes attached), each in bursts every 500 µs.
fn paced_opens(path: &std::path::Path, rate: u64, dur: Duration) -> (u64, Duration) {
    let threads = num_cpus().max(1) as u64;
    let start = Instant::now();
    let issued: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let rate = rate / threads;
                    let mut issued = 0u64;
                    while start.elapsed() < dur {
                        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                        while issued < due {
                            drop(std::fs::File::open(path).unwrap());
                            issued += 1;
                        }
                        std::thread::sleep(Duration::from_micros(500));
                    }
                    issued
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    (issued, start.elapsed())
}

struct Agent {
    child: Child,
    port: u16,
}

impl Agent {
    fn start(extra: &[&str]) -> Agent {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_peregrine-agent"))
            .args([
                "standalone",
                "--events",
                "--output",
                "/dev/null",
                "--metrics-addr",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let a = Agent { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while a.get("/healthz").is_none() {
            assert!(Instant::now() < deadline, "agent did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        a
    }

    fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        r.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    }

    fn metric_sum(&self, prefix: &str) -> u64 {
        self.get("/metrics")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    fn events_total(&self) -> u64 {
        self.metric_sum("peregrine_events_total{")
    }

    fn drops(&self) -> u64 {
        self.metric_sum("peregrine_kernel_drops_total{")
            + self.metric_sum("peregrine_user_queue_drops_total")
    }

    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
    }

    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap()
                .parse()
                .unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no memory effects.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}
