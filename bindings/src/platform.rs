//! What differs by platform: logging, and the TLS trust for `https://` nodes without a
//! consortium CA.
//!
//! - Android: logs go to logcat (`android_logger`, tag `emrshare`); TLS uses the Android trust
//!   store and policy through `rustls-platform-verifier`, which calls into the JVM and must be
//!   initialised once with the app's `Context`: the app calls the JNI function below (the
//!   Kotlin side is `org.emrshare.ffi.EmrshareAndroid.init(context)`, see android-demo).
//! - iOS / macOS: TLS uses the Security framework (no initialisation).
//! - Elsewhere (the host JVM tests): no platform verifier; `https://` needs a CA PEM.

use crate::error::{EmrshareError, Result};
use emrshare_client::TlsTrust;

#[cfg(target_os = "android")]
mod android {
    use jni::JNIEnv;
    use jni::objects::{JClass, JObject};
    use jni::sys::jboolean;
    use std::sync::atomic::{AtomicBool, Ordering};

    pub static VERIFIER_READY: AtomicBool = AtomicBool::new(false);

    /// `EmrshareAndroid.init(context: Context): Boolean` in Kotlin. Returns false (and logs)
    /// if the verifier could not be initialised; `https://` nodes are then refused.
    #[unsafe(no_mangle)]
    pub extern "system" fn Java_org_emrshare_ffi_EmrshareAndroid_init<'local>(
        mut env: JNIEnv<'local>,
        _class: JClass<'local>,
        context: JObject<'local>,
    ) -> jboolean {
        super::init_logging();
        match rustls_platform_verifier::android::init_with_env(&mut env, context) {
            Ok(()) => {
                VERIFIER_READY.store(true, Ordering::SeqCst);
                1
            }
            Err(_) => {
                log::error!("emrshare: the platform certificate verifier did not initialise");
                0
            }
        }
    }
}

/// Sets up logging once (Android: logcat; elsewhere the `log` facade is left to the host).
pub(crate) fn init_logging() {
    #[cfg(target_os = "android")]
    {
        use std::sync::Once;
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            android_logger::init_once(
                android_logger::Config::default()
                    .with_max_level(log::LevelFilter::Info)
                    .with_tag("emrshare"),
            );
        });
    }
}

/// The trust for `https://` nodes when the app gave no CA.
pub(crate) fn platform_trust() -> Result<TlsTrust> {
    #[cfg(target_os = "android")]
    {
        if android::VERIFIER_READY.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(TlsTrust::Platform)
        } else {
            Err(EmrshareError::InvalidInput {
                reason: "call EmrshareAndroid.init(context) before using https:// nodes \
                         without a CA"
                    .into(),
            })
        }
    }
    #[cfg(any(target_os = "ios", target_os = "macos"))]
    {
        Ok(TlsTrust::Platform)
    }
    #[cfg(not(any(target_os = "android", target_os = "ios", target_os = "macos")))]
    {
        Err(EmrshareError::InvalidInput {
            reason: "https:// nodes need ca_pem on this platform".into(),
        })
    }
}
