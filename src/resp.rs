//! Raw RESP2 connections for the two places a worker must wait on Redis
//! inside its own `poll(2)`: the BLOCKING doorbells and the Sentinel
//! failover watch. The `redis` crate's sync connection hides its socket, so
//! these speak the protocol themselves: a command encoder, a reply parser,
//! a connect with a timeout, keepalive, and the AUTH/SELECT handshake,
//! over TCP, unix sockets or TLS (rustls, as the `redis` crate uses it).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// TCP keepalive: these connections sit idle for as long as nothing
/// happens, so a peer that vanished without closing is found by probes
/// (after about a minute), not by a read.
const KEEPALIVE_IDLE_SECS: i32 = 30;
const KEEPALIVE_INTERVAL_SECS: i32 = 10;
const KEEPALIVE_PROBES: i32 = 3;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Host and port.
    Tcp(String, u16),
    /// A unix socket.
    Unix(PathBuf),
    /// Host and port over TLS; `insecure` skips the certificate check
    /// (`rediss://…/#insecure`).
    Tls {
        /// The host, also the name the certificate must carry.
        host: String,
        /// The port.
        port: u16,
        /// Accept any certificate.
        insecure: bool,
    },
}

impl Target {
    /// Where the `redis` crate's `addr` points.
    pub fn of(addr: &redis::ConnectionAddr) -> Option<Target> {
        match addr {
            redis::ConnectionAddr::Tcp(host, port) => Some(Target::Tcp(host.clone(), *port)),
            redis::ConnectionAddr::Unix(path) => Some(Target::Unix(path.clone())),
            redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                tls_params: None,
            } => Some(Target::Tls {
                host: host.clone(),
                port: *port,
                insecure: *insecure,
            }),
            // Client certificates or a custom CA: not supported here.
            _ => None,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(host, port) | Target::Tls { host, port, .. } => write!(f, "{host}:{port}"),
            Target::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// An open connection, non-blocking once [`Stream::connect`] returns.
pub enum Stream {
    /// Over TCP.
    Tcp(TcpStream),
    /// Over a unix socket.
    Unix(UnixStream),
    /// Over TLS on TCP.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(Vec<u8>),
    /// `-ERR …`, without the dash.
    Error(Vec<u8>),
    /// `:1`.
    Int(i64),
    /// `$3 abc`; `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*2 …`; `None` for the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a bulk or status reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(b) | Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into()),
            _ => None,
        }
    }
}

/// Encodes one command.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    header(&mut out, b'*', args.len());
    for a in args {
        bulk(&mut out, a);
    }
    out
}

/// Appends `b` as a RESP bulk string. (Without `format!`: the per-job
/// commands are built from a few dozen of these, and formatting each length
/// through `fmt` was a good part of the worker's instructions per job.)
pub fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() + 24);
    header(out, b'$', b.len());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// Appends a RESP header line: `kind` (`*` for an array, `$` for a bulk
/// string), then `n` and CRLF.
pub fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
///
/// ```
/// let mut out = b"x".to_vec();
/// resque_fork::resp::decimal(&mut out, 1_234_567);
/// assert_eq!(out, b"x1234567");
/// ```
pub fn decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(Digits::of(false, n).as_bytes());
}

/// An integer's decimal digits, on the stack.
///
/// ```
/// use resque_fork::resp::Digits;
/// assert_eq!(Digits::int(-42).as_bytes(), b"-42");
/// assert_eq!(Digits::int(i64::MIN).as_bytes(), b"-9223372036854775808");
/// ```
pub struct Digits {
    buf: [u8; 21],
    start: usize,
}

impl Digits {
    /// The digits of `n`.
    pub fn int(n: i64) -> Digits {
        Digits::of(n < 0, n.unsigned_abs())
    }

    fn of(negative: bool, mut magnitude: u64) -> Digits {
        let mut d = Digits {
            buf: [0; 21],
            start: 21,
        };
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (magnitude % 10) as u8;
            magnitude /= 10;
            if magnitude == 0 {
                break;
            }
        }
        if negative {
            d.start -= 1;
            d.buf[d.start] = b'-';
        }
        d
    }

    /// The digits, with a leading `-` when negative.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// The first complete reply in `buf` and its length, if `buf` holds one.
pub fn parse(buf: &[u8]) -> Option<(Reply, usize)> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = &buf[1..line_end];
    let after = line_end + 2;
    let number = || -> Option<i64> { std::str::from_utf8(line).ok()?.parse().ok() };
    match buf.first()? {
        b'+' => Some((Reply::Status(line.to_vec()), after)),
        b'-' => Some((Reply::Error(line.to_vec()), after)),
        b':' => Some((Reply::Int(number()?), after)),
        b'$' => {
            let n = number()?;
            if n < 0 {
                return Some((Reply::Bulk(None), after));
            }
            let end = after + usize::try_from(n).ok()?;
            (buf.len() >= end + 2).then(|| (Reply::Bulk(Some(buf[after..end].to_vec())), end + 2))
        }
        b'*' => {
            let n = number()?;
            if n < 0 {
                return Some((Reply::Array(None), after));
            }
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..n {
                let (item, len) = parse(&buf[at..])?;
                items.push(item);
                at += len;
            }
            Some((Reply::Array(Some(items)), at))
        }
        // Not RESP2: report it as an error reply so the caller drops the line.
        _ => Some((Reply::Error(line.to_vec()), after)),
    }
}

