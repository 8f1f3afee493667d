import XCTest
import EmrshareSDK
import EmrshareDemoLogic

/// XCTest tests of the Swift bindings, run on macOS with `swift test` after
/// scripts/build-xcframework.sh, against a local consortium:
///   emrshare local-consortium --dir /tmp/c --nodes 3 > /tmp/c.out &
///   EMRSHARE_NODES=$(grep -v ready /tmp/c.out | paste -sd, -) EMRSHARE_GENESIS=/tmp/c/genesis.json \
///     EMRSHARE_CONSORTIUM=/tmp/c swift test
/// Without those variables the network tests are skipped; the offline ones still run.
final class BindingsTests: XCTestCase {
    let record = #"{"name":"Alex Example","gender":"female","age":42,"id_number":"X-1","medical_history":["hypertension"],"examination":{"bp":"150/95"},"prescription":["amlodipine"]}"#

    func offlineConfig() -> ClientConfig {
        defaultClientConfig(nodeUrls: ["http://127.0.0.1:9"], genesisJson: "{}")
    }

    func liveConfig() throws -> ClientConfig {
        let env = ProcessInfo.processInfo.environment
        guard let nodes = env["EMRSHARE_NODES"], let genesis = env["EMRSHARE_GENESIS"] else {
            throw XCTSkip("set EMRSHARE_NODES and EMRSHARE_GENESIS to run against a consortium")
        }
        var config = defaultClientConfig(nodeUrls: nodes.split(separator: ",").map(String.init),
                                         genesisJson: try String(contentsOfFile: genesis))
        config.k = 2
        return config
    }

