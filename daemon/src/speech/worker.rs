//! A model owned by one thread: [`Worker`] loads it in the background and queues calls
//! to it, so blocking, CPU-heavy engines never run on the async runtime.

use tokio::sync::{oneshot, watch};
use vtuber_shared::ModelLoad;

use super::SpeechError;

type Job<T> = Box<dyn FnOnce(Result<&mut T, &SpeechError>) + Send>;

/// A model owned by one thread; calls are queued to it.
pub struct Worker<T> {
    tx: std::sync::mpsc::Sender<Job<T>>,
    load: watch::Receiver<ModelLoad>,
}

impl<T> Clone for Worker<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            load: self.load.clone(),
        }
    }
}

impl<T: 'static> Worker<T> {
    /// Starts the thread, which loads the model first, then serves calls in order.
    pub fn spawn(
        name: &str,
        load: impl FnOnce() -> Result<T, SpeechError> + Send + 'static,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job<T>>();
        let (load_tx, load_rx) = watch::channel(ModelLoad::Loading);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut model = load();
                let _ = load_tx.send(match &model {
                    Ok(_) => ModelLoad::Ready,
                    Err(e) => ModelLoad::Failed {
                        reason: format!("{e} ({})", e.hint()),
                    },
                });
                if let Err(e) = &model {
                    tracing::warn!("{e} ({})", e.hint());
                }
                while let Ok(job) = rx.recv() {
                    match &mut model {
                        Ok(m) => job(Ok(m)),
                        Err(e) => job(Err(e)),
                    }
                }
            });
        if let Err(e) = thread {
            tracing::error!("cannot start the {name} thread: {e}");
        }
        Self { tx, load: load_rx }
    }

    pub fn load_state(&self) -> ModelLoad {
        self.load.borrow().clone()
    }

    /// Waits until the model has loaded (or failed to).
    pub async fn loaded(&self) -> ModelLoad {
        let mut rx = self.load.clone();
        let _ = rx.wait_for(|l| !matches!(l, ModelLoad::Loading)).await;
        rx.borrow().clone()
    }

    /// Runs `f` on the model's thread.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut T) -> Result<R, SpeechError> + Send + 'static,
    ) -> Result<R, SpeechError> {
        let (tx, rx) = oneshot::channel();
        let job: Job<T> = Box::new(move |model| {
            let out = match model {
                Ok(m) => f(m),
                Err(e) => Err(e.clone()),
            };
            let _ = tx.send(out);
        });
        self.tx
            .send(job)
            .map_err(|_| SpeechError::inference("speech engine", "its thread has stopped"))?;
        rx.await
            .map_err(|_| SpeechError::inference("speech engine", "its thread has stopped"))?
    }
}
