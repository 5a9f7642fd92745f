//! The host side of a guest: the `ate` imports of the HTTP ABI and the small WASI preview 1
//! subset ate provides (arguments, environment, clocks, clock sleeps through `poll_oneoff`,
//! random, stdout/stderr). Everything else a module imports traps when called.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use wasmtime::{AsContextMut, Caller, Extern, Linker, Memory, StoreLimits};

use crate::egress::{self, EgressPolicy};

/// The import module of the ate ABI.
pub const ABI_MODULE: &str = "ate";
const WASI: &str = "wasi_snapshot_preview1";

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_INVAL: i32 = 28;
const ERRNO_SPIPE: i32 = 70;
const ERRNO_NOSYS: i32 = 52;
const ERRNO_NOTSUP: i32 = 58;

/// WASI preview 1 `subscription` and `event` layouts (wasm32), as `poll_oneoff` sees them.
const SUBSCRIPTION_SIZE: u64 = 48;
const EVENT_SIZE: u64 = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const CLOCKID_REALTIME: u32 = 0;
const CLOCKID_MONOTONIC: u32 = 1;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;

/// The longest a single `poll_oneoff` sleeps. A guest sleeps on a blocking thread of the
/// node, so a clock subscription further away than this fires after this long instead: a
/// guest that really wants to wait longer loops, and a bogus timeout (say `u64::MAX`) does not
/// park a thread forever.
pub(crate) const MAX_SLEEP: Duration = Duration::from_secs(60 * 60);

/// Which output a guest wrote to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// Receives what a guest writes to stdout and stderr.
pub type LogSink = std::sync::Arc<dyn Fn(OutputStream, &[u8]) + Send + Sync>;

/// A piece of a guest's HTTP response, in order: one head, then body chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponsePart {
    Head {
        status: u16,
        headers: Vec<(String, String)>,
    },
    Chunk(Bytes),
}

/// Where a response goes while a request runs. Returns false once the client is gone.
pub type ResponseSink = Box<dyn FnMut(ResponsePart) -> bool + Send>;

/// The guest's compute budget for the current call: epoch deadlines are re-armed after
/// every blocking host call, so only time spent running guest code counts.
#[derive(Debug)]
pub(crate) struct Budget {
    pub limit: Duration,
    pub used: Duration,
    pub entered: Instant,
    pub tick: Duration,
}

impl Budget {
    pub fn ticks(&self) -> u64 {
        let left = self.limit.saturating_sub(self.used);
        (left.as_nanos() / self.tick.as_nanos().max(1)) as u64 + 1
    }
}

/// Per-guest state the host functions see.
pub struct HostState {
    pub(crate) limits: StoreLimits,
    pub(crate) actor_id: String,
    pub(crate) atespace: String,
    pub(crate) env: Vec<String>,
    pub(crate) egress: EgressPolicy,
    pub(crate) egress_timeout: Duration,
    pub(crate) log: LogSink,
    pub(crate) response: Option<ResponseSink>,
    pub(crate) responded: bool,
    pub(crate) pending_egress: Option<Vec<u8>>,
    pub(crate) budget: Budget,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("actor_id", &self.actor_id)
            .field("atespace", &self.atespace)
            .finish_non_exhaustive()
    }
}

type Ctx<'a> = Caller<'a, HostState>;

fn memory(caller: &mut Ctx<'_>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::Error::msg(
            "guest does not export its memory as `memory`",
        )),
    }
}

fn range(ptr: i32, len: i32, size: usize) -> wasmtime::Result<std::ops::Range<usize>> {
    let (p, l) = (ptr as u32 as usize, len as u32 as usize);
    match p.checked_add(l) {
        Some(end) if end <= size => Ok(p..end),
        _ => Err(wasmtime::Error::msg(format!(
            "guest passed an out-of-bounds buffer ({p}+{l} > {size})"
        ))),
    }
}

fn read(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let mem = memory(caller)?;
    let data = mem.data(&caller);
    Ok(data[range(ptr, len, data.len())?].to_vec())
}

