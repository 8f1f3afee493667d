//! What every role shares: its keys (from the app's secret store), its verified client of the
//! consortium, numbered transactions, and k-anonymous lookups.

use crate::config::{Client, ClientConfig};
use crate::error::{EmrshareError, Result, from_net, invalid, logged};
use crate::secrets::{PartySecrets, SecretStore};
use crate::types::{LookupReport, PartyRole, Registration};
use emrshare_core::PrivateKeySet;
use emrshare_core::account::Account;
use emrshare_core::handshake::AnsweredRequests;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::tx::{SignedTransaction, TxBody};
use emrshare_core::ledger::verify::VerifiedEntry;
use emrshare_core::lookup::{LookupKey, LookupPlan, QuerySize};
use std::sync::{Arc, Mutex, MutexGuard};

/// One party's state, shared by its object's async calls (hence `Arc`).
pub(crate) struct Party {
    pub config: ClientConfig,
    pub client: Client,
    /// The party's keys and next sequence number; locked briefly, never across an await.
    account: Mutex<Account>,
    lookup_key: LookupKey,
    /// Serialises writes: a transaction is signed with the chain's next sequence number and
    /// awaited before the next one is signed.
    writes: tokio::sync::Mutex<()>,
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
        let client = config.client()?;
        let chain = client.config().genesis.chain_id.clone();
        Ok(Arc::new(Self {
            lookup_key: LookupKey::derive(&secrets.master),
            account: Mutex::new(Account::new(secrets.keys, &chain, 0)),
            config,
            client,
            writes: tokio::sync::Mutex::new(()),
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

    /// Runs `f` with the party's keys.
    /// The requests this party answered as a patient; locked briefly, never across an await.
    pub fn answered_requests(&self) -> MutexGuard<'_, AnsweredRequests> {
        self.answered_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn with_keys<T>(&self, f: impl FnOnce(&PrivateKeySet) -> T) -> T {
        let account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        f(account.keys())
    }

    /// Runs `f` with the party's account (for what needs no sequence number: blob claims,
    /// reading its own index entries).
    pub fn with_account<T>(&self, f: impl FnOnce(&Account) -> T) -> T {
        let account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        f(&account)
    }

    pub fn id(&self) -> String {
        self.with_keys(|k| k.id.to_string())
    }

    pub fn party_id(&self) -> PartyId {
        self.with_keys(|k| k.id.clone())
    }

    pub fn public_keys_json(&self) -> String {
        self.with_keys(|k| k.public().to_json())
    }

    /// Signs one transaction with the chain's next sequence number (`make` gets the account),
    /// submits it and waits until it is committed. On failure the next write asks the chain
    /// for its sequence number again, so a transaction that never committed leaves no gap.
    pub async fn commit<T>(
        &self,
        make: impl FnOnce(&mut Account) -> Result<(SignedTransaction, T)>,
    ) -> Result<T> {
        let _writing = self.writes.lock().await;
        let id = self.party_id();
        let next = self.client.next_sequence(&id).await.map_err(from_net)?;
        let (tx, extra) = {
            let mut account = self.account.lock().unwrap_or_else(|p| p.into_inner());
            account.set_next_sequence(next);
            make(&mut account)?
        };
        self.client.submit(&tx).await.map_err(from_net)?;
        self.client
            .wait_sequence(&id, tx.transaction().sequence, self.config.commit_timeout())
            .await
            .map_err(|e| match e {
                emrshare_client::NetError::NoAnswer { tried: 0, .. } => EmrshareError::Timeout,
                other => from_net(other),
            })?;
        Ok(extra)
    }

    /// Holds off other writes of this party (see [`Party::sign_next`]).
    pub async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Signs with the chain's next sequence number a transaction that a node commits itself
    /// (a blob fetch's access log). The caller holds [`Party::write_lock`] until the node has
    /// answered.
    pub async fn sign_next<T>(&self, make: impl FnOnce(&mut Account) -> T) -> Result<T> {
        let next = self
            .client
            .next_sequence(&self.party_id())
            .await
            .map_err(from_net)?;
        let mut account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        account.set_next_sequence(next);
        Ok(make(&mut account))
    }

    /// Registers this party's keys for `days` days, and waits until the registry proves it.
    pub async fn register(&self, role: PartyRole, days: u32) -> Result<Registration> {
        if days == 0 || days > 36_500 {
            return Err(invalid("a registration lasts 1 to 36500 days"));
        }
        let from = crate::now();
        let until = from + u64::from(days) * 24 * 3600;
        self.commit(|account| {
            if account.next_sequence() != 0 {
                return Err(invalid("this party has sent transactions already"));
            }
            Ok((account.register(role.into(), from, until), ()))
        })
        .await?;
        let entry = self
            .client
            .wait_registered(&self.party_id(), self.config.commit_timeout())
            .await
            .map_err(|_| EmrshareError::Timeout)?;
        Ok(Registration {
            party_id: entry.id().to_string(),
            role,
            height: entry.height(),
            valid_until: entry.entry().valid_until,
        })
    }

    /// A verified k-anonymous lookup of `target` among the registered IDs of `role`: its
    /// entry must be active now.
    pub async fn lookup(
        &self,
        target: &str,
        role: PartyRole,
    ) -> Result<(VerifiedEntry, LookupReport)> {
        let target = PartyId::new(target).map_err(crate::error::from_key_input)?;
        let directory = self.client.directory(role.into()).await.map_err(from_net)?;
        let k = self.config.k as usize;
        let size = if k == 0 || k >= directory.len() {
            QuerySize::All
        } else {
            QuerySize::K(k)
        };
        let plan = LookupPlan::new(&self.lookup_key, &target, role.into(), &directory, size)
            .map_err(crate::error::from_lookup)?;
        let outcome = self.client.lookup(&plan).await.map_err(from_net)?;
        let report = LookupReport::new(target.as_str(), role, plan.ids().len(), &outcome);
        let entry = outcome.target.ok_or(EmrshareError::NotRegistered)?;
        let registered_role: PartyRole = match role_of(&entry) {
            Some(r) => r,
            None => return Err(EmrshareError::NotRegistered),
        };
        if registered_role != role || !entry.entry().is_active(crate::now()) {
            return Err(EmrshareError::NotRegistered);
        }
        Ok((entry, report))
    }

    /// The transactions of every block up to the newest certified header, each block
    /// verified from genesis: (height, sender, body). An audit's basis.
    pub async fn verified_txs_with_sender(&self) -> Result<Vec<(u64, PartyId, TxBody)>> {
        let height = self
            .client
            .latest_header()
            .await
            .map_err(from_net)?
            .header
            .height;
        let blocks = self
            .client
            .verified_blocks(height)
            .await
            .map_err(from_net)?;
        Ok(blocks
            .into_iter()
            .flat_map(|b| {
                let height = b.header.height;
                b.txs.into_iter().map(move |tx| {
                    let t = tx.transaction();
                    (height, t.sender.clone(), t.body.clone())
                })
            })
            .collect())
    }
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
