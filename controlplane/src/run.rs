//! The driver: links, the router core, the dataplane (fib ring) and viscript, in one loop.
//!
//! Everything decided lives in the router core ([`crate::router`]); this loop only moves
//! events in (link events, app requests, punts, counters, the clock) and carries the router's
//! outputs out (fib-ring messages and commits, link messages, published services).

use crate::appsock;
use crate::config::Config;
use crate::dataplane_link::{Change, DataplaneLink};
use crate::identity::{Identity, NodeId};
use crate::links::{self, LinkCtx, LinkEvent, LinkHandle};
use crate::nm::{self, NodeManager};
use crate::router::{LinkUp, Output, Router};
use dataplane::fibproto::{FibMsg, Traffic};
use std::collections::HashMap;
use std::net::{IpAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

/// Longest sleep of the loop.
const TURN: Duration = Duration::from_millis(100);
/// Link events and app requests handled per turn at most, so that a burst of them (a flood
/// from neighbours, or many apps) cannot starve the timers, the punts and the dataplane.
const EVENTS_PER_TURN: usize = 1024;

/// The driver's I/O handles around the router core.
struct Driver {
    router: Router,
    /// The fib ring, while the dataplane is there.
    dp: DataplaneLink,
    /// Live links by number (removed when they report down).
    handles: HashMap<u64, LinkHandle>,
    /// The messenger client's record updates (none without messengers).
    services_tx: Option<std::sync::mpsc::Sender<crate::msgclient::AppMsg>>,
    /// The dataplane's per-route traffic, as last read (for the metrics snapshot; a scrape
    /// never asks the dataplane itself).
    last_routes: Vec<(netbase::Prefix, Traffic)>,
    /// The dataplane's drops by reason and traffic totals, as last read (likewise).
    last_dataplane: Vec<(String, u64)>,
}

impl Driver {
    fn link_event(&mut self, now: Instant, ev: LinkEvent) {
        match ev {
            LinkEvent::Up(up) => {
                self.handles.insert(up.link, up.handle.clone());
                self.router.handle_link_up(
                    now,
                    LinkUp {
                        link: up.link,
                        peer: up.peer,
                        initiator: up.initiator,
                        local: up.local,
                        remote: up.remote,
                        data_tx: up.data_tx,
                        data_rx: up.data_rx,
                        endpoint_replaced: up.endpoint_replaced,
                    },
                );
            }
            LinkEvent::Down { peer, link, why } => {
                self.handles.remove(&link);
                self.router.handle_link_down(now, peer, link, &why);
            }
            LinkEvent::Rtt { peer, link, rtt_us } => {
                self.router.handle_rtt(now, peer, link, rtt_us)
            }
            LinkEvent::Rekey {
                peer,
                link,
                generation,
                ack,
            } => self.router.handle_rekey(now, peer, link, generation, ack),
            LinkEvent::Msg { peer, link, bytes } => self.router.handle_msg(now, peer, link, &bytes),
        }
    }

    fn app_event(&mut self, now: Instant, ev: appsock::Event) {
        match ev {
            appsock::Event::Request {
                req: appsock::Request::Find { kind },
                reply,
                ..
            } => {
                // The messenger client answers (within its own timeout); the loop goes on.
                match &self.services_tx {
                    Some(tx) => {
                        if let Err(e) = tx.send(crate::msgclient::AppMsg::Find(kind, reply)) {
                            let crate::msgclient::AppMsg::Find(_, reply) = e.0 else {
                                return;
                            };
                            let _ = reply.send("err the messenger client stopped".into());
                        }
                    }
                    None => {
                        self.router.app_refused();
                        let _ = reply.send("err no messenger configured".into());
                    }
                }
            }
            appsock::Event::Request { conn, req, reply } => {
                let r = self.router.handle_app_request(now, conn, req);
                // What the request changed is live before the app hears the answer.
                self.outputs();
                let _ = reply.send(r);
            }
            appsock::Event::Closed { conn } => self.router.handle_app_closed(conn),
        }
    }

    /// Carries out the router's outputs, in order.
    fn outputs(&mut self) {
        while let Some(o) = self.router.poll_output() {
            match o {
                // Without a dataplane, fib changes only go to the router's mirror (it programs
                // the next dataplane with all of them).
                Output::Fib(m) => {
                    if let Some(fib) = self.dp.fib() {
                        let _ = fib.send(&m);
                    }
                }
                Output::Commit => {
                    if let Some(fib) = self.dp.fib()
                        && let Err(e) = fib.commit(Duration::from_secs(2))
                    {
                        self.router.fib_refused(&e.to_string());
                    }
                }
                Output::Inject(packet) => {
                    if let Some(fib) = self.dp.fib()
                        && fib.send(&FibMsg::Inject { packet }).is_ok()
                    {
                        self.router.injected();
                    }
                }
                Output::Send { link, bytes } => {
                    if let Some(h) = self.handles.get(&link) {
                        h.send(&bytes);
                    }
                }
                Output::SendRekey {
                    link,
                    generation,
                    ack,
                } => {
                    if let Some(h) = self.handles.get(&link) {
                        h.send_rekey(generation, ack);
                    }
                }
                Output::Close { link } => {
                    if let Some(h) = self.handles.get(&link) {
                        h.close();
                    }
                }
                Output::Publish(services) => {
                    let sent = self.services_tx.as_ref().is_some_and(|tx| {
                        tx.send(crate::msgclient::AppMsg::Services(services))
                            .is_ok()
                    });
                    if !sent {
                        self.router.messenger_gone();
                    }
                }
            }
        }
    }

    /// Notices the dataplane going away or coming back, and tells the router. Returns whether
    /// a dataplane came back (its device then needs the overlay address again).
    fn watch_dataplane(&mut self, now: Instant) -> bool {
        let mut back = false;
        // A lost dataplane may already have a successor: look again at once (twice at most).
        for _ in 0..2 {
            match self.dp.poll_change(now) {
                Change::None => break,
                Change::Lost => {
                    tracing::warn!(
                        "the dataplane at {} went away; links closed until one serves again",
                        self.dp.path().display()
                    );
                    self.router.handle_dataplane_lost(now);
                    self.outputs();
                }
                Change::Back => {
                    tracing::info!(
                        "a dataplane serves {} again; programming it",
                        self.dp.path().display()
                    );
                    self.router.handle_dataplane_back(now);
                    self.outputs();
                    back = true;
                    break;
                }
            }
        }
        back
    }

    /// Packets the dataplane punted, and the sessions it found silent.
    fn punts(&mut self, now: Instant) {
        while let Some(Ok(Some(m))) = self.dp.fib().map(|f| f.recv(Duration::ZERO)) {
            match m {
                FibMsg::Punt { dst, packet } => self.router.handle_punt(now, dst, packet),
                FibMsg::SessionDown { id, silent_ms } => {
                    self.router.handle_session_down(now, id, silent_ms);
                    // Fail over now: the backups are switched to before the next punt is
                    // looked at.
                    self.router.flush();
                    self.outputs();
                }
                _ => {}
            }
        }
    }

    /// Reads the dataplane's counters for the router (route usage, session traffic).
    fn counters(&mut self, now: Instant) {
        if let Some(Ok(FibMsg::Counters {
            routes,
            sessions,
            drops,
            ..
        })) = self
            .dp
            .fib()
            .map(|f| f.counters(Duration::from_millis(500)))
        {
            self.last_routes = routes.clone();
            self.last_dataplane = drops;
            self.router.handle_counters(now, routes, sessions);
        }
    }
}

/// Puts the overlay address on the dataplane's device; `Ok(false)` while the device is not
/// there yet.
fn try_add_overlay_address(tun: &str, id: &NodeId) -> Result<bool, String> {
    let mut nl = netbase::netlink::Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let Ok(Some(index)) = nl.link_index(tun) else {
        return Ok(false);
    };
    match nl.add_address(index, IpAddr::V6(id.overlay_addr()), 32) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(true),
        Err(e) => Err(e.to_string()),
    }
}

