//! The ledger state machine: applies signed transactions to the authenticated state,
//! deterministically, so every node that applies the same blocks has the same state root.
//!
//! What the state holds (each entry is a value in the [`StateTree`], so each has membership
//! and non-membership proofs under a certified header):
//! - `registry/<id>`: the party's registry entry ([`RegistryEntry`]: role, a doctor's
//!   affiliation, validity, key history, status history, a hospital's voucher key); never
//!   deleted, so an expulsion is proven by a lookup;
//! - `governance/council`: the council that approves governance actions (members, threshold;
//!   genesis names the first, see [`governance`](super::governance));
//! - `governance/used/<proposal id>`: proposal IDs already applied (replay protection);
//! - `voucher/spent/<hash>`: patients' registration vouchers already used;
//! - `sequence/<id>`: the last sequence number used by the sender (replay protection);
//! - `record/<record id>`: a record's account ([`RecordEntry`]: its key, its sealed index
//!   entry, how many grants and logs it has), opened by the record's own key; nothing in it
//!   names the patient;
//! - `grant/<grant id>`: a grant as a capability ([`GrantEntry`]: its record's account, blob,
//!   the commitment to its key, actions, expiry, sealed details, revocation);
//! - `log/<record id>/<n>`: the record's n-th access log ([`LogEntry`], details sealed);
//! - `records/issuers`: the consortium nodes' record voucher keys (from genesis);
//! - `voucher/spent/<hash>`: registration and record vouchers already used;
//! - `consensus/members`: the consortium members with their consensus keys and credit
//!   scores (see [`dpos`](super::dpos));
//! - `evidence/<accused>/<height>/<round>/<step>`: equivocation evidence already punished.
//!
//! Who may register: a patient itself, with a voucher of an admitted hospital
//! ([`crate::voucher`]); an institution only through `t` council approvals; a doctor only
//! through its active hospital. See SECURITY.md section 2.11.

use super::block::{Genesis, Validator};
use super::dpos::{self, EQUIVOCATION_PENALTY, Member};
use super::governance::{Approval, Council, GovAction, MAX_PROPOSAL_LIFETIME_S, Proposal, Status};
use super::merkle::Hash;
use super::state::{StateKey, StateProof, StateTree, state_key, value_hash};
use super::tx::{Action, Role, SignedTransaction, TxBody, TxError};
use crate::keys::{Jwk, PartyId, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Why a transaction cannot be applied; the state is then unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The transaction names another chain (its chain ID, cut to 64 characters).
    #[error("transaction for chain {0:?}")]
    WrongChain(String),
    /// The sender's sequence number is not its next one.
    #[error("sequence {got} where {expected} was expected (replayed or reordered)")]
    Sequence {
        /// The sender's next sequence number in this state.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The sender (or a party the transaction names) has no registry entry.
    #[error("sender {0} is not registered")]
    UnknownSender(PartyId),
    /// The sender is revoked, or outside its validity at the block time.
    #[error("sender {0} is revoked or outside its validity period")]
    InactiveSender(PartyId),
    /// A RegisterIdentity for an ID that has an entry already.
    #[error("{0} is already registered")]
    AlreadyRegistered(PartyId),
    /// The transaction breaks a rule of the state machine (which one, fixed text).
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// A RevokeGrant or AccessLog names a grant that does not exist.
    #[error("unknown grant")]
    UnknownGrant,
    /// Misbehaviour evidence that does not prove an unpunished equivocation (why, fixed text).
    #[error("misbehaviour evidence refused: {0}")]
    Evidence(&'static str),
    /// A governance action the council's rules refuse (why, fixed text).
    #[error("governance action refused: {0}")]
    Governance(&'static str),
    /// A patient registration whose voucher is missing, invalid or spent (why, fixed text).
    #[error("registration voucher refused: {0}")]
    Voucher(&'static str),
    /// A record's account opened with a voucher that is invalid or spent (why, fixed text).
    #[error("record voucher refused: {0}")]
    RecordVoucher(&'static str),
    /// The transaction is malformed, or its signature or a key it carries is invalid.
    #[error(transparent)]
    Tx(#[from] TxError),
}

/// Transactions whose signature was checked, and under which key: a node checks each
/// signature once, not at admission, block building, audit and application each.
pub trait SignatureCache {
    /// Whether the transaction `tx_id` was verified under `key`.
    fn is_verified(&self, tx_id: &Hash, key: &VerifyingKey) -> bool;
    /// Notes that the transaction `tx_id` verified under `key`.
    fn record(&self, tx_id: &Hash, key: &VerifyingKey);
}

/// Checks every signature.
pub struct NoSignatureCache;

impl SignatureCache for NoSignatureCache {
    fn is_verified(&self, _: &Hash, _: &VerifyingKey) -> bool {
        false
    }

    fn record(&self, _: &Hash, _: &VerifyingKey) {}
}

/// A key a party had, and from when: the height and block time of the transaction that
/// registered or rotated it. It was in force until the next key's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEpoch {
    /// The public ES256 key that verifies the party's signatures.
    pub signing_jwk: Jwk,
    /// The public RSA-OAEP-256 key that records and keys are sealed to.
    pub encryption_jwk: Jwk,
    /// The height of the block that registered the key.
    pub height: u64,
    /// The block time (Unix seconds) from which the key was in force.
    pub time: u64,
}

/// A change of a registry entry's status, from the block at `height` (block time `time`) on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// The status from then on.
    pub status: Status,
    /// The height of the block that committed the change.
    pub height: u64,
    /// That block's time (Unix seconds).
    pub time: u64,
}

/// A party's entry in the identity registry: its role, its doctor's affiliation, its
/// validity, every key it has had, every status it has had (the first is its admission or
/// registration), and for a hospital its voucher key. An entry is never deleted: an
/// expelled party's entry says so, with the height and time, and a lookup proves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// The party's ID.
    pub id: PartyId,
    /// What the party is.
    pub role: Role,
    /// For a doctor: the hospital that admitted it (and may suspend or expel it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affiliation: Option<PartyId>,
    /// Start of validity, Unix seconds (inclusive).
    pub valid_from: u64,
    /// End of validity, Unix seconds (exclusive).
    pub valid_until: u64,
    /// Oldest first; the last is the current key. Never empty.
    pub keys: Vec<KeyEpoch>,
    /// Oldest first; the first is the admission (`active`). Never empty.
    pub statuses: Vec<StatusChange>,
    /// For a hospital: the RSA key (RFC 9474) its patient registration vouchers verify
    /// under ([`crate::voucher::VoucherKey`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voucher_key: Option<Jwk>,
}

/// The most key rotations an entry keeps (each costs a block's worth of space in every
/// lookup of the entry): past it, a party needs a new registration.
pub const MAX_KEY_EPOCHS: usize = 32;
/// The most status changes an entry keeps (suspend / reinstate cycles).
pub const MAX_STATUS_CHANGES: usize = 32;

impl RegistryEntry {
    /// The current key.
    pub fn current_keys(&self) -> &KeyEpoch {
        self.keys.last().expect("an entry always has a key")
    }

    /// The current signing key (JWK).
    pub fn signing_jwk(&self) -> &Jwk {
        &self.current_keys().signing_jwk
    }

    /// The current encryption key (JWK).
    pub fn encryption_jwk(&self) -> &Jwk {
        &self.current_keys().encryption_jwk
    }

    /// The key in force at `time`: the last registered at or before it (`None` before the
    /// first). A signature made at `time` is checked against it.
    pub fn keys_at(&self, time: u64) -> Option<&KeyEpoch> {
        self.keys.iter().rev().find(|k| k.time <= time)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.statuses
            .last()
            .map_or(Status::Revoked, |change| change.status)
    }

    /// The status at `time` (`None` before the admission).
    pub fn status_at(&self, time: u64) -> Option<Status> {
        self.statuses
            .iter()
            .rev()
            .find(|c| c.time <= time)
            .map(|c| c.status)
    }

    /// The admission (or registration): its height and time.
    pub fn admitted(&self) -> &StatusChange {
        self.statuses.first().expect("an entry always has a status")
    }

    /// When the entry ended for good (expelled or revoked), if it did.
    pub fn ended(&self) -> Option<&StatusChange> {
        self.statuses.iter().find(|c| c.status.is_final())
    }

    /// Whether the party was admitted, within its validity period, and active (neither
    /// suspended nor expelled nor revoked) at `time`.
    pub fn is_active_at(&self, time: u64) -> bool {
        self.valid_from <= time
            && time < self.valid_until
            && self.status_at(time) == Some(Status::Active)
    }

    /// [`is_active_at`](Self::is_active_at) `now`.
    pub fn is_active(&self, now: u64) -> bool {
        self.is_active_at(now)
    }

    /// The form the chain guarantees: keys and statuses present, the first status an
    /// admission, a doctor (and only a doctor) affiliated, a voucher key only for a
    /// hospital, and a patient's ID the thumbprint of its first signing key.
    pub fn is_well_formed(&self) -> bool {
        let (Some(first_key), Some(first_status)) = (self.keys.first(), self.statuses.first())
        else {
            return false;
        };
        first_status.status == Status::Active
            && (self.role == Role::Doctor) == self.affiliation.is_some()
            && (self.role == Role::Hospital || self.voucher_key.is_none())
            && (self.role != Role::Patient
                || self.id.as_str() == first_key.signing_jwk.thumbprint())
    }
}

/// A record's account (DESIGN section 6): opened by the record's own key, which then signs
/// its grants and revocations. Nothing in it names the patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordEntry {
    /// The record's public ES256 key (the account's ID is its thumbprint).
    pub signing_jwk: Jwk,
    /// The record's index entry, sealed under a secret only the patient derives.
    pub entry: String,
    /// The height of the block that opened the account.
    pub height: u64,
    /// How many grants the account made.
    pub grants: u64,
    /// How many access logs the record has (at `log/<record id>/0..logs`).
    pub logs: u64,
}

/// The most grants one record's account makes (each shares a version of the record).
pub const MAX_GRANTS_PER_RECORD: u64 = 1024;

/// A grant as a capability (BPDS data sharing, DESIGN section 6): what the chain enforces
/// (blob, key commitment, actions, expiry, revocation) in clear; who the grantee is and
/// which parts it gets only in `details`, sealed to the grantee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantEntry {
    /// The record's account that granted access (the sender of the Grant).
    pub record: PartyId,
    /// The version of the record shared: its blob address.
    pub blob: Hash,
    /// SHA-256 of the thumbprint of the key that signs accesses under the grant.
    pub grant_key: Hash,
    /// What the grant allows.
    pub actions: Vec<Action>,
    /// Last time the grant allows an access, Unix seconds (inclusive).
    pub not_after: u64,
    /// The details, sealed to the grantee (a compact JWE without `kid`).
    pub details: String,
    /// The block time from which the grant is revoked, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

impl GrantEntry {
    /// Whether the grant lets its key holder do `action` at time `now`.
    pub fn allows(&self, action: Action, now: u64) -> bool {
        self.revoked_at.is_none() && now <= self.not_after && self.actions.contains(&action)
    }

    /// Whether the grant covered `action` at time `at` (revoked after it, or not at all).
    pub fn covered(&self, action: Action, at: u64) -> bool {
        self.revoked_at.is_none_or(|revoked| at <= revoked)
            && at <= self.not_after
            && self.actions.contains(&action)
    }

    /// Whether `key` is the grant's key (its thumbprint hashes to the commitment).
    pub fn is_key(&self, key_thumbprint: &str) -> bool {
        Hash::sha256(key_thumbprint.as_bytes()) == self.grant_key
    }
}

/// One access to a record, at `log/<record id>/<n>`: in clear only the grant it was made
/// under, the action and the time; who accessed it and why are sealed to the patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// The grant the access was made under (none: a handshake the patient logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// What the accessor did.
    pub action: Action,
    /// When the access happened, as logged (Unix seconds).
    pub at: u64,
    /// The height of the block that committed the log.
    pub height: u64,
    /// The sealed [`LogDetails`](crate::account::LogDetails).
    pub details: String,
}

/// The state: the authenticated map, plus the values it commits to, plus each role's
/// directory (derived from the registry entries). All are persistent structures: a copy (to
/// check a transaction or a block) is O(1) and shares everything it does not change.
#[derive(Debug, Clone, Default)]
pub struct LedgerState {
    tree: StateTree,
    values: imbl::OrdMap<StateKey, std::sync::Arc<Vec<u8>>>,
    directories: imbl::OrdMap<Role, Directory>,
}

/// A role's directory (DESIGN section 8): an authenticated tree of its registry entries keyed
/// by [`directory_key`] (SHA-256 of the ID), whose root and size the state commits to in a
/// [`DirectoryHead`], so a lookup can ask for a whole bucket of IDs sharing a key prefix and
/// check that it got every one; and the IDs by key, to list a bucket.
#[derive(Debug, Clone, Default)]
struct Directory {
    tree: StateTree,
    ids: imbl::OrdMap<StateKey, PartyId>,
}

/// What the state commits to for a role's directory, at [`directory_head_key`]: the root of
/// its tree and how many IDs it holds (the size a lookup's bucket length is chosen from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryHead {
    /// The root of the role's directory tree.
    pub root: Hash,
    /// How many IDs of the role are registered (whatever their status).
    pub count: u64,
}

