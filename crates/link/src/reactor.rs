//! The threads that carry links: one reactor per core, each serving many links with one
//! `epoll` instance and one timer heap. A link is a [`Worker`]: the reactor calls it when one
//! of its descriptors is readable or its timers are due, and lends it packet buffers.
//!
//! Why not a thread per link: a node with a thousand peers would hold a thousand threads
//! (their stacks, their wake-ups); a reactor per core holds the same links in a few MiB and
//! sleeps until something happens. A busy link cannot starve the others on its reactor: each
//! event handles a bounded batch, and epoll is level-triggered, so the rest waits for the
//! next turn.

use crate::wake::Wake;
use crate::worker::{Event, Scratch, Worker};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A link handed to a reactor; the worker comes back on `stopped` when the link stops, so
/// that the caller closes its devices (in parallel with others, if it likes).
pub(crate) struct Job {
    pub worker: Box<Worker>,
    pub stopped: SyncSender<Box<Worker>>,
}

struct Handle {
    inbox: Sender<Job>,
    wake: Arc<Wake>,
    links: Arc<AtomicUsize>,
}

static POOL: OnceLock<Mutex<Vec<Handle>>> = OnceLock::new();

/// How many reactors: one per core, at most 8.
fn reactor_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Hands a link to the reactor that serves the fewest links, starting the reactors on first
/// use.
pub(crate) fn submit(job: Job) -> std::io::Result<()> {
    let pool = POOL.get_or_init(|| Mutex::new(Vec::new()));
    let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
    while pool.len() < reactor_count() {
        let handle = spawn(pool.len())?;
        pool.push(handle);
    }
    let handle = pool
        .iter()
        .min_by_key(|h| h.links.load(Ordering::Relaxed))
        .expect("at least one reactor");
    handle.links.fetch_add(1, Ordering::Relaxed);
    handle
        .inbox
        .send(job)
        .map_err(|_| std::io::Error::other("the link reactor has stopped"))?;
    handle.wake.wake();
    Ok(())
}

fn spawn(index: usize) -> std::io::Result<Handle> {
    let (inbox, jobs) = std::sync::mpsc::channel();
    let wake = Arc::new(Wake::new()?);
    let links = Arc::new(AtomicUsize::new(0));
    let mut reactor = Reactor::new(jobs, wake.clone(), links.clone())?;
    std::thread::Builder::new()
        .name(format!("links {index}"))
        .spawn(move || reactor.run())?;
    Ok(Handle { inbox, wake, links })
}

struct Entry {
    worker: Box<Worker>,
    stopped: SyncSender<Box<Worker>>,
    /// When the link's timers are next due (the heap may hold older deadlines: stale).
    due: Instant,
}

/// Events carry the link's slot and what became ready (a byte); the inbox has its own token.
const INBOX: u64 = u64::MAX;

fn token(slot: usize, event: Event) -> u64 {
    let kind: u64 = match event {
        Event::Tun => 0,
        Event::Network => 1,
        Event::Wake => 2,
        Event::Path(i) => 3 + u64::from(i.min(250)),
    };
    ((slot as u64) << 8) | kind
}

fn untoken(token: u64) -> (usize, Event) {
    let event = match token & 0xff {
        0 => Event::Tun,
        1 => Event::Network,
        2 => Event::Wake,
        k => Event::Path((k - 3) as u8),
    };
    ((token >> 8) as usize, event)
}

/// Timers a second or more away are rounded up to a 250 ms grid (boringtun's tick), so the
/// idle links of a reactor wake it together a few times a second, not one by one.
const GRID: Duration = Duration::from_millis(250);

