//! Masking secret values in text users can read (operation logs, error
//! messages): every occurrence becomes `***`, as CI systems mask secrets.
//! A value is also masked in its base64 (standard and URL-safe, with and
//! without padding) and percent-encoded (RFC 3986) forms, the ways a script
//! most often prints a secret without meaning to (`base64`, `curl -u`, URLs).

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// Values shorter than this many bytes are not masked: masking `1` or `ab`
/// would garble every log while protecting nothing.
pub const MIN_SECRET_LEN: usize = 4;

/// A set of secret values to mask.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// Longest first, so a value that contains another is masked whole.
    needles: Vec<String>,
}

impl Scrubber {
    /// Builds a scrubber. A multi-line value is also masked line by line
    /// (lines of at least 8 bytes), since a log may carry it split over
    /// several chunks.
    pub fn new<I, S>(values: I) -> Scrubber
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut needles = Vec::new();
        for v in values {
            let v = v.as_ref();
            if v.trim().len() >= MIN_SECRET_LEN {
                needles.push(v.to_string());
                if v.trim() != v {
                    needles.push(v.trim().to_string());
                }
                needles.extend(encoded_forms(v.trim()));
            }
            if v.contains('\n') {
                needles.extend(
                    v.lines()
                        .map(str::trim)
                        .filter(|l| l.len() >= 8)
                        .map(str::to_string),
                );
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Scrubber { needles }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every secret value replaced by [`MASK`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MASK);
            }
        }
        out
    }
}

/// The base64 and percent-encoded forms of `v` that differ from it.
fn encoded_forms(v: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let mut forms: Vec<String> = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .map(|e| e.encode(v.as_bytes()))
        .collect();
    forms.push(percent_encode(v));
    forms.retain(|f| f != v && f.len() >= MIN_SECRET_LEN);
    forms
}

/// RFC 3986 percent-encoding: everything but unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) becomes `%XX` (upper-case hex).
pub fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let s = Scrubber::new(["hunter22", "hunter22-extended", "ab"]);
        assert_eq!(
            s.scrub("pw=hunter22-extended and hunter22, ab stays"),
            "pw=*** and ***, ab stays"
        );
    }

    #[test]
    fn masks_lines_of_multi_line_values() {
        let key = "-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\n-----END KEY-----\n";
        let s = Scrubber::new([key]);
        assert_eq!(s.scrub("got AAAABBBBCCCCDDDD here"), "got *** here");
        assert_eq!(s.scrub(key), "***");
        assert!(Scrubber::new(["  "]).is_empty());
    }

    #[test]
    fn masks_base64_and_url_encoded_forms() {
        let secret = "p@ss w/rd?1";
        let s = Scrubber::new([secret]);
        // `printf %s 'p@ss w/rd?1' | base64` and a URL carrying it.
        assert_eq!(s.scrub("b64=cEBzcyB3L3JkPzE="), "b64=***");
        assert_eq!(s.scrub("nopad=cEBzcyB3L3JkPzE"), "nopad=***");
        assert_eq!(
            s.scrub("https://u:p%40ss%20w%2Frd%3F1@host/"),
            "https://u:***@host/"
        );
        let urlsafe = Scrubber::new(["??>>??"]);
        assert_eq!(urlsafe.scrub("Pz8-Pj8_"), "***");
        assert_eq!(urlsafe.scrub("Pz8+Pj8/"), "***");
    }
}
