//! Actor names on the network: `<actor>.<atespace>.actors.<domain>` (HTTP `Host` and DNS)
//! and the path form `/a/<atespace>/<actor>/...` for use without DNS.

use ate_model::ActorRef;
use ate_model::names::validate_label;

/// The DNS domain actors live under unless configured otherwise.
pub const DEFAULT_DOMAIN: &str = "resources.substrate.ate.dev";

/// The label between an actor's atespace and the domain.
const ACTORS_LABEL: &str = "actors";

/// Why a name does not name an actor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is not under `actors.<domain>` at all: not ours to answer.
    #[error("{0:?} is not under the actors domain")]
    OutsideZone(String),
    /// Under the zone, but not `<actor>.<atespace>`, or a label is not a DNS-1123 label.
    #[error("malformed actor name {name:?}: {reason}")]
    Malformed { name: String, reason: String },
}

/// Parses and validates actor names under one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorNames {
    /// `actors.<domain>`, lower case, no trailing dot.
    zone: String,
}

impl ActorNames {
    /// Names under `domain` (a trailing dot and upper case are tolerated).
    pub fn new(domain: &str) -> Self {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        Self {
            zone: format!("{ACTORS_LABEL}.{domain}"),
        }
    }

    /// `actors.<domain>`, the zone the DNS responder answers for.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The DNS name of an actor.
    pub fn host_of(&self, actor: &ActorRef) -> String {
        format!("{}.{}.{}", actor.id, actor.atespace, self.zone)
    }

    /// The actor a DNS name or HTTP host names. A trailing dot, a `:port` and upper case
    /// are tolerated; anything else malformed is an error.
    pub fn parse_host(&self, host: &str) -> Result<ActorRef, NameError> {
        let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        let Some(prefix) = name
            .strip_suffix(self.zone.as_str())
            .and_then(|p| p.strip_suffix('.'))
        else {
            return Err(NameError::OutsideZone(host.to_string()));
        };
        let malformed = |reason: String| NameError::Malformed {
            name: host.to_string(),
            reason,
        };
        let Some((id, atespace)) = prefix.split_once('.') else {
            return Err(malformed(
                "expected <actor>.<atespace> before the zone".into(),
            ));
        };
        if atespace.contains('.') {
            return Err(malformed(
                "expected <actor>.<atespace> before the zone".into(),
            ));
        }
        label(id, atespace).map_err(malformed)
    }
}

impl Default for ActorNames {
    fn default() -> Self {
        Self::new(DEFAULT_DOMAIN)
    }
}

fn label(id: &str, atespace: &str) -> Result<ActorRef, String> {
    validate_label("atespace", atespace).map_err(|e| e.to_string())?;
    validate_label("actor", id).map_err(|e| e.to_string())?;
    Ok(ActorRef::new(atespace, id))
}

/// `host:port` → `host`; IPv6 literals keep their brackets' content whole.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(h, _)| h);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The path prefix of the path form.
pub const PATH_PREFIX: &str = "/a/";

/// An actor named by a path `/a/<atespace>/<actor>[/rest]`, and the path to forward
/// (`/rest`, or `/` when there is none; the query is kept).
pub fn parse_path(path_and_query: &str) -> Option<Result<(ActorRef, String), NameError>> {
    let rest = path_and_query.strip_prefix(PATH_PREFIX)?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let mut parts = path.splitn(3, '/');
    let atespace = parts.next().unwrap_or_default();
    let id = parts.next().unwrap_or_default();
    let forward = parts.next().map_or(String::new(), |r| r.to_string());
    let actor = match label(id, atespace) {
        Ok(a) => a,
        Err(reason) => {
            return Some(Err(NameError::Malformed {
                name: path.to_string(),
                reason,
            }));
        }
    };
    let mut target = format!("/{forward}");
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    Some(Ok((actor, target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_with_port_dot_and_case() {
        let n = ActorNames::default();
        let want = ActorRef::new("team-a", "counter-1");
        for host in [
            "counter-1.team-a.actors.resources.substrate.ate.dev",
            "counter-1.team-a.actors.resources.substrate.ate.dev.",
            "counter-1.team-a.actors.resources.substrate.ate.dev:8080",
            "Counter-1.TEAM-A.actors.Resources.Substrate.ate.dev.:80",
        ] {
            assert_eq!(n.parse_host(host), Ok(want.clone()), "{host}");
        }
        assert_eq!(
            n.host_of(&want),
            "counter-1.team-a.actors.resources.substrate.ate.dev"
        );
    }

    #[test]
    fn hosts_outside_the_zone_or_malformed_are_refused() {
        let n = ActorNames::new("example.test.");
        assert!(matches!(
            n.parse_host("localhost:8080"),
            Err(NameError::OutsideZone(_))
        ));
        assert!(matches!(
            n.parse_host("actors.example.test"),
            Err(NameError::OutsideZone(_))
        ));
        for bad in [
            "a.actors.example.test",
            "a.b.c.actors.example.test",
            "a_b.team.actors.example.test",
            "-a.team.actors.example.test",
            ".team.actors.example.test",
        ] {
            assert!(
                matches!(n.parse_host(bad), Err(NameError::Malformed { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            n.parse_host("x.y.actors.example.test"),
            Ok(ActorRef::new("y", "x"))
        );
    }

    #[test]
    fn paths_strip_the_prefix_and_keep_the_query() {
        let ok = |p: &str| parse_path(p).and_then(Result::ok);
        let a = ActorRef::new("team-a", "c1");
        assert_eq!(ok("/a/team-a/c1"), Some((a.clone(), "/".into())));
        assert_eq!(ok("/a/team-a/c1/"), Some((a.clone(), "/".into())));
        assert_eq!(
            ok("/a/team-a/c1/x/y?z=1"),
            Some((a.clone(), "/x/y?z=1".into()))
        );
        assert_eq!(ok("/a/team-a/c1?z=1"), Some((a, "/?z=1".into())));
        assert!(parse_path("/other").is_none());
        assert!(matches!(parse_path("/a/team-a"), Some(Err(_))));
        assert!(matches!(parse_path("/a/Team_A/c1"), Some(Err(_))));
    }
}
