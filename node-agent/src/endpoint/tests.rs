//! Real sockets on 127.0.0.1. Nothing asserts how long something took: each wait has a generous
//! deadline that fails the test loudly instead of hanging it.

use std::net::{Ipv4Addr, Ipv6Addr};

use http_body_util::Empty;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::{
    health::Pipeline,
    probes::{AttachState, ProbeStatus},
};

const DEADLINE: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {DEADLINE:?}"),
    }
}

struct Server {
    addr: SocketAddr,
    metrics: Metrics,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn health() -> Health {
    let h = Health::default();
    h.record_probes(&[
        ProbeStatus {
            program: "exec",
            target: "sched/sched_process_exec".into(),
            state: AttachState::Attached,
            error: None,
        },
        ProbeStatus {
            program: "connect_exit",
            target: "syscalls/sys_exit_connect".into(),
            state: AttachState::Failed,
            error: Some("verifier said no".into()),
        },
    ]);
    h.set_pipeline(Pipeline::Running);
    h
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Metrics::default();
    let task = serve_on(listener, limits, metrics.clone(), health());
    Server {
        addr,
        metrics,
        task,
    }
}

/// Sends `request` and reads until the server closes; `None` if it reset the connection.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<String> {
    within("exchange", async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        Some(String::from_utf8_lossy(&out).into_owned())
    })
    .await
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    exchange(addr, req.as_bytes())
        .await
        .unwrap_or_else(|| panic!("GET {path}: connection reset"))
}

