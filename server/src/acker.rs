//! Waits for receipts on a thread of its own and hands each outcome to the
//! async task that asked. Receipts complete in LSN order, so one thread
//! waiting on them in turn keeps up with any number of requests.

use auditlog::{LsnRange, Receipt, Result};
use crossbeam_channel::{unbounded, Sender};
use tokio::sync::oneshot;

type Job = (Receipt, oneshot::Sender<Result<LsnRange>>);

pub struct Acker {
    tx: Option<Sender<Job>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Acker {
    pub fn start() -> std::io::Result<Acker> {
        let (tx, rx) = unbounded::<Job>();
        let handle = std::thread::Builder::new()
            .name("auditlog-serve-acker".into())
            .spawn(move || {
                for (receipt, reply) in rx {
                    let _ = reply.send(receipt.wait());
                }
            })?;
        Ok(Acker {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// The receipt's outcome, once it has one.
    pub async fn wait(&self, receipt: Receipt) -> Result<LsnRange> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.as_ref().map(|tx| tx.send((receipt, reply)));
        if !matches!(sent, Some(Ok(()))) {
            return Err(auditlog::Error::Closed);
        }
        rx.await.unwrap_or(Err(auditlog::Error::Closed))
    }
}

impl Drop for Acker {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
