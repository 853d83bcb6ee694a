//! Drawing the chat: message list, input box, status line and the help overlay.
//!
//! The message list is laid out line by line here (see `wrap`) rather than by
//! `Paragraph::wrap`, so the total height is exact and scrolling never jumps.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Scrollbar, ScrollbarOrientation, ScrollbarState};
use vtuber_shared::{CutReason, DaemonState, ModelLoad};

use super::markup;
use super::scrollback::{LineCache, Viewport, total_lines, window};
use super::state::{App, Conn, Ended, Kind, Message, PendingApproval, ToolCall, ToolState};
use super::wrap::{str_width, wrap_spans};
use crate::tool_text;

const USER: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
const CHARACTER: Style = Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD);
const ERROR: Style = Style::new().fg(Color::Red);
const HINT: Style = Style::new().fg(Color::Yellow);
const DIM: Style = Style::new().fg(Color::DarkGray);
const NOTE: Style = Style::new()
    .fg(Color::DarkGray)
    .add_modifier(Modifier::ITALIC);
const TOOL: Style = Style::new().fg(Color::Blue);
const OK: Style = Style::new().fg(Color::Green);

/// Body text is indented under its header by this many cells.
const INDENT: usize = 2;
/// The input box grows with its text up to this many rows, then scrolls.
const MAX_INPUT_ROWS: usize = 6;
const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

pub fn render(frame: &mut Frame<'_>, app: &mut App) {
    let area = frame.area();
    let inner_width = area.width.saturating_sub(2) as usize;
    let (rows, cursor) = app.input.layout(inner_width);
    let visible_rows = rows.len().clamp(1, MAX_INPUT_ROWS);
    let [messages, input, status] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(visible_rows as u16 + 2),
        Constraint::Length(1),
    ])
    .areas(area);

    render_messages(frame, app, messages);
    render_input(frame, app, input, &rows, cursor, visible_rows);
    frame.render_widget(
        Paragraph::new(status_line(app, status.width as usize)),
        status,
    );
    if let Some(approval) = app.approvals.front() {
        render_approval(frame, app, approval, area);
    } else if app.show_help {
        render_help(frame, area);
    }
}

fn fingerprint(app: &App, m: &Message, width: usize) -> u64 {
    let mut h = DefaultHasher::new();
    width.hash(&mut h);
    m.hash(&mut h);
    app.is_mine(m.turn_id).hash(&mut h);
    if m.kind == Kind::Character {
        app.character_name().hash(&mut h);
    }
    h.finish()
}

/// The lines of each message at `width`, reusing `cache` for unchanged ones; the
/// cache keeps only what this call used.
fn message_blocks(app: &App, width: usize, cache: &mut LineCache) -> Vec<Arc<Vec<Line<'static>>>> {
    let mut old = std::mem::take(&mut cache.map);
    let mut blocks = Vec::with_capacity(app.messages.len() + 1);
    if app.messages.is_empty() {
        let hint = [Span::styled(
            "Say hello. Enter sends, ? shows the keys.",
            NOTE,
        )];
        blocks.push(Arc::new(wrap_spans(&hint, width)));
    }
    for m in &app.messages {
        if m.streaming {
            blocks.push(Arc::new(message_lines(app, m, width)));
            continue;
        }
        let key = fingerprint(app, m, width);
        let lines = old
            .remove(&key)
            .or_else(|| cache.map.get(&key).cloned())
            .unwrap_or_else(|| Arc::new(message_lines(app, m, width)));
        cache.map.insert(key, lines.clone());
        blocks.push(lines);
    }
    blocks
}

/// The mark under a reply the daemon stopped at a per-turn limit.
fn cut_label(cut: CutReason) -> &'static str {
    match cut {
        CutReason::Length => "(cut: reply length limit)",
        CutReason::Time => "(cut: reply time limit)",
    }
}

/// All lines of the message list at `width`, in order.
#[cfg(test)]
pub fn message_list(app: &App, width: usize) -> Vec<Line<'static>> {
    let blocks = message_blocks(app, width, &mut LineCache::default());
    window(&blocks, 0, total_lines(&blocks))
}

