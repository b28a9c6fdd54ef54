//! A chat conversation tracked at the token level, so each turn feeds the model only what it
//! has not seen, in exactly the tokens it saw.
//!
//! Re-rendering the whole conversation and re-tokenizing it would not reproduce the model's own
//! reply tokens (a reply that is not valid UTF-8, or not in the tokenizer's canonical split,
//! re-encodes differently), and the session would have to start over. Instead the conversation
//! keeps the text the model has seen (rendered prompts plus decoded replies) and the matching
//! token ids; a new turn renders the template, checks that it extends the seen text, and
//! tokenizes only the new suffix.

use serde_json::Value;

use crate::chat::ChatMessage;
use crate::error::Result;
use crate::tokenizer::Tokenizer;

#[derive(Clone, Debug, Default)]
pub struct Conversation {
    pub messages: Vec<ChatMessage>,
    pub tools: Option<Vec<Value>>,
    /// The text the model has seen: rendered prompts and its replies (special tokens kept).
    seen_text: String,
    /// The token ids of `seen_text`, as fed and as generated.
    seen_ids: Vec<u32>,
}

impl Conversation {
    pub fn new(system: Option<&str>) -> Conversation {
        Conversation {
            messages: system
                .map(|s| vec![ChatMessage::system(s)])
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    /// Adds a user message and returns the token ids of the whole conversation with the
    /// generation prompt: the ids already seen followed by the newly rendered suffix.
    pub fn push_user(&mut self, tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
        self.messages.push(ChatMessage::user(text));
        let tools = self.tools.as_deref();
        let full = tok.render_chat(&self.messages, tools, true)?;
        let mut ids;
        match full.strip_prefix(self.seen_text.as_str()) {
            Some(rest) if !self.seen_text.is_empty() => {
                ids = self.seen_ids.clone();
                ids.extend(tok.encode_raw(rest)?);
            }
            _ => ids = tok.encode_raw(&full)?,
        }
        self.seen_text = full;
        self.seen_ids = ids.clone();
        Ok(ids)
    }

    /// Records the model's reply (`generated` as sampled, end-of-generation token included if it
    /// was sampled) and adds it to the messages.
    pub fn push_reply(&mut self, tok: &Tokenizer, generated: &[u32]) -> Result<String> {
        let content_ids: Vec<u32> = generated
            .iter()
            .copied()
            .filter(|&i| !tok.is_eog(i))
            .collect();
        let content = tok.decode(&content_ids, true)?;
        self.seen_text.push_str(&tok.decode(generated, false)?);
        self.seen_ids.extend_from_slice(generated);
        self.messages.push(ChatMessage::assistant(content.clone()));
        Ok(content)
    }

    /// Forgets everything but the system prompt.
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
        self.seen_text.clear();
        self.seen_ids.clear();
    }
}
