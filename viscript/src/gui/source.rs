//! Where the GUI gets its answers: a running `viscript serve` (through the control socket) or a
//! supervisor in this process. Both answer a command (tokens, as typed) with the same JSON
//! object the control socket sends: `{"ok": bool, "text": "...", "data": ..., "follow": bool}`.

use crate::command::Command;
use crate::supervisor::{Handle, Reply};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Something that runs console commands.
pub trait Source: Send + Sync {
    /// Runs one command and returns the reply object. Never panics; failures come back as
    /// `{"ok": false, "text": "..."}`.
    fn call(&self, tokens: &[String]) -> Value;
    /// A short description for the title bar.
    fn describe(&self) -> String;
    /// Whether quitting the GUI stops the components (the supervisor lives in this process).
    fn embedded(&self) -> bool;
}

/// An error reply in the protocol's shape.
pub fn error_reply(text: impl Into<String>) -> Value {
    crate::render::error_json(text)
}

/// A `viscript serve` daemon reached through its control socket.
pub struct Remote {
    /// The daemon's control socket.
    pub socket: PathBuf,
    /// How long one answer may take (sd and restart wait for the component).
    pub timeout: Duration,
}

impl Remote {
    /// A daemon at `socket`.
    pub fn new(socket: PathBuf) -> Remote {
        Remote {
            socket,
            timeout: Duration::from_secs(60),
        }
    }

    /// Whether a daemon answers on the socket.
    pub fn reachable(&self) -> bool {
        UnixStream::connect(&self.socket).is_ok()
    }

    fn try_call(&self, tokens: &[String]) -> std::io::Result<Value> {
        let stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let mut line = json!({ "cmd": tokens }).to_string();
        line.push('\n');
        (&stream).write_all(line.as_bytes())?;
        let mut first = String::new();
        BufReader::new(&stream).read_line(&mut first)?;
        if first.is_empty() {
            return Ok(error_reply(
                "the daemon closed the connection without answering",
            ));
        }
        // Following replies (`logs -f`, `attach`, `start -a`) stream further lines; the GUI
        // shows logs in its own pane, so the stream is closed here (the daemon sees EOF).
        Ok(serde_json::from_str(&first).unwrap_or_else(|_| error_reply(first.trim_end())))
    }
}

impl Source for Remote {
    fn call(&self, tokens: &[String]) -> Value {
        self.try_call(tokens).unwrap_or_else(|e| {
            error_reply(format!(
                "cannot reach the daemon at {}: {e}",
                self.socket.display()
            ))
        })
    }

    fn describe(&self) -> String {
        format!("daemon {}", self.socket.display())
    }

    fn embedded(&self) -> bool {
        false
    }
}

/// The supervisor running in this process.
pub struct Embedded {
    /// Its handle.
    pub handle: Handle,
}

/// The JSON object the control socket would send for `r`.
pub fn reply_json(r: &Reply) -> Value {
    r.to_json()
}

impl Source for Embedded {
    fn call(&self, tokens: &[String]) -> Value {
        match Command::parse(tokens) {
            // The follow receiver (if any) is dropped with the reply, which ends the stream.
            Ok(cmd) => reply_json(&self.handle.call(cmd)),
            Err(e) => error_reply(e.0),
        }
    }

    fn describe(&self) -> String {
        "embedded supervisor".into()
    }

    fn embedded(&self) -> bool {
        true
    }
}
