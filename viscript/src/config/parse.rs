//! Reading the YAML: strict, positioned deserialization into the raw structures of
//! [`super::validate`], collecting every recoverable problem.

use super::types::{Config, ConfigError, Diagnostic, Pos};
use super::validate::{Problem, RawApp, RawRoot, RawSettings, pos_of, suggest, validate};
use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned, UserMessageFormatter};

const TOP_FIELDS: &[&str] = &["settings", "apps"];
const SETTINGS_FIELDS: &[&str] = &[
    "ping_interval_ms",
    "ping_failures",
    "ready_timeout_ms",
    "shutdown_grace_ms",
    "term_grace_ms",
    "backoff_initial_ms",
    "backoff_max_ms",
    "backoff_jitter",
    "start_limit",
    "start_window_ms",
    "degraded_retry_ms",
    "log_lines",
    "log_rate",
    "socket",
];
const APP_FIELDS: &[&str] = &[
    "path",
    "default_args",
    "daemon",
    "desc",
    "help",
    "autostart",
    "restart",
    "after",
    "env",
];

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

fn parse_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 32,
            max_nodes: 200_000,
            max_events: 500_000,
            max_aliases: 10_000,
            max_anchors: 10_000,
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        strict_booleans: true,
        reject_unsupported_tags: true,
        with_snippet: false,
    }
}

pub(super) fn parse_impl(text: &str, file: &Path, base: &Path) -> Result<Config, ConfigError> {
    let ctx = RefCell::new(Ctx::default());
    let result =
        serde_saphyr::with_deserializer_from_str_with_options(text, parse_options(), |de| {
            RootSeed { ctx: &ctx }.deserialize(de)
        });
    let mut ctx = ctx.into_inner();
    let mut problems = std::mem::take(&mut ctx.problems);
    let config = match result {
        Ok(raw) => validate(raw, base, &mut problems),
        Err(err) => {
            problems.push(saphyr_problem(&err, &ctx));
            None
        }
    };
    match config {
        Some(cfg) if problems.is_empty() => Ok(cfg),
        _ => {
            problems.sort_by_key(|p| (p.0.is_none(), p.0));
            Err(ConfigError::Invalid(
                problems
                    .into_iter()
                    .map(|(pos, msg)| Diagnostic {
                        file: file.to_path_buf(),
                        pos,
                        message: sanitize(&msg),
                    })
                    .collect(),
            ))
        }
    }
}

/// Where the deserializer currently is; used to explain its errors.
#[derive(Debug, Default, Clone)]
enum Section {
    #[default]
    Top,
    Settings,
    Apps,
    App(String),
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::Top => f.write_str("the top level"),
            Section::Settings => f.write_str("`settings`"),
            Section::Apps => f.write_str("`apps`"),
            Section::App(name) => write!(f, "app `{name}`"),
        }
    }
}

#[derive(Debug, Default)]
struct Ctx {
    section: Section,
    /// Field whose value is being read.
    field: Option<&'static str>,
    /// App names read so far, for duplicate reports.
    seen_apps: Vec<(String, Option<Pos>)>,
    /// Recoverable problems found while parsing.
    problems: Vec<Problem>,
}

fn set_section(ctx: &RefCell<Ctx>, section: Section) {
    let mut c = ctx.borrow_mut();
    c.section = section;
    c.field = None;
}

/// Explains a serde-saphyr error using the parse context.
fn saphyr_problem(err: &serde_saphyr::Error, ctx: &Ctx) -> Problem {
    let pos = err.location().as_ref().and_then(pos_of);
    let mut inner = err;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = inner {
        let key = key.as_deref().unwrap_or("?");
        let msg = match (&ctx.section, ctx.field) {
            (Section::Apps, None) => {
                let first = ctx
                    .seen_apps
                    .iter()
                    .find(|(n, _)| n == key)
                    .and_then(|(_, p)| *p);
                match first {
                    Some(p) => format!(
                        "duplicate app `{key}` (first defined at line {}, column {})",
                        p.line, p.column
                    ),
                    None => format!("duplicate app `{key}`"),
                }
            }
            (Section::Top, None) => format!("duplicate top-level key `{key}`"),
            (section, None) => format!("duplicate key `{key}` in {section}"),
            (section, Some(field)) => format!("duplicate key `{key}` in `{field}` of {section}"),
        };
        return (pos, msg);
    }
    let raw = UserMessageFormatter.format_message(inner);
    let msg = raw
        .replace("expected mapping start", "expected a mapping")
        .replace("expected sequence start", "expected a list")
        .replace("expected string scalar", "expected a string");
    use serde_saphyr::Error as E;
    if matches!(inner, E::ExternalMessage { .. }) {
        return (pos, format!("YAML syntax error: {msg}"));
    }
    if matches!(
        inner,
        E::Eof { .. }
            | E::MultipleDocuments { .. }
            | E::Budget { .. }
            | E::IndentationError { .. }
            | E::AliasReplayCounterOverflow { .. }
            | E::AliasReplayLimitExceeded { .. }
            | E::AliasExpansionLimitExceeded { .. }
            | E::AliasReplayStackDepthExceeded { .. }
            | E::IOError { .. }
    ) {
        return (pos, msg);
    }
    let msg = match (&ctx.section, ctx.field) {
        (Section::Top, None) => format!("invalid top-level document: {msg}"),
        (Section::Top, Some(field)) => format!("invalid value for `{field}`: {msg}"),
        (section, None) => format!("in {section}: {msg}"),
        (section, Some(field)) => format!("invalid value for `{field}` in {section}: {msg}"),
    };
    (pos, msg)
}

