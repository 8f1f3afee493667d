package org.emrshare.ffi

import android.content.Context

/**
 * Android set-up of the emrshare library: loads libemrshare_ffi.so and hands the app's
 * Context to rustls-platform-verifier (Android trust store, through JNI). Call once, before
 * any https:// node is used without a consortium CA (DemoApplication does).
 */
object EmrshareAndroid {
    init {
        System.loadLibrary("emrshare_ffi")
    }

    /** Returns false if the platform verifier could not be set up (https:// is then refused). */
    @JvmStatic
    external fun init(context: Context): Boolean
}
