//! Bad requests to every route of the node API, against a real node process on 127.0.0.1:
//! malformed, duplicate-member, unknown-field and wrongly typed JSON, bodies over the
//! configured limits, bad path parameters, bad or missing signatures and auth headers,
//! unknown paths and wrong methods. Each gets a 4xx with a JSON `{"error": ...}` body (never a
//! 5xx, a plain-text rejection or a hang), and the node keeps answering /v1/health.

use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::tx::{Action, Role, Transaction, TxBody};
use emrshare_node::testkit::{self, Provisioned, admission_by, member_keys, now_s, wait_for};
use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CHAIN: &str = "neg-chain";
/// Limits written into the node's config (smaller than the defaults, to test them cheaply).
/// (The smallest the node accepts: a request that carries the largest transaction.)
const MAX_BODY: usize = 72 * 1024;
const MAX_BLOB: usize = 256 * 1024;
/// Proposals and certified blocks carry whole blocks: their own, larger limit (the smallest
/// the node accepts: the largest transaction, a header and votes).
const MAX_BLOCK: usize = 384 * 1024;
const MAX_LOOKUP_IDS: usize = 8;

/// One node of a 2-node consortium (node:0 proposes, node:1 audits): node:1 runs alone, so
/// its chain stays at height 0 and every request reaches its checks.
struct Node {
    consortium: Provisioned,
    port: u16,
    process: testkit::Node,
    http: Client,
    /// Cases checked, for the summary line.
    cases: std::cell::Cell<usize>,
}

impl Drop for Node {
    fn drop(&mut self) {
        eprintln!("{} cases", self.cases.get());
    }
}

impl Node {
    fn start() -> Self {
        let consortium = Provisioned::init(2, CHAIN);
        consortium.set_limits(
            1,
            &[
                ("max_body_bytes", MAX_BODY as i64),
                ("max_blob_bytes", MAX_BLOB as i64),
                ("max_block_bytes", MAX_BLOCK as i64),
                ("max_lookup_ids", MAX_LOOKUP_IDS as i64),
                ("max_page_ids", 2),
                ("serve_timeout_ms", 1500),
            ],
        );
        let process = consortium.start(1);
        let http = Client::builder()
            .timeout(Duration::from_secs(10))
            .use_preconfigured_tls(emrshare_node::tls::client_config(None).unwrap())
            .build()
            .unwrap();
        let mut node = Self {
            port: consortium.port(1),
            consortium,
            process,
            http,
            cases: Default::default(),
        };
        wait_for(
            Duration::from_secs(20),
            "node:1 answers /v1/health",
            &[&node.process],
            || node.healthy(),
        );
        assert!(
            node.process.child.try_wait().unwrap().is_none(),
            "another node answered on port {}",
            node.port
        );
        node
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    fn healthy(&self) -> bool {
        self.http
            .get(self.url("/v1/health"))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)
    }

