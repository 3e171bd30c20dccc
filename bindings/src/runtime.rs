//! The one tokio runtime every handle of this crate runs on, whatever the host's own
//! event loop or executor.

use std::future::Future;
use std::sync::LazyLock;

use tokio::runtime::{Builder, Runtime};

use crate::error::{Error, ErrorCode, Result};

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    Builder::new_multi_thread()
        // Networking is light on CPU; two workers keep a host process small.
        .worker_threads(2)
        .thread_name("hyperswarm-rt")
        .enable_all()
        .build()
        // Without threads or timers nothing here can work; there is no better answer.
        .expect("starting the hyperswarm tokio runtime")
});

/// The process-wide runtime (started on first use).
pub fn runtime() -> &'static Runtime {
    &RUNTIME
}

/// Runs `fut` on the binding's runtime and waits for it from any executor. A panic in
/// it becomes `ERR_INTERNAL` instead of unwinding into the host.
pub async fn run<T, F>(fut: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    match RUNTIME.spawn(fut).await {
        Ok(r) => r,
        Err(e) => Err(Error::new(ErrorCode::Internal, format!("task failed: {e}"))),
    }
}

/// Blocks the calling (host) thread on `fut`, run on the binding's runtime. For hosts
/// whose constructors are synchronous; never call it from a runtime thread.
pub fn block_on<T, F>(fut: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::new(
            ErrorCode::Internal,
            "a blocking call was made from inside an async runtime",
        ));
    }
    RUNTIME.block_on(run(fut))
}
