//! The data's tests: reading documents and texts, the tokenizer, the split.

use super::*;

#[test]
fn documents_are_stripped_and_blank_lines_skipped() {
    let docs = parse_documents(b"  anna \n\n\tbob\r\n   \nzoe").unwrap();
    assert_eq!(docs, ["anna", "bob", "zoe"]);
}

#[test]
fn empty_blank_and_non_utf8_files_are_refused() {
    assert!(parse_documents(b"").unwrap_err().to_string().contains("no documents"));
    assert!(parse_documents(b" \n\n \n").unwrap_err().to_string().contains("no documents"));
    let err = parse_documents(b"ok\n\xff\xfe").unwrap_err().to_string();
    assert!(err.contains("not UTF-8") && err.contains("offset 3"), "{err}");
}

#[test]
fn tokenizer_sorts_characters_and_puts_bos_last() {
    let docs = vec!["héllo".to_string(), "a-b".to_string()];
    let tok = Tokenizer::from_documents(&docs);
    assert_eq!(tok.chars, ['-', 'a', 'b', 'h', 'l', 'o', 'é']);
    assert_eq!(tok.bos(), 7);
    let ids = tok.encode("hé").unwrap();
    assert_eq!(tok.decode(&ids), "hé");
    assert!(tok.encode("x").unwrap_err().to_string().contains("'x'"));
}

#[test]
fn a_text_is_split_nine_tenths_to_one_and_keeps_every_character() {
    let raw = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n";
    let text = Text::new(raw, None).unwrap();
    text.check_windows(4).unwrap();
    assert_eq!(text.tokens.len(), raw.chars().count());
    assert_eq!(text.n_train, raw.chars().count() * 9 / 10);
    assert_eq!(text.tokenizer.decode(&text.tokens), raw, "line breaks and blank lines are kept");
    assert!(text.tokenizer.chars.contains(&'\n'));
    assert_eq!((text.train_tokens().len(), text.val_tokens().len()), (72, 9));
    text.check_windows(8).unwrap();
    let err = text.check_windows(9).unwrap_err().to_string();
    assert!(err.contains("shorter than one window of block_size + 1 = 10"), "{err}");
    assert!(err.contains("use a text of at least 91 characters or a smaller --block-size"), "{err}");
    for window in [2, 9, 17, 1000, 65_537] {
        let n = shortest_text(window);
        assert!(n - (n as f64 * 0.9) as usize >= window && ((n - 1) - ((n - 1) as f64 * 0.9) as usize) < window);
    }
    assert!(parse_text(b" \n\t\n").unwrap_err().to_string().contains("no text"));
}

#[test]
fn long_documents_are_cut_to_block_size() {
    let tok = Tokenizer::from_documents(&["abcdef".to_string()]);
    assert_eq!(doc_tokens(&tok, "abcdef", 4), [6, 0, 1, 2, 3]);
    assert_eq!(doc_tokens(&tok, "ab", 4), [6, 0, 1, 6]);
}
