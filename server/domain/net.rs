//! IP allowlists and trusted proxies: CIDR parsing and membership.

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a /32 or /128).
pub fn parse_cidr(value: &str) -> Option<IpNet> {
    let value = value.trim();
    value.parse::<IpNet>().ok().or_else(|| value.parse::<IpAddr>().ok().map(IpNet::from))
}

/// An empty allowlist allows every address.
pub fn ip_allowed(allowlist: &[String], ip: Option<IpAddr>) -> bool {
    if allowlist.is_empty() {
        return true;
    }
    let Some(ip) = ip else { return false };
    let ip = canonical(ip);
    allowlist.iter().filter_map(|c| parse_cidr(c)).any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 (::ffff:1.2.3.4) compares as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Validates an allowlist for storage: every entry must parse; returns them normalised.
pub fn normalise_allowlist(entries: &[String]) -> Result<Vec<String>, String> {
    entries
        .iter()
        .map(|e| parse_cidr(e).map(|n| n.trunc().to_string()).ok_or_else(|| format!("`{e}` is not an IP address or CIDR")))
        .collect()
}

/// The client's address: the TCP peer, or — when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer.map(canonical)?;
    if trusted.is_empty() || !trusted.iter().any(|n| n.contains(&peer)) {
        return Some(peer);
    }
    let Some(header) = forwarded_for else { return Some(peer) };
    let mut candidate = peer;
    for hop in header.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
        candidate = canonical(ip);
        if !trusted.iter().any(|n| n.contains(&candidate)) {
            break;
        }
    }
    Some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists() {
        let list = vec!["10.0.0.0/8".to_owned(), "192.168.1.7".to_owned()];
        assert!(ip_allowed(&list, Some("10.1.2.3".parse().unwrap())));
        assert!(ip_allowed(&list, Some("192.168.1.7".parse().unwrap())));
        assert!(ip_allowed(&list, Some("::ffff:10.0.0.1".parse().unwrap())));
        assert!(!ip_allowed(&list, Some("192.168.1.8".parse().unwrap())));
        assert!(!ip_allowed(&list, None));
        assert!(ip_allowed(&[], None));
        assert!(normalise_allowlist(&["10.1.2.3/8".into()]).unwrap() == ["10.0.0.0/8"]);
        assert!(normalise_allowlist(&["nope".into()]).is_err());
    }

    #[test]
    fn forwarded_for_is_only_believed_from_trusted_proxies() {
        let trusted = vec![parse_cidr("10.0.0.0/8").unwrap()];
        let peer = Some("10.0.0.5".parse().unwrap());
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, Some("203.0.113.9, 10.0.0.9"), &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(peer, Some("1.1.1.1, 203.0.113.9"), &trusted), ip("203.0.113.9"), "spoofed left entries ignored");
        assert_eq!(client_ip(ip("198.51.100.1"), Some("203.0.113.9"), &trusted), ip("198.51.100.1"), "untrusted peer");
        assert_eq!(client_ip(peer, None, &trusted), peer);
        assert_eq!(client_ip(peer, Some("203.0.113.9"), &[]), peer);
    }
}
