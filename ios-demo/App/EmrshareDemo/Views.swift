import SwiftUI
import EmrshareSDK
import EmrshareDemoLogic

struct OnboardingView: View {
    @StateObject var model: OnboardingModel
    var body: some View {
        switch model.state {
        case .notStarted: Button("Create keys (Keychain) and register") { Task { await model.start() } }
        case .creatingKeys: Text("Creating keys…")
        case .registering(let id): Text("Registering \(id)…")
        case .ready(let id, let height): VStack { Text("Patient ID \(id)"); Text("Registered, proven at height \(height)") }
        case .failed(let message): VStack { Text(message); Button("Retry") { Task { await model.start() } } }
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

struct RequestView: View {
    @StateObject var model: RequestModel
    let repo: WalletRepository
    @State private var requester = "insurer:acme-health"
    @State private var recordId = ""
    var body: some View {
        VStack {
            switch model.state {
            case .idle:
                TextField("Requesting institution", text: $requester)
                TextField("Record", text: $recordId)
                Button("Check who asks") {
                    Task { await model.review(IncomingRequest(requesterId: requester, requesterRole: .insurer, purpose: "claim", requestedParts: ["examination", "prescription"], nonce: makeNonce()), recordId: recordId) }
                }
            case .checking(let r): Text("Looking \(r.requesterId) up k-anonymously…")
            case .reviewed(let r, let report, _, let chosen):
                Text("\(r.requesterId) asks for: \(r.purpose)")
                Text("Verified at height \(report.height) by \(report.verifiedBy.joined(separator: ", ")), hidden among \(report.idsAsked) IDs")
                ForEach(r.requestedParts, id: \.self) { part in
                    Toggle(part, isOn: Binding(get: { chosen.contains(part) }, set: { _ in model.toggle(part) }))
                }
                Button("Share chosen parts") { _ = model.answer() }
            case .answered: Text("Presentation ready (bound to the requester and its nonce).")
            case .refused(let message): Text(message)
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
            Button("Read from verified blocks") { Task { try? await model.refresh() } }
            ForEach(model.events, id: \.height) { e in
                Text("height \(e.height): \(e.accessorId) \(String(describing: e.action)) (\(String(describing: e.outcome)))")
            }
        }
    }
}
