//! [`Party`]: what every role shares: its keys, its verified client of the consortium,
//! numbered transactions committed one at a time, and k-anonymous lookups with the role and
//! activity checks every flow needs.

use crate::error::{ClientError, Result};
use crate::transport::{HttpTransport, Transport};
use crate::{NetError, NodeClient};
use emrshare_core::account::Account;
use emrshare_core::keys::PartyId;
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::ledger::governance::{Approval, GovAction, Proposal};
use emrshare_core::ledger::tx::{Role, SignedTransaction};
use emrshare_core::ledger::verify::VerifiedEntry;
use emrshare_core::lookup::{LookupOutcome, LookupPlan, QuerySize};
use emrshare_core::record_account::RecordKeys;
use emrshare_core::voucher::{self, PendingVoucher, Voucher, VoucherKey};
use emrshare_core::{PrivateKeySet, PublicKeySet};
use std::sync::Mutex;
use std::time::Duration;

/// How a party's lookups and writes behave.
#[derive(Debug, Clone, Copy)]
pub struct PartySettings {
    /// IDs per lookup (the target among k - 1 decoys); `None` asks all registered IDs of
    /// the role.
    pub k: Option<usize>,
    /// How long a write may take to commit.
    pub commit_timeout: Duration,
}

impl Default for PartySettings {
    fn default() -> Self {
        Self {
            k: Some(10),
            commit_timeout: Duration::from_secs(30),
        }
    }
}

/// A verified lookup: the target's entry (registered in the role asked, active now), and
/// how it was verified.
#[derive(Debug, Clone)]
pub struct LookedUp {
    /// The target's registry entry, proven under a certified header.
    pub entry: VerifiedEntry,
    /// IDs of the bucket the target hid among (itself included).
    pub asked: usize,
    /// How the nodes' answers verified: headers, agreeing nodes, evidence, weak decoys.
    pub outcome: LookupOutcome,
}

/// One party of the consortium: keys, client, sequence numbers.
pub struct Party<T: Transport = HttpTransport> {
    client: NodeClient<T>,
    settings: PartySettings,
    /// The party's keys and next sequence number; locked briefly, never across an await.
    account: Mutex<Account>,
    /// Serialises writes: a transaction is signed with the chain's next sequence number and
    /// awaited before the next one is signed.
    writes: tokio::sync::Mutex<()>,
    /// Keys this party used before a rotation ([`Party::rotate_keys`]), newest first: they
    /// sign nothing any more, but open what was sealed to them (stored records, index
    /// entries).
    retired: Mutex<Vec<PrivateKeySet>>,
    /// A patient's master secret, from which each of its records' accounts derives
    /// ([`RecordKeys`]); `None` for every other role.
    master: Option<MasterSecret>,
    /// Which of the patient's records holds which blob (its own version, and the versions it
    /// shared), as far as this party has seen: saves walking the index for every grant.
    records: Mutex<std::collections::BTreeMap<emrshare_core::Hash, u64>>,
    /// Serialises the opening of record accounts (each takes the next free number).
    opening: tokio::sync::Mutex<()>,
}

