//! The forwarder: the I/O shell around [`Impairment`]. One thread (SCHED_FIFO) moves
//! packets: it reads queued packets from NFQUEUE, asks each direction's [`Impairment`] for
//! a verdict, keeps `(time, order, queue, id, verdict)` in a heap, and sends the verdicts
//! when their time comes, in batches (ppoll with a nanosecond timeout to the earliest,
//! timer slack 1 ns). A packet to deliver waits until its arrival time; a packet to drop
//! waits for the packets before it in its queue (see [`Forwarder::on_packet`]). A second
//! thread serves the control socket and hands requests over a channel (woken by an
//! eventfd).

use super::control::{DirectionStatus, Reply, Request};
use super::nfqueue::{self, NfQueue, Packet};
use super::{CONTROL_SOCKET, Impairment, Verdict};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Packets the kernel may hold per queue for the forwarder (the queue limit of the model
/// bounds the line's queue; this also covers the packets in flight, rate x delay).
const KERNEL_QUEUE_MAXLEN: u32 = 200_000;
/// The SCHED_FIFO priority of the packet thread (1..=99; low, above ordinary threads).
const RT_PRIORITY: i32 = 10;
/// Packets read per turn of the loop before due verdicts are sent again.
const READ_BATCH: usize = 512;

/// One direction of one uplink, as the forwarder keeps it.
struct Direction {
    uplink: String,
    direction: &'static str,
    imp: Impairment,
    /// The latest time a verdict of this queue is held for.
    last: Option<Instant>,
    /// The seed its randomness started from.
    seed: u64,
}

type Job = (Request, mpsc::Sender<Reply>);

/// Runs the forwarder in the current network namespace (the hub's) until it is killed:
/// serves [`CONTROL_SOCKET`] and moves the packets of the queues it is told about.
/// Returns only on a setup error (the socket is taken: another forwarder runs here).
pub fn serve() -> io::Result<()> {
    // SAFETY: prctl and setsid have no memory-safety preconditions. A 1 ns timer slack
    // makes ppoll wake on time; setsid leaves the caller's terminal and process group.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0);
        libc::setsid();
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let addr = SocketAddr::from_abstract_name(CONTROL_SOCKET)?;
    let listener = UnixListener::bind_addr(&addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("control socket @{CONTROL_SOCKET}: {e} (is a forwarder already running in this namespace?)"),
        )
    })?;
    // SAFETY: eventfd creation; the result is checked.
    let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if wake < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    let wake = unsafe { OwnedFd::from_raw_fd(wake) };
    let wake_raw = wake.as_raw_fd();
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("impair-control".into())
        .spawn(move || control_loop(listener, jobs_tx, wake_raw))?;
    let nf = NfQueue::open()?;
    realtime();
    eprintln!("braid lab impair: serving @{CONTROL_SOCKET}");
    Forwarder {
        nf,
        directions: HashMap::new(),
        held: BinaryHeap::new(),
        order: 0,
    }
    .run(&wake, &jobs_rx)
}

/// Runs this thread (the one that moves packets) under SCHED_FIFO, priority
/// [`RT_PRIORITY`], so it wakes on time on a busy machine, as netem's timers do in the
/// kernel; the kernel's RT throttling (95 % of each second by default) still leaves the
/// rest to others. Without the privilege it carries on as an ordinary thread.
fn realtime() {
    let param = libc::sched_param {
        sched_priority: RT_PRIORITY,
    };
    // SAFETY: sched_setscheduler on this thread with a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        eprintln!(
            "braid lab impair: no real-time priority ({}); delays may run late on a busy machine",
            io::Error::last_os_error()
        );
    }
}

fn control_loop(listener: UnixListener, jobs: mpsc::Sender<Job>, wake: i32) {
    for stream in listener.incoming().flatten() {
        if let Err(e) = serve_client(stream, &jobs, wake) {
            eprintln!("braid lab impair: control: {e}");
        }
    }
}

fn serve_client(stream: UnixStream, jobs: &mpsc::Sender<Job>, wake: i32) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    // One request line, of at most 1 MiB.
    BufReader::new(io::Read::take(&stream, 1 << 20)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(request) => {
            let (tx, rx) = mpsc::channel();
            jobs.send((request, tx))
                .map_err(|_| io::Error::other("the forwarder stopped"))?;
            let one: u64 = 1;
            // SAFETY: writing 8 bytes to the eventfd, which outlives this thread's use
            // (the main loop owns it and never returns while it runs).
            unsafe { libc::write(wake, (&one as *const u64).cast(), 8) };
            rx.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| Reply::error("the forwarder did not answer"))
        }
        Err(e) => Reply::error(&format!("bad request: {e}")),
    };
    let mut text = serde_json::to_string(&reply).map_err(io::Error::other)?;
    text.push('\n');
    (&stream).write_all(text.as_bytes())
}

/// A verdict waiting for its time: (time, arrival order, queue, packet id, verdict).
type Held = (Instant, u64, u16, u32, u32);

struct Forwarder {
    nf: NfQueue,
    directions: HashMap<u16, Direction>,
    /// Verdicts waiting for their time, earliest first.
    held: BinaryHeap<Reverse<Held>>,
    order: u64,
}