/// Waits until the server has closed `s` (EOF or reset), reading and discarding anything sent.
async fn closed(what: &str, s: &mut TcpStream) {
    within(what, async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

#[tokio::test]
async fn a_slowloris_client_is_disconnected_and_blocks_no_one() {
    let srv = start(Limits {
        max_connections: 3,
        header_read_timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;

    // One client sends half a request head and stalls.
    let mut stalled = TcpStream::connect(srv.addr).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: ag")
        .await
        .unwrap();
    // Another trickles a byte at a time: progress does not reset the clock.
    let mut trickle = TcpStream::connect(srv.addr).await.unwrap();
    let trickler = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain([b'a'; 4096].iter())
        {
            if trickle.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    });

    // Meanwhile others are served.
    let resp = get(srv.addr, "/healthz").await;
    assert_eq!(status_line(&resp), "HTTP/1.1 200 OK", "{resp}");

    closed("the stalled client is disconnected", &mut stalled).await;
    assert!(
        within("the trickling client is disconnected", trickler)
            .await
            .unwrap(),
        "the trickling client sent its whole head without being cut off"
    );
    let header_timeouts = || {
        srv.metrics
            .http_timeouts
            .get_or_create(&crate::metrics::PhaseLabel { phase: "header" })
            .get()
    };
    until("both timeouts counted", || header_timeouts() >= 2).await;
    let resp = get(srv.addr, "/metrics").await;
    assert!(
        resp.contains("peregrine_http_timeouts_total{phase=\"header\"} 2"),
        "{resp}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let srv = start(Limits {
        header_read_timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n")
        .await
        .unwrap();
    // The response arrives, then the connection idles until the server ends it.
    let mut out = Vec::new();
    within("the idle connection is closed", s.read_to_end(&mut out))
        .await
        .unwrap();
    let resp = String::from_utf8_lossy(&out);
    assert_eq!(status_line(&resp), "HTTP/1.1 200 OK", "{resp}");
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_healthz_answers_once_they_go() {
    let srv = start(Limits {
        max_connections: 2,
        // Long enough that the two idle clients keep their slots for the whole test.
        header_read_timeout: Duration::from_secs(600),
        ..Limits::default()
    })
    .await;
    let open = || srv.metrics.http_connections_open.get();
    let rejected = || srv.metrics.http_connections_rejected.get();

    let hold = [
        TcpStream::connect(srv.addr).await.unwrap(),
        TcpStream::connect(srv.addr).await.unwrap(),
    ];
    until("both connections are being served", || open() == 2).await;

    // A third is closed without an answer, even to a complete request.
    let mut extra = TcpStream::connect(srv.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = within(
        "the extra connection is closed",
        extra.read_to_end(&mut out),
    )
    .await;
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    until("the refusal is counted", || rejected() >= 1).await;

    // The holders go; /healthz answers again.
    drop(hold);
    within("/healthz answers once the holders close", async {
        loop {
            let req = b"GET /healthz HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n";
            if let Some(resp) = exchange(srv.addr, req).await
                && status_line(&resp) == "HTTP/1.1 200 OK"
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let resp = get(srv.addr, "/metrics").await;
    assert!(
        resp.lines().any(
            |l| l.starts_with("peregrine_http_connections_rejected_total ")
                && l != "peregrine_http_connections_rejected_total 0"
        ),
        "{resp}"
    );
}

#[tokio::test]
async fn only_get_on_the_two_paths_is_served() {
    let srv = start(Limits::default()).await;
    let resp = get(srv.addr, "/metrics").await;
    assert_eq!(status_line(&resp), "HTTP/1.1 200 OK", "{resp}");
    assert!(resp.contains("peregrine_probes_failed 1"), "{resp}");

    let resp = get(srv.addr, "/nope").await;
    assert_eq!(status_line(&resp), "HTTP/1.1 404 Not Found", "{resp}");
    let resp = get(srv.addr, "/healthz/../metrics?x").await;
    assert_eq!(status_line(&resp), "HTTP/1.1 404 Not Found", "{resp}");

    for method in ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"] {
        let req = format!(
            "{method} /healthz HTTP/1.1\r\nHost: agent\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let resp = exchange(srv.addr, req.as_bytes()).await.unwrap();
        assert_eq!(
            status_line(&resp),
            "HTTP/1.1 405 Method Not Allowed",
            "{method}: {resp}"
        );
        if method != "HEAD" {
            assert!(resp.to_ascii_lowercase().contains("allow: get"), "{resp}");
        }
    }

    let resp = exchange(
        srv.addr,
        b"GET /healthz HTTP/1.1\r\nHost: agent\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    assert_eq!(
        status_line(&resp),
        "HTTP/1.1 413 Payload Too Large",
        "{resp}"
    );

    // A head over the size bound: answered 431 (or cut off), never buffered without bound.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: agent\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    if let Some(resp) = exchange(srv.addr, big.as_bytes()).await {
        assert!(
            resp.is_empty() || status_line(&resp) == "HTTP/1.1 431 Request Header Fields Too Large",
            "{resp}"
        );
    }
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /healthz HTTP/1.1\r\nHost: agent\r\n{many}\r\n");
    if let Some(resp) = exchange(srv.addr, req.as_bytes()).await {
        assert!(
            resp.is_empty() || status_line(&resp) == "HTTP/1.1 431 Request Header Fields Too Large",
            "{resp}"
        );
    }

    // Still serving.
    let resp = get(srv.addr, "/healthz").await;
    assert_eq!(status_line(&resp), "HTTP/1.1 200 OK", "{resp}");
}

#[tokio::test]
async fn a_loopback_client_sees_which_probes_failed() {
    let srv = start(Limits::default()).await;
    let resp = get(srv.addr, "/healthz").await;
    assert_eq!(status_line(&resp), "HTTP/1.1 200 OK", "{resp}");
    for s in [
        "\"status\":\"degraded\"",
        "syscalls/sys_exit_connect",
        "verifier said no",
    ] {
        assert!(resp.contains(s), "no {s} in {resp}");
    }
}

#[test]
fn only_loopback_peers_see_probe_detail() {
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::new(127, 9, 8, 7)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
    ] {
        assert!(sees_probe_detail(ip), "{ip}");
    }
    for ip in [
        IpAddr::V4(Ipv4Addr::new(10, 0, 3, 7)),
        IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        IpAddr::V6(Ipv4Addr::new(10, 0, 3, 7).to_ipv6_mapped()),
        IpAddr::V6("fd00:ec2::23".parse().unwrap()),
    ] {
        assert!(!sees_probe_detail(ip), "{ip}");
    }
}

#[test]
fn a_non_loopback_peer_gets_counts_only() {
    let metrics = Metrics::default();
    let health = health();
    let state = State {
        registry: metrics.registry(&health),
        metrics,
        health,
        limits: Limits::default(),
    };
    let req = |peer: &str| {
        let r = Request::get("/healthz")
            .body(Empty::<Bytes>::new())
            .unwrap();
        respond(&state, &r, peer.parse().unwrap())
    };
    let body = |r: Response<Full<Bytes>>| {
        let b = r.into_body();
        let bytes = futures_body(b);
        String::from_utf8(bytes).unwrap()
    };

    let r = req("10.0.3.7:41000");
    assert_eq!(r.status(), StatusCode::OK);
    let text = body(r);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], "degraded", "{text}");
    assert_eq!(v["probe_counts"]["failed"], 1, "{text}");
    for secret in ["sys_exit_connect", "connect_exit", "verifier said no"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    let text = body(req("127.0.0.1:41000"));
    assert!(text.contains("verifier said no"), "{text}");
    let text = body(req("[::ffff:127.0.0.1]:41000"));
    assert!(text.contains("verifier said no"), "{text}");
}

/// The bytes of a `Full` body, which is ready at once.
fn futures_body(b: Full<Bytes>) -> Vec<u8> {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async { b.collect().await.unwrap().to_bytes().to_vec() })
}
