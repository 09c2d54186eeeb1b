//! GPT-2's tokenizer: byte-level BPE over OpenAI's r50k ranks, giving the same token ids as
//! tiktoken's `gpt2` encoding for any text. The ranks come with the `tiktoken-rs` crate, so
//! nothing is downloaded. A `<|endoftext|>` inside a text is ordinary text ([`Bpe::encode`])
//! unless it is asked for as GPT-2's document separator ([`Bpe::encode_with_eot`]). A token can
//! hold part of a character (an emoji is several tokens): decoding never panics on one, it writes
//! U+FFFD where the bytes are not whole UTF-8 yet (`Tokenize::decode`), and [`Bpe::decode_bytes`]
//! gives the raw bytes for a caller that writes text as it is sampled.
//! This is the tokenizer of GPT-2's checkpoints; the character tokenizer of the runs trained here
//! is `data::Tokenizer`; both write passages through `data::Tokenize`.

use anyhow::{Result, bail};
use tiktoken_rs::CoreBPE;

use crate::gpt::data::Tokenize;

/// GPT-2's byte-level BPE.
pub struct Bpe {
    bpe: CoreBPE,
}

impl Bpe {
    /// How many tokens GPT-2 knows: 50,000 merges, 256 bytes and `<|endoftext|>`.
    pub const VOCAB_SIZE: usize = 50257;
    /// `<|endoftext|>`, the last token: GPT-2's separator between documents.
    pub const EOT: usize = 50256;

    /// GPT-2's tokenizer (the r50k ranks, read from the copy the crate holds).
    pub fn gpt2() -> Result<Self> {
        Ok(Self { bpe: tiktoken_rs::r50k_base()? })
    }

    /// The token ids of `text`, every character of it ordinary text (`<|endoftext|>` too).
    pub fn encode(&self, text: &str) -> Vec<usize> {
        self.bpe.encode_ordinary(text).into_iter().map(|id| id as usize).collect()
    }

    /// The token ids of `text`, each `<|endoftext|>` in it the separator token [`Bpe::EOT`].
    pub fn encode_with_eot(&self, text: &str) -> Vec<usize> {
        self.bpe.encode_with_special_tokens(text).into_iter().map(|id| id as usize).collect()
    }

    /// The bytes of `ids`, which need not end on a whole character.
    pub fn decode_bytes(&self, ids: &[usize]) -> Result<Vec<u8>> {
        if let Some(&bad) = ids.iter().find(|&&id| id >= Self::VOCAB_SIZE) {
            bail!("token {bad} is not one of GPT-2's {} tokens", Self::VOCAB_SIZE);
        }
        let ranks: Vec<u32> = ids.iter().map(|&id| id as u32).collect();
        self.bpe.decode_bytes(&ranks).map_err(|err| anyhow::anyhow!("{err}"))
    }
}

impl Tokenize for Bpe {
    fn encode(&self, text: &str) -> Result<Vec<usize>> {
        Ok(Bpe::encode(self, text))
    }

    fn decode_bytes(&self, ids: &[usize]) -> Result<Vec<u8>> {
        Bpe::decode_bytes(self, ids)
    }

    /// `<|endoftext|>`: GPT-2's start of a document.
    fn passage_start(&self) -> usize {
        Self::EOT
    }

    fn drawable(&self) -> usize {
        Self::VOCAB_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One text and its ids, as tiktoken gives them (`tests/reference/gpt2_tokens.py`).
    #[derive(serde::Deserialize)]
    struct Case {
        text: String,
        ordinary: Vec<usize>,
        special: Vec<usize>,
    }

    #[derive(serde::Deserialize)]
    struct Fixture {
        cases: Vec<Case>,
    }

    /// The same ids as OpenAI's tiktoken for awkward texts (non-ASCII, emoji, runs of spaces and
    /// newlines, contractions, `<|endoftext|>` inside a text), both ways of reading
    /// `<|endoftext|>`; and each text decodes back to itself.
    #[test]
    fn the_ids_are_tiktokens() {
        let fixture: Fixture = serde_json::from_str(include_str!("../../tests/reference/gpt2_tokens.json")).unwrap();
        assert!(fixture.cases.len() >= 20);
        let bpe = Bpe::gpt2().unwrap();
        for case in &fixture.cases {
            assert_eq!(bpe.encode(&case.text), case.ordinary, "{:?}", case.text);
            assert_eq!(bpe.encode_with_eot(&case.text), case.special, "{:?}", case.text);
            assert_eq!(bpe.decode(&case.ordinary).unwrap(), case.text);
            assert_eq!(bpe.decode(&case.special).unwrap(), case.text);
        }
        let eot = fixture.cases.iter().find(|c| c.text == "a<|endoftext|>b").expect("the separator case");
        assert!(eot.special.contains(&Bpe::EOT) && !eot.ordinary.contains(&Bpe::EOT));
    }

    /// A token that cuts a character decodes without a panic; its bytes are kept whole.
    #[test]
    fn a_cut_character_decodes_without_a_panic() {
        let bpe = Bpe::gpt2().unwrap();
        let ids = bpe.encode("😀");
        assert!(ids.len() > 1, "an emoji is several tokens: {ids:?}");
        let first = bpe.decode(&ids[..1]).unwrap();
        assert!(first.contains('\u{FFFD}'), "{first:?}");
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| bpe.decode_bytes(&[id]).unwrap()).collect();
        assert_eq!(String::from_utf8(bytes).unwrap(), "😀");
        let err = bpe.decode(&[Bpe::VOCAB_SIZE]).unwrap_err().to_string();
        assert!(err.contains("not one of GPT-2's 50257 tokens"), "{err}");
    }
}
