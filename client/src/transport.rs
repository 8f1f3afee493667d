//! How the client reaches full nodes: a [`Transport`] sends one HTTP request to one node.
//! [`HttpTransport`] is the real one (reqwest over rustls with aws-lc-rs); [`LyingTransport`]
//! wraps another and makes chosen nodes drop, delay or alter their answers, for tests of
//! what a dishonest node can and cannot do.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HTTP method of the nodes' API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Reads (headers, proofs, directories, blobs).
    Get,
    /// Submits a transaction or a lookup (a JSON body).
    Post,
    /// Stores a blob.
    Put,
}

/// One request to a node's API: a path under the node's base URL (`/v1/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// GET, POST or PUT.
    pub method: Method,
    /// Path and query under the node's base URL, starting with `/v1/`.
    pub path: String,
    /// Header names and values to send.
    pub headers: Vec<(&'static str, String)>,
    /// The request body (empty for a GET).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A GET of `path`, with no headers or body.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::Get,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A POST of a JSON `body` to `path`, with its content type.
    pub fn post_json(path: impl Into<String>, body: Vec<u8>) -> Self {
        Self {
            method: Method::Post,
            path: path.into(),
            headers: vec![("content-type", "application/json".into())],
            body,
        }
    }
}

/// A node's answer: its status and body, whatever the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The response body.
    pub body: Vec<u8>,
}

/// Sends requests to nodes named by their base URL. An `Err` is "no answer" (connection,
/// TLS, timeout), as opposed to an answer with an error status.
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` to the node at base URL `node` and returns its answer, or why there is
    /// none.
    fn send(
        &self,
        node: &str,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, TransportError>> + Send;
}

/// Which certificates the client trusts for `https://` nodes.
#[derive(Debug, Clone)]
pub enum TlsTrust {
    /// Only the CA certificates in this PEM (a consortium's own CA).
    CaPem(Vec<u8>),
    /// Only plain `http://` nodes (loopback tests and the demo).
    PlainHttpOnly,
    /// The operating system's certificate verifier and trust store (feature `platform-tls`,
    /// through `rustls-platform-verifier`): Android's, reached through JNI (the app must
    /// initialise it first, see the bindings), Apple's Security framework, elsewhere the
    /// system roots. For consortia whose nodes carry publicly trusted or MDM-installed
    /// certificates.
    #[cfg(feature = "platform-tls")]
    Platform,
}

/// Why a node gave no answer (or the transport could not be made). Plain words: these reach
/// a command line's error line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The TLS settings or the CA PEM are unusable.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// The node's certificate does not chain to a trusted CA (for a consortium's own CA,
    /// give its `ca.pem`).
    #[error("certificate not trusted: {0}")]
    Untrusted(String),
    /// The node could not be connected to.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The node did not answer within the transport's timeout.
    #[error("timed out")]
    Timeout,
    /// The connection failed after it was made, before the whole answer arrived.
    #[error("the answer broke off: {0}")]
    Broken(String),
    /// No such node in this transport (in-memory consortia), or a test dropped the answer.
    #[error("{0}")]
    Unreachable(String),
}

impl TransportError {
    /// Sorts a reqwest failure into plain words: a certificate problem says so, instead of
    /// "error sending request".
    fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            return Self::Timeout;
        }
        let mut source: Option<&dyn std::error::Error> = Some(e);
        while let Some(cause) = source {
            // An io::Error's `source` skips the error it wraps: look inside it too.
            let wrapped = cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            if let Some(tls) = cause.downcast_ref::<rustls::Error>().or(wrapped) {
                return match tls {
                    rustls::Error::InvalidCertificate(why) => Self::Untrusted(format!("{why:?}")),
                    other => Self::Tls(other.to_string()),
                };
            }
            source = cause.source();
        }
        let innermost = std::iter::successors(Some(e as &dyn std::error::Error), |c| c.source())
            .last()
            .map(|c| c.to_string())
            .unwrap_or_default();
        // rustls reports a certificate it refuses with this text, however deep it is
        // wrapped (hyper's connect errors do not always expose it as a source).
        if innermost.contains("invalid peer certificate") {
            Self::Untrusted(innermost)
        } else if e.is_connect() {
            Self::Connect(innermost)
        } else {
            Self::Broken(innermost)
        }
    }
}

