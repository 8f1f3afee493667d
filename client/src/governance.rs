//! Governance flows beyond a party's own admission ([`Party::admission`],
//! [`Party::submit_admission`]): council members approving and sending proposals (an
//! institution suspended, reinstated or expelled), a hospital governing its doctors, and
//! key rotation for every party.

use crate::error::{ClientError, Result};
use crate::party::{Party, now};
use crate::transport::Transport;
use emrshare_core::PrivateKeySet;
use emrshare_core::account::Account;
use emrshare_core::keys::PartyId;
use emrshare_core::ledger::governance::{Approval, GovAction, Proposal, Status};
use emrshare_core::ledger::tx::TxBody;
use emrshare_core::ledger::verify::VerifiedEntry;
use std::time::Duration;

/// A council member's approval of `proposal`, with its council key (`member`: its ID and
/// the signing key the council lists for it). Offline: the member reads the proposal, decides,
/// and hands the approval back to whoever submits it.
pub fn approve(proposal: &Proposal, member: &PrivateKeySet) -> Approval {
    proposal.approve(&member.id, &member.signing)
}

/// The proposal, on the chain `chain_id`, that sets `target`'s status (see
/// [`Party::status_proposal`]).
pub fn status_proposal(
    chain_id: &str,
    target: &PartyId,
    status: Status,
    expires_at: u64,
) -> Result<Proposal> {
    if status == Status::Revoked {
        return Err(ClientError::Invalid(
            "the council suspends, reinstates or expels; a party revokes only itself",
        ));
    }
    Ok(Proposal::new(
        chain_id,
        expires_at,
        GovAction::SetStatus {
            id: target.clone(),
            status,
        },
    ))
}

impl<T: Transport> Party<T> {
    /// The proposal that sets `target`'s status (an institution or a doctor: `suspended`,
    /// `active` again, or `expelled`, which is final), for t council members to approve
    /// before `expires_at`; a council member sends it ([`Party::submit_governance`]).
    pub fn status_proposal(
        &self,
        target: &PartyId,
        status: Status,
        expires_at: u64,
    ) -> Result<Proposal> {
        status_proposal(
            &self.client().config().genesis.chain_id,
            target,
            status,
            expires_at,
        )
    }

    /// As a council member (this party's keys are its council keys): sends an approved
    /// proposal other than an admission (an admission is sent by the admitted party,
    /// [`Party::submit_admission`]). For a change of status, waits until the registry proves
    /// it and returns the target's entry; otherwise returns `None` once committed.
    pub async fn submit_governance(
        &self,
        proposal: Proposal,
        approvals: Vec<Approval>,
    ) -> Result<Option<VerifiedEntry>> {
        let wanted = match &proposal.action {
            GovAction::Admit { .. } => {
                return Err(ClientError::Invalid(
                    "an admission is sent by the admitted party itself",
                ));
            }
            GovAction::SetStatus { id, status } => Some((id.clone(), *status)),
            GovAction::SetCouncil { .. } => None,
        };
        self.commit(|account| Ok((account.govern(proposal, approvals), ())))
            .await?;
        match wanted {
            Some((id, status)) => Ok(Some(self.wait_status(&id, status).await?)),
            None => Ok(None),
        }
    }

    /// As a hospital: suspends, reinstates (`active`) or expels one of its doctors, and waits
    /// until the registry proves it.
    pub async fn set_doctor_status(
        &self,
        doctor: &PartyId,
        status: Status,
    ) -> Result<VerifiedEntry> {
        if status == Status::Revoked {
            return Err(ClientError::Invalid(
                "a hospital suspends, reinstates or expels; a doctor revokes only itself",
            ));
        }
        self.commit(|account| Ok((account.set_doctor_status(doctor, status), ())))
            .await?;
        self.wait_status(doctor, status).await
    }

    /// Rotates this party's keys to `new_keys` (same ID): an `UpdateKeys` signed with the
    /// current key, committed; then the party signs with the new keys, and keeps the old
    /// ones (retired) to open what was sealed to them. Waits until the registry proves the
    /// new keys; returns the entry. On any failure before the commit the party keeps its
    /// current keys; a rotation whose commit is seen late (after a timeout) is detected
    /// by asking the chain for the sequence number once more.
    pub async fn rotate_keys(&self, new_keys: PrivateKeySet) -> Result<VerifiedEntry> {
        let id = self.id();
        if new_keys.id != id {
            return Err(ClientError::Invalid("new keys must keep the party's ID"));
        }
        let new_public = new_keys.public();
        if self.with_keys(|k| k.public()) == new_public {
            return Err(ClientError::Invalid("the new keys are the current ones"));
        }
        {
            let _writing = self.write_lock().await;
            let next = self.client().next_sequence(&id).await?;
            let tx = self.with_account_mut(|account| {
                account.set_next_sequence(next);
                account.sign(TxBody::UpdateKeys {
                    id: id.clone(),
                    signing_jwk: new_public.signing.to_jwk(None),
                    encryption_jwk: new_public.encryption.to_jwk(None),
                })
            });
            let sequence = tx.transaction().sequence;
            self.client().submit(&tx).await?;
            let committed = self
                .client()
                .wait_sequence(&id, sequence, self.settings().commit_timeout)
                .await;
            if committed.is_err()
                && !self
                    .client()
                    .next_sequence(&id)
                    .await
                    .is_ok_and(|n| n > sequence)
            {
                return Err(ClientError::Timeout);
            }
            // Committed: from now on the party signs with the new keys.
            let chain = self.client().config().genesis.chain_id.clone();
            let old = self.with_account_mut(|account| {
                std::mem::replace(account, Account::new(new_keys, &chain, sequence + 1))
            });
            self.retire(old);
        }
        self.wait_entry(&id, |entry| {
            entry
                .public_keys()
                .is_ok_and(|keys| keys.signing == new_public.signing)
        })
        .await
    }

    /// Waits until the registry proves `id` with `status`.
    async fn wait_status(&self, id: &PartyId, status: Status) -> Result<VerifiedEntry> {
        self.wait_entry(id, |entry| entry.status() == status).await
    }

    /// Polls the registry (proven lookups) until `id`'s entry satisfies `done`, within the
    /// commit timeout: a node may answer from a height before the commit.
    pub(crate) async fn wait_entry(
        &self,
        id: &PartyId,
        done: impl Fn(&VerifiedEntry) -> bool,
    ) -> Result<VerifiedEntry> {
        let deadline = tokio::time::Instant::now() + self.settings().commit_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let entry = self
                .client()
                .wait_registered(id, left.max(Duration::from_millis(1)))
                .await
                .map_err(|_| ClientError::Timeout)?;
            if done(&entry) {
                return Ok(entry);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Unix seconds `days` days from now (a proposal's expiry, an admission's end).
pub fn days_from_now(days: u64) -> u64 {
    now().saturating_add(days.saturating_mul(24 * 3600))
}
