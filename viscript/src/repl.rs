//! The headless console: a line REPL with the supervisor running in this process. Works on a
//! terminal (rustyline: history, editing) and from a pipe (plain lines, no prompt).

use crate::command::{Command, tokenize};
use crate::control::print_reply;
use crate::supervisor::{Handle, Reply};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

/// Reads commands until `quit` or end of input, then stops every component. Returns the exit
/// status.
pub fn run(handle: &Handle, as_json: bool) -> i32 {
    let tty = std::io::stdin().is_terminal();
    let mut rl = if tty {
        rustyline::DefaultEditor::new().ok()
    } else {
        None
    };
    let stdin = std::io::stdin();
    let mut piped = stdin.lock().lines();
    loop {
        let line = match rl.as_mut() {
            Some(ed) => match ed.readline("viscript> ") {
                Ok(l) => {
                    let _ = ed.add_history_entry(l.as_str());
                    l
                }
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(_) => break,
            },
            None => match piped.next() {
                Some(Ok(l)) => l,
                _ => break,
            },
        };
        let tokens = match tokenize(&line) {
            Ok(t) if t.is_empty() => continue,
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let cmd = match Command::parse(&tokens) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let quit = cmd == Command::Quit;
        let reply = handle.call(cmd);
        print_reply(&reply, as_json);
        if quit {
            return 0;
        }
        if reply.follow.is_some() {
            follow(reply, &mut piped, rl.is_some());
        }
    }
    let r = handle.call(Command::Quit);
    print_reply(&r, as_json);
    0
}

/// Streams lines until the operator presses Enter (or input ends).
fn follow(reply: Reply, piped: &mut impl Iterator<Item = std::io::Result<String>>, tty: bool) {
    let Some(rx) = reply.follow else { return };
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let printer = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{l}");
                    let _ = out.flush();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    if tty {
        let mut l = String::new();
        let _ = std::io::stdin().read_line(&mut l);
    } else {
        let _ = piped.next();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = printer.join();
}
