//! Which queues a worker takes jobs from, in what order (Ruby's rules).
//!
//! A list of plain names is static: polled in the given order whether or not
//! the `queues` set names them. A list with a glob (`*`, `?`, `[...]`) or a
//! `!skip` item is dynamic: on every reserve each pattern, in order, expands to
//! the members of `queues` it matches, sorted bytewise, minus skipped ones.

/// A parsed `QUEUE`/`QUEUES` value.
///
/// ```
/// use resque_fork::queues::QueueSpec;
/// let spec = QueueSpec::parse("critical, *, !low").unwrap();
/// assert_eq!(spec.id_part(), "critical,*");
/// let all = vec!["critical".to_string(), "low".into(), "mail".into()];
/// assert_eq!(spec.resolve(&all), vec!["critical", "mail"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    patterns: Vec<String>,
    skips: Vec<String>,
}

impl QueueSpec {
    /// Splits on `,` and trims each item; `!name` items are skip patterns.
    pub fn parse(list: &str) -> Result<QueueSpec, String> {
        let mut patterns = Vec::new();
        let mut skips = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.strip_prefix('!') {
                Some(skip) if !skip.is_empty() => skips.push(skip.to_string()),
                Some(_) => return Err(format!("empty skip pattern in queue list {list:?}")),
                None => patterns.push(item.to_string()),
            }
        }
        if patterns.is_empty() {
            return Err(format!(
                "no queues to work on in {list:?}: set QUEUE (e.g. QUEUE=high,low or QUEUE=*)"
            ));
        }
        if let Some(bad) = patterns.iter().find(|p| p.contains(':')) {
            return Err(format!(
                "queue name {bad:?} contains ':', which Resque worker ids cannot carry"
            ));
        }
        Ok(QueueSpec { patterns, skips })
    }

    /// The queue part of the worker id: the patterns joined with `,`, skips left out.
    pub fn id_part(&self) -> String {
        self.patterns.join(",")
    }

    /// True when the list must be expanded against the `queues` set.
    pub fn is_dynamic(&self) -> bool {
        !self.skips.is_empty() || self.patterns.iter().any(|p| has_glob(p))
    }

    /// The static queue list (meaningful when not dynamic).
    pub fn names(&self) -> &[String] {
        &self.patterns
    }

    /// Expands against the members of `queues`, which must be sorted bytewise.
    pub fn resolve(&self, known: &[String]) -> Vec<String> {
        if !self.is_dynamic() {
            return self.patterns.clone();
        }
        let mut out: Vec<String> = Vec::new();
        for pattern in &self.patterns {
            for name in known {
                if fnmatch(pattern, name)
                    && !self.skips.iter().any(|s| fnmatch(s, name))
                    && !out.contains(name)
                {
                    out.push(name.clone());
                }
            }
        }
        out
    }
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '[', ']', '{', '}'])
}

/// `File.fnmatch?` without FNM_PATHNAME or FNM_DOTMATCH: `*` and `?` match any
/// byte including `/`, but not a leading `.`; `[...]` classes with ranges and
/// `!`/`^` negation; `\` escapes; braces are literal.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let p = pattern.as_bytes();
    let n = name.as_bytes();
    if n.first() == Some(&b'.') && matches!(p.first(), Some(b'*' | b'?' | b'[')) {
        return false;
    }
    matches_from(p, n)
}

fn matches_from(p: &[u8], n: &[u8]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                backtrack = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => class_match(&p[pi..], n[ni]).map(|(ok, len)| if ok { len } else { 0 }),
            Some(b'\\') if pi + 1 < p.len() => (p[pi + 1] == n[ni]).then_some(2),
            Some(&c) => (c == n[ni]).then_some(1),
            None => None,
        };
        match step {
            Some(len) if len > 0 => {
                pi += len;
                ni += 1;
            }
            _ => match backtrack {
                Some((bp, bn)) => {
                    pi = bp + 1;
                    ni = bn + 1;
                    backtrack = Some((bp, bn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches one byte against the class at the start of `p`; returns whether it
/// matched and the class's length, or `None` when the class is unterminated.
fn class_match(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn static_list_keeps_order() {
        let spec = QueueSpec::parse(" high , low,mail ").unwrap();
        assert!(!spec.is_dynamic());
        assert_eq!(spec.id_part(), "high,low,mail");
        assert_eq!(spec.resolve(&[]), names(&["high", "low", "mail"]));
    }

    #[test]
    fn star_is_all_sorted() {
        let spec = QueueSpec::parse("*").unwrap();
        assert_eq!(spec.id_part(), "*");
        let known = names(&["A", "a", "b"]);
        assert_eq!(spec.resolve(&known), known);
    }

    #[test]
    fn priority_then_rest_minus_skips() {
        let spec = QueueSpec::parse("critical,*,!low*").unwrap();
        assert_eq!(spec.id_part(), "critical,*");
        let known = names(&["a", "critical", "low", "lower", "z"]);
        assert_eq!(spec.resolve(&known), names(&["critical", "a", "z"]));
    }

    #[test]
    fn dynamic_literal_needs_membership() {
        let spec = QueueSpec::parse("mail,!x").unwrap();
        assert!(spec.resolve(&names(&["other"])).is_empty());
    }

    #[test]
    fn errors() {
        assert!(QueueSpec::parse("").is_err());
        assert!(QueueSpec::parse(" , ").is_err());
        assert!(QueueSpec::parse("!a").is_err());
        assert!(QueueSpec::parse("a:b").is_err());
    }

    #[test]
    fn fnmatch_semantics() {
        assert!(fnmatch("*", "a/b"));
        assert!(!fnmatch("*", ".hidden"));
        assert!(fnmatch("mail_*", "mail_fast"));
        assert!(!fnmatch("mail_*", "mail"));
        assert!(fnmatch("q?", "q1"));
        assert!(fnmatch("q[0-9]", "q5"));
        assert!(!fnmatch("q[!0-9]", "q5"));
        assert!(fnmatch("{a,b}", "{a,b}"));
        assert!(fnmatch("a*b*c", "axxbyyc"));
        assert!(!fnmatch("a*b*c", "axxbyy"));
        assert!(fnmatch("\\*", "*"));
    }
}
