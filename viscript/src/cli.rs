//! The command line: `serve`, `gui`, `headless` and every console command as subcommands, with
//! the global options (`--config`, `--socket`, `--json`) before or after the subcommand word.
//!
//! The console subcommands come from [`crate::command::COMMANDS`] (names, aliases, help), and
//! their arguments are handed to [`Command::parse`](crate::command::Command::parse) exactly as
//! typed: clap only splits off the options it owns. For `start`, everything after APP belongs
//! to the app (`viscript start signal-demo --log-every 500`); for the other console commands,
//! whose arguments are ids and their own flags, a global option counts wherever it is
//! (`viscript logs 3 --json`).

use crate::command::{COMMANDS, Spec, lookup};
use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The GUI refresh period when none is given, in milliseconds.
pub const DEFAULT_REFRESH_MS: u64 = 500;

const ABOUT: &str = "Supervise and operate the components of a Skywire router.";

const LONG_ABOUT: &str = "\
Supervise and operate the components of a Skywire router.

  viscript serve    [--config F] [--socket P]      the daemon, with a unix control socket
                    [--metrics IP:PORT [--metrics-any]]
                                                   and Prometheus metrics at GET /metrics
  viscript gui      [--config F] [--socket P] [--refresh-ms MS]
                                                   the terminal GUI: attaches to the daemon at
                                                   the socket, else runs the supervisor itself
                                                   (bare `viscript` on a terminal does the same)
  viscript headless [--config F] [--json]          line console, supervisor in this process
                                                   (also `viscript --headless`)
  viscript check    [--config F]                   validate the catalogue and exit (nothing
                                                   is started; exit 2 on an error)
  viscript COMMAND  [--socket P] [--json] [ARGS]   one console command against the daemon

Options go before or after the subcommand word (`viscript --config F serve` is `viscript serve
--config F`). The words after `start APP` are the app's own arguments, passed exactly as typed.
`viscript COMMAND --help` explains each command.";

/// Options every mode understands, before or after the subcommand word.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The app catalogue.
    #[arg(long, short, global = true, default_value = "config.yaml")]
    pub config: PathBuf,
    /// Control socket of the daemon (default: settings.socket from the config, else
    /// /run/viscript/viscript.sock as root, $XDG_RUNTIME_DIR/viscript.sock otherwise).
    #[arg(long, short, global = true)]
    pub socket: Option<PathBuf>,
    /// Print answers as JSON objects, one per line (console commands and headless).
    #[arg(long, global = true)]
    pub json: bool,
}

fn refresh_parser() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(100..=60_000)
}

#[derive(Parser, Debug)]
#[command(
    name = "viscript",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    disable_help_subcommand = true,
    allow_external_subcommands = true
)]
struct Cli {
    /// Run the line console with the supervisor in this process (same as `headless`).
    #[arg(long)]
    headless: bool,
    #[command(flatten)]
    options: Options,
    /// GUI refresh period in milliseconds, 100 to 60000 [default: 500] (GUI only).
    #[arg(long, value_name = "MS", value_parser = refresh_parser())]
    refresh_ms: Option<u64>,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(subcommand)]
    mode: Option<ModeCmd>,
}

/// `serve`'s metrics endpoint, before or after the subcommand word.
#[derive(Args, Debug, Clone, Default)]
struct MetricsArgs {
    /// Serve Prometheus metrics at http://IP:PORT/metrics (serve only; port 0 picks a free
    /// one, logged on stderr). Off by default; loopback addresses only unless --metrics-any.
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<SocketAddr>,
    /// Allow a --metrics address other than loopback (anyone reaching it sees the
    /// components, their state and their usage; there is no authentication).
    #[arg(long)]
    metrics_any: bool,
}

impl MetricsArgs {
    fn or(self, other: MetricsArgs) -> MetricsArgs {
        MetricsArgs {
            metrics: self.metrics.or(other.metrics),
            metrics_any: self.metrics_any || other.metrics_any,
        }
    }
}

