//! Authorization: what verified [`Claims`] allow. Kept free of I/O so every API handler
//! applies the same rules.

use std::fmt;

use thiserror::Error;

use crate::{Claims, Role};

/// What a request touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Objects inside one atespace (actors, their state).
    Atespace(&'a str),
    /// Cluster-wide objects (templates, pools, atespaces themselves, keys).
    Cluster,
}

/// What a request does to its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// Administrative actions (deleting atespaces, managing tokens).
    Admin,
}

impl Access {
    /// The least role that may perform this access inside a covered atespace.
    pub fn required_role(self) -> Role {
        match self {
            Access::Read => Role::Viewer,
            Access::Write => Role::Editor,
            Access::Admin => Role::Admin,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "administer",
        })
    }
}

/// Scope value of a [`Denied`] about cluster-wide objects.
const CLUSTER: &str = "cluster";

/// A refused request, with enough context for the caller to see which token, what and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "subject {subject} ({role}) may not {access} in {}: {reason}",
    describe(scope)
)]
pub struct Denied {
    pub subject: String,
    pub role: Role,
    /// The atespace name, or "cluster" for cluster-wide objects.
    pub scope: String,
    pub access: Access,
    pub reason: String,
}

fn describe(scope: &str) -> String {
    if scope == CLUSTER {
        "the cluster".into()
    } else {
        format!("atespace {scope}")
    }
}

fn deny(claims: &Claims, scope: &str, access: Access, reason: impl Into<String>) -> Denied {
    Denied {
        subject: claims.sub.clone(),
        role: claims.role,
        scope: scope.to_owned(),
        access,
        reason: reason.into(),
    }
}

/// Decides whether `claims` allow `access` to `scope`.
///
/// Inside an atespace the token must cover it and its role must reach the access (read:
/// viewer, write: editor, administer: admin). Cluster-wide objects are readable by any
/// token, because creating actors needs templates and pools; changing them needs an admin
/// token covering all atespaces, since they affect every atespace.
pub fn authorize(claims: &Claims, scope: Scope<'_>, access: Access) -> Result<(), Denied> {
    match scope {
        Scope::Atespace(ns) => {
            if !claims.covers(ns) {
                return Err(deny(claims, ns, access, "token is not scoped to it"));
            }
            let required = access.required_role();
            if claims.role < required {
                return Err(deny(
                    claims,
                    ns,
                    access,
                    format!("requires role {required} or higher"),
                ));
            }
            Ok(())
        }
        Scope::Cluster => {
            if access == Access::Read {
                return Ok(());
            }
            if claims.role < Role::Admin {
                return Err(deny(claims, CLUSTER, access, "requires role admin"));
            }
            if !claims.covers_all() {
                return Err(deny(
                    claims,
                    CLUSTER,
                    access,
                    "requires a token scoped to all atespaces (\"*\")",
                ));
            }
            Ok(())
        }
    }
}