fn indent(lines: Vec<Line<'static>>) -> impl Iterator<Item = Line<'static>> {
    lines.into_iter().map(|line| {
        let mut spans = vec![Span::raw(" ".repeat(INDENT))];
        spans.extend(line.spans);
        Line::from(spans)
    })
}

fn message_lines(app: &App, m: &Message, width: usize) -> Vec<Line<'static>> {
    let body_width = width.saturating_sub(INDENT).max(4);
    let mut out = Vec::new();
    match m.kind {
        Kind::System => {
            // Lists (`/history`, `/character`) keep their lines.
            return m
                .text
                .lines()
                .enumerate()
                .flat_map(|(i, line)| {
                    let mark = if i == 0 { "· " } else { "  " };
                    wrap_spans(&[Span::styled(format!("{mark}{line}"), NOTE)], width)
                })
                .collect();
        }
        Kind::User => {
            let mut header = vec![Span::styled("You", USER)];
            if !app.is_mine(m.turn_id)
                && let Some(origin) = &m.origin
            {
                header.push(Span::styled(format!(" · from {origin}"), DIM));
            }
            out.extend(wrap_spans(&header, width));
            out.extend(indent(markup::render(&m.text, Style::new(), body_width)));
        }
        Kind::Character => {
            let mut header = vec![Span::styled(app.character_name().to_owned(), CHARACTER)];
            if m.streaming {
                header.push(Span::styled(
                    format!(" {}", SPINNER[app.tick % SPINNER.len()]),
                    DIM,
                ));
            }
            out.extend(wrap_spans(&header, width));
            for call in &m.tools {
                out.extend(indent(wrap_spans(&tool_spans(call), body_width)));
            }
            let mut body = if m.text.is_empty() {
                Vec::new()
            } else {
                markup::render(&markup::emotion_markers(&m.text), Style::new(), body_width)
            };
            if m.streaming {
                // A block cursor where the next delta will land.
                let fits = body
                    .last()
                    .is_some_and(|l| l.width() < body_width && !l.spans.is_empty());
                match body.last_mut() {
                    Some(last) if fits => last.spans.push(Span::styled("▍", DIM)),
                    _ => body.push(Line::from(Span::styled("▍", DIM))),
                }
            }
            if m.interrupted {
                body.push(Line::from(Span::styled("(interrupted)", NOTE)));
            }
            if let Some(cut) = m.cut {
                body.push(Line::from(Span::styled(cut_label(cut), NOTE)));
            }
            out.extend(indent(body));
        }
        Kind::Error => {
            out.push(Line::from(Span::styled(
                "Error",
                ERROR.add_modifier(Modifier::BOLD),
            )));
            out.extend(indent(wrap_spans(
                &[Span::styled(m.text.clone(), ERROR)],
                body_width,
            )));
            if let Some(hint) = &m.hint {
                let spans = [Span::styled(format!("hint: {hint}"), HINT)];
                out.extend(indent(wrap_spans(&spans, body_width)));
            }
        }
    }
    out
}

/// `⚙ time · get_current_time {"timezone":"UTC"} … 40% reading`, or once ended
/// `✓ time · get_current_time {…} 120 ms · 12:00 UTC`.
fn tool_spans(call: &ToolCall) -> Vec<Span<'static>> {
    let (glyph, glyph_style) = match &call.state {
        ToolState::Approval | ToolState::Running { .. } => ("⚙", TOOL),
        ToolState::Ended { outcome, .. } => (
            tool_text::outcome_glyph(outcome.outcome()),
            match outcome {
                Ended::Ok => OK,
                Ended::Error => ERROR,
                Ended::Denied | Ended::TimedOut | Ended::Cancelled => HINT,
            },
        ),
    };
    let name = if call.server.is_empty() {
        call.tool.clone()
    } else {
        format!("{} · {}", call.server, call.tool)
    };
    let mut spans = vec![
        Span::styled(format!("{glyph} "), glyph_style),
        Span::styled(name, Style::new().add_modifier(Modifier::BOLD)),
    ];
    if !call.args.is_empty() {
        spans.push(Span::styled(format!(" {}", call.args), DIM));
    }
    match &call.state {
        ToolState::Approval => spans.push(Span::styled(" … waiting for approval", HINT)),
        ToolState::Running { progress } if progress.is_empty() => {
            spans.push(Span::styled(" …", DIM));
        }
        ToolState::Running { progress } => {
            spans.push(Span::styled(format!(" … {progress}"), DIM));
        }
        ToolState::Ended { outcome, text } => {
            let style = match outcome {
                Ended::Ok => DIM,
                Ended::Error => ERROR,
                _ => HINT,
            };
            spans.push(Span::styled(format!(" {text}"), style));
        }
    }
    spans
}

