//! The values that cross the FFI: uniffi Records (Kotlin data classes, Swift structs) and
//! Enums. Plain data, copied across; nothing here holds a secret.

use emrshare_core::ces::VerifiedRecord;
use emrshare_core::ledger::tx::{Action, Outcome, Role};
use emrshare_core::lookup::{LookupOutcome, NodeFault};

/// A registered party's role. Lookups hide a target among registered IDs of its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PartyRole {
    Patient,
    Doctor,
    Hospital,
    Insurer,
    Researcher,
}

impl From<PartyRole> for Role {
    fn from(role: PartyRole) -> Self {
        match role {
            PartyRole::Patient => Role::Patient,
            PartyRole::Doctor => Role::Doctor,
            PartyRole::Hospital => Role::Hospital,
            PartyRole::Insurer => Role::Insurer,
            PartyRole::Researcher => Role::Researcher,
        }
    }
}

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum GrantAction {
    Read,
    Copy,
}

impl From<Action> for GrantAction {
    fn from(action: Action) -> Self {
        match action {
            Action::Read => GrantAction::Read,
            Action::Copy => GrantAction::Copy,
        }
    }
}

/// How a logged access ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum AccessOutcome {
    Granted,
    Refused,
}

impl From<Outcome> for AccessOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Granted => AccessOutcome::Granted,
            Outcome::Refused => AccessOutcome::Refused,
        }
    }
}

/// A party's registration, proven on chain.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Registration {
    pub party_id: String,
    pub role: PartyRole,
    /// The height of the certified header the registry entry was proven under.
    pub height: u64,
    pub valid_until: u64,
}

/// Why one node's answer to a lookup was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum NodeFaultKind {
    /// It did not answer in time.
    NoAnswer,
    /// Its header's certificate did not verify, or the header was stale.
    BadHeader,
    /// Its answer was not of the shape asked for.
    Malformed,
    /// The role's directory head or the bucket's proof did not verify: an entry was added,
    /// withheld or altered (e.g. swapped keys).
    BadBucket,
    /// An entry was malformed or of another role.
    BadEntry,
}

/// Evidence against one node.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NodeEvidence {
    pub node_url: String,
    pub fault: NodeFaultKind,
}

/// How a party's keys were learnt: a k-anonymous lookup verified under a certified header.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LookupReport {
    pub party_id: String,
    pub role: PartyRole,
    /// IDs of the bucket the target hid among (itself included): k or more, unless the
    /// bucket is weak.
    pub ids_asked: u32,
    /// Registered IDs of the role, proven with the bucket (below 2k the bucket is all of
    /// them).
    pub registered: u64,
    /// Nodes whose answers verified.
    pub verified_by: Vec<String>,
    /// Nodes whose answers did not: each is evidence of a dishonest or broken node.
    pub evidence: Vec<NodeEvidence>,
    /// Height of the certified header the entry is proven under.
    pub height: u64,
    /// Validators' precommits on that header's certificate.
    pub certificate_votes: u32,
}

impl LookupReport {
    pub(crate) fn new(party_id: &str, role: PartyRole, asked: usize, o: &LookupOutcome) -> Self {
        Self {
            party_id: party_id.into(),
            role,
            ids_asked: asked as u32,
            registered: o.registered,
            verified_by: o.verified_by.clone(),
            evidence: o
                .evidence
                .iter()
                .map(|e| NodeEvidence {
                    node_url: e.node.clone(),
                    fault: match e.fault {
                        NodeFault::NoAnswer(_) => NodeFaultKind::NoAnswer,
                        NodeFault::Header(_) => NodeFaultKind::BadHeader,
                        NodeFault::Malformed(_) => NodeFaultKind::Malformed,
                        NodeFault::Head(_) | NodeFault::Bucket(_) => NodeFaultKind::BadBucket,
                        NodeFault::Entry { .. } => NodeFaultKind::BadEntry,
                    },
                })
                .collect(),
            height: o.header.header.height,
            certificate_votes: o.header.certificate.signatures.len() as u32,
        }
    }
}

/// One part of a record: its name and its value as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RecordPart {
    pub name: String,
    pub value_json: String,
    /// In the doctor's CEAS: present in every extraction.
    pub mandatory: bool,
}

/// A record whose doctor signature, disclosures, CEAS and (when present) key binding
/// verified.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VerifiedRecordInfo {
    pub record_id: String,
    pub doctor_id: String,
    pub patient_id: String,
    pub schema: String,
    pub issued_at: u64,
    /// The parts every extraction keeps.
    pub mandatory_parts: Vec<String>,
    /// The parts shown (all of them for a received record, the disclosed ones otherwise).
    pub parts: Vec<RecordPart>,
    /// A key-binding JWT by the patient was present and valid.
    pub key_bound: bool,
}