/// Decides whether the holder of `issuer` may mint a token with `requested` claims: only
/// admins may, never above their own role, and only for atespaces they cover (`*` only if
/// they cover all). A token can thus never widen the reach of the token that minted it.
pub fn may_grant(issuer: &Claims, requested: &Claims) -> Result<(), Denied> {
    let scope_of = |ns: &str| {
        if ns == crate::ALL_ATESPACES {
            CLUSTER.to_owned()
        } else {
            ns.to_owned()
        }
    };
    let first = requested
        .atespaces
        .first()
        .map_or_else(|| CLUSTER.to_owned(), |ns| scope_of(ns));
    if issuer.role < Role::Admin {
        return Err(deny(
            issuer,
            &first,
            Access::Admin,
            "only admin tokens may issue tokens",
        ));
    }
    // Unreachable while Admin is the top role; kept so adding a role cannot widen grants.
    if requested.role > issuer.role {
        return Err(deny(
            issuer,
            &first,
            Access::Admin,
            format!(
                "cannot grant role {} above its own role {}",
                requested.role, issuer.role
            ),
        ));
    }
    for ns in &requested.atespaces {
        if ns == crate::ALL_ATESPACES {
            if !issuer.covers_all() {
                return Err(deny(
                    issuer,
                    CLUSTER,
                    Access::Admin,
                    "cannot grant all atespaces (\"*\") without being scoped to all atespaces",
                ));
            }
        } else if !issuer.covers(ns) {
            return Err(deny(issuer, ns, Access::Admin, "token is not scoped to it"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn claims(role: Role, atespaces: &[&str]) -> Claims {
        let list: Vec<String> = atespaces.iter().map(|s| s.to_string()).collect();
        Claims::new(
            "alice",
            &list,
            role,
            Duration::from_secs(60),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
        .unwrap()
    }

    const ROLES: [Role; 3] = [Role::Viewer, Role::Editor, Role::Admin];
    const ACCESSES: [Access; 3] = [Access::Read, Access::Write, Access::Admin];

    #[test]
    fn atespace_matrix() {
        for role in ROLES {
            for scoped in [&["team-a"][..], &["*"][..], &["team-b", "team-a"][..]] {
                let c = claims(role, scoped);
                for access in ACCESSES {
                    let allowed = role >= access.required_role();
                    let r = authorize(&c, Scope::Atespace("team-a"), access);
                    assert_eq!(r.is_ok(), allowed, "{role} {scoped:?} {access}");
                    if let Err(d) = r {
                        assert_eq!(d.scope, "team-a");
                        assert!(d.reason.starts_with("requires role"), "{d}");
                    }
                    // Never allowed in an atespace the token does not cover.
                    if !c.covers_all() {
                        let d = authorize(&c, Scope::Atespace("team-c"), access).unwrap_err();
                        assert_eq!(d.reason, "token is not scoped to it");
                        assert_eq!(
                            (d.access, d.role, d.scope.as_str()),
                            (access, role, "team-c")
                        );
                    }
                }
            }
        }
        // Viewer < Editor < Admin concretely.
        let editor = claims(Role::Editor, &["team-a"]);
        assert!(authorize(&editor, Scope::Atespace("team-a"), Access::Write).is_ok());
        assert!(authorize(&editor, Scope::Atespace("team-a"), Access::Admin).is_err());
    }

    #[test]
    fn cluster_matrix() {
        for role in ROLES {
            for scoped in [&["team-a"][..], &["*"][..]] {
                let c = claims(role, scoped);
                assert!(authorize(&c, Scope::Cluster, Access::Read).is_ok());
                for access in [Access::Write, Access::Admin] {
                    let allowed = role == Role::Admin && c.covers_all();
                    let r = authorize(&c, Scope::Cluster, access);
                    assert_eq!(r.is_ok(), allowed, "{role} {scoped:?} {access}");
                    if let Err(d) = r {
                        assert_eq!(d.scope, "cluster");
                    }
                }
            }
        }
        // An admin of one atespace is still not a cluster admin.
        let d = authorize(
            &claims(Role::Admin, &["team-a"]),
            Scope::Cluster,
            Access::Write,
        )
        .unwrap_err();
        assert!(d.reason.contains("all atespaces"), "{d}");
    }

    #[test]
    fn denied_display() {
        let d = authorize(
            &claims(Role::Editor, &["team-a"]),
            Scope::Atespace("team-b"),
            Access::Write,
        )
        .unwrap_err();
        assert_eq!(
            d.to_string(),
            "subject alice (editor) may not write in atespace team-b: token is not scoped to it"
        );
        let d =
            authorize(&claims(Role::Viewer, &["*"]), Scope::Cluster, Access::Admin).unwrap_err();
        assert_eq!(
            d.to_string(),
            "subject alice (viewer) may not administer in the cluster: requires role admin"
        );
    }

    #[test]
    fn grants() {
        let root = claims(Role::Admin, &["*"]);
        let team_admin = claims(Role::Admin, &["team-a", "team-b"]);
        let editor_all = claims(Role::Editor, &["*"]);

        for role in ROLES {
            assert!(may_grant(&root, &claims(role, &["*"])).is_ok());
            assert!(may_grant(&root, &claims(role, &["x", "y"])).is_ok());
            assert!(may_grant(&team_admin, &claims(role, &["team-a"])).is_ok());
            assert!(may_grant(&team_admin, &claims(role, &["team-b", "team-a"])).is_ok());
            // Non-admins may not mint anything, not even lesser tokens.
            let d = may_grant(&editor_all, &claims(role, &["team-a"])).unwrap_err();
            assert!(d.reason.contains("only admin"), "{d}");
        }
        let d = may_grant(&team_admin, &claims(Role::Viewer, &["team-a", "team-c"])).unwrap_err();
        assert_eq!((d.scope.as_str(), d.access), ("team-c", Access::Admin));
        let d = may_grant(&team_admin, &claims(Role::Viewer, &["*"])).unwrap_err();
        assert_eq!(d.scope, "cluster");
        assert!(d.reason.contains("\"*\""), "{d}");
    }
}
