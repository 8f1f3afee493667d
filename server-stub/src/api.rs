//! The node's HTTP API, versioned under `/v1`, JSON bodies parsed strictly (duplicate members
//! and unknown fields refused), every error a JSON `{"error": ...}` with a 4xx status.

use crate::node::{AdmitError, BlobError, Node};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use emrshare_core::Hash;
use emrshare_core::keys::PartyId;

use emrshare_core::ledger::machine::{directory_head_key, grant_key, registry_key};
use emrshare_core::ledger::state::StateKey;
use emrshare_core::ledger::tx::Role;
use emrshare_core::ledger::wire::{
    BlobStored, DirectoryAnswer, ErrorBody, GrantAnswer, HealthAnswer, LookupEntry, LookupRequest,
    LookupResponse, ProvenValue, RelayAccepted, RelayRequest, SequenceAnswer, SubmitRequest,
    SubmitResponse, ValidatorsAnswer,
};
use emrshare_core::strict_json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

type Shared = Arc<Node>;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(ErrorBody::new(message))).into_response()
}

/// An answer nesting ledger types (header, state proof), serialized through a `Value` as the
/// node always has: members in sorted order (see `emrshare_core::ledger::wire`).
fn sorted_json<T: Serialize>(answer: &T) -> Response {
    match serde_json::to_value(answer) {
        Ok(value) => Json(value).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A request body that did not parse: a 400 with the reason.
struct BadBody(String);

impl IntoResponse for BadBody {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BadBody> {
    strict_json::parse(body).map_err(|e| BadBody(e.to_string()))
}

pub fn router(node: Shared) -> Router {
    let limit = node.config.limits.max_body_bytes;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/tx", post(submit))
        .route("/v1/tx/{id}", get(tx_status))
        .route("/v1/header/latest", get(latest_header))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/registry/lookup", post(lookup))
        .route("/v1/directory/{role}", get(directory))
        .route("/v1/directory/{role}/bucket", get(whole_directory))
        .route("/v1/directory/{role}/bucket/{prefix}", get(bucket))
        .route("/v1/grants/{grant_id}", get(grant))
        .route("/v1/validators", get(validators))
        .route("/v1/records/{record}", get(record))
        .route("/v1/record-vouchers", post(record_voucher))
        // Consortium routes: the sender's token is checked before the body is read
        // (proposals and blocks up to max_block_bytes, relays up to max_body_bytes).
        .route("/v1/consensus/tx", post(relayed_tx))
        .route("/v1/consensus/txs", post(relayed_txs))
        // Blob bodies stream to disk once the owner's claim is checked.
        .route("/v1/blobs/{hash}", get(get_blob).put(put_blob))
        .route("/v1/sequence/{id}", get(sequence))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        // A request (a slow body included) gets this long; then a 408, and the connection's
        // resources go back.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_millis(node.config.limits.serve_timeout_ms),
        ))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(node)
}

/// axum's own rejections (405 for a wrong method, 413 for a body over the limit, 400 for a
/// path parameter that is not UTF-8...) are plain text or empty: re-sent as JSON errors with
/// the same status (and `Allow` header).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let mut json = match text.trim() {
        "" => error(status, status.canonical_reason().unwrap_or("error")),
        text => error(status, text),
    };
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        json.headers_mut().insert(header::ALLOW, allow.clone());
    }
    json
}

/// Liveness, and what the node knows of its sync state (see [`crate::peers`]).
async fn health(State(node): State<Shared>) -> Json<HealthAnswer> {
    let height = node.chain.lock().await.height();
    Json(HealthAnswer {
        chain_id: Some(node.peers.chain_id().to_owned()),
        genesis_hash: Some(node.peers.genesis_hash()),
        height,
        id: node.keys.id.clone(),
        status: node.peers.status(height),
    })
}

