// Host JVM tests of the generated Kotlin bindings (through JNA) and of the Android demo's
// logic classes, against a live local consortium on loopback (`emrshare local-consortium`,
// started and stopped by scripts/test-kotlin.sh, which passes its URLs and genesis).
//
// The three stories of DESIGN 1 through the Kotlin API: suspend functions, results as data
// classes, exceptions on tampered input. Story 2 runs the mutual-authentication handshake
// (DESIGN 8) between the Android demo's request screen logic and an insurer in process.
//
// Every party is admitted as governance requires (DESIGN 3): institutions by the council (the
// test approves with the consortium's node keys, node-*/node.key.json in the folder the script
// passes), doctors by their hospital, patients with a hospital's blind-signed voucher.

import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.runBlocking
import org.emrshare.demo.logic.AuditViewModel
import org.emrshare.demo.logic.GrantsViewModel
import org.emrshare.demo.logic.InMemoryAesGcmSealer
import org.emrshare.demo.logic.InMemoryKeyValueStore
import org.emrshare.demo.logic.OnboardingState
import org.emrshare.demo.logic.OnboardingViewModel
import org.emrshare.demo.logic.RecordsViewModel
import org.emrshare.demo.logic.RequestChannel
import org.emrshare.demo.logic.RequestState
import org.emrshare.demo.logic.RequestViewModel
import org.emrshare.demo.logic.SealedSecretStore
import org.emrshare.demo.logic.Verification
import org.emrshare.demo.logic.VoucherChannel
import org.emrshare.demo.logic.WalletRepository
import org.emrshare.ffi.AccessOutcome
import org.emrshare.ffi.ClientConfig
import org.emrshare.ffi.LookupReport
import org.emrshare.ffi.DoctorSigner
import org.emrshare.ffi.EmrshareException
import org.emrshare.ffi.OutgoingRequest
import org.emrshare.ffi.PatientAuthenticated
import org.emrshare.ffi.PartyRole
import org.emrshare.ffi.PatientWallet
import org.emrshare.ffi.Requester
import org.emrshare.ffi.SecretStore
import org.emrshare.ffi.SharedRecordInfo
import org.emrshare.ffi.UploadStage
import org.emrshare.ffi.approveProposal
import org.emrshare.ffi.defaultClientConfig
import org.emrshare.ffi.describeProposal
import org.emrshare.ffi.makeNonce
import org.emrshare.ffi.sdkVersion
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.MethodOrderer
import org.junit.jupiter.api.Order
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.TestMethodOrder
import java.io.File
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue

const val BPDS_RECORD = """{
  "name": "Alex Example", "gender": "female", "age": 42, "id_number": "X-1234-5678",
  "medical_history": ["hypertension"], "examination": {"bp": "150/95", "ecg": "normal"},
  "prescription": ["amlodipine 5 mg"]
}"""

/** A secret store with nothing in it and a counter of saves, for the negative cases. */
class MapStore : SecretStore {
    val map = java.util.concurrent.ConcurrentHashMap<String, ByteArray>()
    override fun save(name: String, secret: ByteArray) { map[name] = secret.copyOf() }
    override fun load(name: String): ByteArray? = map[name]?.copyOf()
    override fun delete(name: String) { map.remove(name) }
}

class FailingStore : SecretStore {
    override fun save(name: String, secret: ByteArray) = throw EmrshareException.SecretStore("keystore locked")
    override fun load(name: String): ByteArray? = null
    override fun delete(name: String) {}
}

class ThrowingStore : SecretStore {
    override fun save(name: String, secret: ByteArray) = throw IllegalStateException("app bug with a secret inside")
    override fun load(name: String): ByteArray? = throw IllegalStateException("app bug")
    override fun delete(name: String) {}
}

/** Flips one character in the middle of a base64url segment. */
fun tamper(text: String, at: Int = text.length / 2): String {
    var i = at
    while (!text[i].isLetterOrDigit()) i++
    val c = if (text[i] == 'A') 'B' else 'A'
    return text.substring(0, i) + c + text.substring(i + 1)
}

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation::class)
class StoriesTest {
    private val nodes = System.getProperty("emrshare.nodes").split(",")
    private val genesis = File(System.getProperty("emrshare.genesis")).readText()
    // Commits wait up to 2 minutes (the default is 30 s): on a CI machine whose disk is still
    // flushing a build, one block's fsync can take seconds; these tests check behaviour, not
    // latency.
    private val config: ClientConfig =
        defaultClientConfig(nodes, genesis).copy(k = 4u, n = 3u, commitTimeoutMs = 120_000u)

    /**
     * A lookup with k = 4 hid its target in one proven bucket: below 2k registered IDs of the
     * role the bucket is all of them (at least 4); from 2k on it is the bucket of a longer
     * prefix, a random sample that may hold fewer (reported, never silent).
     */
    private fun assertHidAmongFour(report: LookupReport, who: String) {
        assertTrue(report.idsAsked >= 1u, "$who is in its bucket")
        assertTrue(report.idsAsked.toULong() <= report.registered, "$who: a bucket of registered IDs")
        if (report.registered < 8uL) {
            assertEquals(report.registered, report.idsAsked.toULong(), "$who among all ${report.registered}")
        }
        assertTrue(report.registered >= 4uL, "$who among at least 4 registered")
    }

