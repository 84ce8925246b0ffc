//! What the screen shows: [`App::render`].

use super::*;

impl App {
    // ---- drawing ----------------------------------------------------------------------

    /// Draws the whole screen.
    pub fn render(&self, frame: &mut Frame) {
        let area = frame.area();
        if area.width < 30 || area.height < 10 {
            frame.render_widget(
                Paragraph::new("viscript: terminal too small (30x10 at least); q quits")
                    .wrap(Wrap { trim: true }),
                area,
            );
            return;
        }
        let [header, main, status, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let [top, rest] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Fill(1)]).areas(main);
        let apps_w = (area.width * 35 / 100).clamp(20, 44);
        let [apps_area, logs_area] =
            Layout::horizontal([Constraint::Length(apps_w), Constraint::Fill(1)]).areas(rest);
        self.render_header(frame, header);
        self.render_components(frame, top);
        self.render_apps(frame, apps_area);
        self.render_logs(frame, logs_area);
        self.render_status(frame, status);
        self.render_bottom(frame, bottom);
        match &self.mode {
            Mode::Help(scroll) => self.render_help(frame, area, *scroll),
            Mode::Details(id) => self.render_details(frame, area, *id),
            Mode::Output(p) => render_popup(frame, area, &p.title, &p.lines, p.scroll),
            _ => {}
        }
    }

    fn pane_block(&self, pane: Pane, title: String) -> Block<'static> {
        let focused = self.focus == pane && matches!(self.mode, Mode::Normal | Mode::Filter);
        let style = if focused {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().fg(Color::DarkGray)
        };
        Block::bordered().border_style(style).title(Span::styled(
            title,
            if focused {
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            },
        ))
    }

    fn render_header(&self, frame: &mut Frame, area: Rect) {
        let ready = self
            .components
            .iter()
            .filter(|c| c.state == "ready")
            .count();
        let mut spans = vec![
            Span::styled(
                " viscript ",
                Style::new()
                    .fg(Color::Black)
                    .bg(Color::Cyan)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::raw(" "),
        ];
        match &self.conn_error {
            Some(e) => spans.push(Span::styled(
                format!("{} | {e}", self.source),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            )),
            None => {
                spans.push(Span::raw(format!(
                    "{} components, {ready} ready | ",
                    self.components.len()
                )));
                if self.embedded {
                    spans.push(Span::styled(
                        "embedded: q stops all",
                        Style::new().fg(Color::Yellow),
                    ));
                } else {
                    spans.push(Span::raw(self.source.clone()));
                }
            }
        }
        frame.render_widget(Line::from(spans), area);
    }

    fn render_components(&self, frame: &mut Frame, area: Rect) {
        let vis = self.visible();
        let mut title = format!(" components ({}) ", self.components.len());
        if !self.filter.is_empty() || self.mode == Mode::Filter {
            title.push_str(&format!("filter: {} ({} shown) ", self.filter, vis.len()));
        }
        let block = self.pane_block(Pane::Components, title);
        let inner_w = block.inner(area).width;
        let wide = inner_w >= 110;
        let spark_w: u16 = if wide { 16 } else { 6 };
        let name_w = vis
            .iter()
            .map(|c| c.app.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(4, 24) as u16;
        let n_rates = if wide { 3 } else { 1 };
        let header = Row::new([
            "ID", "NAME", "PID", "STATE", "UPTIME", "RST", "CPU%", "RSS", "RATE", "TREND",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        let rows: Vec<Row> = vis
            .iter()
            .map(|c| {
                let u = self.usage.get(&c.id);
                let r = self.rates.get(&c.id).filter(|_| u.is_some());
                let top = r.map(Rates::top).unwrap_or_default();
                let rates = top
                    .iter()
                    .take(n_rates)
                    .map(|(k, v)| fmt_rate(k, *v))
                    .collect::<Vec<_>>()
                    .join("  ");
                let spark = match (r, top.first()) {
                    (Some(r), Some((k, _))) => r
                        .history
                        .get(*k)
                        .map(|h| sparkline(h, spark_w as usize))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                Row::new([
                    Cell::from(c.id.to_string()),
                    Cell::from(c.app.clone()),
                    Cell::from(c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())),
                    Cell::from(Span::styled(c.state.clone(), state_style(&c.state))),
                    Cell::from(c.uptime_ms.map(fmt_uptime).unwrap_or_else(|| "-".into())),
                    Cell::from(c.restarts.to_string()),
                    Cell::from(
                        u.map(|u| format!("{:.1}", u.cpu_percent))
                            .unwrap_or_else(|| "-".into()),
                    ),
                    Cell::from(
                        u.map(|u| fmt_bytes(u.rss_bytes))
                            .unwrap_or_else(|| "-".into()),
                    ),
                    Cell::from(rates),
                    Cell::from(Span::styled(spark, Style::new().fg(Color::Cyan))),
                ])
            })
            .collect();
        let widths = [
            Constraint::Length(3),
            Constraint::Length(name_w),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(3),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Fill(1),
            Constraint::Length(spark_w),
        ];
        let empty = vis.is_empty();
        let table = Table::new(rows, widths)
            .header(header)
            .block(block)
            .row_highlight_style(if self.focus == Pane::Components {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new().add_modifier(Modifier::BOLD)
            })
            .highlight_symbol(">");
        let sel = self
            .selected
            .and_then(|s| vis.iter().position(|c| c.id == s));
        let mut state = TableState::default().with_selected(sel);
        frame.render_stateful_widget(table, area, &mut state);
        if empty {
            let inner = Rect {
                y: area.y + 2,
                height: area.height.saturating_sub(3),
                ..area.inner(ratatui::layout::Margin::new(2, 0))
            };
            let text = if !self.refreshed {
                "connecting..."
            } else if self.components.is_empty() {
                "nothing running: pick an app (\u{2190} to the apps pane) and press s, or :start APP"
            } else {
                "no component matches the filter (Esc clears it)"
            };
            frame.render_widget(
                Paragraph::new(Span::styled(text, Style::new().fg(Color::DarkGray))),
                inner,
            );
        }
    }

    fn render_apps(&self, frame: &mut Frame, area: Rect) {
        let block = self.pane_block(Pane::Apps, format!(" apps ({}) ", self.apps.len()));
        let items: Vec<ListItem> = self
            .apps
            .iter()
            .map(|a| {
                ListItem::new(Line::from(vec![
                    Span::styled(a.name.clone(), Style::new().add_modifier(Modifier::BOLD)),
                    Span::raw(" "),
                    Span::styled(a.desc.clone(), Style::new().fg(Color::Gray)),
                ]))
            })
            .collect();
        let list = List::new(items)
            .block(block)
            .highlight_style(if self.focus == Pane::Apps {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            })
            .highlight_symbol(if self.focus == Pane::Apps { ">" } else { " " });
        let mut state = ListState::default().with_selected(if self.apps.is_empty() {
            None
        } else {
            Some(self.app_sel)
        });
        frame.render_stateful_widget(list, area, &mut state);
    }

    fn render_logs(&self, frame: &mut Frame, area: Rect) {
        let title = match self.selected_component() {
            Some(c) => format!(" logs: {} {} ", c.id, c.app),
            None => " logs ".to_string(),
        };
        let mut title = title;
        if let Some(min) = self.log_min {
            title.push_str(&format!("({} and up) ", min.name()));
        }
        if self.log_scroll > 0 {
            title.push_str(&format!("(scrolled {} up; End follows) ", self.log_scroll));
        }
        let block = self.pane_block(Pane::Logs, title);
        let inner = block.inner(area);
        let h = inner.height as usize;
        let lines: Vec<Line> = if self.selected.is_some() && self.log_id == self.selected {
            let end = self.log_lines.len().saturating_sub(self.log_scroll);
            let start = end.saturating_sub(h);
            self.log_lines[start..end]
                .iter()
                .map(|l| Line::styled(l.text.clone(), level_style(l.level)))
                .collect()
        } else if self.selected.is_some() {
            vec![Line::styled("loading...", Style::new().fg(Color::DarkGray))]
        } else {
            vec![Line::styled(
                "select a component to follow its output",
                Style::new().fg(Color::DarkGray),
            )]
        };
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn render_status(&self, frame: &mut Frame, area: Rect) {
        let line = match &self.status {
            Some(s) if s.error => Line::styled(
                s.text.clone(),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Some(s) => Line::styled(s.text.clone(), Style::new().fg(Color::Yellow)),
            None => Line::styled(
                format!(
                    "refresh {} ms{}",
                    self.refresh.as_millis(),
                    if self.pending > 0 {
                        " | working..."
                    } else {
                        ""
                    }
                ),
                Style::new().fg(Color::DarkGray),
            ),
        };
        frame.render_widget(line, area);
    }

    fn render_bottom(&self, frame: &mut Frame, area: Rect) {
        match self.mode {
            Mode::Command | Mode::Filter => {
                let (prompt, text, cursor) = if self.mode == Mode::Command {
                    (":", self.input.as_str(), self.cursor)
                } else {
                    ("/", self.filter.as_str(), self.filter.chars().count())
                };
                // Keep the cursor on screen for long lines.
                let room = area.width.saturating_sub(2) as usize;
                let skip = cursor.saturating_sub(room);
                let shown: String = text.chars().skip(skip).collect();
                frame.render_widget(
                    Line::from(vec![
                        Span::styled(prompt, Style::new().fg(Color::Cyan)),
                        Span::raw(shown),
                    ]),
                    area,
                );
                let x = area.x + 1 + (cursor - skip) as u16;
                frame.set_cursor_position(Position::new(x.min(area.right() - 1), area.y));
            }
            _ => {
                let key = Style::new().fg(Color::Black).bg(Color::Gray);
                let mut spans = Vec::new();
                for (k, what) in [
                    ("s", "start"),
                    ("r", "restart"),
                    ("d", "sd"),
                    ("k", "kill"),
                    ("l", "logs"),
                    ("⏎", "details"),
                    ("/", "filter"),
                    (":", "cmd"),
                    ("?", "help"),
                    ("q", "quit"),
                ] {
                    spans.push(Span::styled(k, key));
                    spans.push(Span::raw(format!(" {what} ")));
                }
                frame.render_widget(Line::from(spans), area);
            }
        }
    }

    fn render_help(&self, frame: &mut Frame, area: Rect, scroll: usize) {
        let quit = if self.embedded {
            "q          quit: stops every component (the supervisor runs in this GUI)"
        } else {
            "q          quit the GUI (the daemon and its components keep running)"
        };
        let mut lines: Vec<String> = vec![
            quit.into(),
            "Tab/→ ←    next / previous pane (components, logs, apps)".into(),
            "↑ ↓ PgUp   select a component or app; scroll the logs".into(),
            "Enter      details of the component (live) / help of the app".into(),
            "s          start the selected app (apps pane) or a stopped component".into(),
            "r          restart the selected component".into(),
            "d          graceful shutdown (sd) of the selected component".into(),
            "k          kill (SIGKILL) the selected component".into(),
            "p          ping the selected component".into(),
            "l          focus the log pane (End follows, Home goes to the top)".into(),
            "/          filter components by name (Enter keeps, Esc clears)".into(),
            ":          command line: every console command; Tab completes".into(),
            "           commands, app names and ids; ↑ ↓ history;".into(),
            "           logs ID -f --level L: only L and up in the log pane".into(),
            "log pane   errors red, warnings yellow, debug and trace dim".into(),
            "Ctrl-L     redraw the screen".into(),
            "?          this help".into(),
            String::new(),
            "Commands:".into(),
        ];
        lines.extend(crate::command::help_text().lines().map(str::to_string));
        render_popup(frame, area, "help (Esc closes)", &lines, scroll);
    }

    fn render_details(&self, frame: &mut Frame, area: Rect, id: u64) {
        let Some(c) = self.components.iter().find(|c| c.id == id) else {
            render_popup(
                frame,
                area,
                "details",
                &[format!("component {id} is gone")],
                0,
            );
            return;
        };
        let mut lines = vec![
            format!("state     {}", c.state),
            format!(
                "pid       {}",
                c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
            ),
            format!(
                "uptime    {}",
                c.uptime_ms.map(fmt_uptime).unwrap_or_else(|| "-".into())
            ),
            format!("restarts  {}", c.restarts),
            format!(
                "args      {}",
                crate::units::shell_join(&c.args).replace('\n', " ")
            ),
        ];
        if let Some(e) = &c.last_exit {
            lines.push(format!("last exit {e}"));
        }
        if let Some(r) = c.ping_rtt_us {
            lines.push(format!("ping      {r} us"));
        }
        match self.usage.get(&id) {
            Some(u) => {
                lines.push(format!("cpu       {:.1} %", u.cpu_percent));
                lines.push(format!("rss       {}", fmt_bytes(u.rss_bytes)));
                lines.push(format!("threads   {}", u.threads));
                if !u.counters.is_empty() {
                    lines.push(String::new());
                    lines.push(format!(
                        "{:<24} {:>14} {:>12}",
                        "COUNTER", "VALUE", "RATE/s"
                    ));
                    let rates = self.rates.get(&id);
                    for (k, v) in &u.counters {
                        let r = rates
                            .and_then(|r| r.now.get(k))
                            .map(|r| fmt_si(*r))
                            .unwrap_or_else(|| "-".into());
                        lines.push(format!("{k:<24} {v:>14} {r:>12}"));
                    }
                }
            }
            None => lines.push("usage     (only for ready components)".into()),
        }
        render_popup(
            frame,
            area,
            &format!("{} {} (Esc closes)", c.id, c.app),
            &lines,
            0,
        );
    }
}
fn render_popup(frame: &mut Frame, area: Rect, title: &str, lines: &[String], scroll: usize) {
    let longest = lines
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(title.chars().count() + 4);
    // max then min: never panics, whatever the terminal size.
    let w = (longest.min(1000) as u16 + 4)
        .max(30)
        .min(area.width.saturating_sub(2));
    let h = (lines.len().min(1000) as u16 + 2)
        .max(3)
        .min(area.height.saturating_sub(2));
    let rect = area.centered(Constraint::Length(w), Constraint::Length(h));
    let inner_h = h.saturating_sub(2) as usize;
    let scroll = scroll.min(lines.len().saturating_sub(inner_h));
    let mut block = Block::bordered()
        .border_style(Style::new().fg(Color::Cyan))
        .title(Span::styled(
            format!(" {title} "),
            Style::new().add_modifier(Modifier::BOLD),
        ));
    if lines.len() > inner_h {
        block = block.title_bottom(format!(
            " {}-{} of {} (↑↓) ",
            scroll + 1,
            (scroll + inner_h).min(lines.len()),
            lines.len()
        ));
    }
    let text: Vec<Line> = lines
        .iter()
        .skip(scroll)
        .take(inner_h)
        .map(|l| Line::raw(l.clone()))
        .collect();
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(text).block(block), rect);
}

/// A log line's colour: errors red, warnings yellow, info plain, debug and trace dim.
pub fn level_style(level: Option<Level>) -> Style {
    match level {
        Some(Level::Error) => Style::new().fg(Color::Red),
        Some(Level::Warn) => Style::new().fg(Color::Yellow),
        Some(Level::Debug | Level::Trace) => Style::new().fg(Color::DarkGray),
        Some(Level::Info) | None => Style::new(),
    }
}