#[derive(Subcommand, Debug)]
enum ModeCmd {
    /// The daemon: the supervisor with an owner-only unix control socket.
    Serve {
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// The terminal GUI: attaches to the daemon at the socket, else runs the supervisor itself
    /// from --config (quitting it then stops every component).
    Gui {
        /// Refresh period in milliseconds, 100 to 60000 [default: 500].
        #[arg(long, value_name = "MS", value_parser = refresh_parser())]
        refresh_ms: Option<u64>,
    },
    /// The line console with the supervisor in this process; commands come from the terminal
    /// or a pipe, and end of input stops every component.
    Headless,
    /// Validate --config and exit: 0 when it loads (apps whose path is missing are named on
    /// stderr), 2 with the error (file:line:column) when not. Nothing is started.
    Check,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `viscript serve`.
    Serve {
        /// Where to serve Prometheus metrics (`--metrics`), if anywhere.
        metrics: Option<SocketAddr>,
    },
    /// `viscript gui`; `bare` when no subcommand was given (the GUI only on a terminal).
    Gui {
        /// Refresh period in milliseconds.
        refresh_ms: u64,
        /// No subcommand word: the GUI if stdout is a terminal, else a usage error.
        bare: bool,
    },
    /// `viscript headless` or `viscript --headless`.
    Headless,
    /// `viscript check`: load and validate the config, then exit.
    Check,
    /// A console command for the daemon, as tokens for [`crate::command::Command::parse`]
    /// (the first is the command's name).
    Console(Vec<String>),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The global options.
    pub options: Options,
    /// The mode.
    pub mode: Mode,
}

/// The id of the positional that collects a console command's arguments.
const ARGS: &str = "args";

/// The synopsis the help shows for a console command (`start|s [-a] [-w] APP [ARGS...]`).
pub fn synopsis(c: &Spec) -> String {
    let mut s = c.name.to_string();
    if let Some(short) = c.short {
        s.push('|');
        s.push_str(short);
    }
    if !c.args.is_empty() {
        s.push(' ');
        s.push_str(c.args);
    }
    s
}

fn console_subcommand(c: &Spec) -> clap::Command {
    let help: Vec<&str> = c.help.lines().map(str::trim).collect();
    let help = help.join(" ");
    let mut cmd = clap::Command::new(c.name)
        .about(help.clone())
        .long_about(format!(
            "{help}\n\nA console command: sent to the daemon at --socket (`viscript serve`); the \
             same command works at the headless prompt and after `:` in the GUI."
        ))
        .override_usage(format!("viscript [OPTIONS] {}", synopsis(c)))
        .aliases(c.aliases.iter().copied());
    if let Some(s) = c.short {
        cmd = cmd.visible_alias(s);
    }
    if c.name == "start" {
        cmd = cmd
            .after_help(
                "Every word after APP is the app's, even one spelled like a viscript option: \
                 put --socket and --json before APP (`viscript start --json signal-demo \
                 --log-every 500`).",
            )
            .arg(
                Arg::new("attach")
                    .short('a')
                    .display_order(0)
                    .action(ArgAction::SetTrue)
                    .help("stream its output after starting"),
            )
            .arg(
                Arg::new("wait")
                    .short('w')
                    .display_order(0)
                    .action(ArgAction::SetTrue)
                    .help("wait until it registers"),
            );
    }
    if !c.args.is_empty() {
        cmd = cmd.arg(
            Arg::new(ARGS)
                .value_name(if c.name == "start" { "APP" } else { "ARGS" })
                .num_args(0..)
                .action(ArgAction::Append)
                .allow_hyphen_values(true)
                .trailing_var_arg(true)
                .value_parser(clap::value_parser!(OsString))
                .help(if c.name == "start" {
                    "the app, then its arguments exactly as typed (they replace default_args)"
                } else {
                    "as in the usage line; the command's own flags in any order"
                }),
        );
    }
    cmd
}

/// The whole command line definition: the modes, then every console command in table order.
pub fn command() -> clap::Command {
    Cli::command().subcommands(COMMANDS.iter().map(console_subcommand))
}

/// Options that may follow a console command's arguments, and whether each takes a value.
const MOVABLE: &[(&str, bool)] = &[
    ("--json", false),
    ("--socket", true),
    ("-s", true),
    ("--config", true),
    ("-c", true),
    ("--help", false),
    ("-h", false),
];

/// For a console command other than `start`: splits the global options (and `--help`) out of
/// its arguments, so `logs 3 --json` means `logs --json 3`. Returns (options, the rest).
fn split_options(args: &[OsString]) -> (Vec<OsString>, Vec<OsString>) {
    let mut opts = Vec::new();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        let name = s.split_once('=').map_or(&*s, |(n, _)| n);
        match MOVABLE.iter().find(|(n, _)| *n == name) {
            Some(&(_, takes_value)) => {
                opts.push(a.clone());
                if takes_value && !s.contains('=') {
                    opts.extend(it.next().cloned());
                }
            }
            None => rest.push(a.clone()),
        }
    }
    (opts, rest)
}