/// Escapes control characters so a message stays on one line.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Records an unknown key (with a spelling suggestion) and skips its value.
fn unknown_key<'de, A: MapAccess<'de>>(
    map: &mut A,
    ctx: &RefCell<Ctx>,
    key: &Spanned<String>,
    expected: &[&str],
) -> Result<(), A::Error> {
    let msg = {
        let c = ctx.borrow();
        let place = match &c.section {
            Section::Top => "at the top level".to_string(),
            other => format!("in {other}"),
        };
        let hint = suggest(&key.value, expected)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        format!(
            "unknown field `{}` {place}{hint}, expected one of: {}",
            key.value,
            expected.join(", ")
        )
    };
    ctx.borrow_mut()
        .problems
        .push((pos_of(&key.referenced), msg));
    map.next_value::<IgnoredAny>()?;
    Ok(())
}

/// Reads the value of `field`, recording the field for error messages.
fn field_value<'de, A, T>(
    map: &mut A,
    ctx: &RefCell<Ctx>,
    field: &'static str,
) -> Result<(T, Option<Pos>), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    ctx.borrow_mut().field = Some(field);
    let v: Spanned<T> = map.next_value()?;
    ctx.borrow_mut().field = None;
    Ok((v.value, pos_of(&v.referenced)))
}

fn known_field(key: &str, fields: &[&'static str]) -> Option<&'static str> {
    fields.iter().copied().find(|f| *f == key)
}

struct RootSeed<'a> {
    ctx: &'a RefCell<Ctx>,
}

impl<'de> DeserializeSeed<'de> for RootSeed<'_> {
    type Value = RawRoot;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawRoot, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RootSeed<'_> {
    type Value = RawRoot;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `settings` and `apps`")
    }
    fn visit_none<E: de::Error>(self) -> Result<RawRoot, E> {
        Ok(RawRoot::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawRoot, E> {
        Ok(RawRoot::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawRoot, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRoot, A::Error> {
        let ctx = self.ctx;
        let mut root = RawRoot::default();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            match key.value.as_str() {
                "settings" => {
                    ctx.borrow_mut().field = Some("settings");
                    root.settings = map.next_value_seed(SettingsSeed { ctx })?;
                    set_section(ctx, Section::Top);
                }
                "apps" => {
                    ctx.borrow_mut().field = Some("apps");
                    root.apps = map.next_value_seed(AppsSeed { ctx })?;
                    set_section(ctx, Section::Top);
                }
                _ => unknown_key(&mut map, ctx, &key, TOP_FIELDS)?,
            }
        }
        Ok(root)
    }
}

struct SettingsSeed<'a> {
    ctx: &'a RefCell<Ctx>,
}

impl<'de> DeserializeSeed<'de> for SettingsSeed<'_> {
    type Value = RawSettings;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawSettings, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for SettingsSeed<'_> {
    type Value = RawSettings;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of settings")
    }
    fn visit_none<E: de::Error>(self) -> Result<RawSettings, E> {
        Ok(RawSettings::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawSettings, E> {
        Ok(RawSettings::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawSettings, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSettings, A::Error> {
        let ctx = self.ctx;
        set_section(ctx, Section::Settings);
        let mut raw = RawSettings::default();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let Some(field) = known_field(&key.value, SETTINGS_FIELDS) else {
                unknown_key(&mut map, ctx, &key, SETTINGS_FIELDS)?;
                continue;
            };
            let s = &mut raw.s;
            let ms = Duration::from_millis;
            let pos = match field {
                "ping_failures" => set(&mut s.ping_failures, field_value(&mut map, ctx, field)?),
                "backoff_jitter" => set(&mut s.backoff_jitter, field_value(&mut map, ctx, field)?),
                "start_limit" => set(&mut s.start_limit, field_value(&mut map, ctx, field)?),
                "log_lines" => set(&mut s.log_lines, field_value(&mut map, ctx, field)?),
                "log_rate" => set(&mut s.log_rate, field_value(&mut map, ctx, field)?),
                "socket" => {
                    let (v, pos): (Option<String>, _) = field_value(&mut map, ctx, field)?;
                    s.socket = v.map(PathBuf::from);
                    pos
                }
                _ => {
                    let (v, pos): (u64, _) = field_value(&mut map, ctx, field)?;
                    let slot = match field {
                        "ping_interval_ms" => &mut s.ping_interval,
                        "ready_timeout_ms" => &mut s.ready_timeout,
                        "shutdown_grace_ms" => &mut s.shutdown_grace,
                        "term_grace_ms" => &mut s.term_grace,
                        "backoff_initial_ms" => &mut s.backoff_initial,
                        "backoff_max_ms" => &mut s.backoff_max,
                        "start_window_ms" => &mut s.start_window,
                        _ => &mut s.degraded_retry,
                    };
                    *slot = ms(v);
                    pos
                }
            };
            raw.pos.push((field, pos));
        }
        Ok(raw)
    }
}

fn set<T>(slot: &mut T, (value, pos): (T, Option<Pos>)) -> Option<Pos> {
    *slot = value;
    pos
}

struct AppsSeed<'a> {
    ctx: &'a RefCell<Ctx>,
}

impl<'de> DeserializeSeed<'de> for AppsSeed<'_> {
    type Value = Vec<RawApp>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<RawApp>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for AppsSeed<'_> {
    type Value = Vec<RawApp>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of app names to apps")
    }
    fn visit_none<E: de::Error>(self) -> Result<Vec<RawApp>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<RawApp>, E> {
        Ok(Vec::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<RawApp>, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<RawApp>, A::Error> {
        let ctx = self.ctx;
        set_section(ctx, Section::Apps);
        let mut apps = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let name_pos = pos_of(&key.referenced);
            ctx.borrow_mut()
                .seen_apps
                .push((key.value.clone(), name_pos));
            set_section(ctx, Section::App(key.value.clone()));
            let mut app = map.next_value_seed(AppSeed { ctx })?;
            app.name = key.value;
            app.name_pos = name_pos;
            apps.push(app);
            set_section(ctx, Section::Apps);
        }
        Ok(apps)
    }
}

