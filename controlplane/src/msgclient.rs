//! The controlplane's messenger client: publishes this node's record (control endpoints) with
//! every configured messenger, and finds neighbours configured by public key alone, then dials
//! them. Runs on its own thread; established links never depend on it (when every messenger is
//! down the client answers from its cache, and links and routes stay up).

use crate::identity::{Identity, NodeId};
use crate::links::{self, LinkCtx};
use crate::messenger::{ClientConfig, ClientEvent, MessengerClient, net};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

/// How often a missing messenger connection is retried.
const RECONNECT: Duration = Duration::from_secs(1);
/// How often an unresolved neighbour is looked up again.
const RELOOKUP: Duration = Duration::from_secs(2);
/// How long an app's service query may wait for the messengers.
const FIND_WAIT: Duration = Duration::from_secs(4);

/// What the driver asks of the messenger client for the apps.
pub enum AppMsg {
    /// Publish these services (the configured ones plus the apps').
    Services(Vec<crate::messenger::Service>),
    /// Find a node offering `kind`; the reply line (`ok <pk> <port>` or `err ...`) goes to the
    /// sender.
    Find(String, Sender<String>),
}

/// What the messengers offered for a `find`: the router chooses among them (by route, not by
/// key order) and answers `reply`.
pub struct Offered {
    /// The service kind.
    pub kind: String,
    /// Nodes offering it (never this node), with their ports.
    pub candidates: Vec<(NodeId, u16)>,
    /// Where the answer line goes.
    pub reply: Sender<String>,
}

enum Inbound {
    Msg(NodeId, Vec<u8>),
    Gone(NodeId),
}

/// Starts the client thread.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    seed: [u8; 32],
    messengers: Vec<(NodeId, SocketAddr)>,
    advertise: Vec<SocketAddr>,
    services: Vec<crate::messenger::Service>,
    wanted: Vec<NodeId>,
    ctx: LinkCtx,
    updates: Receiver<AppMsg>,
    offered: Sender<Offered>,
) -> Result<(), String> {
    let id = Identity::from_seed(seed)?;
    let seq_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let cfg = ClientConfig::new(messengers.iter().map(|(pk, _)| *pk).collect(), seq_start);
    let client = MessengerClient::new(Identity::from_seed(seed)?, cfg);
    std::thread::Builder::new()
        .name("messenger".into())
        .spawn(move || {
            run(
                id, client, messengers, advertise, services, wanted, ctx, updates, offered,
            )
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run(
    id: Identity,
    mut client: MessengerClient,
    messengers: Vec<(NodeId, SocketAddr)>,
    advertise: Vec<SocketAddr>,
    services: Vec<crate::messenger::Service>,
    wanted: Vec<NodeId>,
    ctx: LinkCtx,
    updates: Receiver<AppMsg>,
    offered: Sender<Offered>,
) {
    let me = id.id();
    let mut finds: Vec<(String, Sender<String>, Instant)> = Vec::new();
    let epoch = Instant::now();
    let now = || epoch.elapsed().as_millis() as u64;
    if let Err(e) = client.set_record(now(), advertise.clone(), services) {
        tracing::error!("messenger record: {e}");
    }
    let (tx, rx): (Sender<Inbound>, Receiver<Inbound>) = channel();
    let mut conns: HashMap<NodeId, Arc<net::Connection>> = HashMap::new();
    let mut last_try: HashMap<NodeId, Instant> = HashMap::new();
    let mut resolved: HashSet<NodeId> = HashSet::new();
    let mut last_lookup = Instant::now() - RELOOKUP;
    while !ctx.stop.load(Ordering::SeqCst) {
        for (pk, addr) in &messengers {
            if conns.contains_key(pk) || last_try.get(pk).is_some_and(|t| t.elapsed() < RECONNECT) {
                continue;
            }
            last_try.insert(*pk, Instant::now());
            match net::connect(*addr, *pk, &id) {
                Ok(c) => {
                    let c = Arc::new(c);
                    conns.insert(*pk, c.clone());
                    client.connected(now(), *pk);
                    let tx = tx.clone();
                    let pk = *pk;
                    std::thread::spawn(move || {
                        loop {
                            match c.recv() {
                                Ok(b) => {
                                    if tx.send(Inbound::Msg(pk, b)).is_err() {
                                        return;
                                    }
                                }
                                Err(_) => {
                                    let _ = tx.send(Inbound::Gone(pk));
                                    return;
                                }
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!("messenger {pk:?} at {addr}: {e}"),
            }
        }
        while let Ok(m) = rx.recv_timeout(Duration::from_millis(50)) {
            match m {
                Inbound::Msg(pk, b) => client.handle(now(), pk, &b),
                Inbound::Gone(pk) => {
                    conns.remove(&pk);
                    client.disconnected(now(), pk);
                }
            }
        }
        // Services apps published or withdrew through the app socket, and their queries.
        let mut latest = None;
        while let Ok(m) = updates.try_recv() {
            match m {
                AppMsg::Services(s) => latest = Some(s),
                AppMsg::Find(kind, reply) => {
                    client.query(now(), &kind);
                    finds.push((kind, reply, Instant::now()));
                }
            }
        }
        finds.retain(|(kind, reply, t)| {
            if t.elapsed() < FIND_WAIT {
                return true;
            }
            let _ = reply.send(format!("err no answer about {kind:?} from the messengers"));
            false
        });
        if let Some(s) = latest
            && let Err(e) = client.set_record(now(), advertise.clone(), s)
        {
            tracing::error!("messenger record: {e}");
        }
        if last_lookup.elapsed() >= RELOOKUP {
            last_lookup = Instant::now();
            for pk in wanted.iter().filter(|p| !resolved.contains(p)) {
                client.lookup(now(), *pk);
            }
        }
        client.tick(now());
        while let Some((to, bytes)) = client.poll_transmit() {
            if let Some(c) = conns.get(&to)
                && c.send(&bytes).is_err()
            {
                conns.remove(&to);
                client.disconnected(now(), to);
            }
        }
        while let Some(ev) = client.poll_event() {
            if let ClientEvent::Services { kind, records, .. } = &ev {
                let candidates: Vec<(NodeId, u16)> = records
                    .iter()
                    .filter(|r| r.pk != me)
                    .filter_map(|r| {
                        r.services
                            .iter()
                            .find(|s| s.kind == *kind)
                            .map(|s| (r.pk, s.port))
                    })
                    .collect();
                finds.retain(|(k, reply, _)| {
                    if k != kind {
                        return true;
                    }
                    if candidates.is_empty() {
                        let _ = reply.send(format!("err no node offers {kind:?}"));
                    } else {
                        let o = Offered {
                            kind: kind.clone(),
                            candidates: candidates.clone(),
                            reply: reply.clone(),
                        };
                        if offered.send(o).is_ok() {
                            ctx.ring();
                        }
                    }
                    false
                });
            }
            if let ClientEvent::Found { record, .. } = ev
                && wanted.contains(&record.pk)
                && !resolved.contains(&record.pk)
                && let Some(addr) = record.endpoints.first().copied()
            {
                resolved.insert(record.pk);
                tracing::info!("found {} at {addr} through the messenger", record.pk.hex());
                let c = ctx.clone();
                let pk = record.pk;
                std::thread::spawn(move || links::dial(c, pk, addr));
            }
        }
    }
}
