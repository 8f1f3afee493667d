package org.emrshare.demo

import android.app.Application
import org.emrshare.demo.logic.AuditViewModel
import org.emrshare.demo.logic.GrantsViewModel
import org.emrshare.demo.logic.ManualVoucherChannel
import org.emrshare.demo.logic.OnboardingViewModel
import org.emrshare.demo.logic.RecordsViewModel
import org.emrshare.demo.logic.RequestViewModel
import org.emrshare.demo.logic.SealedSecretStore
import org.emrshare.demo.logic.WalletRepository
import org.emrshare.demo.platform.FileKeyValueStore
import org.emrshare.demo.platform.KeystoreSealer
import org.emrshare.ffi.EmrshareAndroid
import org.emrshare.ffi.defaultClientConfig

/**
 * Wires the demo: the consortium to use (assets/consortium/: genesis.json and nodes.txt, by
 * default a local consortium on the emulator's host, http://10.0.2.2:PORT), keys sealed by
 * the Android Keystore, and the screens' models.
 */
class DemoApplication : Application() {
    lateinit var repo: WalletRepository
    lateinit var onboarding: OnboardingViewModel
    /** Carries the patient's voucher request to the hospital and its signature back, by hand. */
    val voucher = ManualVoucherChannel()
    lateinit var records: RecordsViewModel
    lateinit var request: RequestViewModel
    lateinit var grants: GrantsViewModel
    lateinit var audit: AuditViewModel

    override fun onCreate() {
        super.onCreate()
        EmrshareAndroid.init(this)
        val genesis = assets.open("consortium/genesis.json").bufferedReader().readText()
        val nodes = assets.open("consortium/nodes.txt").bufferedReader().readLines().map { it.trim() }.filter { it.isNotEmpty() }
        val config = defaultClientConfig(nodes, genesis)
        val secrets = SealedSecretStore(KeystoreSealer(), FileKeyValueStore(this))
        repo = WalletRepository(config, secrets)
        onboarding = OnboardingViewModel(repo)
        records = RecordsViewModel(repo)
        request = RequestViewModel(repo)
        grants = GrantsViewModel(repo)
        audit = AuditViewModel(repo)
    }
}