struct AppSeed<'a> {
    ctx: &'a RefCell<Ctx>,
}

impl<'de> DeserializeSeed<'de> for AppSeed<'_> {
    type Value = RawApp;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawApp, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for AppSeed<'_> {
    type Value = RawApp;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping describing an app")
    }
    fn visit_none<E: de::Error>(self) -> Result<RawApp, E> {
        Ok(RawApp::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawApp, E> {
        Ok(RawApp::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawApp, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawApp, A::Error> {
        let ctx = self.ctx;
        let mut app = RawApp::default();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let Some(field) = known_field(&key.value, APP_FIELDS) else {
                unknown_key(&mut map, ctx, &key, APP_FIELDS)?;
                continue;
            };
            match field {
                "path" => app.path = Some(field_value(&mut map, ctx, field)?),
                "default_args" => app.default_args = field_value(&mut map, ctx, field)?,
                "daemon" => app.daemon = field_value(&mut map, ctx, field)?.0,
                "desc" => app.desc = field_value(&mut map, ctx, field)?.0,
                "help" => app.help = field_value(&mut map, ctx, field)?.0,
                "autostart" => app.autostart = field_value(&mut map, ctx, field)?.0,
                "restart" => app.restart = Some(field_value(&mut map, ctx, field)?.0),
                "after" => app.after = field_value(&mut map, ctx, field)?.0,
                _ => app.env = field_value::<_, EnvList>(&mut map, ctx, field)?.0.0,
            }
        }
        Ok(app)
    }
}

/// A string-to-string mapping kept in file order.
struct EnvList(Vec<(Spanned<String>, String)>);

impl<'de> Deserialize<'de> for EnvList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(EnvVisitor)
    }
}

struct EnvVisitor;

impl<'de> Visitor<'de> for EnvVisitor {
    type Value = EnvList;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of environment variable names to values")
    }
    fn visit_none<E: de::Error>(self) -> Result<EnvList, E> {
        Ok(EnvList(Vec::new()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<EnvList, E> {
        Ok(EnvList(Vec::new()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<EnvList, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvList, A::Error> {
        let mut out = Vec::new();
        while let Some(entry) = map.next_entry::<Spanned<String>, String>()? {
            out.push(entry);
        }
        Ok(EnvList(out))
    }
}

// ---------------------------------------------------------------------------