fn render_messages(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    // One column is kept for the scrollbar so the text width never changes with it.
    let text_width = area.width.saturating_sub(1) as usize;
    let mut cache = std::mem::take(&mut app.line_cache);
    let blocks = message_blocks(app, text_width, &mut cache);
    app.line_cache = cache;
    let height = area.height as usize;
    app.viewport = Viewport {
        height,
        total_lines: total_lines(&blocks),
    };
    let max_top = app.viewport.max_top();
    if app.scroll.is_some_and(|top| top >= max_top) {
        app.scroll = None;
    }
    let top = app.scroll.unwrap_or(max_top);
    let visible = window(&blocks, top, height);
    let text_area = Rect {
        width: text_width as u16,
        ..area
    };
    frame.render_widget(Paragraph::new(visible), text_area);
    if max_top > 0 {
        let mut state = ScrollbarState::new(max_top + 1).position(top);
        frame.render_stateful_widget(
            Scrollbar::new(ScrollbarOrientation::VerticalRight)
                .begin_symbol(None)
                .end_symbol(None)
                .style(DIM),
            area,
            &mut state,
        );
    }
}

fn render_input(
    frame: &mut Frame<'_>,
    app: &App,
    area: Rect,
    rows: &[String],
    cursor: (usize, usize),
    visible_rows: usize,
) {
    let connected = app.conn == Conn::Connected;
    let title = if connected {
        " Message "
    } else {
        " Message (offline) "
    };
    let block = Block::bordered()
        .title(title)
        .border_style(if connected { DIM } else { ERROR });
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.input.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "Type a message · Enter sends · Alt+Enter adds a line · ? help",
                NOTE,
            )),
            inner,
        );
    } else {
        let first = cursor.0.saturating_sub(visible_rows.saturating_sub(1));
        let lines: Vec<Line<'_>> = rows
            .iter()
            .skip(first)
            .take(visible_rows)
            .map(|r| Line::raw(r.as_str()))
            .collect();
        frame.render_widget(Paragraph::new(lines), inner);
    }
    if !app.show_help {
        let first = cursor.0.saturating_sub(visible_rows.saturating_sub(1));
        let x = inner.x + (cursor.1 as u16).min(inner.width.saturating_sub(1));
        let y = inner.y + (cursor.0 - first) as u16;
        frame.set_cursor_position((x, y));
    }
}

/// `mic ▃▅▇` while listening (the live input level), `talk ▃▅` while push-to-talk is
/// held, `mic off`, or `no audio` on a machine without a microphone.
fn voice_span(voice: &vtuber_shared::VoiceStatus, level: f32) -> Span<'static> {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let meter = || {
        let n = (level.clamp(0.0, 1.0) * 3.0).round() as usize;
        (0..3)
            .map(|i| {
                if i < n {
                    BARS[(2 + i * 2).min(7)]
                } else {
                    '▁'
                }
            })
            .collect::<String>()
    };
    if voice.input_device.is_none() {
        return Span::styled("no mic", DIM);
    }
    if voice.push_to_talk {
        return Span::styled(
            format!("talk {}", meter()),
            Style::new().fg(Color::LightBlue),
        );
    }
    if voice.listening {
        Span::styled(format!("mic {}", meter()), Style::new().fg(Color::Blue))
    } else {
        Span::styled("mic off", DIM)
    }
}

fn state_style(state: DaemonState) -> Style {
    match state {
        DaemonState::Idle => Style::new().fg(Color::Green),
        DaemonState::Listening => Style::new().fg(Color::Blue),
        DaemonState::Hearing => Style::new().fg(Color::LightBlue),
        DaemonState::Loading => Style::new().fg(Color::Yellow),
        DaemonState::Thinking => Style::new().fg(Color::Magenta),
        DaemonState::Speaking => Style::new().fg(Color::Cyan),
        DaemonState::Error => Style::new().fg(Color::Red),
    }
}

/// `● idle │ Aria │ embedded · qwen │ connected        ? help`; the LLM part goes
/// first when the terminal is too narrow for everything.
pub fn status_line(app: &App, width: usize) -> Line<'static> {
    let full = status_spans(app, true);
    let spans = if spans_width(&full) > width {
        status_spans(app, false)
    } else {
        full
    };
    let mut spans = spans;
    let used = spans_width(&spans);
    let help = "? help";
    if used + 2 + help.len() <= width {
        spans.push(Span::raw(" ".repeat(width - used - help.len())));
        spans.push(Span::styled(help, DIM));
    }
    Line::from(spans)
}

