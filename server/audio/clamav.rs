//! A client for ClamAV's `clamd`: one `INSTREAM` scan of an upload held in memory, over TCP or a
//! unix socket, under one deadline for connecting, sending and reading the verdict. It takes plain
//! parameters (an address, a timeout) and knows nothing of configuration or HTTP; the alignment
//! routes decide what a verdict or a failure means for the request.
//!
//! The protocol (clamd(8)): `zINSTREAM\0`, then chunks of a 4-byte big-endian length and that many
//! bytes, then a zero-length chunk; clamd answers one NUL-terminated line, `stream: OK`,
//! `stream: <signature> FOUND` or `<reason> ERROR`, and closes the connection. A stream longer than
//! clamd's `StreamMaxLength` gets `INSTREAM size limit exceeded. ERROR`, sometimes before the
//! client has finished sending, so the reply is read even when a write fails.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Bytes per `INSTREAM` chunk: well under any `StreamMaxLength`, few enough system calls.
const CHUNK: usize = 64 * 1024;
/// The longest reply read; clamd's are one short line.
const MAX_REPLY: usize = 4096;

/// Where `clamd` listens: `tcp://host:port` or `unix:/path/to/clamd.ctl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `host:port`, resolved at each connection.
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for ClamdAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("tcp://") {
            let valid = rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0));
            return if valid { Ok(ClamdAddress::Tcp(rest.to_owned())) } else { Err(format!("`{s}` is not tcp://host:port")) };
        }
        if let Some(rest) = s.strip_prefix("unix:") {
            // `unix:/run/clamav/clamd.ctl`, or the URL-like `unix:///run/clamav/clamd.ctl`.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            return if path.starts_with('/') && path.len() > 1 {
                Ok(ClamdAddress::Unix(PathBuf::from(path)))
            } else {
                Err(format!("`{s}` does not name an absolute socket path (unix:/run/clamav/clamd.ctl)"))
            };
        }
        Err(format!("`{s}` must start with tcp:// or unix:"))
    }
}

impl fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClamdAddress::Tcp(a) => write!(f, "tcp://{a}"),
            ClamdAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What clamd found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The name of the signature that matched, as clamd reports it.
    Infected(String),
}

/// Why there is no verdict. Each one leaves the upload unscanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot connect to clamd at {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("clamd connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("clamd did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// clamd answered with an error, e.g. `INSTREAM size limit exceeded`.
    #[error("clamd refused the scan: {0}")]
    Refused(String),
    #[error("clamd answered something unexpected: {0:?}")]
    Unexpected(String),
}

/// A clamd to scan with. Each scan opens its own connection.
#[derive(Clone, Debug)]
pub struct Clamd {
    address: ClamdAddress,
    timeout: Duration,
}

impl Clamd {
    pub fn new(address: ClamdAddress, timeout: Duration) -> Clamd {
        Clamd { address, timeout }
    }

    /// Streams `data` to clamd and returns its verdict; connecting, sending and reading the reply
    /// together take at most the timeout.
    pub async fn scan(&self, data: &[u8]) -> Result<Verdict, ScanError> {
        let scan = async {
            match &self.address {
                ClamdAddress::Tcp(addr) => {
                    let stream = TcpStream::connect(addr.as_str()).await.map_err(|source| self.connect_error(source))?;
                    stream.set_nodelay(true)?;
                    exchange(stream, data).await
                }
                ClamdAddress::Unix(path) => {
                    let stream = UnixStream::connect(path).await.map_err(|source| self.connect_error(source))?;
                    exchange(stream, data).await
                }
            }
        };
        tokio::time::timeout(self.timeout, scan).await.map_err(|_| ScanError::Timeout(self.timeout))?
    }