/// The one place admission refusals become HTTP statuses.
fn admit_error(e: &AdmitError) -> Response {
    use emrshare_core::ledger::machine::ApplyError;
    let status = match e {
        AdmitError::Malformed(_) => StatusCode::BAD_REQUEST,
        AdmitError::Refused(
            ApplyError::UnknownSender(_)
            | ApplyError::InactiveSender(_)
            | ApplyError::NotAllowed(_)
            | ApplyError::Governance(_)
            | ApplyError::Voucher(_),
        ) => StatusCode::FORBIDDEN,
        AdmitError::Refused(ApplyError::Sequence { .. } | ApplyError::AlreadyRegistered(_))
        | AdmitError::SequenceTaken { .. }
        | AdmitError::SequenceGap { .. } => StatusCode::CONFLICT,
        AdmitError::Refused(_) => StatusCode::BAD_REQUEST,
        AdmitError::NoRoom(_) => StatusCode::TOO_MANY_REQUESTS,
        AdmitError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

/// The one place blob refusals become HTTP statuses.
fn blob_error(e: &BlobError) -> Response {
    let status = match e {
        BlobError::BadRequest(_) => StatusCode::BAD_REQUEST,
        BlobError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        BlobError::Forbidden(_) => StatusCode::FORBIDDEN,
        BlobError::NotFound => StatusCode::NOT_FOUND,
        BlobError::Conflict(_) => StatusCode::CONFLICT,
        BlobError::LengthRequired => StatusCode::LENGTH_REQUIRED,
        BlobError::TooLarge(..) => StatusCode::PAYLOAD_TOO_LARGE,
        BlobError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        BlobError::Admit(e) => return admit_error(e),
        BlobError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

async fn submit(State(node): State<Shared>, body: Bytes) -> Response {
    let body: SubmitRequest = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    match node.submit(&body.jws).await {
        Ok(admitted) => accepted(admitted.id),
        Err(e) => admit_error(&e),
    }
}

fn accepted(id: emrshare_core::ledger::merkle::Hash) -> Response {
    let id = emrshare_core::b64::encode(id);
    (StatusCode::ACCEPTED, Json(SubmitResponse { id })).into_response()
}

/// What became of a transaction this node acknowledged: pending, committed (at a height) or
/// failed (and why).
async fn tx_status(State(node): State<Shared>, Path(id): Path<String>) -> Response {
    let Ok(id) = emrshare_core::b64::decode_array::<32>(&id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "a transaction ID is 43 base64url characters",
        );
    };
    match node.tx_status(&Hash::new(id)) {
        Ok(Some(status)) => Json(status).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such transaction here"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The body of a consortium route, read only after its `x-emr-peer` token checks (a member
/// signed it for this route and this length) and then checked against the token's hash.
async fn peer_body(
    node: &Node,
    headers: &HeaderMap,
    path: &str,
    body: Body,
    limit: usize,
) -> Result<Bytes, Response> {
    let Some(token) = headers.get("x-emr-peer").and_then(|v| v.to_str().ok()) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "consortium route: an x-emr-peer token of a member is required",
        ));
    };
    let length = content_length(headers);
    if length.is_some_and(|len| len > limit as u64) {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over the limit of {limit} bytes"),
        ));
    }
    let expected = node
        .check_peer_token(token, path, length)
        .await
        .map_err(|e| error(StatusCode::UNAUTHORIZED, e))?;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    if emrshare_core::content_hash(&bytes) != expected {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "body does not match the peer token",
        ));
    }
    Ok(bytes)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A transaction relayed by a peer: admitted, not relayed again.
async fn relayed_tx(State(node): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let limit = node.config.limits.max_body_bytes;
    let body = match peer_body(&node, &headers, "/v1/consensus/tx", body, limit).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let body: SubmitRequest = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    match node.admit(&body.jws).await {
        Ok(admitted) => accepted(admitted.id),
        Err(e) => admit_error(&e),
    }
}

/// Transactions relayed by a peer in one request: each admitted (stored together, one
/// commit), none relayed again.
async fn relayed_txs(State(node): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let limit = node.config.limits.max_body_bytes;
    let body = match peer_body(&node, &headers, "/v1/consensus/txs", body, limit).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let body: RelayRequest = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if body.txs.len() > node.config.limits.max_txs_per_block {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "at most {} transactions",
                node.config.limits.max_txs_per_block
            ),
        );
    }
    let (accepted, refused) = node.admit_relayed(&body.txs).await;
    let answer = RelayAccepted { accepted, refused };
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

/// The proposal this node, as an auditor, is locked on at a height (or null).
async fn latest_header(State(node): State<Shared>) -> Response {
    let head = node.chain.lock().await.snapshot().map(|(header, _)| header);
    match head {
        Some(header) => Json(header).into_response(),
        None => error(StatusCode::NOT_FOUND, "no block yet"),
    }
}