impl DirectoryHead {
    /// The head a verified state value shows: its JSON, or for a proven absence the empty
    /// directory (no ID of the role registered yet).
    pub fn from_proven(value: Option<&[u8]>) -> Result<Self, super::verify::EntryError> {
        match value {
            None => Ok(Self {
                root: super::state::EMPTY,
                count: 0,
            }),
            Some(bytes) => {
                serde_json::from_slice(bytes).map_err(|_| super::verify::EntryError::Malformed)
            }
        }
    }
}

/// One bucket of a role's directory: every ID whose [`directory_key`] starts with a prefix,
/// with its registry entry as stored, and the proof of the bucket under the head's root.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// The IDs and their registry entries' JSON, by directory key.
    pub entries: Vec<(PartyId, std::sync::Arc<Vec<u8>>)>,
    /// The bucket's proof under the directory's root.
    pub proof: super::state::PrefixProof,
}

/// Where a transaction is applied: the chain, the block height and the block time.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The chain's ID; transactions of other chains are refused.
    pub chain_id: &'a str,
    /// The height of the block being applied.
    pub height: u64,
    /// Unix seconds.
    pub now: u64,
}

impl LedgerState {
    /// An empty state (no members, no registrations).
    pub fn new() -> Self {
        Self::default()
    }

    /// The state at genesis: the consortium members with their initial credit, and as the
    /// council every validator with the default threshold (see [`Self::from_genesis`]).
    pub fn genesis(validators: &[Validator]) -> Self {
        Self::with_council(validators, &Council::of_validators(validators))
    }

    /// The state at genesis: the consortium members with their initial credit, and the
    /// council genesis names (by default every validator, `t = floor(2n/3) + 1`).
    pub fn from_genesis(genesis: &Genesis) -> Self {
        let mut state = Self::with_council(&genesis.validators.validators, &genesis.council());
        state.put(record_issuers_key(), &genesis.record_voucher_keys);
        state
    }

