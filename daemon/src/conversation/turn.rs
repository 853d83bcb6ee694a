//! One turn: the prompt (persona plus the history that fits), the LLM stream with its
//! per-turn limits, reply text out as deltas and to the speaker, and tool rounds.
//!
//! A turn runs as its own task; the actor cancels it and waits for it to store its
//! partial reply before the next begins.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vtuber_shared::framing::{json_chunks, json_str_len};
use vtuber_shared::{CutReason, DaemonState, ErrorBody, Event, ReplyCut, Role, TurnOutcome, Usage};

use super::tool_use::{self, ToolInvocation, ToolReply, ToolRunner};
use super::view::SharedView;
use crate::config::{LlmConfig, ReplyLimits};
use crate::events::EventBus;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::llm::{
    ChatImage, ChatMessage, ChatRequest, FinishReason, LlmError, LlmEvent, SharedProvider, ToolCall,
};
use crate::store::Store;

/// Most messages read back from history when building a prompt; the token budget
/// usually stops earlier.
const HISTORY_SCAN_LIMIT: usize = 200;

/// Most pictures a prompt carries: the newest ones of the window (this turn's first).
/// Every picture is sent again with every later request, at about a thousand tokens
/// and up to a few hundred KB each, so older ones are left out (their text stays).
pub const MAX_PROMPT_IMAGES: usize = 4;
/// What one picture is counted as against the history's token budget.
const IMAGE_TOKENS: usize = 1000;

/// Largest piece of reply text in one `delta` event (JSON-escaped bytes). A provider may
/// hand over any amount at once (a non-streaming server, held-back JSON-mode text);
/// events stay far below the frame limit.
pub const DELTA_MAX_BYTES: usize = 64 * 1024;

/// Largest reply repeated in `turn_ended` (JSON-escaped bytes); a larger one is left out
/// (`text_omitted`), as clients already have it from the deltas.
pub const TURN_ENDED_TEXT_MAX_BYTES: usize = 1024 * 1024;

/// Tool calls read from one LLM reply; the index a server sends sizes a table, so it is
/// checked first.
const MAX_TOOL_CALLS: usize = 128;

/// How one LLM request of a turn ended.
enum Step {
    Cancelled,
    /// A per-turn limit was reached; what came before it was emitted.
    Cut(Limit),
    Finished {
        /// The text of this request.
        text: String,
        calls: Vec<ToolCall>,
        /// Whether `text` already went out as deltas (else it was held back).
        emitted: bool,
    },
}

/// How a turn's generation ended, short of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Finished,
    Cancelled,
    Cut(Limit),
}

/// Which of the per-turn limits (`llm.max_reply_*`) a reply reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Tokens(u64),
    Bytes(u64),
    Time(Duration),
}

impl Limit {
    fn reason(self) -> CutReason {
        match self {
            Self::Tokens(_) | Self::Bytes(_) => CutReason::Length,
            Self::Time(_) => CutReason::Time,
        }
    }

    /// The note clients show: what happened and which setting to change.
    fn note(self) -> ReplyCut {
        let message = match self {
            Self::Tokens(n) => format!(
                "the reply reached the daemon's limit of {n} tokens and was cut there \
                 (raise llm.max_reply_tokens in conf.yaml for longer replies)"
            ),
            Self::Bytes(n) => format!(
                "the reply reached the daemon's limit of {n} bytes and was cut there \
                 (raise llm.max_reply_bytes in conf.yaml for longer replies)"
            ),
            Self::Time(d) => format!(
                "the reply took longer than the daemon's limit of {} s and was cut there \
                 (raise llm.max_reply_secs in conf.yaml, or check the LLM server)",
                d.as_secs()
            ),
        };
        ReplyCut {
            reason: self.reason(),
            message,
        }
    }
}

/// What a turn has received so far, against its [`ReplyLimits`]. Counted as the stream
/// arrives, whatever the provider and the server do with `max_tokens`.
struct Budget {
    limits: ReplyLimits,
    /// Streamed pieces (text and tool-call fragments), about one token each.
    tokens: u64,
    /// Bytes of text and tool-call arguments.
    bytes: u64,
    /// Receiving time left; tool calls do not spend it.
    time_left: Duration,
}