/// The arguments of a console subcommand (none for one that takes none).
fn values(m: &ArgMatches) -> impl Iterator<Item = &OsString> {
    m.try_get_many::<OsString>(ARGS)
        .ok()
        .flatten()
        .into_iter()
        .flatten()
}

fn strings(m: &ArgMatches) -> Result<Vec<String>, clap::Error> {
    values(m)
        .map(|a| {
            a.to_str().map(str::to_owned).ok_or_else(|| {
                clap::Error::raw(
                    clap::error::ErrorKind::InvalidUtf8,
                    format!("argument {a:?} is not UTF-8\n"),
                )
            })
        })
        .collect()
}

/// An unknown subcommand word.
fn unknown(word: &str) -> clap::Error {
    let mut cmd = command();
    cmd.error(
        clap::error::ErrorKind::InvalidSubcommand,
        format!("unknown command {word:?}; `viscript --help` lists the commands"),
    )
}

/// Parses a command line (`args` includes the program name). `Err` carries clap's usage error
/// or the `--help`/`--version` text; [`clap::Error::exit`] prints it with the right status.
pub fn parse<I, T>(args: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let m = command().try_get_matches_from(&argv)?;
    if m.get_flag("headless") && m.subcommand_name().is_some() {
        return Err(command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "--headless takes no subcommand; type commands at its prompt",
        ));
    }
    let top_metrics = m.get_one::<SocketAddr>("metrics").is_some() || m.get_flag("metrics_any");
    if top_metrics && m.subcommand_name() != Some("serve") {
        return Err(command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "--metrics and --metrics-any are for the daemon (`viscript serve`)",
        ));
    }
    if let Some((word, sub)) = m.subcommand()
        && let Some(spec) = lookup(word)
    {
        if spec.name != "start" {
            let raw: Vec<OsString> = values(sub).cloned().collect();
            let (moved, rest) = split_options(&raw);
            // The arguments are the tail of argv: after the first one, clap takes every word
            // as an argument.
            let at = argv.len().saturating_sub(raw.len());
            if !moved.is_empty() && argv[at..] == raw[..] {
                // Parse again with them right after the subcommand word, where clap takes them.
                let mut again = argv[..at].to_vec();
                again.extend(moved);
                again.extend(rest);
                return parse_console(&command().try_get_matches_from(again)?, word, spec);
            }
        }
        return parse_console(&m, word, spec);
    }
    if let Some(word) = m.subcommand_name()
        && !ModeCmd::has_subcommand(word)
    {
        // An external subcommand: neither a mode nor a console command.
        return Err(unknown(word));
    }
    let cli = Cli::from_arg_matches(&m)?;
    let mode = match (cli.headless, cli.mode) {
        // A subcommand with --headless is refused above.
        (true, _) | (false, Some(ModeCmd::Headless)) => Mode::Headless,
        (false, Some(ModeCmd::Check)) => Mode::Check,
        (false, Some(ModeCmd::Serve { metrics })) => Mode::Serve {
            metrics: metrics_addr(metrics.or(cli.metrics.clone()))?,
        },
        (false, Some(ModeCmd::Gui { refresh_ms })) => Mode::Gui {
            refresh_ms: refresh_ms.or(cli.refresh_ms).unwrap_or(DEFAULT_REFRESH_MS),
            bare: false,
        },
        (false, None) => Mode::Gui {
            refresh_ms: cli.refresh_ms.unwrap_or(DEFAULT_REFRESH_MS),
            bare: true,
        },
    };
    if cli.refresh_ms.is_some() && !matches!(mode, Mode::Gui { .. }) {
        return Err(command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "--refresh-ms is for the GUI (`viscript gui` or bare `viscript`)",
        ));
    }
    Ok(Invocation {
        options: cli.options,
        mode,
    })
}

