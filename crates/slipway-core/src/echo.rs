//! Bounds on what error answers echo back.
//!
//! A caller can send a value of any size, or thousands of bad fields; an
//! error names the field and the value but never grows with the input:
//! [`truncate`] cuts an echoed value at [`MAX_ECHO_CHARS`] characters, and
//! [`bounded`] keeps at most [`MAX_PROBLEMS`] problems of a list and says
//! how many were left out.

/// The most characters of a value an error message echoes.
pub const MAX_ECHO_CHARS: usize = 64;

/// The most problems an error answer lists.
pub const MAX_PROBLEMS: usize = 20;

/// `value` as given when it has at most [`MAX_ECHO_CHARS`] characters,
/// else its first [`MAX_ECHO_CHARS`] followed by `…(N more characters)`.
/// Cuts on a character boundary.
pub fn truncate(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO_CHARS) {
        None => value.to_string(),
        Some((cut, _)) => format!(
            "{}…({} more characters)",
            &value[..cut],
            value[cut..].chars().count()
        ),
    }
}

/// The first [`MAX_PROBLEMS`] of `problems`, plus `more(n)` when `n`
/// were left out.
pub fn bounded<T>(mut problems: Vec<T>, more: impl FnOnce(usize) -> T) -> Vec<T> {
    if problems.len() > MAX_PROBLEMS {
        let left_out = problems.len() - MAX_PROBLEMS;
        problems.truncate(MAX_PROBLEMS);
        problems.push(more(left_out));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short"), "short");
        let long = "é".repeat(100);
        let t = truncate(&long);
        assert!(t.starts_with(&"é".repeat(64)));
        assert!(t.ends_with("…(36 more characters)"), "{t}");
    }

    #[test]
    fn lists_keep_the_first_problems_and_count_the_rest() {
        let v: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let b = bounded(v, |n| format!("{n} more"));
        assert_eq!(b.len(), MAX_PROBLEMS + 1);
        assert_eq!(b.last().unwrap(), "5 more");
        assert_eq!(bounded(vec![1, 2], |_| 0), vec![1, 2]);
    }
}
