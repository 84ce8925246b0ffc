//! The link handshake: Noise XX (X25519, ChaCha20-Poly1305, BLAKE2s) between two routers, with
//! each side's static key bound to its Ed25519 identity, and the dataplane keys derived from it.
//!
//! Sans-IO: feed it the peer's handshake messages, send what it returns. Over TCP each message
//! is framed as `u16 length | bytes` by the driver.
//!
//! ```text
//! initiator                          responder
//!   -> e
//!                                     <- e, ee, s, es, {pk_R, params_R}
//!   -> s, se, {pk_I, params_I}
//! ```
//! Each side checks that the peer's Noise static key is the X25519 form of the Ed25519 key it
//! claims (and, for the initiator, that it is the key it dialled; for the responder, that the
//! caller is allowed). Data keys: HKDF-SHA256 over the Noise split keys with the handshake hash
//! as salt, one key per direction, distinct from the control channel's keys.

use crate::identity::{Identity, NodeId, PublicKey};
use ring::hkdf;
use std::net::{IpAddr, SocketAddr};

/// The Noise protocol name.
pub const NOISE: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// Bound into every handshake.
const PROLOGUE: &[u8] = b"skywire link v1";
/// Longest Noise message.
pub const MAX_MSG: usize = 65535;

/// What each side tells the other about its dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkParams {
    /// The session index this side's dataplane will accept frames on.
    pub session_id: u32,
    /// Where this side's dataplane listens (base port).
    pub data_endpoint: SocketAddr,
    /// How many shards (ports) it has.
    pub data_shards: u16,
    /// Whether this side's CPU has AES instructions (AES-256-GCM is used only when both do,
    /// else ChaCha20-Poly1305).
    pub aes: bool,
}

impl LinkParams {
    /// The data cipher both sides will use.
    pub fn cipher_with(&self, other: &LinkParams) -> dataplane::wire::Cipher {
        if self.aes && other.aes {
            dataplane::wire::Cipher::Aes256Gcm
        } else {
            dataplane::wire::Cipher::ChaCha20Poly1305
        }
    }
}