    /// Names the nodes' record voucher keys as a genesis would (a test chain built without
    /// a [`Genesis`]).
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) fn set_record_issuers(&mut self, keys: &[Jwk]) {
        self.put(record_issuers_key(), &keys);
    }

    /// The record voucher keys of the consortium's nodes (genesis names them).
    pub fn record_issuers(&self) -> Vec<Jwk> {
        self.get(&record_issuers_key()).unwrap_or_default()
    }

    /// The account of the record `record` (its ID: the thumbprint of the record's key).
    pub fn record(&self, record: &PartyId) -> Option<RecordEntry> {
        self.get(&record_key(record))
    }

    /// The `n`-th access log of the record `record`.
    pub fn log(&self, record: &PartyId, n: u64) -> Option<LogEntry> {
        self.get(&log_key(record, n))
    }

    fn with_council(validators: &[Validator], council: &Council) -> Self {
        let mut state = Self::new();
        let members: Vec<Member> = validators.iter().map(Member::from_genesis).collect();
        state.put(members_key(), &members);
        state.put(council_key(), council);
        state
    }

    /// The council that approves governance actions now.
    pub fn council(&self) -> Council {
        self.get(&council_key()).unwrap_or(Council {
            members: Vec::new(),
            threshold: 1,
        })
    }

    /// Whether a governance proposal ID was used.
    pub fn proposal_used(&self, proposal_id: &str) -> bool {
        self.values
            .contains_key(&state_key("governance/used", proposal_id))
    }

    /// Whether a voucher (by its [`spent_hash`](crate::voucher::Voucher::spent_hash)) was
    /// used.
    pub fn voucher_spent(&self, hash: &Hash) -> bool {
        self.values.contains_key(&voucher_key(hash))
    }

    /// The consortium members in genesis order, with their current credit.
    pub fn members(&self) -> Vec<Member> {
        self.get(&members_key()).unwrap_or_default()
    }

    /// Counts, for each of `voters` (the set that certified the previous block), whether its
    /// precommit is among `signers` (that block's certificate as the new block names it): a
    /// voter missing from [`dpos::ABSENCE_WINDOW`] certificates in a row loses
    /// [`dpos::ABSENCE_PENALTY`] credit, and its count starts again.
    pub fn record_commit(&mut self, voters: &[PartyId], signers: &[PartyId]) {
        let mut members = self.members();
        let mut changed = false;
        for member in members.iter_mut().filter(|m| voters.contains(&m.id)) {
            let missed = if signers.contains(&member.id) {
                0
            } else {
                member.missed_commits + 1
            };
            let missed = if missed >= dpos::ABSENCE_WINDOW {
                member.credit = member.credit.saturating_sub(dpos::ABSENCE_PENALTY);
                changed = true;
                0
            } else {
                missed
            };
            changed |= missed != member.missed_commits;
            member.missed_commits = missed;
        }
        if changed {
            self.put(members_key(), &members);
        }
    }

    /// Changes a member's credit; a reward never lifts it above its initial credit.
    pub fn adjust_credit(&mut self, id: &PartyId, delta: i64) {
        let mut members = self.members();
        let Some(member) = members.iter_mut().find(|m| &m.id == id) else {
            return;
        };
        let credit = member.credit.saturating_add(delta);
        member.credit = if delta > 0 {
            credit.min(member.initial_credit.max(member.credit))
        } else {
            credit
        };
        self.put(members_key(), &members);
    }

    /// The state root: the root of the [`StateTree`], what certified headers commit to.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The value at a key and the proof of it (or of its absence).
    pub fn get_with_proof(&self, key: &StateKey) -> (Option<&[u8]>, StateProof) {
        (
            self.values.get(key).map(|v| v.as_slice()),
            self.tree.prove(key),
        )
    }

    fn get<T: for<'de> Deserialize<'de>>(&self, key: &StateKey) -> Option<T> {
        self.values
            .get(key)
            .map(|bytes| serde_json::from_slice(bytes).expect("state values are valid JSON"))
    }

    fn put<T: Serialize>(&mut self, key: StateKey, value: &T) {
        let bytes = serde_json::to_vec(value).expect("state values serialize");
        self.tree.insert(key, value_hash(&bytes));
        self.values.insert(key, std::sync::Arc::new(bytes));
    }

    /// Writes a value as no transaction would (tests of clients facing a chain that broke
    /// its rules).
    #[cfg(test)]
    pub(crate) fn put_unchecked<T: Serialize>(&mut self, key: StateKey, value: &T) {
        self.put(key, value);
    }

    /// The registry entry of `id`, if it is registered (revoked or not).
    pub fn registry_entry(&self, id: &PartyId) -> Option<RegistryEntry> {
        self.get(&registry_key(id))
    }

    /// The grant with ID `grant_id`, if there is one.
    pub fn grant(&self, grant_id: &str) -> Option<GrantEntry> {
        self.get(&grant_key(grant_id))
    }

    /// The sequence number the sender's next transaction must carry.
    pub fn next_sequence(&self, sender: &PartyId) -> u64 {
        self.get::<u64>(&state_key("sequence", sender.as_str()))
            .map_or(0, |last| last + 1)
    }

    /// Every registered ID of a role, sorted.
    pub fn directory(&self, role: Role) -> Vec<PartyId> {
        let mut ids: Vec<PartyId> = self
            .directories
            .get(&role)
            .map(|d| d.ids.values().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The number of registered IDs of `role`.
    pub fn directory_len(&self, role: Role) -> usize {
        self.directories.get(&role).map_or(0, |d| d.ids.len())
    }

    /// A node's whole answer to a bucket request under `header` (whose state this is): the
    /// bucket, its proof, and the role's directory head with its state proof; `None` when the
    /// bucket holds more than `limit` IDs.
    pub fn bucket_answer(
        &self,
        header: super::block::CertifiedHeader,
        role: Role,
        prefix: &StateKey,
        bits: usize,
        limit: usize,
    ) -> Option<super::wire::BucketAnswer> {
        let bucket = self.bucket(role, prefix, bits, limit)?;
        let (value, proof) = self.get_with_proof(&directory_head_key(role));
        Some(super::wire::BucketAnswer {
            header,
            head: super::wire::ProvenValue {
                proof,
                value: value.map(|v| String::from_utf8_lossy(v).into_owned()),
            },
            proof: bucket.proof,
            entries: bucket
                .entries
                .into_iter()
                .map(|(id, value)| super::wire::BucketEntry {
                    id,
                    value: String::from_utf8_lossy(&value).into_owned(),
                })
                .collect(),
        })
    }

    /// A node's whole answer to a record's request under `header` (whose state this is):
    /// the account (or its absence) and its logs from `from` on, at most
    /// [`MAX_LOGS_PER_ANSWER`](super::wire::MAX_LOGS_PER_ANSWER), each with its proof.
    pub fn record_answer(
        &self,
        header: super::block::CertifiedHeader,
        record: &PartyId,
        from: u64,
    ) -> super::wire::RecordAnswer {
        let proven = |key: &StateKey| {
            let (value, proof) = self.get_with_proof(key);
            super::wire::ProvenValue {
                proof,
                value: value.map(|v| String::from_utf8_lossy(v).into_owned()),
            }
        };
        let logs = self.record(record).map_or(0, |r| r.logs);
        let end = logs.min(from.saturating_add(super::wire::MAX_LOGS_PER_ANSWER));
        super::wire::RecordAnswer {
            header,
            logs: (from..end).map(|n| proven(&log_key(record, n))).collect(),
            record: proven(&record_key(record)),
        }
    }

    /// The bucket of `role`'s directory under the first `bits` bits of `prefix`, or `None`
    /// when it holds more than `limit` IDs (a longer prefix must be asked for).
    pub fn bucket(
        &self,
        role: Role,
        prefix: &StateKey,
        bits: usize,
        limit: usize,
    ) -> Option<Bucket> {
        let Some(directory) = self.directories.get(&role) else {
            let proof = StateTree::new().prove_prefix(prefix, bits);
            return Some(Bucket {
                entries: Vec::new(),
                proof,
            });
        };
        let (low, high) = prefix_range(prefix, bits);
        let mut entries = Vec::new();
        for (_, id) in directory.ids.range(low..=high) {
            if entries.len() == limit {
                return None;
            }
            let value = self.values.get(&registry_key(id))?.clone();
            entries.push((id.clone(), value));
        }
        Some(Bucket {
            entries,
            proof: directory.tree.prove_prefix(prefix, bits),
        })
    }

    /// Checks and applies one transaction; on error the state is unchanged.
    pub fn apply(&mut self, signed: &SignedTransaction, ctx: Context) -> Result<(), ApplyError> {
        self.apply_cached(signed, ctx, &NoSignatureCache)
    }

    /// [`apply`](Self::apply), skipping the signature check of a transaction `cache` has seen
    /// verified under the same key.
    pub fn apply_cached(
        &mut self,
        signed: &SignedTransaction,
        ctx: Context,
        cache: &impl SignatureCache,
    ) -> Result<(), ApplyError> {
        let tx = signed.transaction();
        if tx.chain_id != ctx.chain_id {
            return Err(ApplyError::WrongChain(
                tx.chain_id.chars().take(64).collect(),
            ));
        }
        let expected = self.next_sequence(&tx.sender);
        if tx.sequence != expected {
            return Err(ApplyError::Sequence {
                expected,
                got: tx.sequence,
            });
        }
        let sender_key = self.sender_key(signed, ctx)?;
        if !cache.is_verified(&signed.id(), &sender_key) {
            signed.verify(&sender_key)?;
            cache.record(&signed.id(), &sender_key);
        }
        self.apply_body(&tx.sender, &tx.body, signed.id(), ctx, cache)?;
        self.put(state_key("sequence", tx.sender.as_str()), &tx.sequence);
        Ok(())
    }

    /// The key that must have signed `signed` in this state: the chain is ours, the sender
    /// is registered and active (or registers itself, or is a consortium member sending a
    /// consensus transaction). The checks [`apply`](Self::apply) makes before the body, bar
    /// the sequence number and the signature; the state is not touched, so a node admits
    /// transactions with this without copying the state.
    pub fn sender_key(
        &self,
        signed: &SignedTransaction,
        ctx: Context,
    ) -> Result<VerifyingKey, ApplyError> {
        let tx = signed.transaction();
        if tx.chain_id != ctx.chain_id {
            return Err(ApplyError::WrongChain(
                tx.chain_id.chars().take(64).collect(),
            ));
        }
        if let Some(key) = signed.self_signing_key()? {
            if self.registry_entry(&tx.sender).is_some() || self.record(&tx.sender).is_some() {
                return Err(ApplyError::AlreadyRegistered(tx.sender.clone()));
            }
            // A grant's key signs only its grant's logs: the state holds its commitment.
            if let TxBody::AccessLog { grant_id, .. } = &tx.body {
                let grant = grant_id
                    .as_deref()
                    .and_then(|g| self.grant(g))
                    .ok_or(ApplyError::UnknownGrant)?;
                if !grant.is_key(tx.sender.as_str()) {
                    return Err(ApplyError::NotAllowed(
                        "an access under a grant is signed by the grant's key",
                    ));
                }
            }
            return Ok(key);
        }
        // A record's account signs its grants, revocations and the accesses it allows.
        if let Some(record) = self.record(&tx.sender) {
            if !matches!(
                tx.body,
                TxBody::Grant { .. } | TxBody::RevokeGrant { .. } | TxBody::AccessLog { .. }
            ) {
                return Err(ApplyError::NotAllowed(
                    "a record's key signs only its grants, revocations and access logs",
                ));
            }
            return Ok(VerifyingKey::from_jwk(&record.signing_jwk).map_err(TxError::from)?);
        }
        if let Some(entry) = self.registry_entry(&tx.sender) {
            if !entry.is_active(ctx.now) {
                return Err(ApplyError::InactiveSender(tx.sender.clone()));
            }
            if matches!(
                tx.body,
                TxBody::Grant { .. } | TxBody::RevokeGrant { .. } | TxBody::AccessLog { .. }
            ) {
                return Err(ApplyError::NotAllowed(
                    "grants and access logs are signed by a record's or a grant's key, never a registered one",
                ));
            }
            return Ok(VerifyingKey::from_jwk(entry.signing_jwk()).map_err(TxError::from)?);
        }
        // Council members sign governance transactions with their council keys.
        if matches!(tx.body, TxBody::Govern { .. }) {
            let council = self.council();
            let member = council.member(&tx.sender).ok_or(ApplyError::NotAllowed(
                "a governance action is sent by a council member (or an admission by the admitted)",
            ))?;
            return Ok(VerifyingKey::from_jwk(&member.signing_jwk).map_err(TxError::from)?);
        }
        // Consortium members sign consensus transactions with their consensus keys.
        let member = self
            .members()
            .into_iter()
            .find(|m| m.id == tx.sender)
            .ok_or_else(|| ApplyError::UnknownSender(tx.sender.clone()))?;
        if !matches!(tx.body, TxBody::Misbehaviour { .. }) {
            return Err(ApplyError::NotAllowed(
                "a consortium member's key signs only consensus and governance transactions",
            ));
        }
        Ok(VerifyingKey::from_jwk(&member.signing_jwk).map_err(TxError::from)?)
    }

    fn apply_body(
        &mut self,
        sender: &PartyId,
        body: &TxBody,
        tx_id: Hash,
        ctx: Context,
        cache: &dyn SignatureCache,
    ) -> Result<(), ApplyError> {
        match body {
            TxBody::RegisterIdentity {
                id,
                role,
                signing_jwk,
                encryption_jwk,
                valid_from,
                valid_until,
                voucher,
            } => {
                if *role != Role::Patient {
                    return Err(ApplyError::NotAllowed(
                        "only patients register themselves: institutions are admitted by the council, doctors by their hospital",
                    ));
                }
                check_keys_and_validity(signing_jwk, encryption_jwk, *valid_from, *valid_until)?;
                self.check_registrable(id, *role, signing_jwk)?;
                let voucher = voucher.as_ref().ok_or(ApplyError::Voucher(
                    "a patient registers with a voucher from an admitted hospital",
                ))?;
                let spent = voucher
                    .spent_hash()
                    .map_err(|_| ApplyError::Voucher("malformed voucher"))?;
                if self.voucher_spent(&spent) {
                    return Err(ApplyError::Voucher("voucher already used"));
                }
                if !self.voucher_verifies(id, voucher, ctx) {
                    return Err(ApplyError::Voucher(
                        "the voucher verifies under no active hospital's voucher key",
                    ));
                }
                self.put(voucher_key(&spent), &true);
                self.insert_entry(RegistryEntry {
                    id: id.clone(),
                    role: *role,
                    affiliation: None,
                    valid_from: *valid_from,
                    valid_until: *valid_until,
                    keys: vec![epoch(signing_jwk, encryption_jwk, ctx)],
                    statuses: vec![change(Status::Active, ctx)],
                    voucher_key: None,
                });
            }
            TxBody::UpdateKeys {
                id,
                signing_jwk,
                encryption_jwk,
            } => {
                if id != sender {
                    return Err(ApplyError::NotAllowed("only a party updates its own keys"));
                }
                VerifyingKey::from_jwk(signing_jwk).map_err(TxError::from)?;
                crate::keys::EncryptionKey::from_jwk(encryption_jwk).map_err(TxError::from)?;
                let mut entry = self
                    .registry_entry(id)
                    .ok_or_else(|| ApplyError::UnknownSender(id.clone()))?;
                if entry.keys.len() >= MAX_KEY_EPOCHS {
                    return Err(ApplyError::NotAllowed(
                        "too many key rotations for one entry",
                    ));
                }
                let current = entry.current_keys();
                if &current.signing_jwk == signing_jwk && &current.encryption_jwk == encryption_jwk
                {
                    return Err(ApplyError::NotAllowed("the keys are the current ones"));
                }
                entry.keys.push(epoch(signing_jwk, encryption_jwk, ctx));
                self.put_entry(&entry);
            }
            TxBody::RevokeIdentity { id } => {
                if id != sender {
                    return Err(ApplyError::NotAllowed(
                        "only a party revokes its own identity",
                    ));
                }
                self.change_status(id, Status::Revoked, ctx)?;
            }
            TxBody::Govern {
                proposal,
                approvals,
            } => {
                self.check_approvals(proposal, approvals, ctx, (&tx_id, cache))?;
                match &proposal.action {
                    GovAction::Admit {
                        id,
                        role,
                        signing_jwk,
                        encryption_jwk,
                        valid_from,
                        valid_until,
                        voucher_key: vouchers,
                    } => {
                        if !matches!(
                            role,
                            Role::Hospital | Role::Insurer | Role::Researcher | Role::Node
                        ) {
                            return Err(ApplyError::NotAllowed(
                                "the council admits institutions (hospital, insurer, researcher, node operator)",
                            ));
                        }
                        if id != sender {
                            return Err(ApplyError::NotAllowed(
                                "an admission is sent by the admitted party",
                            ));
                        }
                        check_keys_and_validity(
                            signing_jwk,
                            encryption_jwk,
                            *valid_from,
                            *valid_until,
                        )?;
                        if let Some(jwk) = vouchers {
                            if *role != Role::Hospital {
                                return Err(ApplyError::NotAllowed(
                                    "only a hospital has a voucher key",
                                ));
                            }
                            crate::voucher::VoucherKey::from_jwk(jwk)
                                .map_err(|_| ApplyError::NotAllowed("invalid voucher key"))?;
                        }
                        self.check_registrable(id, *role, signing_jwk)?;
                        self.insert_entry(RegistryEntry {
                            id: id.clone(),
                            role: *role,
                            affiliation: None,
                            valid_from: *valid_from,
                            valid_until: *valid_until,
                            keys: vec![epoch(signing_jwk, encryption_jwk, ctx)],
                            statuses: vec![change(Status::Active, ctx)],
                            voucher_key: vouchers.clone(),
                        });
                    }
                    GovAction::SetStatus { id, status } => {
                        let entry = self
                            .registry_entry(id)
                            .ok_or(ApplyError::NotAllowed("no such party"))?;
                        if entry.role == Role::Patient {
                            return Err(ApplyError::NotAllowed(
                                "the council governs institutions and doctors, not patients",
                            ));
                        }
                        if *status == Status::Revoked {
                            return Err(ApplyError::NotAllowed(
                                "a party revokes only itself: the council expels",
                            ));
                        }
                        self.change_status(id, *status, ctx)?;
                    }
                    GovAction::SetCouncil { council } => {
                        council
                            .check()
                            .map_err(|_| ApplyError::NotAllowed("invalid council"))?;
                        self.put(council_key(), council);
                    }
                }
                self.put(state_key("governance/used", &proposal.proposal_id), &true);
            }
            TxBody::AdmitDoctor {
                id,
                signing_jwk,
                encryption_jwk,
                valid_from,
                valid_until,
            } => {
                self.check_is_hospital(sender)?;
                check_keys_and_validity(signing_jwk, encryption_jwk, *valid_from, *valid_until)?;
                self.check_registrable(id, Role::Doctor, signing_jwk)?;
                self.insert_entry(RegistryEntry {
                    id: id.clone(),
                    role: Role::Doctor,
                    affiliation: Some(sender.clone()),
                    valid_from: *valid_from,
                    valid_until: *valid_until,
                    keys: vec![epoch(signing_jwk, encryption_jwk, ctx)],
                    statuses: vec![change(Status::Active, ctx)],
                    voucher_key: None,
                });
            }
            TxBody::SetDoctorStatus { id, status } => {
                self.check_is_hospital(sender)?;
                let entry = self
                    .registry_entry(id)
                    .ok_or(ApplyError::NotAllowed("no such party"))?;
                if entry.role != Role::Doctor || entry.affiliation.as_ref() != Some(sender) {
                    return Err(ApplyError::NotAllowed(
                        "a hospital governs only its own doctors",
                    ));
                }
                if *status == Status::Revoked {
                    return Err(ApplyError::NotAllowed(
                        "a party revokes only itself: its hospital expels",
                    ));
                }
                self.change_status(id, *status, ctx)?;
            }
            TxBody::OpenRecord {
                signing_jwk,
                voucher,
                entry,
            } => {
                if entry.len() > crate::sealed::MAX_SEALED_CHARS {
                    return Err(ApplyError::NotAllowed("a sealed index entry is too long"));
                }
                let spent = voucher
                    .spent_hash()
                    .map_err(|_| ApplyError::RecordVoucher("malformed voucher"))?;
                if self.voucher_spent(&spent) {
                    return Err(ApplyError::RecordVoucher("voucher already used"));
                }
                let verifies = self.record_issuers().iter().any(|jwk| {
                    crate::voucher::VoucherKey::from_jwk(jwk)
                        .is_ok_and(|key| key.verify(ctx.chain_id, sender, voucher).is_ok())
                });
                if !verifies {
                    return Err(ApplyError::RecordVoucher(
                        "the voucher verifies under no node's record voucher key",
                    ));
                }
                self.put(voucher_key(&spent), &true);
                self.put(
                    record_key(sender),
                    &RecordEntry {
                        signing_jwk: signing_jwk.clone(),
                        entry: entry.clone(),
                        height: ctx.height,
                        grants: 0,
                        logs: 0,
                    },
                );
            }
            TxBody::Grant {
                grant_id,
                blob,
                grant_key: key_commitment,
                actions,
                not_after,
                details,
            } => {
                let key = grant_key(grant_id);
                if self.values.contains_key(&key) {
                    return Err(ApplyError::NotAllowed("grant ID already used"));
                }
                if grant_id.is_empty() || grant_id.len() > 128 {
                    return Err(ApplyError::NotAllowed("a grant ID has 1 to 128 bytes"));
                }
                if actions.is_empty() || *not_after < ctx.now {
                    return Err(ApplyError::NotAllowed(
                        "a grant allows some action until a time to come",
                    ));
                }
                let mut record = self.record(sender).ok_or(ApplyError::NotAllowed(
                    "a grant is made by a record's account",
                ))?;
                if record.grants >= MAX_GRANTS_PER_RECORD {
                    return Err(ApplyError::NotAllowed("the record has made all its grants"));
                }
                record.grants += 1;
                self.put(record_key(sender), &record);
                let grant = GrantEntry {
                    record: sender.clone(),
                    blob: *blob,
                    grant_key: *key_commitment,
                    actions: actions.clone(),
                    not_after: *not_after,
                    details: details.clone(),
                    revoked_at: None,
                };
                self.put(key, &grant);
            }
            TxBody::RevokeGrant { grant_id } => {
                let mut grant = self.grant(grant_id).ok_or(ApplyError::UnknownGrant)?;
                if &grant.record != sender {
                    return Err(ApplyError::NotAllowed(
                        "only the record's account that made a grant revokes it",
                    ));
                }
                if grant.revoked_at.is_none() {
                    grant.revoked_at = Some(ctx.now);
                    self.put(grant_key(grant_id), &grant);
                }
            }
            TxBody::AccessLog {
                grant_id,
                grant_jwk,
                action,
                at,
                details,
            } => {
                if grant_id.is_some() != grant_jwk.is_some() {
                    return Err(ApplyError::NotAllowed(
                        "an access under a grant carries the grant's key, and only then",
                    ));
                }
                if *at > ctx.now + MAX_CLOCK_SKEW_S
                    || at.saturating_add(ACCESS_LOG_WINDOW_S) < ctx.now
                {
                    return Err(ApplyError::NotAllowed(
                        "an access is logged within its window of the block time",
                    ));
                }
                if details.len() > crate::sealed::MAX_SEALED_CHARS {
                    return Err(ApplyError::NotAllowed("sealed log details are too long"));
                }
                // Under a grant (its key signed, checked in `sender_key`), the grant covered
                // the access when it happened: a revocation after the access does not erase
                // it, the read happened and stays on the record. Without one, the record's
                // own account logs an access it allowed (a handshake).
                let record = match grant_id {
                    Some(grant_id) => {
                        let grant = self.grant(grant_id).ok_or(ApplyError::UnknownGrant)?;
                        if !grant.covered(*action, *at) {
                            return Err(ApplyError::NotAllowed(
                                "the named grant does not cover this access",
                            ));
                        }
                        grant.record
                    }
                    None => sender.clone(),
                };
                let mut entry = self
                    .record(&record)
                    .ok_or(ApplyError::NotAllowed("an access is logged on a record"))?;
                self.put(
                    log_key(&record, entry.logs),
                    &LogEntry {
                        grant_id: grant_id.clone(),
                        action: *action,
                        at: *at,
                        height: ctx.height,
                        details: details.clone(),
                    },
                );
                entry.logs += 1;
                self.put(record_key(&record), &entry);
            }
            TxBody::Misbehaviour { accused, evidence } => {
                let key = self.check_equivocation(accused, evidence, ctx)?;
                self.put(key, &true);
                self.adjust_credit(accused, -EQUIVOCATION_PENALTY);
            }
            TxBody::CreditUpdate { .. } => {
                return Err(ApplyError::NotAllowed(
                    "credit changes are made by the chain itself (missed slots, evidence)",
                ));
            }
        }
        Ok(())
    }

    /// Who may hold `id` in `role`: nobody yet (an ID is never reused, even after an
    /// expulsion); a patient's ID is the RFC 7638 thumbprint of the key it registers (so
    /// nobody else can take it first), every other ID is a namespaced name
    /// (`hospital:st-marys`: it has a `:`, which no thumbprint has), and the consortium's
    /// and the council's members' IDs are theirs alone.
    fn check_registrable(
        &self,
        id: &PartyId,
        role: Role,
        signing_jwk: &Jwk,
    ) -> Result<(), ApplyError> {
        if self.registry_entry(id).is_some() {
            return Err(ApplyError::AlreadyRegistered(id.clone()));
        }
        if role == Role::Patient {
            if id.as_str() != signing_jwk.thumbprint() {
                return Err(ApplyError::NotAllowed(
                    "a patient's ID is the thumbprint of its signing key",
                ));
            }
        } else if !id.as_str().contains(':') {
            return Err(ApplyError::NotAllowed(
                "an institution's or doctor's ID is a name with a `:` (like hospital:st-marys)",
            ));
        }
        if self.members().iter().any(|m| &m.id == id) || self.council().member(id).is_some() {
            return Err(ApplyError::NotAllowed("the ID is a consortium member's"));
        }
        Ok(())
    }

    fn insert_entry(&mut self, entry: RegistryEntry) {
        self.put_entry(&entry);
    }

    /// Writes `entry` as no transaction would: for benches and tests that need a large
    /// directory without admitting each party (feature `testkit`).
    #[cfg(any(test, feature = "testkit"))]
    pub fn put_entry_unchecked(&mut self, entry: &RegistryEntry) {
        self.put_entry(entry);
    }

    /// Opens a record's account as no transaction would (no voucher): for benches that need
    /// many accounts (feature `testkit`).
    #[cfg(any(test, feature = "testkit"))]
    pub fn put_record_unchecked(&mut self, record: &PartyId, entry: &RecordEntry) {
        self.put(record_key(record), entry);
    }

    /// Writes a registry entry, and keeps its role's directory and head in step with it.
    fn put_entry(&mut self, entry: &RegistryEntry) {
        let key = registry_key(&entry.id);
        self.put(key, entry);
        let hash = self.tree.get(&key).expect("just written");
        let directory = self.directories.entry(entry.role).or_default();
        let at = directory_key(&entry.id);
        directory.tree.insert(at, hash);
        directory.ids.insert(at, entry.id.clone());
        let head = DirectoryHead {
            root: directory.tree.root(),
            count: directory.tree.len() as u64,
        };
        self.put(directory_head_key(entry.role), &head);
    }

    /// Records `status` for `id` from this block on. A final status (expelled, revoked) is
    /// never changed; a change to the current status is refused (it would prove nothing).
    fn change_status(
        &mut self,
        id: &PartyId,
        status: Status,
        ctx: Context,
    ) -> Result<(), ApplyError> {
        let mut entry = self
            .registry_entry(id)
            .ok_or_else(|| ApplyError::UnknownSender(id.clone()))?;
        if entry.status().is_final() {
            return Err(ApplyError::NotAllowed("the entry was expelled or revoked"));
        }
        if entry.status() == status {
            return Err(ApplyError::NotAllowed("the entry already has that status"));
        }
        if entry.statuses.len() >= MAX_STATUS_CHANGES && !status.is_final() {
            return Err(ApplyError::NotAllowed(
                "too many status changes for one entry: expel it or let it be",
            ));
        }
        entry.statuses.push(change(status, ctx));
        self.put_entry(&entry);
        Ok(())
    }

    /// The sender is a registered hospital (its activity was checked with its key).
    fn check_is_hospital(&self, sender: &PartyId) -> Result<(), ApplyError> {
        match self.registry_entry(sender) {
            Some(entry) if entry.role == Role::Hospital => Ok(()),
            _ => Err(ApplyError::NotAllowed(
                "only a registered, active hospital admits and governs doctors",
            )),
        }
    }

    /// Checks a proposal's approvals against the current council: the proposal is for this
    /// chain, not expired (nor valid implausibly long), its ID unused and well-formed, and
    /// at least `t` approvals are there, each a valid signature by a distinct member. Any
    /// approval by a non-member, duplicated, or not verifying refuses the transaction.
    fn check_approvals(
        &self,
        proposal: &Proposal,
        approvals: &[Approval],
        ctx: Context,
        (tx_id, cache): (&Hash, &dyn SignatureCache),
    ) -> Result<(), ApplyError> {
        // The transaction's ID covers the proposal and every approval, so a member's approval
        // in it verifies once per node (under an ID of its own: a member may send the
        // transaction too, and its signature on the transaction is another check).
        let approvals_id =
            crate::content_hash(&[b"emrshare/v1/approvals".as_slice(), tx_id].concat());
        if proposal.chain_id != ctx.chain_id {
            return Err(ApplyError::Governance("the proposal is for another chain"));
        }
        if ctx.now > proposal.expires_at {
            return Err(ApplyError::Governance("the proposal expired"));
        }
        if proposal.expires_at > ctx.now.saturating_add(MAX_PROPOSAL_LIFETIME_S) {
            return Err(ApplyError::Governance(
                "the proposal's expiry is too far in the future",
            ));
        }
        if !proposal.id_is_well_formed() {
            return Err(ApplyError::Governance("malformed proposal ID"));
        }
        if self.proposal_used(&proposal.proposal_id) {
            return Err(ApplyError::Governance("the proposal ID was used before"));
        }
        let council = self.council();
        let mut seen = std::collections::BTreeSet::new();
        for approval in approvals {
            let member = council
                .member(&approval.member)
                .ok_or(ApplyError::Governance("an approval by a non-member"))?;
            if !seen.insert(&approval.member) {
                return Err(ApplyError::Governance("two approvals by one member"));
            }
            let key = VerifyingKey::from_jwk(&member.signing_jwk).map_err(TxError::from)?;
            if !cache.is_verified(&approvals_id, &key) {
                if !approval.verifies(proposal, &key) {
                    return Err(ApplyError::Governance("an approval does not verify"));
                }
                cache.record(&approvals_id, &key);
            }
        }
        if seen.len() < council.threshold {
            return Err(ApplyError::Governance(
                "fewer approvals than the council's threshold",
            ));
        }
        Ok(())
    }

    /// Whether `voucher` for `patient` verifies under the voucher key of a hospital active
    /// at the block time (each tried in turn: the voucher names none).
    fn voucher_verifies(
        &self,
        patient: &PartyId,
        voucher: &crate::voucher::Voucher,
        ctx: Context,
    ) -> bool {
        let Some(hospitals) = self.directories.get(&Role::Hospital) else {
            return false;
        };
        hospitals.ids.values().any(|id| {
            self.registry_entry(id).is_some_and(|h| {
                h.is_active_at(ctx.now)
                    && h.voucher_key.as_ref().is_some_and(|jwk| {
                        crate::voucher::VoucherKey::from_jwk(jwk)
                            .is_ok_and(|key| key.verify(ctx.chain_id, patient, voucher).is_ok())
                    })
            })
        })
    }

    /// Checks equivocation evidence: one JSON text of [`Evidence`](super::bft::Evidence),
    /// two conflicting consensus messages (votes or proposals for one step) both signed by
    /// the accused member's consensus key, on this chain, not punished before. Returns the
    /// key that records the punishment.
    fn check_equivocation(
        &self,
        accused: &PartyId,
        evidence: &[String],
        ctx: Context,
    ) -> Result<StateKey, ApplyError> {
        use super::bft::{ConsensusSet, Evidence, PoweredValidator};
        let [text] = evidence else {
            return Err(ApplyError::Evidence("one piece of evidence expected"));
        };
        let evidence: Evidence = crate::strict_json::parse(text.as_bytes())
            .map_err(|_| ApplyError::Evidence("not consensus evidence"))?;
        // Any member's key may have signed: a member outside the voters of its height
        // cannot have its votes counted, but signing two of them is still misbehaviour.
        let members = self.members();
        let signers = ConsensusSet {
            proposers: members.len(),
            validators: members
                .into_iter()
                .map(|m| PoweredValidator {
                    id: m.id,
                    signing_jwk: m.signing_jwk,
                    power: 1,
                })
                .collect(),
        }
        .verified()
        .map_err(|_| ApplyError::Evidence("the members' keys are not a valid set"))?;
        let offender = evidence
            .verify(ctx.chain_id, &signers)
            .map_err(|_| ApplyError::Evidence("the messages do not prove an equivocation"))?;
        if &offender != accused {
            return Err(ApplyError::Evidence(
                "the evidence is against another member",
            ));
        }
        let step = match &evidence {
            Evidence::DoubleVote(a, _) => {
                let v = &a.message;
                format!("{}/{}/{:?}", v.height, v.round, v.kind)
            }
            Evidence::DoubleProposal(a, _) => {
                format!("{}/{}/proposal", a.message.height, a.message.round)
            }
        };
        let record = state_key("evidence", &format!("{accused}/{step}"));
        if self.values.contains_key(&record) {
            return Err(ApplyError::Evidence("already punished"));
        }
        Ok(record)
    }
}

/// How far ahead of the block time an access may be dated (clocks differ).
pub const MAX_CLOCK_SKEW_S: u64 = 300;
/// How long after an access its log may still commit.
pub const ACCESS_LOG_WINDOW_S: u64 = 3600;

fn members_key() -> StateKey {
    state_key("consensus", "members")
}

fn council_key() -> StateKey {
    state_key("governance", "council")
}

fn voucher_key(spent: &Hash) -> StateKey {
    state_key("voucher/spent", &spent.to_hex())
}

fn epoch(signing_jwk: &Jwk, encryption_jwk: &Jwk, ctx: Context) -> KeyEpoch {
    KeyEpoch {
        signing_jwk: signing_jwk.clone(),
        encryption_jwk: encryption_jwk.clone(),
        height: ctx.height,
        time: ctx.now,
    }
}

fn change(status: Status, ctx: Context) -> StatusChange {
    StatusChange {
        status,
        height: ctx.height,
        time: ctx.now,
    }
}

/// Both keys parse and the validity period is not empty.
fn check_keys_and_validity(
    signing_jwk: &Jwk,
    encryption_jwk: &Jwk,
    valid_from: u64,
    valid_until: u64,
) -> Result<(), ApplyError> {
    VerifyingKey::from_jwk(signing_jwk).map_err(TxError::from)?;
    crate::keys::EncryptionKey::from_jwk(encryption_jwk).map_err(TxError::from)?;
    if valid_from >= valid_until {
        return Err(ApplyError::NotAllowed("empty validity period"));
    }
    Ok(())
}

/// The state key of `id`'s registry entry.
pub fn registry_key(id: &PartyId) -> StateKey {
    state_key("registry", id.as_str())
}

/// Where `id` sits in its role's directory tree: SHA-256 of the ID, so a bucket (a key
/// prefix) is a uniform sample of the role that anyone can compute for a target.
pub fn directory_key(id: &PartyId) -> StateKey {
    Hash::sha256(id.as_str().as_bytes())
}

/// The state key of `role`'s [`DirectoryHead`].
pub fn directory_head_key(role: Role) -> StateKey {
    state_key("directory", role.as_str())
}

/// The lowest and highest keys that start with the first `bits` bits of `prefix`.
pub fn prefix_range(prefix: &StateKey, bits: usize) -> (StateKey, StateKey) {
    let (mut low, mut high) = (prefix.to_bytes(), prefix.to_bytes());
    for bit in bits.min(256)..256 {
        let mask = 0x80u8 >> (bit % 8);
        low[bit / 8] &= !mask;
        high[bit / 8] |= mask;
    }
    (Hash::new(low), Hash::new(high))
}

/// The state key of a record's account.
pub fn record_key(record: &PartyId) -> StateKey {
    state_key("record", record.as_str())
}

/// The state key of a record's `n`-th access log.
pub fn log_key(record: &PartyId, n: u64) -> StateKey {
    state_key("log", &format!("{record}/{n}"))
}

/// The state key of a grant.
pub fn grant_key(grant_id: &str) -> StateKey {
    state_key("grant", grant_id)
}

fn record_issuers_key() -> StateKey {
    state_key("records", "issuers")
}

#[cfg(test)]
mod tests {
    use super::super::bft::{ConsensusVote, Evidence, Signed, VoteKind};
    use super::super::governance::{Approval, GovAction, Proposal};
    use super::super::tx::Transaction;
    use super::*;
    use crate::keys::SigningKey;

    const CHAIN: &str = "test";
    const NOW: u64 = 1_000;

    struct Party {
        id: PartyId,
        key: SigningKey,
        next: u64,
    }

    impl Party {
        fn new(id: &str) -> Self {
            Self {
                id: PartyId::new(id).unwrap(),
                key: SigningKey::generate(),
                next: 0,
            }
        }

        /// A patient: its ID is its key's thumbprint.
        fn patient() -> Self {
            let key = SigningKey::generate();
            Self {
                id: PartyId::new(key.verifying_key().to_jwk(None).thumbprint()).unwrap(),
                key,
                next: 0,
            }
        }

        fn tx(&mut self, body: TxBody) -> SignedTransaction {
            let tx = Transaction {
                chain_id: CHAIN.into(),
                sender: self.id.clone(),
                sequence: self.next,
                body,
            };
            self.next += 1;
            tx.sign(&self.key)
        }

        /// A self-registration without a voucher (which only patients may send, with one).
        fn register(&mut self, role: Role) -> SignedTransaction {
            self.register_with(role, None)
        }

        fn register_with(
            &mut self,
            role: Role,
            voucher: Option<crate::voucher::Voucher>,
        ) -> SignedTransaction {
            let body = TxBody::RegisterIdentity {
                id: self.id.clone(),
                role,
                signing_jwk: self.key.verifying_key().to_jwk(None),
                encryption_jwk: encryption_jwk(),
                valid_from: 0,
                valid_until: 10_000,
                voucher,
            };
            self.tx(body)
        }
    }

    fn ctx(height: u64) -> Context<'static> {
        Context {
            chain_id: CHAIN,
            height,
            now: NOW,
        }
    }

    fn encryption_jwk() -> Jwk {
        crate::keys::tests::party()
            .decryption
            .encryption_key()
            .to_jwk(None)
    }

    /// The council: members node:0..=3 (their consensus keys), threshold 3; and the
    /// hospital `hospital:v` whose voucher key is `testkit::voucher_key(0)`.
    struct Gov {
        members: Vec<Party>,
        hospital: Party,
    }

    /// A genesis state with the council, and `hospital:v` admitted at height 1.
    fn world() -> (LedgerState, Gov) {
        let members: Vec<Party> = (0..4).map(|i| Party::new(&format!("node:{i}"))).collect();
        let validators: Vec<Validator> = members
            .iter()
            .map(|p| Validator {
                id: p.id.clone(),
                signing_jwk: p.key.verifying_key().to_jwk(None),
                credit: 100,
            })
            .collect();
        let mut state = LedgerState::genesis(&validators);
        assert_eq!(state.council().threshold, 3);
        let mut gov = Gov {
            members,
            hospital: Party::new("hospital:v"),
        };
        let key = crate::ledger::testkit::voucher_key(0).public().unwrap();
        let mut hospital = Party::new("hospital:v");
        std::mem::swap(&mut hospital, &mut gov.hospital);
        let admission = gov.admit_with(&mut hospital, Role::Hospital, Some(&key), NOW + 100);
        state.apply(&admission, ctx(1)).unwrap();
        gov.hospital = hospital;
        (state, gov)
    }

    impl Gov {
        fn approvals(&self, proposal: &Proposal, who: &[usize]) -> Vec<Approval> {
            who.iter()
                .map(|&i| proposal.approve(&self.members[i].id, &self.members[i].key))
                .collect()
        }

        fn admit_proposal(
            party: &Party,
            role: Role,
            voucher_key: Option<&crate::voucher::VoucherKey>,
            expires_at: u64,
        ) -> Proposal {
            Proposal::new(
                CHAIN,
                expires_at,
                GovAction::Admit {
                    id: party.id.clone(),
                    role,
                    signing_jwk: party.key.verifying_key().to_jwk(None),
                    encryption_jwk: encryption_jwk(),
                    valid_from: 0,
                    valid_until: 10_000,
                    voucher_key: voucher_key.map(|k| k.to_jwk()),
                },
            )
        }

        fn admit_with(
            &self,
            party: &mut Party,
            role: Role,
            voucher_key: Option<&crate::voucher::VoucherKey>,
            expires_at: u64,
        ) -> SignedTransaction {
            let proposal = Self::admit_proposal(party, role, voucher_key, expires_at);
            let approvals = self.approvals(&proposal, &[0, 1, 2]);
            party.tx(TxBody::Govern {
                proposal,
                approvals,
            })
        }

        /// The council admits `party` as `role` (approvals of node:0..=2), sent by `party`.
        fn admit(&self, party: &mut Party, role: Role) -> SignedTransaction {
            self.admit_with(party, role, None, NOW + 100)
        }

        /// A member sends an approved action.
        fn govern(&mut self, sender: usize, action: GovAction, who: &[usize]) -> SignedTransaction {
            let proposal = Proposal::new(CHAIN, NOW + 100, action);
            let approvals = self.approvals(&proposal, who);
            self.members[sender].tx(TxBody::Govern {
                proposal,
                approvals,
            })
        }

        fn voucher(&self, patient: &PartyId) -> crate::voucher::Voucher {
            crate::ledger::testkit::voucher(crate::ledger::testkit::voucher_key(0), CHAIN, patient)
        }

        /// A patient's registration with a voucher of `hospital:v`.
        fn register_patient(&self, party: &mut Party) -> SignedTransaction {
            let voucher = self.voucher(&party.id);
            party.register_with(Role::Patient, Some(voucher))
        }

        /// `hospital:v` admits `doctor`.
        fn admit_doctor(&mut self, doctor: &Party) -> SignedTransaction {
            self.hospital.tx(TxBody::AdmitDoctor {
                id: doctor.id.clone(),
                signing_jwk: doctor.key.verifying_key().to_jwk(None),
                encryption_jwk: encryption_jwk(),
                valid_from: 0,
                valid_until: 10_000,
            })
        }
    }

    #[test]
    fn registration_then_proofs_of_entry_and_absence() {
        let (mut state, gov) = world();
        let mut hospital = Party::new("hospital:a");
        state
            .apply(&gov.admit(&mut hospital, Role::Hospital), ctx(1))
            .unwrap();
        let entry = state.registry_entry(&hospital.id).unwrap();
        assert!(entry.is_active(NOW));
        let (value, proof) = state.get_with_proof(&registry_key(&hospital.id));
        assert_eq!(
            proof.verify(&state.root(), &registry_key(&hospital.id)),
            Ok(Some(value_hash(value.unwrap())))
        );
        let absent = registry_key(&PartyId::new("hospital:none").unwrap());
        let (none, proof) = state.get_with_proof(&absent);
        assert!(none.is_none());
        assert_eq!(proof.verify(&state.root(), &absent), Ok(None));
        assert_eq!(
            state.directory(Role::Hospital),
            vec![hospital.id.clone(), gov.hospital.id.clone()]
        );
        assert!(state.directory(Role::Insurer).is_empty());
    }

    #[test]
    fn replays_reorders_and_foreign_chains_are_refused_without_changing_state() {
        let (mut state, gov) = world();
        let mut a = Party::new("hospital:a");
        let registration = gov.admit(&mut a, Role::Hospital);
        state.apply(&registration, ctx(1)).unwrap();
        let root = state.root();
        assert!(matches!(
            state.apply(&registration, ctx(2)),
            Err(ApplyError::Sequence {
                expected: 1,
                got: 0
            })
        ));
        let _skipped = a.tx(TxBody::RevokeGrant {
            grant_id: "x".into(),
        });
        let later = a.tx(TxBody::RevokeGrant {
            grant_id: "y".into(),
        });
        assert!(matches!(
            state.apply(&later, ctx(2)),
            Err(ApplyError::Sequence {
                expected: 1,
                got: 2
            })
        ));
        let foreign = Transaction {
            chain_id: "other".into(),
            sender: a.id.clone(),
            sequence: 1,
            body: TxBody::RevokeIdentity { id: a.id.clone() },
        }
        .sign(&a.key);
        assert!(matches!(
            state.apply(&foreign, ctx(2)),
            Err(ApplyError::WrongChain(_))
        ));
        assert_eq!(state.root(), root);
    }

    #[test]
    fn signatures_must_be_by_the_registered_key() {
        let (mut state, gov) = world();
        let mut a = Party::new("hospital:a");
        state
            .apply(&gov.admit(&mut a, Role::Hospital), ctx(1))
            .unwrap();
        let impostor_key = SigningKey::generate();
        let forged = Transaction {
            chain_id: CHAIN.into(),
            sender: a.id.clone(),
            sequence: 1,
            body: TxBody::RevokeIdentity { id: a.id.clone() },
        }
        .sign(&impostor_key);
        assert!(matches!(
            state.apply(&forged, ctx(2)),
            Err(ApplyError::Tx(_))
        ));
        let mut stranger = Party::new("hospital:b");
        let unregistered = stranger.tx(TxBody::RevokeGrant {
            grant_id: "g".into(),
        });
        assert!(matches!(
            state.apply(&unregistered, ctx(2)),
            Err(ApplyError::UnknownSender(_))
        ));
        // Registering an ID twice, even with a new key, is refused.
        let mut twin = Party::new("hospital:a");
        twin.next = 1;
        assert!(matches!(
            state.apply(&gov.admit(&mut twin, Role::Hospital), ctx(2)),
            Err(ApplyError::AlreadyRegistered(_))
        ));
    }

    #[test]
    fn ids_cannot_be_squatted() {
        let (mut state, gov) = world();
        let victim = Party::patient();
        let mut squatter = Party::new(victim.id.as_str());
        assert!(matches!(
            state.apply(&gov.register_patient(&mut squatter), ctx(1)),
            Err(ApplyError::NotAllowed(_))
        ));
        squatter.next = 0;
        assert!(matches!(
            state.apply(&gov.admit(&mut squatter, Role::Insurer), ctx(1)),
            Err(ApplyError::NotAllowed(_))
        ));
        let mut named_patient = Party::new("patient-7");
        assert!(matches!(
            state.apply(&gov.register_patient(&mut named_patient), ctx(1)),
            Err(ApplyError::NotAllowed(_))
        ));
        let mut bare = Party::new("acme");
        assert!(matches!(
            state.apply(&gov.admit(&mut bare, Role::Insurer), ctx(1)),
            Err(ApplyError::NotAllowed(_))
        ));
        let mut member = Party::new("node:3");
        assert!(matches!(
            state.apply(&gov.admit(&mut member, Role::Node), ctx(1)),
            Err(ApplyError::NotAllowed(_))
        ));
        let root = state.root();
        let mut victim = victim;
        state
            .apply(&gov.register_patient(&mut victim), ctx(2))
            .unwrap();
        assert_ne!(state.root(), root);
    }

    /// An AccessLog naming a grant commits only if the grant is to the accessor, for that
    /// record and action, and the access was within the grant's time; any log commits only
    /// within its window of the block time.
    #[test]
    fn revoked_or_expired_senders_cannot_act() {
        let (mut state, gov) = world();
        let mut a = Party::new("hospital:a");
        state
            .apply(&gov.admit(&mut a, Role::Hospital), ctx(1))
            .unwrap();
        state
            .apply(&a.tx(TxBody::RevokeIdentity { id: a.id.clone() }), ctx(2))
            .unwrap();
        let after = a.tx(TxBody::RevokeGrant {
            grant_id: "g".into(),
        });
        assert!(matches!(
            state.apply(&after, ctx(3)),
            Err(ApplyError::InactiveSender(_))
        ));
        let mut b = Party::new("hospital:b");
        state
            .apply(&gov.admit(&mut b, Role::Hospital), ctx(1))
            .unwrap();
        let late = b.tx(TxBody::RevokeGrant {
            grant_id: "g".into(),
        });
        assert!(matches!(
            state.apply(
                &late,
                Context {
                    chain_id: CHAIN,
                    height: 9,
                    now: 20_000
                }
            ),
            Err(ApplyError::InactiveSender(_))
        ));
    }

    /// Two members: node:0 (the accused) and node:1 (the reporter), both at credit 100.
    fn consortium() -> (LedgerState, Party, Party) {
        let (accused, reporter) = (Party::new("node:0"), Party::new("node:1"));
        let validators: Vec<Validator> = [&accused, &reporter]
            .iter()
            .map(|p| Validator {
                id: p.id.clone(),
                signing_jwk: p.key.verifying_key().to_jwk(None),
                credit: 100,
            })
            .collect();
        (LedgerState::genesis(&validators), accused, reporter)
    }

    /// `by`'s prevote at height 4 in `round` for `value`, signed as node:0.
    fn vote(by: &Party, round: u32, value: u8) -> Box<Signed<ConsensusVote>> {
        Box::new(
            ConsensusVote {
                kind: VoteKind::Prevote,
                height: 4,
                round,
                value: Some(Hash::new([value; 32])),
                validator: PartyId::new("node:0").unwrap(),
            }
            .sign(CHAIN, &by.key),
        )
    }

    fn evidence(a: Box<Signed<ConsensusVote>>, b: Box<Signed<ConsensusVote>>) -> Vec<String> {
        vec![serde_json::to_string(&Evidence::DoubleVote(a, b)).unwrap()]
    }

    fn credit(state: &LedgerState, id: &str) -> i64 {
        state
            .members()
            .into_iter()
            .find(|m| m.id.as_str() == id)
            .unwrap()
            .credit
    }

    #[test]
    fn a_voter_missing_from_a_window_of_certificates_pays_and_one_signature_resets_the_count() {
        let (mut state, absent, present) = consortium();
        let voters = [absent.id.clone(), present.id.clone()];
        let signed_by_one = [present.id.clone()];
        let root = state.root();
        // Everyone signing changes nothing (not even the state root).
        state.record_commit(&voters, &voters);
        assert_eq!(state.root(), root);
        for _ in 1..dpos::ABSENCE_WINDOW {
            state.record_commit(&voters, &signed_by_one);
        }
        assert_eq!(credit(&state, "node:0"), 100, "not yet a whole window");
        // One certificate with its precommit starts the count again.
        state.record_commit(&voters, &voters);
        for _ in 1..dpos::ABSENCE_WINDOW {
            state.record_commit(&voters, &signed_by_one);
        }
        assert_eq!(credit(&state, "node:0"), 100);
        state.record_commit(&voters, &signed_by_one);
        assert_eq!(credit(&state, "node:0"), 100 - dpos::ABSENCE_PENALTY);
        assert_eq!(credit(&state, "node:1"), 100);
        // A member that is not a voter is never counted absent.
        for _ in 0..2 * dpos::ABSENCE_WINDOW {
            state.record_commit(&voters[1..], &signed_by_one);
        }
        assert_eq!(credit(&state, "node:0"), 100 - dpos::ABSENCE_PENALTY);
    }

    #[test]
    fn equivocation_evidence_costs_credit_once() {
        let (mut state, accused, mut reporter) = consortium();
        let evidence = evidence(vote(&accused, 0, 1), vote(&accused, 0, 2));
        let report = |reporter: &mut Party, evidence: &Vec<String>| {
            reporter.tx(TxBody::Misbehaviour {
                accused: accused.id.clone(),
                evidence: evidence.clone(),
            })
        };
        // A member signs with its consensus key without being in the registry.
        state
            .apply(&report(&mut reporter, &evidence), ctx(5))
            .unwrap();
        assert_eq!(credit(&state, "node:0"), 100 - EQUIVOCATION_PENALTY);
        assert_eq!(credit(&state, "node:1"), 100);
        let again = report(&mut reporter, &evidence);
        assert!(matches!(
            state.apply(&again, ctx(6)),
            Err(ApplyError::Evidence("already punished"))
        ));
        assert_eq!(credit(&state, "node:0"), 100 - EQUIVOCATION_PENALTY);
    }

    #[test]
    fn weak_or_forged_evidence_is_refused() {
        let (state, accused, mut reporter) = consortium();
        let stranger = Party::new("node:0");
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("nothing", vec![]),
            (
                "two texts",
                vec![evidence(vote(&accused, 0, 1), vote(&accused, 0, 2)).remove(0); 2],
            ),
            (
                "same vote twice",
                evidence(vote(&accused, 0, 1), vote(&accused, 0, 1)),
            ),
            (
                "different rounds",
                evidence(vote(&accused, 0, 1), vote(&accused, 1, 2)),
            ),
            (
                "not signed by the accused",
                evidence(vote(&accused, 0, 1), vote(&stranger, 0, 2)),
            ),
            ("not JSON", vec!["{".into()]),
        ];
        for (what, evidence) in cases {
            let tx = reporter.tx(TxBody::Misbehaviour {
                accused: accused.id.clone(),
                evidence,
            });
            reporter.next -= 1; // a refused transaction does not use up the sequence
            let mut copy = state.clone();
            assert!(
                matches!(copy.apply(&tx, ctx(5)), Err(ApplyError::Evidence(_))),
                "{what}"
            );
            assert_eq!(copy.root(), state.root(), "{what}");
        }
    }

    #[test]
    fn members_sign_only_consensus_transactions_and_credit_is_capped() {
        let (mut state, _, mut reporter) = consortium();
        let grant = reporter.tx(TxBody::RevokeGrant {
            grant_id: "g".into(),
        });
        assert!(matches!(
            state.apply(&grant, ctx(5)),
            Err(ApplyError::NotAllowed(_))
        ));
        let mut outsider = Party::new("node:9");
        let forged = outsider.tx(TxBody::Misbehaviour {
            accused: reporter.id.clone(),
            evidence: vec![],
        });
        assert!(matches!(
            state.apply(&forged, ctx(5)),
            Err(ApplyError::UnknownSender(_))
        ));
        let update = Party::new("node:1").tx(TxBody::CreditUpdate {
            node: reporter.id.clone(),
            delta: 50,
            reason: "generous".into(),
        });
        assert!(state.apply(&update, ctx(5)).is_err());
        let id = PartyId::new("node:1").unwrap();
        state.adjust_credit(&id, 5);
        assert_eq!(credit(&state, "node:1"), 100);
        state.adjust_credit(&id, -30);
        state.adjust_credit(&id, 1);
        assert_eq!(credit(&state, "node:1"), 71);
        // Unknown members are ignored: the state does not change.
        let root = state.root();
        state.adjust_credit(&PartyId::new("node:9").unwrap(), -5);
        assert_eq!(state.root(), root);
    }

    #[test]
    fn directories_hold_each_role_and_prove_every_bucket_complete() {
        let (mut state, mut gov) = world();
        let names: Vec<String> = (0..24).map(|i| format!("insurer:{i:02}")).collect();
        for name in names.iter().map(String::as_str).chain(["hospital:x"]) {
            let role = if name.starts_with("insurer") {
                Role::Insurer
            } else {
                Role::Hospital
            };
            state
                .apply(&gov.admit(&mut Party::new(name), role), ctx(1))
                .unwrap();
        }
        let mut sorted = names.clone();
        sorted.sort();
        let listed: Vec<String> = state
            .directory(Role::Insurer)
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(listed, sorted);
        assert_eq!(state.directory_len(Role::Insurer), 24);
        assert!(state.directory(Role::Researcher).is_empty());

        // The head is in the state, proven like any value.
        let head_key = directory_head_key(Role::Insurer);
        let (value, proof) = state.get_with_proof(&head_key);
        let value = value.unwrap();
        assert_eq!(
            proof.verify(&state.root(), &head_key),
            Ok(Some(value_hash(value)))
        );
        let head: DirectoryHead = serde_json::from_slice(value).unwrap();
        assert_eq!(head.count, 24);

        // Every bucket (3 bits: 8 of them) is exactly the IDs whose key has its prefix.
        let mut seen = 0;
        for first in 0u8..8 {
            let prefix = Hash::new([first << 5; 32]);
            let bucket = state.bucket(Role::Insurer, &prefix, 3, 100).unwrap();
            let entries: Vec<(StateKey, Hash)> = bucket
                .entries
                .iter()
                .map(|(id, v)| (directory_key(id), value_hash(v)))
                .collect();
            assert!(
                entries
                    .iter()
                    .all(|(k, _)| super::super::state::has_prefix(k, &prefix, 3))
            );
            bucket
                .proof
                .verify(&head.root, &prefix, 3, &entries)
                .unwrap();
            seen += entries.len();
            // Too many for the limit: no bucket.
            if !entries.is_empty() {
                assert!(
                    state
                        .bucket(Role::Insurer, &prefix, 3, entries.len() - 1)
                        .is_none()
                );
            }
        }
        assert_eq!(seen, 24);
        // A role with no directory: an empty bucket, proven under the empty root.
        let empty = state
            .bucket(Role::Researcher, &Hash::new([0; 32]), 2, 10)
            .unwrap();
        assert!(empty.entries.is_empty());
        empty
            .proof
            .verify(&super::super::state::EMPTY, &Hash::new([0; 32]), 2, &[])
            .unwrap();

        // A refused registration is not listed; a status change moves the head's root.
        let mut dup = Party::new("insurer:00");
        assert!(
            state
                .apply(&gov.admit(&mut dup, Role::Insurer), ctx(2))
                .is_err()
        );
        assert_eq!(state.directory_len(Role::Insurer), 24);
        let id = PartyId::new("insurer:03").unwrap();
        let suspend = GovAction::SetStatus {
            id,
            status: Status::Suspended,
        };
        state
            .apply(&gov.govern(0, suspend, &[0, 1, 2]), ctx(3))
            .unwrap();
        let after: DirectoryHead = state.get(&head_key).unwrap();
        assert_eq!(after.count, 24);
        assert_ne!(after.root, head.root);
    }

    #[test]
    fn prefix_ranges_span_exactly_the_prefix() {
        let prefix = Hash::new([0b1011_0110; 32]);
        let (low, high) = prefix_range(&prefix, 4);
        assert_eq!(low[0], 0b1011_0000);
        assert_eq!(high[0], 0b1011_1111);
        assert!(low[1..].iter().all(|&b| b == 0) && high[1..].iter().all(|&b| b == 0xff));
        assert_eq!(prefix_range(&prefix, 256), (prefix, prefix));
        assert_eq!(prefix_range(&prefix, 0).0, Hash::new([0; 32]));
    }

    /// Applies `tx`, expecting a refusal that leaves the state as it was; the sender's
    /// sequence number is given back.
    fn refused(
        state: &mut LedgerState,
        tx: &SignedTransaction,
        sender: &mut Party,
        height: u64,
    ) -> ApplyError {
        let root = state.root();
        let error = state.apply(tx, ctx(height)).expect_err("refused");
        assert_eq!(state.root(), root, "a refusal changed the state: {error}");
        sender.next -= 1;
        error
    }

    fn at(height: u64, now: u64) -> Context<'static> {
        Context {
            chain_id: CHAIN,
            height,
            now,
        }
    }

    /// No institution, doctor or consortium role registers itself, with or without a
    /// voucher: only a patient does.
    #[test]
    fn self_registered_institutions_are_refused() {
        let (mut state, gov) = world();
        for role in [
            Role::Hospital,
            Role::Insurer,
            Role::Researcher,
            Role::Node,
            Role::Doctor,
        ] {
            let mut party = Party::new("hospital:st-marys");
            let tx = party.register(role);
            assert!(matches!(
                refused(&mut state, &tx, &mut party, 2),
                ApplyError::NotAllowed(_)
            ));
            let voucher = gov.voucher(&party.id);
            let tx = party.register_with(role, Some(voucher));
            assert!(matches!(
                refused(&mut state, &tx, &mut party, 2),
                ApplyError::NotAllowed(_)
            ));
        }
        assert!(
            state
                .registry_entry(&PartyId::new("hospital:st-marys").unwrap())
                .is_none()
        );
    }

    /// An admission needs t approvals of distinct council members over the very proposal,
    /// unexpired, for this chain, with an unused ID; anything else is refused whole.
    #[test]
    fn admissions_need_t_distinct_valid_member_approvals() {
        let (mut state, gov) = world();
        let mut acme = Party::new("insurer:acme");
        let proposal = Gov::admit_proposal(&acme, Role::Insurer, None, NOW + 100);
        let send = |acme: &mut Party, proposal: &Proposal, approvals: Vec<Approval>| {
            acme.tx(TxBody::Govern {
                proposal: proposal.clone(),
                approvals,
            })
        };
        let outsider = Party::new("node:9");
        let impostor = Party::new("node:2"); // a member's ID, another key
        let cases: Vec<(&str, Proposal, Vec<Approval>)> = vec![
            (
                "t - 1 approvals",
                proposal.clone(),
                gov.approvals(&proposal, &[0, 1]),
            ),
            ("none", proposal.clone(), vec![]),
            (
                "a non-member's approval",
                proposal.clone(),
                [
                    gov.approvals(&proposal, &[0, 1, 2]),
                    vec![proposal.approve(&outsider.id, &outsider.key)],
                ]
                .concat(),
            ),
            (
                "a duplicated approval",
                proposal.clone(),
                gov.approvals(&proposal, &[0, 1, 1]),
            ),
            (
                "an approval by the wrong key",
                proposal.clone(),
                [
                    gov.approvals(&proposal, &[0, 1]),
                    vec![proposal.approve(&impostor.id, &impostor.key)],
                ]
                .concat(),
            ),
            (
                "approvals of another proposal",
                proposal.clone(),
                gov.approvals(
                    &Gov::admit_proposal(&acme, Role::Hospital, None, NOW + 100),
                    &[0, 1, 2],
                ),
            ),
        ];
        for (what, proposal, approvals) in cases {
            let tx = send(&mut acme, &proposal, approvals);
            assert!(
                matches!(
                    refused(&mut state, &tx, &mut acme, 2),
                    ApplyError::Governance(_)
                ),
                "{what}"
            );
        }
        for (what, changed) in [
            (
                "expired",
                Gov::admit_proposal(&acme, Role::Insurer, None, NOW - 1),
            ),
            (
                "valid for too long",
                Gov::admit_proposal(&acme, Role::Insurer, None, NOW + 100 * 24 * 3600),
            ),
            (
                "for another chain",
                Proposal {
                    chain_id: "other".into(),
                    ..proposal.clone()
                },
            ),
            (
                "malformed ID",
                Proposal {
                    proposal_id: "a b".into(),
                    ..proposal.clone()
                },
            ),
        ] {
            let approvals = gov.approvals(&changed, &[0, 1, 2]);
            let tx = send(&mut acme, &changed, approvals);
            assert!(
                matches!(
                    refused(&mut state, &tx, &mut acme, 2),
                    ApplyError::Governance(_)
                ),
                "{what}"
            );
        }
        // Sent by anybody but the admitted party (here a member): refused.
        let mut member = Party {
            id: gov.members[3].id.clone(),
            key: SigningKey::from_pkcs8(&gov.members[3].key.to_pkcs8()).unwrap(),
            next: 0,
        };
        let by_member = send(&mut member, &proposal, gov.approvals(&proposal, &[0, 1, 2]));
        assert!(matches!(
            refused(&mut state, &by_member, &mut member, 2),
            ApplyError::Tx(_)
        ));
        // t approvals (all four are fine too): admitted.
        let good = send(&mut acme, &proposal, gov.approvals(&proposal, &[3, 0, 2]));
        state.apply(&good, ctx(2)).unwrap();
        let entry = state.registry_entry(&acme.id).unwrap();
        assert_eq!(
            (entry.role, entry.status()),
            (Role::Insurer, Status::Active)
        );
        assert_eq!(entry.admitted().height, 2);
        assert!(state.proposal_used(&proposal.proposal_id));
        // Replayed: the same transaction, the same admission again, or its proposal ID for
        // another party.
        assert!(state.apply(&good, ctx(3)).is_err());
        let again = send(&mut acme, &proposal, gov.approvals(&proposal, &[0, 1, 2]));
        assert!(matches!(
            refused(&mut state, &again, &mut acme, 3),
            ApplyError::AlreadyRegistered(_)
        ));
        let mut other = Party::new("insurer:other");
        let reused = Proposal {
            action: Gov::admit_proposal(&other, Role::Insurer, None, NOW + 100).action,
            ..proposal.clone()
        };
        let tx = send(&mut other, &reused, gov.approvals(&reused, &[0, 1, 2]));
        assert!(matches!(
            refused(&mut state, &tx, &mut other, 3),
            ApplyError::Governance("the proposal ID was used before")
        ));
    }

    /// A governance action by a member is also refused without t approvals, and the
    /// council can replace itself (then only the new members count).
    #[test]
    fn the_council_changes_only_by_its_own_threshold() {
        let (mut state, mut gov) = world();
        let newcomer = Party::new("node:new");
        let council = Council {
            members: vec![
                super::super::governance::CouncilMember {
                    id: gov.members[0].id.clone(),
                    signing_jwk: gov.members[0].key.verifying_key().to_jwk(None),
                },
                super::super::governance::CouncilMember {
                    id: newcomer.id.clone(),
                    signing_jwk: newcomer.key.verifying_key().to_jwk(None),
                },
            ],
            threshold: 2,
        };
        let action = GovAction::SetCouncil {
            council: council.clone(),
        };
        let weak = gov.govern(1, action.clone(), &[0, 1]);
        assert!(matches!(
            state.apply(&weak, ctx(2)),
            Err(ApplyError::Governance(_))
        ));
        gov.members[1].next -= 1;
        let invalid = GovAction::SetCouncil {
            council: Council {
                threshold: 1,
                ..council.clone()
            },
        };
        let tx = gov.govern(1, invalid, &[0, 1, 2]);
        assert!(matches!(
            state.apply(&tx, ctx(2)),
            Err(ApplyError::NotAllowed(_))
        ));
        gov.members[1].next -= 1;
        state
            .apply(&gov.govern(1, action, &[0, 1, 2]), ctx(2))
            .unwrap();
        assert_eq!(state.council(), council);
        // The old members' approvals no longer count; the new council's do.
        let mut acme = Party::new("insurer:acme");
        let admission = gov.admit(&mut acme, Role::Insurer);
        assert!(matches!(
            state.apply(&admission, ctx(3)),
            Err(ApplyError::Governance(_))
        ));
        acme.next -= 1;
        let proposal = Gov::admit_proposal(&acme, Role::Insurer, None, NOW + 100);
        let approvals = vec![
            proposal.approve(&gov.members[0].id, &gov.members[0].key),
            proposal.approve(&newcomer.id, &newcomer.key),
        ];
        state
            .apply(
                &acme.tx(TxBody::Govern {
                    proposal,
                    approvals,
                }),
                ctx(3),
            )
            .unwrap();
        // A former member can no longer send governance transactions; the newcomer's ID
        // is reserved.
        let mut squatter = Party::new("node:new");
        assert!(matches!(
            state.apply(&gov.admit(&mut squatter, Role::Node), ctx(4)),
            Err(ApplyError::Governance(_))
        ));
    }

    /// Doctors are admitted by an active hospital, which alone (with the council) governs
    /// them.
    #[test]
    fn doctors_are_admitted_and_governed_by_their_hospital_only() {
        let (mut state, mut gov) = world();
        let mut insurer = Party::new("insurer:acme");
        let mut other_hospital = Party::new("hospital:other");
        state
            .apply(&gov.admit(&mut insurer, Role::Insurer), ctx(2))
            .unwrap();
        state
            .apply(&gov.admit(&mut other_hospital, Role::Hospital), ctx(2))
            .unwrap();
        let doctor = Party::new("doctor:who");
        let by = |party: &mut Party| {
            party.tx(TxBody::AdmitDoctor {
                id: doctor.id.clone(),
                signing_jwk: doctor.key.verifying_key().to_jwk(None),
                encryption_jwk: encryption_jwk(),
                valid_from: 0,
                valid_until: 10_000,
            })
        };
        // Admitted by a non-hospital: refused.
        let tx = by(&mut insurer);
        assert!(matches!(
            refused(&mut state, &tx, &mut insurer, 3),
            ApplyError::NotAllowed(_)
        ));
        // By an unregistered "hospital": refused.
        let mut fake = Party::new("hospital:fake");
        let tx = by(&mut fake);
        assert!(matches!(
            refused(&mut state, &tx, &mut fake, 3),
            ApplyError::UnknownSender(_)
        ));
        // By a suspended hospital: refused.
        let suspend = GovAction::SetStatus {
            id: other_hospital.id.clone(),
            status: Status::Suspended,
        };
        state
            .apply(&gov.govern(0, suspend, &[0, 1, 2]), ctx(3))
            .unwrap();
        let tx = by(&mut other_hospital);
        assert!(matches!(
            refused(&mut state, &tx, &mut other_hospital, 4),
            ApplyError::InactiveSender(_)
        ));
        // By its hospital: admitted, affiliated.
        state.apply(&gov.admit_doctor(&doctor), ctx(4)).unwrap();
        let entry = state.registry_entry(&doctor.id).unwrap();
        assert_eq!(entry.role, Role::Doctor);
        assert_eq!(entry.affiliation.as_ref(), Some(&gov.hospital.id));
        // Another hospital cannot suspend it; its own can, and reinstate it.
        let reinstate = GovAction::SetStatus {
            id: other_hospital.id.clone(),
            status: Status::Active,
        };
        state
            .apply(&gov.govern(0, reinstate, &[0, 1, 2]), ctx(5))
            .unwrap();
        let tx = other_hospital.tx(TxBody::SetDoctorStatus {
            id: doctor.id.clone(),
            status: Status::Suspended,
        });
        assert!(matches!(
            refused(&mut state, &tx, &mut other_hospital, 6),
            ApplyError::NotAllowed(_)
        ));
        for status in [Status::Suspended, Status::Active, Status::Expelled] {
            let tx = gov.hospital.tx(TxBody::SetDoctorStatus {
                id: doctor.id.clone(),
                status,
            });
            state.apply(&tx, ctx(6)).unwrap();
        }
        // Expelled is final, for the hospital and the council alike.
        let tx = gov.hospital.tx(TxBody::SetDoctorStatus {
            id: doctor.id.clone(),
            status: Status::Active,
        });
        assert!(matches!(
            state.apply(&tx, ctx(7)),
            Err(ApplyError::NotAllowed(_))
        ));
        let tx = gov.govern(
            0,
            GovAction::SetStatus {
                id: doctor.id.clone(),
                status: Status::Active,
            },
            &[0, 1, 2],
        );
        assert!(matches!(
            state.apply(&tx, ctx(7)),
            Err(ApplyError::NotAllowed(_))
        ));
    }

    /// An expulsion takes effect from the block that commits it: the party is active
    /// before, inactive from then on, and can send nothing more.
    #[test]
    fn expulsion_takes_effect_from_its_block_and_is_final() {
        let (mut state, mut gov) = world();
        let mut acme = Party::new("insurer:acme");
        state
            .apply(&gov.admit(&mut acme, Role::Insurer), at(2, NOW))
            .unwrap();
        let expel = GovAction::SetStatus {
            id: acme.id.clone(),
            status: Status::Expelled,
        };
        state
            .apply(&gov.govern(1, expel.clone(), &[1, 2, 3]), at(3, NOW + 50))
            .unwrap();
        let entry = state.registry_entry(&acme.id).unwrap();
        assert!(entry.is_active_at(NOW + 49));
        assert!(!entry.is_active_at(NOW + 50));
        assert_eq!(
            entry.ended(),
            Some(&StatusChange {
                status: Status::Expelled,
                height: 3,
                time: NOW + 50
            })
        );
        let after = acme.tx(TxBody::RevokeGrant {
            grant_id: "g".into(),
        });
        assert!(matches!(
            state.apply(&after, at(4, NOW + 60)),
            Err(ApplyError::InactiveSender(_))
        ));
        // Expelling again, or a patient, is refused.
        assert!(
            state
                .apply(&gov.govern(1, expel, &[1, 2, 3]), at(4, NOW + 60))
                .is_err()
        );
        gov.members[1].next -= 1;
        let mut patient = Party::patient();
        state
            .apply(&gov.register_patient(&mut patient), at(4, NOW + 60))
            .unwrap();
        let tx = gov.govern(
            1,
            GovAction::SetStatus {
                id: patient.id.clone(),
                status: Status::Expelled,
            },
            &[1, 2, 3],
        );
        assert!(matches!(
            state.apply(&tx, at(5, NOW + 70)),
            Err(ApplyError::NotAllowed(_))
        ));
    }

    /// A patient registers only with a voucher that verifies under an active hospital's
    /// voucher key, for its own ID, once.
    #[test]
    fn patients_register_only_with_an_unspent_voucher_of_an_active_hospital() {
        let (mut state, mut gov) = world();
        let mut patient = Party::patient();
        let tx = patient.register(Role::Patient);
        assert!(matches!(
            refused(&mut state, &tx, &mut patient, 2),
            ApplyError::Voucher(_)
        ));
        // Forged: by a hospital key nobody admitted, or not a signature at all.
        let forged = crate::ledger::testkit::voucher(
            crate::ledger::testkit::voucher_key(1),
            CHAIN,
            &patient.id,
        );
        let tx = patient.register_with(Role::Patient, Some(forged.clone()));
        assert!(matches!(
            refused(&mut state, &tx, &mut patient, 2),
            ApplyError::Voucher(_)
        ));
        let garbage = crate::voucher::Voucher {
            randomizer: forged.randomizer.clone(),
            signature: crate::b64::encode([7u8; 256]),
        };
        let tx = patient.register_with(Role::Patient, Some(garbage));
        assert!(matches!(
            refused(&mut state, &tx, &mut patient, 2),
            ApplyError::Voucher(_)
        ));
        // Another patient's voucher (bound to its ID), another chain's.
        let mut other = Party::patient();
        let theirs = gov.voucher(&other.id);
        let tx = patient.register_with(Role::Patient, Some(theirs.clone()));
        assert!(matches!(
            refused(&mut state, &tx, &mut patient, 2),
            ApplyError::Voucher(_)
        ));
        let foreign = crate::ledger::testkit::voucher(
            crate::ledger::testkit::voucher_key(0),
            "other",
            &patient.id,
        );
        let tx = patient.register_with(Role::Patient, Some(foreign));
        assert!(matches!(
            refused(&mut state, &tx, &mut patient, 2),
            ApplyError::Voucher(_)
        ));
        // Its own: registered; the voucher is spent.
        let mine = gov.voucher(&patient.id);
        state
            .apply(
                &patient.register_with(Role::Patient, Some(mine.clone())),
                ctx(2),
            )
            .unwrap();
        assert!(state.voucher_spent(&mine.spent_hash().unwrap()));
        // Reused, by anybody: refused as spent.
        let tx = other.register_with(Role::Patient, Some(mine));
        assert_eq!(
            refused(&mut state, &tx, &mut other, 3).to_string(),
            "registration voucher refused: voucher already used"
        );
        // A suspended hospital's vouchers are refused while it is suspended.
        let suspend = GovAction::SetStatus {
            id: gov.hospital.id.clone(),
            status: Status::Suspended,
        };
        state
            .apply(&gov.govern(0, suspend, &[0, 1, 2]), ctx(3))
            .unwrap();
        let tx = other.register_with(Role::Patient, Some(theirs));
        assert!(matches!(
            refused(&mut state, &tx, &mut other, 4),
            ApplyError::Voucher(_)
        ));
    }

    /// Rotation is signed by the current key; the ID stays; the history keeps the old key
    /// with the time it was in force; the old key signs nothing more.
    #[test]
    fn rotation_is_signed_by_the_current_key_and_keeps_the_history() {
        let (mut state, gov) = world();
        let mut patient = Party::patient();
        let first_key = patient.key.verifying_key().to_jwk(None);
        state
            .apply(&gov.register_patient(&mut patient), at(2, NOW))
            .unwrap();
        let new_key = SigningKey::generate();
        let rotation = TxBody::UpdateKeys {
            id: patient.id.clone(),
            signing_jwk: new_key.verifying_key().to_jwk(None),
            encryption_jwk: encryption_jwk(),
        };
        // Signed by the wrong key (the new one, or a stranger's): refused.
        for wrong in [&new_key, &SigningKey::generate()] {
            let tx = Transaction {
                chain_id: CHAIN.into(),
                sender: patient.id.clone(),
                sequence: patient.next,
                body: rotation.clone(),
            }
            .sign(wrong);
            assert!(matches!(
                state.apply(&tx, at(3, NOW + 10)),
                Err(ApplyError::Tx(_))
            ));
        }
        // Another party's rotation, signed by its own valid key: refused.
        let mut other = Party::patient();
        state
            .apply(&gov.register_patient(&mut other), at(3, NOW + 10))
            .unwrap();
        let tx = other.tx(rotation.clone());
        assert!(matches!(
            state.apply(&tx, at(3, NOW + 10)),
            Err(ApplyError::NotAllowed(_))
        ));
        state.apply(&patient.tx(rotation), at(3, NOW + 10)).unwrap();
        let entry = state.registry_entry(&patient.id).unwrap();
        assert_eq!(entry.id.as_str(), first_key.thumbprint());
        assert_eq!(entry.keys.len(), 2);
        assert_eq!(entry.keys_at(NOW + 9).unwrap().signing_jwk, first_key);
        assert_eq!(
            entry.keys_at(NOW + 10).unwrap().signing_jwk,
            new_key.verifying_key().to_jwk(None)
        );
        assert!(entry.keys_at(NOW - 1).is_none());
        // The old key signs nothing more; the new one does.
        let old = patient.tx(TxBody::RevokeIdentity {
            id: patient.id.clone(),
        });
        assert!(matches!(
            state.apply(&old, at(4, NOW + 20)),
            Err(ApplyError::Tx(_))
        ));
        patient.next -= 1;
        patient.key = new_key;
        let revoke = patient.tx(TxBody::RevokeIdentity {
            id: patient.id.clone(),
        });
        state.apply(&revoke, at(4, NOW + 20)).unwrap();
        // The proven entry's ID is still self-certifying (its first key).
        assert!(entry.is_well_formed());
    }

    /// One step of the registry property test (indices into a fixed universe: parties 0..=2
    /// are institutions, 0 and 1 hospitals, 2 an insurer; 3..=5 are doctors).
    #[derive(Debug, Clone)]
    enum Op {
        Admit(usize),
        AdmitDoctor {
            hospital: usize,
            doctor: usize,
        },
        Council {
            target: usize,
            status: Status,
        },
        Hospital {
            hospital: usize,
            doctor: usize,
            status: Status,
        },
        Rotate {
            party: usize,
            wrong_key: bool,
        },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let status = prop_oneof![
            Just(Status::Active),
            Just(Status::Suspended),
            Just(Status::Expelled)
        ];
        prop_oneof![
            (0..3usize).prop_map(Op::Admit),
            (0..3usize, 3..6usize)
                .prop_map(|(hospital, doctor)| Op::AdmitDoctor { hospital, doctor }),
            (0..6usize, status.clone()).prop_map(|(target, status)| Op::Council { target, status }),
            (0..3usize, 3..6usize, status).prop_map(|(hospital, doctor, status)| Op::Hospital {
                hospital,
                doctor,
                status
            }),
            (0..6usize, proptest::bool::weighted(0.2))
                .prop_map(|(party, wrong_key)| Op::Rotate { party, wrong_key }),
        ]
    }

    /// What the model knows of a registered party.
    #[derive(Debug, Clone)]
    struct Model {
        role: Role,
        affiliation: Option<usize>,
        status: Status,
        keys: Vec<Jwk>,
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Any sequence of admissions, status changes and rotations keeps the registry
        /// consistent with a simple model: an action applies exactly when the model says it
        /// may, a refused one changes nothing, and every entry's role, affiliation, status,
        /// key history and directory listing are the model's.
        #[test]
        fn the_registry_follows_a_simple_model(ops in proptest::collection::vec(op(), 1..24)) {
            let (mut state, mut gov) = world();
            let names = [
                "hospital:p0", "hospital:p1", "insurer:p2", "doctor:p3", "doctor:p4", "doctor:p5",
            ];
            let roles = [Role::Hospital, Role::Hospital, Role::Insurer];
            let mut parties: Vec<Party> = names.iter().map(|n| Party::new(n)).collect();
            let mut model: Vec<Option<Model>> = vec![None; 6];
            for (height, op) in (2u64..).zip(ops) {
                let active = |m: &Option<Model>| m.as_ref().is_some_and(|m| m.status == Status::Active);
                let (tx, sender, expected) = match op {
                    Op::Admit(i) => {
                        let tx = gov.admit(&mut parties[i], roles[i]);
                        let ok = model[i].is_none();
                        if ok {
                            model[i] = Some(Model {
                                role: roles[i],
                                affiliation: None,
                                status: Status::Active,
                                keys: vec![parties[i].key.verifying_key().to_jwk(None)],
                            });
                        }
                        (tx, Some(i), ok)
                    }
                    Op::AdmitDoctor { hospital, doctor } => {
                        let d = &parties[doctor];
                        let body = TxBody::AdmitDoctor {
                            id: d.id.clone(),
                            signing_jwk: d.key.verifying_key().to_jwk(None),
                            encryption_jwk: encryption_jwk(),
                            valid_from: 0,
                            valid_until: 10_000,
                        };
                        let key = d.key.verifying_key().to_jwk(None);
                        let tx = parties[hospital].tx(body);
                        let ok = active(&model[hospital])
                            && model[hospital].as_ref().unwrap().role == Role::Hospital
                            && model[doctor].is_none();
                        if ok {
                            model[doctor] = Some(Model {
                                role: Role::Doctor,
                                affiliation: Some(hospital),
                                status: Status::Active,
                                keys: vec![key],
                            });
                        }
                        (tx, Some(hospital), ok)
                    }
                    Op::Council { target, status } => {
                        let tx = gov.govern(
                            0,
                            GovAction::SetStatus { id: parties[target].id.clone(), status },
                            &[0, 1, 2],
                        );
                        let ok = model[target].as_ref().is_some_and(|m| {
                            !m.status.is_final() && m.status != status
                        });
                        if ok {
                            model[target].as_mut().unwrap().status = status;
                        }
                        (tx, None, ok)
                    }
                    Op::Hospital { hospital, doctor, status } => {
                        let id = parties[doctor].id.clone();
                        let tx = parties[hospital].tx(TxBody::SetDoctorStatus { id, status });
                        let ok = active(&model[hospital])
                            && model[hospital].as_ref().unwrap().role == Role::Hospital
                            && model[doctor].as_ref().is_some_and(|m| {
                                m.affiliation == Some(hospital)
                                    && !m.status.is_final()
                                    && m.status != status
                            });
                        if ok {
                            model[doctor].as_mut().unwrap().status = status;
                        }
                        (tx, Some(hospital), ok)
                    }
                    Op::Rotate { party, wrong_key } => {
                        let new_key = SigningKey::generate();
                        let body = TxBody::UpdateKeys {
                            id: parties[party].id.clone(),
                            signing_jwk: new_key.verifying_key().to_jwk(None),
                            encryption_jwk: encryption_jwk(),
                        };
                        let p = &mut parties[party];
                        let tx = if wrong_key {
                            let tx = Transaction {
                                chain_id: CHAIN.into(),
                                sender: p.id.clone(),
                                sequence: p.next,
                                body,
                            }
                            .sign(&SigningKey::generate());
                            p.next += 1;
                            tx
                        } else {
                            p.tx(body)
                        };
                        let ok = !wrong_key
                            && active(&model[party])
                            && model[party].as_ref().unwrap().keys.len() < MAX_KEY_EPOCHS;
                        if ok {
                            model[party]
                                .as_mut()
                                .unwrap()
                                .keys
                                .push(new_key.verifying_key().to_jwk(None));
                            parties[party].key = new_key;
                        }
                        (tx, Some(party), ok)
                    }
                };
                let root = state.root();
                let result = state.apply(&tx, ctx(height));
                proptest::prop_assert_eq!(result.is_ok(), expected, "{:?}", result.err());
                if !expected {
                    proptest::prop_assert_eq!(state.root(), root);
                    match sender {
                        Some(i) => parties[i].next -= 1,
                        None => gov.members[0].next -= 1,
                    }
                }
                for (i, m) in model.iter().enumerate() {
                    let entry = state.registry_entry(&parties[i].id);
                    proptest::prop_assert_eq!(entry.is_some(), m.is_some());
                    let (Some(entry), Some(m)) = (entry, m) else { continue };
                    proptest::prop_assert!(entry.is_well_formed());
                    proptest::prop_assert_eq!(entry.role, m.role);
                    proptest::prop_assert_eq!(
                        entry.affiliation.clone(),
                        m.affiliation.map(|h| parties[h].id.clone())
                    );
                    proptest::prop_assert_eq!(entry.status(), m.status);
                    proptest::prop_assert_eq!(entry.is_active(NOW), m.status == Status::Active);
                    let keys: Vec<Jwk> = entry.keys.iter().map(|k| k.signing_jwk.clone()).collect();
                    proptest::prop_assert_eq!(&keys, &m.keys);
                    proptest::prop_assert_eq!(
                        entry.ended().is_some(),
                        m.status.is_final()
                    );
                    proptest::prop_assert!(state.directory(m.role).contains(&parties[i].id));
                }
            }
        }
    }
}