/// The metrics address of `serve`: a loopback one, or any with `--metrics-any`.
fn metrics_addr(m: MetricsArgs) -> Result<Option<SocketAddr>, clap::Error> {
    match m.metrics {
        None if m.metrics_any => Err(command().error(
            clap::error::ErrorKind::MissingRequiredArgument,
            "--metrics-any needs --metrics IP:PORT",
        )),
        Some(a) => {
            netbase::metrics_http::check_addr(a, m.metrics_any, "--metrics", "--metrics-any")
                .map(|()| Some(a))
                .map_err(|e| command().error(clap::error::ErrorKind::ValueValidation, e))
        }
        None => Ok(None),
    }
}

/// The tokens of a console command as [`crate::command::Command::parse`] takes them.
fn parse_console(m: &ArgMatches, word: &str, spec: &Spec) -> Result<Invocation, clap::Error> {
    let Some((_, sub)) = m.subcommand() else {
        return Err(unknown(word));
    };
    // Global options are propagated to the subcommand's matches wherever they were given.
    let options = Options::from_arg_matches(sub)?;
    let mut tokens = vec![word.to_string()];
    if spec.name == "start" {
        if sub.get_flag("attach") {
            tokens.push("-a".into());
        }
        if sub.get_flag("wait") {
            tokens.push("-w".into());
        }
    }
    tokens.extend(strings(sub)?);
    Ok(Invocation {
        options,
        mode: Mode::Console(tokens),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Invocation {
        let mut argv = vec!["viscript".to_string()];
        argv.extend(crate::command::tokenize(line).unwrap());
        parse(argv).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn fails(line: &str) -> String {
        let mut argv = vec!["viscript".to_string()];
        argv.extend(crate::command::tokenize(line).unwrap());
        parse(argv).unwrap_err().to_string()
    }

    fn opts(config: &str, socket: Option<&str>, json: bool) -> Options {
        Options {
            config: config.into(),
            socket: socket.map(PathBuf::from),
            json,
        }
    }

    fn console(tokens: &[&str]) -> Mode {
        Mode::Console(tokens.iter().map(|t| t.to_string()).collect())
    }

    #[test]
    fn metrics_loopback_only_unless_metrics_any() {
        let serve = |line: &str| match p(line).mode {
            Mode::Serve { metrics } => metrics.map(|a| a.to_string()),
            m => panic!("{line}: {m:?}"),
        };
        assert_eq!(serve("serve"), None);
        for line in [
            "serve --metrics 127.0.0.1:9464",
            "--metrics 127.0.0.1:9464 serve",
            "--config F serve --metrics=127.0.0.1:9464 --socket S",
        ] {
            assert_eq!(serve(line).as_deref(), Some("127.0.0.1:9464"), "{line}");
        }
        assert_eq!(serve("serve --metrics [::1]:0").as_deref(), Some("[::1]:0"));
        for line in [
            "serve --metrics 0.0.0.0:9464 --metrics-any",
            "--metrics-any serve --metrics 0.0.0.0:9464",
        ] {
            assert_eq!(serve(line).as_deref(), Some("0.0.0.0:9464"), "{line}");
        }
        assert!(fails("serve --metrics 0.0.0.0:9464").contains("not a loopback address"));
        assert!(fails("serve --metrics 192.0.2.1:9464").contains("--metrics-any"));
        assert!(fails("serve --metrics-any").contains("needs --metrics"));
        assert!(fails("serve --metrics localhost:9464").contains("--metrics"));
        assert!(fails("--metrics 127.0.0.1:9464 headless").contains("for the daemon"));
        assert!(fails("--metrics 127.0.0.1:9464 list").contains("for the daemon"));
    }

    #[test]
    fn options_before_and_after_the_mode_word() {
        let want = Invocation {
            options: opts("F", Some("S"), false),
            mode: Mode::Serve { metrics: None },
        };
        for line in [
            "serve --config F --socket S",
            "--config F --socket S serve",
            "--config F serve --socket S",
            "serve -c F -s S",
            "--socket=S serve --config=F",
        ] {
            assert_eq!(p(line), want, "{line}");
        }
        for line in [
            "gui --socket S --config F --refresh-ms 200",
            "--refresh-ms 200 --socket S gui --config F",
            "--socket S --config F --refresh-ms 200",
        ] {
            let got = p(line);
            assert_eq!(got.options, opts("F", Some("S"), false), "{line}");
            assert!(
                matches!(
                    got.mode,
                    Mode::Gui {
                        refresh_ms: 200,
                        ..
                    }
                ),
                "{line}: {got:?}"
            );
        }
        assert_eq!(
            p("").mode,
            Mode::Gui {
                refresh_ms: DEFAULT_REFRESH_MS,
                bare: true
            }
        );
        for line in [
            "--headless --config F --json",
            "--json --headless --config F",
            "headless --config F --json",
            "--config F headless --json",
        ] {
            assert_eq!(
                p(line),
                Invocation {
                    options: opts("F", None, true),
                    mode: Mode::Headless
                },
                "{line}"
            );
        }
        assert_eq!(p("serve").options, opts("config.yaml", None, false));
        for line in ["check --config F", "--config F check", "-c F check"] {
            assert_eq!(
                p(line),
                Invocation {
                    options: opts("F", None, false),
                    mode: Mode::Check
                },
                "{line}"
            );
        }
        assert!(fails("--headless check").contains("takes no subcommand"));
        assert!(fails("--metrics 127.0.0.1:1 check").contains("for the daemon"));
    }

    #[test]
    fn console_arguments_arrive_as_typed() {
        assert_eq!(
            p("start signal-demo --log-every 500").mode,
            console(&["start", "signal-demo", "--log-every", "500"])
        );
        // After APP, even viscript's own option names belong to the app.
        let got = p(r#"--socket S s -w signal-demo "Hello World" --json -- '' CaseKept"#);
        assert_eq!(got.options, opts("config.yaml", Some("S"), false));
        assert_eq!(
            got.mode,
            console(&[
                "start",
                "-w",
                "signal-demo",
                "Hello World",
                "--json",
                "--",
                "",
                "CaseKept"
            ])
        );
        let got = p("start -aw --json demo -x");
        assert!(got.options.json);
        assert_eq!(got.mode, console(&["start", "-a", "-w", "demo", "-x"]));
        // Other commands: options anywhere.
        for line in [
            "--socket S --json logs 3 -n 5 --level warn -f",
            "logs 3 -n 5 --socket S --level warn --json -f",
            "logs --json 3 -n 5 --level warn -f -s S",
            "log 3 -n 5 --level warn -f --socket=S --json",
        ] {
            let got = p(line);
            assert_eq!(got.options, opts("config.yaml", Some("S"), true), "{line}");
            let Mode::Console(t) = got.mode else {
                panic!("{line}")
            };
            assert_eq!(t[1..], ["3", "-n", "5", "--level", "warn", "-f"], "{line}");
        }
        assert_eq!(p("la --json").mode, console(&["list"]));
        assert_eq!(p("routes").mode, console(&["routes"]));
        assert_eq!(p("peers 2").mode, console(&["peers", "2"]));
        assert_eq!(p("q").mode, console(&["quit"]));
    }

    #[test]
    fn errors_and_help() {
        let e = fails("frobnicate 1");
        assert!(e.contains("unknown command \"frobnicate\""), "{e}");
        assert!(e.contains("viscript --help"), "{e}");
        assert!(fails("serve --refresh-ms 200").contains("--refresh-ms"));
        assert!(fails("--refresh-ms 200 serve").contains("for the GUI"));
        assert!(fails("--headless serve").contains("takes no subcommand"));
        assert!(fails("--headless list").contains("takes no subcommand"));
        assert!(fails("--headless headless").contains("takes no subcommand"));
        assert!(fails("gui --refresh-ms 5").contains("100..=60000"));
        for c in COMMANDS {
            let e = fails(&format!("{} --help", c.name));
            for word in c.help.split_whitespace() {
                assert!(e.contains(word), "{}: {e}", c.name);
            }
            assert!(e.contains(&synopsis(c)), "{}: {e}", c.name);
        }
        // `logs 3 --help` is the help too, not an argument.
        assert!(fails("logs 3 --help").contains(&synopsis(lookup("logs").unwrap())));
        let top = command().render_help().to_string();
        for c in COMMANDS {
            assert!(
                top.contains(c.name),
                "{} missing from --help: {top}",
                c.name
            );
        }
        for m in ["serve", "gui", "headless", "check"] {
            assert!(top.contains(m), "{top}");
        }
    }

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }
}
