//! Operator commands: tokenizing a typed line (quotes and case kept) and parsing it.

use crate::loglevel::Level;
use std::fmt;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `apps`: the catalogue.
    Apps,
    /// `help [app]`.
    Help(Option<String>),
    /// `start|s [-a] [-w] APP [ARGS...]`.
    Start {
        /// App name from the config.
        app: String,
        /// Replaces the app's default_args when `Some`.
        args: Option<Vec<String>>,
        /// Stream its output after starting.
        attach: bool,
        /// Wait until it registers.
        wait: bool,
    },
    /// `list|la`.
    List,
    /// `ping ID`.
    Ping(u64),
    /// `ru ID`.
    Ru(u64),
    /// `sd ID`: graceful shutdown.
    Shutdown(u64),
    /// `kill ID`.
    Kill(u64),
    /// `restart ID`.
    Restart(u64),
    /// `logs ID [-n N] [-f] [--level L]`.
    Logs {
        /// Component id.
        id: u64,
        /// Lines of history.
        n: usize,
        /// Keep streaming.
        follow: bool,
        /// Only lines of this severity or more (see [`crate::logbuf`]).
        level: Option<Level>,
    },
    /// `attach ID`: stream output until detached.
    Attach(u64),
    /// `routes [ID]` / `peers [ID]`: a component's own view (the controlplane's routes and
    /// links); without ID, the first ready skywire-control.
    Inspect {
        /// `routes` or `peers`.
        what: String,
        /// Component id.
        id: Option<u64>,
    },
    /// `reload`: re-read the config file and apply what changed; `reload ID`: ask component
    /// ID to read its own config again (SIGHUP).
    Reload(Option<u64>),
    /// `quit`: stop everything and exit.
    Quit,
}

/// A command line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn err<T>(m: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(m.into()))
}

/// Splits a line like a shell does for words: whitespace separates, single quotes keep
/// everything literally, double quotes allow `\"` and `\\`, a backslash outside quotes escapes
/// the next character. Case is kept.
pub fn tokenize(line: &str) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return err("unterminated ' quote"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return err("unterminated \" quote"),
                        },
                        Some(c) => cur.push(c),
                        None => return err("unterminated \" quote"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return err("trailing backslash"),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn id(cmd: &str, arg: Option<&String>) -> Result<u64, ParseError> {
    match arg {
        None => err(format!("{cmd} needs a component id: see `list`")),
        Some(a) => match a.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => err(format!(
                "{cmd}: {a:?} is not a component id (a number from `list`)"
            )),
        },
    }
}

fn no_more(cmd: &str, rest: &[String]) -> Result<(), ParseError> {
    match rest.first() {
        None => Ok(()),
        Some(x) => err(format!("{cmd}: unexpected argument {x:?}; see `help`")),
    }
}

/// One console command: its name, the aliases it also answers to, its arguments and a line of
/// help. [`COMMANDS`] is the one list of them: the parser resolves names through it, `help`
/// prints it, and the GUI completes from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The name.
    pub name: &'static str,
    /// The short form shown in the help (`start|s`).
    pub short: Option<&'static str>,
    /// Other names it answers to, not shown.
    pub aliases: &'static [&'static str],
    /// The arguments, as in the help (`ID [-n N] [-f]`).
    pub args: &'static str,
    /// What it does; further lines continue the text.
    pub help: &'static str,
}

impl Spec {
    /// Whether `word` names this command.
    pub fn answers_to(&self, word: &str) -> bool {
        self.name == word || self.short == Some(word) || self.aliases.contains(&word)
    }

    /// Whether its first argument is a component id (`ID` or `[ID]`).
    pub fn takes_id(&self) -> bool {
        self.args.starts_with("ID") || self.args.starts_with("[ID]")
    }
}

const fn spec(
    name: &'static str,
    short: Option<&'static str>,
    aliases: &'static [&'static str],
    args: &'static str,
    help: &'static str,
) -> Spec {
    Spec {
        name,
        short,
        aliases,
        args,
        help,
    }
}

