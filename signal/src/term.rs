//! Termination signals for the components' mains: SIGINT, SIGTERM and SIGHUP are blocked in the
//! calling thread (and so in every thread it spawns afterwards) and taken by one thread with
//! `sigwait`, which runs the caller's handler. Children spawned later get a clean mask (std's
//! spawn resets it; viscript's pre-exec does too).

/// SIGHUP's number, as a handler of [`on_signals`] sees it (a reload for the daemons).
pub const SIGHUP: i32 = libc::SIGHUP;

/// Blocks the termination signals and runs `on_signal(signo)` on a dedicated thread when one
/// arrives. Call it first thing in `main`, before any other thread exists.
pub fn on_termination(on_signal: impl FnOnce(i32) + Send + 'static) {
    let mut once = Some(on_signal);
    on_signals(move |sig| {
        if let Some(f) = once.take() {
            f(sig);
        }
        false
    });
}

/// [`on_termination`] for a handler that may go on waiting: `on_signal(signo)` runs for each
/// signal that arrives (SIGINT, SIGTERM or SIGHUP) until it returns false.
pub fn on_signals(mut on_signal: impl FnMut(i32) -> bool + Send + 'static) {
    // SAFETY: plain sigset manipulation on a local, then pthread_sigmask for this thread; no
    // other thread exists yet, and threads spawned later inherit the mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is an initialised sigset and `sig` a valid out pointer.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 || !on_signal(sig) {
                    break;
                }
            }
        });
}
