//! The daemon's unix control socket and the one-shot client that talks to it.
//!
//! One request per connection, one JSON line each way:
//! `{"cmd": ["ping", "3"]}` -> `{"ok": true, "text": "...", "data": {...}}`, then, for
//! following commands, `{"line": "..."}` lines until the client hangs up.
//! `{"attach": "NAME", "pid": N}` is answered by [`signal::attach::grant`] with descriptors.
//!
//! The socket is created owner-only (0600, in a 0700 directory when viscript makes it), and every
//! connection's credentials are checked (SO_PEERCRED): only root and viscript's own user get in.

use crate::command::Command;
use crate::supervisor::{Handle, Reply};
use serde_json::{Value, json};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

/// Where the daemon listens when neither the flag nor the config names a socket.
pub fn default_socket() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/run/viscript/viscript.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => Path::new(&d).join("viscript.sock"),
        None => std::env::temp_dir()
            .join(format!("viscript-{}", rustix::process::geteuid().as_raw()))
            .join("viscript.sock"),
    }
}

/// Binds the control socket, refusing to steal one that a live daemon answers on.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    netbase::private_socket::bind(path, "viscript")
}

/// The connections being served. The daemon waits for them before it exits, so the answer to
/// `quit` (sent by the supervisor as its last act) still reaches the client.
#[derive(Debug, Clone, Default)]
pub struct Active(Arc<AtomicUsize>);

/// Counts one connection for as long as it lives.
pub(crate) struct Counted(Active);

impl Drop for Counted {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Active {
    pub(crate) fn enter(&self) -> Counted {
        self.0.fetch_add(1, Ordering::AcqRel);
        Counted(self.clone())
    }

    /// Connections being served now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Waits until no connection is being served, at most `limit` (a client that connected
    /// and sends nothing is not waited for). Returns whether they all ended.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let t = Instant::now();
        while self.count() > 0 {
            if t.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// Serves connections until the listener fails. Each connection gets its own thread and is
/// counted in `active` while it runs.
pub fn serve(listener: UnixListener, handle: Handle, active: Active) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let h = handle.clone();
        let counted = active.enter();
        let _ = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                let _counted = counted;
                if let Err(e) = connection(stream, &h) {
                    eprintln!("viscript: control connection: {e}");
                }
            });
    }
}

fn write_json(mut s: &UnixStream, v: &Value) -> io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    s.write_all(line.as_bytes())
}

fn connection(stream: UnixStream, h: &Handle) -> io::Result<()> {
    let cred = rustix::net::sockopt::socket_peercred(&stream)?;
    let me = rustix::process::geteuid();
    if cred.uid != me && !cred.uid.is_root() {
        return write_json(
            &stream,
            &json!({"ok": false, "text": "permission denied: not viscript's user or root"}),
        );
    }
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let req: Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(e) => {
            return write_json(
                &stream,
                &json!({"ok": false, "text": format!("bad request: {e}")}),
            );
        }
    };
    if let Some(name) = req.get("attach").and_then(Value::as_str) {
        if !signal::attach::valid_name(name) {
            return signal::attach::refuse(
                &stream,
                "component name must be 1-64 of [A-Za-z0-9._-]",
            );
        }
        // The pid comes from the kernel, not from the request.
        let pid = cred.pid.as_raw_nonzero().get() as u32;
        return match h.attach(name, pid) {
            Ok((id, fds)) => signal::attach::grant(&stream, id, &fds),
            Err(e) => signal::attach::refuse(&stream, &e),
        };
    }
    let tokens: Vec<String> = match req.get("cmd").and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let reply = match Command::parse(&tokens) {
        Ok(cmd) => h.call(cmd),
        Err(e) => return write_json(&stream, &json!({"ok": false, "text": e.0})),
    };
    write_json(&stream, &reply.to_json())?;
    if let Some(rx) = reply.follow {
        stream.set_nonblocking(true)?;
        loop {
            match rx.recv_timeout(Duration::from_millis(250)) {
                Ok(l) => {
                    stream.set_nonblocking(false)?;
                    write_json(&stream, &json!({"line": l}))?;
                    stream.set_nonblocking(true)?;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            // A client that hung up reads as EOF.
            let mut b = [0u8; 64];
            match (&stream).read(&mut b) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Runs one command against the daemon at `socket`. Prints the answer (text, or the JSON
/// object with `json`) and returns the process exit status.
pub fn one_shot(socket: &Path, tokens: &[String], as_json: bool) -> i32 {
    let stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "viscript: cannot reach the daemon at {}: {e}\n  is `viscript serve` running? (--socket picks another path)",
                socket.display()
            );
            return 2;
        }
    };
    if let Err(e) = write_json(&stream, &json!({"cmd": tokens})) {
        eprintln!("viscript: {e}");
        return 2;
    }
    let mut lines = BufReader::new(&stream).lines();
    let first = match lines.next() {
        Some(Ok(l)) => l,
        _ => {
            eprintln!("viscript: the daemon closed the connection without answering");
            return 2;
        }
    };
    let v: Value =
        serde_json::from_str(&first).unwrap_or_else(|_| json!({"ok": false, "text": first}));
    let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
    let text = v.get("text").and_then(Value::as_str).unwrap_or("");
    let code = if ok { 0 } else { 1 };
    let shown = if as_json {
        out(&v.to_string())
    } else if ok {
        text.is_empty() || out(text)
    } else {
        eprintln!("error: {text}");
        true
    };
    if !shown {
        return code;
    }
    if v.get("follow").and_then(Value::as_bool) == Some(true) {
        for l in lines {
            let Ok(l) = l else { break };
            let shown = if as_json {
                out(&l)
            } else if let Some(t) = serde_json::from_str::<Value>(&l)
                .ok()
                .and_then(|v| v.get("line").and_then(Value::as_str).map(str::to_owned))
            {
                out(&t)
            } else {
                true
            };
            if !shown {
                break;
            }
        }
    }
    code
}

/// Writes a line to stdout; false once nobody reads it any more (`viscript ru 1 | head` ends
/// quietly instead of failing on the closed pipe).
fn out(line: &str) -> bool {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}").and_then(|()| o.flush()).is_ok()
}

/// Prints a reply the way the console shows it.
pub fn print_reply(r: &Reply, as_json: bool) {
    if as_json {
        out(&r.to_console_json().to_string());
    } else if r.ok {
        if !r.text.is_empty() {
            out(&r.text);
        }
    } else {
        eprintln!("error: {}", r.text);
    }
}