    /** The council members' private keys: every node of the local consortium is one. */
    private val memberKeys: List<String> =
        File(System.getProperty("emrshare.consortium")).listFiles()!!
            .filter { it.name.startsWith("node-") }.sortedBy { it.name }
            .map { File(it, "node.key.json").readText() }

    private val walletStore = SealedSecretStore(InMemoryAesGcmSealer(), InMemoryKeyValueStore())
    private lateinit var repo: WalletRepository
    private lateinit var doctor: DoctorSigner
    private lateinit var insurer: Requester
    private lateinit var otherInsurer: Requester
    private lateinit var records: RecordsViewModel
    private val decoyHospitals = mutableListOf<DoctorSigner>()
    private var recordId = ""
    private var grantId = ""

    /** The council admits an institution: its request, every member's approval, submitted. */
    private suspend fun admit(party: DoctorSigner, role: PartyRole = PartyRole.HOSPITAL) =
        party.admissionRequest(role, 365u).let { p -> party.submitAdmission(p, memberKeys.map { approveProposal(p, it) }) }

    private suspend fun admit(party: Requester, role: PartyRole = PartyRole.INSURER) =
        party.admissionRequest(role, 365u).let { p -> party.submitAdmission(p, memberKeys.map { approveProposal(p, it) }) }

    /** The hospital's side of the voucher exchange, in process. */
    class HospitalDesk(private val hospital: DoctorSigner) : VoucherChannel {
        override suspend fun signBlind(blindedRequest: String): String = hospital.signVoucherRequest(blindedRequest)
    }

    /** A patient registers with a voucher of [hospital]: blind request, blind signature, finalize. */
    private suspend fun registerPatient(wallet: PatientWallet, hospital: DoctorSigner = doctor, days: UInt = 365u) =
        wallet.voucherRequest(hospital.doctorId()).let { request ->
            wallet.register(request.finalize(hospital.signVoucherRequest(request.blindedRequest())), days)
        }

    @BeforeAll
    fun consortiumAndParties() = runBlocking {
        repo = WalletRepository(config, walletStore, 2048u)
        records = RecordsViewModel(repo)
        doctor = DoctorSigner.create(config, MapStore(), "hospital:st-marys", 2048u)
        insurer = Requester.create(config, MapStore(), "insurer:acme-health", 2048u)
        otherInsurer = Requester.create(config, MapStore(), "insurer:other", 2048u)
        // Decoys, so lookups hide their target among k = 4 registered IDs of its role.
        coroutineScope {
            val jobs = mutableListOf(
                async { admit(doctor) },
                async { admit(insurer) },
                async { admit(otherInsurer) },
            )
            for (i in 0 until 4) {
                val h = DoctorSigner.create(config, MapStore(), "hospital:decoy-$i", 2048u)
                decoyHospitals += h
                val r = Requester.create(config, MapStore(), "insurer:decoy-$i", 2048u)
                jobs += async { admit(h) }
                jobs += async { admit(r) }
            }
            jobs.awaitAll()
        }
        // Patients too (the insurer looks the patient of M1 up among k of them), each with a
        // voucher of a hospital: the hospitals must be admitted first.
        coroutineScope {
            (0 until 4).map { i ->
                async { registerPatient(PatientWallet.create(config, MapStore(), 2048u), decoyHospitals[i]) }
            }.awaitAll()
        }
        Unit
    }

    @AfterAll
    fun done() {}

    // ---------------------------------------------------------------- story 1: the visit

    @Test @Order(1)
    fun `onboarding creates sealed keys and registers the patient with a hospital's voucher`() = runBlocking {
        val onboarding = OnboardingViewModel(repo)
        onboarding.start("hospital:st-marys", HospitalDesk(doctor))
        val state = onboarding.state.value
        assertTrue(state is OnboardingState.Ready, "onboarding ended in $state")
        assertEquals(43, state.patientId.length, "a patient ID is a SHA-256 thumbprint")
        assertTrue(state.provenAtHeight > 0u)
        assertTrue(sdkVersion().isNotEmpty())
    }

    @Test @Order(2)
    fun `a doctor's sealed record is received and verified via a k-anonymous lookup`() = runBlocking {
        val sealed = doctor.signAndSeal(BPDS_RECORD, repo.walletOrNull()!!.publicKeysJson(), null, null)
        recordId = records.receive(sealed)!!
        val row = records.rows.value.single { it.recordId == recordId }
        val verified = row.verification as Verification.Verified
        assertEquals("hospital:st-marys", row.doctorId)
        assertEquals(7, row.parts.size)
        assertHidAmongFour(verified.doctorLookup, "the doctor")
        assertTrue(verified.doctorLookup.verifiedBy.isNotEmpty())
        assertTrue(verified.doctorLookup.evidence.isEmpty(), "honest nodes leave no evidence")
        val record = repo.record(recordId)!!.received.record
        assertEquals(setOf("gender", "age", "medical_history"), record.mandatoryParts.toSet())
        assertEquals("42", record.parts.single { it.name == "age" }.valueJson)
    }