impl Budget {
    fn new(limits: ReplyLimits) -> Self {
        Self {
            limits,
            tokens: 0,
            bytes: 0,
            time_left: limits.time,
        }
    }

    /// Counts one streamed piece of `len` bytes. `Ok(())` when it fits whole; otherwise
    /// the limit reached and how many of its bytes still fit.
    fn take(&mut self, len: usize) -> Result<(), (Limit, usize)> {
        if self.tokens >= self.limits.tokens {
            return Err((Limit::Tokens(self.limits.tokens), 0));
        }
        let room = self.limits.bytes.saturating_sub(self.bytes);
        if len as u64 > room {
            self.bytes = self.limits.bytes;
            return Err((
                Limit::Bytes(self.limits.bytes),
                usize::try_from(room).unwrap_or(usize::MAX),
            ));
        }
        self.tokens += 1;
        self.bytes += len as u64;
        Ok(())
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn floor_prefix(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One reply being generated.
pub(super) struct Turn {
    pub(super) id: u64,
    pub(super) conversation: i64,
    pub(super) system_prompt: String,
    pub(super) provider: SharedProvider,
    pub(super) limits: ReplyLimits,
    pub(super) llm: LlmConfig,
    pub(super) token_budget: usize,
    pub(super) cancel: CancellationToken,
    pub(super) bus: EventBus,
    pub(super) store: Store,
    pub(super) view: SharedView,
    /// Tools on offer; `None` when no tool source is configured.
    pub(super) tools: Option<Arc<dyn ToolRunner>>,
    pub(super) max_tool_rounds: u32,
    /// Character id, for the audit log.
    pub(super) character: String,
    /// Speaks the reply as it streams; dropped with the turn, which ends the speech input.
    pub(super) speaker: Option<crate::speech::speaker::Speaker>,
    /// A note for the model after the history, neither stored nor shown (the prompt of
    /// a turn the character starts itself).
    pub(super) instruction: Option<String>,
}

impl Turn {
    fn set_state(&self, state: DaemonState) {
        self.view.set_state(state, &self.bus);
    }

    pub(super) async fn run(self) {
        self.set_state(DaemonState::Thinking);
        let mut reply = String::new();
        let mut usage: Option<Usage> = None;
        let mut budget = Budget::new(self.limits);
        let result = self.generate(&mut reply, &mut usage, &mut budget).await;
        let interrupted = matches!(result, Ok(Ended::Cancelled));
        let cut = match result {
            Ok(Ended::Cut(limit)) => {
                tracing::info!(
                    turn = self.id,
                    ?limit,
                    bytes = reply.len(),
                    "reply cut at a per-turn limit"
                );
                Some(limit.note())
            }
            _ => None,
        };
        let outcome = match result {
            Ok(Ended::Cancelled) => TurnOutcome::Interrupted,
            Ok(_) => TurnOutcome::Finished,
            Err(e) => TurnOutcome::Failed { error: e },
        };
        // Store before announcing the end: a client that saw `turn_ended` can rely on
        // the reply being durable.
        if !reply.is_empty() || matches!(outcome, TurnOutcome::Finished) {
            let partial = interrupted || matches!(outcome, TurnOutcome::Failed { .. });
            if let Err(e) = self
                .store
                .add_reply(
                    self.conversation,
                    Role::Assistant,
                    &reply,
                    partial,
                    cut.as_ref().map(|c| c.reason),
                )
                .await
            {
                tracing::error!(error = %e, "could not store the reply");
                self.bus.emit(Event::Error { error: e.to_body() });
            }
        }
        if let TurnOutcome::Failed { error } = &outcome {
            tracing::warn!(turn = self.id, error = %error, "turn failed");
            self.view.update(|v| v.last_error = Some(error.clone()));
        }
        // Clients have the reply from the deltas; only a size that surely fits a frame
        // is repeated here.
        let text_omitted = json_str_len(&reply) > TURN_ENDED_TEXT_MAX_BYTES;
        if text_omitted {
            reply = String::new();
        }
        self.bus.emit(Event::TurnEnded {
            turn_id: self.id,
            outcome,
            text: reply,
            usage,
            cut,
            text_omitted,
        });
    }

    async fn generate(
        &self,
        reply: &mut String,
        usage: &mut Option<Usage>,
        budget: &mut Budget,
    ) -> Result<Ended, ErrorBody> {
        let mut messages = self.prompt().await?;
        let specs = self.tools.as_ref().map(|t| t.specs()).unwrap_or_default();
        let native = self.provider.supports_native_tools();
        if !specs.is_empty()
            && !native
            && let Some(system) = messages.first_mut()
        {
            system.content.push_str(&tool_use::json_mode_prompt(&specs));
        }
        let mut rounds = 0u32;
        loop {
            // Past the round limit the model must answer without tools.
            let offer = !specs.is_empty() && rounds < self.max_tool_rounds;
            let request = ChatRequest {
                messages: messages.clone(),
                tools: if offer && native {
                    specs.clone()
                } else {
                    Vec::new()
                },
                temperature: self.llm.temperature,
                max_tokens: self.llm.max_tokens,
            };
            let step = self
                .stream_step(request, reply, usage, offer && !native, budget)
                .await?;
            let (text, mut calls, emitted) = match step {
                Step::Cancelled => return Ok(Ended::Cancelled),
                Step::Cut(limit) => return Ok(Ended::Cut(limit)),
                Step::Finished {
                    text,
                    calls,
                    emitted,
                } => (text, calls, emitted),
            };
            if offer
                && !native
                && let Some((name, arguments)) = tool_use::detect_json_call(&text, &specs)
            {
                calls.push(ToolCall {
                    id: format!("call_{}_{rounds}", self.id),
                    name,
                    arguments,
                });
            } else if !emitted && !text.is_empty() {
                // Held back in case it was a call; it was not: show it now.
                self.emit_text(reply, text.clone());
            }
            if calls.is_empty() || !offer {
                return Ok(Ended::Finished);
            }
            rounds += 1;
            self.set_state(DaemonState::Thinking);
            let Some(results) = self.run_tools(&calls).await else {
                return Ok(Ended::Cancelled);
            };
            if native {
                let mut assistant = ChatMessage::new(Role::Assistant, text);
                assistant.tool_calls = calls.clone();
                messages.push(assistant);
                for (call, result) in calls.iter().zip(results) {
                    let mut m = ChatMessage::new(Role::Tool, result.content);
                    m.tool_call_id = Some(call.id.clone());
                    messages.push(m);
                }
            } else {
                messages.push(ChatMessage::new(Role::Assistant, text));
                let mut note = String::new();
                for (call, result) in calls.iter().zip(results) {
                    note.push_str(&format!(
                        "Result of tool {} ({:?}): {}\n",
                        call.name, result.outcome, result.content
                    ));
                }
                note.push_str("Now answer the user using this result.");
                messages.push(ChatMessage::new(Role::User, note));
            }
        }
    }

    /// Streams one LLM request. Text is forwarded as it arrives, except in JSON tool
    /// mode (`hold_json`), where a reply that may be a tool call is held back.
    async fn stream_step(
        &self,
        request: ChatRequest,
        reply: &mut String,
        usage: &mut Option<Usage>,
        hold_json: bool,
        budget: &mut Budget,
    ) -> Result<Step, ErrorBody> {
        let started = tokio::time::Instant::now();
        let deadline = started + budget.time_left;
        let stream_cancel = self.cancel.child_token();
        // Dropping the receiver or cancelling stops the provider; both happen on a cut.
        let _stop_on_exit = stream_cancel.clone().drop_guard();
        let mut stream = self.provider.stream(request, stream_cancel);
        let mut text = String::new();
        let mut held = hold_json;
        let mut partial: Vec<(Option<String>, Option<String>, String)> = Vec::new();
        let result = loop {
            let item = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break Ok(Step::Cancelled),
                () = tokio::time::sleep_until(deadline) => {
                    break Ok(self.cut(Limit::Time(budget.limits.time), &mut text, held, reply));
                }
                item = stream.recv() => item,
            };
            match item {
                Some(Ok(LlmEvent::TextDelta(delta))) => {
                    if delta.is_empty() {
                        continue;
                    }
                    if let Err((limit, fits)) = budget.take(delta.len()) {
                        let kept = floor_prefix(&delta, fits).to_owned();
                        if !kept.is_empty() {
                            text.push_str(&kept);
                            if !held {
                                self.emit_text(reply, kept);
                            }
                        }
                        break Ok(self.cut(limit, &mut text, held, reply));
                    }
                    text.push_str(&delta);
                    if held {
                        if tool_use::may_be_json_call(&text) {
                            continue;
                        }
                        // Plain prose after all: release what was held.
                        held = false;
                        self.emit_text(reply, text.clone());
                    } else {
                        self.emit_text(reply, delta);
                    }
                }
                Some(Ok(LlmEvent::ToolCallDelta {
                    index,
                    id,
                    name,
                    arguments,
                })) => {
                    let len = arguments.len()
                        + id.as_ref().map_or(0, String::len)
                        + name.as_ref().map_or(0, String::len);
                    if let Err((limit, _)) = budget.take(len) {
                        break Ok(self.cut(limit, &mut text, held, reply));
                    }
                    if index >= MAX_TOOL_CALLS {
                        break Err(LlmError::Protocol(format!(
                            "the LLM server sent tool call number {index}; at most {MAX_TOOL_CALLS} are read per reply"
                        ))
                        .to_body());
                    }
                    if partial.len() <= index {
                        partial.resize(index + 1, (None, None, String::new()));
                    }
                    let slot = &mut partial[index];
                    if id.is_some() {
                        slot.0 = id;
                    }
                    if name.is_some() {
                        slot.1 = name;
                    }
                    slot.2.push_str(&arguments);
                }
                Some(Ok(LlmEvent::Usage(u))) => *usage = Some(u),
                Some(Ok(LlmEvent::Finish(FinishReason::Cancelled))) => break Ok(Step::Cancelled),
                Some(Ok(LlmEvent::Finish(_))) => {
                    let calls = partial
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, (id, name, arguments))| {
                            Some(ToolCall {
                                id: id.unwrap_or_else(|| format!("call_{}_{i}", self.id)),
                                name: name?,
                                arguments,
                            })
                        })
                        .collect();
                    break Ok(Step::Finished {
                        text,
                        calls,
                        emitted: !held,
                    });
                }
                Some(Err(e)) => break Err(e.to_body()),
                None => {
                    break if self.cancel.is_cancelled() {
                        Ok(Step::Cancelled)
                    } else {
                        Err(
                            LlmError::Protocol("the stream ended without a finish".into())
                                .to_body(),
                        )
                    };
                }
            }
        };
        budget.time_left = budget.time_left.saturating_sub(started.elapsed());
        result
    }

