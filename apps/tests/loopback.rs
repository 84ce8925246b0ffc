//! The two binaries on loopback: SOCKS5 CONNECT by IPv4 and by name, the error replies, access
//! control, username/password, curl (when installed) and the client relay.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running binary, killed when dropped.
struct App {
    child: Child,
    addr: SocketAddr,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` and reads the address it listens on from its first line of output.
fn start(bin: &str, args: &[&str]) -> App {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split([' ', ',']).next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .parse()
        .unwrap();
    App { child, addr }
}

/// A server on 127.0.0.1 whose destination filter lets it reach the test's targets there.
fn server(extra: &[&str]) -> App {
    let mut args = vec!["--allow-dst", "127.0.0.0/8", "--allow-dst", "::1"];
    args.extend_from_slice(extra);
    server_default_dst(&args)
}

/// A server on 127.0.0.1 with the default destination filter.
fn server_default_dst(extra: &[&str]) -> App {
    let mut args = vec![
        "sockssrv0",
        "127.0.0.1:7100",
        "0",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    start(env!("CARGO_BIN_EXE_skywire-socks-server"), &args)
}

/// An echo server on 127.0.0.1: echoes until EOF, then closes its write half.
fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    a
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Reads one SOCKS5 reply; returns its code.
fn read_reply(s: &mut TcpStream) -> u8 {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if let Some(((code, _), used)) = apps::socks::parse_reply(&buf).unwrap() {
            assert_eq!(used, buf.len());
            return code;
        }
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed before a whole reply");
        buf.push(b[0]);
    }
}

/// Greeting with `methods`; returns the selected method.
fn greet(s: &mut TcpStream, methods: &[u8]) -> u8 {
    let mut g = vec![5, methods.len() as u8];
    g.extend_from_slice(methods);
    s.write_all(&g).unwrap();
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).unwrap();
    assert_eq!(sel[0], 5);
    sel[1]
}

fn request(s: &mut TcpStream, cmd: u8, target: apps::socks::Target) -> u8 {
    let r = apps::socks::Request {
        command: apps::socks::Command::from_byte(cmd),
        target,
    };
    s.write_all(&r.encode()).unwrap();
    read_reply(s)
}

fn ip(a: SocketAddr) -> apps::socks::Target {
    apps::socks::Target::Ip(a)
}

/// Sends a message, half-closes, and expects the echo followed by EOF.
fn check_echo(mut s: TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, msg);
}

#[test]
fn connect_by_ipv4_and_by_name() {
    let e = echo();
    let srv = server(&["--allow-all"]);
    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[0]), 0);
    assert_eq!(request(&mut s, 1, ip(e)), 0);
    check_echo(s, b"hello through socks");

    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[2, 0]), 0);
    let name = apps::socks::Target::Domain("localhost".into(), e.port());
    assert_eq!(request(&mut s, 1, name), 0);
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    // Write and read concurrently: the echo would stall a writer that never reads.
    let mut w = s.try_clone().unwrap();
    let data = big.clone();
    let t = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    assert_eq!(got, big);

    // Greeting, request and payload in one segment: the early bytes are forwarded.
    let mut s = connect(srv.addr);
    let mut all = vec![5, 1, 0];
    all.extend(
        apps::socks::Request {
            command: apps::socks::Command::Connect,
            target: ip(e),
        }
        .encode(),
    );
    all.extend_from_slice(b"early");
    s.write_all(&all).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(&got[..2], &[5, 0]);
    let ((code, _), used) = apps::socks::parse_reply(&got[2..]).unwrap().unwrap();
    assert_eq!(code, 0);
    assert_eq!(&got[2 + used..], b"early");
}

#[test]
fn udp_associate_relays_datagrams_for_the_control_connection_only() {
    use std::net::UdpSocket;
    let srv = server(&["--allow-all"]);
    // A UDP echo server (the target).
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut b) {
            let _ = echo.send_to(&b[..n], from);
        }
    });
    let me = UdpSocket::bind("127.0.0.1:0").unwrap();
    me.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ctl = connect(srv.addr);
    assert_eq!(greet(&mut ctl, &[0]), 0);
    let r = apps::socks::Request {
        command: apps::socks::Command::UdpAssociate,
        target: ip(SocketAddr::new("0.0.0.0".parse().unwrap(), 0)),
    };
    ctl.write_all(&r.encode()).unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    let relay = loop {
        if let Some(((code, t), _)) = apps::socks::parse_reply(&buf).unwrap() {
            assert_eq!(code, 0, "UDP ASSOCIATE refused");
            match t {
                apps::socks::Target::Ip(a) => break a,
                other => panic!("bound address {other}"),
            }
        }
        assert_eq!(ctl.read(&mut b).unwrap(), 1);
        buf.push(b[0]);
    };
    let datagram = |payload: &[u8]| {
        let mut v = Vec::new();
        apps::socks::udp_header_into(target, &mut v);
        v.extend_from_slice(payload);
        v
    };
    // Out and back, with the header naming the target as the source.
    me.send_to(&datagram(b"ping over udp"), relay).unwrap();
    let mut got = [0u8; 2048];
    let (n, from) = me.recv_from(&mut got).unwrap();
    assert_eq!(from, relay);
    let (frag, src, at) = apps::socks::parse_udp(&got[..n]).unwrap();
    assert_eq!((frag, src), (0, ip(target)));
    assert_eq!(&got[at..n], b"ping over udp");
    // A fragment and a malformed datagram are dropped; the next good one still goes through.
    let mut frag = datagram(b"fragment");
    frag[2] = 1;
    me.send_to(&frag, relay).unwrap();
    me.send_to(&[0, 0], relay).unwrap();
    me.send_to(&datagram(b"second"), relay).unwrap();
    let (n, _) = me.recv_from(&mut got).unwrap();
    let (_, _, at) = apps::socks::parse_udp(&got[..n]).unwrap();
    assert_eq!(&got[at..n], b"second");
    // Another port (not the client's) is ignored.
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    other
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    other.send_to(&datagram(b"stranger"), relay).unwrap();
    me.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        other.recv_from(&mut got).is_err(),
        "a stranger got an answer"
    );
    assert!(
        me.recv_from(&mut got).is_err(),
        "a stranger's datagram was relayed"
    );
    // The association ends with the control connection.
    drop(ctl);
    std::thread::sleep(Duration::from_millis(300));
    me.send_to(&datagram(b"after"), relay).unwrap();
    assert!(me.recv_from(&mut got).is_err(), "relayed after the end");
}

#[test]
fn local_destinations_are_refused_by_default() {
    use std::net::UdpSocket;
    let e = echo();
    let srv = server_default_dst(&["--allow-all", "--allow-private"]);
    // By address, by a name that resolves to loopback, and the metadata address: 0x02.
    for t in [
        ip(e),
        apps::socks::Target::Domain("localhost".into(), e.port()),
        ip(SocketAddr::new("::1".parse().unwrap(), e.port())),
        ip("169.254.169.254:80".parse().unwrap()),
        ip(format!("[::ffff:127.0.0.1]:{}", e.port()).parse().unwrap()),
        ip("[fd73:6b79::1]:80".parse().unwrap()),
    ] {
        let mut s = connect(srv.addr);
        assert_eq!(greet(&mut s, &[0]), 0);
        assert_eq!(request(&mut s, 1, t.clone()), 0x02, "{t}");
    }
    // A datagram to a loopback target is dropped.
    let uecho = UdpSocket::bind("127.0.0.1:0").unwrap();
    uecho
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let me = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut ctl = connect(srv.addr);
    assert_eq!(greet(&mut ctl, &[0]), 0);
    let r = apps::socks::Request {
        command: apps::socks::Command::UdpAssociate,
        target: ip(me.local_addr().unwrap()),
    };
    ctl.write_all(&r.encode()).unwrap();
    let mut got = [0u8; 64];
    let mut n = 0;
    let relay = loop {
        if let Some(((code, apps::socks::Target::Ip(a)), _)) =
            apps::socks::parse_reply(&got[..n]).unwrap()
        {
            assert_eq!(code, 0);
            break a;
        }
        assert!(n < got.len(), "no UDP ASSOCIATE reply");
        let m = ctl.read(&mut got[n..]).unwrap();
        assert!(m > 0, "closed before the reply");
        n += m;
    };
    let mut d = Vec::new();
    apps::socks::udp_header_into(uecho.local_addr().unwrap(), &mut d);
    d.extend_from_slice(b"to loopback");
    me.send_to(&d, relay).unwrap();
    let mut b = [0u8; 64];
    assert!(
        uecho.recv_from(&mut b).is_err(),
        "a datagram reached a loopback target"
    );
    // --allow-dst opens exactly its prefix.
    let srv = server_default_dst(&["--allow-all", "--allow-dst", "127.0.0.1/32"]);
    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[0]), 0);
    assert_eq!(request(&mut s, 1, ip(e)), 0);
    check_echo(s, b"allowed by --allow-dst");
    let other = SocketAddr::new("127.0.0.2".parse().unwrap(), e.port());
    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[0]), 0);
    assert_eq!(request(&mut s, 1, ip(other)), 0x02);
}

#[test]
fn error_replies() {
    let srv = server(&["--allow-all"]);
    // Unknown address type: 0x08.
    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[0]), 0);
    s.write_all(&[5, 1, 0, 9, 1, 2, 3, 4]).unwrap();
    assert_eq!(read_reply(&mut s), 0x08);
    // BIND: 0x07.
    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[0]), 0);
    assert_eq!(request(&mut s, 2, ip("127.0.0.1:1".parse().unwrap())), 0x07);
    // Nonzero reserved byte: general failure.
    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[0]), 0);
    s.write_all(&[5, 1, 7, 1, 127, 0, 0, 1, 0, 80]).unwrap();
    assert_eq!(read_reply(&mut s), 0x01);
    // Only username/password offered to a server without it: 0xFF.
    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[2]), 0xFF);
    // A closed port: connection refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[0]), 0);
    assert_eq!(request(&mut s, 1, ip(closed)), 0x05);
    // SOCKS4: closed without an answer.
    let mut s = connect(srv.addr);
    s.write_all(&[4, 1, 0, 80, 127, 0, 0, 1, 0]).unwrap();
    let mut b = Vec::new();
    assert_eq!(s.read_to_end(&mut b).unwrap(), 0);
}

#[test]
fn only_allowed_nodes_are_served() {
    let e = echo();
    let pk = "ab".repeat(32);
    let srv = server(&["--allow", &pk]);
    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[0]), 0);
    assert_eq!(request(&mut s, 1, ip(e)), 0x02);
    let mut b = Vec::new();
    assert_eq!(s.read_to_end(&mut b).unwrap(), 0);
}

#[test]
fn username_and_password() {
    let e = echo();
    let srv = server(&["--allow-all", "--user", "alice", "--pass", "s3cret"]);
    let auth = |user: &[u8], pass: &[u8]| {
        let mut s = connect(srv.addr);
        assert_eq!(greet(&mut s, &[0, 2]), 2);
        let a = apps::socks::AuthRequest {
            user: user.to_vec(),
            pass: pass.to_vec(),
        };
        s.write_all(&a.encode()).unwrap();
        let mut st = [0u8; 2];
        s.read_exact(&mut st).unwrap();
        assert_eq!(st[0], 1);
        (s, st[1])
    };
    let (mut s, status) = auth(b"alice", b"wrong");
    assert_eq!(status, 0x01);
    let mut b = Vec::new();
    assert_eq!(s.read_to_end(&mut b).unwrap(), 0);
    let (_, status) = auth(b"bob", b"s3cret");
    assert_eq!(status, 0x01);
    let (mut s, status) = auth(b"alice", b"s3cret");
    assert_eq!(status, 0x00);
    assert_eq!(request(&mut s, 1, ip(e)), 0);
    check_echo(s, b"authenticated");
    // Not offering username/password: no acceptable method.
    let mut s = connect(srv.addr);
    assert_eq!(greet(&mut s, &[0]), 0xFF);
}

#[test]
fn curl_through_the_server() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl not installed; skipping the curl check");
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let http = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let body = "hello from the far side\n";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let srv = server(&["--allow-all"]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--socks5-hostname",
            &srv.addr.to_string(),
            &format!("http://localhost:{}/", http.port()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello from the far side\n");
}

#[test]
fn the_client_relays_to_the_server() {
    let e = echo();
    let srv = server(&["--allow-all"]);
    let upstream = srv.addr.to_string();
    let cli = start(
        env!("CARGO_BIN_EXE_skywire-socks-client"),
        &[
            "sockscli0",
            "127.0.0.1:7100",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &upstream,
        ],
    );
    for _ in 0..3 {
        let mut s = connect(cli.addr);
        assert_eq!(greet(&mut s, &[0]), 0);
        assert_eq!(request(&mut s, 1, ip(e)), 0);
        check_echo(s, b"via the client and the server");
    }
}

#[test]
fn bad_invocations_say_what_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_skywire-socks-client"))
        .args([
            "sockscli0",
            "127.0.0.1:7100",
            "0",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no socks server: give --server"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_skywire-socks-server"))
        .args([
            "sockssrv0",
            "127.0.0.1:7100",
            "0",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-all"));
    let out = Command::new(env!("CARGO_BIN_EXE_skywire-socks-server"))
        .args([
            "sockssrv0",
            "x",
            "0",
            "--key",
            "/nonexistent/node.key",
            "--allow-all",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keygen"));
}
