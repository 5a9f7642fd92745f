//! The cluster's certificate authority: a directory with the CA's key (`ca.key`, 0600), its
//! certificate (`ca.crt`) and the trust bundle (`trust.crt`). Rotating replaces the key and
//! certificate and keeps the previous certificate in the bundle, so every component trusts
//! certificates of both CAs while they are re-issued one by one.
//!
//! The CA's distinguished name is derived from its public key. Issuing needs only that name
//! and the key, so the CA is reloaded from `ca.key` alone, without parsing `ca.crt`; what is
//! issued is then checked against the trust bundle before it is written.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::material::{parse_certs, write_private, write_public};
use crate::{CA_CERT_FILE, CA_KEY_FILE, PeerIdentity, TRUST_FILE, TlsError};

/// How long a CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far back a certificate's validity starts, for clocks a little behind.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A CA loaded for issuing certificates.
pub struct CertificateAuthority {
    key: KeyPair,
    params: CertificateParams,
    cert_pem: String,
    trust_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("CertificateAuthority")
            .field("name", &ca_name(&self.key))
            .finish_non_exhaustive()
    }
}

/// What `init_ca` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaInit {
    /// A new CA where there was none.
    Created,
    /// A new CA replaced the previous one, which stays in the trust bundle.
    Rotated,
}

/// A certificate and key issued for one component, with the trust bundle it goes with.
pub struct IssuedCert {
    /// The component's certificate (PEM).
    pub cert_pem: String,
    /// The component's private key (PEM).
    pub key_pem: String,
    /// The trust bundle at issuing time (PEM): the CA and, after a rotation, the previous.
    pub trust_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Writes `tls.crt`, `tls.key` (0600) and `ca.crt` into `out`, creating it. Each file is
    /// replaced whole (written aside, then renamed), the trust bundle first and the
    /// certificate last, so a process re-reading the directory meanwhile sees either the old
    /// pair or the new one (a mismatched pair is refused and read again a second later).
    pub fn write(&self, out: &Path) -> Result<(), TlsError> {
        std::fs::create_dir_all(out).map_err(|e| TlsError::io(out, e))?;
        write_public(&out.join(crate::TRUST_COPY_FILE), &self.trust_pem)?;
        write_private(&out.join(crate::KEY_FILE), &self.key_pem)?;
        write_public(&out.join(crate::CERT_FILE), &self.cert_pem)
    }
}

