//! From the raw parse to a [`Config`](super::Config): semantic checks, path resolution and
//! cycle detection. The raw structures and the helpers both stages share live here.

use super::types::{App, Config, MAX_APP_NAME_LEN, Pos, Restart, Settings};
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};

pub(super) type Problem = (Option<Pos>, String);

#[derive(Debug, Default)]
pub(super) struct RawRoot {
    pub(super) settings: RawSettings,
    pub(super) apps: Vec<RawApp>,
}

#[derive(Debug, Default)]
pub(super) struct RawSettings {
    pub(super) s: Settings,
    /// Positions of the values given, by field name.
    pub(super) pos: Vec<(&'static str, Option<Pos>)>,
}

impl RawSettings {
    pub(super) fn pos(&self, field: &str) -> Option<Pos> {
        self.pos.iter().find(|(f, _)| *f == field).and_then(|p| p.1)
    }
}

#[derive(Debug, Default)]
pub(super) struct RawApp {
    pub(super) name: String,
    pub(super) name_pos: Option<Pos>,
    pub(super) path: Option<(String, Option<Pos>)>,
    pub(super) default_args: (Vec<String>, Option<Pos>),
    pub(super) daemon: bool,
    pub(super) desc: String,
    pub(super) help: String,
    pub(super) autostart: bool,
    pub(super) restart: Option<Restart>,
    pub(super) after: Vec<Spanned<String>>,
    pub(super) env: Vec<(Spanned<String>, String)>,
}

pub(super) fn pos_of(loc: &serde_saphyr::Location) -> Option<Pos> {
    (loc.line() > 0).then(|| Pos {
        line: loc.line(),
        column: loc.column(),
    })
}

pub(super) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

// Validation
// ---------------------------------------------------------------------------

fn resolve(base_file: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_file.parent().unwrap_or(Path::new("")).join(p)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 {
        return Err("app name must not be empty".into());
    }
    if len > MAX_APP_NAME_LEN {
        return Err(format!(
            "app name `{name}` is too long ({len} characters, at most {MAX_APP_NAME_LEN})"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "invalid app name `{name}`: character {c:?} is not allowed (use A-Z a-z 0-9 . _ -)"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("invalid app name `{name}`"));
    }
    Ok(())
}

/// Turns the raw parse into a `Config`, appending every problem found.
pub(super) fn validate(raw: RawRoot, base: &Path, problems: &mut Vec<Problem>) -> Option<Config> {
    let RawRoot { settings, apps } = raw;
    let mut s = settings.s.clone();
    let mut bad = |field: &str, msg: String| problems.push((settings.pos(field), msg));
    if s.ping_interval.is_zero() {
        bad(
            "ping_interval_ms",
            "`ping_interval_ms` in `settings` must be greater than 0".into(),
        );
    }
    if s.start_limit == 0 {
        bad(
            "start_limit",
            "`start_limit` in `settings` must be at least 1".into(),
        );
    }
    if s.log_lines == 0 {
        bad(
            "log_lines",
            "`log_lines` in `settings` must be at least 1".into(),
        );
    }
    if !(0.0..=1.0).contains(&s.backoff_jitter) {
        bad(
            "backoff_jitter",
            format!(
                "`backoff_jitter` in `settings` must be between 0 and 1, got {}",
                s.backoff_jitter
            ),
        );
    }
    if let Some(sock) = &s.socket {
        if sock.as_os_str().is_empty() {
            bad("socket", "`socket` in `settings` must not be empty".into());
        } else if sock.to_string_lossy().contains('\0') {
            bad(
                "socket",
                "`socket` in `settings` must not contain NUL".into(),
            );
        }
        s.socket = Some(resolve(base, &sock.to_string_lossy()));
    }

    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    let mut out = Vec::with_capacity(apps.len());
    for app in &apps {
        let at = app.name_pos;
        let name = &app.name;
        if let Err(msg) = check_name(name) {
            problems.push((at, msg));
        }
        let path = match &app.path {
            None => {
                problems.push((at, format!("app `{name}` is missing required field `path`")));
                PathBuf::new()
            }
            Some((p, pos)) => {
                if p.is_empty() {
                    problems.push((*pos, format!("`path` of app `{name}` must not be empty")));
                } else if p.contains('\0') {
                    problems.push((*pos, format!("`path` of app `{name}` must not contain NUL")));
                }
                resolve(base, p)
            }
        };
        if app.default_args.0.iter().any(|a| a.contains('\0')) {
            problems.push((
                app.default_args.1,
                format!("`default_args` of app `{name}` must not contain NUL"),
            ));
        }
        let mut env = Vec::with_capacity(app.env.len());
        for (k, v) in &app.env {
            let key = &k.value;
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                problems.push((
                    pos_of(&k.referenced),
                    format!(
                        "invalid environment variable name `{key}` in app `{name}` (must be non-empty, without `=` or NUL)"
                    ),
                ));
            }
            if v.contains('\0') {
                problems.push((
                    pos_of(&k.referenced),
                    format!("environment variable `{key}` of app `{name}` must not contain NUL"),
                ));
            }
            env.push((key.clone(), v.clone()));
        }
        let mut after: Vec<String> = Vec::with_capacity(app.after.len());
        for dep in &app.after {
            if !names.contains(&dep.value.as_str()) {
                let hint = suggest(&dep.value, &names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                problems.push((
                    pos_of(&dep.referenced),
                    format!(
                        "app `{name}` lists unknown app `{}` in `after`{hint}",
                        dep.value
                    ),
                ));
            }
            if !after.contains(&dep.value) {
                after.push(dep.value.clone());
            }
        }
        out.push(App {
            name: name.clone(),
            path,
            default_args: app.default_args.0.clone(),
            daemon: app.daemon,
            desc: app.desc.clone(),
            help: app.help.clone(),
            autostart: app.autostart,
            restart: app.restart.unwrap_or(if app.daemon {
                Restart::OnFailure
            } else {
                Restart::Never
            }),
            after,
            env,
        });
    }

    for cycle in find_cycles(&out) {
        let first = cycle.first().copied().unwrap_or(0);
        let mut chain: Vec<String> = cycle
            .iter()
            .map(|&i| format!("`{}`", out[i].name))
            .collect();
        chain.push(format!("`{}`", out[first].name));
        let pos = apps.get(first).and_then(|a| a.name_pos);
        problems.push((
            pos,
            format!(
                "dependency cycle in `after`: {} (each app waits for the next)",
                chain.join(" -> ")
            ),
        ));
    }

    Some(Config {
        settings: s,
        apps: out,
        path: base.to_path_buf(),
    })
}

/// Every cycle reachable by following `after` edges, each as app indices
/// starting at its earliest app in file order, without repeats.
fn find_cycles(apps: &[App]) -> Vec<Vec<usize>> {
    let n = apps.len();
    let deps: Vec<Vec<usize>> = apps
        .iter()
        .map(|a| {
            a.after
                .iter()
                .filter_map(|d| apps.iter().position(|b| &b.name == d))
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the DFS stack, 2 = done.
    let mut color = vec![0u8; n];
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    for start in 0..n {
        if color[start] != 0 {
            continue;
        }
        color[start] = 1;
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some(top) = stack.last_mut() {
            let (v, i) = *top;
            if let Some(&w) = deps[v].get(i) {
                top.1 += 1;
                match color[w] {
                    0 => {
                        color[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        if let Some(at) = stack.iter().position(|&(x, _)| x == w) {
                            let mut cycle: Vec<usize> =
                                stack[at..].iter().map(|&(x, _)| x).collect();
                            if let Some(min_at) = (0..cycle.len()).min_by_key(|&k| cycle[k]) {
                                cycle.rotate_left(min_at);
                            }
                            if !cycles.contains(&cycle) {
                                cycles.push(cycle);
                            }
                        }
                    }
                    _ => {}
                }
            } else {
                color[v] = 2;
                stack.pop();
            }
        }
    }
    cycles
}
