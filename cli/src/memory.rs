//! A [`Transport`] to nodes running in this process that skips the sockets: each request
//! goes straight into the node's axum router, and the same verification runs on the answer.
//! The three stories run over it in the tests, next to real HTTP and HTTPS.

use emrshare_client::{HttpRequest, HttpResponse, Method, Transport, TransportError};

/// Nodes by base URL, each answered by its router.
#[derive(Clone)]
pub struct MemoryTransport {
    nodes: Vec<(String, axum::Router)>,
}

impl MemoryTransport {
    pub fn new(nodes: Vec<(String, axum::Router)>) -> Self {
        Self { nodes }
    }
}

/// The largest answer read back (a blob at the node's default limit, base64 aside).
const MAX_ANSWER: usize = 80 * 1024 * 1024;

impl Transport for MemoryTransport {
    async fn send(&self, node: &str, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        use tower::ServiceExt;
        let router = self
            .nodes
            .iter()
            .find(|(url, _)| url == node)
            .map(|(_, router)| router.clone())
            .ok_or_else(|| TransportError::Unreachable(format!("no node at {node}")))?;
        let method = match request.method {
            Method::Get => axum::http::Method::GET,
            Method::Post => axum::http::Method::POST,
            Method::Put => axum::http::Method::PUT,
        };
        let mut builder = axum::http::Request::builder()
            .method(method)
            .uri(&request.path);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        // What HTTP framing gives every request with a body (the node requires it of
        // uploads).
        if !request.body.is_empty() {
            builder = builder.header(axum::http::header::CONTENT_LENGTH, request.body.len());
        }
        let request = builder
            .body(axum::body::Body::from(request.body))
            .map_err(|e| TransportError::Client(e.to_string()))?;
        let response = router
            .oneshot(request)
            .await
            .map_err(|e| TransportError::Broken(e.to_string()))?;
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
            .await
            .map_err(|e| TransportError::Broken(e.to_string()))?;
        Ok(HttpResponse {
            status,
            body: body.to_vec(),
        })
    }
}