impl Stream {
    /// Connects within `timeout`, sends `setup` (AUTH, SELECT, …) and reads
    /// one reply per command; an error reply fails the connect. The stream
    /// is non-blocking afterwards.
    pub fn connect(target: &Target, timeout: Duration, setup: &[Vec<u8>]) -> io::Result<Stream> {
        let mut stream = match target {
            Target::Tcp(host, port) => {
                let s = connect_tcp(host, *port, timeout)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(timeout))?;
                keepalive(&s)?;
                Stream::Tcp(s)
            }
            Target::Tls {
                host,
                port,
                insecure,
            } => {
                let s = connect_tcp(host, *port, timeout)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                keepalive(&s)?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| io::Error::other(format!("TLS server name {host:?}: {e}")))?;
                let conn = rustls::ClientConnection::new(tls_config(*insecure)?, name)
                    .map_err(io::Error::other)?;
                let mut tls = rustls::StreamOwned::new(conn, s);
                // The handshake now, while the socket blocks: a first write
                // on the non-blocking socket would find it unfinished.
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                Stream::Tls(Box::new(tls))
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(timeout))?;
                Stream::Unix(s)
            }
        };
        for cmd in setup {
            stream.io().write_all(cmd)?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 512];
            let reply = loop {
                if let Some((reply, _)) = parse(&buf) {
                    break reply;
                }
                let n = stream.io().read(&mut chunk)?;
                if n == 0 {
                    return Err(io::Error::other(format!("{target} closed the connection")));
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            if let Reply::Error(text) = reply {
                return Err(io::Error::other(
                    String::from_utf8_lossy(&text).trim().to_string(),
                ));
            }
        }
        stream.set_nonblocking(true)?;
        Ok(stream)
    }

    /// The stream as a reader and writer.
    pub fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
            Stream::Tls(s) => s.as_mut(),
        }
    }

    /// The socket, to poll. Over TLS a readable socket may carry no whole
    /// record yet; [`Stream::read_available`] then reads nothing, which
    /// callers take as "nothing yet".
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
            Stream::Tls(s) => s.sock.as_fd(),
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
            Stream::Tls(s) => s.sock.set_nonblocking(on),
        }
    }

    /// Reads what has arrived into `buf` without blocking. `Ok(false)` when
    /// the peer closed the connection.
    pub fn read_available(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.io().read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Read and write, as one trait object.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The AUTH command for these credentials, if any.
pub fn auth(username: Option<&str>, password: Option<&str>) -> Option<Vec<u8>> {
    let pw = password?;
    Some(match username {
        Some(user) => command(&[b"AUTH", user.as_bytes(), pw.as_bytes()]),
        None => command(&[b"AUTH", pw.as_bytes()]),
    })
}

/// rustls' client settings: the system's CA store (as the `redis` crate's
/// `rediss://`), or no check at all for `#insecure`. Built once per process.
fn tls_config(insecure: bool) -> io::Result<Arc<rustls::ClientConfig>> {
    use std::sync::OnceLock;
    static SECURE: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    static INSECURE: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let cell = if insecure { &INSECURE } else { &SECURE };
    if let Some(config) = cell.get() {
        return Ok(config.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A certificate the store cannot use is skipped, as the
            // `redis` crate does.
            let _ = roots.add(cert);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(cell.get_or_init(|| Arc::new(config)).clone())
}

/// `#insecure`: any certificate is accepted (signatures are still checked,
/// so the session is encrypted, just not authenticated).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects to the first address of `host` that answers within `timeout`.
fn connect_tcp(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = io::Error::other(format!("{host} has no address"));
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Turns on TCP keepalive with probes soon enough to notice a dead peer.
fn keepalive(stream: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    for (level, option, value) in [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE_SECS),
        (
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            KEEPALIVE_INTERVAL_SECS,
        ),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_PROBES),
    ] {
        // SAFETY: setsockopt on an open socket with an int-sized option.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse(b"$-1\r\n"), Some((Reply::Bulk(None), 5)));
        assert_eq!(
            parse(b"$3\r\nabc\r\n"),
            Some((Reply::Bulk(Some(b"abc".to_vec())), 9))
        );
        assert_eq!(parse(b"$3\r\nab"), None);
        assert_eq!(
            parse(b"-ERR x\r\n"),
            Some((Reply::Error(b"ERR x".to_vec()), 8))
        );
        assert_eq!(parse(b"+OK\r"), None);
        assert_eq!(parse(b":12\r\n"), Some((Reply::Int(12), 5)));
        let msg = b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$2\r\n+x\r\n$1\r\ny\r\nrest";
        let (reply, len) = parse(msg).expect("a whole message");
        assert_eq!(len, msg.len() - 4);
        let Reply::Array(Some(items)) = reply else {
            panic!("an array")
        };
        assert_eq!(items[2].text().as_deref(), Some("+x"));
        assert_eq!(parse(&msg[..20]), None);
        assert_eq!(
            command(&[b"GET", b"k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
    }
}
