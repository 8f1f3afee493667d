//! The ledger state machine: applies signed transactions to the authenticated state,
//! deterministically, so every node that applies the same blocks has the same state root.
//!
//! What the state holds (each entry is a value in the [`StateTree`], so each has membership
//! and non-membership proofs under a certified header):
//! - `registry/<id>`: the party's registry entry (role, keys, validity, revoked);
//! - `sequence/<id>`: the last sequence number used by the sender (replay protection);
//! - `grant/<grant id>`: a grant (grantor, grantee, record, parts, actions, not-after, revoked);
//! - `index_head/<patient>`: the hash of the patient's latest index entry (each entry links
//!   the previous one, so a node cannot hide one);
//! - `crumbs/<patient>/<department>`: the heights of the blocks holding the patient's entries
//!   of that department (MedBlock bread crumbs);
//! - `consensus/members`: the consortium members with their consensus keys and credit
//!   scores (see [`dpos`](super::dpos));
//! - `evidence/<accused>/<height>/<round>/<step>`: equivocation evidence already punished.

use super::block::Validator;
use super::dpos::{EQUIVOCATION_PENALTY, Member};
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
    /// An UploadIndex whose `previous` is not the patient's index head.
    #[error("index entry does not link the patient's previous entry")]
    BrokenIndexChain,
    /// Misbehaviour evidence that does not prove an unpunished equivocation (why, fixed text).
    #[error("misbehaviour evidence refused: {0}")]
    Evidence(&'static str),
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

/// A party's entry in the identity registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// The party's ID.
    pub id: PartyId,
    /// What the party is.
    pub role: Role,
    /// The public ES256 key that verifies the party's signatures.
    pub signing_jwk: Jwk,
    /// The public RSA-OAEP-256 key that records and keys are sealed to.
    pub encryption_jwk: Jwk,
    /// Start of validity, Unix seconds (inclusive).
    pub valid_from: u64,
    /// End of validity, Unix seconds (exclusive).
    pub valid_until: u64,
    /// Whether the party revoked its identity (for good).
    pub revoked: bool,
}

impl RegistryEntry {
    /// Whether the entry is usable at `now` (Unix seconds): not revoked, and within its
    /// validity.
    pub fn is_active(&self, now: u64) -> bool {
        !self.revoked && self.valid_from <= now && now < self.valid_until
    }
}

/// A standing grant (BPDS data sharing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantEntry {
    /// The party that granted access (the sender of the Grant).
    pub grantor: PartyId,
    /// The registered party granted access.
    pub grantee: PartyId,
    /// The record shared: its blob address (hex).
    pub record_id: String,
    /// The parts of the record shared; empty for the whole record.
    pub parts: Vec<String>,
    /// What the grantee may do.
    pub actions: Vec<Action>,
    /// Last time the grant allows an access, Unix seconds (inclusive).
    pub not_after: u64,
    /// Whether the grantor revoked the grant.
    pub revoked: bool,
}

impl GrantEntry {
    /// Whether the grant lets its grantee do `action` at time `now`.
    pub fn allows(&self, action: Action, now: u64) -> bool {
        !self.revoked && now <= self.not_after && self.actions.contains(&action)
    }
}

/// The state: the authenticated map, plus the values it commits to, plus the registered
/// IDs by role (derived from the registry entries, so directory pages need no scan). All
/// three are persistent structures: a copy (to check a transaction or a block) is O(1) and
/// shares everything it does not change.
#[derive(Debug, Clone, Default)]
pub struct LedgerState {
    tree: StateTree,
    values: imbl::OrdMap<StateKey, std::sync::Arc<Vec<u8>>>,
    roles: imbl::OrdMap<Role, imbl::OrdSet<PartyId>>,
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

    /// The state at genesis: the consortium members with their initial credit.
    pub fn genesis(validators: &[Validator]) -> Self {
        let mut state = Self::new();
        let members: Vec<Member> = validators.iter().map(Member::from_genesis).collect();
        state.put(members_key(), &members);
        state
    }