fn write(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> wasmtime::Result<()> {
    let mem = memory(caller)?;
    let data = mem.data_mut(caller.as_context_mut());
    let r = range(ptr, bytes.len() as i32, data.len())?;
    data[r].copy_from_slice(bytes);
    Ok(())
}

fn write_u32(caller: &mut Ctx<'_>, ptr: i32, v: u32) -> wasmtime::Result<()> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Copies `value` into a guest buffer of `cap` bytes; returns the full length so the guest
/// can retry with a larger buffer.
fn give(caller: &mut Ctx<'_>, value: &[u8], buf: i32, cap: i32) -> wasmtime::Result<i32> {
    let n = value.len().min(cap.max(0) as usize);
    write(caller, buf, &value[..n])?;
    Ok(value.len() as i32)
}

/// Reads `iovs_len` (ptr, len) pairs at `iovs` and returns the bytes they cover.
fn gather(caller: &mut Ctx<'_>, iovs: i32, iovs_len: i32) -> wasmtime::Result<Vec<u8>> {
    let table = read(caller, iovs, iovs_len.saturating_mul(8))?;
    let mut out = Vec::new();
    for iov in table.chunks_exact(8) {
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        out.extend(read(caller, ptr, len)?);
    }
    Ok(out)
}

fn parse_headers(raw: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut out = Vec::new();
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.trim().is_empty() {
            continue;
        }
        let (k, v) = line.split_once(':')?;
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some(out)
}

fn start_response(st: &mut HostState, status: u16, headers: Vec<(String, String)>) -> i32 {
    if st.responded {
        return -1;
    }
    st.responded = true;
    send(st, ResponsePart::Head { status, headers })
}

/// 0 when delivered, -2 when the client is gone, -1 outside a request.
fn send(st: &mut HostState, part: ResponsePart) -> i32 {
    match st.response.as_mut() {
        Some(sink) => {
            if sink(part) {
                0
            } else {
                -2
            }
        }
        None => -1,
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs `f`, which blocks the thread (egress, a sleep), with the guest's compute budget
/// paused: the time spent in `f` is not guest compute, so it must neither count against the
/// request budget nor let the epoch deadline fire the moment the guest resumes.
fn off_budget<T>(c: &mut Ctx<'_>, f: impl FnOnce(&HostState) -> T) -> T {
    let st = c.data_mut();
    st.budget.used += st.budget.entered.elapsed();
    let out = f(st);
    st.budget.entered = Instant::now();
    let ticks = st.budget.ticks();
    c.as_context_mut().set_epoch_deadline(ticks);
    out
}

/// Checks that `count` items of `item` bytes at `ptr` lie inside the guest's memory and
/// returns their byte length. Computed in 64 bits: `count * item` of a hostile guest may
/// overflow 32.
fn array_len(caller: &mut Ctx<'_>, ptr: i32, count: i32, item: u64) -> wasmtime::Result<i32> {
    let bytes = u64::from(count as u32) * item;
    let size = memory(caller)?.data_size(&caller);
    match u32::try_from(bytes) {
        Ok(len) => range(ptr, len as i32, size).map(|_| len as i32),
        Err(_) => Err(wasmtime::Error::msg(format!(
            "guest passed an out-of-bounds buffer ({count} items of {item} bytes)"
        ))),
    }
}

/// When one `poll_oneoff` subscription is ready, measured from the start of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ready {
    /// A clock: ready this long after the call started (already capped to [`MAX_SLEEP`]).
    After(Duration),
    /// An fd subscription, which ate cannot wait on: ready at once, reported with `errno`.
    Refused { kind: u8, errno: i32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subscription {
    userdata: u64,
    ready: Ready,
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Decodes the `subscription` array of `poll_oneoff`; `now_ns` is the wall-clock time the
/// absolute deadlines are measured against. An unknown tag or clock is the whole call's
/// `ERRNO_INVAL`, as in wasmtime's own WASI.
///
/// Both clocks are wall-clock time here (see `clock_time_get`), so an absolute deadline of
/// either is compared with the same `now_ns`; the `precision` field is ignored.
fn decode_subscriptions(raw: &[u8], now_ns: u64) -> Result<Vec<Subscription>, i32> {
    raw.chunks_exact(SUBSCRIPTION_SIZE as usize)
        .map(|s| {
            let userdata = le_u64(s, 0);
            let ready = match s[8] {
                EVENTTYPE_CLOCK => {
                    let id = u32::from_le_bytes([s[16], s[17], s[18], s[19]]);
                    if id != CLOCKID_REALTIME && id != CLOCKID_MONOTONIC {
                        return Err(ERRNO_INVAL);
                    }
                    let timeout = le_u64(s, 24);
                    let flags = u16::from_le_bytes([s[40], s[41]]);
                    let ns = if flags & SUBCLOCKFLAGS_ABSTIME != 0 {
                        timeout.saturating_sub(now_ns)
                    } else {
                        timeout
                    };
                    Ready::After(Duration::from_nanos(ns).min(MAX_SLEEP))
                }
                kind @ (EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE) => {
                    let fd = u32::from_le_bytes([s[16], s[17], s[18], s[19]]);
                    let errno = if fd <= 2 { ERRNO_NOTSUP } else { ERRNO_BADF };
                    Ready::Refused { kind, errno }
                }
                _ => return Err(ERRNO_INVAL),
            };
            Ok(Subscription { userdata, ready })
        })
        .collect()
}

/// How long `poll_oneoff` blocks for `subs`: not at all when an fd subscription is there
/// (it is ready at once, with its error), else until the earliest clock.
fn poll_wait(subs: &[Subscription]) -> Duration {
    subs.iter()
        .map(|s| match s.ready {
            Ready::After(d) => d,
            Ready::Refused { .. } => Duration::ZERO,
        })
        .min()
        .unwrap_or(Duration::ZERO)
}

/// The `event` records after waiting `waited`: every subscription ready by then, in
/// subscription order.
fn poll_events(subs: &[Subscription], waited: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    for s in subs {
        let (kind, errno) = match s.ready {
            Ready::After(d) if d <= waited => (EVENTTYPE_CLOCK, ERRNO_SUCCESS),
            Ready::After(_) => continue,
            Ready::Refused { kind, errno } => (kind, errno),
        };
        let mut ev = [0u8; EVENT_SIZE as usize];
        ev[0..8].copy_from_slice(&s.userdata.to_le_bytes());
        ev[8..10].copy_from_slice(&(errno as u16).to_le_bytes());
        ev[10] = kind;
        // fd_readwrite (nbytes, flags) stays zero: no fd is ever reported readable.
        out.extend_from_slice(&ev);
    }
    out
}

/// WASI `poll_oneoff`, for clock subscriptions: sleeps until the earliest deadline (at most
/// [`MAX_SLEEP`]) with the compute budget paused, then reports every clock that expired.
/// ate has no fd readiness to offer, so an fd subscription is reported at once with an error
/// event (`NOTSUP` for stdin/stdout/stderr, `BADF` for any other fd) and the call does not
/// block. Bad pointers trap before any sleep, like every other host function here.
fn poll_oneoff(
    c: &mut Ctx<'_>,
    subs_ptr: i32,
    events_ptr: i32,
    nsubscriptions: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<i32> {
    if nsubscriptions == 0 {
        return Ok(ERRNO_INVAL);
    }
    let subs_len = array_len(c, subs_ptr, nsubscriptions, SUBSCRIPTION_SIZE)?;
    array_len(c, events_ptr, nsubscriptions, EVENT_SIZE)?;
    array_len(c, nevents_ptr, 1, 4)?;
    let raw = read(c, subs_ptr, subs_len)?;
    let subs = match decode_subscriptions(&raw, now_ns()) {
        Ok(subs) => subs,
        Err(errno) => return Ok(errno),
    };
    let wait = poll_wait(&subs);
    if !wait.is_zero() {
        off_budget(c, |_| std::thread::sleep(wait));
    }
    let events = poll_events(&subs, wait);
    write(c, events_ptr, &events)?;
    write_u32(c, nevents_ptr, (events.len() as u64 / EVENT_SIZE) as u32)?;
    Ok(ERRNO_SUCCESS)
}

/// Defines every host function on `linker`.
pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    define_abi(linker)?;
    define_wasi(linker)
}

fn define_abi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        ABI_MODULE,
        "actor_id",
        |mut c: Ctx<'_>, buf: i32, cap: i32| {
            let id = c.data().actor_id.clone();
            give(&mut c, id.as_bytes(), buf, cap)
        },
    )?;
    linker.func_wrap(
        ABI_MODULE,
        "atespace",
        |mut c: Ctx<'_>, buf: i32, cap: i32| {
            let a = c.data().atespace.clone();
            give(&mut c, a.as_bytes(), buf, cap)
        },
    )?;
    linker.func_wrap(
        ABI_MODULE,
        "response_start",
        |mut c: Ctx<'_>, status: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let raw = read(&mut c, ptr, len)?;
            let (Ok(status @ 100..=999), Some(headers)) =
                (u16::try_from(status), parse_headers(&raw))
            else {
                return Ok(-3);
            };
            Ok(start_response(c.data_mut(), status, headers))
        },
    )?;
    linker.func_wrap(
        ABI_MODULE,
        "response_write",
        |mut c: Ctx<'_>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let chunk = Bytes::from(read(&mut c, ptr, len)?);
            let st = c.data_mut();
            if !st.responded {
                let r = start_response(st, 200, Vec::new());
                if r != 0 {
                    return Ok(r);
                }
            }
            Ok(send(st, ResponsePart::Chunk(chunk)))
        },
    )?;
    linker.func_wrap(
        ABI_MODULE,
        "http_request",
        |mut c: Ctx<'_>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let raw = read(&mut c, ptr, len)?;
            let result = off_budget(&mut c, |st| {
                egress::send(&st.egress, &raw, st.egress_timeout)
            });
            let st = c.data_mut();
            Ok(match result {
                Ok(resp) => {
                    let n = resp.len() as i32;
                    st.pending_egress = Some(resp);
                    n
                }
                Err(e) => {
                    tracing::debug!(actor = %st.actor_id, error = %e, "guest egress refused or failed");
                    st.pending_egress = None;
                    e.code()
                }
            })
        },
    )?;
    linker.func_wrap(
        ABI_MODULE,
        "http_response",
        |mut c: Ctx<'_>, buf: i32, cap: i32| -> wasmtime::Result<i32> {
            let Some(resp) = c.data_mut().pending_egress.take() else {
                return Ok(-1);
            };
            let n = resp.len().min(cap.max(0) as usize);
            write(&mut c, buf, &resp[..n])?;
            Ok(n as i32)
        },
    )?;
    Ok(())
}

