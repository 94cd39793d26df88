//! Escaping for the three output languages, and the folding of profile names in text.

use std::collections::BTreeSet;

/// Text and attribute values in HTML and SVG: nothing in it can open a tag, close an
/// attribute or start an entity.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters have no business in a report (and some are invalid in XML).
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A Graphviz double-quoted string's content.
pub fn dot(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A Mermaid quoted label's content: quotes, angle brackets, `#` (entity start) and the
/// characters Mermaid gives meaning to become entity codes.
pub fn mermaid(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '\'' => out.push_str("#39;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '|' => out.push_str("#124;"),
            '`' => out.push_str("#96;"),
            '\n' => out.push_str("<br/>"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Replace every word of `s` that is a folded profile namespace by `placeholder` (words are
/// runs of `[A-Za-z0-9-]`, which is all a namespace name can be made of). Also returns the
/// profiles found.
pub fn fold_profiles<'a>(
    s: &'a str,
    folded: &BTreeSet<&str>,
    placeholder: &str,
) -> (std::borrow::Cow<'a, str>, Vec<String>) {
    if folded.is_empty() {
        return (std::borrow::Cow::Borrowed(s), Vec::new());
    }
    let mut out = String::with_capacity(s.len());
    let mut found = Vec::new();
    let mut word_start: Option<usize> = None;
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-';
    let mut flush = |out: &mut String, word: &str| {
        if folded.contains(word) {
            out.push_str(placeholder);
            found.push(word.to_string());
        } else {
            out.push_str(word);
        }
    };
    for (i, c) in s.char_indices() {
        if is_word(c) {
            if word_start.is_none() {
                word_start = Some(i);
            }
        } else {
            if let Some(st) = word_start.take() {
                flush(&mut out, &s[st..i]);
            }
            out.push(c);
        }
    }
    if let Some(st) = word_start {
        flush(&mut out, &s[st..]);
    }
    if found.is_empty() {
        (std::borrow::Cow::Borrowed(s), found)
    } else {
        (std::borrow::Cow::Owned(out), found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_everything_that_matters() {
        assert_eq!(
            html(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn dot_and_mermaid_escape_quotes() {
        assert_eq!(dot(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(mermaid(r#"a"b#c<d>"#), "a#quot;b#35;c#lt;d#gt;");
    }

    #[test]
    fn profiles_fold_as_whole_words() {
        let folded: BTreeSet<&str> = ["p-1", "p-2"].into_iter().collect();
        let (s, found) = fold_profiles("x@p-1#y: p-1/a -> p-10/b", &folded, "{p}");
        assert_eq!(s, "x@{p}#y: {p}/a -> p-10/b");
        assert_eq!(found, vec!["p-1", "p-1"]);
    }
}
