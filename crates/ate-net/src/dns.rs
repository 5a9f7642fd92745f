//! The DNS responder: every `<actor>.<atespace>.actors.<domain>` resolves to the router.
//!
//! Actors are addressed by name, and the router resumes them on request, so the answer
//! never depends on whether an actor exists or runs: any well-formed actor name gets the
//! router's addresses, with no store lookup. Malformed names under the zone are NXDOMAIN,
//! and names outside it are REFUSED, since this server is authoritative for the zone only.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use ate_model::names::validate_label;

use crate::names::{ActorNames, NameError};

/// The TTL of answers unless configured otherwise: short, so that moving the router is quick.
const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// How long an idle TCP client may hold a connection open.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Attempts to find a port free for both UDP and TCP when the port is chosen by the system.
const BIND_ATTEMPTS: usize = 8;
/// Largest UDP response (1232 bytes, the DNS Flag Day 2020 size, which avoids IP
/// fragmentation): the EDNS payload size the responder advertises and answers within,
/// whatever a client offers. A bigger answer is truncated (TC set), so the client asks
/// again over TCP.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Largest query message answered (1 KiB): one question, of at most 255 bytes, and its
/// EDNS options (cookies, padding) fit well within it. A bigger message gets FORMERR.
pub const MAX_QUERY_BYTES: usize = 1024;

/// Where to listen and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The address served over both UDP and TCP; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The domain actors live under; the served zone is `actors.<domain>`.
    pub domain: String,
    /// The router's addresses: A records from the IPv4 ones, AAAA from the IPv6 ones.
    pub answers: Vec<IpAddr>,
    /// How long resolvers may cache an answer (whole seconds are used).
    pub ttl: Duration,
}

impl DnsConfig {
    /// A configuration with the default TTL of 60 s.
    pub fn new(listen: SocketAddr, domain: &str, answers: Vec<IpAddr>) -> Self {
        Self {
            listen,
            domain: domain.to_string(),
            answers,
            ttl: DEFAULT_TTL,
        }
    }
}

/// Why the responder could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The UDP or TCP socket could not be bound.
    #[error("cannot listen on {addr} for dns: {reason}")]
    Bind { addr: String, reason: String },
    /// The configured domain is not a valid DNS name.
    #[error("invalid dns domain {domain:?}: {reason}")]
    InvalidDomain { domain: String, reason: String },
}

/// A running responder. Dropping it stops serving; [`DnsServer::shutdown`] also waits.
pub struct DnsServer {
    local_addr: SocketAddr,
    zone: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer")
            .field("local_addr", &self.local_addr)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on the same port, spawns the serving task and returns at once,
    /// so that a caller knows the port is taken before it announces it.
    pub async fn start(config: DnsConfig) -> Result<DnsServer, DnsError> {
        let handler = Responder::new(&config)?;
        let zone = handler.names.zone().to_string();
        let (udp, tcp) = bind(config.listen).await?;
        let local_addr = udp
            .local_addr()
            .map_err(|e| bind_error(config.listen, &e))?;

        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);

        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            // A dropped sender stops serving as well as an explicit stop.
            let ended = tokio::select! {
                ended = server.block_until_done() => Some(ended),
                _ = stopped => None,
            };
            let result = match ended {
                Some(result) => result,
                None => server.shutdown_gracefully().await,
            };
            if let Err(error) = result {
                tracing::warn!(%error, "dns responder stopped with an error");
            }
        });
        tracing::info!(addr = %local_addr, zone = %zone, "dns responder listening");
        Ok(DnsServer {
            local_addr,
            zone,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address, with the real port when port 0 was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting queries and waits until the sockets are closed.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "dns responder task failed");
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds UDP first, then TCP on the port UDP got. With port 0 the system may hand out a
/// UDP port whose TCP twin is taken, so then a few fresh UDP ports are tried.
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let attempts = if listen.port() == 0 { BIND_ATTEMPTS } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|e| bind_error(listen, &e))?;
        let addr = udp.local_addr().map_err(|e| bind_error(listen, &e))?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::debug!(addr = %addr, "tcp port taken, trying another");
                last = Some(bind_error(addr, &e));
            }
            Err(e) => return Err(bind_error(addr, &e)),
        }
    }
    Err(last.unwrap_or_else(|| DnsError::Bind {
        addr: listen.to_string(),
        reason: "no free port".into(),
    }))
}

fn bind_error(addr: SocketAddr, error: &std::io::Error) -> DnsError {
    DnsError::Bind {
        addr: addr.to_string(),
        reason: error.to_string(),
    }
}

/// Answers queries from the configuration alone.
#[derive(Debug)]
struct Responder {
    names: ActorNames,
    zone: LowerName,
    /// The number of labels of the zone apex.
    zone_labels: usize,
    soa: Record,
    answers: Vec<IpAddr>,
    ttl: u32,
}

