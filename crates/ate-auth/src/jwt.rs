//! The compact JWT encoding (`header.payload.signature`, base64url without padding) and the
//! verifier that accepts only EdDSA tokens from known keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::error::clip;
use crate::{AuthError, Claims, TokenError, VerificationKey};

/// Largest token accepted. Real tokens are a few hundred bytes; the cap bounds the work an
/// unauthenticated caller can make the verifier do.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The only algorithm minted or accepted.
const ALG: &str = "EdDSA";

/// Tolerated clock difference between the issuer and this node for `iat`.
const SKEW_SECS: u64 = 60;

#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

#[derive(Deserialize)]
struct HeaderIn {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Critical extensions we would have to understand; we understand none.
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

pub(crate) fn encode(
    kid: &str,
    claims: &Claims,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<String, AuthError> {
    let header = serde_json::to_vec(&HeaderOut {
        alg: ALG,
        typ: "JWT",
        kid,
    })
    .map_err(|e| AuthError::crypto(format!("cannot encode token header: {e}")))?;
    let payload = serde_json::to_vec(claims)
        .map_err(|e| AuthError::crypto(format!("cannot encode token claims: {e}")))?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// Checks tokens against a set of public keys, looked up by `kid`. Several keys at once allow
/// rotation: add the new key everywhere, switch signing to it, drop the old one later.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: BTreeMap<String, VerificationKey>,
    /// `jti`s of tokens refused although well signed and in date.
    revoked: BTreeSet<String>,
}

impl Verifier {
    /// A verifier trusting `keys`; on duplicate kids the last one wins.
    pub fn new(keys: impl IntoIterator<Item = VerificationKey>) -> Verifier {
        Verifier {
            keys: keys.into_iter().map(|k| (k.kid.clone(), k)).collect(),
            revoked: BTreeSet::new(),
        }
    }

    /// This verifier, also refusing the tokens whose `jti` is in `jtis`.
    pub fn with_revoked(mut self, jtis: impl IntoIterator<Item = String>) -> Verifier {
        self.revoked.extend(jtis);
        self
    }

    /// The trusted key ids, sorted.
    pub fn kids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// Verifies `token` (without any `Bearer ` prefix) and returns its claims. The signature is
    /// checked before the claims are even parsed, and only EdDSA is accepted, so `alg: none`
    /// and algorithm-confusion tokens fail. Expiry is exact; `iat` may be up to 60 s ahead of
    /// `now` to tolerate clock skew between nodes.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        let claims = self.signed_claims(token)?;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if claims.exp <= now {
            return Err(TokenError::Expired {
                expired_at_secs: claims.exp,
            });
        }
        if claims.iat > now.saturating_add(SKEW_SECS) {
            return Err(TokenError::NotYetValid);
        }
        if self.revoked.contains(&claims.jti) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// The claims of a token signed by a known key, whatever its lifetime or revocation: what
    /// an admin names when revoking it.
    pub fn signed_claims(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::malformed(
                "expected three dot-separated parts (header.payload.signature)",
            ));
        };
        let header = decode_part("header", h64)?;
        let payload = decode_part("payload", p64)?;
        let signature = decode_part("signature", s64)?;

        let header: HeaderIn = serde_json::from_slice(&header)
            .map_err(|_| TokenError::malformed("header is not a valid JSON object with \"alg\""))?;
        if header.alg != ALG {
            return Err(TokenError::UnsupportedAlgorithm {
                alg: clip(&header.alg),
            });
        }
        if header.crit.is_some() {
            return Err(TokenError::malformed(
                "header has critical extensions (\"crit\"), none are supported",
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::malformed("header has no \"kid\""))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| TokenError::UnknownKey { kid: clip(&kid) })?;

        let signed = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        UnparsedPublicKey::new(&ED25519, &key.public_key)
            .verify(signed, &signature)
            .map_err(|_| TokenError::BadSignature)?;

        let claims: Claims = serde_json::from_slice(&payload)
            .map_err(|e| TokenError::malformed(format!("claims are invalid: {e}")))?;
        claims
            .check()
            .map_err(|(field, reason)| TokenError::malformed(format!("claim {field} {reason}")))?;
        Ok(claims)
    }
}