    /// Ends a step at a limit. Text held back in JSON tool mode is shown after all: it
    /// is the reply so far, and a cut tool call will not run.
    fn cut(&self, limit: Limit, text: &mut String, held: bool, reply: &mut String) -> Step {
        if held && !text.is_empty() {
            self.emit_text(reply, std::mem::take(text));
        }
        Step::Cut(limit)
    }

    /// Sends reply text out: to the speaker and, in pieces that always fit a frame, to
    /// clients as `delta` events.
    fn emit_text(&self, reply: &mut String, text: String) {
        if text.is_empty() {
            return;
        }
        if reply.is_empty() {
            self.set_state(DaemonState::Speaking);
        }
        reply.push_str(&text);
        if let Some(s) = &self.speaker {
            s.push(&text);
        }
        if json_str_len(&text) <= DELTA_MAX_BYTES {
            self.bus.emit(Event::Delta {
                turn_id: self.id,
                text,
            });
            return;
        }
        for piece in json_chunks(&text, DELTA_MAX_BYTES) {
            self.bus.emit(Event::Delta {
                turn_id: self.id,
                text: piece.to_owned(),
            });
        }
    }

    /// Runs one step's calls concurrently. `None` when the turn was cancelled.
    async fn run_tools(&self, calls: &[ToolCall]) -> Option<Vec<ToolReply>> {
        let runner = self.tools.as_ref()?;
        let futures = calls.iter().map(|c| {
            runner.call(ToolInvocation {
                turn_id: self.id,
                call_id: c.id.clone(),
                character: self.character.clone(),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
                cancel: self.cancel.child_token(),
            })
        });
        let results = futures::future::join_all(futures).await;
        if self.cancel.is_cancelled() {
            None
        } else {
            Some(results)
        }
    }

