//! What every role shares: its keys (from the app's secret store) and the client's `Party`
//! (its verified client of the consortium, numbered transactions, k-anonymous lookups).

use crate::config::{Client, ClientConfig};
use crate::error::{Result, from_client, invalid, logged};
use crate::secrets::{PartySecrets, SecretStore};
use crate::types::{LookupReport, PartyRole, Registration};
use emrshare_core::PrivateKeySet;
use emrshare_core::handshake::AnsweredRequests;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::verify::VerifiedEntry;
use std::sync::{Arc, Mutex, MutexGuard};

/// One party's state, shared by its object's async calls (hence `Arc`): the client's
/// [`emrshare_client::Party`], where every flow lives.
pub(crate) struct Party {
    pub inner: emrshare_client::Party,
    /// The requests this party (as a patient) has answered, so a replayed one is refused.
    /// In memory: after the app restarts, a request answered in the last few minutes (the
    /// time window) can be shown again; answering it leads nowhere, as the requester's
    /// handshake for it has ended.
    answered_requests: Mutex<AnsweredRequests>,
}

pub(crate) fn rsa_bits(bits: u32) -> Result<RsaBits> {
    RsaBits::from_bits(bits as usize).map_err(crate::error::from_key_input)
}

impl Party {
    fn new(config: ClientConfig, secrets: PartySecrets) -> Result<Arc<Self>> {
        let client: Client = config.client()?;
        let settings = emrshare_client::PartySettings {
            k: (config.k != 0).then_some(config.k as usize),
            commit_timeout: config.commit_timeout(),
        };
        let inner = emrshare_client::Party::new(client, secrets.keys, &secrets.master, settings);
        Ok(Arc::new(Self {
            inner,
            answered_requests: Mutex::new(AnsweredRequests::default()),
        }))
    }

    /// Fresh keys, saved in the app's store under `name` (refused if keys are there).
    pub fn create(
        config: ClientConfig,
        store: &Arc<dyn SecretStore>,
        name: &str,
        id: Option<&str>,
        bits: RsaBits,
    ) -> Result<Arc<Self>> {
        let id = id
            .map(PartyId::new)
            .transpose()
            .map_err(crate::error::from_key_input)?;
        // Check the configuration before making keys the app would have to store.
        config.client()?;
        let secrets = PartySecrets::generate(PrivateKeySet::generate(id, bits));
        secrets.save_new(store, name)?;
        Self::new(config, secrets)
    }

    pub fn restore(
        config: ClientConfig,
        store: &Arc<dyn SecretStore>,
        name: &str,
    ) -> Result<Arc<Self>> {
        Self::new(config, PartySecrets::load(store, name)?)
    }

    /// The requests this party answered as a patient; locked briefly, never across an await.
    pub fn answered_requests(&self) -> MutexGuard<'_, AnsweredRequests> {
        self.answered_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The set itself, for the client's `read_request` (which locks it briefly).
    pub fn answered_requests_lock(&self) -> &Mutex<AnsweredRequests> {
        &self.answered_requests
    }

    /// Runs `f` with the party's keys.
    pub fn with_keys<T>(&self, f: impl FnOnce(&PrivateKeySet) -> T) -> T {
        self.inner.with_keys(f)
    }

    pub fn id(&self) -> String {
        self.inner.id().to_string()
    }

    pub fn public_keys_json(&self) -> String {
        self.with_keys(|k| k.public().to_json())
    }

    /// Registration as it was before governance (issue 13) is refused by the chain now: an
    /// institution is admitted by t council members, a doctor by its hospital, a patient
    /// registers with a hospital's voucher. The client has those flows
    /// (`emrshare_client::Party::submit_admission`, `admit_doctor`, `blind_voucher_request`,
    /// `register_patient`); this SDK does not export them yet, so `register` refuses at once,
    /// saying which one the role needs, instead of sending a transaction the chain refuses.
    pub async fn register(&self, role: PartyRole, days: u32) -> Result<Registration> {
        if days == 0 || days > 36_500 {
            return Err(invalid("a registration lasts 1 to 36500 days"));
        }
        Err(invalid(match role {
            PartyRole::Patient => {
                "a patient registers with a hospital's voucher, which this SDK cannot obtain yet"
            }
            PartyRole::Doctor => {
                "a doctor is admitted by its hospital, which this SDK cannot do yet"
            }
            _ => {
                "an institution is admitted by the council's members, which this SDK cannot ask yet"
            }
        }))
    }

