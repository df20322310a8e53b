//! A session's turn, claimed: the in-process lock (one turn per session in this instance, a
//! delete takes it over) and the store's claim across instances sharing the store, renewed
//! while the turn runs and released when it ends. A store owned by one instance grants every
//! claim at no cost.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::ApiError;
use crate::session::lock::TurnGuard;
use crate::store::Store;

/// Held for the length of a turn (or a history clear); releases both locks when dropped.
pub(crate) struct TurnClaim {
    guard: TurnGuard,
    renewal: Option<JoinHandle<()>>,
    release: Option<Release>,
}

/// The claim in the store: whose, on which session, for how long at a time.
struct Release {
    store: Arc<dyn Store>,
    session_id: String,
    owner: String,
    ttl: Duration,
}

impl TurnClaim {
    /// The token that stops this turn when the session is deleted under it (in this instance,
    /// or when the claim cannot be renewed).
    pub(crate) fn cancel_on_take_over(&mut self, cancel: &CancellationToken) {
        self.guard.cancel_on_take_over(cancel);
        if let (Some(claim), None) = (&self.release, &self.renewal) {
            self.renewal = Some(tokio::spawn(renew(
                Arc::clone(&claim.store),
                claim.session_id.clone(),
                claim.owner.clone(),
                claim.ttl,
                cancel.clone(),
            )));
        }
    }
}

impl TurnClaim {
    /// Releases the claim and waits until the store has it, so a request that follows this
    /// one's answer (on any instance) finds the session free.
    pub(crate) async fn release(mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if let Some(claim) = self.release.take()
            && let Err(error) = claim
                .store
                .release_turn(&claim.session_id, &claim.owner)
                .await
        {
            tracing::warn!(session_id = %claim.session_id, %error, "cannot release the session's turn claim");
        }
    }
}

impl Drop for TurnClaim {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if let Some(Release {
            store,
            session_id,
            owner,
            ..
        }) = self.release.take()
        {
            tokio::spawn(async move {
                if let Err(error) = store.release_turn(&session_id, &owner).await {
                    tracing::warn!(session_id, %error, "cannot release the session's turn claim");
                }
            });
        }
    }
}

/// Claims the session's turn, or 409 naming `busy` (what the caller could not do).
pub(super) async fn claim(
    state: &AppState,
    session_id: &str,
    busy: &str,
) -> Result<TurnClaim, ApiError> {
    let guard = state.locks.try_acquire(session_id).ok_or_else(|| {
        ApiError::Conflict(format!(
            "a chat turn is running on session `{session_id}`; {busy}"
        ))
    })?;
    if !state.store.shared() {
        return Ok(TurnClaim {
            guard,
            renewal: None,
            release: None,
        });
    }
    if !state
        .store
        .claim_turn(session_id, &state.instance_id, state.turn_claim_ttl)
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "a chat turn is running on session `{session_id}` on another agentd instance; {busy}"
        )));
    }
    Ok(TurnClaim {
        guard,
        renewal: None,
        release: Some(Release {
            store: Arc::clone(&state.store),
            session_id: session_id.to_owned(),
            owner: state.instance_id.clone(),
            ttl: state.turn_claim_ttl,
        }),
    })
}

/// Renews the claim until aborted; a claim lost to another instance (this one stalled past
/// the claim's time) cancels the turn.
async fn renew(
    store: Arc<dyn Store>,
    session_id: String,
    owner: String,
    ttl: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store.claim_turn(&session_id, &owner, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(
                    session_id,
                    "the session's turn claim was taken by another instance; stopping the turn"
                );
                cancel.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(session_id, %error, "cannot renew the session's turn claim")
            }
        }
    }
}