fn decode_part(name: &str, part: &str) -> Result<Vec<u8>, TokenError> {
    if part.is_empty() {
        return Err(TokenError::malformed(format!("{name} is empty")));
    }
    URL_SAFE_NO_PAD
        .decode(part.as_bytes())
        .map_err(|_| TokenError::malformed(format!("{name} is not unpadded base64url")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{MAX_TTL, Role, SigningKey};
    use ring::signature::Ed25519KeyPair;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const T0: u64 = 1_700_000_000;

    fn setup() -> (SigningKey, Verifier, Claims) {
        let key = SigningKey::generate(T0 * 1000).unwrap();
        let verifier = Verifier::new([key.verification_key()]);
        let claims = Claims::new(
            "alice",
            &["team-a".into()],
            Role::Viewer,
            Duration::from_secs(3600),
            at(T0),
        )
        .unwrap();
        (key, verifier, claims)
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn is_malformed(r: Result<Claims, TokenError>) -> bool {
        matches!(r, Err(TokenError::Malformed { .. }))
    }

    #[test]
    fn round_trip() {
        let (key, verifier, claims) = setup();
        let token = key.sign(&claims).unwrap();
        assert_eq!(token.split('.').count(), 3);
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()})
        );
        assert_eq!(verifier.verify(&token, at(T0)).unwrap(), claims);
        assert_eq!(verifier.verify(&token, at(T0 + 3599)).unwrap(), claims);
        // iat within the skew is accepted, beyond it refused.
        assert!(verifier.verify(&token, at(T0 - 60)).is_ok());
        assert_eq!(
            verifier.verify(&token, at(T0 - 61)),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(verifier.kids(), vec![key.kid().to_string()]);
    }

    #[test]
    fn expired_rejected() {
        let (key, verifier, claims) = setup();
        let token = key.sign(&claims).unwrap();
        let err = verifier.verify(&token, at(T0 + 3600)).unwrap_err();
        assert_eq!(
            err,
            TokenError::Expired {
                expired_at_secs: T0 + 3600
            }
        );
        assert!(err.to_string().contains("expired"));
    }

    #[test]
    fn revoked_rejected_and_others_kept() {
        let (key, verifier, claims) = setup();
        let token = key.sign(&claims).unwrap();
        let mut other = claims.clone();
        other.jti = "another".into();
        let other = key.sign(&other).unwrap();
        let verifier = verifier.with_revoked([claims.jti.clone()]);
        assert_eq!(verifier.verify(&token, at(T0)), Err(TokenError::Revoked));
        assert!(verifier.verify(&other, at(T0)).is_ok());
        // Its claims can still be read, expired or not, to name it.
        assert_eq!(verifier.signed_claims(&token).unwrap(), claims);
        // A forged token is no more readable than verifiable.
        let forged = SigningKey::generate(0).unwrap().sign(&claims).unwrap();
        assert!(verifier.signed_claims(&forged).is_err());
    }

    #[test]
    fn other_key_is_unknown() {
        let (_, verifier, claims) = setup();
        let other = SigningKey::generate(0).unwrap();
        let token = other.sign(&claims).unwrap();
        assert_eq!(
            verifier.verify(&token, at(T0)),
            Err(TokenError::UnknownKey {
                kid: other.kid().to_string()
            })
        );
        assert!(Verifier::default().verify(&token, at(T0)).is_err());
    }

    #[test]
    fn tampered_payload_or_signature_rejected() {
        let (key, verifier, claims) = setup();
        let token = key.sign(&claims).unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["role"] = "admin".into();
        let forged = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
        assert_eq!(
            verifier.verify(&forged, at(T0)),
            Err(TokenError::BadSignature)
        );

        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        let forged = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(
            verifier.verify(&forged, at(T0)),
            Err(TokenError::BadSignature)
        );
        let truncated = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(&sig[..40])
        );
        assert_eq!(
            verifier.verify(&truncated, at(T0)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn other_algorithms_rejected() {
        let (key, verifier, claims) = setup();
        let token = key.sign(&claims).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        for alg in ["none", "HS256", "RS256", "eddsa", ""] {
            let header = serde_json::json!({"alg": alg, "typ": "JWT", "kid": key.kid()});
            for sig in [parts[2], "AA"] {
                let forged = format!("{}.{}.{}", b64(&header), parts[1], sig);
                assert_eq!(
                    verifier.verify(&forged, at(T0)),
                    Err(TokenError::UnsupportedAlgorithm { alg: alg.into() }),
                    "{alg}"
                );
            }
        }
        // alg none with an empty signature part is refused as well.
        let none = serde_json::json!({"alg": "none"});
        let forged = format!("{}.{}.", b64(&none), parts[1]);
        assert!(verifier.verify(&forged, at(T0)).is_err());
        // crit and missing kid
        let crit = serde_json::json!({"alg": "EdDSA", "kid": key.kid(), "crit": ["x"]});
        assert!(is_malformed(verifier.verify(
            &format!("{}.{}.{}", b64(&crit), parts[1], parts[2]),
            at(T0)
        )));
        let nokid = serde_json::json!({"alg": "EdDSA"});
        assert!(is_malformed(verifier.verify(
            &format!("{}.{}.{}", b64(&nokid), parts[1], parts[2]),
            at(T0)
        )));
    }

    #[test]
    fn oversized_rejected() {
        let (_, verifier, _) = setup();
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(verifier.verify(&big, at(T0)), Err(TokenError::TooLarge));
        let big_kid = "k".repeat(4000);
        let header = serde_json::json!({"alg": "EdDSA", "kid": big_kid});
        let token = format!("{}.e30.AA", b64(&header));
        let err = verifier.verify(&token, at(T0)).unwrap_err();
        assert!(matches!(err, TokenError::UnknownKey { .. }));
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn garbage_is_malformed() {
        let (key, verifier, claims) = setup();
        let good = key.sign(&claims).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            "..".into(),
            "!!!.@@@.###".into(),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}", parts[0], parts[1]),
            format!("{good}."),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("not json"),
                parts[1],
                parts[2]
            ),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("[1,2]"),
                parts[1],
                parts[2]
            ),
            "Bearer x.y.z".into(),
            "\u{0}\u{1}.é.ü".into(),
        ];
        for case in &cases {
            let r = verifier.verify(case, at(T0));
            assert!(is_malformed(r.clone()), "{case:?}: {r:?}");
            if let Err(e) = r {
                assert!(!e.to_string().contains(&good));
            }
        }
    }

    #[test]
    fn signed_but_invalid_claims_are_malformed() {
        let (key, verifier, claims) = setup();
        let sign_raw = |payload: &serde_json::Value| {
            let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()});
            let signing = format!("{}.{}", b64(&header), b64(payload));
            let pkcs8 = serde_json::to_value(&key).unwrap()["privateKey"]
                .as_str()
                .unwrap()
                .to_string();
            let pair = Ed25519KeyPair::from_pkcs8(
                &base64::engine::general_purpose::STANDARD
                    .decode(pkcs8)
                    .unwrap(),
            )
            .unwrap();
            let sig = pair.sign(signing.as_bytes());
            format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        };
        let base = serde_json::to_value(&claims).unwrap();
        assert!(verifier.verify(&sign_raw(&base), at(T0)).is_ok());
        let bad: [(&str, serde_json::Value); 6] = [
            ("role", "root".into()),
            ("atespaces", serde_json::json!([])),
            ("atespaces", serde_json::json!(["Bad Name"])),
            ("sub", "".into()),
            ("exp", (T0 + MAX_TTL.as_secs() + 1).into()),
            ("iat", "yesterday".into()),
        ];
        for (field, value) in bad {
            let mut p = base.clone();
            p[field] = value;
            let r = verifier.verify(&sign_raw(&p), at(T0));
            assert!(is_malformed(r.clone()), "{field}: {r:?}");
        }
        // sign() refuses claims that verify() would refuse.
        let mut c = claims.clone();
        c.atespaces.clear();
        assert!(key.sign(&c).is_err());
    }
}