    @Test @Order(3)
    fun `the record is stored on the nodes and indexed on chain, with progress`() = runBlocking {
        val events = records.store(recordId, "cardiology")
        assertEquals(
            listOf(UploadStage.SEALED, UploadStage.INDEX_SUBMITTED, UploadStage.COMMITTED, UploadStage.UPLOADED),
            events.map { it.stage },
        )
        val stored = repo.record(recordId)!!.stored!!
        assertEquals(64, stored.blob.length)
        assertTrue(stored.indexHeight > 0u && stored.accountId.isNotEmpty() && stored.accountId != repo.walletOrNull()!!.patientId())
        val index = repo.walletOrNull()!!.indexedRecords()
        assertTrue(index.any { it.blob == stored.blob && it.recordId == recordId && it.department == "cardiology" })
    }

    @Test @Order(4)
    fun `a tampered envelope is refused`() = runBlocking {
        val sealed = doctor.signAndSeal(BPDS_RECORD, repo.walletOrNull()!!.publicKeysJson(), null, null)
        val e = assertFailsWith<EmrshareException.VerificationFailed> {
            repo.walletOrNull()!!.receiveRecord(tamper(sealed), PartyRole.HOSPITAL)
        }
        assertFalse(e.reason.contains("Alex"), "no record contents in errors")
        val rowsBefore = records.rows.value.size
        assertEquals(null, records.receive(tamper(sealed, sealed.length / 3)))
        assertTrue(records.rows.value.size == rowsBefore + 1 && records.rows.value.last().verification is Verification.Rejected)
    }

    @Test @Order(5)
    fun `a record sealed to another patient does not open`() = runBlocking {
        val other = PatientWallet.create(config, MapStore(), 2048u)
        val sealed = doctor.signAndSeal(BPDS_RECORD, other.publicKeysJson(), null, null)
        assertFailsWith<EmrshareException.VerificationFailed> {
            repo.walletOrNull()!!.receiveRecord(sealed, PartyRole.HOSPITAL)
        }
        Unit
    }

    @Test @Order(6)
    fun `a record from an unregistered doctor is refused`() = runBlocking {
        val stranger = DoctorSigner.create(config, MapStore(), "hospital:unregistered", 2048u)
        val sealed = stranger.signAndSeal(BPDS_RECORD, repo.walletOrNull()!!.publicKeysJson(), null, null)
        assertFailsWith<EmrshareException.NotRegistered> {
            repo.walletOrNull()!!.receiveRecord(sealed, PartyRole.HOSPITAL)
        }
        Unit
    }

    @Test @Order(7)
    fun `a record signed with keys other than the registered ones is refused`() = runBlocking {
        val impostor = DoctorSigner.create(config, MapStore(), "hospital:st-marys", 2048u)
        val sealed = impostor.signAndSeal(BPDS_RECORD, repo.walletOrNull()!!.publicKeysJson(), null, null)
        val e = assertFailsWith<EmrshareException.VerificationFailed> {
            repo.walletOrNull()!!.receiveRecord(sealed, PartyRole.HOSPITAL)
        }
        assertTrue(e.reason.contains("signature"))
    }

    @Test @Order(8)
    fun `the doctor looked up under the wrong role is not accepted`() = runBlocking {
        val sealed = doctor.signAndSeal(BPDS_RECORD, repo.walletOrNull()!!.publicKeysJson(), null, null)
        assertFailsWith<EmrshareException.NotRegistered> {
            repo.walletOrNull()!!.receiveRecord(sealed, PartyRole.INSURER)
        }
        Unit
    }

    @Test @Order(9)
    fun `keys are created once and restored from the store`() {
        val store = MapStore()
        val created = PatientWallet.create(config, store, 2048u)
        assertFailsWith<EmrshareException.KeysExist> { PatientWallet.create(config, store, 2048u) }
        assertEquals(created.patientId(), PatientWallet.restore(config, store).patientId())
        assertFailsWith<EmrshareException.NoKeys> { PatientWallet.restore(config, MapStore()) }
        val corrupt = MapStore().apply { map["emrshare.patient"] = ByteArray(100) }
        assertFailsWith<EmrshareException.SecretStore> { PatientWallet.restore(config, corrupt) }
    }

    @Test @Order(10)
    fun `secret store failures surface as SecretStore errors without the app's text`() {
        val e1 = assertFailsWith<EmrshareException.SecretStore> { PatientWallet.create(config, FailingStore(), 2048u) }
        assertEquals("keystore locked", e1.reason)
        val e2 = assertFailsWith<EmrshareException.SecretStore> { PatientWallet.create(config, ThrowingStore(), 2048u) }
        assertFalse(e2.reason.contains("secret inside"))
    }

    @Test @Order(11)
    fun `bad configurations are refused before any key is made`() {
        assertFailsWith<EmrshareException.InvalidInput> { PatientWallet.create(config.copy(genesisJson = "{}"), MapStore(), 2048u) }
        assertFailsWith<EmrshareException.InvalidInput> { PatientWallet.create(config.copy(nodeUrls = emptyList()), MapStore(), 2048u) }
        assertFailsWith<EmrshareException.InvalidInput> { PatientWallet.create(config.copy(nodeUrls = listOf("ftp://x")), MapStore(), 2048u) }
        assertFailsWith<EmrshareException.InvalidInput> { PatientWallet.create(config, MapStore(), 1024u) }
        assertFailsWith<EmrshareException.InvalidInput> {
            PatientWallet.create(config.copy(nodeUrls = listOf("https://127.0.0.1:1")), MapStore(), 2048u)
        }
        assertFailsWith<EmrshareException.InvalidInput> { DoctorSigner.create(config, MapStore(), "no spaces allowed", 2048u) }
    }

