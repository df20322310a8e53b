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

/// How long a claim lasts without renewal: an instance that dies holds its sessions this long.
pub(super) const CLAIM_TTL: Duration = Duration::from_secs(30);
/// How often a running turn renews its claim.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Held for the length of a turn (or a history clear); releases both locks when dropped.
pub(crate) struct TurnClaim {
    guard: TurnGuard,
    renewal: Option<JoinHandle<()>>,
    release: Option<(Arc<dyn Store>, String, String)>,
}

impl TurnClaim {
    /// The token that stops this turn when the session is deleted under it (in this instance,
    /// or when the claim cannot be renewed).
    pub(crate) fn cancel_on_take_over(&mut self, cancel: &CancellationToken) {
        self.guard.cancel_on_take_over(cancel);
        if let (Some((store, session_id, owner)), None) = (&self.release, &self.renewal) {
            self.renewal = Some(tokio::spawn(renew(
                Arc::clone(store),
                session_id.clone(),
                owner.clone(),
                cancel.clone(),
            )));
        }
    }
}

impl Drop for TurnClaim {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if let Some((store, session_id, owner)) = self.release.take() {
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
        .claim_turn(session_id, &state.instance_id, CLAIM_TTL)
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "a chat turn is running on session `{session_id}` on another agentd instance; {busy}"
        )));
    }
    Ok(TurnClaim {
        guard,
        renewal: None,
        release: Some((
            Arc::clone(&state.store),
            session_id.to_owned(),
            state.instance_id.clone(),
        )),
    })
}

/// Renews the claim until aborted; a claim lost to another instance (this one stalled past
/// the claim's time) cancels the turn.
async fn renew(
    store: Arc<dyn Store>,
    session_id: String,
    owner: String,
    cancel: CancellationToken,
) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match store.claim_turn(&session_id, &owner, CLAIM_TTL).await {
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
