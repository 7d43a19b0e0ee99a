//! POSIX shell text.

/// Single-quotes `s` for a POSIX shell (`it's` → `'it'\''s'`), so it
/// reaches the command as one argument whatever it contains.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_spaces_quotes_and_expansions() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(x) `y` \"z\""), "'$(x) `y` \"z\"'");
        assert_eq!(quote(""), "''");
    }
}
