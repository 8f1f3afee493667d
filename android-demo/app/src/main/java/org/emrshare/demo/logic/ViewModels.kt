package org.emrshare.demo.logic

import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import org.emrshare.ffi.AccessEvent
import org.emrshare.ffi.EmrshareException
import org.emrshare.ffi.GrantInfo
import org.emrshare.ffi.IncomingRequest
import org.emrshare.ffi.LookupReport
import org.emrshare.ffi.PartyRole
import org.emrshare.ffi.RequestSummary
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

/**
 * How a patient's blinded voucher request reaches the hospital, and its blind signature comes
 * back: in person (QR codes), or any channel; the request is random to anyone but the patient.
 */
interface VoucherChannel {
    /** Hands the blinded request (base64url) to the hospital; returns its blind signature. */
    suspend fun signBlind(blindedRequest: String): String
}

/**
 * A voucher channel the user carries by hand: [outgoing] is the blinded request to show the
 * hospital (a QR code), [deliver] takes the hospital's blind signature, scanned or pasted.
 */
class ManualVoucherChannel : VoucherChannel {
    private val _outgoing = MutableStateFlow<String?>(null)
    val outgoing: StateFlow<String?> = _outgoing.asStateFlow()
    private var answer = CompletableDeferred<String>()

    override suspend fun signBlind(blindedRequest: String): String {
        answer = CompletableDeferred()
        _outgoing.value = blindedRequest
        return answer.await()
    }

    fun deliver(blindSignature: String) {
        answer.complete(blindSignature)
    }
}

/**
 * Onboarding: keys into the secret store (Android Keystore), then registration with a
 * voucher of the hospital [hospitalId], which signs the wallet's blinded request through
 * [hospital].
 */
class OnboardingViewModel(private val repo: WalletRepository) {
    private val _state = MutableStateFlow<OnboardingState>(OnboardingState.NotStarted)
    val state: StateFlow<OnboardingState> = _state.asStateFlow()

    suspend fun start(hospitalId: String, hospital: VoucherChannel, days: UInt = 365u) {
        _state.value = OnboardingState.CreatingKeys
        try {
            val wallet = repo.openOrCreate()
            _state.value = OnboardingState.Registering(wallet.patientId())
            val registration = repo.register(hospitalId, hospital, days)
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

/**
 * How the handshake's messages travel between the phone and the requester: QR codes, NFC, a
 * link, HTTPS. The protocol is safe over an open channel (the messages are signed and
 * encrypted to registered keys), so the channel only has to carry text.
 */
interface RequestChannel {
    /** Hands M1 to the requester and returns its M2. */
    suspend fun exchange(m1: String): String

    /** Hands M3, the last message, to the requester. */
    suspend fun finish(m3: String)
}

/**
 * A channel the user carries by hand (show a QR code, scan the answer): [outgoing] is the
 * message to show, [deliver] takes the requester's answer.
 */
class ManualChannel : RequestChannel {
    private val _outgoing = MutableStateFlow<String?>(null)
    val outgoing: StateFlow<String?> = _outgoing.asStateFlow()
    private var answer = CompletableDeferred<String>()

    override suspend fun exchange(m1: String): String {
        answer = CompletableDeferred()
        _outgoing.value = m1
        return answer.await()
    }

    override suspend fun finish(m3: String) {
        _outgoing.value = m3
    }

    /** The requester's M2, as scanned or pasted. */
    fun deliver(m2: String) {
        answer.complete(m2)
    }
}

sealed interface RequestState {
    data object Idle : RequestState
    data object Checking : RequestState
    /** Who asks, verified how; the parts the patient chose so far. */
    data class Reviewed(
        val request: RequestSummary,
        val recordId: String,
        val chosenParts: Set<String>,
        internal val handshake: IncomingRequest,
    ) : RequestState
    /** Mutual authentication and the encrypted answer are under way. */
    data class Sharing(val request: RequestSummary) : RequestState
    /** The chosen parts went to the authenticated requester, bound to this session. */
    /** M3 went out; [logged]: the exchange is logged in the record's account on chain. */
    data class Answered(val request: RequestSummary, val disclosed: Set<String>, val logged: Boolean = true) : RequestState
    data class Refused(val message: String) : RequestState
}

/**
 * An incoming request (DESIGN 8): read it and look the requester up k-anonymously (who asks,
 * proven by which nodes, its keys exactly its registered ones), let the patient choose the
 * parts, then answer over the mutual-authentication handshake: the requester proves its key
 * to the phone, the phone its own to the requester, and the parts travel under a session key
 * neither party's long-term keys can later reveal. The requester logs the access on chain.
 */
class RequestViewModel(private val repo: WalletRepository) {
    private val _state = MutableStateFlow<RequestState>(RequestState.Idle)
    val state: StateFlow<RequestState> = _state.asStateFlow()

    suspend fun review(requestMessage: String, requesterRole: PartyRole, recordId: String) {
        _state.value = RequestState.Checking
        val wallet = repo.walletOrNull() ?: return run { _state.value = RequestState.Refused("onboarding first") }
        val record = repo.record(recordId) ?: return run { _state.value = RequestState.Refused("no such record") }
        try {
            val handshake = wallet.readRequest(requestMessage, requesterRole)
            val summary = handshake.summary()
            val available = record.received.record.parts.map { it.name }.toSet()
            _state.value = RequestState.Reviewed(summary, recordId, summary.requestedParts.toSet() intersect available, handshake)
        } catch (e: EmrshareException) {
            _state.value = RequestState.Refused(describe(e))
        }
    }

    fun toggle(part: String) {
        val s = _state.value as? RequestState.Reviewed ?: return
        _state.value = s.copy(chosenParts = if (part in s.chosenParts) s.chosenParts - part else s.chosenParts + part)
    }

    /** Answers with the chosen parts over [channel]; true when M3 went out. */
    suspend fun answer(channel: RequestChannel): Boolean {
        val s = _state.value as? RequestState.Reviewed ?: return false
        val record = repo.record(s.recordId) ?: return false
        val mandatory = record.received.record.mandatoryParts.toSet()
        _state.value = RequestState.Sharing(s.request)
        return try {
            val m2 = channel.exchange(s.handshake.accept())
            channel.finish(s.handshake.sendRecord(m2, record.received.sdJwt, (s.chosenParts - mandatory).toList()))
            // The patient logs the exchange in the record's own account, sealed to itself.
            val logged = try { s.handshake.logAccess(); true } catch (e: EmrshareException) { false }
            _state.value = RequestState.Answered(s.request, s.chosenParts + mandatory, logged)
            true
        } catch (e: EmrshareException) {
            _state.value = RequestState.Refused(describe(e))
            false
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

/** The audit log: every logged access to the patient's records, proven per record. */
class AuditViewModel(private val repo: WalletRepository) {
    private val _events = MutableStateFlow<List<AccessEvent>>(emptyList())
    val events: StateFlow<List<AccessEvent>> = _events.asStateFlow()

    suspend fun refresh(): List<AccessEvent> {
        val events = repo.auditLog().sortedByDescending { it.height }
        _events.value = events
        return events
    }
}
