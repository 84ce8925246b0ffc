//! viscript: the supervisor, signal server and operator console of a Skywire router.

// unsafe only in `proc` (process spawning and signalling), each block with a SAFETY note.
#![deny(unsafe_code)]

pub mod cli;
pub mod command;
pub mod config;
pub mod control;
pub mod gui;
pub mod lifecycle;
pub mod logbuf;
pub mod loglevel;
pub mod metrics;
pub mod notify;
#[allow(unsafe_code)] // fork/exec and signals through pidfds
pub mod proc;
pub mod render;
pub mod repl;
pub mod reply;
pub mod supervisor;
pub mod units;
