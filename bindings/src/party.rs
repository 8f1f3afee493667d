//! What every role shares: its keys (from the app's secret store) and the client's `Party`
//! (its verified client of the consortium, numbered transactions, k-anonymous lookups).

use crate::config::{Client, ClientConfig};
use crate::error::{EmrshareError, Result, from_client, invalid, logged};
use crate::secrets::{PartySecrets, SecretStore};
use crate::types::{LookupReport, PartyRole, Registration};
use emrshare_core::handshake::AnsweredRequests;
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::governance::{Approval, Proposal, Status};
use emrshare_core::ledger::tx::Role;
use emrshare_core::ledger::verify::VerifiedEntry;
use emrshare_core::voucher::VoucherSecretKey;
use emrshare_core::{PrivateKeySet, PublicKeySet};
use std::sync::{Arc, Mutex, MutexGuard};

/// One party's state, shared by its object's async calls (hence `Arc`): the client's
/// [`emrshare_client::Party`], where every flow lives, and where its secrets are kept.
pub(crate) struct Party {
    pub inner: emrshare_client::Party,
    /// The requests this party (as a patient) has answered, so a replayed one is refused.
    /// In memory: after the app restarts, a request answered in the last few minutes (the
    /// time window) can be shown again; answering it leads nowhere, as the requester's
    /// handshake for it has ended.
    answered_requests: Mutex<AnsweredRequests>,
    /// The app's secret store and the name the party's secrets have in it (a rotation saves
    /// the new keys there; a hospital keeps its voucher key beside them).
    pub store: Arc<dyn SecretStore>,
    pub name: String,
    /// The master secret, to save the secrets again after a rotation.
    master: MasterSecret,
}

/// How long a council member may approve an admission request: days.
pub(crate) const PROPOSAL_DAYS: u64 = 7;

fn internal<E>(_: E) -> EmrshareError {
    EmrshareError::Internal {
        reason: "a governance step failed".into(),
    }
}

pub(crate) fn rsa_bits(bits: u32) -> Result<RsaBits> {
    RsaBits::from_bits(bits as usize).map_err(crate::error::from_key_input)
}

/// Days from now as Unix seconds, for a validity of 1 to 36500 days.
pub(crate) fn validity(days: u32) -> Result<(u64, u64)> {
    if days == 0 || days > 36_500 {
        return Err(invalid("a registration lasts 1 to 36500 days"));
    }
    let now = crate::now();
    Ok((now, now + u64::from(days) * 24 * 3600))
}

/// What the app is shown of a proven registry entry.
pub(crate) fn registration(entry: &VerifiedEntry) -> Registration {
    Registration {
        party_id: entry.id().to_string(),
        role: role_of(entry).unwrap_or(PartyRole::Patient),
        height: entry.height(),
        valid_until: entry.entry().valid_until,
    }
}

