//! POSIX shell text.

/// Quotes `s` for a POSIX shell so it reaches the command as one argument
/// whatever it contains, in the form acb's `shellQuote` (and Python's
/// `shlex.quote`) produce: a non-empty word of only `[A-Za-z0-9_@%+=:,./-]`
/// stays as it is; anything else is single-quoted with each `'` written as
/// `'"'"'` (`it's` → `'it'"'"'s'`, `` → `''`).
///
/// Contract: acr-builder `templating/base_render_options.go` (`shellQuote`,
/// used for `.ValuesJSON` and `.RunJSON`).
pub fn quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_spaces_quotes_and_expansions() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\"'\"'s'");
        assert_eq!(quote("$(x) `y` \"z\""), "'$(x) `y` \"z\"'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("plain-word_1.2:3"), "plain-word_1.2:3");
        assert_eq!(quote("a*"), "'a*'");
    }
}
