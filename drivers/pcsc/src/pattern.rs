//! Which PC/SC reader is the chip encoder: chosen by a name pattern from the station config.

use regex::Regex;
use thiserror::Error;

/// A reader name pattern: `re:<regex>`, a glob with `*`/`?`, or a plain substring.
///
/// Matching is case-insensitive for globs and substrings because reader names carry
/// vendor capitalisation that changes between driver versions.
#[derive(Debug, Clone)]
pub struct ReaderPattern {
    source: String,
    kind: PatternKind,
}

#[derive(Debug, Clone)]
enum PatternKind {
    Substring(String),
    Glob(Vec<char>),
    Regex(Regex),
}

/// The configured reader pattern cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// The pattern is empty, which would match any reader.
    #[error("reader name pattern is empty; name the encoder's reader in the configuration")]
    Empty,
    /// The `re:` pattern is not a valid regular expression.
    #[error("reader name pattern '{pattern}' is not a valid regular expression: {reason}")]
    BadRegex {
        /// The pattern as configured.
        pattern: String,
        /// What the regex parser said.
        reason: String,
    },
}

impl ReaderPattern {
    /// Parses a pattern as written in the station configuration.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let kind = if let Some(re) = pattern.strip_prefix("re:") {
            if re.is_empty() {
                return Err(PatternError::Empty);
            }
            PatternKind::Regex(Regex::new(re).map_err(|e| PatternError::BadRegex {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })?)
        } else if pattern.trim().is_empty() {
            return Err(PatternError::Empty);
        } else if pattern.contains(['*', '?']) {
            PatternKind::Glob(pattern.to_lowercase().chars().collect())
        } else {
            PatternKind::Substring(pattern.to_lowercase())
        };
        Ok(Self {
            source: pattern.to_string(),
            kind,
        })
    }

    /// The pattern as configured, for messages.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `reader` is a name this pattern selects.
    pub fn matches(&self, reader: &str) -> bool {
        match &self.kind {
            PatternKind::Substring(s) => reader.to_lowercase().contains(s.as_str()),
            PatternKind::Glob(g) => {
                glob_match(g, &reader.to_lowercase().chars().collect::<Vec<_>>())
            }
            PatternKind::Regex(r) => r.is_match(reader),
        }
    }

    /// The first reader, in the order PC/SC lists them, that this pattern selects.
    pub fn select<'a>(&self, readers: &'a [String]) -> Option<&'a str> {
        readers.iter().map(String::as_str).find(|r| self.matches(r))
    }
}

/// Whole-name glob match: `*` is any run of characters, `?` exactly one.
fn glob_match(pattern: &[char], name: &[char]) -> bool {
    // Iterative match with a single backtrack point: linear enough for reader names.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(c) if *c == '?' || *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readers() -> Vec<String> {
        vec![
            "Virtual PCD 00 00".to_string(),
            "Virtual PCD 00 01".to_string(),
            "Identiv uTrust 2700 R Smart Card Reader [CCID Interface] (55511514602745) 01 00"
                .to_string(),
        ]
    }

    #[test]
    fn plain_pattern_is_a_case_insensitive_substring() {
        let p = ReaderPattern::parse("utrust 2700").unwrap();
        assert_eq!(p.select(&readers()), Some(readers()[2].as_str()));
    }

    #[test]
    fn first_listed_reader_wins_when_several_match() {
        let p = ReaderPattern::parse("Virtual PCD").unwrap();
        assert_eq!(p.select(&readers()), Some("Virtual PCD 00 00"));
    }

    #[test]
    fn glob_matches_the_whole_name() {
        let p = ReaderPattern::parse("virtual pcd ?? 01").unwrap();
        assert_eq!(p.select(&readers()), Some("Virtual PCD 00 01"));
        assert!(!ReaderPattern::parse("PCD*")
            .unwrap()
            .matches("Virtual PCD 00 00"));
        assert!(ReaderPattern::parse("*PCD*01")
            .unwrap()
            .matches("Virtual PCD 00 01"));
    }

    #[test]
    fn glob_star_backtracks_over_repeated_text() {
        let p = ReaderPattern::parse("*00 00").unwrap();
        assert!(p.matches("Virtual PCD 00 00"));
        assert!(!p.matches("Virtual PCD 00 01"));
    }

    #[test]
    fn regex_pattern_is_marked_with_re_prefix() {
        let p = ReaderPattern::parse(r"re:^Identiv .*\) 01 00$").unwrap();
        assert_eq!(p.select(&readers()), Some(readers()[2].as_str()));
    }

    #[test]
    fn no_match_selects_nothing() {
        let p = ReaderPattern::parse("Omnikey").unwrap();
        assert_eq!(p.select(&readers()), None);
    }

    #[test]
    fn empty_pattern_is_refused() {
        assert_eq!(ReaderPattern::parse("  ").unwrap_err(), PatternError::Empty);
        assert_eq!(
            ReaderPattern::parse("re:").unwrap_err(),
            PatternError::Empty
        );
    }

    #[test]
    fn invalid_regex_is_refused_with_the_pattern() {
        let e = ReaderPattern::parse("re:(unclosed").unwrap_err();
        assert!(e.to_string().contains("re:(unclosed"));
    }
}