async fn block(State(node): State<Shared>, Path(height): Path<String>) -> Response {
    let Ok(height) = height.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "height is not a number");
    };
    match node.store.block(height) {
        Ok(Some(block)) => Json(block).into_response(),
        _ => error(StatusCode::NOT_FOUND, "no such block"),
    }
}

/// Registry entries of k IDs with membership or absence proofs under the latest certified
/// header, in one answer: the thin client's k-anonymous lookup (DESIGN section 8).
async fn lookup(State(node): State<Shared>, body: Bytes) -> Response {
    let body: LookupRequest = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if body.ids.is_empty() || body.ids.len() > node.config.limits.max_lookup_ids {
        return error(
            StatusCode::BAD_REQUEST,
            format!("between 1 and {} IDs", node.config.limits.max_lookup_ids),
        );
    }
    let ids = match body
        .ids
        .into_iter()
        .map(PartyId::new)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(ids) => ids,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // A snapshot of the header and the state under it (O(1)); proofs and the answer are
    // made without holding the chain.
    let answer = {
        let snapshot = node.chain.lock().await.snapshot();
        let Some((header, state)) = snapshot else {
            return error(StatusCode::NOT_FOUND, "no block yet");
        };
        let entries: Vec<LookupEntry> = ids
            .into_iter()
            .map(|id| {
                let (value, proof) = state.get_with_proof(&registry_key(&id));
                LookupEntry {
                    id,
                    proof,
                    value: value.map(|v| String::from_utf8_lossy(v).into_owned()),
                }
            })
            .collect();
        LookupResponse { entries, header }
    };
    sorted_json(&answer)
}

fn parse_role(role: &str) -> Option<Role> {
    serde_json::from_value::<Role>(Value::String(role.to_owned())).ok()
}

/// A role's directory head (its tree's root and size), proven: what a lookup sizes its
/// bucket from.
async fn directory(State(node): State<Shared>, Path(role): Path<String>) -> Response {
    let Some(role) = parse_role(&role) else {
        return error(StatusCode::BAD_REQUEST, "unknown role");
    };
    let snapshot = node.chain.lock().await.snapshot();
    let Some((header, state)) = snapshot else {
        return error(StatusCode::NOT_FOUND, "no block yet");
    };
    let head = proven(&state, &directory_head_key(role));
    sorted_json(&DirectoryAnswer { header, head })
}

/// The bucket of the empty prefix: the whole directory of a role.
async fn whole_directory(state: State<Shared>, Path(role): Path<String>) -> Response {
    bucket(state, Path((role, String::new()))).await
}

/// Every registered ID of a role under a key prefix (its bits as `0` and `1` characters),
/// with the proof that it is all of them: the k-anonymous lookup (DESIGN section 8).
async fn bucket(
    State(node): State<Shared>,
    Path((role, prefix)): Path<(String, String)>,
) -> Response {
    let Some(role) = parse_role(&role) else {
        return error(StatusCode::BAD_REQUEST, "unknown role");
    };
    let Some((bits, prefix)) = emrshare_core::lookup::bucket_prefix(&prefix) else {
        return error(
            StatusCode::BAD_REQUEST,
            "a bucket's prefix is at most 256 characters 0 and 1",
        );
    };
    let limit = node.config.limits.max_page_ids;
    // A snapshot of the header and the state under it (O(1)); the bucket and its proof are
    // made without holding the chain.
    let snapshot = node.chain.lock().await.snapshot();
    let Some((header, state)) = snapshot else {
        return error(StatusCode::NOT_FOUND, "no block yet");
    };
    let Some(answer) = state.bucket_answer(header, role, &prefix, bits, limit) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the bucket holds more than {limit} IDs: ask a longer prefix"),
        );
    };
    sorted_json(&answer)
}

/// A state value or its absence, with its proof.
fn proven(state: &emrshare_core::ledger::machine::LedgerState, key: &StateKey) -> ProvenValue {
    let (value, proof) = state.get_with_proof(key);
    ProvenValue {
        proof,
        value: value.map(|v| String::from_utf8_lossy(v).into_owned()),
    }
}

