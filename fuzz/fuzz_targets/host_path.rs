//! The router's naming of actors: a `Host` header (or DNS name) and a request path
//! (`/a/<atespace>/<actor>/...`) turned into an actor and the path to forward. Whatever is
//! accepted names a valid actor that the input really names, and an actor's own host name
//! parses back to it.
//!
//! Input: the host or path; with a newline, the text before it is the router's domain.
#![no_main]

use ate_model::names::validate_subdomain;
use ate_net::{ActorNames, DEFAULT_DOMAIN, PATH_PREFIX, parse_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (domain, input) = text.split_once('\n').unwrap_or((DEFAULT_DOMAIN, text));
    let names = ActorNames::new(domain);
    let sane_domain = validate_subdomain("domain", names.zone()).is_ok();

    if let Ok(actor) = names.parse_host(input) {
        actor
            .validate("actor")
            .unwrap_or_else(|e| panic!("{input:?} gave an invalid actor: {e}"));
        let host = names.host_of(&actor);
        assert!(
            input.to_ascii_lowercase().contains(&host),
            "{input:?} is not a form of {host:?}"
        );
        assert_eq!(names.parse_host(&host), Ok(actor.clone()), "{host:?}");
    }
    // Every valid actor's host name parses back, under any sane domain.
    if sane_domain && let Some((atespace, id)) = input.split_once('/') {
        let actor = ate_model::ActorRef::new(atespace, id);
        if actor.validate("actor").is_ok() {
            let host = names.host_of(&actor);
            assert_eq!(names.parse_host(&host), Ok(actor), "{host:?}");
            let decorated = format!("{}.:8080", host.to_uppercase());
            assert!(names.parse_host(&decorated).is_ok(), "{decorated:?}");
        }
    }

    // The path form, as the router sees it: the path and query of a parsed URI.
    let mut paths = vec![input.to_string()];
    if let Ok(uri) = input.parse::<http::Uri>()
        && let Some(pq) = uri.path_and_query()
    {
        paths.push(pq.as_str().to_string());
    }
    for path in paths {
        match parse_path(&path) {
            None => assert!(
                !path.starts_with(PATH_PREFIX),
                "{path:?} was not recognised"
            ),
            Some(Err(_)) => assert!(path.starts_with(PATH_PREFIX)),
            Some(Ok((actor, forward))) => {
                actor
                    .validate("actor")
                    .unwrap_or_else(|e| panic!("{path:?} gave an invalid actor: {e}"));
                let named = format!("{PATH_PREFIX}{}/{}", actor.atespace, actor.id);
                assert!(path.starts_with(&named), "{path:?} does not name {named:?}");
                assert!(forward.starts_with('/'), "{path:?} forwards {forward:?}");
                let rest = &path[named.len()..];
                assert!(
                    rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
                    "{path:?}: the actor id runs on into {rest:?}"
                );
                // The router forwards it as a URI: whatever it does with it must not panic.
                let _ = forward.parse::<http::Uri>();
            }
        }
    }
});