    /// The consortium members in genesis order, with their current credit.
    pub fn members(&self) -> Vec<Member> {
        self.get(&members_key()).unwrap_or_default()
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
        self.get(&state_key("grant", grant_id))
    }

    /// The ID of `patient`'s newest UploadIndex transaction (its index head), if any.
    pub fn index_head(&self, patient: &PartyId) -> Option<Hash> {
        self.get::<String>(&index_head_key(patient))
            .and_then(|hex| super::state::hex32::from_hex(&hex))
    }

    /// The sequence number the sender's next transaction must carry.
    pub fn next_sequence(&self, sender: &PartyId) -> u64 {
        self.get::<u64>(&state_key("sequence", sender.as_str()))
            .map_or(0, |last| last + 1)
    }

    /// The heights of the blocks holding `patient`'s index entries of `department`, ascending.
    pub fn crumbs(&self, patient: &PartyId, department: &str) -> Vec<u64> {
        self.get(&crumbs_key(patient, department))
            .unwrap_or_default()
    }

    /// Every registered ID of a role, sorted (the directory for decoys and k = all).
    pub fn directory(&self, role: Role) -> Vec<PartyId> {
        self.directory_page(role, None, usize::MAX).0
    }

    /// Up to `limit` registered IDs of `role` after `after`, sorted, and whether more follow.
    pub fn directory_page(
        &self,
        role: Role,
        after: Option<&PartyId>,
        limit: usize,
    ) -> (Vec<PartyId>, bool) {
        let Some(ids) = self.roles.get(&role) else {
            return (Vec::new(), false);
        };
        let mut rest: Box<dyn Iterator<Item = &PartyId>> = match after {
            Some(after) => Box::new(ids.range::<_, PartyId>((
                std::ops::Bound::Excluded(after),
                std::ops::Bound::Unbounded,
            ))),
            None => Box::new(ids.iter()),
        };
        let page: Vec<PartyId> = rest.by_ref().take(limit).cloned().collect();
        (page, rest.next().is_some())
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
        self.apply_body(&tx.sender, &tx.body, signed.id(), ctx)?;
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
            if self.registry_entry(&tx.sender).is_some() {
                return Err(ApplyError::AlreadyRegistered(tx.sender.clone()));
            }
            return Ok(key);
        }
        if let Some(entry) = self.registry_entry(&tx.sender) {
            if !entry.is_active(ctx.now) {
                return Err(ApplyError::InactiveSender(tx.sender.clone()));
            }
            return Ok(VerifyingKey::from_jwk(&entry.signing_jwk).map_err(TxError::from)?);
        }
        // Consortium members sign consensus transactions with their consensus keys.
        let member = self
            .members()
            .into_iter()
            .find(|m| m.id == tx.sender)
            .ok_or_else(|| ApplyError::UnknownSender(tx.sender.clone()))?;
        if !matches!(tx.body, TxBody::Misbehaviour { .. }) {
            return Err(ApplyError::NotAllowed(
                "a consortium member's key signs only consensus transactions",
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
    ) -> Result<(), ApplyError> {
        match body {
            TxBody::RegisterIdentity {
                id,
                role,
                signing_jwk,
                encryption_jwk,
                valid_from,
                valid_until,
            } => {
                crate::keys::EncryptionKey::from_jwk(encryption_jwk).map_err(TxError::from)?;
                if valid_from >= valid_until {
                    return Err(ApplyError::NotAllowed("empty validity period"));
                }
                self.check_registrable(id, *role, signing_jwk)?;
                self.roles.entry(*role).or_default().insert(id.clone());
                let entry = RegistryEntry {
                    id: id.clone(),
                    role: *role,
                    signing_jwk: signing_jwk.clone(),
                    encryption_jwk: encryption_jwk.clone(),
                    valid_from: *valid_from,
                    valid_until: *valid_until,
                    revoked: false,
                };
                self.put(registry_key(id), &entry);
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
                entry.signing_jwk = signing_jwk.clone();
                entry.encryption_jwk = encryption_jwk.clone();
                self.put(registry_key(id), &entry);
            }
            TxBody::RevokeIdentity { id } => {
                if id != sender {
                    return Err(ApplyError::NotAllowed(
                        "only a party revokes its own identity",
                    ));
                }
                let mut entry = self
                    .registry_entry(id)
                    .ok_or_else(|| ApplyError::UnknownSender(id.clone()))?;
                entry.revoked = true;
                self.put(registry_key(id), &entry);
            }
            TxBody::UploadIndex {
                department,
                previous,
                ..
            } => {
                if *previous != self.index_head(sender) {
                    return Err(ApplyError::BrokenIndexChain);
                }
                self.put(index_head_key(sender), &super::state::hex32::to_hex(&tx_id));
                let mut crumbs = self.crumbs(sender, department);
                if crumbs.last() != Some(&ctx.height) {
                    crumbs.push(ctx.height);
                }
                self.put(crumbs_key(sender, department), &crumbs);
            }
            TxBody::Grant {
                grant_id,
                grantee,
                record_id,
                parts,
                actions,
                not_after,
            } => {
                let key = state_key("grant", grant_id);
                if self.values.contains_key(&key) {
                    return Err(ApplyError::NotAllowed("grant ID already used"));
                }
                if self.registry_entry(grantee).is_none() {
                    return Err(ApplyError::UnknownSender(grantee.clone()));
                }
                let grant = GrantEntry {
                    grantor: sender.clone(),
                    grantee: grantee.clone(),
                    record_id: record_id.clone(),
                    parts: parts.clone(),
                    actions: actions.clone(),
                    not_after: *not_after,
                    revoked: false,
                };
                self.put(key, &grant);
            }
            TxBody::RevokeGrant { grant_id } => {
                let mut grant = self.grant(grant_id).ok_or(ApplyError::UnknownGrant)?;
                if &grant.grantor != sender {
                    return Err(ApplyError::NotAllowed("only the grantor revokes a grant"));
                }
                grant.revoked = true;
                self.put(state_key("grant", grant_id), &grant);
            }
            TxBody::AccessLog {
                accessor,
                record_id,
                action,
                at,
                grant_id,
                ..
            } => {
                if accessor != sender {
                    return Err(ApplyError::NotAllowed(
                        "an access is logged by its accessor",
                    ));
                }
                if *at > ctx.now + MAX_CLOCK_SKEW_S
                    || at.saturating_add(ACCESS_LOG_WINDOW_S) < ctx.now
                {
                    return Err(ApplyError::NotAllowed(
                        "an access is logged within its window of the block time",
                    ));
                }
                // A log naming a grant names one to the accessor, for that record, allowing
                // that action at the time of the access. Revocation after the access does
                // not erase it: the read happened and stays on the record.
                if let Some(grant_id) = grant_id {
                    let grant = self.grant(grant_id).ok_or(ApplyError::UnknownGrant)?;
                    if &grant.grantee != accessor
                        || &grant.record_id != record_id
                        || !grant.actions.contains(action)
                        || *at > grant.not_after
                    {
                        return Err(ApplyError::NotAllowed(
                            "the named grant does not cover this access",
                        ));
                    }
                }
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

    /// Who may hold `id` in `role`: a patient's ID is the RFC 7638 thumbprint of the key it
    /// registers (so nobody else can take it first), every other ID is a namespaced name
    /// (`hospital:st-marys`: it has a `:`, which no thumbprint has), and the consortium
    /// members' IDs are theirs alone.
    fn check_registrable(
        &self,
        id: &PartyId,
        role: Role,
        signing_jwk: &Jwk,
    ) -> Result<(), ApplyError> {
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
        if self.members().iter().any(|m| &m.id == id) {
            return Err(ApplyError::NotAllowed("the ID is a consortium member's"));
        }
        Ok(())
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

/// The state key of `id`'s registry entry.
pub fn registry_key(id: &PartyId) -> StateKey {
    state_key("registry", id.as_str())
}

/// The state key of `patient`'s index head.
pub fn index_head_key(patient: &PartyId) -> StateKey {
    state_key("index_head", patient.as_str())
}

/// The state key of `patient`'s bread crumbs for `department`.
pub fn crumbs_key(patient: &PartyId, department: &str) -> StateKey {
    state_key("crumbs", &format!("{patient}/{department}"))
}

#[cfg(test)]
mod tests {
    use super::super::bft::{ConsensusVote, Evidence, Signed, VoteKind};
    use super::super::tx::{Outcome, Transaction};
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

        fn register(&mut self, role: Role) -> SignedTransaction {
            let body = TxBody::RegisterIdentity {
                id: self.id.clone(),
                role,
                signing_jwk: self.key.verifying_key().to_jwk(None),
                encryption_jwk: crate::keys::tests::party()
                    .decryption
                    .encryption_key()
                    .to_jwk(None),
                valid_from: 0,
                valid_until: 10_000,
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

    #[test]
    fn registration_then_proofs_of_entry_and_absence() {
        let mut state = LedgerState::new();
        let mut hospital = Party::new("hospital:a");
        state
            .apply(&hospital.register(Role::Hospital), ctx(1))
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
        assert_eq!(state.directory(Role::Hospital), vec![hospital.id.clone()]);
        assert!(state.directory(Role::Insurer).is_empty());
    }

    #[test]
    fn replays_reorders_and_foreign_chains_are_refused_without_changing_state() {
        let mut state = LedgerState::new();
        let mut a = Party::new("hospital:a");
        let registration = a.register(Role::Hospital);
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
        let mut state = LedgerState::new();
        let mut a = Party::new("hospital:a");
        state.apply(&a.register(Role::Hospital), ctx(1)).unwrap();
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
            state.apply(&twin.register(Role::Hospital), ctx(2)),
            Err(ApplyError::AlreadyRegistered(_))
        ));
    }

    #[test]
    fn grants_are_made_checked_and_revoked_by_their_grantor_only() {
        let mut state = LedgerState::new();
        let mut patient = Party::patient();
        let mut insurer = Party::new("insurer:acme");
        state
            .apply(&patient.register(Role::Patient), ctx(1))
            .unwrap();
        state
            .apply(&insurer.register(Role::Insurer), ctx(1))
            .unwrap();
        let grant = patient.tx(TxBody::Grant {
            grant_id: "g1".into(),
            grantee: insurer.id.clone(),
            record_id: "rec-1".into(),
            parts: vec!["prescription".into()],
            actions: vec![Action::Read],
            not_after: NOW + 100,
        });
        state.apply(&grant, ctx(2)).unwrap();
        let g = state.grant("g1").unwrap();
        assert!(g.allows(Action::Read, NOW));
        assert!(!g.allows(Action::Copy, NOW));
        assert!(!g.allows(Action::Read, NOW + 101));
        let hijack = insurer.tx(TxBody::RevokeGrant {
            grant_id: "g1".into(),
        });
        assert!(matches!(
            state.apply(&hijack, ctx(3)),
            Err(ApplyError::NotAllowed(_))
        ));
        insurer.next -= 1;
        state
            .apply(
                &patient.tx(TxBody::RevokeGrant {
                    grant_id: "g1".into(),
                }),
                ctx(3),
            )
            .unwrap();
        assert!(!state.grant("g1").unwrap().allows(Action::Read, NOW));
        let log = insurer.tx(TxBody::AccessLog {
            accessor: insurer.id.clone(),
            record_id: "rec-1".into(),
            action: Action::Read,
            at: NOW,
            outcome: Outcome::Refused,
            grant_id: Some("g1".into()),
        });
        state.apply(&log, ctx(4)).unwrap();
        let on_behalf = insurer.tx(TxBody::AccessLog {
            accessor: patient.id.clone(),
            record_id: "rec-1".into(),
            action: Action::Read,
            at: NOW,
            outcome: Outcome::Granted,
            grant_id: None,
        });
        assert!(matches!(
            state.apply(&on_behalf, ctx(4)),
            Err(ApplyError::NotAllowed(_))
        ));
    }

    /// Squatting: a patient ID that is not the registered key's thumbprint, a victim's
    /// thumbprint taken as an institution, an institution name without a namespace, and a
    /// consortium member's ID are all refused.
    #[test]
    fn ids_cannot_be_squatted() {
        let members = [Validator {
            id: PartyId::new("node:4").unwrap(),
            signing_jwk: SigningKey::generate().verifying_key().to_jwk(None),
            credit: 100,
        }];
        let mut state = LedgerState::genesis(&members);
        let victim = Party::patient();
        let mut squatter = Party::new(victim.id.as_str());
        assert!(matches!(
            state.apply(&squatter.register(Role::Patient), ctx(1)),
            Err(ApplyError::NotAllowed(_))
        ));
        squatter.next = 0;
        assert!(matches!(
            state.apply(&squatter.register(Role::Insurer), ctx(1)),
            Err(ApplyError::NotAllowed(_))
        ));
        let mut named_patient = Party::new("patient-7");
        assert!(matches!(
            state.apply(&named_patient.register(Role::Patient), ctx(1)),
            Err(ApplyError::NotAllowed(_))
        ));
        let mut bare = Party::new("acme");
        assert!(matches!(
            state.apply(&bare.register(Role::Insurer), ctx(1)),
            Err(ApplyError::NotAllowed(_))
        ));
        let mut member = Party::new("node:4");
        assert!(matches!(
            state.apply(&member.register(Role::Node), ctx(1)),
            Err(ApplyError::NotAllowed(_))
        ));
        let root = state.root();
        let mut victim = victim;
        state
            .apply(&victim.register(Role::Patient), ctx(2))
            .unwrap();
        assert_ne!(state.root(), root);
    }

    /// An AccessLog naming a grant commits only if the grant is to the accessor, for that
    /// record and action, and the access was within the grant's time; any log commits only
    /// within its window of the block time.
    #[test]
    fn access_logs_name_only_grants_that_cover_them() {
        let mut state = LedgerState::new();
        let mut patient = Party::patient();
        let mut insurer = Party::new("insurer:acme");
        let mut other = Party::new("insurer:other");
        for (party, role) in [
            (&mut patient, Role::Patient),
            (&mut insurer, Role::Insurer),
            (&mut other, Role::Insurer),
        ] {
            state.apply(&party.register(role), ctx(1)).unwrap();
        }
        let grant = patient.tx(TxBody::Grant {
            grant_id: "g1".into(),
            grantee: insurer.id.clone(),
            record_id: "rec-1".into(),
            parts: vec![],
            actions: vec![Action::Read],
            not_after: NOW + 100,
        });
        state.apply(&grant, ctx(2)).unwrap();
        let log = |party: &mut Party, record: &str, action: Action, at: u64, grant: &str| {
            party.tx(TxBody::AccessLog {
                accessor: party.id.clone(),
                record_id: record.into(),
                action,
                at,
                outcome: Outcome::Granted,
                grant_id: Some(grant.into()),
            })
        };
        let refused = [
            log(&mut other, "rec-1", Action::Read, NOW, "g1"),
            log(&mut insurer, "rec-2", Action::Read, NOW, "g1"),
            log(&mut insurer, "rec-1", Action::Copy, NOW, "g1"),
            log(&mut insurer, "rec-1", Action::Read, NOW + 101, "g1"),
            log(&mut insurer, "rec-1", Action::Read, NOW, "g-none"),
            log(
                &mut insurer,
                "rec-1",
                Action::Read,
                NOW + MAX_CLOCK_SKEW_S + 1,
                "g1",
            ),
        ];
        for tx in &refused {
            let root = state.root();
            assert!(
                state.apply(tx, ctx(3)).is_err(),
                "{:?}",
                tx.transaction().body
            );
            assert_eq!(state.root(), root);
            if tx.transaction().sender == other.id {
                other.next -= 1;
            } else {
                insurer.next -= 1;
            }
        }
        let stale = log(&mut insurer, "rec-1", Action::Read, NOW, "g1");
        let late = Context {
            chain_id: CHAIN,
            height: 3,
            now: NOW + ACCESS_LOG_WINDOW_S + 1,
        };
        assert!(state.apply(&stale, late).is_err());
        insurer.next -= 1;
        state
            .apply(&log(&mut insurer, "rec-1", Action::Read, NOW, "g1"), ctx(3))
            .unwrap();
    }

    #[test]
    fn index_entries_chain_and_leave_bread_crumbs() {
        let mut state = LedgerState::new();
        let mut patient = Party::patient();
        state
            .apply(&patient.register(Role::Patient), ctx(1))
            .unwrap();
        let first = patient.tx(TxBody::UploadIndex {
            department: "cardiology".into(),
            entry_jwe: "jwe-1".into(),
            previous: None,
        });
        state.apply(&first, ctx(5)).unwrap();
        assert_eq!(state.index_head(&patient.id), Some(first.id()));
        // An entry that does not link the head (a node hiding the first) is refused.
        let unlinked = patient.tx(TxBody::UploadIndex {
            department: "cardiology".into(),
            entry_jwe: "jwe-2".into(),
            previous: None,
        });
        assert!(matches!(
            state.apply(&unlinked, ctx(6)),
            Err(ApplyError::BrokenIndexChain)
        ));
        patient.next -= 1;
        let second = patient.tx(TxBody::UploadIndex {
            department: "cardiology".into(),
            entry_jwe: "jwe-2".into(),
            previous: Some(first.id()),
        });
        state.apply(&second, ctx(7)).unwrap();
        let third = patient.tx(TxBody::UploadIndex {
            department: "radiology".into(),
            entry_jwe: "jwe-3".into(),
            previous: Some(second.id()),
        });
        state.apply(&third, ctx(7)).unwrap();
        assert_eq!(state.crumbs(&patient.id, "cardiology"), vec![5, 7]);
        assert_eq!(state.crumbs(&patient.id, "radiology"), vec![7]);
        let (value, proof) = state.get_with_proof(&crumbs_key(&patient.id, "cardiology"));
        assert_eq!(
            proof.verify(&state.root(), &crumbs_key(&patient.id, "cardiology")),
            Ok(Some(value_hash(value.unwrap())))
        );
    }

    #[test]
    fn revoked_or_expired_senders_cannot_act() {
        let mut state = LedgerState::new();
        let mut a = Party::new("hospital:a");
        state.apply(&a.register(Role::Hospital), ctx(1)).unwrap();
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
        state.apply(&b.register(Role::Hospital), ctx(1)).unwrap();
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
                value: Some([value; 32]),
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
    fn directory_pages_cover_each_role_once_in_order() {
        let mut state = LedgerState::new();
        for name in ["insurer:c", "insurer:a", "hospital:x", "insurer:b"] {
            let role = if name.starts_with("insurer") {
                Role::Insurer
            } else {
                Role::Hospital
            };
            state
                .apply(&Party::new(name).register(role), ctx(1))
                .unwrap();
        }
        let ids = |v: Vec<PartyId>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ids(state.directory(Role::Insurer)),
            ["insurer:a", "insurer:b", "insurer:c"]
        );
        let (first, more) = state.directory_page(Role::Insurer, None, 2);
        assert_eq!(
            (ids(first.clone()), more),
            (vec!["insurer:a".to_owned(), "insurer:b".to_owned()], true)
        );
        let (second, more) = state.directory_page(Role::Insurer, first.last(), 2);
        assert_eq!((ids(second), more), (vec!["insurer:c".to_owned()], false));
        let (none, more) = state.directory_page(Role::Researcher, None, 2);
        assert!(none.is_empty() && !more);
        // A refused registration is not listed.
        let mut dup = Party::new("insurer:a");
        assert!(state.apply(&dup.register(Role::Insurer), ctx(2)).is_err());
        assert_eq!(state.directory(Role::Insurer).len(), 3);
    }
}