    @Test @Order(12)
    fun `unreachable nodes give Unreachable, quickly`() = runBlocking {
        val dead = config.copy(nodeUrls = listOf("http://127.0.0.1:9"), requestTimeoutMs = 500u)
        val wallet = PatientWallet.create(dead, MapStore(), 2048u)
        assertFailsWith<EmrshareException.Unreachable> { wallet.voucherRequest("hospital:st-marys") }
        Unit
    }

    @Test @Order(13)
    fun `extraction refuses unknown parts and storing refuses another patient's record`() = runBlocking {
        val wallet = repo.walletOrNull()!!
        val sdJwt = repo.record(recordId)!!.received.sdJwt
        assertFailsWith<EmrshareException.InvalidInput> { wallet.extract(sdJwt, listOf("examinaton")) }
        val other = PatientWallet.create(config, MapStore(), 2048u)
        assertFailsWith<EmrshareException.InvalidInput> { other.storeRecord(sdJwt, "cardiology", null) }
        assertFailsWith<EmrshareException.VerificationFailed> { wallet.storeRecord("not an sd-jwt", "cardiology", null) }
        Unit
    }

    // ------------------------------------------- story 2: request, mutual authentication, share

    /** The insurer's side of the channel, in process: M1 in, M2 out; M3 in, a verified record. */
    class InProcessChannel(private val outgoing: OutgoingRequest) : RequestChannel {
        var authenticated: PatientAuthenticated? = null
        var shared: SharedRecordInfo? = null
        override suspend fun exchange(m1: String): String = outgoing.receiveM1(m1).also { authenticated = it }.m2
        override suspend fun finish(m3: String) { shared = outgoing.receiveRecord(m3, PartyRole.HOSPITAL) }
    }

    private fun claimRequest(from: Requester = insurer) =
        from.startRequest("claim 2026-117", listOf("examination", "prescription"))

    /** A request (a compact JWS) with its signed claims edited and its signature kept. */
    private fun withClaims(request: String, edit: (String) -> String): String {
        val (header, payload, signature) = request.split('.')
        val claims = String(java.util.Base64.getUrlDecoder().decode(payload), Charsets.UTF_8)
        val edited = java.util.Base64.getUrlEncoder().withoutPadding().encodeToString(edit(claims).toByteArray())
        return "$header.$edited.$signature"
    }

    @Test @Order(20)
    fun `a request is verified, answered over the handshake with chosen parts, and logged`() = runBlocking {
        val outgoing = claimRequest()
        val vm = RequestViewModel(repo)
        vm.review(outgoing.requestMessage(), PartyRole.INSURER, recordId)
        val reviewed = vm.state.value as RequestState.Reviewed
        assertEquals("insurer:acme-health", reviewed.request.requesterId)
        assertEquals("claim 2026-117", reviewed.request.purpose)
        assertHidAmongFour(reviewed.request.requesterLookup, "the insurer")
        assertEquals(setOf("examination", "prescription"), reviewed.chosenParts)
        vm.toggle("prescription")
        val channel = InProcessChannel(outgoing)
        assertTrue(vm.answer(channel), "answer failed: ${vm.state.value}")
        val patientId = repo.walletOrNull()!!.patientId()
        assertEquals(patientId, channel.authenticated!!.patientId)
        assertHidAmongFour(channel.authenticated!!.patientLookup, "the patient")
        val shared = channel.shared!!
        assertEquals(patientId, shared.patientId)
        assertEquals(recordId, shared.record.recordId)
        assertTrue(shared.record.keyBound)
        assertEquals(setOf("gender", "age", "medical_history", "examination"), shared.record.parts.map { it.name }.toSet())
        assertEquals(listOf("examination", "prescription"), shared.requestedParts)
        assertEquals(64, shared.sessionId.length)
        val answered = vm.state.value as RequestState.Answered
        assertEquals(setOf("gender", "age", "medical_history", "examination"), answered.disclosed)
        assertTrue(answered.logged, "the patient logged the exchange in the record's account")
        val audit = AuditViewModel(repo).refresh()
        assertTrue(
            audit.any {
                it.accessorId == "insurer:acme-health" && it.grantId == null && it.recordId == recordId &&
                    it.purpose == "claim 2026-117"
            },
            "the exchange is in the patient's audit log, with its purpose",
        )
    }

