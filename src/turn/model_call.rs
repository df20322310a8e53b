//! One model call of a turn: the answer whole, or streamed with its text forwarded as turn
//! events, within `limits.max_answer_time` and the turn's cancellation.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::provider::{ModelRequest, ModelResponse, ProviderError, StreamEvent};
use crate::turn::{Engine, TurnError, TurnEvent};

impl Engine {
    pub(super) async fn call_model(
        &self,
        request: &ModelRequest<'_>,
        events: Option<&mpsc::Sender<TurnEvent>>,
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, TurnError> {
        let call = async {
            let Some(events) = events else {
                return self.provider.complete(request).await;
            };
            let mut stream = self.provider.stream(request).await?;
            while let Some(event) = stream.next().await {
                match event? {
                    StreamEvent::Text(text) => {
                        // A slow client holds the model's stream here, not in a buffer.
                        let _ = events.send(TurnEvent::Text(text)).await;
                    }
                    StreamEvent::Done(response) => return Ok(response),
                }
            }
            Err(ProviderError::Protocol(
                "stream ended without an answer".into(),
            ))
        };
        let most = self.limits.max_answer_time;
        tokio::select! {
            result = tokio::time::timeout(most, call) => match result {
                Ok(answer) => Ok(answer?),
                Err(_elapsed) => {
                    tracing::warn!(limit = ?most, "model answer took longer than limits.max_answer_time");
                    Err(ProviderError::Timeout(most).into())
                }
            },
            () = cancel.cancelled() => Err(TurnError::Cancelled),
        }
    }
}

/// Sends a streamed turn's event, waiting while a slow client catches up, but never past the
/// turn's cancellation (a delete, a drain, the client gone): a client that stops reading
/// cannot hold a turn that is told to stop.
pub(super) async fn emit(
    events: &mpsc::Sender<TurnEvent>,
    event: TurnEvent,
    cancel: &CancellationToken,
) {
    tokio::select! {
        _ = events.send(event) => {}
        () = cancel.cancelled() => {}
    }
}
