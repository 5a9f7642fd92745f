//! What a token says: who holds it, which atespaces it reaches, with which role, until when.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::AuthError;

/// Longest lifetime a token may have. Tokens cannot be revoked individually (only by retiring
/// their key), so lifetimes are bounded.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// The atespace entry that makes a token reach every atespace, including future ones.
pub const ALL_ATESPACES: &str = "*";

/// Longest subject, the same bound as a DNS subdomain so subjects fit where names do.
const MAX_SUBJECT_LEN: usize = 253;

/// What a token may do within the atespaces it covers. Ordered so that `role >= required`
/// is the whole check: Viewer < Editor < Admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads and writes.
    Editor,
    /// Everything, including minting tokens within its own reach.
    Admin,
}

impl Role {
    /// The wire and display name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(AuthError::field(
                "role",
                format!("{other:?} is not one of viewer, editor, admin"),
            )),
        }
    }
}

/// The payload of a token. Times are whole seconds since the unix epoch, as JWT has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was issued to; shown in audit logs and denials.
    pub sub: String,
    /// Atespace names the token reaches, or [`ALL_ATESPACES`].
    pub atespaces: Vec<String>,
    pub role: Role,
    /// Issued at.
    pub iat: u64,
    /// Expires at (exclusive).
    pub exp: u64,
    /// Random token id, so a single token can be named (audit, deny lists).
    pub jti: String,
}

impl Claims {
    /// Builds validated claims valid from `now` for `ttl` (rounded up to whole seconds) with a
    /// fresh random `jti`. Duplicate atespaces are dropped, keeping the first occurrence.
    pub fn new(
        subject: &str,
        atespaces: &[String],
        role: Role,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Claims, AuthError> {
        check_subject(subject).map_err(|r| AuthError::field("subject", r))?;
        let mut list: Vec<String> = Vec::with_capacity(atespaces.len());
        for ns in atespaces {
            check_atespace(ns).map_err(|r| AuthError::field("atespaces", r))?;
            if !list.contains(ns) {
                list.push(ns.clone());
            }
        }
        if list.is_empty() {
            return Err(AuthError::field(
                "atespaces",
                "at least one atespace (or \"*\") is required",
            ));
        }
        if ttl.is_zero() {
            return Err(AuthError::field("ttl", "must be positive"));
        }
        if ttl > MAX_TTL {
            return Err(AuthError::field(
                "ttl",
                format!("must be at most {} days", MAX_TTL.as_secs() / 86_400),
            ));
        }
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AuthError::field("now", "is before the unix epoch"))?
            .as_secs();
        let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| AuthError::crypto("no randomness available for the token id"))?;
        Ok(Claims {
            sub: subject.to_owned(),
            atespaces: list,
            role,
            iat,
            exp: iat + ttl_secs,
            jti: id.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    /// Whether the token reaches `atespace`, by name or through [`ALL_ATESPACES`].
    pub fn covers(&self, atespace: &str) -> bool {
        self.covers_all() || self.atespaces.iter().any(|a| a == atespace)
    }

    /// Whether the token reaches every atespace; cluster-wide changes require it.
    pub fn covers_all(&self) -> bool {
        self.atespaces.iter().any(|a| a == ALL_ATESPACES)
    }

    /// When the token stops being accepted.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp)
    }

    /// Shape checks shared by signing and verifying, so no token outside the rules of
    /// [`Claims::new`] is ever minted or accepted. Returns the offending field and why.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        check_subject(&self.sub).map_err(|r| ("subject", r))?;
        if self.atespaces.is_empty() {
            return Err(("atespaces", "must not be empty".into()));
        }
        for ns in &self.atespaces {
            check_atespace(ns).map_err(|r| ("atespaces", r))?;
        }
        if self.exp <= self.iat {
            return Err(("ttl", "expiry must be after issue time".into()));
        }
        if self.exp - self.iat > MAX_TTL.as_secs() {
            return Err((
                "ttl",
                format!("must be at most {} days", MAX_TTL.as_secs() / 86_400),
            ));
        }
        if self.jti.is_empty() || self.jti.len() > 64 {
            return Err(("jti", "must be 1-64 characters".into()));
        }
        Ok(())
    }
}

fn check_subject(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_SUBJECT_LEN {
        return Err(format!("must be at most {MAX_SUBJECT_LEN} bytes"));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain whitespace or control characters".into());
    }
    Ok(())
}

/// `*` or any atespace name ate accepts (a DNS-1123 label). System atespaces (`ate-...`) are
/// allowed: operators may need tokens for them.
fn check_atespace(s: &str) -> Result<(), String> {
    if s == ALL_ATESPACES {
        return Ok(());
    }
    ate_model::names::validate_label("atespace", s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn ns(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn field_of(r: Result<Claims, AuthError>) -> &'static str {
        match r.unwrap_err() {
            AuthError::InvalidField { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn new_builds_valid_claims() {
        let c = Claims::new(
            "alice",
            &ns(&["team-a", "team-b", "team-a"]),
            Role::Editor,
            Duration::from_millis(1500),
            now(),
        )
        .unwrap();
        assert_eq!(c.atespaces, ns(&["team-a", "team-b"]));
        assert_eq!(c.iat, 1_700_000_000);
        assert_eq!(c.exp, 1_700_000_002);
        assert_eq!(c.jti.len(), 32);
        assert!(c.jti.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(c.covers("team-b") && !c.covers("team-c") && !c.covers_all());
        assert_eq!(
            c.expires_at(),
            UNIX_EPOCH + Duration::from_secs(1_700_000_002)
        );
        assert!(c.check().is_ok());
        let other = Claims::new("alice", &ns(&["*"]), Role::Viewer, MAX_TTL, now()).unwrap();
        assert_ne!(c.jti, other.jti);
        assert!(other.covers_all() && other.covers("anything"));
    }

    #[test]
    fn new_names_the_bad_field() {
        let ok = ns(&["team-a"]);
        let day = Duration::from_secs(86_400);
        for bad in ["", "al ice", "a\u{7}", &"x".repeat(254)] {
            assert_eq!(
                field_of(Claims::new(bad, &ok, Role::Viewer, day, now())),
                "subject"
            );
        }
        for bad in [ns(&[]), ns(&["Team"]), ns(&["ok", ""]), ns(&["a.b"])] {
            assert_eq!(
                field_of(Claims::new("a", &bad, Role::Viewer, day, now())),
                "atespaces"
            );
        }
        for bad in [Duration::ZERO, MAX_TTL + Duration::from_secs(1)] {
            assert_eq!(
                field_of(Claims::new("a", &ok, Role::Viewer, bad, now())),
                "ttl"
            );
        }
        let err = Claims::new("a", &ns(&["Team"]), Role::Viewer, day, now()).unwrap_err();
        assert!(err.to_string().starts_with("invalid atespaces: "), "{err}");
    }

    #[test]
    fn role_order_and_text() {
        assert!(Role::Viewer < Role::Editor && Role::Editor < Role::Admin);
        for r in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(r.to_string().parse::<Role>().unwrap(), r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn json_field_names() {
        let c = Claims::new("bob", &ns(&["x"]), Role::Admin, MAX_TTL, now()).unwrap();
        let v = serde_json::to_value(&c).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["atespaces", "exp", "iat", "jti", "role", "sub"]);
        assert_eq!(v["role"], "admin");
    }
}
