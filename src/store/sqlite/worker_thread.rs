//! A named thread fed through a channel, owned by a handle: dropping the handle closes the
//! channel (the thread's loop ends when it sees that) and joins the thread, so whatever the
//! thread owns (a SQLite connection) is closed when the drop returns.

use std::sync::mpsc;
use std::thread::JoinHandle;

pub(super) struct WorkerThread<M> {
    sender: Option<mpsc::Sender<M>>,
    thread: Option<JoinHandle<()>>,
}

impl<M: Send + 'static> WorkerThread<M> {
    /// Starts `body` on a thread called `name`, with the receiving end of the channel.
    pub(super) fn spawn(
        name: &str,
        body: impl FnOnce(mpsc::Receiver<M>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || body(receiver))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Sends a message; gives it back if the thread is gone.
    pub(super) fn send(&self, message: M) -> Result<(), M> {
        match &self.sender {
            Some(sender) => sender.send(message).map_err(|e| e.0),
            None => Err(message),
        }
    }
}

impl<M> Drop for WorkerThread<M> {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