async fn grant(State(node): State<Shared>, Path(grant_id): Path<String>) -> Response {
    let snapshot = node.chain.lock().await.snapshot();
    let Some((header, state)) = snapshot else {
        return error(StatusCode::NOT_FOUND, "no block yet");
    };
    let grant = proven(&state, &grant_key(&grant_id));
    Json(GrantAnswer { grant, header }).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordQuery {
    #[serde(default)]
    from: u64,
}

/// A record's account and its access logs from `from` on (at most [`MAX_LOGS_PER_ANSWER`]),
/// each with its proof: how a phone reads its index and audit log without the chain.
async fn record(
    State(node): State<Shared>,
    Path(record): Path<String>,
    Query(query): Query<RecordQuery>,
) -> Response {
    let Ok(record) = PartyId::new(record) else {
        return error(StatusCode::BAD_REQUEST, "invalid record account ID");
    };
    let snapshot = node.chain.lock().await.snapshot();
    let Some((header, state)) = snapshot else {
        return error(StatusCode::NOT_FOUND, "no block yet");
    };
    sorted_json(&state.record_answer(header, &record, query.from))
}

/// A record voucher for a registered patient (its blinded message signed), within its
/// daily quota.
async fn record_voucher(State(node): State<Shared>, body: Bytes) -> Response {
    use crate::record_vouchers::VoucherRefusal;
    let Some(issuer) = &node.record_vouchers else {
        return error(StatusCode::NOT_FOUND, VoucherRefusal::NotIssuer);
    };
    let state = node.chain.lock().await.state().clone();
    match issuer.issue(&state, &body, crate::node::now_ms() / 1000) {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => {
            let status = match e {
                VoucherRefusal::Malformed(_) => StatusCode::BAD_REQUEST,
                VoucherRefusal::Forbidden(_) => StatusCode::FORBIDDEN,
                VoucherRefusal::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
                VoucherRefusal::NotIssuer => StatusCode::NOT_FOUND,
            };
            error(status, e)
        }
    }
}

/// The validator set of the next block, the members' credit, and every change of set so far
/// (each with the certified header a thin client follows it by).
async fn validators(State(node): State<Shared>) -> Json<ValidatorsAnswer> {
    let chain = node.chain.lock().await;
    Json(ValidatorsAnswer {
        height: chain.height(),
        current: chain.validators().clone(),
        members: chain.state().members(),
        transitions: chain.transitions().to_vec(),
    })
}

fn blob_hash(hex: &str) -> Result<Hash, BadBody> {
    Hash::from_hex(hex).ok_or_else(|| BadBody("blob address is 64 lowercase hex digits".into()))
}

async fn put_blob(
    State(node): State<Shared>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let hash = match blob_hash(&hash) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    let Some(claim) = headers.get("x-emr-owner").and_then(|v| v.to_str().ok()) else {
        return error(StatusCode::UNAUTHORIZED, "x-emr-owner claim required");
    };
    let length = content_length(&headers);
    // Nothing of the body is read before the claim checks.
    let owner = match node.check_upload(hash, claim, length).await {
        Ok(owner) => owner,
        Err(e) => return blob_error(&e),
    };
    let length = length.unwrap_or_default();
    match node
        .put_blob(hash, &owner, length, body.into_data_stream())
        .await
    {
        Ok(()) => (StatusCode::CREATED, Json(BlobStored { hash })).into_response(),
        Err(e) => blob_error(&e),
    }
}

async fn get_blob(
    State(node): State<Shared>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Response {
    let hash = match blob_hash(&hash) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    let Some(access) = headers.get("x-emr-access").and_then(|v| v.to_str().ok()) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "x-emr-access (a signed AccessLog transaction) required",
        );
    };
    match node.get_blob(hash, access).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => blob_error(&e),
    }
}

async fn sequence(State(node): State<Shared>, Path(id): Path<String>) -> Response {
    let Ok(id) = PartyId::new(id) else {
        return error(StatusCode::BAD_REQUEST, "invalid ID");
    };
    let next = node.chain.lock().await.state().next_sequence(&id);
    Json(SequenceAnswer { next }).into_response()
}

async fn metrics(State(node): State<Shared>) -> Response {
    let height = node.chain.lock().await.height();
    let (mempool, mempool_bytes) = node.mempool_size();
    let text = format!(
        "# TYPE emrshare_height gauge\nemrshare_height {height}\n# TYPE emrshare_mempool_transactions gauge\nemrshare_mempool_transactions {mempool}\n# TYPE emrshare_mempool_bytes gauge\nemrshare_mempool_bytes {mempool_bytes}\n"
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi() -> Json<Value> {
    Json(serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is valid JSON"))
}