    @Test @Order(22)
    fun `requests from unregistered institutions, impostors, or under the wrong role are refused at review`() = runBlocking {
        val vm = RequestViewModel(repo)
        val stranger = Requester.create(config, MapStore(), "insurer:nobody", 2048u)
        vm.review(claimRequest(stranger).requestMessage(), PartyRole.INSURER, recordId)
        assertTrue((vm.state.value as RequestState.Refused).message.contains("Not registered"))
        // The registered name with other keys: a request re-signed by another key.
        val impostor = Requester.create(config, MapStore(), "insurer:acme-health", 2048u)
        vm.review(claimRequest(impostor).requestMessage(), PartyRole.INSURER, recordId)
        assertTrue((vm.state.value as RequestState.Refused).message.contains("verified"), "${vm.state.value}")
        vm.review(claimRequest().requestMessage(), PartyRole.HOSPITAL, recordId)
        assertTrue(vm.state.value is RequestState.Refused)
        val wallet = repo.walletOrNull()!!
        assertFailsWith<EmrshareException.VerificationFailed> { wallet.readRequest("{\"typ\":\"x\"}", PartyRole.INSURER) }
        // Forged requests are refused by readRequest itself, before any summary exists: a
        // tampered purpose or part list under the insurer's signature ...
        val honest = claimRequest().requestMessage()
        for (edit in listOf<(String) -> String>(
            { it.replace("claim 2026-117", "claim 2026-117 and all records") },
            { it.replace("\"prescription\"", "\"id_number\"") },
        )) {
            val forged = withClaims(honest, edit)
            assertTrue(forged != honest)
            assertFailsWith<EmrshareException.VerificationFailed> { wallet.readRequest(forged, PartyRole.INSURER) }
        }
        // ... the insurer's claims under another registered insurer's signature ...
        val otherSignature = claimRequest(otherInsurer).requestMessage().split('.')[2]
        val (header, payload, _) = honest.split('.')
        assertFailsWith<EmrshareException.VerificationFailed> {
            wallet.readRequest("$header.$payload.$otherSignature", PartyRole.INSURER)
        }
        // ... and an unsigned one.
        assertFailsWith<EmrshareException.VerificationFailed> { wallet.readRequest("$header.$payload.", PartyRole.INSURER) }
        // The untouched request still reads; once answered, a replay of it is refused.
        val incoming = wallet.readRequest(honest, PartyRole.INSURER)
        assertEquals("claim 2026-117", incoming.summary().purpose)
        incoming.accept()
        assertFailsWith<EmrshareException.VerificationFailed> { wallet.readRequest(honest, PartyRole.INSURER) }
        assertFailsWith<EmrshareException.InvalidInput> { wallet.readRequest(claimRequest().requestMessage(), PartyRole.PATIENT) }
        assertFailsWith<EmrshareException.InvalidInput> { insurer.startRequest("x".repeat(2000), emptyList()) }
        assertFalse(vm.answer(InProcessChannel(claimRequest())), "nothing to answer after a refusal")
    }

    @Test @Order(23)
    fun `tampered, misdirected or out-of-order handshake messages end the handshake`() = runBlocking {
        val wallet = repo.walletOrNull()!!
        val sdJwt = repo.record(recordId)!!.received.sdJwt
        val parts = listOf("examination")

        // Out of order on both sides.
        val outgoing = claimRequest()
        assertFailsWith<EmrshareException.InvalidInput> { outgoing.receiveRecord("{}", PartyRole.HOSPITAL) }
        val incoming = wallet.readRequest(claimRequest().requestMessage(), PartyRole.INSURER)
        assertFailsWith<EmrshareException.InvalidInput> { incoming.sendRecord("x", sdJwt, parts) }

        // M1 tampered; M1 to another insurer; M1 answering another request of the same insurer.
        val a = claimRequest()
        val m1 = wallet.readRequest(a.requestMessage(), PartyRole.INSURER).accept()
        assertFailsWith<EmrshareException.VerificationFailed> { a.receiveM1(tamper(m1)) }
        assertFailsWith<EmrshareException.InvalidInput> { a.receiveM1(m1) }
        assertFailsWith<EmrshareException.VerificationFailed> {
            otherInsurer.startRequest("claim", parts).receiveM1(m1)
        }
        assertFailsWith<EmrshareException.VerificationFailed> { claimRequest().receiveM1(m1) }

        // M2 tampered: the patient's side ends; a retry is refused.
        val b = claimRequest()
        val bIncoming = wallet.readRequest(b.requestMessage(), PartyRole.INSURER)
        val bM2 = b.receiveM1(bIncoming.accept()).m2
        assertFailsWith<EmrshareException.InvalidInput> { bIncoming.accept() }
        assertFailsWith<EmrshareException.VerificationFailed> { bIncoming.sendRecord(tamper(bM2), sdJwt, parts) }
        assertFailsWith<EmrshareException.InvalidInput> { bIncoming.sendRecord(bM2, sdJwt, parts) }

        // M3 tampered, or from another session: refused, and nothing is logged.
        val auditBefore = AuditViewModel(repo).refresh().size
        val c = claimRequest()
        val cIncoming = wallet.readRequest(c.requestMessage(), PartyRole.INSURER)
        val cM3 = cIncoming.sendRecord(c.receiveM1(cIncoming.accept()).m2, sdJwt, parts)
        assertFailsWith<EmrshareException.VerificationFailed> { c.receiveRecord(tamper(cM3), PartyRole.HOSPITAL) }
        val d = claimRequest()
        val dIncoming = wallet.readRequest(d.requestMessage(), PartyRole.INSURER)
        d.receiveM1(dIncoming.accept())
        assertFailsWith<EmrshareException.VerificationFailed> { d.receiveRecord(cM3, PartyRole.HOSPITAL) }

        // An unknown part name is the patient's input error, not a disclosure of less.
        val e = claimRequest()
        val eIncoming = wallet.readRequest(e.requestMessage(), PartyRole.INSURER)
        val eM2 = e.receiveM1(eIncoming.accept()).m2
        assertFailsWith<EmrshareException.InvalidInput> { eIncoming.sendRecord(eM2, sdJwt, listOf("examinaton")) }
        assertEquals(auditBefore, AuditViewModel(repo).refresh().size)
    }