    /// Sends `request`; the answer must come, with status `want` and a JSON error body.
    fn refused(&self, what: &str, request: RequestBuilder, want: u16) {
        let reply = request
            .send()
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        let status = reply.status().as_u16();
        let content_type = reply
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        let allow = reply.headers().get("allow").is_some();
        let body = reply.bytes().unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, want, "{what}: {text}");
        assert!(
            content_type.starts_with("application/json"),
            "{what}: {status} with content-type {content_type:?}: {text}"
        );
        let error: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"));
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: no error message: {text}"
        );
        if status == 405 {
            assert!(allow, "{what}: 405 without an Allow header");
        }
        self.cases.set(self.cases.get() + 1);
    }

    /// A POST; to a consortium route with the token of a member (node:0), so what is
    /// tested is what the node does with the body of a peer.
    fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> RequestBuilder {
        let body = body.into();
        let request = self
            .request(Method::POST, path)
            .header("content-type", "application/json");
        self.with_member_token(path, request, body)
    }

    /// Sets `body`, and on a consortium route the `x-emr-peer` token node:0 would send.
    fn with_member_token(
        &self,
        path: &str,
        request: RequestBuilder,
        body: Vec<u8>,
    ) -> RequestBuilder {
        if !path.starts_with("/v1/consensus/") {
            return request.body(body);
        }
        let token = self.consortium.member_token(0, path, &body);
        request.header("x-emr-peer", token).body(body)
    }

    /// The status of a POST of `size` bytes with chunked transfer coding (no length known up
    /// front), written on a raw socket whose writes may fail once the node has answered.
    fn chunked_status(&self, path: &str, size: usize) -> u16 {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b' '; 8192];
        for _ in 0..size / chunk.len() {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if socket.write_all(&framed).is_err() {
                break;
            }
        }
        let _ = socket.write_all(b"0\r\n\r\n");
        let mut answer = [0u8; 12];
        socket.read_exact(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        self.cases.set(self.cases.get() + 1);
        answer[9..12].parse().unwrap()
    }

    /// Still answering, and nothing panicked on the way (a handler panic only drops its
    /// connection, so it shows in the log, not in the answers).
    fn assert_alive(&self) {
        assert!(
            self.healthy(),
            "node stopped answering; log in {}",
            self.process.log.display()
        );
        let log = self.process.log();
        assert!(!log.contains("panicked"), "the node panicked: {log}");
    }
}

fn signed(sender: &str, key: &SigningKey, chain_id: &str, body: TxBody) -> String {
    Transaction {
        chain_id: chain_id.into(),
        sender: PartyId::new(sender).unwrap(),
        sequence: 0,
        body,
    }
    .sign(key)
    .as_jws()
    .to_owned()
}

/// A hospital's admission by the 2-node council (both approve: t = 2).
fn registration(node: &Node, id: &str, key: &SigningKey, chain_id: &str) -> String {
    admission_by(
        &member_keys(node.consortium.dir.path(), 2),
        chain_id,
        id,
        key,
        Role::Hospital,
        None,
    )
}

/// Replaces the signature segment of a JWS with another valid-looking one.
fn forged(jws: &str) -> String {
    let (signed_part, _) = jws.rsplit_once('.').unwrap();
    let other = signed(
        "hospital:other",
        &SigningKey::generate(),
        CHAIN,
        TxBody::RevokeGrant {
            grant_id: "g".into(),
        },
    );
    format!("{signed_part}.{}", other.rsplit_once('.').unwrap().1)
}

fn b64(bytes: &[u8]) -> String {
    emrshare_core::b64::encode(bytes)
}

/// Bodies no JSON endpoint accepts, whatever its schema.
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty body", b"".to_vec()),
        ("not JSON", b"not json".to_vec()),
        ("truncated object", b"{\"a\":".to_vec()),
        ("array", b"[]".to_vec()),
        ("null", b"null".to_vec()),
        ("number", b"1".to_vec()),
        ("string", b"\"x\"".to_vec()),
        ("empty object", b"{}".to_vec()),
        ("not UTF-8", b"{\"a\":\"\xff\xfe\"}".to_vec()),
        ("byte order mark", b"\xef\xbb\xbf{}".to_vec()),
        ("trailing garbage", b"{} x".to_vec()),
        ("two documents", b"{}{}".to_vec()),
        ("deep nesting", {
            let mut deep = "[".repeat(3000);
            deep.push_str(&"]".repeat(3000));
            deep.into_bytes()
        }),
        ("single quotes", b"{'jws':'x'}".to_vec()),
        ("comment", b"{/*c*/}".to_vec()),
    ]
}

const JSON_ROUTES: [&str; 5] = [
    "/v1/tx",
    "/v1/consensus/tx",
    "/v1/consensus/txs",
    "/v1/registry/lookup",
    "/v1/record-vouchers",
];