impl LinkParams {
    fn encode(&self, pk: &NodeId) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&pk.0);
        v.extend_from_slice(&self.session_id.to_le_bytes());
        match self.data_endpoint.ip() {
            IpAddr::V4(a) => {
                v.push(4);
                v.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                v.push(6);
                v.extend_from_slice(&a.octets());
            }
        }
        v.extend_from_slice(&self.data_endpoint.port().to_le_bytes());
        v.extend_from_slice(&self.data_shards.to_le_bytes());
        v.push(u8::from(self.aes));
        v
    }

    fn decode(b: &[u8]) -> Result<(NodeId, LinkParams), LinkError> {
        let bad = || LinkError::Payload;
        let pk: [u8; 32] = b.get(..32).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
        let session_id = u32::from_le_bytes(
            b.get(32..36)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let (ip, rest) = match b.get(36) {
            Some(4) => {
                let o: [u8; 4] = b
                    .get(37..41)
                    .ok_or_else(bad)?
                    .try_into()
                    .map_err(|_| bad())?;
                (IpAddr::from(o), 41)
            }
            Some(6) => {
                let o: [u8; 16] = b
                    .get(37..53)
                    .ok_or_else(bad)?
                    .try_into()
                    .map_err(|_| bad())?;
                (IpAddr::from(o), 53)
            }
            _ => return Err(bad()),
        };
        let port = u16::from_le_bytes(
            b.get(rest..rest + 2)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let shards = u16::from_le_bytes(
            b.get(rest + 2..rest + 4)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let aes = match b.get(rest + 4) {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(bad()),
        };
        if b.len() != rest + 5 {
            return Err(bad());
        }
        Ok((
            NodeId(pk),
            LinkParams {
                session_id,
                data_endpoint: SocketAddr::new(ip, port),
                data_shards: shards,
                aes,
            },
        ))
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Noise refused a message (tampered, wrong keys, out of order).
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
    /// The payload is not a valid identity + parameters.
    #[error("malformed handshake payload")]
    Payload,
    /// The peer's Noise key is not the one its claimed identity implies.
    #[error("peer's noise key does not belong to the identity it claims")]
    KeyMismatch,
    /// The peer is not who we dialled.
    #[error("expected {expected:?}, reached {got:?}")]
    WrongPeer {
        /// Dialled.
        expected: NodeId,
        /// Answered.
        got: NodeId,
    },
    /// The caller is not allowed to link with us.
    #[error("{0:?} is not allowed to link")]
    NotAllowed(NodeId),
    /// A message arrived when none was expected.
    #[error("unexpected handshake message")]
    Unexpected,
}

/// A finished handshake.
pub struct Established {
    /// Who the peer is (authenticated).
    pub peer: NodeId,
    /// What it told us about its dataplane.
    pub peer_params: LinkParams,
    /// Our parameters (as sent).
    pub local_params: LinkParams,
    /// Whether we initiated.
    pub initiator: bool,
    /// The encrypted control channel.
    pub transport: snow::TransportState,
    /// Dataplane key for frames we send.
    pub data_tx: [u8; 32],
    /// Dataplane key for frames we receive.
    pub data_rx: [u8; 32],
}

impl std::fmt::Debug for Established {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established")
            .field("peer", &self.peer)
            .field("peer_params", &self.peer_params)
            .finish_non_exhaustive()
    }
}

/// What to do after feeding a message.
#[derive(Debug)]
pub enum Step {
    /// Send this and wait for the next message.
    Send(Vec<u8>),
    /// Done (the initiator sends its last message first).
    Done(Option<Vec<u8>>, Box<Established>),
}

/// A handshake in progress.
pub struct Handshake {
    hs: snow::HandshakeState,
    initiator: bool,
    me: NodeId,
    local: LinkParams,
    expect: Option<NodeId>,
    step: u8,
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(split: ([u8; 32], [u8; 32]), hash: &[u8]) -> ([u8; 32], [u8; 32]) {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, hash);
    let mut ikm = [0u8; 64];
    ikm[..32].copy_from_slice(&split.0);
    ikm[32..].copy_from_slice(&split.1);
    let prk = salt.extract(&ikm);
    let mut out = [[0u8; 32]; 2];
    for (o, label) in out
        .iter_mut()
        .zip([&b"skywire data i->r"[..], &b"skywire data r->i"[..]])
    {
        let info = [label];
        // Expanding 32 bytes from HKDF-SHA256 cannot fail (limit is 255 * 32).
        if let Ok(okm) = prk.expand(&info, Len(32)) {
            let _ = okm.fill(o);
        }
    }
    (out[0], out[1])
}

/// The data key of generation `generation` derived from the previous one (both ends derive the same:
/// one side's send key is the other's receive key). A ratchet for key rotation by time and
/// volume; it does not add forward secrecy against a compromise of the current key (a new
/// handshake does).
pub fn next_key(k: &[u8; 32], generation: u32) -> [u8; 32] {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"skywire rekey");
    let prk = salt.extract(k);
    let g = generation.to_le_bytes();
    let info = [&g[..]];
    let mut out = [0u8; 32];
    // Expanding 32 bytes from HKDF-SHA256 cannot fail (limit is 255 * 32).
    if let Ok(okm) = prk.expand(&info, Len(32)) {
        let _ = okm.fill(&mut out);
    }
    out
}

impl Handshake {
    fn builder(id: &Identity) -> Result<snow::HandshakeState, snow::Error> {
        snow::Builder::new(NOISE.parse()?)
            .prologue(PROLOGUE)?
            .local_private_key(&id.x25519_private())?
            .build_initiator()
    }

    /// Starts a handshake towards `expect`; returns the first message to send.
    pub fn initiate(
        id: &Identity,
        local: LinkParams,
        expect: NodeId,
    ) -> Result<(Handshake, Vec<u8>), LinkError> {
        let mut hs = Self::builder(id)?;
        let mut buf = vec![0u8; MAX_MSG];
        let n = hs.write_message(&[], &mut buf)?;
        buf.truncate(n);
        Ok((
            Handshake {
                hs,
                initiator: true,
                me: id.id(),
                local,
                expect: Some(expect),
                step: 1,
            },
            buf,
        ))
    }

    /// Waits for a caller.
    pub fn respond(id: &Identity, local: LinkParams) -> Result<Handshake, LinkError> {
        let hs = snow::Builder::new(NOISE.parse()?)
            .prologue(PROLOGUE)?
            .local_private_key(&id.x25519_private())?
            .build_responder()?;
        Ok(Handshake {
            hs,
            initiator: false,
            me: id.id(),
            local,
            expect: None,
            step: 0,
        })
    }

    fn check_peer(&self, payload: &[u8]) -> Result<(NodeId, LinkParams), LinkError> {
        let (pk, params) = LinkParams::decode(payload)?;
        let want = pk.x25519_public().ok_or(LinkError::KeyMismatch)?;
        if self.hs.get_remote_static() != Some(&want[..]) {
            return Err(LinkError::KeyMismatch);
        }
        if let Some(e) = self.expect
            && e != pk
        {
            return Err(LinkError::WrongPeer {
                expected: e,
                got: pk,
            });
        }
        Ok((pk, params))
    }

    /// Feeds the peer's next message. The responder passes `allow` to decide whether a caller
    /// (known only after the last message) may link.
    pub fn read(
        mut self,
        msg: &[u8],
        allow: &dyn Fn(&NodeId) -> bool,
    ) -> Result<(Option<Handshake>, Step), LinkError> {
        let mut payload = vec![0u8; MAX_MSG];
        let mut out = vec![0u8; MAX_MSG];
        match (self.initiator, self.step) {
            // Responder: got -> e; send <- e, ee, s, es, {pk_R, params_R}.
            (false, 0) => {
                self.hs.read_message(msg, &mut payload)?;
                let n = self
                    .hs
                    .write_message(&self.local.encode(&self.me), &mut out)?;
                out.truncate(n);
                self.step = 2;
                Ok((Some(self), Step::Send(out)))
            }
            // Initiator: got <- e, ee, s, es, {..}; send -> s, se, {..}; done.
            (true, 1) => {
                let n = self.hs.read_message(msg, &mut payload)?;
                let (peer, peer_params) = self.check_peer(&payload[..n])?;
                let m = self
                    .hs
                    .write_message(&self.local.encode(&self.me), &mut out)?;
                out.truncate(m);
                let est = self.finish(peer, peer_params)?;
                Ok((None, Step::Done(Some(out), Box::new(est))))
            }
            // Responder: got -> s, se, {..}; done.
            (false, 2) => {
                let n = self.hs.read_message(msg, &mut payload)?;
                let (peer, peer_params) = self.check_peer(&payload[..n])?;
                if !allow(&peer) {
                    return Err(LinkError::NotAllowed(peer));
                }
                let est = self.finish(peer, peer_params)?;
                Ok((None, Step::Done(None, Box::new(est))))
            }
            _ => Err(LinkError::Unexpected),
        }
    }

    fn finish(mut self, peer: NodeId, peer_params: LinkParams) -> Result<Established, LinkError> {
        let hash = self.hs.get_handshake_hash().to_vec();
        let (i2r, r2i) = derive(self.hs.dangerously_get_raw_split(), &hash);
        let (data_tx, data_rx) = if self.initiator {
            (i2r, r2i)
        } else {
            (r2i, i2r)
        };
        let transport = self.hs.into_transport_mode()?;
        Ok(Established {
            peer,
            peer_params,
            local_params: self.local,
            initiator: self.initiator,
            transport,
            data_tx,
            data_rx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n: u32) -> LinkParams {
        LinkParams {
            session_id: n,
            data_endpoint: format!("10.0.0.{n}:7000").parse().unwrap(),
            data_shards: 2,
            aes: n.is_multiple_of(2),
        }
    }

    fn run(
        a: &Identity,
        b: &Identity,
        expect: NodeId,
        allow: &dyn Fn(&NodeId) -> bool,
    ) -> Result<(Established, Established), LinkError> {
        let (ha, m1) = Handshake::initiate(a, params(1), expect)?;
        let hb = Handshake::respond(b, params(2))?;
        let (hb, Step::Send(m2)) = hb.read(&m1, allow)? else {
            return Err(LinkError::Unexpected);
        };
        let (_, Step::Done(Some(m3), ea)) = ha.read(&m2, allow)? else {
            return Err(LinkError::Unexpected);
        };
        let (_, Step::Done(None, eb)) = hb.ok_or(LinkError::Unexpected)?.read(&m3, allow)? else {
            return Err(LinkError::Unexpected);
        };
        Ok((*ea, *eb))
    }

    #[test]
    fn both_sides_authenticate_and_agree_on_data_keys() {
        let a = Identity::from_seed([1; 32]).unwrap();
        let b = Identity::from_seed([2; 32]).unwrap();
        let (mut ea, mut eb) = run(&a, &b, b.id(), &|_| true).unwrap();
        assert_eq!(ea.peer, b.id());
        assert_eq!(eb.peer, a.id());
        assert_eq!(ea.peer_params, params(2));
        assert_eq!(eb.peer_params, params(1));
        assert_eq!(ea.data_tx, eb.data_rx);
        assert_eq!(ea.data_rx, eb.data_tx);
        assert_ne!(ea.data_tx, ea.data_rx);
        // The control channel works both ways.
        let mut buf = [0u8; 128];
        let mut out = [0u8; 128];
        let n = ea.transport.write_message(b"keepalive", &mut buf).unwrap();
        let m = eb.transport.read_message(&buf[..n], &mut out).unwrap();
        assert_eq!(&out[..m], b"keepalive");
        // A new handshake gives new keys.
        let (ea2, _) = run(&a, &b, b.id(), &|_| true).unwrap();
        assert_ne!(ea2.data_tx, ea.data_tx);
    }

    #[test]
    fn dialling_the_wrong_node_or_a_disallowed_caller_fails() {
        let a = Identity::from_seed([1; 32]).unwrap();
        let b = Identity::from_seed([2; 32]).unwrap();
        let c = Identity::from_seed([3; 32]).unwrap();
        assert!(matches!(
            run(&a, &b, c.id(), &|_| true),
            Err(LinkError::WrongPeer { .. })
        ));
        let a_id = a.id();
        assert!(matches!(
            run(&a, &b, b.id(), &|p| *p != a_id),
            Err(LinkError::NotAllowed(_))
        ));
    }

    #[test]
    fn claiming_someone_elses_identity_fails() {
        // c runs the handshake with its own Noise key but claims to be b.
        let a = Identity::from_seed([1; 32]).unwrap();
        let b = Identity::from_seed([2; 32]).unwrap();
        let c = Identity::from_seed([3; 32]).unwrap();
        let (ha, m1) = Handshake::initiate(&a, params(1), b.id()).unwrap();
        let mut liar = Handshake::respond(&c, params(2)).unwrap();
        liar.me = b.id();
        let (_, Step::Send(m2)) = liar.read(&m1, &|_| true).unwrap() else {
            panic!()
        };
        assert!(matches!(
            ha.read(&m2, &|_| true),
            Err(LinkError::KeyMismatch)
        ));
    }

    #[test]
    fn tampered_messages_fail() {
        let a = Identity::from_seed([1; 32]).unwrap();
        let b = Identity::from_seed([2; 32]).unwrap();
        let (ha, m1) = Handshake::initiate(&a, params(1), b.id()).unwrap();
        let hb = Handshake::respond(&b, params(2)).unwrap();
        let (_, Step::Send(mut m2)) = hb.read(&m1, &|_| true).unwrap() else {
            panic!()
        };
        let last = m2.len() - 1;
        m2[last] ^= 1;
        assert!(matches!(ha.read(&m2, &|_| true), Err(LinkError::Noise(_))));
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let b = Identity::from_seed([2; 32]).unwrap();
            let hb = Handshake::respond(&b, params(2)).unwrap();
            let _ = hb.read(&bytes, &|_| true);
            let _ = LinkParams::decode(&bytes);
        }
    }
}
