//! Prompt rule packs: opt-in sets of rules against common prompt-injection, jailbreak and
//! exfiltration phrasings. The rules live in `packs.toml` (embedded, documented in
//! docs/prompt-rules.md) and are compiled once per process into one `RegexSet` (`Catalogue`), with
//! a leftmost-first alternation of the same rules in front of it for texts that match none.
//! A tenant chooses packs, each with an optional action override (`PackChoice`); its `Selection`
//! only decides which of the set's matches count and what they do, so changing a tenant's packs
//! compiles nothing. A prompt is scanned once, whatever the number of packs.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

const PACKS_TOML: &str = include_str!("packs.toml");

/// What a space in a rule's pattern stands for: one or more separators, so "ignore previous"
/// also matches "ignore\u{a0}\u{200b} previous" and "ignore_previous". ASCII whitespace, `_`,
/// `*`, `-`, U+00A0, U+2000–U+200F, U+2028, U+2029, U+202F, U+205F, U+2060, U+3000, U+FEFF
/// (the patterns run over bytes with Unicode off, so the multi-byte ones are spelled as bytes).
const SEPARATOR: &str = r"(?:(?:[\s_*\-]|\xC2\xA0|\xE2\x80[\x80-\x8F\xA8\xA9\xAF]|\xE2\x81[\x9F\xA0]|\xE3\x80\x80|\xEF\xBB\xBF)+)";

/// The most packs a tenant may list (there are fewer).
pub const MAX_CHOICES: usize = 32;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Refuse the request: 400 `prompt_denied`.
    Block,
    /// Let the request pass; record an audit event and count it in a metric.
    Flag,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Block => "block",
            RuleAction::Flag => "flag",
        }
    }
}

/// A named set of rules a tenant can enable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    pub name: String,
    pub description: String,
}

/// One rule: a pattern, the pack it belongs to and what it does by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `<pack>.<name>`; stable, named in audit events, logs and refusals (never the pattern).
    pub id: String,
    pub pack: String,
    pub action: RuleAction,
    pub description: String,
    pub pattern: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(rename = "pack")]
    packs: Vec<Pack>,
    #[serde(rename = "rule")]
    rules: Vec<Rule>,
}

/// A rules file that cannot be used; names the rule at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("the prompt rules file does not parse: {0}")]
    Syntax(String),
    #[error("prompt rule pack `{pack}`: {message}")]
    Pack { pack: String, message: String },
    #[error("prompt rule `{rule}`: {message}")]
    Rule { rule: String, message: String },
    #[error("the prompt rules do not compile together: {0}")]
    Set(String),
}

/// Every pack and rule, with all patterns compiled into one set.
#[derive(Debug)]
pub struct Catalogue {
    packs: Vec<Pack>,
    rules: Vec<Rule>,
    set: regex::bytes::RegexSet,
    /// The same patterns as one leftmost-first alternation: where the first match of any rule
    /// starts (no rule matches before it), found by the faster non-overlapping search.
    first: regex::bytes::Regex,
}

static EMBEDDED: LazyLock<Result<Arc<Catalogue>, CatalogueError>> = LazyLock::new(|| Catalogue::parse(PACKS_TOML).map(Arc::new));

