import Foundation
import EmrshareSDK

/// The demo's screens' logic in plain Swift (no SwiftUI): observable models the views draw
/// and the XCTests drive. Mirrors android-demo's logic/ classes.

public func describe(_ error: Error) -> String {
    switch error {
    case EmrshareError.VerificationFailed(let reason): return "Could not be verified: \(reason)"
    case EmrshareError.NotRegistered: return "Not registered (or no longer active)"
    case EmrshareError.Refused(let status): return "Refused by the network (\(status))"
    case EmrshareError.Unreachable: return "No node answered"
    case EmrshareError.UntrustedAnswers: return "The nodes' answers did not verify; nothing was accepted"
    case EmrshareError.InvalidInput(let reason): return "Invalid input: \(reason)"
    case EmrshareError.SecretStore(let reason): return "Key storage failed: \(reason)"
    default: return "Failed"
    }
}

public struct RecordEntry {
    public var received: ReceivedRecord
    public var stored: StoredRecord?
}

@MainActor
public final class WalletRepository: ObservableObject {
    private let config: ClientConfig
    private let secrets: SecretStore
    private let rsaBits: UInt32
    public private(set) var wallet: PatientWallet?
    @Published public private(set) var records: [String: RecordEntry] = [:]
    @Published public private(set) var grants: [String: GrantInfo] = [:]

    public init(config: ClientConfig, secrets: SecretStore, rsaBits: UInt32 = 3072) {
        self.config = config
        self.secrets = secrets
        self.rsaBits = rsaBits
    }

    public func openOrCreate() throws -> PatientWallet {
        if let wallet { return wallet }
        let opened: PatientWallet
        do {
            opened = try PatientWallet.restore(config: config, store: secrets)
        } catch EmrshareError.NoKeys {
            opened = try PatientWallet.create(config: config, store: secrets, rsaBits: rsaBits)
        }
        wallet = opened
        return opened
    }

    func requireWallet() throws -> PatientWallet {
        guard let wallet else { throw EmrshareError.InvalidInput(reason: "onboarding first") }
        return wallet
    }

    public func receive(sealed: String, doctorRole: PartyRole = .hospital) async throws -> RecordEntry {
        let received = try await requireWallet().receiveRecord(sealedRecord: sealed, doctorRole: doctorRole)
        let entry = RecordEntry(received: received, stored: nil)
        records[received.record.recordId] = entry
        return entry
    }

    public func store(recordId: String, department: String) async throws -> StoredRecord {
        guard var entry = records[recordId] else { throw EmrshareError.InvalidInput(reason: "no such record") }
        let stored = try await requireWallet().storeRecord(sdJwt: entry.received.sdJwt, department: department, progress: nil)
        entry.stored = stored
        records[recordId] = entry
        return stored
    }

    public func grant(recordId: String, granteeId: String, role: PartyRole, parts: [String], seconds: UInt64) async throws -> GrantInfo {
        guard let stored = records[recordId]?.stored else { throw EmrshareError.InvalidInput(reason: "store the record first") }
        let grant = try await requireWallet().grant(envelope: stored.envelope, granteeId: granteeId, granteeRole: role, parts: parts, validSeconds: seconds)
        grants[grant.grantId] = grant
        return grant
    }

    public func revoke(grantId: String) async throws -> GrantInfo {
        let revoked = try await requireWallet().revoke(grantId: grantId)
        grants[grantId] = revoked
        return revoked
    }

    public func auditLog() async throws -> [AccessEvent] {
        try await requireWallet().auditLog()
    }
}

@MainActor
public final class OnboardingModel: ObservableObject {
    public enum State: Equatable { case notStarted, creatingKeys, registering(String), ready(String, UInt64), failed(String) }
    @Published public private(set) var state: State = .notStarted
    private let repo: WalletRepository
    public init(repo: WalletRepository) { self.repo = repo }

    public func start() async {
        state = .creatingKeys
        do {
            let wallet = try repo.openOrCreate()
            state = .registering(wallet.patientId())
            let registration = try await wallet.register(validDays: 365)
            state = .ready(registration.partyId, registration.height)
        } catch {
            state = .failed(describe(error))
        }
    }
}

@MainActor
public final class RecordsModel: ObservableObject {
    @Published public private(set) var rejected: [String] = []
    public let repo: WalletRepository
    public init(repo: WalletRepository) { self.repo = repo }

    @discardableResult
    public func receive(sealed: String) async -> String? {
        do {
            return try await repo.receive(sealed: sealed).received.record.recordId
        } catch {
            rejected.append(describe(error))
            return nil
        }
    }
}

public struct IncomingRequest: Equatable {
    public var requesterId: String
    public var requesterRole: PartyRole
    public var purpose: String
    public var requestedParts: [String]
    public var nonce: String
    public init(requesterId: String, requesterRole: PartyRole, purpose: String, requestedParts: [String], nonce: String) {
        self.requesterId = requesterId; self.requesterRole = requesterRole; self.purpose = purpose
        self.requestedParts = requestedParts; self.nonce = nonce
    }
}

/// An incoming request: who asks (k-anonymous lookup, verified), which parts, a presentation
/// bound to the requester and its nonce. The mutual-authentication handshake (DESIGN 8) that
/// will carry it comes with core's handshake module; it is not here yet.
@MainActor
public final class RequestModel: ObservableObject {
    public enum State { case idle, checking(IncomingRequest), reviewed(IncomingRequest, LookupReport, String, Set<String>), answered(String), refused(String) }
    @Published public private(set) var state: State = .idle
    private let repo: WalletRepository
    public init(repo: WalletRepository) { self.repo = repo }

    public func review(_ request: IncomingRequest, recordId: String) async {
        state = .checking(request)
        do {
            let report = try await repo.requireWallet().lookUp(partyId: request.requesterId, role: request.requesterRole)
            let available = Set(repo.records[recordId]?.received.record.parts.map(\.name) ?? [])
            state = .reviewed(request, report, recordId, Set(request.requestedParts).intersection(available))
        } catch {
            state = .refused(describe(error))
        }
    }

    public func toggle(_ part: String) {
        guard case .reviewed(let r, let report, let id, var chosen) = state else { return }
        if chosen.contains(part) { chosen.remove(part) } else { chosen.insert(part) }
        state = .reviewed(r, report, id, chosen)
    }

    public func answer() -> String? {
        guard case .reviewed(let r, _, let id, let chosen) = state, let entry = repo.records[id] else { return nil }
        do {
            let mandatory = Set(entry.received.record.mandatoryParts)
            let presentation = try repo.requireWallet().present(sdJwt: entry.received.sdJwt, disclose: Array(chosen.subtracting(mandatory)), audience: r.requesterId, nonce: r.nonce)
            state = .answered(presentation)
            return presentation
        } catch {
            state = .refused(describe(error))
            return nil
        }
    }
}

@MainActor
public final class AuditModel: ObservableObject {
    @Published public private(set) var events: [AccessEvent] = []
    private let repo: WalletRepository
    public init(repo: WalletRepository) { self.repo = repo }
    public func refresh() async throws { events = try await repo.auditLog().sorted { $0.height > $1.height } }
}
