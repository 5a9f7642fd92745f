//! Which outbound destinations a sandbox may reach. The rule set is pure data so every
//! sandbox class (wasm guests, process actors behind their egress proxy) enforces the
//! same template allowlist with the same matching rules.

/// The hosts a template allows: `host`, `host:port`, `*.domain` (subdomains only), or an
/// IPv4 address. A rule without a port allows every port. Empty denies everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    rules: Vec<(String, Option<u16>)>,
    any: bool,
}

impl EgressPolicy {
    /// Builds the policy from rules already validated with the template.
    pub fn new(rules: &[String]) -> Self {
        let rules = rules
            .iter()
            .map(|r| match r.rsplit_once(':') {
                Some((h, p)) => match p.parse::<u16>() {
                    Ok(port) => (h.to_ascii_lowercase(), Some(port)),
                    Err(_) => (r.to_ascii_lowercase(), None),
                },
                None => (r.to_ascii_lowercase(), None),
            })
            .collect();
        Self { rules, any: false }
    }

    /// Allows every destination. Meant for the node's own downloads (modules, images),
    /// never for a guest or actor: their policy always comes from the template.
    pub fn allow_all() -> Self {
        Self {
            rules: Vec::new(),
            any: true,
        }
    }

    /// Whether `host` (a name or an IPv4 address, compared case-insensitively) may be
    /// reached on `port`.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        if self.any {
            return true;
        }
        let host = host.to_ascii_lowercase();
        self.rules.iter().any(|(rule, rule_port)| {
            let host_ok = match rule.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
                None => *rule == host,
            };
            host_ok && rule_port.is_none_or(|p| p == port)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_matches_hosts_ports_and_subdomains() {
        let p = EgressPolicy::new(&[
            "api.example.com".into(),
            "127.0.0.1:8080".into(),
            "*.models.dev".into(),
        ]);
        assert!(p.allows("api.example.com", 443));
        assert!(p.allows("API.example.com", 80));
        assert!(p.allows("127.0.0.1", 8080));
        assert!(!p.allows("127.0.0.1", 8081));
        assert!(p.allows("eu.models.dev", 80));
        assert!(!p.allows("models.dev", 80));
        assert!(!p.allows("evilmodels.dev", 80));
        assert!(!p.allows("example.com", 443));
        assert!(!EgressPolicy::default().allows("api.example.com", 443));
    }

    #[test]
    fn allow_all_allows_everything() {
        assert!(EgressPolicy::allow_all().allows("anything.example", 1));
    }
}
