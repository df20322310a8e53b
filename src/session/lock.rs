//! One turn at a time per session: a second chat on a busy session is refused with 409
//! rather than queued, so a client never waits behind a turn it cannot see. Deleting a session
//! takes its lock over: the running turn is cancelled and the delete waits for it to end, so
//! no row of the session is written after the delete.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::ids::{Id, IdMap};

/// Per-session locks, created on demand and dropped when no turn holds them.
#[derive(Default)]
pub struct TurnLocks {
    slots: Mutex<Slots>,
}

/// Size of the lock map below which locks nobody holds are not swept out.
const FIRST_SWEEP: usize = 1024;

/// The locks, and the size at which the next sweep runs: twice what the last one kept, so
/// with many turns running at once the map is not scanned on every acquire.
struct Slots {
    map: IdMap<Id, Arc<Slot>>,
    sweep_at: usize,
}

impl Default for Slots {
    fn default() -> Self {
        Self {
            map: IdMap::default(),
            sweep_at: FIRST_SWEEP,
        }
    }
}

/// One session's lock, and how to stop the turn that holds it.
struct Slot {
    turn: Arc<Semaphore>,
    stop: Mutex<Stop>,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            turn: Arc::new(Semaphore::new(1)),
            stop: Mutex::new(Stop::default()),
        }
    }
}

#[derive(Default)]
struct Stop {
    /// Cancels the turn holding the lock, once it has said how.
    turn: Option<CancellationToken>,
    /// Set by a take-over: a turn that registers after it is cancelled at once.
    doomed: bool,
}

impl Slot {
    fn stop(&self) -> std::sync::MutexGuard<'_, Stop> {
        self.stop.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Held for the length of a turn; releases the session when dropped.
pub struct TurnGuard {
    slot: Arc<Slot>,
    _permit: OwnedSemaphorePermit,
}

impl TurnGuard {
    /// The token that stops this turn when the session is deleted under it.
    pub fn cancel_on_take_over(&self, cancel: &CancellationToken) {
        let mut stop = self.slot.stop();
        if stop.doomed {
            cancel.cancel();
        }
        stop.turn = Some(cancel.clone());
    }
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        // Before the permit goes (fields drop after this): the next holder starts clean.
        *self.slot.stop() = Stop::default();
    }
}

impl TurnLocks {
    /// Takes the session's lock, or `None` when a turn is already running on it.
    pub fn try_acquire(&self, session_id: &str) -> Option<TurnGuard> {
        let slot = self.slot(session_id);
        let permit = Arc::clone(&slot.turn).try_acquire_owned().ok()?;
        Some(TurnGuard {
            slot,
            _permit: permit,
        })
    }

    /// Takes the session's lock from whatever holds it: the running turn is cancelled (its
    /// calls end `cancelled`, its history stays well-formed) and this waits for it to end.
    pub async fn take_over(&self, session_id: &str) -> TurnGuard {
        let slot = self.slot(session_id);
        {
            let mut stop = slot.stop();
            stop.doomed = true;
            if let Some(turn) = &stop.turn {
                turn.cancel();
            }
        }
        let permit = Arc::clone(&slot.turn)
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"));
        *slot.stop() = Stop::default();
        TurnGuard {
            slot,
            _permit: permit,
        }
    }

    fn slot(&self, session_id: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget locks nobody holds, so the map does not grow with every session ever seen.
        if slots.map.len() > slots.sweep_at {
            slots.map.retain(|_, slot| Arc::strong_count(slot) > 1);
            slots.sweep_at = (2 * slots.map.len()).max(FIRST_SWEEP);
        }
        Arc::clone(slots.map.entry(Id::new(session_id)).or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_until_first_is_dropped() {
        let locks = TurnLocks::default();
        let first = locks.try_acquire("s").expect("free");
        assert!(locks.try_acquire("s").is_none());
        assert!(locks.try_acquire("other").is_some());
        drop(first);
        assert!(locks.try_acquire("s").is_some());
    }

    #[tokio::test]
    async fn take_over_cancels_the_holder_and_waits_for_it() {
        let locks = Arc::new(TurnLocks::default());
        let turn = locks.try_acquire("s").expect("free");
        let cancel = CancellationToken::new();
        turn.cancel_on_take_over(&cancel);
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let holder = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                cancel.cancelled().await;
                let _ = ended_tx.send(());
                drop(turn);
            }
        });
        let taken = locks.take_over("s").await;
        assert!(cancel.is_cancelled());
        ended
            .await
            .expect("the holder ended before the take-over returned");
        holder.await.unwrap();
        assert!(locks.try_acquire("s").is_none(), "the take-over holds it");
        drop(taken);
        let next = locks.try_acquire("s").expect("free again");
        let fresh = CancellationToken::new();
        next.cancel_on_take_over(&fresh);
        assert!(!fresh.is_cancelled(), "a later turn is not doomed");
    }

    #[tokio::test]
    async fn a_turn_that_registers_after_a_take_over_began_is_cancelled_at_once() {
        let locks = Arc::new(TurnLocks::default());
        let turn = locks.try_acquire("s").expect("free");
        let waiting = tokio::spawn({
            let locks = Arc::clone(&locks);
            async move { drop(locks.take_over("s").await) }
        });
        tokio::task::yield_now().await;
        while !waiting.is_finished() && !turn.slot.stop().doomed {
            tokio::task::yield_now().await;
        }
        let cancel = CancellationToken::new();
        turn.cancel_on_take_over(&cancel);
        assert!(cancel.is_cancelled());
        drop(turn);
        waiting.await.unwrap();
    }
}
