//! The council's side of governance (DESIGN 3): a member reads a proposal and approves it
//! with its council key. In a real consortium the node operators do this on their own
//! machines; these functions let an app (or a test against a local consortium) do it too.

use crate::error::{EmrshareError, Result, invalid};
use crate::types::PartyRole;
use emrshare_core::PrivateKeySet;
use emrshare_core::ledger::governance::{GovAction, Proposal};
use emrshare_core::ledger::tx::Role;

/// What a governance proposal does, for a council member to read before approving.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProposalInfo {
    /// The proposal's nonce (the chain refuses it once used).
    pub proposal_id: String,
    pub chain_id: String,
    /// Unix seconds after which it can no longer be applied.
    pub expires_at: u64,
    /// `admit`, `set_status` or `set_council`.
    pub kind: String,
    /// The party admitted, or whose status changes (none for a change of council).
    pub subject_id: Option<String>,
    /// For an admission: the role (none for a node operator).
    pub role: Option<PartyRole>,
    /// For an admission: the validity, Unix seconds.
    pub valid_from: Option<u64>,
    pub valid_until: Option<u64>,
    /// For an admission: whether it publishes a voucher key (a hospital's).
    pub has_voucher_key: bool,
    /// For a change of status: `active`, `suspended` or `expelled`.
    pub status: Option<String>,
}

fn parse_proposal(proposal_json: &str) -> Result<Proposal> {
    emrshare_core::strict_json::parse(proposal_json.as_bytes())
        .map_err(|_| invalid("not a governance proposal"))
}

/// Reads a proposal (JSON, e.g. an institution's `admission_request`) for a council member
/// to decide on.
#[uniffi::export]
pub fn describe_proposal(proposal_json: String) -> Result<ProposalInfo> {
    let p = parse_proposal(&proposal_json)?;
    let mut info = ProposalInfo {
        proposal_id: p.proposal_id.clone(),
        chain_id: p.chain_id.clone(),
        expires_at: p.expires_at,
        kind: String::new(),
        subject_id: None,
        role: None,
        valid_from: None,
        valid_until: None,
        has_voucher_key: false,
        status: None,
    };
    match &p.action {
        GovAction::Admit {
            id,
            role,
            valid_from,
            valid_until,
            voucher_key,
            ..
        } => {
            info.kind = "admit".into();
            info.subject_id = Some(id.to_string());
            info.role = match role {
                Role::Hospital => Some(PartyRole::Hospital),
                Role::Insurer => Some(PartyRole::Insurer),
                Role::Researcher => Some(PartyRole::Researcher),
                Role::Doctor => Some(PartyRole::Doctor),
                Role::Patient => Some(PartyRole::Patient),
                Role::Node => None,
            };
            info.valid_from = Some(*valid_from);
            info.valid_until = Some(*valid_until);
            info.has_voucher_key = voucher_key.is_some();
        }
        GovAction::SetStatus { id, status } => {
            info.kind = "set_status".into();
            info.subject_id = Some(id.to_string());
            info.status = serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
        }
        GovAction::SetCouncil { .. } => info.kind = "set_council".into(),
    }
    Ok(info)
}

/// A council member's approval (JSON) of `proposal_json`, signed with the member's council
/// key: `member_keys_json` is its private key set (a node's `node.key.json`: its ID and
/// signing key). The chain counts it only if that member is in the council with that key.
#[uniffi::export]
pub fn approve_proposal(proposal_json: String, member_keys_json: String) -> Result<String> {
    let proposal = parse_proposal(&proposal_json)?;
    let member = PrivateKeySet::from_json(member_keys_json.as_bytes())
        .map_err(|_| invalid("not a council member's private key set"))?;
    let approval = emrshare_client::governance::approve(&proposal, &member);
    serde_json::to_string(&approval).map_err(|_| EmrshareError::Internal {
        reason: "an approval does not serialize".into(),
    })
}