fn spans_width(spans: &[Span<'_>]) -> usize {
    spans.iter().map(|s| str_width(&s.content)).sum()
}

fn status_spans(app: &App, with_llm: bool) -> Vec<Span<'static>> {
    let sep = || Span::styled(" │ ", DIM);
    let mut spans = Vec::new();
    match (&app.conn, &app.status) {
        (Conn::Reconnecting { .. }, _) => {
            spans.push(Span::styled(
                "● offline",
                ERROR.add_modifier(Modifier::BOLD),
            ));
        }
        (Conn::Connected, None) => spans.push(Span::styled("● connecting", DIM)),
        (Conn::Connected, Some(status)) => {
            let busy = matches!(
                status.state,
                DaemonState::Loading | DaemonState::Thinking | DaemonState::Speaking
            );
            let tool = app.tool_running();
            let dot = if busy || tool {
                SPINNER[app.tick % SPINNER.len()]
            } else {
                "●"
            };
            let (label, style) = if tool {
                ("tool", TOOL)
            } else {
                (status.state.as_str(), state_style(status.state))
            };
            spans.push(Span::styled(
                format!("{dot} {label}"),
                style.add_modifier(Modifier::BOLD),
            ));
            if !app.approvals.is_empty() {
                spans.push(Span::styled(" (approval needed)", HINT));
            }
            match &status.model_load {
                ModelLoad::Loading if status.state != DaemonState::Loading => {
                    spans.push(Span::styled(" (model loading)", HINT));
                }
                ModelLoad::Failed { .. } => spans.push(Span::styled(" (model failed)", ERROR)),
                _ => {}
            }
        }
    }
    if let Some(voice) = app.status.as_ref().and_then(|s| s.voice.as_ref()) {
        spans.push(sep());
        spans.push(voice_span(voice, app.input_level));
    }
    if let Some(status) = &app.status {
        spans.push(sep());
        spans.push(Span::styled(
            app.character_name().to_owned(),
            Style::new().add_modifier(Modifier::BOLD),
        ));
        if with_llm {
            spans.push(sep());
            spans.push(Span::raw(format!(
                "{} · {}",
                status.llm.backend, status.llm.model
            )));
            if let Some(n) = app.tools_ready() {
                spans.push(sep());
                spans.push(Span::raw(format!("tools: {n} ready")));
            }
        }
    }
    match app.conn {
        // Before the first status there is nothing else to say than "connecting".
        Conn::Connected if app.status.is_none() => {}
        Conn::Connected => {
            spans.push(sep());
            spans.push(Span::styled("connected", Style::new().fg(Color::Green)));
        }
        Conn::Reconnecting { attempt: 0 } => {
            spans.push(sep());
            spans.push(Span::styled("reconnecting", HINT));
        }
        Conn::Reconnecting { attempt } => {
            spans.push(sep());
            spans.push(Span::styled(
                format!("reconnecting (attempt {})", attempt + 1),
                HINT,
            ));
        }
    }
    if app.scroll.is_some() {
        spans.push(sep());
        spans.push(Span::styled("scrolled ↑ (Ctrl+End: latest)", HINT));
    }
    if let Some(error) = app
        .status
        .as_ref()
        .filter(|s| s.state == DaemonState::Error && app.conn == Conn::Connected)
        .and_then(|s| s.last_error.as_ref())
    {
        spans.push(sep());
        spans.push(Span::styled(error.message.clone(), ERROR));
    }
    spans
}

pub const HELP: &[(&str, &str)] = &[
    ("Enter", "send the message"),
    ("Alt+Enter", "new line (Shift+Enter where supported)"),
    ("Esc", "stop the reply"),
    ("F2", "hands-free listening on / off"),
    ("F3", "push to talk (press, speak, press again)"),
    ("PgUp / PgDn", "scroll (mouse wheel too)"),
    ("Ctrl+Home / End", "oldest / latest message"),
    ("Up / Down", "move in the input, else scroll"),
    ("Ctrl+N", "new conversation"),
    ("/help", "/character, /history, /export… (Tab)"),
    ("Ctrl+U / Ctrl+W", "delete line / word"),
    ("a / s / d", "allow / allow for session / deny a tool"),
    ("Ctrl+C", "quit (vtuberd keeps running)"),
    ("?", "toggle this help (empty input)"),
];