    /// The council members' private keys: node-*/node.key.json in EMRSHARE_CONSORTIUM (the
    /// local consortium's folder; every node is a member).
    func memberKeys() throws -> [String] {
        guard let dir = ProcessInfo.processInfo.environment["EMRSHARE_CONSORTIUM"] else {
            throw XCTSkip("set EMRSHARE_CONSORTIUM to the consortium's folder (its node keys approve admissions)")
        }
        let nodes = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("node-") }.sorted()
        return try nodes.map { try String(contentsOfFile: "\(dir)/\($0)/node.key.json") }
    }

    /// The hospital's side of the voucher exchange, in process.
    struct HospitalDesk: VoucherChannel {
        let hospital: DoctorSigner
        func signBlind(_ blindedRequest: String) async throws -> String {
            try hospital.signVoucherRequest(blindedRequest: blindedRequest)
        }
    }

    /// A hospital and an insurer with fresh names, admitted by the council, and the patient's
    /// repository.
    func registeredParties(_ config: ClientConfig) async throws -> (DoctorSigner, Requester, WalletRepository) {
        let doctor = try DoctorSigner.create(config: config, store: MemorySecretStore(), doctorId: "hospital:swift-\(UUID().uuidString.prefix(8))", rsaBits: 2048)
        let insurer = try Requester.create(config: config, store: MemorySecretStore(), requesterId: "insurer:swift-\(UUID().uuidString.prefix(8))", rsaBits: 2048)
        let members = try memberKeys()
        let hospitalProposal = try doctor.admissionRequest(role: .hospital, validDays: 30)
        _ = try await doctor.submitAdmission(proposal: hospitalProposal, approvals: try members.map { try approveProposal(proposalJson: hospitalProposal, memberKeysJson: $0) })
        let insurerProposal = try insurer.admissionRequest(role: .insurer, validDays: 30)
        _ = try await insurer.submitAdmission(proposal: insurerProposal, approvals: try members.map { try approveProposal(proposalJson: insurerProposal, memberKeysJson: $0) })
        let repo = await WalletRepository(config: config, secrets: MemorySecretStore(), rsaBits: 2048)
        return (doctor, insurer, repo)
    }

    func testBadGenesisIsInvalidInput() {
        XCTAssertThrowsError(try PatientWallet.create(config: offlineConfig(), store: MemorySecretStore(), rsaBits: 2048)) { error in
            guard case EmrshareError.InvalidInput = error else { return XCTFail("\(error)") }
        }
    }

    func testNonceIsFresh() {
        XCTAssertNotEqual(makeNonce(), makeNonce())
        XCTAssertFalse(sdkVersion().isEmpty)
    }

    func testVisitGrantRevokeAudit() async throws {
        let config = try liveConfig()
        let (doctor, insurer, repo) = try await registeredParties(config)
        let onboarding = await OnboardingModel(repo: repo)
        await onboarding.start(hospitalId: doctor.doctorId(), hospital: HospitalDesk(hospital: doctor))
        let wallet = try await repo.openOrCreate()
        let sealed = try doctor.signAndSeal(recordJson: record, patientPublicKeysJson: wallet.publicKeysJson(), mandatoryParts: nil, recordId: nil)
        let entry = try await repo.receive(sealed: sealed)
        XCTAssertEqual(entry.received.record.parts.count, 7)
        do {
            _ = try await wallet.receiveRecord(sealedRecord: String(sealed.dropLast(3)) + "AAA", doctorRole: .hospital)
            XCTFail("a tampered envelope was accepted")
        } catch EmrshareError.VerificationFailed {}
        _ = try await repo.store(recordId: entry.received.record.recordId, department: "cardiology")
        let grant = try await repo.grant(recordId: entry.received.record.recordId, granteeId: insurer.requesterId(), role: .insurer, parts: ["examination"], seconds: 600)
        let fetched = try await insurer.fetchGranted(grantId: grant.grantId, doctorRole: .hospital)
        XCTAssertEqual(fetched.record.recordId, entry.received.record.recordId)
        _ = try await repo.revoke(grantId: grant.grantId)
        do {
            _ = try await insurer.fetchGranted(grantId: grant.grantId, doctorRole: .hospital)
            XCTFail("a fetch after revocation was accepted")
        } catch EmrshareError.Refused {}
        let audit = try await repo.auditLog()
        XCTAssertTrue(audit.contains { $0.accessorId == insurer.requesterId() })
    }

    /// Story 2: the insurer asks, the patient's request model verifies and answers over the
    /// handshake, the insurer verifies and logs; a tampered M3 is refused.
    func testRequestAnsweredOverTheHandshake() async throws {
        final class InProcess: RequestChannel {
            let outgoing: OutgoingRequest
            var shared: SharedRecordInfo?
            init(_ outgoing: OutgoingRequest) { self.outgoing = outgoing }
            func exchange(m1: String) async throws -> String { try await outgoing.receiveM1(m1: m1).m2 }
            func finish(m3: String) async throws { shared = try await outgoing.receiveRecord(m3: m3, doctorRole: .hospital) }
        }
        let config = try liveConfig()
        let (doctor, insurer, repo) = try await registeredParties(config)
        await OnboardingModel(repo: repo).start(hospitalId: doctor.doctorId(), hospital: HospitalDesk(hospital: doctor))
        let wallet = try await repo.openOrCreate()
        let entry = try await repo.receive(sealed: try doctor.signAndSeal(recordJson: record, patientPublicKeysJson: wallet.publicKeysJson(), mandatoryParts: nil, recordId: nil))
        let outgoing = try insurer.startRequest(purpose: "claim", parts: ["examination"])
        let model = await RequestModel(repo: repo)
        await model.review(requestMessage: outgoing.requestMessage(), requesterRole: .insurer, recordId: entry.received.record.recordId)
        let channel = InProcess(outgoing)
        let answered = await model.answer(over: channel)
        XCTAssertTrue(answered)
        let shared = channel.shared
        XCTAssertEqual(shared?.patientId, wallet.patientId())
        XCTAssertEqual(Set(shared?.record.parts.map(\.name) ?? []), ["gender", "age", "medical_history", "examination"])
        let again = try insurer.startRequest(purpose: "claim", parts: ["examination"])
        let incoming = try await wallet.readRequest(request: again.requestMessage(), requesterRole: .insurer)
        let m2 = try await again.receiveM1(m1: try incoming.accept()).m2
        let m3 = try incoming.sendRecord(m2: m2, sdJwt: entry.received.sdJwt, disclose: ["examination"])
        do {
            _ = try await again.receiveRecord(m3: String(m3.dropLast(8)) + "AAAAAAA\"}", doctorRole: .hospital)
            XCTFail("a tampered M3 was accepted")
        } catch EmrshareError.VerificationFailed {}
    }
}