impl Responder {
    fn new(config: &DnsConfig) -> Result<Self, DnsError> {
        let names = ActorNames::new(&config.domain);
        let invalid = |reason: String| DnsError::InvalidDomain {
            domain: config.domain.clone(),
            reason,
        };
        if config.domain.trim_end_matches('.').is_empty() {
            return Err(invalid("empty domain".into()));
        }
        let mut apex = Name::from_ascii(names.zone()).map_err(|e| invalid(e.to_string()))?;
        apex.set_fqdn(true);
        let hostmaster = apex
            .prepend_label("hostmaster")
            .map_err(|e| invalid(e.to_string()))?;
        let ttl = u32::try_from(config.ttl.as_secs()).unwrap_or(u32::MAX);
        // A synthetic SOA lets resolvers cache negative answers (RFC 2308) for one TTL.
        let soa = SOA::new(apex.clone(), hostmaster, 1, 3600, 600, 86400, ttl);
        Ok(Self {
            zone: LowerName::new(&apex),
            zone_labels: apex.iter().count(),
            soa: Record::from_rdata(apex, ttl, RData::SOA(soa)),
            names,
            answers: config.answers.clone(),
            ttl,
        })
    }

    /// The response code and answers for one question; `None` means REFUSED.
    fn answer(&self, name: &Name, qtype: RecordType) -> Option<(ResponseCode, Vec<Record>)> {
        if !self.zone.zone_of(&LowerName::new(name)) {
            return None;
        }
        let nodata = Some((ResponseCode::NoError, Vec::new()));
        let nxdomain = Some((ResponseCode::NXDomain, Vec::new()));
        match name.iter().count().saturating_sub(self.zone_labels) {
            0 => {
                let soa = (qtype == RecordType::SOA).then(|| self.soa.clone());
                return Some((ResponseCode::NoError, soa.into_iter().collect()));
            }
            // `<atespace>.actors.<domain>` has actors below it, so it exists without data:
            // NXDOMAIN would tell resolvers minimising query names that nothing is below.
            1 => {
                let atespace = name.iter().next();
                let atespace = atespace.map(|l| String::from_utf8_lossy(l).to_ascii_lowercase());
                let valid = atespace.is_some_and(|a| validate_label("atespace", &a).is_ok());
                tracing::debug!(name = %name, valid, "atespace name");
                return if valid { nodata } else { nxdomain };
            }
            _ => {}
        }
        match self.names.parse_host(&name.to_ascii()) {
            Ok(actor) => {
                tracing::debug!(name = %name, actor = %actor.id, atespace = %actor.atespace, "actor name");
            }
            Err(NameError::Malformed { reason, .. }) => {
                tracing::debug!(name = %name, reason = %reason, "malformed actor name");
                return nxdomain;
            }
            Err(NameError::OutsideZone(_)) => return None,
        }
        let rdata = |ip: &IpAddr| match (qtype, ip) {
            (RecordType::A, IpAddr::V4(v4)) => Some(RData::A(A(*v4))),
            (RecordType::AAAA, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        };
        let records = self
            .answers
            .iter()
            .filter_map(rdata)
            .map(|data| Record::from_rdata(name.clone(), self.ttl, data))
            .collect();
        Some((ResponseCode::NoError, records))
    }
}

#[async_trait::async_trait]
impl RequestHandler for Responder {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let mut edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns.set_version(0);
            edns
        });
        let queries = request.queries.queries();
        let mut answers = Vec::new();
        let mut authorities = Vec::new();
        let code = if request.as_slice().len() > MAX_QUERY_BYTES {
            ResponseCode::FormErr
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            ResponseCode::BADVERS
        } else if request.metadata.op_code != OpCode::Query {
            ResponseCode::NotImp
        } else if queries.len() != 1 {
            ResponseCode::FormErr
        } else {
            let query = queries[0].original();
            let answer = (query.query_class() == DNSClass::IN)
                .then(|| self.answer(query.name(), query.query_type()))
                .flatten();
            tracing::debug!(
                name = %query.name(),
                qtype = %query.query_type(),
                answer = ?answer.as_ref().map(|(code, records)| (code, records.len())),
                "dns query"
            );
            match answer {
                Some((code, records)) => {
                    metadata.authoritative = true;
                    if records.is_empty() {
                        authorities.push(self.soa.clone());
                    }
                    answers = records;
                    code
                }
                None => ResponseCode::Refused,
            }
        };
        metadata.response_code = code;
        if let Some(edns) = edns.as_mut() {
            edns.set_rcode_high(code.high());
        }
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answers.iter(),
            authorities.iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, src = %request.src(), "cannot send dns response");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
