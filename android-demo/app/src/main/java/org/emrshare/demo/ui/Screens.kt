package org.emrshare.demo.ui

import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.foundation.text.selection.SelectionContainer
import androidx.compose.material3.Button
import androidx.compose.material3.Checkbox
import androidx.compose.material3.HorizontalDivider
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.RadioButton
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.collectAsState
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.setValue
import kotlinx.coroutines.launch
import org.emrshare.demo.logic.AuditViewModel
import org.emrshare.demo.logic.GrantsViewModel
import org.emrshare.demo.logic.ManualChannel
import org.emrshare.demo.logic.ManualVoucherChannel
import org.emrshare.demo.logic.OnboardingState
import org.emrshare.demo.logic.OnboardingViewModel
import org.emrshare.demo.logic.RecordsViewModel
import org.emrshare.demo.logic.RequestState
import org.emrshare.demo.logic.RequestViewModel
import org.emrshare.demo.logic.Verification
import org.emrshare.ffi.PartyRole

@Composable
fun OnboardingScreen(vm: OnboardingViewModel, voucher: ManualVoucherChannel) {
    val state by vm.state.collectAsState()
    val request by voucher.outgoing.collectAsState()
    val scope = rememberCoroutineScope()
    var hospitalId by remember { mutableStateOf("hospital:st-marys") }
    var signature by remember { mutableStateOf("") }
    when (val s = state) {
        OnboardingState.NotStarted -> Column {
            OutlinedTextField(hospitalId, { hospitalId = it }, label = { Text("Hospital that vouches for you") })
            Button(onClick = { scope.launch { vm.start(hospitalId, voucher) } }) {
                Text("Create keys (Android Keystore) and register")
            }
        }
        OnboardingState.CreatingKeys -> Text("Creating keys…")
        is OnboardingState.Registering -> Column {
            Text("Registering ${s.patientId}…")
            request?.let { blinded ->
                Field("Show the hospital this voucher request", blinded)
                OutlinedTextField(signature, { signature = it }, label = { Text("The hospital's blind signature") })
                Button(onClick = { voucher.deliver(signature.trim()) }) { Text("Register with the voucher") }
            }
        }
        is OnboardingState.Ready -> Column {
            Field("Patient ID", s.patientId)
            Field("Registered, proven at height", s.provenAtHeight.toString())
        }
        is OnboardingState.Failed -> Column {
            Text(s.message)
            Button(onClick = { scope.launch { vm.start(hospitalId, voucher) } }) { Text("Retry") }
        }
    }
}

@Composable
fun RecordsScreen(vm: RecordsViewModel) {
    val rows by vm.rows.collectAsState()
    val scope = rememberCoroutineScope()
    var sealed by remember { mutableStateOf("") }
    Column {
        OutlinedTextField(sealed, { sealed = it }, label = { Text("Sealed record from the doctor (JWE)") })
        Button(onClick = { scope.launch { vm.receive(sealed.trim()); sealed = "" } }) { Text("Receive and verify") }
        LazyColumn {
            items(rows) { row ->
                HorizontalDivider()
                Field("Record", row.recordId)
                Field("Doctor", row.doctorId)
                when (val v = row.verification) {
                    is Verification.Verified -> Text(
                        "Verified: doctor's key proven at height ${v.doctorLookup.height} " +
                            "(hid among ${v.doctorLookup.idsAsked} of ${v.doctorLookup.registered} IDs; verified by ${v.doctorLookup.verifiedBy.size} nodes, " +
                            "${v.doctorLookup.evidence.size} caught lying)",
                    )
                    is Verification.Rejected -> Text("Rejected: ${v.message}")
                }
                if (row.verification is Verification.Verified) {
                    if (row.storedBlob == null) {
                        Button(onClick = { scope.launch { vm.store(row.recordId, "general") } }) {
                            Text(row.uploadStage?.let { "Storing… $it" } ?: "Store (encrypted) and index")
                        }
                    } else {
                        Field("Stored at", row.storedBlob.take(16) + "…")
                    }
                }
            }
        }
    }
}

