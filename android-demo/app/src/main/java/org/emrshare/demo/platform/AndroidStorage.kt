package org.emrshare.demo.platform

import android.content.Context
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import org.emrshare.demo.logic.KeyValueStore
import org.emrshare.demo.logic.Sealer
import java.io.File
import java.security.KeyStore
import javax.crypto.Cipher
import javax.crypto.KeyGenerator
import javax.crypto.SecretKey
import javax.crypto.spec.GCMParameterSpec

/**
 * AES-256-GCM under a key generated inside the Android Keystore (hardware-backed where the
 * device has it; never exportable). The SDK's key material is sealed with it before it
 * touches storage.
 */
class KeystoreSealer(private val alias: String = "emrshare-secrets") : Sealer {
    private fun key(): SecretKey {
        val keyStore = KeyStore.getInstance("AndroidKeyStore").apply { load(null) }
        (keyStore.getKey(alias, null) as? SecretKey)?.let { return it }
        val generator = KeyGenerator.getInstance(KeyProperties.KEY_ALGORITHM_AES, "AndroidKeyStore")
        generator.init(
            KeyGenParameterSpec.Builder(alias, KeyProperties.PURPOSE_ENCRYPT or KeyProperties.PURPOSE_DECRYPT)
                .setBlockModes(KeyProperties.BLOCK_MODE_GCM)
                .setEncryptionPaddings(KeyProperties.ENCRYPTION_PADDING_NONE)
                .setKeySize(256)
                .build(),
        )
        return generator.generateKey()
    }

    override fun seal(plaintext: ByteArray): ByteArray {
        val cipher = Cipher.getInstance("AES/GCM/NoPadding")
        cipher.init(Cipher.ENCRYPT_MODE, key())
        return cipher.iv + cipher.doFinal(plaintext)
    }

    override fun open(sealed: ByteArray): ByteArray {
        val cipher = Cipher.getInstance("AES/GCM/NoPadding")
        cipher.init(Cipher.DECRYPT_MODE, key(), GCMParameterSpec(128, sealed, 0, 12))
        return cipher.doFinal(sealed, 12, sealed.size - 12)
    }
}

/** Files in the app's private directory. */
class FileKeyValueStore(context: Context) : KeyValueStore {
    private val dir = File(context.filesDir, "emrshare").apply { mkdirs() }
    private fun file(name: String) = File(dir, name.replace(Regex("[^A-Za-z0-9._-]"), "_"))
    override fun put(name: String, bytes: ByteArray) {
        val tmp = File(dir, "${file(name).name}.tmp")
        tmp.writeBytes(bytes)
        tmp.renameTo(file(name))
    }
    override fun get(name: String): ByteArray? = file(name).takeIf { it.exists() }?.readBytes()
    override fun remove(name: String) { file(name).delete() }
}
