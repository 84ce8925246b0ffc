//! Render tests (ratatui's TestBackend) and key handling of the GUI state.

use super::app::{App, Mode, Pane, complete, fmt_bytes, fmt_si, sparkline};
use super::{Action, Show};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;
use std::time::{Duration, Instant};

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn typ(app: &mut App, s: &str) {
    for c in s.chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    let b = t.backend().buffer();
    (0..h)
        .map(|y| (0..w).map(|x| b[(x, y)].symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two components (one ready with counters, one exited), two apps, some log lines.
fn sample(embedded: bool) -> App {
    let mut app = App::new(
        "daemon /run/test.sock",
        embedded,
        Duration::from_millis(500),
    );
    app.apply_apps(&json!({"ok": true, "text": "", "data": [
        {"name": "demo", "desc": "the demo app\nsecond line", "daemon": true},
        {"name": "skywire-node", "desc": "Skywire dataplane", "daemon": true},
    ]}));
    app.apply_list(&json!({"ok": true, "text": "", "data": [
        {"id": 1, "app": "demo", "pid": 4242, "state": "ready", "uptime_ms": 65_000,
         "restarts": 2, "args": ["Hello World"], "ping_rtt_us": 40},
        {"id": 2, "app": "skywire-node", "pid": null, "state": "exited", "uptime_ms": null,
         "restarts": 0, "args": [], "last_exit": "exit 1"},
    ]}));
    let t0 = Instant::now();
    let ru = |ticks: u64, pkts: u64, bytes: u64| {
        json!({"ok": true, "text": "", "data": {"id": 1, "cpu_percent": 12.5,
            "rss_bytes": 3 * 1024 * 1024, "threads": 2, "uptime_ms": 65_000,
            "counters": {"ticks": ticks, "udp_rx_packets": pkts, "udp_rx_bytes": bytes}}})
    };
    app.apply_usage(1, &ru(100, 1_000, 0), t0);
    app.apply_usage(1, &ru(110, 3_000, 1_500_000), t0 + Duration::from_secs(1));
    app.apply_usage(1, &ru(120, 5_000, 3_000_000), t0 + Duration::from_secs(2));
    app.apply_logs(
        1,
        &json!({"ok": true, "text": "", "data": {"id": 1, "lines": [
            "12:00:00.000 out hello from demo",
            "12:00:00.100 out evil \u{1b}[2J escape",
        ]}}),
    );
    app
}

#[test]
fn renders_components_apps_rates_and_logs_at_80x24() {
    let app = sample(false);
    let s = screen(&app, 80, 24);
    for want in [
        "components (2)",
        "demo",
        "4242",
        "ready",
        "exited",
        "1m05s",
        "12.5",
        "3.0M",
        // The largest rate (bytes) comes first, number first, with its sparkline.
        "1.5M udp_rx_b",
        "█",
        "apps (2)",
        "the demo app",
        // Descriptions are cut at the pane's edge (Enter on the app shows its help).
        "skywire-node Skywire da",
        "logs: 1 demo",
        "hello from demo",
        "daemon /run/test.sock",
        "2 components, 1 ready",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    // Only the description's first line; no raw escape reaches the terminal.
    assert!(!s.contains("second line"), "{s}");
    assert!(!s.contains('\u{1b}'), "{s}");
    assert!(s.contains("\u{fffd}[2J escape"), "{s}");
    // Every line fits.
    assert_eq!(s.lines().count(), 24);
}

#[test]
fn wide_screen_shows_more_rates() {
    let app = sample(false);
    let s = screen(&app, 160, 40);
    for want in [
        "1.5M udp_rx_bytes/s",
        "2.0k udp_rx_packets/s",
        "10 ticks/s",
        "RATE",
        "TREND",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
}

#[test]
fn help_popup_and_embedded_quit_note() {
    let mut app = sample(true);
    assert_eq!(app.handle_key(key(KeyCode::Char('?'))), Action::None);
    assert_eq!(app.mode, Mode::Help(0));
    let s = screen(&app, 80, 24);
    assert!(s.contains("help (Esc closes)"), "{s}");
    assert!(s.contains("stops every component"), "{s}");
    assert!(s.contains("kill (SIGKILL)"), "{s}");
    assert!(s.contains("embedded: q stops all"), "{s}");
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.mode, Mode::Normal);
    assert!(!screen(&app, 80, 24).contains("help (Esc closes)"));
}

#[test]
fn details_popup_shows_counters() {
    let mut app = sample(false);
    assert_eq!(app.selected, Some(1));
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Details(1));
    let s = screen(&app, 80, 24);
    for want in [
        "1 demo (Esc closes)",
        "COUNTER",
        "udp_rx_packets",
        "5000",
        "2.0k",
        "Hello World",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
}

#[test]
fn tiny_terminal_does_not_panic() {
    let app = sample(false);
    for (w, h) in [(1, 1), (10, 3), (29, 9), (30, 10), (45, 12)] {
        let _ = screen(&app, w, h);
    }
    assert!(screen(&app, 20, 5).contains("too small"));
    // Popups too, at the smallest size drawn.
    let mut app = app;
    for k in [KeyCode::Char('?'), KeyCode::Esc, KeyCode::Enter] {
        app.handle_key(key(k));
        for (w, h) in [(30, 10), (31, 11), (45, 12), (80, 24)] {
            let _ = screen(&app, w, h);
        }
    }
}

#[test]
fn keys_act_on_the_selection() {
    let mut app = sample(false);
    let run = |a: Action| match a {
        Action::Run { tokens, .. } => tokens,
        other => panic!("expected a command, got {other:?}"),
    };
    assert_eq!(run(app.handle_key(key(KeyCode::Char('d')))), ["sd", "1"]);
    assert_eq!(run(app.handle_key(key(KeyCode::Char('k')))), ["kill", "1"]);
    assert_eq!(
        run(app.handle_key(key(KeyCode::Char('r')))),
        ["restart", "1"]
    );
    // s on a running component says what to do instead.
    assert_eq!(app.handle_key(key(KeyCode::Char('s'))), Action::None);
    assert!(app.status.as_ref().unwrap().error);
    // Down selects the exited one; s brings it back.
    app.handle_key(key(KeyCode::Down));
    assert_eq!(app.selected, Some(2));
    assert_eq!(
        run(app.handle_key(key(KeyCode::Char('s')))),
        ["restart", "2"]
    );
    // The apps pane: s starts the selected app with its default arguments.
    app.handle_key(key(KeyCode::Left));
    assert_eq!(app.focus, Pane::Apps);
    app.handle_key(key(KeyCode::Down));
    assert_eq!(
        run(app.handle_key(key(KeyCode::Char('s')))),
        ["start", "skywire-node"]
    );
    // l focuses the logs, Tab moves on, q quits.
    app.handle_key(key(KeyCode::Char('l')));
    assert_eq!(app.focus, Pane::Logs);
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.focus, Pane::Apps);
    assert_eq!(app.handle_key(key(KeyCode::Char('q'))), Action::Quit);
    assert_eq!(
        app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
}

#[test]
fn filter_narrows_the_list() {
    let mut app = sample(false);
    app.handle_key(key(KeyCode::Char('/')));
    assert_eq!(app.mode, Mode::Filter);
    typ(&mut app, "sky");
    assert_eq!(app.filter, "sky");
    let ids: Vec<u64> = app.visible().iter().map(|c| c.id).collect();
    assert_eq!(ids, [2]);
    // The selection follows the filter.
    assert_eq!(app.selected, Some(2));
    let s = screen(&app, 80, 24);
    assert!(s.contains("filter: sky (1 shown)"), "{s}");
    assert!(s.contains("/sky"), "{s}");
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.visible().len(), 1);
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.visible().len(), 2);
}

#[test]
fn command_line_completes_and_remembers() {
    let mut app = sample(false);
    app.handle_key(key(KeyCode::Char(':')));
    assert_eq!(app.mode, Mode::Command);
    typ(&mut app, "st");
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.input, "start ");
    typ(&mut app, "sk");
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.input, "start skywire-node ");
    typ(&mut app, "--shards 2");
    match app.handle_key(key(KeyCode::Enter)) {
        Action::Run { tokens, show } => {
            assert_eq!(tokens, ["start", "skywire-node", "--shards", "2"]);
            assert_eq!(show, Show::Status);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(app.mode, Mode::Normal);
    // A reply with an id selects the new component once it is listed.
    app.apply_reply(
        &["start".into(), "skywire-node".into()],
        &Show::Status,
        &json!({"ok": true, "text": "started skywire-node as 3 (pid 9)", "data": {"id": 3}}),
    );
    assert_eq!(
        app.status.as_ref().unwrap().text,
        "started skywire-node as 3 (pid 9)"
    );

    app.handle_key(key(KeyCode::Char(':')));
    typ(&mut app, "list");
    let a = app.handle_key(key(KeyCode::Enter));
    assert!(matches!(a, Action::Run { ref tokens, .. } if tokens == &["list"]));
    // History: Up brings back the last lines, Down returns to the draft.
    app.handle_key(key(KeyCode::Char(':')));
    typ(&mut app, "dra");
    app.handle_key(key(KeyCode::Up));
    assert_eq!(app.input, "list");
    app.handle_key(key(KeyCode::Up));
    assert_eq!(app.input, "start skywire-node --shards 2");
    app.handle_key(key(KeyCode::Down));
    app.handle_key(key(KeyCode::Down));
    assert_eq!(app.input, "dra");
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.mode, Mode::Normal);

    // Multi-line output opens a popup; an error goes to the status line.
    app.apply_reply(
        &["list".into()],
        &Show::Auto("list".into()),
        &json!({"ok": true, "text": "ID NAME\n1 demo", "data": []}),
    );
    assert!(matches!(app.mode, Mode::Output(ref p) if p.lines.len() == 2));
    assert!(screen(&app, 80, 24).contains("1 demo"));
    app.handle_key(key(KeyCode::Esc));
    app.handle_key(key(KeyCode::Char(':')));
    typ(&mut app, "ping x");
    assert_eq!(app.handle_key(key(KeyCode::Enter)), Action::None);
    let st = app.status.clone().unwrap();
    assert!(st.error && st.text.contains("not a component id"), "{st:?}");
    // attach and logs -f follow in the log pane instead of streaming.
    app.handle_key(key(KeyCode::Char(':')));
    typ(&mut app, "attach 2");
    assert_eq!(app.handle_key(key(KeyCode::Enter)), Action::None);
    assert_eq!((app.selected, app.focus), (Some(2), Pane::Logs));
}

#[test]
fn completion_of_commands_apps_and_ids() {
    let apps = ["demo".to_string(), "dns".to_string(), "node".to_string()];
    let ids = [1, 12, 2];
    let c = complete("res", &apps, &ids);
    assert_eq!(c.line, "restart ");
    let c = complete("re", &apps, &ids);
    assert_eq!(c.line, "re");
    assert_eq!(c.candidates, ["reload", "restart"]);
    let c = complete("s -w n", &apps, &ids);
    assert_eq!(c.line, "s -w node ");
    let c = complete("help d", &apps, &ids);
    assert_eq!(c.line, "help d");
    assert_eq!(c.candidates, ["demo", "dns"]);
    let c = complete("logs 1", &apps, &ids);
    assert_eq!(c.candidates, ["1", "12"]);
    let c = complete("kill ", &apps, &ids);
    assert_eq!(c.candidates.len(), 3);
    // Arguments after the app name are not completed.
    let c = complete("start demo d", &apps, &ids);
    assert_eq!((c.line.as_str(), c.candidates.len()), ("start demo d", 0));
}

#[test]
fn rates_and_sparklines() {
    assert_eq!(fmt_si(9.5), "9.5");
    assert_eq!(fmt_bytes(812 * 1024), "812K");
    assert_eq!(fmt_bytes(1023 * 1024 * 1024), "1023M");
    assert_eq!(fmt_bytes(3 * 1024 * 1024 / 2), "1.5M");
    assert_eq!(fmt_si(10.04), "10");
    assert_eq!(fmt_si(9.96), "10");
    assert_eq!(fmt_si(1_500.0), "1.5k");
    assert_eq!(fmt_si(25_000_000.0), "25M");
    let h = [0.0, 5.0, 10.0].into_iter().collect();
    assert_eq!(sparkline(&h, 8), "▁▅█");
    assert_eq!(sparkline(&h, 2), "▅█");
    // A component that stops being ready loses its rates.
    let mut app = sample(false);
    assert!(screen(&app, 160, 40).contains("udp_rx_bytes"));
    app.apply_snapshot(&super::Snapshot {
        at: Instant::now(),
        list: json!({"ok": true, "text": "", "data": [
            {"id": 1, "app": "demo", "pid": null, "state": "exited", "restarts": 2, "args": []}]}),
        usage: Vec::new(),
        logs: None,
        apps: None,
    });
    let s = screen(&app, 160, 40);
    assert!(!s.contains("udp_rx_bytes"), "{s}");
    assert!(s.contains("exited"), "{s}");
}

#[test]
fn unreachable_daemon_is_shown() {
    let mut app = App::new("daemon /x.sock", false, Duration::from_millis(500));
    assert!(screen(&app, 80, 24).contains("connecting..."));
    app.apply_list(&json!({"ok": false, "text": "cannot reach the daemon at /x.sock"}));
    let s = screen(&app, 80, 24);
    assert!(s.contains("cannot reach the daemon"), "{s}");
}

#[test]
fn log_lines_are_coloured_and_filtered_by_level() {
    use ratatui::style::Color;
    let mut app = sample(false);
    app.apply_logs(
        1,
        &json!({"ok": true, "text": "", "data": {"id": 1, "lines": [
            "12:00:00.000 ERROR a: down",
            "12:00:00.100  WARN a: slow",
            "12:00:00.200 out plain",
            "12:00:00.300 DEBUG a: detail",
        ], "levels": ["error", "warn", "info", "debug"]}}),
    );
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    let b = t.backend().buffer().clone();
    let colour_of = |text: &str| {
        for y in 0..24 {
            let row: String = (0..80).map(|x| b[(x, y)].symbol()).collect::<String>();
            if let Some(i) = row.find(text) {
                let x = row[..i].chars().count() as u16;
                return b[(x, y)].fg;
            }
        }
        panic!("{text:?} not on screen");
    };
    assert_eq!(colour_of("a: down"), Color::Red);
    assert_eq!(colour_of("a: slow"), Color::Yellow);
    assert_eq!(colour_of("out plain"), Color::Reset);
    assert_eq!(colour_of("a: detail"), Color::DarkGray);

    // `logs 1 -f --level warn` on the command line: the pane keeps warn and up.
    app.handle_key(key(KeyCode::Char(':')));
    typ(&mut app, "logs 1 --level warn -f");
    assert_eq!(app.handle_key(key(KeyCode::Enter)), Action::None);
    let s = screen(&app, 80, 24);
    assert!(s.contains("(warn and up)"), "{s}");
    // The refresh fetches at that level too (300 lines of warn and up, not of everything).
    let f = app.followed().unwrap();
    assert_eq!((f.id, f.min), (1, Some(crate::loglevel::Level::Warn)));
    assert!(s.contains("a: down") && s.contains("a: slow"), "{s}");
    assert!(!s.contains("out plain") && !s.contains("a: detail"), "{s}");
    // The filter holds for the next refresh; `logs 1 -f` shows everything again.
    app.apply_logs(
        1,
        &json!({"ok": true, "text": "", "data": {"id": 1, "lines": [
            "12:00:01.000 out later", "12:00:01.100 err oops",
        ], "levels": ["info", "error"]}}),
    );
    let s = screen(&app, 80, 24);
    assert!(s.contains("err oops") && !s.contains("out later"), "{s}");
    app.handle_key(key(KeyCode::Char(':')));
    typ(&mut app, "logs 1 -f");
    app.handle_key(key(KeyCode::Enter));
    let s = screen(&app, 80, 24);
    assert!(s.contains("out later") && !s.contains("and up"), "{s}");
    assert_eq!(app.followed().unwrap().min, None);
}