/// Lines of pretty arguments shown before they are cut.
const MAX_ARG_LINES: usize = 8;

/// The centred approval dialog for the first request in the queue.
fn render_approval(frame: &mut Frame<'_>, app: &App, approval: &PendingApproval, area: Rect) {
    let width = (area.width as usize).min(64);
    let inner = width.saturating_sub(4).max(4);
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut lines: Vec<Line<'static>> = Vec::new();
    let field = |name: &str, value: &str| {
        wrap_spans(
            &[
                Span::styled(format!("{name:<7}"), DIM),
                Span::styled(value.to_owned(), bold),
            ],
            inner,
        )
    };
    lines.extend(field("server", &approval.server));
    lines.extend(field("tool", &approval.tool));
    if !approval.description.is_empty() {
        let mut wrapped = wrap_spans(&[Span::raw(approval.description.clone())], inner);
        if wrapped.len() > 3 {
            wrapped.truncate(3);
            wrapped.push(Line::from(Span::styled("…", DIM)));
        }
        lines.push(Line::default());
        lines.extend(wrapped);
    }
    if !approval.arguments.is_empty() {
        lines.push(Line::default());
        let all: Vec<&str> = approval.arguments.lines().collect();
        for l in all.iter().take(MAX_ARG_LINES) {
            lines.push(Line::from(Span::styled(
                tool_text::truncate(l, inner),
                HINT,
            )));
        }
        if all.len() > MAX_ARG_LINES {
            lines.push(Line::from(Span::styled(
                format!("… {} more line(s)", all.len() - MAX_ARG_LINES),
                DIM,
            )));
        }
    }
    lines.push(Line::default());
    lines.extend(wrap_spans(
        &[
            Span::styled("a", bold),
            Span::raw(" allow once  "),
            Span::styled("s", bold),
            Span::raw(" allow for session  "),
            Span::styled("d", bold),
            Span::raw(" deny"),
        ],
        inner,
    ));
    let height = (lines.len() + 2).min(area.height as usize) as u16;
    let width = width as u16;
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let left = app.seconds_left(approval);
    let mut block = Block::bordered()
        .title(Span::styled(
            " Allow tool call? ",
            HINT.add_modifier(Modifier::BOLD),
        ))
        .title(Line::from(Span::styled(format!(" {left} s "), HINT)).right_aligned())
        .border_style(HINT);
    let waiting = app.approvals.len() - 1;
    if waiting > 0 {
        block = block.title_bottom(Span::styled(format!(" {waiting} more waiting "), DIM));
    }
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(block.padding(ratatui::widgets::Padding::horizontal(1))),
        popup,
    );
}

fn render_help(frame: &mut Frame<'_>, area: Rect) {
    let key_width = HELP.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let text_width = HELP.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
    let width = (key_width + text_width + 6).min(area.width as usize) as u16;
    let height = (HELP.len() + 2).min(area.height as usize) as u16;
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, t)| {
            Line::from(vec![
                Span::styled(
                    format!(" {k:<key_width$}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!("  {t}")),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Keys ").border_style(DIM)),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_match_slices_of_the_whole_list() {
        let mut app = App::new();
        for (i, text) in [
            "one",
            "two\nlines",
            "",
            "a longer message that wraps around",
        ]
        .iter()
        .enumerate()
        {
            let kind = if i % 2 == 0 {
                Kind::User
            } else {
                Kind::Character
            };
            app.push(Message::new(kind, text));
        }
        let mut cache = LineCache::default();
        let blocks = message_blocks(&app, 12, &mut cache);
        let total = total_lines(&blocks);
        let all: Vec<String> = window(&blocks, 0, total)
            .iter()
            .map(|l| l.to_string())
            .collect();
        assert_eq!(all.len(), total);
        assert_eq!(all[..4], ["You", "  one", "", "Character"], "{all:?}");
        for top in 0..=total {
            for height in 0..=total + 1 {
                let got: Vec<String> = window(&blocks, top, height)
                    .iter()
                    .map(|l| l.to_string())
                    .collect();
                let end = (top + height).min(total);
                assert_eq!(got, all[top.min(total)..end], "top {top} height {height}");
            }
        }
        // A second pass reuses every settled message.
        let again = message_blocks(&app, 12, &mut cache);
        assert!(blocks.iter().zip(&again).all(|(a, b)| Arc::ptr_eq(a, b)));
        assert_eq!(cache.map.len(), app.messages.len());
    }
}