/// The roles the council admits (every other role joins another way: a patient with a
/// voucher, a doctor by its hospital).
pub const INSTITUTION_ROLES: &[Role] =
    &[Role::Hospital, Role::Insurer, Role::Researcher, Role::Node];

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<T: Transport> Party<T> {
    /// A party with `keys`; its next sequence number is read from the chain before each write.
    pub fn new(client: NodeClient<T>, keys: PrivateKeySet, settings: PartySettings) -> Self {
        let chain = client.config().genesis.chain_id.clone();
        Self {
            account: Mutex::new(Account::new(keys, &chain, 0)),
            client,
            settings,
            writes: tokio::sync::Mutex::new(()),
            retired: Mutex::new(Vec::new()),
            master: None,
            records: Mutex::new(std::collections::BTreeMap::new()),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    /// The party with a patient's master secret: the one its records' accounts derive
    /// from. A patient without one can register and look up, not store or share records.
    pub fn with_master_secret(mut self, master: MasterSecret) -> Self {
        self.master = Some(master);
        self
    }

    /// Held while a record's account is found free and opened.
    pub(crate) async fn opening_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.opening.lock().await
    }

    /// The keys of this patient's `n`-th record.
    pub(crate) fn record_keys(&self, n: u64) -> Result<RecordKeys> {
        let master = self.master.as_ref().ok_or(ClientError::Invalid(
            "only a patient with its master secret keeps records on the chain",
        ))?;
        Ok(RecordKeys::derive(master, n))
    }

    /// Notes that the patient's `n`-th record holds `blob`.
    pub(crate) fn remember_record(&self, blob: emrshare_core::Hash, n: u64) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(blob, n);
    }

    /// Which record holds `blob`, if this party has seen it.
    pub(crate) fn remembered_record(&self, blob: &emrshare_core::Hash) -> Option<u64> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(blob)
            .copied()
    }

    /// The most records this party has seen, as a first guess at the next free one.
    pub(crate) fn remembered_records(&self) -> u64 {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .max()
            .map_or(0, |n| n + 1)
    }

    /// Adds keys this party used before a rotation (newest first), so that what was sealed
    /// to them still opens; they never sign.
    pub fn add_retired_keys(&self, keys: PrivateKeySet) {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(keys);
    }

    /// Runs `f` with the party's account, mutably (locked briefly, never across an await).
    pub(crate) fn with_account_mut<R>(&self, f: impl FnOnce(&mut Account) -> R) -> R {
        let mut account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut account)
    }

    /// Retires the keys `old` held (newest first): they open, never sign.
    pub(crate) fn retire(&self, old: Account) {
        let keys = old.into_keys();
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(0, keys);
    }

    /// Runs `f` with the party's current keys and its retired ones (newest first).
    pub fn with_all_keys<R>(&self, f: impl FnOnce(&PrivateKeySet, &[PrivateKeySet]) -> R) -> R {
        let account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        f(account.keys(), &retired)
    }

    /// Runs `f` with the current keys, then each retired set, until one succeeds; the
    /// current keys' error if none does.
    pub fn try_keys<R, E>(
        &self,
        f: impl Fn(&PrivateKeySet) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        self.with_all_keys(|current, retired| {
            let first = f(current);
            if first.is_ok() {
                return first;
            }
            retired
                .iter()
                .find_map(|keys| f(keys).ok())
                .map_or(first, Ok)
        })
    }

    /// The verified client of the consortium's nodes.
    pub fn client(&self) -> &NodeClient<T> {
        &self.client
    }

    /// How the party's lookups and writes behave.
    pub fn settings(&self) -> &PartySettings {
        &self.settings
    }

    /// Runs `f` with the party's keys.
    pub fn with_keys<R>(&self, f: impl FnOnce(&PrivateKeySet) -> R) -> R {
        let account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        f(account.keys())
    }

    /// Runs `f` with the party's account (for what needs no sequence number: blob claims,
    /// reading its own index entries).
    pub fn with_account<R>(&self, f: impl FnOnce(&Account) -> R) -> R {
        let account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        f(&account)
    }

    /// The party's ID.
    pub fn id(&self) -> PartyId {
        self.with_keys(|k| k.id.clone())
    }

    /// Signs one transaction with the chain's next sequence number (`make` gets the account),
    /// submits it and waits until it is committed. On failure the next write asks the chain
    /// for its sequence number again, so a transaction that never committed leaves no gap.
    pub async fn commit<R>(
        &self,
        make: impl FnOnce(&mut Account) -> Result<(SignedTransaction, R)>,
    ) -> Result<R> {
        let _writing = self.writes.lock().await;
        let id = self.id();
        let next = self.client.next_sequence(&id).await?;
        let (tx, extra) = {
            let mut account = self.account.lock().unwrap_or_else(|p| p.into_inner());
            account.set_next_sequence(next);
            make(&mut account)?
        };
        self.submit_and_wait(&tx).await?;
        Ok(extra)
    }

    /// Submits `tx` and waits until its sender's sequence number shows it committed.
    async fn submit_and_wait(&self, tx: &SignedTransaction) -> Result<()> {
        let t = tx.transaction();
        self.client.submit(tx).await?;
        self.client
            .wait_sequence(&t.sender, t.sequence, self.settings.commit_timeout)
            .await
            .map_err(|e| match e {
                NetError::NoAnswer { tried: 0, .. } => ClientError::Timeout,
                other => other.into(),
            })
    }

    /// Signs with `sender`'s next sequence number on chain (a record's account, a grant's
    /// key: accounts that are not this party's registered one), submits and waits until it
    /// is committed; writes of this party stay one at a time.
    pub async fn commit_as<R>(
        &self,
        sender: &PartyId,
        make: impl FnOnce(u64) -> Result<(SignedTransaction, R)>,
    ) -> Result<R> {
        let _writing = self.writes.lock().await;
        let next = self.client.next_sequence(sender).await?;
        let (tx, extra) = make(next)?;
        self.submit_and_wait(&tx).await?;
        Ok(extra)
    }

    /// Holds off other writes of this party (see [`Party::sign_next`]).
    pub async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Signs with the chain's next sequence number a transaction that a node commits itself
    /// (a blob fetch's access log). The caller holds [`Party::write_lock`] until the node has
    /// answered, and waits for the commit with [`Party::wait_committed`].
    pub async fn sign_next<R>(&self, make: impl FnOnce(&mut Account) -> R) -> Result<R> {
        let next = self.client.next_sequence(&self.id()).await?;
        let mut account = self.account.lock().unwrap_or_else(|p| p.into_inner());
        account.set_next_sequence(next);
        Ok(make(&mut account))
    }

    /// Waits until this party's transaction with `sequence` is committed.
    pub async fn wait_committed(&self, sequence: u64) -> Result<()> {
        self.client
            .wait_sequence(&self.id(), sequence, self.settings.commit_timeout)
            .await
            .map_err(|_| ClientError::Timeout)
    }

    /// The proposal that admits this party as an institution of `role` (hospital, insurer,
    /// researcher or node operator) from `valid_from` to `valid_until` (Unix seconds), for
    /// t council members to approve ([`Proposal::approve`]) before `expires_at`; a hospital
    /// names the voucher key its patients register with.
    pub fn admission(
        &self,
        role: Role,
        valid_from: u64,
        valid_until: u64,
        voucher_key: Option<&VoucherKey>,
        expires_at: u64,
    ) -> Result<Proposal> {
        if !INSTITUTION_ROLES.contains(&role) {
            return Err(ClientError::Invalid(
                "the council admits institutions: a hospital, insurer, researcher or node operator",
            ));
        }
        if valid_from >= valid_until {
            return Err(ClientError::Invalid("an admission's validity is empty"));
        }
        if voucher_key.is_some() && role != Role::Hospital {
            return Err(ClientError::Invalid("only a hospital has a voucher key"));
        }
        Ok(self.with_account(|account| {
            account.admission_proposal(role, valid_from, valid_until, voucher_key, expires_at)
        }))
    }

    /// Sends this party's admission (its first transaction, signed with the key admitted)
    /// with the council members' `approvals`, and waits until the registry proves it. The
    /// proposal must admit this party's ID and keys ([`Party::admission`]).
    pub async fn submit_admission(
        &self,
        proposal: Proposal,
        approvals: Vec<Approval>,
    ) -> Result<VerifiedEntry> {
        let own = self.with_keys(|k| k.public());
        match &proposal.action {
            GovAction::Admit {
                id,
                signing_jwk,
                encryption_jwk,
                ..
            } if id == &own.id
                && signing_jwk == &own.signing.to_jwk(None)
                && encryption_jwk == &own.encryption.to_jwk(None) => {}
            _ => {
                return Err(ClientError::Invalid(
                    "the proposal does not admit this party's ID and keys",
                ));
            }
        }
        self.commit(|account| {
            if account.next_sequence() != 0 {
                return Err(ClientError::Invalid(
                    "this party is registered already (it has sent transactions)",
                ));
            }
            Ok((account.govern(proposal, approvals), ()))
        })
        .await?;
        self.wait_registered(&own.id).await
    }

    /// As a hospital: admits `doctor` (its ID and public keys) from `valid_from` to
    /// `valid_until` (Unix seconds), affiliated with this hospital, and waits until the
    /// registry proves the doctor's entry.
    pub async fn admit_doctor(
        &self,
        doctor: &PublicKeySet,
        valid_from: u64,
        valid_until: u64,
    ) -> Result<VerifiedEntry> {
        if valid_from >= valid_until {
            return Err(ClientError::Invalid("an admission's validity is empty"));
        }
        self.commit(|account| Ok((account.admit_doctor(doctor, valid_from, valid_until), ())))
            .await?;
        self.wait_registered(&doctor.id).await
    }

    /// Step 1 of a registration voucher (RFC 9474, [`emrshare_core::voucher`]): looks
    /// `hospital` up among hospitals and blinds this party's ID under its registered voucher
    /// key. The blinded message goes to the hospital, which signs it
    /// ([`VoucherSecretKey::sign_blind`](emrshare_core::voucher::VoucherSecretKey::sign_blind));
    /// [`PendingVoucher::finalize`] then makes the voucher for [`Party::register_patient`].
    pub async fn blind_voucher_request(
        &self,
        hospital: &PartyId,
    ) -> Result<(PendingVoucher, Vec<u8>)> {
        let found = self.look_up(hospital, Role::Hospital).await?;
        let key = found.entry.voucher_key().ok_or(ClientError::Invalid(
            "the hospital publishes no voucher key",
        ))?;
        let chain = self.client.config().genesis.chain_id.clone();
        Ok(voucher::blind(&key, &chain, &self.id())?)
    }

    /// Registers this patient (its ID the thumbprint of its signing key) from `valid_from`
    /// to `valid_until` (Unix seconds) with a one-use `voucher` of an admitted hospital, and
    /// waits until the registry proves it.
    pub async fn register_patient(
        &self,
        voucher: Voucher,
        valid_from: u64,
        valid_until: u64,
    ) -> Result<VerifiedEntry> {
        if valid_from >= valid_until {
            return Err(ClientError::Invalid("a registration's validity is empty"));
        }
        if !self.with_keys(|k| k.public().is_self_certifying()) {
            return Err(ClientError::Invalid(
                "a patient's ID must be its signing key's thumbprint",
            ));
        }
        self.commit(|account| {
            if account.next_sequence() != 0 {
                return Err(ClientError::Invalid(
                    "this party is registered already (it has sent transactions)",
                ));
            }
            Ok((
                account.register_patient(voucher, valid_from, valid_until),
                (),
            ))
        })
        .await?;
        self.wait_registered(&self.id()).await
    }

    /// Waits until the registry proves `id`'s entry (within the commit timeout).
    async fn wait_registered(&self, id: &PartyId) -> Result<VerifiedEntry> {
        self.client
            .wait_registered(id, self.settings.commit_timeout)
            .await
            .map_err(|_| ClientError::Timeout)
    }

    /// A verified k-anonymous lookup of `target` among the registered IDs of `role`: the
    /// entry must be registered in that role and active now. With fewer registered IDs than
    /// k the lookup is refused ([`ClientError::WeakLookup`]), never silently made smaller.
    pub async fn look_up(&self, target: &PartyId, role: Role) -> Result<LookedUp> {
        let found = self.look_up_entry(target, role).await?;
        if !found.entry.entry().is_active(now()) {
            return Err(ClientError::NotRegistered {
                id: target.clone(),
                role,
            });
        }
        Ok(found)
    }

    /// [`Party::look_up`] of an entry active or not: a record issuer's (and its hospital's),
    /// whose records issued before a suspension or expulsion stay valid.
    pub(crate) async fn look_up_entry(&self, target: &PartyId, role: Role) -> Result<LookedUp> {
        let registered = self.client.directory_size(role).await?;
        let size = match self.settings.k {
            None => QuerySize::All,
            Some(k) if k as u64 > registered => {
                return Err(ClientError::WeakLookup {
                    registered: usize::try_from(registered).unwrap_or(usize::MAX),
                    wanted: k,
                });
            }
            Some(k) => QuerySize::K(k),
        };
        let plan = LookupPlan::new(target, role, registered, size)?;
        let outcome = self.client.lookup(&plan).await?;
        let not_registered = || ClientError::NotRegistered {
            id: target.clone(),
            role,
        };
        let entry = outcome.target.clone().ok_or_else(not_registered)?;
        if entry.entry().role != role {
            return Err(not_registered());
        }
        Ok(LookedUp {
            entry,
            asked: outcome.bucket.len(),
            outcome,
        })
    }
}
