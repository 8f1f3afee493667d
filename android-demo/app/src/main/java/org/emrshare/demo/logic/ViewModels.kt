package org.emrshare.demo.logic

import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import org.emrshare.ffi.AccessEvent
import org.emrshare.ffi.EmrshareException
import org.emrshare.ffi.GrantInfo
import org.emrshare.ffi.LookupReport
import org.emrshare.ffi.PartyRole
import org.emrshare.ffi.UploadEvent
import org.emrshare.ffi.UploadStage

/**
 * The screens' logic, in plain Kotlin: each model exposes a [StateFlow] the Compose UI draws
 * and suspend functions the UI launches. The host tests drive them against live nodes.
 */

/** A text for the user from the SDK's error (fixed texts: no personal data). */
fun describe(e: Throwable): String = when (e) {
    is EmrshareException.VerificationFailed -> "Could not be verified: ${e.reason}"
    is EmrshareException.NotRegistered -> "Not registered (or no longer active) on the consortium"
    is EmrshareException.Refused -> "Refused by the network (${e.status})"
    is EmrshareException.Unreachable -> "No node answered"
    is EmrshareException.UntrustedAnswers -> "The nodes' answers did not verify; nothing was accepted"
    is EmrshareException.Timeout -> "Not confirmed in time; try again"
    is EmrshareException.InvalidInput -> "Invalid input: ${e.reason}"
    is EmrshareException.SecretStore -> "Key storage failed: ${e.reason}"
    is EmrshareException -> "Failed (${e::class.simpleName})"
    else -> "Failed"
}

sealed interface OnboardingState {
    data object NotStarted : OnboardingState
    data object CreatingKeys : OnboardingState
    data class Registering(val patientId: String) : OnboardingState
    data class Ready(val patientId: String, val provenAtHeight: ULong) : OnboardingState
    data class Failed(val message: String) : OnboardingState
}

/** Onboarding: keys into the secret store (Android Keystore), then registration. */
class OnboardingViewModel(private val repo: WalletRepository) {
    private val _state = MutableStateFlow<OnboardingState>(OnboardingState.NotStarted)
    val state: StateFlow<OnboardingState> = _state.asStateFlow()

    suspend fun start(days: UInt = 365u) {
        _state.value = OnboardingState.CreatingKeys
        try {
            val wallet = repo.openOrCreate()
            _state.value = OnboardingState.Registering(wallet.patientId())
            val registration = repo.register(days)
            _state.value = OnboardingState.Ready(registration.partyId, registration.height)
        } catch (e: EmrshareException) {
            _state.value = OnboardingState.Failed(describe(e))
        }
    }
}

/** One row of the records screen. */
data class RecordRow(
    val recordId: String,
    val doctorId: String,
    val parts: List<String>,
    /** "verified" with how, or why not. */
    val verification: Verification,
    val storedBlob: String?,
    val uploadStage: UploadStage? = null,
)

sealed interface Verification {
    data class Verified(val doctorLookup: LookupReport) : Verification
    data class Rejected(val message: String) : Verification
}

/** Records: receive a sealed record from a doctor, see its verification, store it. */
class RecordsViewModel(private val repo: WalletRepository) {
    private val _rows = MutableStateFlow<List<RecordRow>>(emptyList())
    val rows: StateFlow<List<RecordRow>> = _rows.asStateFlow()
    private val rejected = mutableListOf<RecordRow>()
    private val stages = mutableMapOf<String, UploadStage>()

    private fun publish() {
        _rows.value = repo.records().map { entry ->
            val r = entry.received.record
            RecordRow(
                recordId = r.recordId,
                doctorId = r.doctorId,
                parts = r.parts.map { it.name },
                verification = Verification.Verified(entry.received.doctorLookup),
                storedBlob = entry.stored?.blob,
                uploadStage = stages[r.recordId],
            )
        } + rejected
    }

    /** Returns the record ID, or null if the record was rejected (shown as a rejected row). */
    suspend fun receive(sealed: String, doctorRole: PartyRole = PartyRole.HOSPITAL): String? {
        return try {
            val entry = repo.receive(sealed, doctorRole)
            publish()
            entry.received.record.recordId
        } catch (e: EmrshareException) {
            rejected += RecordRow("(rejected ${rejected.size + 1})", "?", emptyList(), Verification.Rejected(describe(e)), null)
            publish()
            null
        }
    }

    suspend fun store(recordId: String, department: String): List<UploadEvent> {
        val events = mutableListOf<UploadEvent>()
        repo.store(recordId, department) { event ->
            synchronized(events) { events += event }
            stages[recordId] = event.stage
        }
        publish()
        return events
    }
}