    fn connect_error(&self, source: std::io::Error) -> ScanError {
        ScanError::Connect { address: self.address.to_string(), source }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, data: &[u8]) -> Result<Verdict, ScanError> {
    let sent = send(&mut stream, data).await;
    match (sent, read_reply(&mut stream).await) {
        // clamd may answer early (a size limit) and close: its reply explains the failed write.
        (_, Ok(reply)) if !reply.is_empty() => parse_reply(&reply),
        (Err(e), _) => Err(ScanError::Io(e)),
        (Ok(()), Err(e)) => Err(ScanError::Io(e)),
        (Ok(()), Ok(_)) => Err(ScanError::Unexpected("an empty reply".into())),
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, data: &[u8]) -> std::io::Result<()> {
    stream.write_all(b"zINSTREAM\0").await?;
    for chunk in data.chunks(CHUNK) {
        // A chunk is at most CHUNK bytes, so its length fits the 4-byte prefix.
        stream.write_all(&(chunk.len() as u32).to_be_bytes()).await?;
        stream.write_all(chunk).await?;
    }
    stream.write_all(&[0; 4]).await?;
    stream.flush().await
}

/// The reply up to its NUL (or the end of the connection), at most `MAX_REPLY` bytes.
async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while reply.len() < MAX_REPLY {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if let Some(end) = reply.iter().position(|&b| b == 0) {
            reply.truncate(end);
            break;
        }
    }
    Ok(reply)
}

/// `stream: OK`, `stream: <signature> FOUND` or `… ERROR`.
pub fn parse_reply(reply: &[u8]) -> Result<Verdict, ScanError> {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches('\0').trim();
    if let Some(reason) = text.strip_suffix(" ERROR") {
        return Err(ScanError::Refused(reason.strip_prefix("stream: ").unwrap_or(reason).trim().to_owned()));
    }
    match text.strip_prefix("stream: ") {
        Some("OK") => Ok(Verdict::Clean),
        Some(found) => match found.strip_suffix(" FOUND").map(str::trim) {
            Some(signature) if !signature.is_empty() => Ok(Verdict::Infected(signature.to_owned())),
            _ => Err(ScanError::Unexpected(text.to_owned())),
        },
        None => Err(ScanError::Unexpected(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_tcp_host_port_or_an_absolute_unix_path() {
        assert_eq!("tcp://127.0.0.1:3310".parse(), Ok(ClamdAddress::Tcp("127.0.0.1:3310".into())));
        assert_eq!("tcp://clamav.internal:3310".parse(), Ok(ClamdAddress::Tcp("clamav.internal:3310".into())));
        assert_eq!("tcp://[::1]:3310".parse(), Ok(ClamdAddress::Tcp("[::1]:3310".into())));
        assert_eq!("unix:/run/clamav/clamd.ctl".parse(), Ok(ClamdAddress::Unix("/run/clamav/clamd.ctl".into())));
        assert_eq!("unix:///run/clamav/clamd.ctl".parse(), Ok(ClamdAddress::Unix("/run/clamav/clamd.ctl".into())));
        for bad in
            ["127.0.0.1:3310", "tcp://127.0.0.1", "tcp://:3310", "tcp://h:0", "tcp://h:99999", "unix:clamd.ctl", "unix:", "http://h:1"]
        {
            assert!(bad.parse::<ClamdAddress>().is_err(), "{bad}");
        }
        assert_eq!(ClamdAddress::Unix("/run/c.ctl".into()).to_string(), "unix:/run/c.ctl");
    }

    #[test]
    fn replies_are_clean_infected_or_errors() {
        assert_eq!(parse_reply(b"stream: OK").unwrap(), Verdict::Clean);
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND").unwrap(),
            Verdict::Infected("Eicar-Test-Signature.UNOFFICIAL".into())
        );
        let refused = parse_reply(b"INSTREAM size limit exceeded. ERROR").unwrap_err();
        assert!(matches!(&refused, ScanError::Refused(r) if r == "INSTREAM size limit exceeded."), "{refused:?}");
        assert!(matches!(parse_reply(b"stream: FOUND"), Err(ScanError::Unexpected(_))));
        assert!(matches!(parse_reply(b"PONG"), Err(ScanError::Unexpected(_))));
    }

    #[actix_rt::test]
    async fn chunks_are_length_prefixed_and_the_stream_ends_with_a_zero_chunk() {
        let data: Vec<u8> = (0..CHUNK + 10).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        send(&mut wire, &data).await.unwrap();
        assert_eq!(&wire[..10], b"zINSTREAM\0");
        assert_eq!(&wire[10..14], &(CHUNK as u32).to_be_bytes());
        let second = 14 + CHUNK;
        assert_eq!(&wire[second..second + 4], &10u32.to_be_bytes());
        assert_eq!(&wire[second + 4..second + 14], &data[CHUNK..]);
        assert_eq!(&wire[second + 14..], &[0, 0, 0, 0]);
    }
}