impl CertificateAuthority {
    /// A new CA, trusted alone.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(&key);
        let now = SystemTime::now();
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + CA_VALIDITY).into();
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Self {
            key,
            params,
            trust_pem: cert_pem.clone(),
            cert_pem,
        })
    }

    /// The CA in `dir`, with its trust bundle (`trust.crt`, or `ca.crt` alone without one).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let key_path = dir.join(CA_KEY_FILE);
        let key_pem = match std::fs::read_to_string(&key_path) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TlsError::NoCa { dir: dir.into() });
            }
            Err(e) => return Err(TlsError::io(&key_path, e)),
        };
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| TlsError::invalid(&key_path, format!("not a private key: {e}")))?;
        let cert_path = dir.join(CA_CERT_FILE);
        let cert_pem = read(&cert_path)?;
        let trust_path = dir.join(TRUST_FILE);
        let trust_pem = match std::fs::read_to_string(&trust_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => cert_pem.clone(),
            Err(e) => return Err(TlsError::io(&trust_path, e)),
        };
        let params = ca_params(&key);
        Ok(Self {
            key,
            params,
            cert_pem,
            trust_pem,
        })
    }

    /// The CA's certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The trust bundle (PEM).
    pub fn trust_pem(&self) -> &str {
        &self.trust_pem
    }

    /// A certificate for `who`, valid from now (less a few minutes of clock skew) for `ttl`.
    pub fn issue(&self, who: &PeerIdentity, ttl: Duration) -> Result<IssuedCert, TlsError> {
        if ttl.is_zero() {
            return Err(TlsError::Validity("the lifetime must not be zero".into()));
        }
        let now = SystemTime::now();
        self.issue_between(who, now - CLOCK_SKEW, now + ttl)
    }

    /// A certificate for `who` valid between two instants (tests issue expired ones).
    pub fn issue_between(
        &self,
        who: &PeerIdentity,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, TlsError> {
        if not_after <= not_before {
            return Err(TlsError::Validity(
                "the certificate would end before it starts".into(),
            ));
        }
        let name = who.dns_name();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        params.subject_alt_names = vec![SanType::DnsName(name.as_str().try_into()?)];
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Every component is a client of another; control planes and nodes serve too.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial()?);
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        self.check_trusted(cert.der())?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            trust_pem: self.trust_pem.clone(),
        })
    }

    /// Checks that `cert` chains to the trust bundle (which catches a `ca.crt` that is not
    /// the certificate of `ca.key`), so a broken CA directory fails here rather than at
    /// every handshake later.
    fn check_trusted(&self, cert: &CertificateDer<'_>) -> Result<(), TlsError> {
        let path = PathBuf::from(TRUST_FILE);
        let roots = parse_certs(&path, self.trust_pem.as_bytes())?;
        let anchors = roots
            .iter()
            .map(webpki::anchor_from_trusted_cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::invalid(&path, format!("not a ca certificate: {e:?}")))?;
        let leaf = webpki::EndEntityCert::try_from(cert)
            .map_err(|e| TlsError::Validity(format!("issued an unreadable certificate: {e:?}")))?;
        // At its start: it may be issued for the past (tests), never unverifiable.
        let now = UnixTime::now();
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(drop)
        .or_else(|e| match e {
            webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => Ok(()),
            e => Err(TlsError::invalid(
                &path,
                format!(
                    "the ca key does not match the trust bundle ({e:?}); is ca.crt from another ca?"
                ),
            )),
        })
    }

    /// Writes the CA into `dir`: the trust bundle first, then the key, then the certificate.
    fn write(&self, dir: &Path) -> Result<(), TlsError> {
        std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;
        write_public(&dir.join(TRUST_FILE), &self.trust_pem)?;
        write_private(&dir.join(CA_KEY_FILE), &self.key.serialize_pem())?;
        write_public(&dir.join(CA_CERT_FILE), &self.cert_pem)
    }
}

/// Creates a CA in `dir`, or with `rotate` replaces the one there: the new CA's trust bundle
/// holds the new certificate and the one it replaces (not older ones).
pub fn init_ca(dir: &Path, rotate: bool) -> Result<CaInit, TlsError> {
    let existing = [CA_KEY_FILE, CA_CERT_FILE]
        .iter()
        .any(|f| dir.join(f).exists());
    match (existing, rotate) {
        (false, false) => {
            CertificateAuthority::generate()?.write(dir)?;
            Ok(CaInit::Created)
        }
        (true, false) => Err(TlsError::CaExists { dir: dir.into() }),
        (false, true) => Err(TlsError::NoCa { dir: dir.into() }),
        (true, true) => {
            let previous = read(&dir.join(CA_CERT_FILE))?;
            parse_certs(&dir.join(CA_CERT_FILE), previous.as_bytes())?;
            let mut ca = CertificateAuthority::generate()?;
            ca.trust_pem = format!("{}{}", ca.cert_pem, previous);
            ca.write(dir)?;
            Ok(CaInit::Rotated)
        }
    }
}

/// Issues a certificate for `who` from the CA in `ca_dir`, valid for `ttl`, and writes it
/// into `out` (see [`IssuedCert::write`]).
pub fn issue_cert(
    ca_dir: &Path,
    who: &PeerIdentity,
    ttl: Duration,
    out: &Path,
) -> Result<IssuedCert, TlsError> {
    let issued = CertificateAuthority::load(ca_dir)?.issue(who, ttl)?;
    issued.write(out)?;
    Ok(issued)
}

/// The CA's certificate parameters, as far as issuing needs them: its name (derived from its
/// public key, so it is found again from the key alone and differs between rotations), and
/// what it may do.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ate");
    params
        .distinguished_name
        .push(DnType::CommonName, ca_name(key));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// `ate component ca XXXXXXXXXXXXXXXX`, from the key's public key.
fn ca_name(key: &KeyPair) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key_raw());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("ate component ca {hex}")
}

/// A random positive 128-bit serial number.
fn serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| TlsError::Validity("no randomness for a serial number".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|e| TlsError::io(path, e))
}
