//! Forced-alignment vocabulary: the languages Qwen3-ForcedAligner aligns, how each splits a
//! transcript into units (words or characters), and one aligned unit.

use serde::{Deserialize, Serialize};

/// How words are split: by spaces, or one unit per character (Chinese, Japanese, Cantonese).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Word,
    Character,
}

/// A language the aligner supports: the model's name for it and its ISO 639 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Language {
    pub name: &'static str,
    pub code: &'static str,
    pub unit: Unit,
}

/// Qwen3-ForcedAligner's languages. Cantonese has no ISO 639-1 code; its 639-3 code is `yue`.
pub const LANGUAGES: &[Language] = &[
    Language { name: "Chinese", code: "zh", unit: Unit::Character },
    Language { name: "English", code: "en", unit: Unit::Word },
    Language { name: "Cantonese", code: "yue", unit: Unit::Character },
    Language { name: "French", code: "fr", unit: Unit::Word },
    Language { name: "German", code: "de", unit: Unit::Word },
    Language { name: "Italian", code: "it", unit: Unit::Word },
    Language { name: "Japanese", code: "ja", unit: Unit::Character },
    Language { name: "Korean", code: "ko", unit: Unit::Word },
    Language { name: "Portuguese", code: "pt", unit: Unit::Word },
    Language { name: "Russian", code: "ru", unit: Unit::Word },
    Language { name: "Spanish", code: "es", unit: Unit::Word },
];

/// The language named by `input`: a name or a code, any case (`English`, `en`, `EN`).
pub fn language(input: &str) -> Option<&'static Language> {
    let input = input.trim();
    LANGUAGES.iter().find(|l| l.name.eq_ignore_ascii_case(input) || l.code.eq_ignore_ascii_case(input))
}

/// One aligned unit (word or character), in milliseconds from the start of the audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlignedUnit {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_resolve_by_name_or_code_in_any_case() {
        assert_eq!(language("English").map(|l| l.code), Some("en"));
        assert_eq!(language("en").map(|l| l.name), Some("English"));
        assert_eq!(language(" JA ").map(|l| l.unit), Some(Unit::Character));
        assert_eq!(language("yue").map(|l| l.name), Some("Cantonese"));
        assert!(language("klingon").is_none());
        assert!(language("").is_none());
    }
}