/** An institution's request as it reaches the phone (QR code or link). */
data class IncomingRequest(
    val requesterId: String,
    val requesterRole: PartyRole,
    val purpose: String,
    val requestedParts: List<String>,
    val nonce: String,
)

sealed interface RequestState {
    data object Idle : RequestState
    data class Checking(val request: IncomingRequest) : RequestState
    /** Who asks, verified how; the parts the patient chose so far. */
    data class Reviewed(
        val request: IncomingRequest,
        val requester: LookupReport,
        val recordId: String,
        val chosenParts: Set<String>,
    ) : RequestState
    /** The key-bound presentation to hand back to the requester. */
    data class Answered(val request: IncomingRequest, val presentation: String, val disclosed: Set<String>) : RequestState
    data class Refused(val message: String) : RequestState
}

/**
 * An incoming request: look the requester up k-anonymously (who, verified by which nodes),
 * choose the parts, answer with a presentation bound to the requester and its nonce.
 *
 * Not yet: the mutual-authentication handshake of DESIGN 8 (the requester proving its key to
 * the phone and the session encryption); it comes with core's handshake module. Until then
 * the presentation travels the way the request came, and only the named requester can use it
 * (its audience and nonce are signed by the patient).
 */
class RequestViewModel(private val repo: WalletRepository) {
    private val _state = MutableStateFlow<RequestState>(RequestState.Idle)
    val state: StateFlow<RequestState> = _state.asStateFlow()

    suspend fun review(request: IncomingRequest, recordId: String) {
        _state.value = RequestState.Checking(request)
        val wallet = repo.walletOrNull() ?: return run { _state.value = RequestState.Refused("onboarding first") }
        val record = repo.record(recordId) ?: return run { _state.value = RequestState.Refused("no such record") }
        try {
            val report = wallet.lookUp(request.requesterId, request.requesterRole)
            val available = record.received.record.parts.map { it.name }.toSet()
            _state.value = RequestState.Reviewed(request, report, recordId, request.requestedParts.toSet() intersect available)
        } catch (e: EmrshareException) {
            _state.value = RequestState.Refused(describe(e))
        }
    }

    fun toggle(part: String) {
        val s = _state.value as? RequestState.Reviewed ?: return
        _state.value = s.copy(chosenParts = if (part in s.chosenParts) s.chosenParts - part else s.chosenParts + part)
    }

    fun answer(): String? {
        val s = _state.value as? RequestState.Reviewed ?: return null
        val wallet = repo.walletOrNull() ?: return null
        val record = repo.record(s.recordId) ?: return null
        val mandatory = record.received.record.mandatoryParts.toSet()
        val disclose = (s.chosenParts - mandatory).toList()
        return try {
            val presentation = wallet.present(record.received.sdJwt, disclose, s.request.requesterId, s.request.nonce)
            _state.value = RequestState.Answered(s.request, presentation, s.chosenParts + mandatory)
            presentation
        } catch (e: EmrshareException) {
            _state.value = RequestState.Refused(describe(e))
            null
        }
    }

    fun decline() {
        _state.value = RequestState.Idle
    }
}

/** Grants: give a requester parts of a stored record for a while; revoke. */
class GrantsViewModel(private val repo: WalletRepository) {
    private val _grants = MutableStateFlow<List<GrantInfo>>(emptyList())
    val grants: StateFlow<List<GrantInfo>> = _grants.asStateFlow()
    private val _error = MutableStateFlow<String?>(null)
    val error: StateFlow<String?> = _error.asStateFlow()

    suspend fun grant(recordId: String, granteeId: String, role: PartyRole, parts: List<String>, seconds: ULong): GrantInfo? =
        try {
            repo.grant(recordId, granteeId, role, parts, seconds).also { refresh() }
        } catch (e: EmrshareException) {
            _error.value = describe(e)
            null
        }

    suspend fun revoke(grantId: String): Boolean = try {
        repo.revoke(grantId)
        refresh()
        true
    } catch (e: EmrshareException) {
        _error.value = describe(e)
        false
    }

    suspend fun refresh() {
        _grants.value = repo.refreshGrants()
    }
}

/** The audit log: every logged access to the patient's records, from verified blocks. */
class AuditViewModel(private val repo: WalletRepository) {
    private val _events = MutableStateFlow<List<AccessEvent>>(emptyList())
    val events: StateFlow<List<AccessEvent>> = _events.asStateFlow()

    suspend fun refresh(): List<AccessEvent> {
        val events = repo.auditLog().sortedByDescending { it.height }
        _events.value = events
        return events
    }
}
