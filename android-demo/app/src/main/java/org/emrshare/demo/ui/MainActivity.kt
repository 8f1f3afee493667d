package org.emrshare.demo.ui

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Surface
import androidx.compose.material3.Tab
import androidx.compose.material3.TabRow
import androidx.compose.material3.Text
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableIntStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import org.emrshare.demo.DemoApplication

/** The five screens as tabs. All state and logic live in the models (logic/); this only draws. */
class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val app = application as DemoApplication
        setContent {
            MaterialTheme {
                Surface(Modifier.fillMaxSize()) {
                    var tab by remember { mutableIntStateOf(0) }
                    val titles = listOf("Keys", "Records", "Request", "Grants", "Audit")
                    Column {
                        TabRow(selectedTabIndex = tab) {
                            titles.forEachIndexed { i, title ->
                                Tab(selected = tab == i, onClick = { tab = i }, text = { Text(title) })
                            }
                        }
                        Column(Modifier.padding(16.dp)) {
                            when (tab) {
                                0 -> OnboardingScreen(app.onboarding, app.voucher)
                                1 -> RecordsScreen(app.records)
                                2 -> RequestScreen(app.request)
                                3 -> GrantsScreen(app.grants)
                                else -> AuditScreen(app.audit)
                            }
                        }
                    }
                }
            }
        }
    }
}

@androidx.compose.runtime.Composable
internal fun Field(label: String, value: String) {
    Row { Text("$label: ", style = MaterialTheme.typography.labelLarge); Text(value) }
}