/// A rule's pattern as the set compiles it: spaces become `SEPARATOR`.
fn expand(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut in_space = false;
    for c in pattern.chars() {
        if c == ' ' {
            if !in_space {
                out.push_str(SEPARATOR);
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

// Byte-oriented and ASCII case-insensitive: the lazy DFA never has to give up on a Unicode word
// boundary in a non-English prompt, and its states stay few.
fn builder<I: IntoIterator<Item = String>>(patterns: I) -> regex::bytes::RegexSetBuilder {
    let mut b = regex::bytes::RegexSetBuilder::new(patterns);
    b.case_insensitive(true).unicode(false).size_limit(16 << 20).dfa_size_limit(16 << 20);
    b
}

fn alternation(patterns: &[String]) -> Result<regex::bytes::Regex, regex::Error> {
    let joined = patterns.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
    regex::bytes::RegexBuilder::new(&joined).case_insensitive(true).unicode(false).size_limit(16 << 20).dfa_size_limit(16 << 20).build()
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Catalogue {
    /// The packs shipped in `packs.toml`, compiled on first use (the server does that at start).
    pub fn embedded() -> Result<Arc<Catalogue>, CatalogueError> {
        EMBEDDED.clone()
    }

    /// Parses and compiles a rules file, checking that ids are unique and well formed, that every
    /// rule's pack is declared and every pack has rules, and that each pattern compiles.
    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| CatalogueError::Syntax(e.to_string()))?;
        let mut names = HashSet::new();
        for p in &file.packs {
            let fail = |message: &str| CatalogueError::Pack { pack: p.name.clone(), message: message.into() };
            if !is_name(&p.name) {
                return Err(fail("a pack name is 1 to 64 of a-z, 0-9 and _"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(fail("declared twice"));
            }
            if !file.rules.iter().any(|r| r.pack == p.name) {
                return Err(fail("has no rules"));
            }
        }
        let mut ids = HashSet::new();
        for r in &file.rules {
            let fail = |message: String| CatalogueError::Rule { rule: r.id.clone(), message };
            if !names.contains(r.pack.as_str()) {
                return Err(fail(format!("pack `{}` is not declared", r.pack)));
            }
            let valid_id = r.id.split_once('.').is_some_and(|(pack, name)| pack == r.pack && is_name(name));
            if !valid_id {
                return Err(fail(format!("the id must be `{}.<name>` (a-z, 0-9, _)", r.pack)));
            }
            if !ids.insert(r.id.as_str()) {
                return Err(fail("the id is used twice".into()));
            }
            if r.pattern.trim().is_empty() || r.description.trim().is_empty() {
                return Err(fail("the pattern and the description must not be empty".into()));
            }
            builder([expand(&r.pattern)]).build().map_err(|e| fail(format!("the pattern does not compile: {e}")))?;
        }
        let patterns: Vec<String> = file.rules.iter().map(|r| expand(&r.pattern)).collect();
        let set = builder(patterns.iter().cloned()).build().map_err(|e| CatalogueError::Set(e.to_string()))?;
        let first = alternation(&patterns).map_err(|e| CatalogueError::Set(e.to_string()))?;
        Ok(Catalogue { packs: file.packs, rules: file.rules, set, first })
    }

    pub fn packs(&self) -> &[Pack] {
        &self.packs
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn pack(&self, name: &str) -> Option<&Pack> {
        self.packs.iter().find(|p| p.name == name)
    }

    /// The indexes (into `rules`) of every rule the text matches. A text that matches no rule
    /// (most) costs one non-overlapping pass; otherwise the set reports every rule that matches
    /// from where the first match starts, which no match precedes (look-around still sees the
    /// text before it).
    pub fn scan(&self, text: &str) -> Vec<usize> {
        let bytes = text.as_bytes();
        match self.first.find(bytes) {
            None => Vec::new(),
            Some(m) => self.set.matches_at(bytes, m.start()).into_iter().collect(),
        }
    }

    /// Checks a tenant's choice of packs: each pack known and listed once.
    pub fn check(&self, choices: &[PackChoice]) -> Result<(), ChoiceError> {
        if choices.len() > MAX_CHOICES {
            return Err(ChoiceError::TooMany);
        }
        let mut seen = HashSet::new();
        for c in choices {
            if self.pack(&c.pack).is_none() {
                let known = self.packs.iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>().join(", ");
                return Err(ChoiceError::UnknownPack { pack: c.pack.clone(), known });
            }
            if !seen.insert(c.pack.as_str()) {
                return Err(ChoiceError::Duplicate(c.pack.clone()));
            }
        }
        Ok(())
    }

    /// The selection for a tenant's stored choice. A pack this build does not know (one removed
    /// since it was chosen) is left out and returned, so the caller can say so.
    pub fn select(self: &Arc<Self>, choices: &[PackChoice]) -> (Option<Selection>, Vec<String>) {
        let mut unknown = Vec::new();
        let mut actions = vec![None; self.rules.len()];
        for c in choices {
            if self.pack(&c.pack).is_none() {
                unknown.push(c.pack.clone());
                continue;
            }
            for (i, r) in self.rules.iter().enumerate().filter(|(_, r)| r.pack == c.pack) {
                actions[i] = Some(c.action.unwrap_or(r.action));
            }
        }
        let selection = actions.iter().any(Option::is_some).then(|| Selection { catalogue: self.clone(), actions });
        (selection, unknown)
    }
}

/// A tenant's choice of one pack, with an optional action for all its rules (else each rule's
/// own default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackChoice {
    /// The pack's name: `injection`, `jailbreak` or `exfiltration`.
    pub pack: String,
    /// `block` or `flag` for every rule of the pack; omitted: each rule's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RuleAction>,
}

impl PackChoice {
    /// The choices stored in a tenant's `prompt_rule_packs` column (a JSON array).
    pub fn list_from_json(value: &serde_json::Value) -> Result<Vec<PackChoice>, serde_json::Error> {
        Vec::<PackChoice>::deserialize(value)
    }
}

/// A tenant's choice of packs that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error("there is no prompt rule pack `{pack}` (the packs are {known})")]
    UnknownPack { pack: String, known: String },
    #[error("the pack `{0}` is listed twice")]
    Duplicate(String),
    #[error("at most {MAX_CHOICES} packs")]
    TooMany,
}

/// The rules a tenant enabled and what each does: an action per rule of the catalogue.
#[derive(Debug, Clone)]
pub struct Selection {
    catalogue: Arc<Catalogue>,
    actions: Vec<Option<RuleAction>>,
}

/// An enabled rule the prompt matched, and what it does for this tenant.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    pub rule: &'a Rule,
    pub action: RuleAction,
}

impl Selection {
    /// The enabled rules the text matches, in the file's order (one scan of the text).
    pub fn judge(&self, text: &str) -> Vec<Hit<'_>> {
        self.catalogue
            .scan(text)
            .into_iter()
            .filter_map(|i| Some(Hit { rule: self.catalogue.rules.get(i)?, action: (*self.actions.get(i)?)? }))
            .collect()
    }

    /// The enabled packs, sorted.
    pub fn packs(&self) -> BTreeSet<&str> {
        self.catalogue.rules.iter().zip(&self.actions).filter(|(_, a)| a.is_some()).map(|(r, _)| r.pack.as_str()).collect()
    }
}