@Composable
fun RequestScreen(vm: RequestViewModel) {
    val state by vm.state.collectAsState()
    val scope = rememberCoroutineScope()
    val channel = remember { ManualChannel() }
    val outgoing by channel.outgoing.collectAsState()
    var requestMessage by remember { mutableStateOf("") }
    var role by remember { mutableStateOf(PartyRole.INSURER) }
    var recordId by remember { mutableStateOf("") }
    var answer by remember { mutableStateOf("") }
    Column {
        when (val s = state) {
            RequestState.Idle -> {
                OutlinedTextField(requestMessage, { requestMessage = it }, label = { Text("Request (scanned or pasted)") })
                Row {
                    listOf(PartyRole.INSURER, PartyRole.HOSPITAL, PartyRole.RESEARCHER).forEach { r ->
                        RadioButton(role == r, { role = r })
                        Text(r.name.lowercase())
                    }
                }
                OutlinedTextField(recordId, { recordId = it }, label = { Text("Record") })
                Button(onClick = { scope.launch { vm.review(requestMessage, role, recordId) } }) { Text("Check who asks") }
            }
            RequestState.Checking -> Text("Looking the requester up k-anonymously…")
            is RequestState.Reviewed -> {
                Field("Who asks", s.request.requesterId)
                Field("Purpose", s.request.purpose)
                Text(
                    "Verified: signed with the registered key proven at height ${s.request.requesterLookup.height} by " +
                        "${s.request.requesterLookup.verifiedBy.joinToString()} (hidden among ${s.request.requesterLookup.idsAsked} IDs)",
                )
                s.request.requestedParts.forEach { part ->
                    Row {
                        Checkbox(part in s.chosenParts, { vm.toggle(part) })
                        Text(part)
                    }
                }
                Row {
                    Button(onClick = { scope.launch { vm.answer(channel) } }) { Text("Share chosen parts") }
                    Button(onClick = { vm.decline() }) { Text("Decline") }
                }
            }
            is RequestState.Sharing -> {
                Text("Show this to ${s.request.requesterId}, then paste its answer:")
                SelectionContainer { Text(outgoing.orEmpty()) }
                OutlinedTextField(answer, { answer = it }, label = { Text("Answer (M2)") })
                Button(onClick = { channel.deliver(answer) }) { Text("Continue") }
            }
            is RequestState.Answered -> {
                Text("Sent to ${s.request.requesterId}, encrypted for this session (disclosed: ${s.disclosed.joinToString()}; ${if (s.logged) "logged in the record's account" else "not logged: store the record first"}). Show it the last message:")
                SelectionContainer { Text(outgoing.orEmpty()) }
                Button(onClick = { vm.decline() }) { Text("Done") }
            }
            is RequestState.Refused -> {
                Text(s.message)
                Button(onClick = { vm.decline() }) { Text("Back") }
            }
        }
    }
}

@Composable
fun GrantsScreen(vm: GrantsViewModel) {
    val grants by vm.grants.collectAsState()
    val error by vm.error.collectAsState()
    val scope = rememberCoroutineScope()
    var recordId by remember { mutableStateOf("") }
    var grantee by remember { mutableStateOf("insurer:acme-health") }
    var parts by remember { mutableStateOf("examination") }
    Column {
        error?.let { Text(it) }
        OutlinedTextField(recordId, { recordId = it }, label = { Text("Stored record") })
        OutlinedTextField(grantee, { grantee = it }, label = { Text("Grantee (insurer)") })
        OutlinedTextField(parts, { parts = it }, label = { Text("Parts, comma-separated (empty: whole record)") })
        Button(onClick = {
            scope.launch {
                vm.grant(recordId.trim(), grantee.trim(), PartyRole.INSURER, parts.split(',').map { it.trim() }.filter { it.isNotEmpty() }, 3600uL)
            }
        }) { Text("Grant read access for an hour") }
        Button(onClick = { scope.launch { vm.refresh() } }) { Text("Refresh from chain") }
        LazyColumn {
            items(grants) { g ->
                HorizontalDivider()
                Field("To", g.granteeId)
                Field("Parts", g.parts.ifEmpty { listOf("whole record") }.joinToString())
                Field("State", if (g.revoked) "revoked" else if (g.active) "active" else "expired")
                if (g.active) Button(onClick = { scope.launch { vm.revoke(g.grantId) } }) { Text("Revoke") }
            }
        }
    }
}

@Composable
fun AuditScreen(vm: AuditViewModel) {
    val events by vm.events.collectAsState()
    val scope = rememberCoroutineScope()
    Column {
        Button(onClick = { scope.launch { vm.refresh() } }) { Text("Read with proofs") }
        LazyColumn {
            items(events) { e ->
                HorizontalDivider()
                Text("height ${e.height}: ${e.accessorId ?: "(sealed log did not open)"} ${e.action} ${e.recordId?.take(12) ?: ""}… (${e.outcome}${e.grantId?.let { ", $it" } ?: ""}${e.purpose?.let { ", $it" } ?: ""})")
            }
        }
    }
}
