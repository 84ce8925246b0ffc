pub mod command;
pub mod config;
pub mod control;
pub mod gui;
pub mod logbuf;
pub mod proc;
pub mod repl;
pub mod supervisor;
