//! # emrshare-ffi
//!
//! The SDK a phone app embeds, through uniffi (Kotlin on Android and the JVM, Swift on iOS):
//! a small facade over `emrshare-core` (DESIGN sections 1, 8 and 11).
//!
//! - [`PatientWallet`]: keys (kept by the app's [`SecretStore`]), registration with a
//!   hospital's blind-signed voucher ([`VoucherRequest`]), key rotation, receiving and
//!   verifying a doctor's sealed record (the doctor's key by a verified k-anonymous lookup),
//!   extraction and key-bound presentation, storage (blob + index on chain), standing grants,
//!   revocation, the audit log.
//! - [`DoctorSigner`]: signs a record (SD-JWT content extraction signature) and seals it to a
//!   patient; as a hospital, admits and expels its doctors and signs patients' vouchers.
//! - [`Requester`]: an institution; asks a patient for a record (the handshake), fetches a
//!   granted blob (logged on chain) and verifies the record in it, or verifies a presentation
//!   a patient made for it.
//! - Governance (DESIGN 3): an institution's `admission_request` and `submit_admission`, a
//!   council member's [`approve_proposal`] (and [`describe_proposal`]); `rotate_keys` for
//!   every party.
//! - [`ClientConfig`]: the consortium (node URLs, genesis), lookup size k, nodes asked n,
//!   timeouts, TLS trust.
//!
//! Network calls are `async` exports (Kotlin `suspend`, Swift `async`); they run on a tokio
//! runtime this library owns ([`runtime`]), so the app's executor only awaits them. Every
//! failure is one [`EmrshareError`] with stable variants and fixed messages: no key material,
//! no record contents and no party IDs in them, nor in logs.
//!
//! - [`OutgoingRequest`] / [`IncomingRequest`]: the mutual-authentication handshake (DESIGN
//!   8) by which a patient answers an institution's request with chosen parts of a record:
//!   [`Requester::start_request`], [`PatientWallet::read_request`], then the objects' steps.

uniffi::setup_scaffolding!();

mod config;
mod doctor;
mod error;
mod governance;
mod handshake;
mod party;
mod patient;
mod platform;
mod requester;
mod secrets;
mod types;

pub use config::ClientConfig;
pub use doctor::DoctorSigner;
pub use error::EmrshareError;
pub use governance::{ProposalInfo, approve_proposal, describe_proposal};
pub use handshake::{
    IncomingRequest, OutgoingRequest, PatientAuthenticated, RequestSummary, SharedRecordInfo,
};
pub use patient::{PatientWallet, VoucherRequest};
pub use requester::Requester;
pub use secrets::{SecretStore, UploadProgress};
pub use types::*;

use std::future::Future;
use std::sync::OnceLock;

/// The library's own tokio runtime: two worker threads (phones have few big cores and the
/// work is mostly waiting on the network), created on first use, alive for the process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        platform::init_logging();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("emrshare-io")
            .enable_all()
            .build()
            .expect("a tokio runtime with two threads can be built")
    })
}

/// Aborts the spawned task when the caller stops waiting (a cancelled coroutine or Swift
/// task drops the future uniffi polls).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `work` on the library's runtime and waits for it from whatever executor polls this
/// future (the foreign language's, through uniffi).
pub(crate) async fn on_runtime<T, F>(work: F) -> Result<T, EmrshareError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, EmrshareError>> + Send + 'static,
{
    let handle = runtime().spawn(work);
    let _abort = AbortOnDrop(handle.abort_handle());
    match handle.await {
        Ok(result) => result,
        Err(e) if e.is_cancelled() => Err(EmrshareError::Cancelled),
        Err(_) => Err(EmrshareError::Internal {
            reason: "a task of the library panicked".into(),
        }),
    }
}

/// Unix time in seconds.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The version of this library (and of the wire formats it speaks).
#[uniffi::export]
pub fn sdk_version() -> String {
    env!("CARGO_PKG_VERSION").into()
}
