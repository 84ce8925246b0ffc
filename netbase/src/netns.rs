//! Network namespaces for tests.

/// Runs `f` on a fresh thread inside a new network namespace. Returns false (test skipped) if
/// namespaces are not permitted.
pub fn in_netns<F: FnOnce() + Send + 'static>(f: F) -> bool {
    let h = std::thread::spawn(move || {
        // SAFETY: NEWNET only changes this thread's network namespace; it does not unshare the
        // fd table, so no fd invariants change.
        match unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) } {
            Ok(()) => {}
            Err(rustix::io::Errno::PERM) => {
                eprintln!("skipping: unshare(CLONE_NEWNET) not permitted");
                return false;
            }
            Err(e) => panic!("unshare: {e}"),
        }
        f();
        true
    });
    match h.join() {
        Ok(ran) => ran,
        Err(p) => std::panic::resume_unwind(p),
    }
}