/// Every console command, in help order.
pub const COMMANDS: &[Spec] = &[
    spec("apps", None, &[], "", "list the apps in config.yaml"),
    spec("help", None, &["?"], "[APP]", "this text, or an app's help"),
    spec(
        "start",
        Some("s"),
        &[],
        "[-a] [-w] APP [ARGS...]",
        "start APP (ARGS replace its default_args; -a streams its output,\n\
         -w waits until it registers)",
    ),
    spec("list", Some("la"), &["ls"], "", "running components"),
    spec(
        "ping",
        None,
        &[],
        "ID",
        "round trip through the component's signal ring",
    ),
    spec(
        "ru",
        None,
        &[],
        "ID",
        "resource usage: CPU, RSS, threads, uptime and the component's counters",
    ),
    spec(
        "sd",
        None,
        &["shutdown"],
        "ID",
        "graceful shutdown (then SIGTERM, then SIGKILL at the deadlines)",
    ),
    spec(
        "kill",
        None,
        &[],
        "ID",
        "SIGKILL the component's process group",
    ),
    spec(
        "restart",
        None,
        &[],
        "ID",
        "stop it and start it again with the same arguments",
    ),
    spec(
        "logs",
        None,
        &["log"],
        "ID [-n N] [-f] [--level L]",
        "last N (50) output lines; -f keeps following;\n\
         --level L keeps lines at L or more severe\n\
         (error > warn > info > debug > trace; plain stdout\n\
         counts as info, plain stderr as error)",
    ),
    spec(
        "attach",
        None,
        &[],
        "ID",
        "follow the component's output (press Enter to detach)",
    ),
    spec(
        "routes",
        None,
        &[],
        "[ID]",
        "the controlplane's routes: destination, path, labels, age",
    ),
    spec(
        "peers",
        None,
        &[],
        "[ID]",
        "the controlplane's links: key, endpoint, RTT, state, traffic",
    ),
    spec(
        "reload",
        None,
        &[],
        "[ID]",
        "re-read config.yaml: start new autostart apps, stop removed\n\
         ones, restart changed ones, leave the rest; on an error\n\
         the running config stays (also SIGHUP to serve);\n\
         with ID: SIGHUP to that component (skywire-control reloads)",
    ),
    spec(
        "quit",
        None,
        &["exit", "q"],
        "",
        "stop every component and exit",
    ),
];

/// The command `word` names, by name, short form or alias.
pub fn lookup(word: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|c| c.answers_to(word))
}

/// Column where the help text starts.
const HELP_COLUMN: usize = 27;

/// The `help` text: one entry per command, the text at [`HELP_COLUMN`] (on the next line when
/// the synopsis is longer).
pub fn help_text() -> String {
    let mut out = Vec::new();
    for c in COMMANDS {
        let mut synopsis = c.name.to_string();
        if let Some(s) = c.short {
            synopsis.push('|');
            synopsis.push_str(s);
        }
        if !c.args.is_empty() {
            synopsis.push(' ');
            synopsis.push_str(c.args);
        }
        let mut help = c.help.lines();
        let first = help.next().unwrap_or("");
        if synopsis.len() < HELP_COLUMN {
            out.push(format!("{synopsis:<HELP_COLUMN$}{first}"));
        } else {
            out.push(synopsis);
            out.push(format!("{:HELP_COLUMN$}{first}", ""));
        }
        for more in help {
            out.push(format!("{:HELP_COLUMN$}{more}", ""));
        }
    }
    out.join("\n")
}

