//! Running code inside a named network namespace (`/run/netns/<name>`, as `ip netns`
//! makes them). A namespace is a property of a thread, so the code runs on a new thread
//! that enters the namespace first; the caller's thread is never moved.

use crate::SystemError;
use std::os::fd::AsRawFd;

/// Moves the calling thread into the named namespace. Use on a dedicated thread.
pub fn enter(name: &str) -> Result<(), SystemError> {
    let err = |source| SystemError::Netns {
        name: name.to_string(),
        source,
    };
    let file = std::fs::File::open(format!("/run/netns/{name}")).map_err(err)?;
    // SAFETY: setns on a valid namespace file descriptor affects only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs `f` on a new thread inside the named namespace and returns its result.
pub fn run_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SystemError> {
    let owned = name.to_string();
    std::thread::spawn(move || enter(&owned).map(|()| f()))
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs an async block on a current-thread tokio runtime inside the named namespace.
pub fn block_on_in<T, F>(
    name: &str,
    f: impl FnOnce() -> F + Send + 'static,
) -> Result<T, SystemError>
where
    T: Send + 'static,
    F: Future<Output = T>,
{
    let owned = name.to_string();
    run_in(name, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| SystemError::Netns {
                name: owned,
                source,
            })?;
        Ok(runtime.block_on(f()))
    })?
}

/// Runs an async block on a current-thread tokio runtime on a new thread in the caller's
/// namespace: usable from synchronous code whether or not a runtime is already running.
pub fn block_on<T, F>(f: impl FnOnce() -> F + Send + 'static) -> Result<T, SystemError>
where
    T: Send + 'static,
    F: Future<Output = T>,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| SystemError::Netns {
                name: "(current)".into(),
                source,
            })?;
        Ok(runtime.block_on(f()))
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Creates the named namespace (as `ip netns add` does) unless it exists.
pub fn ensure(name: &str) -> Result<(), SystemError> {
    if std::path::Path::new("/run/netns").join(name).exists() {
        return Ok(());
    }
    let err = |source| SystemError::Netns {
        name: name.to_string(),
        source,
    };
    let out = std::process::Command::new("ip")
        .args(["netns", "add", name])
        .output()
        .map_err(err)?;
    if !out.status.success() {
        return Err(err(std::io::Error::other(format!(
            "ip netns add: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))));
    }
    tracing::info!(netns = name, "created the overlay namespace");
    Ok(())
}
