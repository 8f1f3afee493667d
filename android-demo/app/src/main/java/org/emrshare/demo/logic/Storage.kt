package org.emrshare.demo.logic

import org.emrshare.ffi.EmrshareException
import org.emrshare.ffi.SecretStore
import java.util.concurrent.ConcurrentHashMap

/**
 * Plain byte storage by name: app files on Android, a map in the host tests. Holds only what
 * is already sealed (the secret store's ciphertexts) or not secret (envelopes, grant IDs).
 */
interface KeyValueStore {
    fun put(name: String, bytes: ByteArray)
    fun get(name: String): ByteArray?
    fun remove(name: String)
}

class InMemoryKeyValueStore : KeyValueStore {
    private val map = ConcurrentHashMap<String, ByteArray>()
    override fun put(name: String, bytes: ByteArray) { map[name] = bytes.copyOf() }
    override fun get(name: String): ByteArray? = map[name]?.copyOf()
    override fun remove(name: String) { map.remove(name) }
}

/**
 * Seals bytes under a key the app cannot export: on Android an AES-256-GCM key in the Android
 * Keystore (see platform/KeystoreSealer.kt), in the host tests a key in memory.
 */
interface Sealer {
    fun seal(plaintext: ByteArray): ByteArray
    fun open(sealed: ByteArray): ByteArray
}

/**
 * The SDK's [SecretStore] callback: the library hands over its key material once, this seals
 * it at once and keeps only the ciphertext, and wipes the plaintext array it was given.
 */
class SealedSecretStore(
    private val sealer: Sealer,
    private val files: KeyValueStore,
) : SecretStore {
    override fun save(name: String, secret: ByteArray) {
        try {
            files.put(fileName(name), sealer.seal(secret))
        } catch (e: Exception) {
            throw EmrshareException.SecretStore("sealing failed")
        } finally {
            secret.fill(0)
        }
    }

    override fun load(name: String): ByteArray? {
        val sealed = files.get(fileName(name)) ?: return null
        return try {
            sealer.open(sealed)
        } catch (e: Exception) {
            throw EmrshareException.SecretStore("the sealed keys do not open")
        }
    }

    override fun delete(name: String) {
        files.remove(fileName(name))
    }

    private fun fileName(name: String) = "secret.$name.sealed"
}

/** An AES-256-GCM [Sealer] with a key in memory: the host tests' stand-in for the Keystore. */
class InMemoryAesGcmSealer : Sealer {
    private val key: javax.crypto.SecretKey =
        javax.crypto.KeyGenerator.getInstance("AES").apply { init(256) }.generateKey()

    override fun seal(plaintext: ByteArray): ByteArray {
        val cipher = javax.crypto.Cipher.getInstance("AES/GCM/NoPadding")
        cipher.init(javax.crypto.Cipher.ENCRYPT_MODE, key)
        return cipher.iv + cipher.doFinal(plaintext)
    }

    override fun open(sealed: ByteArray): ByteArray {
        require(sealed.size > 12 + 16) { "too short" }
        val cipher = javax.crypto.Cipher.getInstance("AES/GCM/NoPadding")
        cipher.init(
            javax.crypto.Cipher.DECRYPT_MODE,
            key,
            javax.crypto.spec.GCMParameterSpec(128, sealed, 0, 12),
        )
        return cipher.doFinal(sealed, 12, sealed.size - 12)
    }
}
