//! Writing and reading a snapshot take a few buffers of memory, not the snapshot's size:
//! a 64 MiB file of incompressible bytes goes to a `file://` store and back while a
//! counting allocator (this test binary's global allocator) records the peak of live heap
//! bytes. Buffering a whole file anywhere on the way (reading the source whole,
//! compressing into one buffer, uploading in one `put`, decompressing into memory) puts
//! the peak over the file's size and fails the test.
//!
//! This binary holds one test, so no other test allocates while it measures.
#![allow(unsafe_code)] // the allocator below, which only counts and forwards to the system's

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use ate_model::{ActorRef, SnapshotScope};
use ate_snapshots::{PART_BYTES, PARTS_IN_FLIGHT, SnapshotFile, SnapshotStore};

/// Counts live heap bytes and their peak, forwarding every call to [`System`].
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and
// returns its result, so `System`'s guarantees are this allocator's; the counters are
// plain atomics touched only after a call succeeded.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received (see above).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Size of the snapshot file written and read.
const FILE_BYTES: usize = 64 << 20;

/// Most the heap may grow while the file is written or read: what the pipeline may hold
/// (the parts in flight, the part filling, the held-back first part) and 4 MiB for the
/// chunks between the stages and the buffers around them; 24 MiB, well under the file's
/// size, which any whole-file buffer takes on its own.
const BOUND: usize = (PARTS_IN_FLIGHT + 2) * PART_BYTES + (4 << 20);

/// Incompressible bytes (xorshift).
struct Noise(u64);

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
        Ok(buf.len())
    }
}

/// Runs `f`, returning its output and how far the heap grew above where it started.
async fn peak_of<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f.await;
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_snapshot_is_written_and_read_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("memory.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        std::io::copy(&mut Noise(42).take(FILE_BYTES as u64), &mut f).unwrap();
        f.flush().unwrap();
    }
    let store =
        SnapshotStore::open(&format!("file://{}", dir.path().join("store").display())).unwrap();
    let actor = ActorRef::new("team-a", "big");

    let (manifest, written) = peak_of(store.write(
        &actor,
        "0001-a",
        "wasm",
        SnapshotScope::Full,
        "ate/test",
        vec![SnapshotFile::path("memory.bin", &source)],
        FILE_BYTES as u64,
    ))
    .await;
    let manifest = manifest.expect("write");
    assert_eq!(manifest.files[0].size, FILE_BYTES as u64);
    assert!(
        manifest.files[0].compressed_size > FILE_BYTES as u64,
        "noise does not compress, so every part is full"
    );

    let to = dir.path().join("restored");
    std::fs::create_dir(&to).unwrap();
    let (read, reading) = peak_of(store.read_into(&actor, "0001-a", &to, FILE_BYTES as u64)).await;
    assert_eq!(read.expect("read"), manifest);
    let mut a = std::fs::File::open(&source).unwrap();
    let mut b = std::fs::File::open(to.join("memory.bin")).unwrap();
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        b.read_exact(&mut y[..n]).unwrap();
        assert!(x[..n] == y[..n], "restored byte for byte");
        if n == 0 {
            break;
        }
    }

    let mib = |n: usize| n as f64 / (1 << 20) as f64;
    println!(
        "heap growth for a {} MiB file: write {:.1} MiB, read {:.1} MiB (parts of {} MiB, {} in flight)",
        FILE_BYTES >> 20,
        mib(written),
        mib(reading),
        PART_BYTES >> 20,
        PARTS_IN_FLIGHT
    );
    assert!(written < BOUND, "writing took {:.1} MiB", mib(written));
    assert!(reading < BOUND, "reading took {:.1} MiB", mib(reading));
}
