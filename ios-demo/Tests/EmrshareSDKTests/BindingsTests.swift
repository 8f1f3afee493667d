import XCTest
import EmrshareSDK
import EmrshareDemoLogic

/// XCTest tests of the Swift bindings, run on macOS with `swift test` after
/// scripts/build-xcframework.sh, against a local consortium:
///   emrshare local-consortium --dir /tmp/c --nodes 3 > /tmp/c.out &
///   EMRSHARE_NODES=$(grep -v ready /tmp/c.out | paste -sd, -) EMRSHARE_GENESIS=/tmp/c/genesis.json swift test
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
        let doctor = try DoctorSigner.create(config: config, store: MemorySecretStore(), doctorId: "hospital:swift-\(UUID().uuidString.prefix(8))", rsaBits: 2048)
        let insurer = try Requester.create(config: config, store: MemorySecretStore(), requesterId: "insurer:swift-\(UUID().uuidString.prefix(8))", rsaBits: 2048)
        _ = try await doctor.register(role: .hospital, validDays: 30)
        _ = try await insurer.register(role: .insurer, validDays: 30)
        let repo = await WalletRepository(config: config, secrets: MemorySecretStore(), rsaBits: 2048)
        let onboarding = await OnboardingModel(repo: repo)
        await onboarding.start()
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
}
