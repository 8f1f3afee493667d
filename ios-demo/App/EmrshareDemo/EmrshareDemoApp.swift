import SwiftUI
import EmrshareSDK
import EmrshareDemoLogic

/// The iOS demo: the same five screens as the Android demo, drawn from the models in
/// EmrshareDemoLogic. The consortium comes from the app bundle (consortium/genesis.json,
/// consortium/nodes.txt); the simulator reaches a local consortium on the Mac at 127.0.0.1.
@main
struct EmrshareDemoApp: App {
    @StateObject private var repo: WalletRepository

    init() {
        let genesis = (try? String(contentsOf: Bundle.main.url(forResource: "genesis", withExtension: "json", subdirectory: "consortium")!)) ?? "{}"
        let nodes = ((try? String(contentsOf: Bundle.main.url(forResource: "nodes", withExtension: "txt", subdirectory: "consortium")!)) ?? "")
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let config = defaultClientConfig(nodeUrls: nodes, genesisJson: genesis)
        _repo = StateObject(wrappedValue: WalletRepository(config: config, secrets: KeychainSecretStore()))
    }

    var body: some Scene {
        WindowGroup {
            TabView {
                OnboardingView(model: OnboardingModel(repo: repo)).tabItem { Text("Keys") }
                RecordsView(model: RecordsModel(repo: repo)).tabItem { Text("Records") }
                RequestView(model: RequestModel(repo: repo), repo: repo).tabItem { Text("Request") }
                GrantsView(repo: repo).tabItem { Text("Grants") }
                AuditView(model: AuditModel(repo: repo)).tabItem { Text("Audit") }
            }
        }
    }
}
