package org.emrshare.demo.logic

import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock
import org.emrshare.ffi.ClientConfig
import org.emrshare.ffi.EmrshareException
import org.emrshare.ffi.GrantInfo
import org.emrshare.ffi.PartyRole
import org.emrshare.ffi.PatientWallet
import org.emrshare.ffi.ReceivedRecord
import org.emrshare.ffi.Registration
import org.emrshare.ffi.SecretStore
import org.emrshare.ffi.StoredRecord
import org.emrshare.ffi.UploadEvent
import org.emrshare.ffi.UploadProgress

/** A received record as the app keeps it, with what became of it. */
data class RecordEntry(
    val received: ReceivedRecord,
    val stored: StoredRecord? = null,
)

/**
 * The patient's data: the wallet (keys through [secrets]), the records received, stored and
 * granted. No Android types, so the host tests run it against live nodes.
 */
class WalletRepository(
    private val config: ClientConfig,
    private val secrets: SecretStore,
    private val rsaBits: UInt = 3072u,
) {
    private val lock = Mutex()
    private var wallet: PatientWallet? = null
    private val records = LinkedHashMap<String, RecordEntry>()
    private val grants = LinkedHashMap<String, GrantInfo>()

    /** The wallet whose keys the secret store holds, or fresh keys saved there. */
    suspend fun openOrCreate(): PatientWallet = lock.withLock {
        wallet ?: try {
            PatientWallet.restore(config, secrets)
        } catch (e: EmrshareException.NoKeys) {
            PatientWallet.create(config, secrets, rsaBits)
        }.also { wallet = it }
    }

    fun walletOrNull(): PatientWallet? = wallet

    private fun requireWallet(): PatientWallet =
        wallet ?: throw IllegalStateException("onboarding first")

    /**
     * Registers the patient with a voucher of the hospital [hospitalId] (RFC 9474 blind
     * signature): the wallet blinds a request under the hospital's registered voucher key,
     * [hospital] carries it there and brings the blind signature back, the wallet finalizes
     * the voucher (one use) and registers with it. The hospital never sees the patient's ID.
     */
    suspend fun register(hospitalId: String, hospital: VoucherChannel, days: UInt = 365u): Registration {
        val wallet = requireWallet()
        val request = wallet.voucherRequest(hospitalId)
        val voucher = request.finalize(hospital.signBlind(request.blindedRequest()))
        return wallet.register(voucher, days)
    }

    /** New keys for the wallet (same patient ID); the old ones stay to open older records. */
    suspend fun rotateKeys(): Registration = requireWallet().rotateKeys(rsaBits)

    suspend fun receive(sealed: String, doctorRole: PartyRole): RecordEntry {
        val received = requireWallet().receiveRecord(sealed, doctorRole)
        val entry = RecordEntry(received)
        lock.withLock { records[received.record.recordId] = entry }
        return entry
    }

    fun records(): List<RecordEntry> = records.values.toList()

    fun record(recordId: String): RecordEntry? = records[recordId]

    suspend fun store(recordId: String, department: String, onProgress: (UploadEvent) -> Unit = {}): StoredRecord {
        val entry = records[recordId] ?: throw IllegalArgumentException("no such record")
        val progress = object : UploadProgress {
            override fun onProgress(event: UploadEvent) = onProgress(event)
        }
        val stored = requireWallet().storeRecord(entry.received.sdJwt, department, progress)
        lock.withLock { records[recordId] = entry.copy(stored = stored) }
        return stored
    }

    suspend fun grant(
        recordId: String,
        granteeId: String,
        granteeRole: PartyRole,
        parts: List<String>,
        seconds: ULong,
    ): GrantInfo {
        val stored = records[recordId]?.stored ?: throw IllegalArgumentException("store the record first")
        val grant = requireWallet().grant(stored.envelope, granteeId, granteeRole, parts, seconds)
        lock.withLock { grants[grant.grantId] = grant }
        return grant
    }

    suspend fun revoke(grantId: String): GrantInfo {
        val revoked = requireWallet().revoke(grantId)
        lock.withLock { grants[grantId] = revoked }
        return revoked
    }

    /** The grants, refreshed from the chain (proven). */
    suspend fun refreshGrants(): List<GrantInfo> {
        val ids = lock.withLock { grants.keys.toList() }
        for (id in ids) {
            val now = requireWallet().grantStatus(id) ?: continue
            lock.withLock { grants[id] = now }
        }
        return grants.values.toList()
    }

    suspend fun auditLog() = requireWallet().auditLog()
}
