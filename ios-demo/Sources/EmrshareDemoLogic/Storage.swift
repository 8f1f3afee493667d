import Foundation
import Security
import EmrshareSDK

/// The SDK's `SecretStore` callback on iOS: the key material goes straight into the Keychain
/// (a generic password item, this device only, after first unlock), never into files.
public final class KeychainSecretStore: SecretStore, @unchecked Sendable {
    private let service: String

    public init(service: String = "org.emrshare.demo") {
        self.service = service
    }

    private func query(_ name: String) -> [String: Any] {
        [kSecClass as String: kSecClassGenericPassword,
         kSecAttrService as String: service,
         kSecAttrAccount as String: name]
    }

    public func save(name: String, secret: Data) throws {
        SecItemDelete(query(name) as CFDictionary)
        var item = query(name)
        item[kSecValueData as String] = secret
        item[kSecAttrAccessible as String] = kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly
        let status = SecItemAdd(item as CFDictionary, nil)
        guard status == errSecSuccess else { throw EmrshareError.SecretStore(reason: "keychain add failed (\(status))") }
    }

    public func load(name: String) throws -> Data? {
        var item = query(name)
        item[kSecReturnData as String] = true
        item[kSecMatchLimit as String] = kSecMatchLimitOne
        var out: AnyObject?
        let status = SecItemCopyMatching(item as CFDictionary, &out)
        if status == errSecItemNotFound { return nil }
        guard status == errSecSuccess else { throw EmrshareError.SecretStore(reason: "keychain read failed (\(status))") }
        return out as? Data
    }

    public func delete(name: String) throws {
        SecItemDelete(query(name) as CFDictionary)
    }
}

/// A secret store in memory, for tests.
public final class MemorySecretStore: SecretStore, @unchecked Sendable {
    private var items: [String: Data] = [:]
    private let lock = NSLock()
    public init() {}
    public func save(name: String, secret: Data) throws { lock.withLock { items[name] = secret } }
    public func load(name: String) throws -> Data? { lock.withLock { items[name] } }
    public func delete(name: String) throws { _ = lock.withLock { items.removeValue(forKey: name) } }
}
