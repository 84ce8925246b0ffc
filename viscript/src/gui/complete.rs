//! Tab completion of the GUI's command line, from the console's command table
//! ([`crate::command::COMMANDS`]).

use crate::command::{COMMANDS, lookup};

/// Command names, sorted.
fn command_names() -> Vec<String> {
    let mut names: Vec<String> = COMMANDS.iter().map(|c| c.name.to_string()).collect();
    names.sort();
    names
}

fn common_prefix(words: &[String]) -> String {
    let Some(first) = words.first() else {
        return String::new();
    };
    let mut n = first.len();
    for w in &words[1..] {
        n = first
            .char_indices()
            .zip(w.chars())
            .take_while(|((_, a), b)| a == b)
            .map(|((i, a), _)| i + a.len_utf8())
            .last()
            .unwrap_or(0)
            .min(n);
    }
    first[..n].to_string()
}

/// The result of Tab on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The line after completing.
    pub line: String,
    /// Every candidate when the word is ambiguous.
    pub candidates: Vec<String>,
}

/// Completes the last word of `line`: command names first, then app names (after
/// `start`/`s`/`help`) or component ids (after the commands that take one).
pub fn complete(line: &str, apps: &[String], ids: &[u64]) -> Completion {
    let words: Vec<&str> = line.split_whitespace().collect();
    let fresh = line.is_empty() || line.ends_with(char::is_whitespace);
    let index = if fresh {
        words.len()
    } else {
        words.len().saturating_sub(1)
    };
    let word = if fresh {
        ""
    } else {
        words.last().copied().unwrap_or("")
    };
    let pool: Vec<String> = if index == 0 {
        command_names()
    } else {
        let cmd = words.first().copied().unwrap_or("");
        let flags_before = words[1..index].iter().all(|w| w.starts_with('-'));
        match cmd {
            "start" | "s" if flags_before && !word.starts_with('-') => apps.to_vec(),
            "help" | "?" if index == 1 => apps.to_vec(),
            c if lookup(c).is_some_and(|s| s.takes_id()) && index == 1 => {
                ids.iter().map(|i| i.to_string()).collect()
            }
            _ => Vec::new(),
        }
    };
    let candidates: Vec<String> = pool.into_iter().filter(|c| c.starts_with(word)).collect();
    let head = &line[..line.len() - word.len()];
    match candidates.len() {
        0 => Completion {
            line: line.to_string(),
            candidates,
        },
        1 => Completion {
            line: format!("{head}{} ", candidates[0]),
            candidates: Vec::new(),
        },
        _ => {
            let p = common_prefix(&candidates);
            Completion {
                line: format!("{head}{}", if p.len() > word.len() { &p } else { word }),
                candidates,
            }
        }
    }
}
