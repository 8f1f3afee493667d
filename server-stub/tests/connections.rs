//! Connections that outsiders open and never use (issue #10, point 10): idle sockets cannot
//! exhaust the node's file descriptors or stall its chain, unfinished headers and idle
//! keep-alive connections are closed after their timeouts, and over the connection cap a
//! client gets a clear 503 JSON refusal.

use emrshare_node::testkit;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use testkit::{Node, Provisioned, client, height, wait_for, wait_until};

/// Idle sockets each test opens.
const IDLE_SOCKETS: usize = 1_000;
/// The default `max_connections`, and what else a node may hold open (store, log, peers'
/// connections, the listener, refusals in progress).
const DEFAULT_MAX_CONNECTIONS: usize = 512;
const OTHER_FDS: usize = 64;

/// This process opens a thousand sockets per test: lift its soft open-file limit.
fn raise_own_fd_limit() {
    let mut rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlimit) == 0 && rlimit.rlim_cur < 8_192 {
            rlimit.rlim_cur = rlimit.rlim_max.min(8_192);
            libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit);
        }
    }
}

/// `n` sockets to `port` that never finish a request: every other one sends half a header.
fn idle_sockets(port: u16, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        // A node that no longer accepts leaves connects hanging in a full backlog.
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            continue;
        };
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        }
        sockets.push(s);
    }
    sockets
}

/// Reads until the peer closes or `limit` passes: what was read, and whether it closed.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true), // reset
        }
    }
    (got, false)
}

/// One honest GET on a fresh connection: the status, or why there was none.
fn honest_get(port: u16, path: &str, timeout: Duration) -> Result<u16, String> {
    client(timeout)
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

#[test]
fn a_thousand_idle_sockets_keep_descriptors_bounded_and_the_chain_going() {
    raise_own_fd_limit();
    let c = Provisioned::init(2, "conn-chain");
    let auditor = c.start(1);
    let node = c.start(0);
    wait_for(
        Duration::from_secs(20),
        "first block",
        &[&node, &auditor],
        || height(c.port(0)) >= 1,
    );
    let before_fds = node.open_fds();

    let started = Instant::now();
    let sockets = idle_sockets(c.port(0), IDLE_SOCKETS);
    let opened = started.elapsed();
    let mut max_fds = 0;
    for _ in 0..10 {
        max_fds = max_fds.max(node.open_fds());
        std::thread::sleep(Duration::from_millis(100));
    }
    // An honest client is answered at once, while every idle socket is still open here.
    let asked = Instant::now();
    let status = honest_get(c.port(0), "/v1/health", Duration::from_secs(10));
    let answered_in = asked.elapsed();
    max_fds = max_fds.max(node.open_fds());
    let rss = node.rss_kib();
    eprintln!(
        "{} idle sockets opened in {opened:?}; node fds: {before_fds} before, at most {max_fds} \
         with them (bound {}); RSS {rss} KiB; honest request answered in {answered_in:?}",
        sockets.len(),
        DEFAULT_MAX_CONNECTIONS + OTHER_FDS
    );
    assert_eq!(
        status,
        Ok(200),
        "honest request under {IDLE_SOCKETS} idle sockets"
    );
    assert!(answered_in < Duration::from_secs(5), "{answered_in:?}");
    assert!(
        max_fds <= DEFAULT_MAX_CONNECTIONS + OTHER_FDS,
        "{max_fds} open file descriptors with {} idle sockets",
        sockets.len()
    );
    // The chain goes on meanwhile.
    let h = height(c.port(0));
    wait_for(
        Duration::from_secs(10),
        "a block during the flood",
        &[&node],
        || height(c.port(0)) > h,
    );
    // After the header timeout (5 s by default) the node has let go of every idle socket.
    wait_until(
        Duration::from_secs(10),
        "idle sockets closed after the header timeout",
        || node.open_fds() < before_fds + 16,
    );
    drop(sockets);
}

/// The setting: a node allowed 256 files, against a thousand idle sockets.
#[test]
fn a_node_limited_to_256_files_outlasts_a_thousand_idle_sockets() {
    raise_own_fd_limit();
    let c = Provisioned::init(2, "fd-chain");
    let auditor = c.start(1);
    let node = Node::start(&c.config(0), &c.node_dir(0).join("node.log"), Some(256));
    wait_for(
        Duration::from_secs(20),
        "first block",
        &[&node, &auditor],
        || height(c.port(0)) >= 1,
    );

    let sockets = idle_sockets(c.port(0), IDLE_SOCKETS);
    let status = honest_get(c.port(0), "/v1/health", Duration::from_secs(10));
    assert_eq!(
        status,
        Ok(200),
        "honest request under {} idle sockets",
        sockets.len()
    );
    let h = height(c.port(0));
    wait_for(
        Duration::from_secs(10),
        "a block during the flood",
        &[&node],
        || height(c.port(0)) > h,
    );
    assert!(node.open_fds() < 256);
    drop(sockets);
    let log = node.log();
    assert!(!log.contains("Too many open files"), "{log}");
}

#[test]
fn unfinished_headers_and_idle_keep_alive_connections_are_closed() {
    let c = Provisioned::init(2, "timeout-chain");
    c.set_limits(
        1,
        &[("header_read_timeout_ms", 1000), ("idle_timeout_ms", 1500)],
    );
    let _node = c.start(1);
    wait_until(Duration::from_secs(20), "node up", || {
        testkit::health(c.port(1)).is_some()
    });

    let start = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", c.port(1))).unwrap();
    let mut half = TcpStream::connect(("127.0.0.1", c.port(1))).unwrap();
    half.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut kept = TcpStream::connect(("127.0.0.1", c.port(1))).unwrap();
    kept.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();

    for (what, stream) in [("silent", &mut silent), ("half a header", &mut half)] {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(4));
        let after = start.elapsed();
        assert!(closed, "{what}: still open after {after:?}");
        assert!(
            after < Duration::from_secs(3),
            "{what}: closed after {after:?}"
        );
    }
    // The keep-alive connection got its answer, then stays open until the idle timeout.
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(5));
    let after = start.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "keep-alive connection still open after {after:?}");
    assert!(
        after >= Duration::from_millis(1400) && after < Duration::from_secs(4),
        "keep-alive connection closed after {after:?}"
    );
}

#[test]
fn over_the_connection_cap_idle_sockets_give_way_and_busy_ones_get_a_503() {
    let c = Provisioned::init(2, "cap-chain");
    c.set_limits(1, &[("max_connections", 4)]);
    let _node = c.start(1);
    let port = c.port(1);
    wait_until(Duration::from_secs(20), "node up", || {
        testkit::health(port).is_some()
    });

    // Idle sockets fill the cap: an honest client still gets in (the oldest idle one goes).
    let idle = idle_sockets(port, 8);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        honest_get(port, "/v1/health", Duration::from_secs(5)),
        Ok(200)
    );
    drop(idle);

    // Connections with a request in progress (a body still coming) are not evicted: over
    // the cap, a new connection gets 503 with a JSON error, and the node closes it.
    std::thread::sleep(Duration::from_millis(300));
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(
            b"POST /v1/tx HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"jws\":",
        )
        .unwrap();
        busy.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = refused.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let (answer, closed) = read_until_closed(&mut refused, Duration::from_secs(3));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("connections"),
        "{body}"
    );
    assert!(closed, "refused connection left open");

    // Once a busy connection ends, the node serves again.
    drop(busy.pop());
    wait_until(Duration::from_secs(5), "served again", || {
        honest_get(port, "/v1/health", Duration::from_secs(2)) == Ok(200)
    });
}
