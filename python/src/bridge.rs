//! Rust futures as asyncio futures, without Rust threads ever touching Python.
//!
//! A runtime thread that finished a future only queues the result and writes a byte to a
//! socket the event loop watches (`loop.add_reader`); the loop's thread then converts the
//! result and resolves the asyncio future. Taking the GIL on runtime threads instead (as
//! pyo3-async-runtimes does) crashes the interpreter when a completion races its
//! finalization: a foreign thread entering Python while it shuts down is killed mid-call
//! ("PyGILState_Release: thread state must be current", seen at exit of the example).
//!
//! Cancelling the asyncio future aborts the Rust task.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hyperswarm_bindings as b;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCFunction;
use pyo3::IntoPyObjectExt;

/// A finished future's result, converted on the loop's thread.
type Done = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// The half of a bridge runtime threads use: no Python objects in here.
struct Completions {
    done: Mutex<Vec<(u64, Done)>>,
    /// A wake-up byte is on its way (saves writing one per completion).
    woken: AtomicBool,
    wake: UnixStream,
}

impl Completions {
    fn complete(&self, id: u64, done: Done) {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, done));
        if !self.woken.swap(true, Ordering::AcqRel) {
            // Non-blocking: a full socket already holds a wake-up.
            let _ = (&self.wake).write(&[1]);
        }
    }
}

/// One event loop's end of the bridge.
#[pyclass(module = "hyperswarm._native", frozen)]
pub struct Bridge {
    completions: Arc<Completions>,
    woken_by: UnixStream,
    /// Futures handed to Python and not resolved yet, by id. Touched on the loop's thread.
    futures: Mutex<HashMap<u64, Py<PyAny>>>,
    next_id: Mutex<u64>,
}

#[pymethods]
impl Bridge {
    /// Resolves the futures whose Rust side finished (the loop calls it when the socket
    /// is readable).
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        let mut buf = [0u8; 64];
        while matches!((&self.woken_by).read(&mut buf), Ok(n) if n > 0) {}
        // Reset before taking: a completion after this point writes a new byte.
        self.completions.woken.store(false, Ordering::Release);
        let done = std::mem::take(
            &mut *self
                .completions
                .done
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for (id, result) in done {
            let fut = self
                .futures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            // Gone: cancelled meanwhile.
            let Some(fut) = fut else { continue };
            let fut = fut.bind(py);
            let resolve = || -> PyResult<()> {
                if fut.call_method0("done")?.is_truthy()? {
                    return Ok(());
                }
                match result(py) {
                    Ok(v) => fut.call_method1("set_result", (v,))?,
                    Err(e) => fut.call_method1("set_exception", (e.into_value(py),))?,
                };
                Ok(())
            };
            // One future failing to resolve must not strand the others.
            if let Err(e) = resolve() {
                e.write_unraisable(py, Some(fut));
            }
        }
        Ok(())
    }
}

impl Bridge {
    fn new() -> PyResult<Self> {
        let (woken_by, wake) = UnixStream::pair()?;
        woken_by.set_nonblocking(true)?;
        wake.set_nonblocking(true)?;
        Ok(Bridge {
            completions: Arc::new(Completions {
                done: Mutex::new(Vec::new()),
                woken: AtomicBool::new(false),
                wake,
            }),
            woken_by,
            futures: Mutex::new(HashMap::new()),
            next_id: Mutex::new(0),
        })
    }
}

/// The bridge of the running event loop, made and registered on first use.
fn bridge<'py>(py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, Bridge>)> {
    static BRIDGES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static GET_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let get_loop = GET_LOOP.get_or_try_init(py, || {
        py.import("asyncio")?
            .getattr("get_running_loop")
            .map(Bound::unbind)
    })?;
    // Raises RuntimeError("no running event loop") outside a coroutine.
    let event_loop = get_loop.bind(py).call0()?;
    let bridges = BRIDGES
        .get_or_try_init(py, || {
            // Weak on the loop: a closed and dropped loop takes its bridge with it.
            py.import("weakref")?
                .getattr("WeakKeyDictionary")?
                .call0()
                .map(Bound::unbind)
        })?
        .bind(py);
    if let Ok(found) = bridges.get_item(&event_loop) {
        return Ok((event_loop, found.cast_into::<Bridge>()?));
    }
    let bridge = Bound::new(py, Bridge::new()?)?;
    let fd = bridge.get().woken_by.as_raw_fd();
    event_loop.call_method1("add_reader", (fd, bridge.getattr("drain")?))?;
    bridges.set_item(&event_loop, &bridge)?;
    Ok((event_loop, bridge))
}

/// Runs `fut` on the facade's runtime; returns an asyncio future of the running loop that
/// resolves with its result. Must be called on the loop's thread (from a coroutine).
pub fn awaitable<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let (event_loop, bridge) = bridge(py)?;
    let py_fut = event_loop.call_method0("create_future")?;
    let this = bridge.get();
    let id = {
        let mut next = this.next_id.lock().unwrap_or_else(|e| e.into_inner());
        *next += 1;
        *next
    };
    this.futures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, py_fut.clone().unbind());
    let completions = this.completions.clone();
    let task = b::runtime().spawn(async move {
        let res = fut.await;
        completions.complete(id, Box::new(move |py| res.and_then(|v| v.into_py_any(py))));
    });
    let abort = task.abort_handle();
    let bridge_ref = bridge.clone().unbind();
    let on_done = PyCFunction::new_closure(py, None, None, move |args, _kwargs| -> PyResult<()> {
        let fut = args.get_item(0)?;
        if fut.call_method0("cancelled")?.is_truthy()? {
            abort.abort();
            bridge_ref
                .get()
                .futures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
        Ok(())
    })?;
    py_fut.call_method1("add_done_callback", (on_done,))?;
    Ok(py_fut)
}
