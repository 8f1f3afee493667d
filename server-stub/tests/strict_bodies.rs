//! A JSON array where the API declares an object is refused (issue #10, point 13): serde's
//! derive would read `["x"]` as `{"jws": "x"}` and `[["node:0"]]` as a lookup.

use emrshare_node::testkit;

use std::time::Duration;
use testkit::{Provisioned, client, wait_until};

#[test]
fn arrays_in_place_of_objects_are_refused() {
    let c = Provisioned::init(2, "strict-chain");
    // node:1 alone: its chain stays at height 0.
    let _node = c.start(1);
    let port = c.port(1);
    wait_until(Duration::from_secs(20), "node up", || {
        testkit::health(port).is_some()
    });
    // On a consortium route as node:0 would send it (a member's token), so the body is read.
    let post = |path: &str, body: &str| {
        let mut request = client(Duration::from_secs(3))
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", "application/json");
        if path.starts_with("/v1/consensus/") {
            request = request.header("x-emr-peer", c.member_token(0, path, body.as_bytes()));
        }
        let reply = request.body(body.to_owned()).send().unwrap();
        let status = reply.status().as_u16();
        (status, reply.json::<serde_json::Value>().unwrap())
    };
    for (path, body) in [
        ("/v1/tx", r#"["x"]"#),
        ("/v1/consensus/tx", r#"["x"]"#),
        ("/v1/consensus/txs", r#"[["x"]]"#),
        ("/v1/registry/lookup", r#"[["node:0"]]"#),
        ("/v1/registry/lookup", r#"{"ids":"node:0"}"#),
    ] {
        let (status, answer) = post(path, body);
        assert_eq!(status, 400, "{path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("a JSON object") || error.contains("a sequence"),
            "{path} {body}: {error}"
        );
    }
    // The object spelling reaches the checks behind the parser.
    let (status, answer) = post("/v1/registry/lookup", r#"{"ids":["node:0"]}"#);
    assert_eq!(status, 404, "{answer}");
}