fn coarse(due: Instant, now: Instant) -> Instant {
    let ahead = due.saturating_duration_since(now);
    if ahead < Duration::from_secs(1) {
        return due;
    }
    let epoch = *EPOCH.get_or_init(|| now);
    let since = due.saturating_duration_since(epoch).as_nanos();
    let grid = GRID.as_nanos();
    let rounded = since.div_ceil(grid) * grid;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

struct Reactor {
    epoll: OwnedFd,
    jobs: Receiver<Job>,
    wake: Arc<Wake>,
    links: Arc<AtomicUsize>,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    scratch: Scratch,
}

impl Reactor {
    fn new(jobs: Receiver<Job>, wake: Arc<Wake>, links: Arc<AtomicUsize>) -> std::io::Result<Self> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that this OwnedFd now owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let reactor = Self {
            epoll,
            jobs,
            wake,
            links,
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            scratch: Scratch::new()?,
        };
        reactor.watch(reactor.wake.fd(), INBOX)?;
        Ok(reactor)
    }

    fn watch(&self, fd: RawFd, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: a valid epoll descriptor, a descriptor the caller owns, a valid event.
        let r =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn unwatch(&self, fd: RawFd) {
        // SAFETY: removing a descriptor from our epoll set; errors (not watched) are harmless.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    fn run(&mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            // Round up: a timeout rounded down to 0 ms would spin until the timer is due.
            let timeout = match self.timers.peek() {
                None => -1,
                Some(Reverse((due, _))) => due
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000)
                    .min(i32::MAX as u128) as i32,
            };
            // SAFETY: events is a valid buffer of events.len() entries.
            let ready = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout,
                )
            };
            for event in events.iter().take(ready.max(0) as usize) {
                let token = event.u64;
                if token == INBOX {
                    continue;
                }
                let (slot, kind) = untoken(token);
                let Some(entry) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                    continue; // the link stopped earlier in this batch
                };
                if !entry.worker.on_event(kind, &mut self.scratch) {
                    self.remove(slot);
                    continue;
                }
                if let Some(due) = entry.worker.take_hurry()
                    && due < entry.due
                {
                    entry.due = due;
                    self.timers.push(Reverse((due, slot)));
                }
                // Paths added while the link runs: their sockets from now on too.
                for (fd, added) in entry.worker.take_new_fds() {
                    if let Err(e) = self.watch(fd, self::token(slot, added)) {
                        tracing::error!("cannot watch a new path's socket: {e}");
                    }
                }
            }
            self.fire_timers();
            // New links last: a slot freed above is not confused with a new link's events.
            self.wake.drain();
            while let Ok(job) = self.jobs.try_recv() {
                self.add(job);
            }
        }
    }

    fn add(&mut self, job: Job) {
        let Job {
            mut worker,
            stopped,
        } = job;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        for (fd, event) in worker.fds() {
            if let Err(e) = self.watch(fd, token(slot, event)) {
                tracing::error!(link = %worker.name(), "cannot watch its descriptors: {e}");
                for (fd, _) in worker.fds() {
                    self.unwatch(fd);
                }
                self.free.push(slot);
                self.links.fetch_sub(1, Ordering::Relaxed);
                let _ = stopped.send(worker);
                return;
            }
        }
        let due = worker.start(&mut self.scratch);
        self.timers.push(Reverse((due, slot)));
        self.slots[slot] = Some(Entry {
            worker,
            stopped,
            due,
        });
    }

    fn remove(&mut self, slot: usize) {
        let Some(entry) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        for (fd, _) in entry.worker.fds() {
            self.unwatch(fd);
        }
        self.free.push(slot);
        self.links.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(link = %entry.worker.name(), "link stopped");
        // The owner closes the devices; if it is gone, they close here.
        let _ = entry.stopped.send(entry.worker);
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((due, slot))) = self.timers.peek().copied() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if entry.due != due {
                continue; // stale: the slot holds another link, or a later deadline
            }
            entry.due = coarse(entry.worker.on_timer(&mut self.scratch), now);
            self.timers.push(Reverse((entry.due, slot)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_timers_snap_to_a_shared_grid_and_near_ones_stay() {
        let now = Instant::now();
        let near = now + Duration::from_millis(250);
        assert_eq!(coarse(near, now), near);
        let a = coarse(now + Duration::from_millis(5_010), now);
        let b = coarse(now + Duration::from_millis(5_120), now);
        assert_eq!(a, b, "two idle links due 110 ms apart wake together");
        assert!(a >= now + Duration::from_millis(5_120));
        assert!(a < now + Duration::from_millis(5_010) + GRID);
    }

    #[test]
    fn tokens_round_trip() {
        for slot in [0, 1, 999, 1 << 40] {
            for event in [
                Event::Tun,
                Event::Network,
                Event::Wake,
                Event::Path(0),
                Event::Path(15),
            ] {
                assert_eq!(untoken(token(slot, event)), (slot, event));
            }
        }
        assert_ne!(token(1 << 40, Event::Path(250)), INBOX);
    }
}