fn define_wasi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        WASI,
        "args_sizes_get",
        |mut c: Ctx<'_>, argc: i32, size: i32| {
            write_u32(&mut c, argc, 0)?;
            write_u32(&mut c, size, 0)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(WASI, "args_get", |_: Ctx<'_>, _: i32, _: i32| ERRNO_SUCCESS)?;
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut c: Ctx<'_>, count: i32, size: i32| {
            let env = &c.data().env;
            let (n, bytes) = (
                env.len() as u32,
                env.iter().map(|e| e.len() as u32 + 1).sum(),
            );
            write_u32(&mut c, count, n)?;
            write_u32(&mut c, size, bytes)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_get",
        |mut c: Ctx<'_>, ptrs: i32, buf: i32| {
            let env = c.data().env.clone();
            let mut at = buf;
            for (i, e) in env.iter().enumerate() {
                write_u32(&mut c, ptrs + 4 * i as i32, at as u32)?;
                let mut z = e.as_bytes().to_vec();
                z.push(0);
                write(&mut c, at, &z)?;
                at += z.len() as i32;
            }
            Ok(ERRNO_SUCCESS)
        },
    )?;
    // Monotonic time is wall-clock time: a snapshot restored on another node must never
    // see its monotonic clock jump backwards to that node's boot time.
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: Ctx<'_>, id: i32, _precision: i64, out: i32| {
            if !(0..=3).contains(&id) {
                return Ok(ERRNO_INVAL);
            }
            write(&mut c, out, &now_ns().to_le_bytes())?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "clock_res_get",
        |mut c: Ctx<'_>, _id: i32, out: i32| {
            write(&mut c, out, &1000u64.to_le_bytes())?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(WASI, "random_get", |mut c: Ctx<'_>, buf: i32, len: i32| {
        let mut bytes = vec![0u8; len.max(0) as usize];
        getrandom::fill(&mut bytes).map_err(|e| wasmtime::Error::msg(e.to_string()))?;
        write(&mut c, buf, &bytes)?;
        Ok(ERRNO_SUCCESS)
    })?;
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, iovs_len: i32, written: i32| {
            let stream = match fd {
                1 => OutputStream::Stdout,
                2 => OutputStream::Stderr,
                _ => return Ok(ERRNO_BADF),
            };
            let bytes = gather(&mut c, iovs, iovs_len)?;
            (c.data().log)(stream, &bytes);
            write_u32(&mut c, written, bytes.len() as u32)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_read",
        |mut c: Ctx<'_>, fd: i32, _iovs: i32, _len: i32, read_out: i32| {
            if fd != 0 {
                return Ok(ERRNO_BADF);
            }
            write_u32(&mut c, read_out, 0)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(WASI, "fd_close", |_: Ctx<'_>, fd: i32| {
        if (0..=2).contains(&fd) {
            ERRNO_SUCCESS
        } else {
            ERRNO_BADF
        }
    })?;
    linker.func_wrap(
        WASI,
        "fd_seek",
        |_: Ctx<'_>, fd: i32, _o: i64, _w: i32, _out: i32| {
            if (0..=2).contains(&fd) {
                ERRNO_SPIPE
            } else {
                ERRNO_BADF
            }
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_fdstat_get",
        |mut c: Ctx<'_>, fd: i32, out: i32| {
            if !(0..=2).contains(&fd) {
                return Ok(ERRNO_BADF);
            }
            // filetype CHARACTER_DEVICE, no flags, rights to read/write.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            stat[8..16].copy_from_slice(&(0x2u64 | 0x40).to_le_bytes());
            write(&mut c, out, &stat)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_fdstat_set_flags",
        |_: Ctx<'_>, _fd: i32, _f: i32| ERRNO_NOSYS,
    )?;
    linker.func_wrap(WASI, "fd_prestat_get", |_: Ctx<'_>, _fd: i32, _out: i32| {
        ERRNO_BADF
    })?;
    linker.func_wrap(
        WASI,
        "fd_prestat_dir_name",
        |_: Ctx<'_>, _fd: i32, _p: i32, _l: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(WASI, "sched_yield", |_: Ctx<'_>| ERRNO_SUCCESS)?;
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |mut c: Ctx<'_>, subs: i32, events: i32, n: i32, nevents: i32| {
            poll_oneoff(&mut c, subs, events, n, nevents)
        },
    )?;
    linker.func_wrap(
        WASI,
        "proc_exit",
        |_: Ctx<'_>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(format!(
                "guest exited with code {code}"
            )))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(userdata: u64, id: u32, timeout: u64, flags: u16) -> [u8; 48] {
        let mut s = [0u8; 48];
        s[0..8].copy_from_slice(&userdata.to_le_bytes());
        s[8] = EVENTTYPE_CLOCK;
        s[16..20].copy_from_slice(&id.to_le_bytes());
        s[24..32].copy_from_slice(&timeout.to_le_bytes());
        s[40..42].copy_from_slice(&flags.to_le_bytes());
        s
    }

    fn fd(userdata: u64, kind: u8, fd: u32) -> [u8; 48] {
        let mut s = [0u8; 48];
        s[0..8].copy_from_slice(&userdata.to_le_bytes());
        s[8] = kind;
        s[16..20].copy_from_slice(&fd.to_le_bytes());
        s
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn relative_and_absolute_clocks_decode_to_a_wait_from_now() {
        let now = 1_000_000 * MS;
        let raw = [
            clock(1, CLOCKID_MONOTONIC, 200 * MS, 0),
            clock(2, CLOCKID_REALTIME, now + 50 * MS, SUBCLOCKFLAGS_ABSTIME),
            clock(3, CLOCKID_REALTIME, now - 50 * MS, SUBCLOCKFLAGS_ABSTIME),
        ]
        .concat();
        let subs = decode_subscriptions(&raw, now).unwrap();
        let waits: Vec<_> = subs.iter().map(|s| (s.userdata, s.ready)).collect();
        assert_eq!(
            waits,
            [
                (1, Ready::After(Duration::from_millis(200))),
                (2, Ready::After(Duration::from_millis(50))),
                (3, Ready::After(Duration::ZERO)),
            ]
        );
        assert_eq!(poll_wait(&subs), Duration::ZERO);
        assert_eq!(poll_wait(&subs[..2]), Duration::from_millis(50));
    }

    #[test]
    fn a_huge_timeout_is_capped() {
        let subs = decode_subscriptions(&clock(0, CLOCKID_MONOTONIC, u64::MAX, 0), 0).unwrap();
        assert_eq!(poll_wait(&subs), MAX_SLEEP);
    }

    #[test]
    fn unknown_clocks_and_tags_are_invalid() {
        for raw in [
            clock(0, 2, MS, 0),
            clock(0, 3, MS, 0),
            clock(0, 99, MS, 0),
            fd(0, 3, 1),
            fd(0, 255, 1),
        ] {
            assert_eq!(decode_subscriptions(&raw, 0), Err(ERRNO_INVAL));
        }
    }

    #[test]
    fn fd_subscriptions_are_ready_at_once_with_an_error() {
        let raw = [
            clock(7, CLOCKID_MONOTONIC, 60_000 * MS, 0),
            fd(8, EVENTTYPE_FD_READ, 0),
            fd(9, EVENTTYPE_FD_WRITE, 42),
        ]
        .concat();
        let subs = decode_subscriptions(&raw, 0).unwrap();
        let wait = poll_wait(&subs);
        assert_eq!(wait, Duration::ZERO);
        let events = poll_events(&subs, wait);
        assert_eq!(events.len(), 64, "the clock has not expired");
        assert_eq!(le_u64(&events, 0), 8);
        assert_eq!(&events[8..11], &[ERRNO_NOTSUP as u8, 0, EVENTTYPE_FD_READ]);
        assert_eq!(le_u64(&events, 32), 9);
        assert_eq!(&events[40..43], &[ERRNO_BADF as u8, 0, EVENTTYPE_FD_WRITE]);
    }

    #[test]
    fn every_clock_expired_by_the_wake_up_is_reported() {
        let raw = [
            clock(1, CLOCKID_MONOTONIC, 100 * MS, 0),
            clock(2, CLOCKID_MONOTONIC, 60_000 * MS, 0),
            clock(3, CLOCKID_REALTIME, 100 * MS, 0),
        ]
        .concat();
        let subs = decode_subscriptions(&raw, 0).unwrap();
        let wait = poll_wait(&subs);
        assert_eq!(wait, Duration::from_millis(100));
        let events = poll_events(&subs, wait);
        assert_eq!(events.len(), 64);
        assert_eq!((le_u64(&events, 0), le_u64(&events, 32)), (1, 3));
        assert_eq!(&events[8..11], &[0, 0, EVENTTYPE_CLOCK]);
        assert_eq!(&events[40..43], &[0, 0, EVENTTYPE_CLOCK]);
    }
}