    @Test @Order(21)
    fun `a presentation is refused with another nonce, another audience, or tampered`() = runBlocking {
        val wallet = repo.walletOrNull()!!
        val sdJwt = repo.record(recordId)!!.received.sdJwt
        val nonce = makeNonce()
        val patient = wallet.patientId()
        val good = wallet.present(sdJwt, listOf("examination"), "insurer:acme-health", nonce)
        assertFailsWith<EmrshareException.VerificationFailed> {
            insurer.verifyPresentation(good, patient, makeNonce(), PartyRole.HOSPITAL)
        }
        assertFailsWith<EmrshareException.VerificationFailed> {
            otherInsurer.verifyPresentation(good, patient, nonce, PartyRole.HOSPITAL)
        }
        // A byte changed in a disclosure (between the first and second '~').
        val firstTilde = good.indexOf('~')
        assertFailsWith<EmrshareException.VerificationFailed> {
            insurer.verifyPresentation(tamper(good, firstTilde + 5), patient, nonce, PartyRole.HOSPITAL)
        }
        // The issuer signature changed.
        assertFailsWith<EmrshareException.VerificationFailed> {
            insurer.verifyPresentation(tamper(good, firstTilde - 10), patient, nonce, PartyRole.HOSPITAL)
        }
        // Without the key binding.
        assertFailsWith<EmrshareException.VerificationFailed> {
            insurer.verifyPresentation(wallet.extract(sdJwt, listOf("examination")), patient, nonce, PartyRole.HOSPITAL)
        }
        // Presented as someone else's record.
        val other = PatientWallet.create(config, MapStore(), 2048u)
        registerPatient(other, days = 30u)
        assertFailsWith<EmrshareException.VerificationFailed> {
            insurer.verifyPresentation(good, other.patientId(), nonce, PartyRole.HOSPITAL)
        }
        assertFailsWith<EmrshareException.InvalidInput> { wallet.present(sdJwt, emptyList(), "insurer:acme-health", "short") }
        Unit
    }

    // ------------------------------------------------------------- story 3: a standing grant

    @Test @Order(30)
    fun `a grant lets the insurer fetch, verify, and shows in the audit log`() = runBlocking {
        val grants = GrantsViewModel(repo)
        val grant = grants.grant(recordId, "insurer:acme-health", PartyRole.INSURER, listOf("examination"), 3600u)
        assertNotNull(grant, grants.error.value)
        grantId = grant.grantId
        assertTrue(grant.active && !grant.revoked)
        val fetched = insurer.fetchGranted(grantId, PartyRole.HOSPITAL)
        assertEquals(recordId, fetched.record.recordId)
        assertEquals(repo.walletOrNull()!!.patientId(), fetched.record.patientId)
        assertEquals(setOf("gender", "age", "medical_history", "examination"), fetched.record.parts.map { it.name }.toSet())
        val audit = AuditViewModel(repo).refresh()
        assertTrue(audit.any { it.accessorId == "insurer:acme-health" && it.grantId == grantId && it.outcome == AccessOutcome.GRANTED })
    }

    @Test @Order(31)
    fun `only the grantee can fetch under a grant`() = runBlocking {
        assertFailsWith<EmrshareException.InvalidInput> { otherInsurer.fetchGranted(grantId, PartyRole.HOSPITAL) }
        assertFailsWith<EmrshareException.Refused> { insurer.fetchGranted("grant-does-not-exist", PartyRole.HOSPITAL) }
        Unit
    }

    @Test @Order(32)
    fun `grants to unregistered parties or of bad length are refused`() = runBlocking {
        val wallet = repo.walletOrNull()!!
        val envelope = repo.record(recordId)!!.stored!!.envelope
        assertFailsWith<EmrshareException.NotRegistered> {
            wallet.grant(envelope, "insurer:nobody", PartyRole.INSURER, emptyList(), 60u)
        }
        assertFailsWith<EmrshareException.InvalidInput> {
            wallet.grant(envelope, "insurer:acme-health", PartyRole.INSURER, emptyList(), 0u)
        }
        assertFailsWith<EmrshareException.VerificationFailed> {
            wallet.grant(tamper(envelope), "insurer:acme-health", PartyRole.INSURER, listOf("examination"), 60u)
        }
        assertNull(wallet.grantStatus("grant-does-not-exist"))
    }

    @Test @Order(33)
    fun `a whole-record grant wraps the content key to the grantee`() = runBlocking {
        val grant = repo.grant(recordId, "insurer:acme-health", PartyRole.INSURER, emptyList(), 600u)
        val fetched = insurer.fetchGranted(grant.grantId, PartyRole.HOSPITAL)
        assertEquals(7, fetched.record.parts.size)
    }

