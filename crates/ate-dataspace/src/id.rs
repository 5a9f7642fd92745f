use std::fmt;

/// Identifies an assertion within its type: a string (`team-a/counter-1`) or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    Int(u64),
    Str(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Int(n) => write!(f, "{n}"),
            Id::Str(s) => f.write_str(s),
        }
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::Str(s.to_string())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::Str(s)
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id::Int(n)
    }
}

/// Which identifiers a subscription wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every assertion of the type.
    All,
    /// One identifier.
    Exact(Id),
    /// String identifiers matching a glob: `*` matches any run of characters, `?` one
    /// character (`team-a/*`, `api-routes-*`). Integer identifiers match by their decimal
    /// form.
    Glob(String),
}

impl Filter {
    pub fn matches(&self, id: &Id) -> bool {
        match self {
            Filter::All => true,
            Filter::Exact(x) => x == id,
            Filter::Glob(p) => match id {
                Id::Str(s) => glob(p.as_bytes(), s.as_bytes()),
                Id::Int(n) => glob(p.as_bytes(), n.to_string().as_bytes()),
            },
        }
    }
}

/// Glob match with `*` and `?`, iterative with backtracking to the last star (linear in
/// practice, no recursion).
fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let f = |p: &str, s: &str| Filter::Glob(p.into()).matches(&Id::from(s));
        assert!(f("team-a/*", "team-a/x"));
        assert!(f("team-a/*", "team-a/"));
        assert!(!f("team-a/*", "team-ab/x"));
        assert!(f("api-routes-*", "api-routes-admin"));
        assert!(f("*-b", "a-b"));
        assert!(f("a?c", "abc"));
        assert!(!f("a?c", "ac"));
        assert!(f("*", ""));
        assert!(f("a*b*c", "axxbyyc"));
        assert!(!f("a*b*c", "axxbyy"));
        assert!(Filter::Glob("1*".into()).matches(&Id::Int(123)));
        assert!(Filter::Exact(Id::Int(7)).matches(&Id::Int(7)));
        assert!(!Filter::Exact(Id::from("7")).matches(&Id::Int(7)));
    }
}