    /// Persona plus as much recent history as fits the budget, newest kept.
    async fn prompt(&self) -> Result<Vec<ChatMessage>, ErrorBody> {
        let history = self
            .store
            .recent_messages(self.conversation, HISTORY_SCAN_LIMIT)
            .await
            .map_err(|e| e.to_body())?;
        let system_tokens = self.provider.estimate_tokens(&self.system_prompt);
        let reserve = self.llm.max_tokens.unwrap_or(512) as usize;
        let room = self
            .provider
            .context_size()
            .saturating_sub(system_tokens + reserve + 16);
        let budget = self.token_budget.min(room);
        let mut window = Vec::new();
        let mut used = 0usize;
        let mut images_left = if self.provider.sees_images() {
            MAX_PROMPT_IMAGES
        } else {
            0
        };
        for (i, m) in history.iter().rev().enumerate() {
            let attach = m.images.len().min(images_left);
            let cost = self.provider.estimate_tokens(&m.text) + 4 + attach * IMAGE_TOKENS;
            // The newest message (this turn's input) is always sent.
            if i > 0 && used + cost > budget {
                break;
            }
            used += cost;
            let text = if m.interrupted && m.role == Role::Assistant {
                crate::llm::interrupted_reply_text(&m.text)
            } else {
                m.text.clone()
            };
            let mut message = ChatMessage::new(m.role, text);
            if m.role == Role::User && attach > 0 {
                images_left -= attach;
                // The newest pictures of the message, in their order.
                for image in &m.images[m.images.len() - attach..] {
                    match self.store.read_image(image).await {
                        Ok(bytes) => message.images.push(ChatImage {
                            mime_type: image.mime_type.clone(),
                            base64: BASE64.encode(bytes).into(),
                        }),
                        // A file removed by hand: the text goes on without it.
                        Err(e) => tracing::warn!(error = %e, "stored image unreadable"),
                    }
                }
            }
            window.push(message);
        }
        // A window must not open with the assistant's side of an exchange it cut.
        while window.len() > 1 && window.last().is_some_and(|m| m.role != Role::User) {
            window.pop();
        }
        window.push(ChatMessage::new(Role::System, self.system_prompt.clone()));
        window.reverse();
        if let Some(instruction) = &self.instruction {
            window.push(ChatMessage::new(Role::User, instruction.clone()));
        }
        Ok(window)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::mpsc;
    use vtuber_shared::{LlmInfo, ModelLoad};

    use super::*;
    use crate::characters::Roster;
    use crate::conversation::fake_tools::FakeTools;
    use crate::conversation::view::ConversationView;
    use crate::llm::LlmProvider as _;

    /// A provider without native tools that replies with scripted chunks, recording
    /// the prompts it got.
    struct ScriptedProvider {
        replies: Mutex<Vec<Vec<&'static str>>>,
        prompts: Mutex<Vec<Vec<ChatMessage>>>,
    }

    impl crate::llm::LlmProvider for ScriptedProvider {
        fn info(&self) -> LlmInfo {
            LlmInfo {
                backend: "scripted".into(),
                model: "s".into(),
            }
        }
        fn load_state(&self) -> ModelLoad {
            ModelLoad::Ready
        }
        fn stream(&self, req: ChatRequest, _cancel: CancellationToken) -> crate::llm::LlmStream {
            assert!(req.tools.is_empty(), "no native tools for this provider");
            self.prompts.lock().unwrap().push(req.messages);
            let chunks = {
                let mut r = self.replies.lock().unwrap();
                if r.is_empty() {
                    vec!["(no more)"]
                } else {
                    r.remove(0)
                }
            };
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                for c in chunks {
                    let _ = tx.send(Ok(LlmEvent::TextDelta(c.into()))).await;
                }
                let _ = tx.send(Ok(LlmEvent::Finish(FinishReason::Stop))).await;
            });
            rx
        }
        fn context_size(&self) -> usize {
            8192
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn json_mode_calls_tools_without_showing_the_json() {
        let provider = Arc::new(ScriptedProvider {
            replies: Mutex::new(vec![
                vec![
                    "```json\n{\"tool\": \"calc__add\",",
                    " \"arguments\": {\"a\": 20, \"b\": 22}}\n```",
                ],
                vec!["The sum", " is 42."],
            ]),
            prompts: Mutex::new(Vec::new()),
        });
        let tools: Arc<dyn ToolRunner> = Arc::new(FakeTools {
            calls: AtomicUsize::new(0),
        });
        let bus = EventBus::new(256);
        let (mut rx, _) = bus.subscribe();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite3")).unwrap();
        let conv = store.create_conversation("mao").await.unwrap().id;
        store
            .add_message(conv, Role::User, "add 20 and 22", false)
            .await
            .unwrap();
        let (roster, _) = Roster::load(None);
        let turn = Turn {
            id: 1,
            conversation: conv,
            system_prompt: roster.get("mao").unwrap().system_prompt(),
            provider: provider.clone(),
            limits: LlmConfig::default().reply_limits(),
            llm: LlmConfig::default(),
            token_budget: 2048,
            cancel: CancellationToken::new(),
            bus: bus.clone(),
            store,
            view: SharedView::new(ConversationView {
                state: DaemonState::Idle,
                character: roster.get("mao").unwrap().info(),
                llm: provider.info(),
                model_load: ModelLoad::Ready,
                conversation_id: Some(conv),
                last_error: None,
                voice: Default::default(),
                listening: false,
                hearing: false,
                speaking_turn: None,
            }),
            tools: Some(tools),
            max_tool_rounds: 3,
            character: "mao".into(),
            speaker: None,
            instruction: None,
        };
        turn.run().await;
        let mut deltas = String::new();
        while let Ok(ev) = rx.try_recv() {
            let frame: vtuber_shared::ServerFrame =
                vtuber_shared::framing::decode(&ev.line).unwrap();
            if let vtuber_shared::ServerFrame::Event {
                event: Event::Delta { text, .. },
                ..
            } = frame
            {
                deltas.push_str(&text);
            }
        }
        assert_eq!(deltas, "The sum is 42.");
        let prompts = provider.prompts.lock().unwrap();
        assert!(
            prompts[0][0].content.contains("calc__add"),
            "tools described in the system prompt"
        );
        let last = prompts[1].last().unwrap();
        assert_eq!(last.role, Role::User);
        assert!(last.content.contains("42"), "{}", last.content);
    }

    #[test]
    fn budget_counts_pieces_and_bytes() {
        let mut b = Budget::new(ReplyLimits {
            tokens: 3,
            bytes: 10,
            time: Duration::from_secs(1),
        });
        assert_eq!(b.take(4), Ok(()));
        assert_eq!(b.take(4), Ok(()));
        // Only two of these five bytes fit.
        assert_eq!(b.take(5), Err((Limit::Bytes(10), 2)));
        let mut b = Budget::new(ReplyLimits {
            tokens: 2,
            bytes: 100,
            time: Duration::from_secs(1),
        });
        assert_eq!(b.take(1), Ok(()));
        assert_eq!(b.take(1), Ok(()));
        assert_eq!(b.take(1), Err((Limit::Tokens(2), 0)));
        assert_eq!(floor_prefix("aé", 2), "a");
        assert!(
            Limit::Time(Duration::from_secs(5))
                .note()
                .message
                .contains("llm.max_reply_secs")
        );
    }
}
