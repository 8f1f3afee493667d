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

/// How a patient's blinded voucher request reaches the hospital and its blind signature comes
/// back (in person: QR codes); the request is random to anyone but the patient.
public protocol VoucherChannel {
    func signBlind(_ blindedRequest: String) async throws -> String
}

/// A voucher channel carried by hand: `outgoing` is the request to show the hospital,
/// `deliver` takes its blind signature.
@MainActor
public final class ManualVoucherChannel: ObservableObject, VoucherChannel {
    @Published public private(set) var outgoing: String?
    private var answer: CheckedContinuation<String, Error>?
    public init() {}
    public func signBlind(_ blindedRequest: String) async throws -> String {
        outgoing = blindedRequest
        return try await withCheckedThrowingContinuation { answer = $0 }
    }
    public func deliver(_ blindSignature: String) {
        answer?.resume(returning: blindSignature)
        answer = nil
    }
}

@MainActor
public final class OnboardingModel: ObservableObject {
    public enum State: Equatable { case notStarted, creatingKeys, registering(String), ready(String, UInt64), failed(String) }
    @Published public private(set) var state: State = .notStarted
    private let repo: WalletRepository
    public init(repo: WalletRepository) { self.repo = repo }

    /// Keys, then registration with a voucher of `hospitalId` (RFC 9474 blind signature),
    /// which signs the wallet's blinded request through `hospital`.
    public func start(hospitalId: String, hospital: VoucherChannel) async {
        state = .creatingKeys
        do {
            let wallet = try repo.openOrCreate()
            state = .registering(wallet.patientId())
            let request = try await wallet.voucherRequest(hospitalId: hospitalId)
            let signature = try await hospital.signBlind(request.blindedRequest())
            let voucher = try request.finalize(blindSignature: signature)
            let registration = try await wallet.register(voucher: voucher, validDays: 365)
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

/// How the handshake's messages travel between the phone and the requester (QR codes, NFC,
/// a link, HTTPS). The protocol is safe over an open channel, so the channel only carries text.
public protocol RequestChannel {
    /// Hands M1 to the requester and returns its M2.
    func exchange(m1: String) async throws -> String
    /// Hands M3, the last message, to the requester.
    func finish(m3: String) async throws
}

/// An incoming request (DESIGN 8): read it and look the requester up k-anonymously (who asks,
/// proven by which nodes, its keys exactly its registered ones), let the patient choose the
/// parts, then answer over the mutual-authentication handshake; the requester logs the access
/// on chain.
@MainActor
public final class RequestModel: ObservableObject {
    public enum State {
        case idle, checking
        case reviewed(RequestSummary, recordId: String, chosen: Set<String>)
        case sharing(RequestSummary)
        case answered(RequestSummary, disclosed: Set<String>)
        case refused(String)
    }
    @Published public private(set) var state: State = .idle
    private var handshake: IncomingRequest?
    private let repo: WalletRepository
    public init(repo: WalletRepository) { self.repo = repo }

    public func review(requestMessage: String, requesterRole: PartyRole, recordId: String) async {
        state = .checking
        do {
            let incoming = try await repo.requireWallet().readRequest(request: requestMessage, requesterRole: requesterRole)
            let summary = incoming.summary()
            let available = Set(repo.records[recordId]?.received.record.parts.map(\.name) ?? [])
            handshake = incoming
            state = .reviewed(summary, recordId: recordId, chosen: Set(summary.requestedParts).intersection(available))
        } catch {
            state = .refused(describe(error))
        }
    }

    public func toggle(_ part: String) {
        guard case .reviewed(let r, let id, var chosen) = state else { return }
        if chosen.contains(part) { chosen.remove(part) } else { chosen.insert(part) }
        state = .reviewed(r, recordId: id, chosen: chosen)
    }

    /// Answers with the chosen parts over `channel`; true when M3 went out.
    public func answer(over channel: RequestChannel) async -> Bool {
        guard case .reviewed(let r, let id, let chosen) = state, let entry = repo.records[id], let incoming = handshake else { return false }
        let mandatory = Set(entry.received.record.mandatoryParts)
        state = .sharing(r)
        do {
            let m2 = try await channel.exchange(m1: try incoming.accept())
            try await channel.finish(m3: try incoming.sendRecord(m2: m2, sdJwt: entry.received.sdJwt, disclose: Array(chosen.subtracting(mandatory))))
            // The patient logs the exchange in the record's own account, sealed to itself.
            try? await incoming.logAccess()
            state = .answered(r, disclosed: chosen.union(mandatory))
            handshake = nil
            return true
        } catch {
            state = .refused(describe(error))
            handshake = nil
            return false
        }
    }

    public func decline() { handshake = nil; state = .idle }
}

@MainActor
public final class AuditModel: ObservableObject {
    @Published public private(set) var events: [AccessEvent] = []
    private let repo: WalletRepository
    public init(repo: WalletRepository) { self.repo = repo }
    public func refresh() async throws { events = try await repo.auditLog().sorted { $0.height > $1.height } }
}