#[test]
fn json_bodies_malformed_duplicate_unknown_or_mistyped_get_400() {
    let node = Node::start();
    for route in JSON_ROUTES {
        for (what, body) in malformed_bodies() {
            node.refused(&format!("{route}: {what}"), node.post(route, body), 400);
        }
        // The same without a content type, or with another one: still parsed, still refused.
        node.refused(
            &format!("{route}: text/plain"),
            node.with_member_token(
                route,
                node.request(Method::POST, route)
                    .header("content-type", "text/plain"),
                b"not json".to_vec(),
            ),
            400,
        );
        node.refused(
            &format!("{route}: no content type"),
            node.with_member_token(route, node.request(Method::POST, route), b"{".to_vec()),
            400,
        );
    }
    node.assert_alive();

    // Consortium routes from anyone but a member: refused before the body is read.
    for route in JSON_ROUTES
        .iter()
        .filter(|r| r.starts_with("/v1/consensus/"))
    {
        node.refused(
            &format!("{route}: no peer token"),
            node.request(Method::POST, route)
                .header("content-type", "application/json")
                .body("{}"),
            401,
        );
        node.refused(
            &format!("{route}: a garbage peer token"),
            node.request(Method::POST, route)
                .header("x-emr-peer", "a.b.c")
                .body("{}"),
            401,
        );
        // A member's token over another body.
        let token = node.post(route, "[]").build().unwrap();
        let token = token.headers()["x-emr-peer"].clone();
        node.refused(
            &format!("{route}: a token for another body"),
            node.request(Method::POST, route)
                .header("x-emr-peer", token)
                .body("{}"),
            401,
        );
    }

    // Transactions, as clients and peers send them.
    for route in ["/v1/tx", "/v1/consensus/tx"] {
        let cases: [(&str, &str); 9] = [
            ("duplicate member", r#"{"jws":"a.b.c","jws":"a.b.c"}"#),
            ("unknown field", r#"{"jws":"a.b.c","extra":1}"#),
            ("wrong-case field", r#"{"JWS":"a.b.c"}"#),
            ("number", r#"{"jws":1}"#),
            ("null", r#"{"jws":null}"#),
            ("array", r#"{"jws":["a.b.c"]}"#),
            ("object", r#"{"jws":{"a":1}}"#),
            ("bool", r#"{"jws":true}"#),
            ("escaped NUL", r#"{"jws":"a\u0000.b.c"}"#),
        ];
        for (what, body) in cases {
            node.refused(&format!("{route}: {what}"), node.post(route, body), 400);
        }
    }

    // Lookups.
    let route = "/v1/registry/lookup";
    let cases: [(&str, &str); 9] = [
        ("duplicate member", r#"{"ids":["a"],"ids":["b"]}"#),
        ("unknown field", r#"{"ids":["a"],"k":3}"#),
        ("ids a string", r#"{"ids":"a"}"#),
        ("ids numbers", r#"{"ids":[1]}"#),
        ("ids null", r#"{"ids":null}"#),
        ("nested ids", r#"{"ids":[["a"]]}"#),
        ("ids an object", r#"{"ids":{"a":1}}"#),
        ("id null", r#"{"ids":[null]}"#),
        ("duplicate member in duplicate", r#"{"ids":[],"ids":[]}"#),
    ];
    for (what, body) in cases {
        node.refused(&format!("{route}: {what}"), node.post(route, body), 400);
    }

    node.assert_alive();
}

#[test]
fn bodies_over_the_configured_limits_get_413() {
    let node = Node::start();
    for route in JSON_ROUTES {
        let limit = MAX_BODY;
        for size in [limit + 1, 2 * limit] {
            let mut body = br#"{"jws":""#.to_vec();
            body.resize(size - 2, b'a');
            body.extend_from_slice(br#""}"#);
            node.refused(
                &format!("{route}: {size} bytes"),
                node.post(route, body),
                413,
            );
        }
        // Chunked, so no Content-Length to refuse up front (a consortium route needs the
        // length its token signs, so refuses it unread).
        // Sent on a raw socket: the node answers before the body ends, and the sender
        // must not stop at its first failed write to read the answer.
        let want = if route.starts_with("/v1/consensus/") {
            401
        } else {
            413
        };
        assert_eq!(
            node.chunked_status(route, 2 * limit),
            want,
            "{route}: chunked {} bytes",
            2 * limit
        );
        // Exactly at the limit: read, then refused for what it is.
        let mut body = br#"{"jws":""#.to_vec();
        body.resize(limit - 2, b'a');
        body.extend_from_slice(br#""}"#);
        node.refused(
            &format!("{route}: at the limit"),
            node.post(route, body),
            400,
        );
    }
    // Blobs have their own, larger limit.
    let hash = "ab".repeat(32);
    let put = |size: usize| {
        node.request(Method::PUT, &format!("/v1/blobs/{hash}"))
            .header("x-emr-owner", "a.b.c")
            .body(vec![7u8; size])
    };
    node.refused("blob over the blob limit", put(MAX_BLOB + 1), 413);
    node.refused("blob far over the blob limit", put(2 * MAX_BLOB), 413);
    // Over the JSON limit but within the blob limit: refused for its claim, unread.
    node.refused("blob over the JSON limit only", put(2 * MAX_BODY), 401);
    node.assert_alive();
}

#[test]
fn signatures_lookup_sizes_and_removed_consensus_routes_are_checked() {
    let node = Node::start();
    let key = SigningKey::generate();
    let good = registration(&node, "hospital:neg", &key, CHAIN);

    for route in ["/v1/tx", "/v1/consensus/tx"] {
        let body = |jws: &str| json!({ "jws": jws }).to_string();
        let (head, rest) = good.split_once('.').unwrap();
        let payload = rest.split_once('.').unwrap().0;
        let none_header = b64(br#"{"alg":"none","typ":"emr-tx+jwt"}"#);
        let hs_header = b64(br#"{"alg":"HS256","typ":"emr-tx+jwt"}"#);
        let cases: Vec<(&str, String)> = vec![
            ("not a JWS", body("hello")),
            ("two segments", body(&format!("{head}.{payload}"))),
            ("four segments", body(&format!("{good}.x"))),
            (
                "unsigned (empty signature)",
                body(&format!("{head}.{payload}.")),
            ),
            ("alg none", body(&format!("{none_header}.{payload}."))),
            (
                "alg HS256",
                body(&format!("{hs_header}.{payload}.{}", b64(b"mac"))),
            ),
            ("signature of another message", body(&forged(&good))),
            (
                "signature not base64",
                body(&format!("{head}.{payload}.!!!")),
            ),
            (
                "payload not a transaction",
                body(&format!("{head}.{}.{}", b64(b"{}"), b64(b"s"))),
            ),
            (
                "signed by a key other than the registered one",
                body(&{
                    let enc = emrshare_core::keys::DecryptionKey::generate(
                        emrshare_core::keys::RsaBits::B2048,
                    );
                    let body = TxBody::RegisterIdentity {
                        id: PartyId::new("hospital:neg2").unwrap(),
                        role: Role::Hospital,
                        signing_jwk: key.verifying_key().to_jwk(None),
                        encryption_jwk: enc.encryption_key().to_jwk(None),
                        valid_from: 0,
                        valid_until: u64::MAX,
                        voucher: None,
                    };
                    signed("hospital:neg2", &SigningKey::generate(), CHAIN, body)
                }),
            ),
            (
                "another chain",
                body(&registration(&node, "hospital:neg3", &key, "other-chain")),
            ),
        ];
        for (what, body) in cases {
            node.refused(&format!("{route}: {what}"), node.post(route, body), 400);
        }
        let unregistered = body(&signed(
            "hospital:nobody",
            &key,
            CHAIN,
            TxBody::RevokeGrant {
                grant_id: "g".into(),
            },
        ));
        node.refused(
            &format!("{route}: unregistered sender"),
            node.post(route, unregistered),
            403,
        );
    }
    // The control: a well-formed, properly signed transaction is accepted.
    let reply = node
        .post("/v1/tx", json!({ "jws": good }).to_string())
        .send()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 202);

    // Lookups: between 1 and the configured number of valid IDs.
    let route = "/v1/registry/lookup";
    let ids =
        |n: usize| json!({"ids": (0..n).map(|i| format!("hospital:{i}")).collect::<Vec<_>>()});
    let cases: Vec<(&str, Value, u16)> = vec![
        ("empty lookup", json!({"ids": []}), 400),
        ("one ID too many", ids(MAX_LOOKUP_IDS + 1), 400),
        ("many too many", ids(200), 400),
        ("invalid ID", json!({"ids": ["bad id"]}), 400),
        ("empty ID", json!({"ids": [""]}), 400),
        ("ID too long", json!({"ids": ["a".repeat(129)]}), 400),
        ("non-ASCII ID", json!({"ids": ["hôpital"]}), 400),
        (
            "valid IDs among invalid",
            json!({"ids": ["hospital:a", "bad id"]}),
            400,
        ),
        // Valid, but this node has no certified block to prove against yet.
        ("no block yet", ids(MAX_LOOKUP_IDS), 404),
    ];
    for (what, body, want) in cases {
        node.refused(
            &format!("{route}: {what}"),
            node.post(route, body.to_string()),
            want,
        );
    }

    // The slot engine's consensus routes are gone: validators talk over their own
    // network, and no HTTP body reaches consensus.
    for route in ["/v1/consensus/proposal", "/v1/consensus/block"] {
        node.refused(route, node.post(route, "{}"), 404);
    }
    node.assert_alive();
}

#[test]
fn bad_path_parameters_get_400() {
    let node = Node::start();
    let heights = [
        "x",
        "-1",
        "1.5",
        "1e3",
        "0x1",
        "%201",
        "18446744073709551616",
        "99999999999999999999999999",
        "%FF",
        "1%00",
        "%E2%82%AC",
    ];
    for route in ["/v1/blocks"] {
        for h in heights {
            node.refused(
                &format!("{route}/{h}"),
                node.request(Method::GET, &format!("{route}/{h}")),
                400,
            );
        }
    }
    for role in [
        "wizard",
        "Hospital",
        "HOSPITAL",
        "%FF",
        "hospital%00",
        "%22hospital%22",
        "%20",
    ] {
        node.refused(
            &format!("directory {role}"),
            node.request(Method::GET, &format!("/v1/directory/{role}")),
            400,
        );
    }
    let long_id = "a".repeat(129);
    for id in [
        "bad%20id",
        "%FF",
        long_id.as_str(),
        "h%C3%B4pital",
        "%00",
        "a%2Fb",
    ] {
        node.refused(
            &format!("sequence {id}"),
            node.request(Method::GET, &format!("/v1/sequence/{id}")),
            400,
        );
    }
    for id in ["bad%20id", "%FF", long_id.as_str(), "a%2Fb"] {
        node.refused(
            &format!("record {id}"),
            node.request(Method::GET, &format!("/v1/records/{id}")),
            400,
        );
    }
    for query in [
        "?from=",
        "?from=x",
        "?from=-1",
        "?from=1.5",
        "?from=18446744073709551616",
        "?form=1",
        "?from=1&other=b",
    ] {
        node.refused(
            &format!("record query {query:?}"),
            node.request(Method::GET, &format!("/v1/records/record-x{query}")),
            400,
        );
    }
    // Buckets: a prefix of at most 256 characters 0 and 1.
    let long_prefix = "1".repeat(257);
    for bucket in [
        "hospital/bucket/2",
        "hospital/bucket/01a",
        "hospital/bucket/%30%FF",
        "hospital/bucket/0%201",
        &format!("hospital/bucket/{long_prefix}"),
        "wizard/bucket",
        "wizard/bucket/01",
        "Hospital/bucket/1",
    ] {
        node.refused(
            &format!("bucket {bucket}"),
            node.request(Method::GET, &format!("/v1/directory/{bucket}")),
            400,
        );
    }
    for grant in ["%FF", "%C0%80", "a%FFb"] {
        node.refused(
            &format!("grant {grant}"),
            node.request(Method::GET, &format!("/v1/grants/{grant}")),
            400,
        );
    }
    let hashes = [
        "zz".to_owned(),
        "ab".repeat(31) + "a",
        "ab".repeat(32) + "a",
        "AB".repeat(32),
        "ag".repeat(32),
        "%FF".to_owned(),
        "%20".repeat(64),
    ];
    for hash in &hashes {
        node.refused(
            &format!("GET blob {hash}"),
            node.request(Method::GET, &format!("/v1/blobs/{hash}"))
                .header("x-emr-access", "a.b.c"),
            400,
        );
        node.refused(
            &format!("PUT blob {hash}"),
            node.request(Method::PUT, &format!("/v1/blobs/{hash}"))
                .header("x-emr-owner", "a.b.c")
                .body("x"),
            400,
        );
    }
    // Controls: well-formed parameters get answers.
    for path in [
        "/v1/blocks/18446744073709551615",
        "/v1/directory/hospital",
        "/v1/directory/hospital/bucket/1",
        "/v1/directory/hospital/bucket",
        "/v1/sequence/hospital:a",
        "/v1/grants/g-1",
        "/v1/records/record-x",
        "/v1/records/record-x?from=18446744073709551615",
    ] {
        let status = node
            .http
            .get(node.url(path))
            .send()
            .unwrap()
            .status()
            .as_u16();
        assert!(status == 200 || status == 404, "{path}: {status}");
    }
    node.assert_alive();
}

#[test]
fn unknown_paths_get_404_and_wrong_methods_405() {
    let node = Node::start();
    for path in [
        "/",
        "/v1",
        "/v1/",
        "/v2/health",
        "/v1/health/",
        "/V1/HEALTH",
        "/v1/blocks",
        "/v1/blocks/",
        "/v1/blocks/1/2",
        "/v1/blobs/",
        "/v1/consensus",
        "/v1/consensus/lock",
        "/v1/consensus/lock/1",
        "/v1/consensus/proposal",
        "/v1/%FF",
        "/v1/registry",
        "/v1/../v1/health/x",
    ] {
        node.refused(path, node.request(Method::GET, path), 404);
        node.refused(path, node.post(path, "{}"), 404);
    }
    let hash = "ab".repeat(32);
    let blob = format!("/v1/blobs/{hash}");
    let wrong: Vec<(Method, &str)> = vec![
        (Method::POST, "/v1/health"),
        (Method::DELETE, "/v1/health"),
        (Method::GET, "/v1/tx"),
        (Method::PUT, "/v1/tx"),
        (Method::PUT, "/v1/header/latest"),
        (Method::POST, "/v1/blocks/1"),
        (Method::GET, "/v1/registry/lookup"),
        (Method::PATCH, "/v1/registry/lookup"),
        (Method::DELETE, "/v1/directory/hospital"),
        (Method::POST, "/v1/grants/g-1"),
        (Method::POST, "/v1/records/record-x"),
        (Method::GET, "/v1/record-vouchers"),
        (Method::GET, "/v1/consensus/tx"),
        (Method::POST, &blob),
        (Method::DELETE, &blob),
        (Method::PATCH, &blob),
        (Method::POST, "/v1/sequence/hospital:a"),
        (Method::POST, "/v1/openapi.json"),
        (Method::POST, "/metrics"),
        (Method::OPTIONS, "/v1/tx"),
        (Method::TRACE, "/v1/health"),
        (Method::from_bytes(b"BREW").unwrap(), "/v1/health"),
    ];
    for (method, path) in wrong {
        node.refused(
            &format!("{method} {path}"),
            node.request(method.clone(), path).body("{}"),
            405,
        );
    }
    node.assert_alive();
}

#[test]
fn blob_auth_headers_and_contents_are_checked() {
    let node = Node::start();
    let blob = b"an opaque ciphertext".to_vec();
    let hash = emrshare_core::content_hash(&blob).to_hex();
    let path = format!("/v1/blobs/{hash}");
    let owner = SigningKey::generate();
    let claim = |payload: Value| {
        emrshare_core::jws::sign(
            &owner,
            &emrshare_core::jws::Header::es256("emr-blob+jwt", None),
            &payload,
        )
    };
    let good_claim = claim(json!({"blob": hash, "owner": "patient-1", "iat": now_s()}));
    let put = |claim: Option<&[u8]>, body: &[u8]| {
        let mut request = node.request(Method::PUT, &path).body(body.to_vec());
        if let Some(claim) = claim {
            request = request.header(
                "x-emr-owner",
                reqwest::header::HeaderValue::from_bytes(claim).unwrap(),
            );
        }
        request
    };
    let cases: Vec<(&str, RequestBuilder, u16)> = vec![
        ("PUT without x-emr-owner", put(None, &blob), 401),
        ("PUT with an empty claim", put(Some(b""), &blob), 401),
        (
            "PUT with a garbage claim",
            put(Some(b"garbage"), &blob),
            401,
        ),
        (
            "PUT with a non-UTF-8 claim",
            put(Some(b"\xff\xfe"), &blob),
            401,
        ),
        (
            "PUT with a claim lacking its owner",
            put(
                Some(claim(json!({"blob": hash, "iat": now_s()})).as_bytes()),
                &blob,
            ),
            401,
        ),
        (
            "PUT with a claim whose owner is no ID",
            put(
                Some(claim(json!({"blob": hash, "owner": "bad id", "iat": now_s()})).as_bytes()),
                &blob,
            ),
            401,
        ),
        (
            "PUT by an unregistered owner",
            put(Some(good_claim.as_bytes()), &blob),
            403,
        ),
        // The claim is checked before the body is read: an unregistered owner's body is
        // never looked at (the hash check is in adversary.rs, with a registered owner).
        (
            "PUT by an unregistered owner of a body that does not hash to its address",
            put(Some(good_claim.as_bytes()), b"other bytes"),
            403,
        ),
        (
            "PUT of an empty body",
            put(Some(good_claim.as_bytes()), b""),
            403,
        ),
    ];
    for (what, request, want) in cases {
        node.refused(what, request, want);
    }

    let reader = SigningKey::generate();
    let access = |action: Action, at: u64| {
        signed(
            "insurer:acme",
            &reader,
            CHAIN,
            TxBody::AccessLog {
                grant_id: None,
                grant_jwk: None,
                action,
                at,
                details: "sealed".into(),
            },
        )
    };
    let get = |access: Option<&[u8]>| {
        let mut request = node.request(Method::GET, &path);
        if let Some(access) = access {
            request = request.header(
                "x-emr-access",
                reqwest::header::HeaderValue::from_bytes(access).unwrap(),
            );
        }
        request
    };
    let now = now_s();
    let cases: Vec<(&str, RequestBuilder, u16)> = vec![
        ("GET without x-emr-access", get(None), 401),
        ("GET with an empty access", get(Some(b"")), 401),
        ("GET with a garbage access", get(Some(b"a.b.c")), 401),
        ("GET with a non-UTF-8 access", get(Some(b"\xff")), 401),
        (
            "GET with a transaction that is no access log",
            get(Some(
                registration(&node, "insurer:acme", &reader, CHAIN).as_bytes(),
            )),
            401,
        ),
        (
            "GET with an access log for copying",
            get(Some(access(Action::Copy, now).as_bytes())),
            401,
        ),
        (
            "GET with a stale access log",
            get(Some(access(Action::Read, now - 3600).as_bytes())),
            401,
        ),
        (
            "GET of a blob nobody stored",
            get(Some(access(Action::Read, now).as_bytes())),
            404,
        ),
    ];
    for (what, request, want) in cases {
        node.refused(what, request, want);
    }
    node.assert_alive();
}

#[test]
fn a_request_whose_body_never_finishes_gets_408_and_the_node_goes_on() {
    use std::io::{Read, Write};
    let node = Node::start();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"POST /v1/tx HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"jws\":",
        )
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n{") {
        let n = stream
            .read(&mut buffer)
            .expect("an answer before the read timeout");
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buffer[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(8));
    node.assert_alive();
}