    @Test @Order(34)
    fun `after revocation the fetch is refused, and the audit log has every access`() = runBlocking {
        val grants = GrantsViewModel(repo)
        assertTrue(grants.revoke(grantId), grants.error.value)
        val status = grants.grants.value.single { it.grantId == grantId }
        assertTrue(status.revoked && !status.active)
        assertFailsWith<EmrshareException.Refused> { insurer.fetchGranted(grantId, PartyRole.HOSPITAL) }
        val audit = AuditViewModel(repo).refresh()
        assertEquals(2, audit.count { it.accessorId == "insurer:acme-health" && it.grantId != null }, "two fetches, the refused one not logged")
    }

    // ------------------------------------------------------------ governance (DESIGN 3)

    @Test @Order(40)
    fun `the council admits only with t approvals of the very proposal`() = runBlocking {
        val applicant = Requester.create(config, MapStore(), "insurer:applicant", 2048u)
        val proposal = applicant.admissionRequest(PartyRole.INSURER, 365u)
        val info = describeProposal(proposal)
        assertEquals("admit", info.kind)
        assertEquals("insurer:applicant", info.subjectId)
        assertEquals(PartyRole.INSURER, info.role)
        assertFalse(info.hasVoucherKey)
        val approvals = memberKeys.map { approveProposal(proposal, it) }
        // t - 1 approvals (t is every member of a 3-node council): refused.
        assertFailsWith<EmrshareException.Refused> { applicant.submitAdmission(proposal, approvals.drop(1)) }
        // One member's approval twice: refused.
        assertFailsWith<EmrshareException.Refused> {
            applicant.submitAdmission(proposal, approvals.drop(1) + approvals[1])
        }
        // Approvals of another proposal (another applicant's) do not count for this one; and
        // another applicant's proposal is not this party's to send.
        val other = Requester.create(config, MapStore(), "insurer:applicant-2", 2048u)
        val otherProposal = other.admissionRequest(PartyRole.INSURER, 365u)
        val otherApprovals = memberKeys.map { approveProposal(otherProposal, it) }
        assertFailsWith<EmrshareException.Refused> { applicant.submitAdmission(proposal, otherApprovals) }
        assertFailsWith<EmrshareException.InvalidInput> { applicant.submitAdmission(otherProposal, otherApprovals) }
        assertFailsWith<EmrshareException.InvalidInput> { applicant.submitAdmission(proposal, listOf("{}")) }
        assertFailsWith<EmrshareException.InvalidInput> { approveProposal(proposal, "not a key") }
        assertFailsWith<EmrshareException.InvalidInput> { applicant.admissionRequest(PartyRole.PATIENT, 365u) }
        // Nothing was registered by the refused attempts.
        assertFailsWith<EmrshareException.NotRegistered> {
            repo.walletOrNull()!!.lookUp("insurer:applicant", PartyRole.INSURER)
        }
        // With every approval: admitted, and found by a verified lookup.
        val registration = applicant.submitAdmission(proposal, approvals)
        assertEquals("insurer:applicant", registration.partyId)
        assertEquals(PartyRole.INSURER, registration.role)
        assertEquals("insurer:applicant", repo.walletOrNull()!!.lookUp("insurer:applicant", PartyRole.INSURER).partyId)
        // The same proposal again (replayed): refused.
        assertFailsWith<EmrshareException.InvalidInput> { applicant.submitAdmission(proposal, approvals) }
        Unit
    }

    @Test @Order(41)
    fun `a doctor admitted by its hospital issues records that verify, until its hospital expels it`() = runBlocking {
        val alice = DoctorSigner.create(config, MapStore(), "doctor:alice", 2048u)
        val registration = doctor.admitDoctor(alice.publicKeysJson(), 365u)
        assertEquals(PartyRole.DOCTOR, registration.role)
        // Decoy doctors of other hospitals, so the doctor is looked up among k = 4.
        for (i in 0 until 3) {
            decoyHospitals[i].admitDoctor(DoctorSigner.create(config, MapStore(), "doctor:decoy-$i", 2048u).publicKeysJson(), 365u)
        }
        // A doctor is not a hospital: it admits nobody.
        val bob = DoctorSigner.create(config, MapStore(), "doctor:bob", 2048u)
        assertFailsWith<EmrshareException.Refused> { alice.admitDoctor(bob.publicKeysJson(), 365u) }
        // A doctor has no voucher key: it signs no vouchers.
        assertFailsWith<EmrshareException.InvalidInput> { alice.signVoucherRequest("AAAA") }

        val wallet = repo.walletOrNull()!!
        val before = alice.signAndSealForRegistered(BPDS_RECORD, wallet.patientId(), null, null)
        val received = wallet.receiveRecord(before, PartyRole.DOCTOR)
        assertEquals("doctor:alice", received.record.doctorId)
        assertEquals(PartyRole.DOCTOR, received.doctorLookup.role)
        assertHidAmongFour(received.doctorLookup, "the doctor")

        Thread.sleep(1100) // the expulsion's block time after the record's issue time
        doctor.expelDoctor("doctor:alice")
        Thread.sleep(1100)
        // Records issued before the expulsion stay valid; after it, refused.
        assertEquals("doctor:alice", wallet.receiveRecord(before, PartyRole.DOCTOR).record.doctorId)
        val after = alice.signAndSeal(BPDS_RECORD, wallet.publicKeysJson(), null, null)
        assertFailsWith<EmrshareException.NotRegistered> { wallet.receiveRecord(after, PartyRole.DOCTOR) }
        // Only its own hospital expels a doctor.
        assertFailsWith<EmrshareException.Refused> { decoyHospitals[0].expelDoctor("doctor:decoy-1") }
        Unit
    }