impl Command {
    /// Parses tokens (as from [`tokenize`], or argv).
    pub fn parse(tokens: &[String]) -> Result<Command, ParseError> {
        let Some((cmd, rest)) = tokens.split_first() else {
            return err("empty command; try `help`");
        };
        let Some(spec) = lookup(cmd) else {
            return err(format!("unknown command {cmd:?}; try `help`"));
        };
        Ok(match spec.name {
            "apps" => {
                no_more(cmd, rest)?;
                Command::Apps
            }
            "help" => {
                no_more(cmd, rest.get(1..).unwrap_or(&[]))?;
                Command::Help(rest.first().cloned())
            }
            "start" => {
                let mut attach = false;
                let mut wait = false;
                let mut i = 0;
                while let Some(flag) = rest.get(i) {
                    match flag.as_str() {
                        "-a" => attach = true,
                        "-w" => wait = true,
                        "-aw" | "-wa" => {
                            attach = true;
                            wait = true;
                        }
                        _ => break,
                    }
                    i += 1;
                }
                let Some(app) = rest.get(i) else {
                    return err("start needs an app name: see `apps`");
                };
                let args = &rest[i + 1..];
                Command::Start {
                    app: app.clone(),
                    args: if args.is_empty() {
                        None
                    } else {
                        Some(args.to_vec())
                    },
                    attach,
                    wait,
                }
            }
            "list" => {
                no_more(cmd, rest)?;
                Command::List
            }
            "reload" => match rest {
                [] => Command::Reload(None),
                _ => Command::Reload(Some(one_id(cmd, rest)?)),
            },
            "ping" => Command::Ping(one_id(cmd, rest)?),
            "ru" => Command::Ru(one_id(cmd, rest)?),
            "sd" => Command::Shutdown(one_id(cmd, rest)?),
            "kill" => Command::Kill(one_id(cmd, rest)?),
            "restart" => Command::Restart(one_id(cmd, rest)?),
            "attach" => Command::Attach(one_id(cmd, rest)?),
            "logs" => {
                // The id and the flags in any order.
                let mut the_id = None;
                let mut n = 50;
                let mut follow = false;
                let mut level = None;
                let mut it = rest.iter();
                while let Some(a) = it.next() {
                    let (flag, inline) = match a.split_once('=') {
                        Some((f, v)) if f == "--level" => (f, Some(v)),
                        _ => (a.as_str(), None),
                    };
                    match flag {
                        "-f" => follow = true,
                        "--level" => {
                            let v = inline.or_else(|| it.next().map(String::as_str));
                            level = match v.and_then(Level::from_name) {
                                Some(l) => Some(l),
                                None => {
                                    return err(format!(
                                        "logs: --level needs one of error, warn, info, debug, \
                                         trace{}",
                                        v.map(|v| format!(" (not {v:?})")).unwrap_or_default()
                                    ));
                                }
                            }
                        }
                        "-n" => {
                            n = match it.next().map(|v| v.parse::<usize>()) {
                                Some(Ok(v)) => v,
                                _ => return err("logs: -n needs a number of lines"),
                            }
                        }
                        word if the_id.is_none() && !word.starts_with('-') => {
                            the_id = Some(id(cmd, Some(a))?);
                        }
                        other => {
                            return err(format!(
                                "logs: unexpected argument {other:?}; usage: logs ID [-n N] [-f] \
                                 [--level L]"
                            ));
                        }
                    }
                }
                Command::Logs {
                    id: match the_id {
                        Some(i) => i,
                        None => id(cmd, None)?,
                    },
                    n,
                    follow,
                    level,
                }
            }
            "routes" | "peers" => {
                let id = match rest.first() {
                    None => None,
                    Some(_) => Some(one_id(cmd, rest)?),
                };
                Command::Inspect {
                    what: spec.name.to_string(),
                    id,
                }
            }
            "quit" => {
                no_more(cmd, rest)?;
                Command::Quit
            }
            other => return err(format!("unknown command {other:?}; try `help`")),
        })
    }
}