/// The real transport: HTTP/1.1 or HTTPS with rustls (aws-lc-rs provider).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A transport trusting `trust`, where every request must complete within `timeout`.
    pub fn new(trust: TlsTrust, timeout: Duration) -> Result<Self, TransportError> {
        let mut roots = rustls::RootCertStore::empty();
        if let TlsTrust::CaPem(pem) = &trust {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| TransportError::Tls(format!("CA PEM: {e}")))?;
            if certs.is_empty() {
                return Err(TransportError::Tls("CA PEM holds no certificate".into()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| TransportError::Tls(format!("CA certificate: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let tls = match trust {
            #[cfg(feature = "platform-tls")]
            TlsTrust::Platform => {
                use rustls_platform_verifier::BuilderVerifierExt;
                builder
                    .with_platform_verifier()
                    .map_err(|e| TransportError::Tls(e.to_string()))?
                    .with_no_client_auth()
            }
            TlsTrust::CaPem(_) | TlsTrust::PlainHttpOnly => {
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .build()
            .map_err(|e| TransportError::Client(e.to_string()))?;
        Ok(Self { client })
    }
}

impl Transport for HttpTransport {
    async fn send(&self, node: &str, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let url = format!("{}{}", node.trim_end_matches('/'), request.path);
        let mut builder = match request.method {
            Method::Get => self.client.get(url),
            Method::Post => self.client.post(url),
            Method::Put => self.client.put(url),
        };
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        if !request.body.is_empty() || request.method != Method::Get {
            builder = builder.body(request.body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| TransportError::from_reqwest(&e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| TransportError::from_reqwest(&e))?;
        Ok(HttpResponse {
            status,
            body: body.to_vec(),
        })
    }
}

/// A shared transport: several parties' clients over one (one lying node for all of them).
impl<T: Transport> Transport for Arc<T> {
    async fn send(&self, node: &str, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        (**self).send(node, request).await
    }
}

/// Alters a node's answer: the request it answers, and the answer to change.
pub type Alteration = Arc<dyn Fn(&HttpRequest, &mut HttpResponse) + Send + Sync>;

/// What a node does under a [`LyingTransport`].
#[derive(Clone)]
pub enum Behaviour {
    /// Passes requests and answers through unchanged.
    Honest,
    /// No answer at all.
    Drop,
    /// Answers late.
    Delay(Duration),
    /// Answers, but changed.
    Alter(Alteration),
}

/// A transport for tests: `inner` with some nodes misbehaving.
pub struct LyingTransport<T> {
    inner: T,
    behaviours: Mutex<HashMap<String, Behaviour>>,
}

impl<T: Transport> LyingTransport<T> {
    /// Wraps `inner` with every node honest.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            behaviours: Mutex::new(HashMap::new()),
        }
    }

    /// Makes `node` (a base URL) behave as `behaviour` from the next request on.
    pub fn set(&self, node: &str, behaviour: Behaviour) {
        self.behaviours
            .lock()
            .expect("not poisoned")
            .insert(node.to_owned(), behaviour);
    }

    fn behaviour(&self, node: &str) -> Behaviour {
        self.behaviours
            .lock()
            .expect("not poisoned")
            .get(node)
            .cloned()
            .unwrap_or(Behaviour::Honest)
    }
}

impl<T: Transport> Transport for LyingTransport<T> {
    async fn send(&self, node: &str, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        match self.behaviour(node) {
            Behaviour::Honest => self.inner.send(node, request).await,
            Behaviour::Drop => Err(TransportError::Unreachable("dropped".into())),
            Behaviour::Delay(delay) => {
                tokio::time::sleep(delay).await;
                self.inner.send(node, request).await
            }
            Behaviour::Alter(alter) => {
                let mut response = self.inner.send(node, request.clone()).await?;
                alter(&request, &mut response);
                Ok(response)
            }
        }
    }
}