    @Test @Order(42)
    fun `a voucher registers one patient once, and only a valid one`() = runBlocking {
        val patient = PatientWallet.create(config, MapStore(), 2048u)
        val request = patient.voucherRequest("hospital:st-marys")
        val voucher = request.finalize(doctor.signVoucherRequest(request.blindedRequest()))
        assertFailsWith<EmrshareException.InvalidInput> { request.finalize("AAAA") }
        // A blind signature by another hospital's key does not finalize. The other key refuses
        // a blinded value at or above its own modulus (about half the time, by chance of the
        // blinding): new requests are tried until it signs one, so the check always runs.
        val (forged, signedByOther) = (1..32).firstNotNullOf {
            val attempt = patient.voucherRequest("hospital:st-marys")
            try {
                attempt to decoyHospitals[0].signVoucherRequest(attempt.blindedRequest())
            } catch (e: EmrshareException.InvalidInput) {
                null
            }
        }
        assertFailsWith<EmrshareException.VerificationFailed> { forged.finalize(signedByOther) }
        assertFailsWith<EmrshareException.InvalidInput> { patient.register("{}", 365u) }
        assertEquals(patient.patientId(), patient.register(voucher, 365u).partyId)
        // The voucher for another patient: it is bound to the first patient's ID, refused.
        val second = PatientWallet.create(config, MapStore(), 2048u)
        assertFailsWith<EmrshareException.Refused> { second.register(voucher, 365u) }
        // A registration without a voucher of an admitted hospital: a non-hospital has none.
        assertFailsWith<EmrshareException.NotRegistered> { second.voucherRequest("insurer:acme-health") }
        Unit
    }

    @Test @Order(50)
    fun `a rotated patient key still shares and audits, and institutions rotate too`() = runBlocking {
        val wallet = repo.walletOrNull()!!
        val patientId = wallet.patientId()
        val oldKeys = wallet.publicKeysJson()
        val rotated = repo.rotateKeys()
        assertEquals(patientId, rotated.partyId, "the patient keeps its ID across rotations")
        assertTrue(wallet.publicKeysJson() != oldKeys)
        // The store holds the new keys (and the old ones to open older records).
        assertEquals(wallet.publicKeysJson(), PatientWallet.restore(config, walletStore).publicKeysJson())

        // A record stored before the rotation (sealed to the old key) is still shared by a
        // grant the new key signs; the insurer fetches and verifies it.
        val grant = repo.grant(recordId, "insurer:acme-health", PartyRole.INSURER, listOf("examination"), 600u)
        val fetched = insurer.fetchGranted(grant.grantId, PartyRole.HOSPITAL)
        assertEquals(recordId, fetched.record.recordId)
        assertEquals(patientId, fetched.record.patientId)
        // The audit log reads index entries sealed to the old key, and shows the new fetch.
        val audit = AuditViewModel(repo).refresh()
        assertTrue(audit.any { it.accessorId == "insurer:acme-health" && it.grantId == grant.grantId })
        assertTrue(wallet.indexedRecords().any { it.recordId == recordId })

        // A record issued to the new keys is received, and shared over the handshake: the
        // insurer authenticates the patient under its rotated key.
        val fresh = doctor.signAndSealForRegistered(BPDS_RECORD, patientId, null, null)
        val freshId = records.receive(fresh)!!
        records.store(freshId, "cardiology")
        val outgoing = claimRequest()
        val vm = RequestViewModel(repo)
        vm.review(outgoing.requestMessage(), PartyRole.INSURER, freshId)
        val channel = InProcessChannel(outgoing)
        assertTrue(vm.answer(channel), "answer failed: ${vm.state.value}")
        assertEquals(patientId, channel.authenticated!!.patientId)
        assertEquals(freshId, channel.shared!!.record.recordId)

        // An institution rotates: its requests verify under its new key, records signed by
        // the hospital before its rotation stay valid.
        val sealedBefore = doctor.signAndSealForRegistered(BPDS_RECORD, patientId, null, null)
        Thread.sleep(1100)
        assertEquals("insurer:other", otherInsurer.rotateKeys(2048u).partyId)
        assertEquals("hospital:st-marys", doctor.rotateKeys(2048u).partyId)
        val incoming = wallet.readRequest(claimRequest(otherInsurer).requestMessage(), PartyRole.INSURER)
        assertEquals("insurer:other", incoming.summary().requesterId)
        assertEquals("hospital:st-marys", wallet.receiveRecord(sealedBefore, PartyRole.HOSPITAL).record.doctorId)
        val sealedAfter = doctor.signAndSealForRegistered(BPDS_RECORD, patientId, null, null)
        assertEquals("hospital:st-marys", wallet.receiveRecord(sealedAfter, PartyRole.HOSPITAL).record.doctorId)
    }
}
