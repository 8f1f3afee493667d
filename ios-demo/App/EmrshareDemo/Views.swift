import SwiftUI
import EmrshareSDK
import EmrshareDemoLogic

struct OnboardingView: View {
    @StateObject var model: OnboardingModel
    @StateObject private var voucher = ManualVoucherChannel()
    @State private var hospitalId = "hospital:st-marys"
    @State private var signature = ""
    var body: some View {
        switch model.state {
        case .notStarted: VStack {
            TextField("Hospital that vouches for you", text: $hospitalId)
            Button("Create keys (Keychain) and register") { Task { await model.start(hospitalId: hospitalId, hospital: voucher) } }
        }
        case .creatingKeys: Text("Creating keys…")
        case .registering(let id): VStack {
            Text("Registering \(id)…")
            if let request = voucher.outgoing {
                Text("Show the hospital this voucher request: \(request)").textSelection(.enabled)
                TextField("The hospital's blind signature", text: $signature)
                Button("Register with the voucher") { voucher.deliver(signature.trimmingCharacters(in: .whitespaces)) }
            }
        }
        case .ready(let id, let height): VStack { Text("Patient ID \(id)"); Text("Registered, proven at height \(height)") }
        case .failed(let message): VStack { Text(message); Button("Retry") { Task { await model.start(hospitalId: hospitalId, hospital: voucher) } } }
        }
    }
}

struct RecordsView: View {
    @StateObject var model: RecordsModel
    @ObservedObject private var repo: WalletRepository
    @State private var sealed = ""
    init(model: RecordsModel) { _model = StateObject(wrappedValue: model); repo = model.repo }
    var body: some View {
        List {
            TextField("Sealed record from the doctor (JWE)", text: $sealed)
            Button("Receive and verify") { Task { await model.receive(sealed: sealed); sealed = "" } }
            ForEach(Array(repo.records.values), id: \.received.record.recordId) { entry in
                VStack(alignment: .leading) {
                    Text("\(entry.received.record.recordId) from \(entry.received.record.doctorId)")
                    Text("Verified: doctor's key proven at height \(entry.received.doctorLookup.height), by \(entry.received.doctorLookup.verifiedBy.count) nodes")
                    if entry.stored == nil {
                        Button("Store (encrypted) and index") { Task { _ = try? await repo.store(recordId: entry.received.record.recordId, department: "general") } }
                    }
                }
            }
            ForEach(model.rejected, id: \.self) { Text("Rejected: \($0)") }
        }
    }
}

/// Carries the handshake by hand: shows the outgoing message, waits for the pasted answer.
@MainActor
final class ManualChannel: ObservableObject, RequestChannel {
    @Published var outgoing = ""
    private var answer: CheckedContinuation<String, Never>?
    nonisolated func exchange(m1: String) async throws -> String {
        await withCheckedContinuation { continuation in
            Task { @MainActor in self.outgoing = m1; self.answer = continuation }
        }
    }
    nonisolated func finish(m3: String) async throws {
        await MainActor.run { self.outgoing = m3 }
    }
    func deliver(_ m2: String) { answer?.resume(returning: m2); answer = nil }
}

struct RequestView: View {
    @StateObject var model: RequestModel
    @StateObject private var channel = ManualChannel()
    let repo: WalletRepository
    @State private var requestMessage = ""
    @State private var role = PartyRole.insurer
    @State private var recordId = ""
    @State private var reply = ""
    var body: some View {
        VStack {
            switch model.state {
            case .idle:
                TextField("Request (scanned or pasted)", text: $requestMessage)
                Picker("From", selection: $role) {
                    Text("Insurer").tag(PartyRole.insurer)
                    Text("Hospital").tag(PartyRole.hospital)
                    Text("Researcher").tag(PartyRole.researcher)
                }
                TextField("Record", text: $recordId)
                Button("Check who asks") {
                    Task { await model.review(requestMessage: requestMessage, requesterRole: role, recordId: recordId) }
                }
            case .checking: Text("Looking the requester up k-anonymously…")
            case .reviewed(let r, _, let chosen):
                Text("\(r.requesterId) asks for: \(r.purpose)")
                Text("Signed with the registered key proven at height \(r.requesterLookup.height) by \(r.requesterLookup.verifiedBy.joined(separator: ", ")), hidden among \(r.requesterLookup.idsAsked) IDs")
                ForEach(r.requestedParts, id: \.self) { part in
                    Toggle(part, isOn: Binding(get: { chosen.contains(part) }, set: { _ in model.toggle(part) }))
                }
                Button("Share chosen parts") { Task { _ = await model.answer(over: channel) } }
                Button("Decline") { model.decline() }
            case .sharing(let r):
                Text("Show this to \(r.requesterId), then paste its answer:")
                Text(channel.outgoing).textSelection(.enabled)
                TextField("Answer (M2)", text: $reply)
                Button("Continue") { channel.deliver(reply) }
            case .answered(let r, let disclosed):
                Text("Sent to \(r.requesterId), encrypted for this session (disclosed: \(disclosed.sorted().joined(separator: ", "))). Show it the last message:")
                Text(channel.outgoing).textSelection(.enabled)
                Button("Done") { model.decline() }
            case .refused(let message):
                Text(message)
                Button("Back") { model.decline() }
            }
        }
    }
}

struct GrantsView: View {
    @ObservedObject var repo: WalletRepository
    var body: some View {
        List(Array(repo.grants.values), id: \.grantId) { g in
            VStack(alignment: .leading) {
                Text("To \(g.granteeId): \(g.parts.isEmpty ? "whole record" : g.parts.joined(separator: ", "))")
                Text(g.revoked ? "revoked" : (g.active ? "active" : "expired"))
                if g.active { Button("Revoke") { Task { _ = try? await repo.revoke(grantId: g.grantId) } } }
            }
        }
    }
}

struct AuditView: View {
    @StateObject var model: AuditModel
    var body: some View {
        List {
            Button("Read with proofs") { Task { try? await model.refresh() } }
            ForEach(model.events, id: \.height) { e in
                Text("height \(e.height): \(e.accessorId) \(String(describing: e.action)) (\(String(describing: e.outcome)))")
            }
        }
    }
}