fn one_id(cmd: &str, rest: &[String]) -> Result<u64, ParseError> {
    let v = id(cmd, rest.first())?;
    no_more(cmd, &rest[1..])?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn toks(s: &str) -> Vec<String> {
        tokenize(s).unwrap()
    }

    #[test]
    fn reload_takes_an_optional_id() {
        let parse = |s: &str| Command::parse(&toks(s));
        assert_eq!(parse("reload"), Ok(Command::Reload(None)));
        assert_eq!(parse("reload 3"), Ok(Command::Reload(Some(3))));
        assert!(parse("reload x").is_err());
        assert!(parse("reload 3 4").is_err());
    }

    #[test]
    fn quoting_and_case_are_kept() {
        assert_eq!(
            toks(r#"start demo "Hello World" 'It''s' CaseKept a\ b "q\"x""#),
            [
                "start",
                "demo",
                "Hello World",
                "Its",
                "CaseKept",
                "a b",
                "q\"x"
            ]
        );
        assert_eq!(toks("  "), Vec::<String>::new());
        assert_eq!(toks("s x ''"), ["s", "x", ""]);
        assert!(tokenize("start 'oops").is_err());
    }

    #[test]
    fn parses_every_command() {
        let p = |s: &str| Command::parse(&toks(s));
        assert_eq!(
            p("s -a demo X y").unwrap(),
            Command::Start {
                app: "demo".into(),
                args: Some(vec!["X".into(), "y".into()]),
                attach: true,
                wait: false
            }
        );
        assert_eq!(
            p("start demo").unwrap(),
            Command::Start {
                app: "demo".into(),
                args: None,
                attach: false,
                wait: false
            }
        );
        assert_eq!(p("la").unwrap(), Command::List);
        assert_eq!(
            p("routes").unwrap(),
            Command::Inspect {
                what: "routes".into(),
                id: None
            }
        );
        assert_eq!(
            p("peers 4").unwrap(),
            Command::Inspect {
                what: "peers".into(),
                id: Some(4)
            }
        );
        assert_eq!(p("ping 3").unwrap(), Command::Ping(3));
        assert_eq!(
            p("logs 2 -n 5 -f").unwrap(),
            Command::Logs {
                id: 2,
                n: 5,
                follow: true,
                level: None
            }
        );
        for line in [
            "logs 2 --level warn -n 5 -f",
            "logs 2 -f --level WARN -n 5",
            "log 2 -n 5 --level=warn -f",
            "logs --level warn -n 5 -f 2",
        ] {
            assert_eq!(
                p(line).unwrap(),
                Command::Logs {
                    id: 2,
                    n: 5,
                    follow: true,
                    level: Some(Level::Warn)
                },
                "{line}"
            );
        }
        assert!(
            p("logs 2 --level loud")
                .unwrap_err()
                .0
                .contains("one of error, warn, info, debug, trace (not \"loud\")")
        );
        assert!(p("logs 2 --level").unwrap_err().0.contains("--level needs"));
        assert!(p("logs -f").unwrap_err().0.contains("needs a component id"));
        assert!(
            p("logs 2 3")
                .unwrap_err()
                .0
                .contains("unexpected argument \"3\"")
        );
        assert!(p("logs x").unwrap_err().0.contains("not a component id"));
        assert!(p("ping").unwrap_err().0.contains("needs a component id"));
        assert!(p("ping x").unwrap_err().0.contains("not a component id"));
        assert!(p("frobnicate").unwrap_err().0.contains("try `help`"));
        assert!(p("start").unwrap_err().0.contains("see `apps`"));
    }

    /// The help text as it was written by hand before the table existed, with `--level` added
    /// to `logs` since.
    const HELP: &str = "\
apps                       list the apps in config.yaml
help [APP]                 this text, or an app's help
start|s [-a] [-w] APP [ARGS...]
                           start APP (ARGS replace its default_args; -a streams its output,
                           -w waits until it registers)
list|la                    running components
ping ID                    round trip through the component's signal ring
ru ID                      resource usage: CPU, RSS, threads, uptime and the component's counters
sd ID                      graceful shutdown (then SIGTERM, then SIGKILL at the deadlines)
kill ID                    SIGKILL the component's process group
restart ID                 stop it and start it again with the same arguments
logs ID [-n N] [-f] [--level L]
                           last N (50) output lines; -f keeps following;
                           --level L keeps lines at L or more severe
                           (error > warn > info > debug > trace; plain stdout
                           counts as info, plain stderr as error)
attach ID                  follow the component's output (press Enter to detach)
routes [ID]                the controlplane's routes: destination, path, labels, age
peers [ID]                 the controlplane's links: key, endpoint, RTT, state, traffic
reload [ID]                re-read config.yaml: start new autostart apps, stop removed
                           ones, restart changed ones, leave the rest; on an error
                           the running config stays (also SIGHUP to serve);
                           with ID: SIGHUP to that component (skywire-control reloads)
quit                       stop every component and exit";

    #[test]
    fn help_comes_from_the_table_unchanged() {
        assert_eq!(help_text(), HELP);
        for c in COMMANDS {
            assert_eq!(lookup(c.name), Some(c));
            for a in c.short.iter().chain(c.aliases) {
                assert_eq!(lookup(a).map(|s| s.name), Some(c.name));
            }
        }
    }

    proptest! {
        #[test]
        fn tokenize_and_parse_never_panic(s in ".{0,80}") {
            if let Ok(t) = tokenize(&s) { let _ = Command::parse(&t); }
        }
    }
}