    /// A verified k-anonymous lookup of `target` among the registered IDs of `role`: its
    /// entry must be registered in that role and active now.
    pub async fn lookup(
        &self,
        target: &str,
        role: PartyRole,
    ) -> Result<(VerifiedEntry, LookupReport)> {
        let target = PartyId::new(target).map_err(crate::error::from_key_input)?;
        let found = self
            .inner
            .look_up(&target, role.into())
            .await
            .map_err(from_client)?;
        let report = lookup_report(&found);
        Ok((found.entry, report))
    }
}

/// What the app is shown of a lookup.
pub(crate) fn lookup_report(found: &emrshare_client::LookedUp) -> LookupReport {
    let role = role_of(&found.entry).unwrap_or(PartyRole::Patient);
    LookupReport::new(found.entry.id().as_str(), role, found.asked, &found.outcome)
}

fn role_of(entry: &VerifiedEntry) -> Option<PartyRole> {
    use emrshare_core::ledger::tx::Role;
    Some(match entry.entry().role {
        Role::Patient => PartyRole::Patient,
        Role::Doctor => PartyRole::Doctor,
        Role::Hospital => PartyRole::Hospital,
        Role::Insurer => PartyRole::Insurer,
        Role::Researcher => PartyRole::Researcher,
        Role::Node => return None,
    })
}

/// Logs a failed operation at the boundary and passes its result on.
pub(crate) fn log_result<T>(operation: &str, result: Result<T>) -> Result<T> {
    result.map_err(|e| logged(operation, e))
}

/// The members every registered institution's object shares (`DoctorSigner`, `Requester`):
/// create and restore its keys, its ID, its public keys, and its registration. One definition,
/// so the roles cannot drift; `$id` keeps each role's own name for its ID in the API.
macro_rules! institution_basics {
    ($object:ident, $what:literal, $secret_name:ident, $id:ident,
     $create_doc:literal, $register_doc:literal) => {
        #[uniffi::export]
        impl $object {
            #[doc = $create_doc]
            #[uniffi::constructor(default(rsa_bits = 3072))]
            pub fn create(
                config: crate::config::ClientConfig,
                store: std::sync::Arc<dyn crate::secrets::SecretStore>,
                $id: String,
                rsa_bits: u32,
            ) -> crate::error::Result<std::sync::Arc<Self>> {
                let bits = crate::party::rsa_bits(rsa_bits)?;
                let party = crate::party::log_result(
                    concat!("create ", $what),
                    crate::party::Party::create(config, &store, $secret_name, Some(&$id), bits),
                )?;
                Ok(std::sync::Arc::new(Self { party }))
            }

            /// The keys saved in `store` by `create`.
            #[uniffi::constructor]
            pub fn restore(
                config: crate::config::ClientConfig,
                store: std::sync::Arc<dyn crate::secrets::SecretStore>,
            ) -> crate::error::Result<std::sync::Arc<Self>> {
                let party = crate::party::log_result(
                    concat!("restore ", $what),
                    crate::party::Party::restore(config, &store, $secret_name),
                )?;
                Ok(std::sync::Arc::new(Self { party }))
            }

            /// The registered name these keys were made for.
            pub fn $id(&self) -> String {
                self.party.id()
            }

            /// The public JWK Set (signing and encryption keys) to register or hand over.
            pub fn public_keys_json(&self) -> String {
                self.party.public_keys_json()
            }

            #[doc = $register_doc]
            pub async fn register(
                &self,
                role: crate::types::PartyRole,
                valid_days: u32,
            ) -> crate::error::Result<crate::types::Registration> {
                let party = self.party.clone();
                crate::on_runtime(async move {
                    crate::party::log_result("register", party.register(role, valid_days).await)
                })
                .await
            }
        }
    };
}
pub(crate) use institution_basics;