/// [`try_add_overlay_address`], waiting up to 30 s for the device.
fn add_overlay_address(cfg: &Config, id: &NodeId) -> Result<(), String> {
    let t = Instant::now();
    loop {
        if try_add_overlay_address(&cfg.tun, id)? {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(30) {
            return Err(format!("device {} not found", cfg.tun));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sleeps up to `wait` for a link or app event (`wake`), a message on the fib ring, or the
/// dataplane's exit.
fn sleep_until_event(dp: &mut DataplaneLink, wake: &OwnedFd, wait: Duration) {
    use rustix::event::{PollFd, PollFlags, poll};
    if wait.is_zero() {
        return;
    }
    let ts = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: wait.as_nanos() as i64,
    };
    let armed = dp.fib().map(|f| f.arm());
    if matches!(armed, Some(Ok(false)) | Some(Err(_))) {
        // Messages are waiting (or the ring needs a look): no sleep.
        return;
    }
    {
        let (ring, exit) = dp.wait_fds();
        let mut fds: Vec<PollFd<'_>> = vec![PollFd::new(wake, PollFlags::IN)];
        for fd in [ring, exit].into_iter().flatten() {
            fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
        }
        let _ = poll(&mut fds, Some(&ts));
    }
    if let Some(f) = dp.fib() {
        f.disarm();
    }
}

/// Runs the controlplane until `stop` is set (or viscript asks it to shut down).
pub fn run(cfg: Config, stop: Arc<AtomicBool>) -> Result<(), String> {
    run_reloading(cfg, stop, None)
}

/// Who may call in: the configured neighbours, or anyone with `allow_any` (a reload changes it).
#[derive(Debug, Default)]
struct Allowed {
    any: bool,
    keys: Vec<NodeId>,
}

/// The dialers of the neighbours with an endpoint: where each dials and its stop flag.
type Dialers = HashMap<NodeId, (std::net::SocketAddr, Arc<AtomicBool>)>;

fn start_dialer(ctx: &LinkCtx, dialers: &mut Dialers, pk: NodeId, addr: std::net::SocketAddr) {
    let gone = Arc::new(AtomicBool::new(false));
    if let Some((_, old)) = dialers.insert(pk, (addr, gone.clone())) {
        old.store(true, Ordering::SeqCst);
    }
    let c = ctx.clone();
    std::thread::spawn(move || links::dial_until(c, pk, addr, gone));
}

/// [`run`], reading `reload.1` again whenever `reload.0` is set (SIGHUP): what changed is
/// applied as [`Router::reconfigure`] says; a file that does not load changes nothing.
pub fn run_reloading(
    cfg: Config,
    stop: Arc<AtomicBool>,
    reload: Option<(Arc<AtomicBool>, std::path::PathBuf)>,
) -> Result<(), String> {
    let (ident, created) = Identity::load_or_create(&cfg.key).map_err(|e| e.to_string())?;
    if created {
        tracing::info!("created identity {}", cfg.key.display());
    }
    let me = ident.id();
    tracing::info!("pk {me} address {}", me.overlay_addr());
    // The metrics endpoint first: a taken port is an error before anything else starts.
    let metrics: Option<crate::metrics::Published> = match cfg.metrics {
        None => None,
        Some(a) => {
            let l = TcpListener::bind(a).map_err(|e| format!("metrics {a}: {e}"))?;
            match l.local_addr() {
                Ok(a) => tracing::info!("metrics on http://{a}/metrics"),
                Err(e) => tracing::info!("metrics on an unknown address ({e})"),
            }
            let published = crate::metrics::Published::default();
            let p = published.clone();
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || crate::metrics::serve(l, p))
                .map_err(|e| format!("metrics thread: {e}"))?;
            Some(published)
        }
    };
    let mut dp = DataplaneLink::connect(&cfg.fib_socket, Duration::from_secs(30))?;
    // Start from a clean table: whatever a previous controlplane left refers to dead sessions.
    // A dataplane that dies meanwhile is not fatal: the loop notices it gone and programs its
    // successor from a clean table too (`handle_dataplane_back` clears first).
    if let Some(fib) = dp.fib()
        && let Err(e) = fib
            .send(&FibMsg::Clear)
            .and_then(|()| fib.commit(Duration::from_secs(5)))
    {
        tracing::warn!("fib ring: {e}; waiting for a dataplane to serve again");
    }
    add_overlay_address(&cfg, &me)?;
    let nm_cfg = nm::Config {
        cost_override: cfg
            .neighbours
            .iter()
            .filter_map(|n| n.cost_us.map(|c| (n.pk, c)))
            .collect(),
        drain: cfg.policy.drain,
        no_transit: cfg.policy.no_transit,
        route_rekey_ms: cfg.route_rekey_secs.saturating_mul(1000),
        // Route ids must not repeat across restarts (neighbours may still hold the old ones).
        first_route_counter: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
        ..nm::Config::default()
    };
    let epoch = Instant::now();
    let seed = ident.seed();
    let nm = NodeManager::new(seed, nm_cfg, 0);
    let (etx, erx) = std::sync::mpsc::sync_channel(links::LINK_EVENTS);
    let wake = links::wake_fd().map_err(|e| format!("eventfd: {e}"))?;
    let allowed = Arc::new(std::sync::RwLock::new(Allowed {
        any: cfg.allow_any,
        keys: cfg.neighbours.iter().map(|n| n.pk).collect(),
    }));
    let may_call = allowed.clone();
    let ctx = LinkCtx {
        id: Arc::new(ident),
        data_port: cfg.data_port,
        data_shards: cfg.data_shards,
        keepalive: Duration::from_millis(cfg.keepalive_ms),
        dead_after: cfg.dead_after,
        allowed: Arc::new(move |p| {
            let a = may_call.read().unwrap_or_else(|e| e.into_inner());
            a.any || a.keys.contains(p)
        }),
        events: etx,
        wake: wake.clone(),
        next_session: Arc::new(AtomicU32::new(1)),
        next_link: Arc::new(AtomicU64::new(1)),
        linked: Default::default(),
        stop: stop.clone(),
    };
    let listener =
        TcpListener::bind(cfg.listen).map_err(|e| format!("listen {}: {e}", cfg.listen))?;
    let c = ctx.clone();
    let link_stats = Arc::new(crate::accept::ListenerStats::default());
    {
        let st = link_stats.clone();
        std::thread::spawn(move || links::listen_with(c, listener, links::LISTEN_LIMITS, st));
    }
    let mut services_tx = None;
    let (offered_tx, offered_rx) = channel::<crate::msgclient::Offered>();
    if !cfg.messengers.is_empty() {
        let (stx, srx) = channel();
        services_tx = Some(stx);
        let wanted: Vec<NodeId> = cfg
            .neighbours
            .iter()
            .filter(|n| n.endpoint.is_none())
            .map(|n| n.pk)
            .collect();
        crate::msgclient::spawn(
            seed,
            cfg.messengers.clone(),
            cfg.advertise.clone(),
            cfg.services.clone(),
            wanted,
            ctx.clone(),
            srx,
            offered_tx,
        )?;
    }
    let mut dialers = Dialers::new();
    for n in &cfg.neighbours {
        if let Some(addr) = n.endpoint {
            start_dialer(&ctx, &mut dialers, n.pk, addr);
        }
    }
    let app_socket = cfg.app_socket.clone();
    let tun = cfg.tun.clone();
    let mut address_pending = false;
    let messenger = services_tx.is_some();
    let mut d = Driver {
        router: Router::new(cfg, me, nm, epoch, messenger),
        dp,
        handles: HashMap::new(),
        services_tx,
        last_routes: Vec::new(),
        last_dataplane: Vec::new(),
    };
    let (app_tx, app_rx) = channel();
    let app_stats = Arc::new(crate::accept::ListenerStats::default());
    let app_listener = appsock::bind(&app_socket)
        .map_err(|e| format!("app socket {}: {e}", app_socket.display()))?;
    {
        let w = wake.clone();
        let st = app_stats.clone();
        std::thread::spawn(move || {
            appsock::serve_with(app_listener, app_tx, w, appsock::APP_LIMITS, st)
        });
    }
    let session = match signal::Client::from_env() {
        Ok(Some(c)) => c
            .register("skywire-control", env!("CARGO_PKG_VERSION"))
            .ok(),
        _ => None,
    };
    let mut published: HashMap<String, Arc<AtomicU64>> = HashMap::new();
    let mut last_report = Instant::now();
    let mut last_touch = Instant::now();
    // The `routes` and `peers` views, refreshed every second, answered from viscript's thread.
    let views: Arc<std::sync::Mutex<(String, String)>> =
        Arc::new(std::sync::Mutex::new((String::new(), String::new())));
    if let Some(s) = &session {
        let v = views.clone();
        s.on_query(
            "routes",
            Box::new(move || v.lock().map(|g| g.0.clone()).unwrap_or_default()),
        );
        let v = views.clone();
        s.on_query(
            "peers",
            Box::new(move || v.lock().map(|g| g.1.clone()).unwrap_or_default()),
        );
    }
    while !stop.load(Ordering::SeqCst) {
        if let Some(s) = &session
            && s.shutdown_requested().is_some()
        {
            s.ack_shutdown();
            break;
        }
        let now = Instant::now();
        if d.watch_dataplane(now) {
            address_pending = true;
        }
        if address_pending {
            match try_add_overlay_address(&tun, &me) {
                Ok(done) => address_pending = !done,
                Err(e) => {
                    tracing::warn!("overlay address on {tun}: {e}");
                    address_pending = false;
                }
            }
        }
        if let Some((flag, path)) = &reload
            && flag.swap(false, Ordering::SeqCst)
        {
            match Config::load(path) {
                Err(e) => tracing::warn!("reload refused, the running config stays: {e}"),
                Ok(new) => {
                    let r = d.router.reconfigure(now, &new);
                    if let Ok(mut a) = allowed.write() {
                        a.any = new.allow_any;
                        a.keys = new.neighbours.iter().map(|n| n.pk).collect();
                    }
                    for pk in &r.removed {
                        if let Some((_, gone)) = dialers.remove(pk) {
                            gone.store(true, Ordering::SeqCst);
                        }
                    }
                    for (pk, endpoint) in r.added.iter().chain(&r.moved) {
                        match endpoint {
                            Some(addr) => start_dialer(&ctx, &mut dialers, *pk, *addr),
                            None => {
                                if let Some((_, gone)) = dialers.remove(pk) {
                                    gone.store(true, Ordering::SeqCst);
                                }
                                if messenger {
                                    tracing::warn!(
                                        "neighbour {pk:?} has no endpoint: it is looked up \
                                         through the messengers from the next start (until \
                                         then it may call in)"
                                    );
                                }
                            }
                        }
                    }
                    tracing::info!("config reloaded from {}: {}", path.display(), r.summary());
                    d.outputs();
                }
            }
        }
        let mut busy = false;
        for (i, ev) in erx.try_iter().enumerate() {
            d.link_event(now, ev);
            if i + 1 >= EVENTS_PER_TURN {
                busy = true;
                break;
            }
        }
        for o in offered_rx.try_iter().take(EVENTS_PER_TURN) {
            let line = match d.router.choose_service(&o.candidates) {
                Some((pk, port)) => format!("ok {} {port}", pk.hex()),
                None => format!("err no node offers {:?}", o.kind),
            };
            let _ = o.reply.send(line);
        }
        for (i, ev) in app_rx.try_iter().enumerate() {
            d.app_event(now, ev);
            if i + 1 >= EVENTS_PER_TURN {
                busy = true;
                break;
            }
        }
        d.router.handle_timeout(now);
        d.outputs();
        d.punts(now);
        d.router.flush();
        d.outputs();
        if last_touch.elapsed() >= Duration::from_secs(1) {
            last_touch = Instant::now();
            d.counters(now);
            d.router.handle_second(now);
            d.router.flush();
            d.outputs();
            if let Ok(mut v) = views.lock() {
                *v = (d.router.routes_text(now), d.router.peers_text());
            }
            if let Some(m) = &metrics {
                let snap = Arc::new(crate::metrics::Snapshot {
                    uptime: now.saturating_duration_since(epoch),
                    dataplane_up: d.dp.fib().is_some(),
                    report: d.router.report(),
                    links: d.router.link_samples(),
                    neighbours_down: d.router.neighbours_down(),
                    routes: d.router.route_counts(now),
                    route_traffic: d.last_routes.clone(),
                    dataplane: d.last_dataplane.clone(),
                    link_listener: link_stats.snapshot(),
                    app_socket: app_stats.snapshot(),
                });
                // Built outside the lock; the swap is all the metrics thread can wait for.
                if let Ok(mut g) = m.lock() {
                    *g = Some(snap);
                }
            }
        }
        // Sleep until a link event, a message from the dataplane, or the router's next timer
        // (at most TURN).
        let now = Instant::now();
        let wait = d
            .router
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(TURN)
            .min(TURN);
        let wait = if busy {
            // Events are still queued: no sleep.
            Duration::ZERO
        } else if d.dp.fib().is_some() {
            wait
        } else {
            wait.min(crate::dataplane_link::RETRY)
        };
        sleep_until_event(&mut d.dp, &wake, wait);
        let mut drain = [0u8; 8];
        let _ = rustix::io::read(&*wake, &mut drain);
        if let Some(s) = &session
            && last_report.elapsed() >= Duration::from_millis(500)
        {
            last_report = Instant::now();
            let listeners = link_stats
                .snapshot()
                .named("link_listener")
                .into_iter()
                .chain(app_stats.snapshot().named("app_socket"));
            for (k, v) in d.router.report().into_iter().chain(listeners) {
                published
                    .entry(k.clone())
                    .or_insert_with(|| s.counter(&k))
                    .store(v, Ordering::Relaxed);
            }
        }
    }
    let _ = std::fs::remove_file(&app_socket);
    stop.store(true, Ordering::SeqCst);
    Ok(())
}