impl Forwarder {
    fn run(mut self, wake: &OwnedFd, jobs: &mpsc::Receiver<Job>) -> io::Result<()> {
        let mut packets = Vec::with_capacity(READ_BATCH);
        loop {
            let timeout = self
                .held
                .peek()
                .map(|Reverse((at, ..))| at.saturating_duration_since(Instant::now()));
            let (nf_ready, wake_ready) = poll2(self.nf.raw_fd(), wake.as_raw_fd(), timeout)?;
            if nf_ready {
                packets.clear();
                self.nf.receive(&mut packets, READ_BATCH)?;
                let now = Instant::now();
                for p in packets.drain(..) {
                    self.on_packet(now, p)?;
                }
            }
            self.release(Instant::now())?;
            self.nf.flush()?;
            if wake_ready {
                let mut count = 0u64;
                // SAFETY: reading 8 bytes from our eventfd into a u64.
                unsafe { libc::read(wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
                while let Ok((request, reply)) = jobs.try_recv() {
                    let _ = reply.send(self.handle(request));
                }
            }
        }
    }

    /// Decides a packet's verdict and when to send it. The kernel finds a verdict's packet
    /// by walking its queue from the oldest, so verdicts are sent in arrival order where
    /// the order is kept: a drop waits for the packets before it (else every drop of a
    /// full line would walk the whole queue).
    fn on_packet(&mut self, now: Instant, p: Packet) -> io::Result<()> {
        let (at, verdict) = match self.directions.get_mut(&p.queue) {
            Some(d) => {
                let in_order = !d.imp.settings().reorder;
                let (at, verdict) = match d.imp.on_packet(now, p.len) {
                    Verdict::Deliver(at) => (at, nfqueue::ACCEPT),
                    Verdict::Drop(_) if in_order => (d.last.unwrap_or(now), nfqueue::DROP),
                    Verdict::Drop(_) => (now, nfqueue::DROP),
                };
                let at = at.max(now);
                if in_order {
                    d.last = Some(at);
                }
                (at, verdict)
            }
            None => (now, nfqueue::ACCEPT),
        };
        if at <= now && self.held.is_empty() {
            return self.nf.verdict(p.queue, p.id, verdict);
        }
        self.order += 1;
        self.held
            .push(Reverse((at, self.order, p.queue, p.id, verdict)));
        Ok(())
    }

    /// Accepts every held packet whose time has come.
    fn release(&mut self, now: Instant) -> io::Result<()> {
        while let Some(Reverse((at, _, queue, id, verdict))) = self.held.peek().copied() {
            if at > now {
                break;
            }
            self.held.pop();
            self.nf.verdict(queue, id, verdict)?;
        }
        Ok(())
    }

    fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Set {
                uplink,
                queue_down,
                queue_up,
                impairment,
            } => {
                if let Err(e) = impairment.validate() {
                    return Reply::error(&e);
                }
                let now = Instant::now();
                for (queue, direction, settings, mix) in [
                    (queue_down, "down", impairment.down, 0x6d6f_6421u64),
                    (queue_up, "up", impairment.up, 0x7570_2121u64),
                ] {
                    let seed = impairment.seed ^ mix ^ (u64::from(queue) << 32);
                    match self.directions.get_mut(&queue) {
                        Some(d) => {
                            d.imp.set(settings, now);
                            if d.seed != seed {
                                d.imp.reseed(seed);
                                d.seed = seed;
                            }
                        }
                        None if settings.is_clear() => {}
                        None => {
                            if let Err(e) = self.nf.bind(queue, KERNEL_QUEUE_MAXLEN) {
                                return Reply::error(&format!(
                                    "binding NFQUEUE {queue} for {uplink} {direction}: {e}"
                                ));
                            }
                            self.directions.insert(
                                queue,
                                Direction {
                                    uplink: uplink.clone(),
                                    direction,
                                    imp: Impairment::new(settings, seed, now),
                                    last: None,
                                    seed,
                                },
                            );
                        }
                    }
                }
                eprintln!("braid lab impair: {uplink}: {impairment:?}");
                Reply::ok(Vec::new())
            }
            Request::Status => {
                let now = Instant::now();
                let mut status: Vec<DirectionStatus> = self
                    .directions
                    .iter()
                    .map(|(&queue, d)| DirectionStatus {
                        uplink: d.uplink.clone(),
                        direction: d.direction.to_string(),
                        queue,
                        settings: *d.imp.settings(),
                        counters: d.imp.counters(),
                        queued: d.imp.queued(now),
                        kernel_errors: self.nf.errors,
                    })
                    .collect();
                status.sort_by_key(|s| s.queue);
                Reply::ok(status)
            }
        }
    }
}

/// Polls the two descriptors for input, up to `timeout` (none: forever); which are ready.
fn poll2(a: i32, b: i32, timeout: Option<Duration>) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: two valid pollfds and a valid (or null) timespec.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, ts_ptr, std::ptr::null()) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok((false, false))
        } else {
            Err(err)
        };
    }
    Ok((fds[0].revents != 0, fds[1].revents != 0))
}
