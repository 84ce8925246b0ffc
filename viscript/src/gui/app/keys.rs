//! What a key does: [`App::handle_key`] and the command line.

use super::*;

impl App {
    // ---- keys -------------------------------------------------------------------------

    /// What `key` does.
    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('l') {
            return Action::Clear;
        }
        match self.mode.clone() {
            Mode::Normal => self.key_normal(key, ctrl),
            Mode::Command => self.key_command(key, ctrl),
            Mode::Filter => self.key_filter(key, ctrl),
            Mode::Help(_) | Mode::Details(_) | Mode::Output(_) => self.key_popup(key, ctrl),
        }
    }

    fn key_popup(&mut self, key: KeyEvent, ctrl: bool) -> Action {
        let scroll = |m: &mut Mode, f: &dyn Fn(usize) -> usize| match m {
            Mode::Help(s) => *s = f(*s),
            Mode::Output(p) => p.scroll = f(p.scroll),
            _ => {}
        };
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') | KeyCode::Char('?') => {
                self.mode = Mode::Normal
            }
            KeyCode::Up => scroll(&mut self.mode, &|s| s.saturating_sub(1)),
            KeyCode::Down => scroll(&mut self.mode, &|s| s + 1),
            KeyCode::PageUp => scroll(&mut self.mode, &|s| s.saturating_sub(10)),
            KeyCode::PageDown => scroll(&mut self.mode, &|s| s + 10),
            KeyCode::Home => scroll(&mut self.mode, &|_| 0),
            _ => {}
        }
        Action::None
    }

    fn key_normal(&mut self, key: KeyEvent, ctrl: bool) -> Action {
        let next = |p: Pane| match p {
            Pane::Components => Pane::Logs,
            Pane::Logs => Pane::Apps,
            Pane::Apps => Pane::Components,
        };
        let prev = |p: Pane| match p {
            Pane::Components => Pane::Apps,
            Pane::Apps => Pane::Logs,
            Pane::Logs => Pane::Components,
        };
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Tab | KeyCode::Right => self.focus = next(self.focus),
            KeyCode::BackTab | KeyCode::Left => self.focus = prev(self.focus),
            KeyCode::Up | KeyCode::Down | KeyCode::PageUp | KeyCode::PageDown => {
                let d: isize = match key.code {
                    KeyCode::Up => -1,
                    KeyCode::Down => 1,
                    KeyCode::PageUp => -10,
                    _ => 10,
                };
                match self.focus {
                    Pane::Components => self.move_selection(d),
                    Pane::Apps => {
                        let n = self.apps.len() as isize;
                        if n > 0 {
                            self.app_sel = (self.app_sel as isize + d).clamp(0, n - 1) as usize;
                        }
                    }
                    Pane::Logs => {
                        let max = self.log_lines.len().saturating_sub(1);
                        self.log_scroll = if d < 0 {
                            (self.log_scroll + d.unsigned_abs()).min(max)
                        } else {
                            self.log_scroll.saturating_sub(d as usize)
                        };
                    }
                }
            }
            KeyCode::Home if self.focus == Pane::Logs => {
                self.log_scroll = self.log_lines.len().saturating_sub(1)
            }
            KeyCode::End if self.focus == Pane::Logs => self.log_scroll = 0,
            KeyCode::Enter => match self.focus {
                Pane::Apps => {
                    if let Some(a) = self.apps.get(self.app_sel) {
                        let name = a.name.clone();
                        return self.run(
                            vec!["help".into(), name.clone()],
                            Show::Popup(format!("app {name}")),
                        );
                    }
                }
                _ => match self.selected {
                    Some(id) => self.mode = Mode::Details(id),
                    None => self.say("no component selected", true),
                },
            },
            KeyCode::Char('s') => {
                if self.focus == Pane::Apps {
                    match self.apps.get(self.app_sel) {
                        Some(a) => {
                            let name = a.name.clone();
                            return self.run(vec!["start".into(), name], Show::Status);
                        }
                        None => self.say("no apps in the config", true),
                    }
                } else {
                    match self.selected_component() {
                        Some(c) if alive_state(&c.state) => {
                            let t = format!(
                                "{} is {}; r restarts it, or start another from the apps pane",
                                c.id, c.state
                            );
                            self.say(t, true);
                        }
                        Some(c) => {
                            // Stopped: bring it back with the same id and arguments.
                            let id = c.id;
                            return self.run(vec!["restart".into(), id.to_string()], Show::Status);
                        }
                        None => self.say(
                            "no component selected; start one from the apps pane (\u{2190}, then s)",
                            true,
                        ),
                    }
                }
            }
            KeyCode::Char('r') => return self.on_component("restart"),
            KeyCode::Char('d') => return self.on_component("sd"),
            KeyCode::Char('k') => return self.on_component("kill"),
            KeyCode::Char('p') => return self.on_component("ping"),
            KeyCode::Char('l') => {
                self.focus = Pane::Logs;
                self.log_scroll = 0;
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Filter;
                self.focus = Pane::Components;
            }
            KeyCode::Char('?') => self.mode = Mode::Help(0),
            KeyCode::Char(':') => {
                self.mode = Mode::Command;
                self.input.clear();
                self.cursor = 0;
                self.hist_pos = None;
            }
            KeyCode::Esc => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.fix_selection();
                }
                self.status = None;
            }
            _ => {}
        }
        Action::None
    }

    fn key_filter(&mut self, key: KeyEvent, ctrl: bool) -> Action {
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Char('u') if ctrl => self.filter.clear(),
            KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Esc => {
                self.filter.clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Up => self.move_selection(-1),
            KeyCode::Down => self.move_selection(1),
            KeyCode::Char(c) if !ctrl => self.filter.push(c),
            _ => {}
        }
        self.fix_selection();
        Action::None
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.input
            .char_indices()
            .nth(chars)
            .map(|(i, _)| i)
            .unwrap_or(self.input.len())
    }

    fn key_command(&mut self, key: KeyEvent, ctrl: bool) -> Action {
        let len = self.input.chars().count();
        match key.code {
            KeyCode::Char('c') if ctrl => {
                self.mode = Mode::Normal;
                self.input.clear();
            }
            KeyCode::Char('u') if ctrl => {
                self.input.clear();
                self.cursor = 0;
            }
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = len,
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                self.input.clear();
                self.cursor = 0;
            }
            KeyCode::Enter => return self.submit(),
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            KeyCode::Backspace => {
                if self.cursor > 0 {
                    let b = self.byte_at(self.cursor - 1);
                    self.input.remove(b);
                    self.cursor -= 1;
                } else if self.input.is_empty() {
                    self.mode = Mode::Normal;
                }
            }
            KeyCode::Delete if self.cursor < len => {
                let b = self.byte_at(self.cursor);
                self.input.remove(b);
            }
            KeyCode::Up => {
                if self.history.is_empty() {
                    return Action::None;
                }
                let pos = match self.hist_pos {
                    None => {
                        self.draft = self.input.clone();
                        self.history.len() - 1
                    }
                    Some(p) => p.saturating_sub(1),
                };
                self.hist_pos = Some(pos);
                self.input = self.history[pos].clone();
                self.cursor = self.input.chars().count();
            }
            KeyCode::Down => {
                let Some(p) = self.hist_pos else {
                    return Action::None;
                };
                if p + 1 < self.history.len() {
                    self.hist_pos = Some(p + 1);
                    self.input = self.history[p + 1].clone();
                } else {
                    self.hist_pos = None;
                    self.input = std::mem::take(&mut self.draft);
                }
                self.cursor = self.input.chars().count();
            }
            KeyCode::Tab => {
                let apps: Vec<String> = self.apps.iter().map(|a| a.name.clone()).collect();
                let ids: Vec<u64> = self.components.iter().map(|c| c.id).collect();
                let b = self.byte_at(self.cursor);
                let c = complete(&self.input[..b], &apps, &ids);
                let rest = self.input[b..].to_string();
                self.cursor = c.line.chars().count();
                self.input = format!("{}{rest}", c.line);
                if c.candidates.len() > 1 {
                    let t = c.candidates.join("  ");
                    self.say(t, false);
                }
            }
            KeyCode::Char(ch) if !ctrl => {
                let b = self.byte_at(self.cursor);
                self.input.insert(b, ch);
                self.cursor += 1;
            }
            _ => {}
        }
        Action::None
    }

    fn submit(&mut self) -> Action {
        let line = self.input.trim().to_string();
        self.input.clear();
        self.cursor = 0;
        self.hist_pos = None;
        self.mode = Mode::Normal;
        if line.is_empty() {
            return Action::None;
        }
        if self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if self.history.len() > MAX_HISTORY {
                self.history.remove(0);
            }
        }
        let tokens = match crate::command::tokenize(&line) {
            Ok(t) => t,
            Err(e) => {
                self.say(format!("error: {e}"), true);
                return Action::None;
            }
        };
        let cmd = match crate::command::Command::parse(&tokens) {
            Ok(c) => c,
            Err(e) => {
                self.say(format!("error: {e}"), true);
                return Action::None;
            }
        };
        use crate::command::Command as C;
        match cmd {
            // Embedded, the supervisor lives and dies with the GUI; against a daemon, `quit`
            // stops the daemon (q leaves the GUI alone).
            C::Quit if self.embedded => Action::Quit,
            // Following happens in the log pane.
            C::Attach(id)
            | C::Logs {
                id, follow: true, ..
            } => {
                if self.components.iter().any(|c| c.id == id) {
                    let min = match cmd {
                        C::Logs { level, .. } => level,
                        _ => None,
                    };
                    self.set_log_min(min);
                    self.selected = Some(id);
                    self.filter.clear();
                    self.focus = Pane::Logs;
                    self.log_scroll = 0;
                    self.say(format!("following {id} in the log pane"), false);
                } else {
                    self.say(
                        format!("error: no component with id {id}; `list` shows the running ones"),
                        true,
                    );
                }
                Action::None
            }
            C::Start {
                app,
                args,
                attach,
                wait,
            } => {
                let mut t = vec!["start".to_string()];
                if wait {
                    t.push("-w".into());
                }
                t.push(app);
                t.extend(args.unwrap_or_default());
                if attach {
                    self.focus = Pane::Logs;
                }
                self.run(t, Show::Status)
            }
            _ => self.run(tokens, Show::Auto(line)),
        }
    }
}