impl Party {
    fn new(
        config: ClientConfig,
        store: &Arc<dyn SecretStore>,
        name: &str,
        secrets: PartySecrets,
    ) -> Result<Arc<Self>> {
        let client: Client = config.client()?;
        let settings = emrshare_client::PartySettings {
            k: (config.k != 0).then_some(config.k as usize),
            commit_timeout: config.commit_timeout(),
        };
        let PartySecrets {
            keys,
            master,
            retired,
        } = secrets;
        let patient = keys.public().is_self_certifying();
        let inner = emrshare_client::Party::new(client, keys, settings);
        // A patient's records' accounts derive from its master secret.
        let inner = if patient {
            inner.with_master_secret(MasterSecret::from_bytes(*master.to_bytes()))
        } else {
            inner
        };
        for old in retired {
            inner.add_retired_keys(old);
        }
        Ok(Arc::new(Self {
            inner,
            answered_requests: Mutex::new(AnsweredRequests::default()),
            store: store.clone(),
            name: name.into(),
            master,
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
        Self::new(config, store, name, secrets)
    }

    pub fn restore(
        config: ClientConfig,
        store: &Arc<dyn SecretStore>,
        name: &str,
    ) -> Result<Arc<Self>> {
        Self::new(config, store, name, PartySecrets::load(store, name)?)
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

    /// Rotates the party's keys to fresh ones of `bits` (same ID): the new keys are saved
    /// first under `<name>.rotating` (so a crash mid-way loses nothing), the `UpdateKeys`
    /// signed with the current key is committed, then the store holds the new keys as
    /// current and the old ones as retired (they still open what was sealed to them), and
    /// the pending copy is removed. If the chain refused the rotation, the pending copy is
    /// removed and the party keeps its keys.
    pub async fn rotate_keys(&self, bits: RsaBits) -> Result<Registration> {
        let id = self.inner.id();
        let fresh = PrivateKeySet::generate(Some(id), bits);
        let pending = format!("{}.rotating", self.name);
        // The pending copy: the new keys, then every key held now (current first).
        let pending_bytes = self.inner.with_all_keys(|current, retired| {
            let held = std::iter::once(current).chain(retired);
            crate::secrets::encode(&self.master, std::iter::once(&fresh).chain(held))
        });
        PartySecrets::save(&self.store, &pending, pending_bytes)?;
        match self.inner.rotate_keys(fresh).await {
            Ok(entry) => {
                let bytes = self.inner.with_all_keys(|current, retired| {
                    crate::secrets::encode(&self.master, std::iter::once(current).chain(retired))
                });
                PartySecrets::save(&self.store, &self.name, bytes)?;
                self.store.delete(pending)?;
                Ok(registration(&entry))
            }
            Err(e @ emrshare_client::ClientError::Timeout) => {
                // Perhaps committed later: the pending copy stays for the app to recover.
                Err(from_client(e))
            }
            Err(e) => {
                self.store.delete(pending)?;
                Err(from_client(e))
            }
        }
    }

    /// The name of a hospital's voucher key in the app's store: beside its keys.
    fn voucher_key_name(&self) -> String {
        format!("{}.voucher", self.name)
    }

    /// The hospital's voucher key (RFC 9474) from the app's store, if it made one.
    fn voucher_key(&self) -> Result<Option<VoucherSecretKey>> {
        let Some(der) = self.store.load(self.voucher_key_name())? else {
            return Ok(None);
        };
        let der = zeroize::Zeroizing::new(der);
        VoucherSecretKey::from_pkcs8(&der)
            .map(Some)
            .map_err(|_| EmrshareError::SecretStore {
                reason: "the stored voucher key is not a valid one".into(),
            })
    }

    /// As an institution: its admission as `role` (hospital, insurer or researcher) for
    /// `days`, the proposal (JSON) to hand to the council's members, valid for approval
    /// [`PROPOSAL_DAYS`] days. A hospital's names its voucher key, made now (or the one made
    /// before) and kept in the app's store beside its keys.
    pub fn admission_request(&self, role: PartyRole, days: u32) -> Result<String> {
        let role: Role = role.into();
        if !emrshare_client::party::INSTITUTION_ROLES.contains(&role) {
            return Err(invalid(
                "the council admits a hospital, insurer or researcher; a doctor is admitted by its hospital, a patient registers with a voucher",
            ));
        }
        let (from, until) = validity(days)?;
        let vouchers = if role == Role::Hospital {
            let secret = match self.voucher_key()? {
                Some(secret) => secret,
                None => {
                    let secret = VoucherSecretKey::generate(2048).map_err(internal)?;
                    let der = secret.to_pkcs8().map_err(internal)?;
                    self.store.save(self.voucher_key_name(), der.to_vec())?;
                    secret
                }
            };
            Some(secret.public().map_err(internal)?)
        } else {
            None
        };
        let expires = crate::now() + PROPOSAL_DAYS * 24 * 3600;
        let proposal = self
            .inner
            .admission(role, from, until, vouchers.as_ref(), expires)
            .map_err(from_client)?;
        serde_json::to_string(&proposal).map_err(internal)
    }

    /// Sends this institution's admission with the council members' approvals (JSON, from
    /// [`crate::approve_proposal`]); returns the registration once proven.
    pub async fn submit_admission(
        &self,
        proposal: &str,
        approvals: &[String],
    ) -> Result<Registration> {
        let proposal: Proposal = emrshare_core::strict_json::parse(proposal.as_bytes())
            .map_err(|_| invalid("not a governance proposal"))?;
        let approvals = approvals
            .iter()
            .map(|a| {
                emrshare_core::strict_json::parse::<Approval>(a.as_bytes())
                    .map_err(|_| invalid("not a council member's approval"))
            })
            .collect::<Result<Vec<_>>>()?;
        let entry = self
            .inner
            .submit_admission(proposal, approvals)
            .await
            .map_err(from_client)?;
        Ok(registration(&entry))
    }

    /// As a hospital: admits the doctor whose public JWK Set is `doctor` for `days`.
    pub async fn admit_doctor(&self, doctor: &str, days: u32) -> Result<Registration> {
        let doctor =
            PublicKeySet::from_json(doctor.as_bytes()).map_err(crate::error::from_key_input)?;
        let (from, until) = validity(days)?;
        let entry = self
            .inner
            .admit_doctor(&doctor, from, until)
            .await
            .map_err(from_client)?;
        Ok(registration(&entry))
    }

    /// As a hospital: expels one of its doctors (final; its records issued before stay
    /// valid).
    pub async fn expel_doctor(&self, doctor: &str) -> Result<()> {
        let doctor = PartyId::new(doctor).map_err(crate::error::from_key_input)?;
        self.inner
            .set_doctor_status(&doctor, Status::Expelled)
            .await
            .map_err(from_client)?;
        Ok(())
    }

    /// As a hospital: signs a patient's blinded voucher request (base64url) with its voucher
    /// key; returns the blind signature (base64url). It learns nothing of the patient's ID.
    pub fn sign_voucher_request(&self, blinded: &str) -> Result<String> {
        let secret = self.voucher_key()?.ok_or_else(|| {
            invalid(
                "this party has no voucher key: only a hospital admitted with one signs vouchers",
            )
        })?;
        let blinded = emrshare_core::b64::decode(blinded)
            .map_err(|_| invalid("the blinded request is not base64url"))?;
        let signature = secret
            .sign_blind(&blinded)
            .map_err(|_| invalid("the blinded request does not fit this voucher key"))?;
        Ok(emrshare_core::b64::encode(&signature))
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
/// create and restore its keys, its ID, its public keys, its admission by the council, and key
/// rotation. One definition,
/// so the roles cannot drift; `$id` keeps each role's own name for its ID in the API.
macro_rules! institution_basics {
    ($object:ident, $what:literal, $secret_name:ident, $id:ident,
     $create_doc:literal) => {
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

            /// Its admission as `role` (hospital, insurer or researcher) for `valid_days`: the
            /// proposal (JSON) to hand to the council's members, who approve it
            /// ([`crate::approve_proposal`]) within 7 days. For a hospital, a voucher key (with
            /// which its patients register) is made and kept in `store` beside its keys, and
            /// the proposal publishes its public half.
            pub fn admission_request(
                &self,
                role: crate::types::PartyRole,
                valid_days: u32,
            ) -> crate::error::Result<String> {
                crate::party::log_result(
                    "admission request",
                    self.party.admission_request(role, valid_days),
                )
            }

            /// Sends its admission (`admission_request`'s proposal) with at least t council
            /// members' approvals; returns the registration once the registry proves it.
            /// Fewer approvals, approvals of another proposal or by non-members: refused.
            pub async fn submit_admission(
                &self,
                proposal: String,
                approvals: Vec<String>,
            ) -> crate::error::Result<crate::types::Registration> {
                let party = self.party.clone();
                crate::on_runtime(async move {
                    crate::party::log_result(
                        "submit admission",
                        party.submit_admission(&proposal, &approvals).await,
                    )
                })
                .await
            }

            /// Rotates its keys to fresh ones (same ID; RSA of `rsa_bits`): an update signed
            /// with the current key, committed; the store then holds the new keys, and the old
            /// ones only to open what was sealed to them. Records it signed before stay
            /// valid (checked against the key in force when they were issued).
            #[uniffi::method(default(rsa_bits = 3072))]
            pub async fn rotate_keys(
                &self,
                rsa_bits: u32,
            ) -> crate::error::Result<crate::types::Registration> {
                let party = self.party.clone();
                crate::on_runtime(async move {
                    let bits = crate::party::rsa_bits(rsa_bits)?;
                    crate::party::log_result("rotate keys", party.rotate_keys(bits).await)
                })
                .await
            }
        }
    };
}
pub(crate) use institution_basics;