impl From<&VerifiedRecord> for VerifiedRecordInfo {
    fn from(v: &VerifiedRecord) -> Self {
        Self {
            record_id: v.record_id().into(),
            doctor_id: v.issuer().to_string(),
            patient_id: v.patient().into(),
            schema: v.schema().into(),
            issued_at: v.issued_at(),
            mandatory_parts: v.ceas().to_vec(),
            parts: v
                .parts()
                .iter()
                .map(|(name, value)| RecordPart {
                    name: name.clone(),
                    value_json: value.to_string(),
                    mandatory: v.ceas().contains(name),
                })
                .collect(),
            key_bound: v.key_bound(),
        }
    }
}

/// A record the patient received from a doctor, opened and verified.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReceivedRecord {
    pub record: VerifiedRecordInfo,
    /// The record as signed (SD-JWT with every disclosure): what `store_record`, `extract`
    /// and `present` take. Medical data: keep it encrypted at rest.
    pub sd_jwt: String,
    /// How the doctor's key was found and verified.
    pub doctor_lookup: LookupReport,
}

/// A record the patient stored: ciphertext on the nodes, index entry on chain.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StoredRecord {
    pub record_id: String,
    /// The blob's SHA-256 address (hex).
    pub blob: String,
    pub department: String,
    /// The stored envelope (JWE sealed to the patient): what `grant` takes.
    pub envelope: String,
    /// Height of the header proving the record's account (and its index entry).
    pub index_height: u64,
    /// The record's account on chain: nothing in it names the patient.
    pub account_id: String,
}

/// Steps of storing a record, reported to an [`crate::UploadProgress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum UploadStage {
    /// The record is sealed to the patient; `bytes_total` is the blob's size.
    Sealed,
    /// The blob is stored on the nodes.
    Uploaded,
    /// The index entry is submitted.
    IndexSubmitted,
    /// The index entry is committed and proven.
    Committed,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UploadEvent {
    pub stage: UploadStage,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// A standing grant, as proven on chain.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GrantInfo {
    pub grant_id: String,
    pub grantor_id: String,
    pub grantee_id: String,
    /// The blob the grantee may fetch (hex address).
    pub blob: String,
    pub parts: Vec<String>,
    pub actions: Vec<GrantAction>,
    pub not_after: u64,
    pub revoked: bool,
    /// Allows reading now.
    pub active: bool,
    /// Height of the header it is proven under.
    pub height: u64,
}

impl GrantInfo {
    pub(crate) fn new(proven: &emrshare_client::records::ProvenGrant) -> Self {
        let (entry, details) = (&proven.grant, &proven.details);
        Self {
            grant_id: proven.grant_id.clone(),
            grantor_id: details.patient.to_string(),
            grantee_id: details.grantee.to_string(),
            blob: entry.blob.to_hex(),
            parts: details.parts.clone(),
            actions: entry.actions.iter().map(|a| (*a).into()).collect(),
            not_after: entry.not_after,
            revoked: entry.revoked_at.is_some(),
            active: entry.allows(Action::Read, crate::now()),
            height: proven.height,
        }
    }
}

/// One logged access to a patient's record, proven under the record's account.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AccessEvent {
    pub height: u64,
    /// Who accessed it (null: the log's sealed details did not open).
    pub accessor_id: Option<String>,
    /// What was accessed, as the sealed log names it: a blob's address (hex) for a fetch,
    /// the record's ID for a record shared in a handshake.
    pub record_id: Option<String>,
    /// Why, as the accessor said (a handshake's purpose).
    pub purpose: Option<String>,
    pub action: GrantAction,
    pub at: u64,
    pub outcome: AccessOutcome,
    pub grant_id: Option<String>,
}

/// A record a requester fetched under a grant and verified.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FetchedRecord {
    pub record: VerifiedRecordInfo,
    pub grant: GrantInfo,
    pub doctor_lookup: LookupReport,
}

/// A presentation a requester verified: the record and the patient's key binding to this
/// requester and nonce.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VerifiedPresentation {
    pub record: VerifiedRecordInfo,
    pub doctor_lookup: LookupReport,
    pub patient_lookup: LookupReport,
}

/// An SD-JWT from the app, parsed (a malformed one is the app's error, not the record's).
pub(crate) fn parse_sd_jwt(text: &str) -> crate::error::Result<emrshare_core::ces::SdJwt> {
    emrshare_core::ces::SdJwt::parse(text).map_err(crate::error::from_ces)
}

/// The record's issuer is looked up among doctors and hospitals (the roles that issue
/// records). An app that names another role asks for an issuer that cannot be one: as for
/// any issuer not registered in a role that issues records, `NotRegistered`.
pub(crate) fn check_issuer_role(role: PartyRole) -> crate::error::Result<()> {
    match role {
        PartyRole::Doctor | PartyRole::Hospital => Ok(()),
        _ => Err(crate::error::EmrshareError::NotRegistered),
    }
}
