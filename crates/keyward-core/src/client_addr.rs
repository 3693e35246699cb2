//! The client's address: the socket's peer, or what the proxies the operator trusts say.
//!
//! Headers that name a client (`Forwarded`, `X-Forwarded-For`) are written by whoever sends the
//! request, so they are believed only when the peer is a trusted proxy, and then only as far back
//! as the chain of trusted proxies goes: the hops are walked right to left (the nearest proxy
//! appends last), trusted proxies are skipped, and the first hop that is not one is the client.
//! With no trusted proxies (the default) the headers are ignored.
//!
//! ```
//! use keyward_core::TrustedProxies;
//!
//! let proxies = TrustedProxies::new(["10.0.0.0/8".parse()?]);
//! let peer = "10.0.0.2".parse()?;
//! // The load balancer 10.0.0.2 says it got the request from 10.0.0.9 (trusted too), which got it
//! // from 203.0.113.7: that is the client. What the client itself wrote (198.51.100.1) is ignored.
//! let xff = ["198.51.100.1, 203.0.113.7, 10.0.0.9"];
//! assert_eq!(proxies.client_addr(peer, &[], &xff), "203.0.113.7".parse::<std::net::IpAddr>()?);
//! // The same headers from an untrusted peer: the peer is the client.
//! let stranger = "192.0.2.1".parse()?;
//! assert_eq!(TrustedProxies::new([]).client_addr(stranger, &[], &xff), stranger);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The proxies whose `Forwarded` / `X-Forwarded-For` headers are believed. See the
/// [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// These networks (a single proxy is a `/32` or `/128`).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self(nets.into_iter().map(|n| n.trunc()).collect())
    }

    /// Whether no proxy is trusted (the headers are ignored).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The trusted networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that came from `peer` with these `Forwarded` and
    /// `X-Forwarded-For` header values (each value in the order received). `Forwarded`
    /// (RFC 7239, its `for=` parameters) is used when present, else `X-Forwarded-For`. A hop that
    /// does not parse ends the walk: the last address known good is the client.
    pub fn client_addr(&self, peer: IpAddr, forwarded: &[&str], x_forwarded_for: &[&str]) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = if forwarded.is_empty() {
            x_forwarded_for.iter().flat_map(|v| v.split(',')).collect()
        } else {
            forwarded
                .iter()
                .flat_map(|v| v.split(','))
                .filter_map(|element| {
                    element.split(';').find_map(|pair| {
                        let (name, value) = pair.split_once('=')?;
                        name.trim().eq_ignore_ascii_case("for").then_some(value)
                    })
                })
                .collect()
        };
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else { return client };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// One hop: `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`, `[2001:db8::1]:4711`, optionally
/// quoted (`Forwarded`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

/// Most entries of an IP allowlist.
pub const MAX_IP_ALLOWLIST: usize = 100;

/// Parses an IP allowlist: addresses (`198.51.100.7`, `2001:db8::1`) and CIDR ranges
/// (`203.0.113.0/24`, `2001:db8::/32`), at most [`MAX_IP_ALLOWLIST`]. A range with host bits set
/// (`203.0.113.5/24`) is refused rather than guessed at. A bare address becomes a `/32` or
/// `/128`. Errors name the entry: `(index, reason)`.
pub fn parse_ip_allowlist<S: AsRef<str>>(entries: &[S]) -> Result<Vec<IpNet>, (Option<usize>, String)> {
    if entries.len() > MAX_IP_ALLOWLIST {
        return Err((None, format!("at most {MAX_IP_ALLOWLIST} entries")));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.as_ref().trim();
            if let Ok(ip) = e.parse::<IpAddr>() {
                return Ok(IpNet::from(ip.to_canonical()));
            }
            let net: IpNet = e
                .parse()
                .map_err(|_| (Some(i), format!("`{e}` is neither an IP address nor a CIDR range")))?;
            if net.trunc() != net {
                return Err((Some(i), format!("`{e}` has host bits set; the range is {}", net.trunc())));
            }
            Ok(net)
        })
        .collect()
}

/// Whether `ip` may use a key whose own allowlist is `key` in a workspace whose default is
/// `workspace`: a key's non-empty list replaces the workspace's; both empty allow everyone.
pub fn ip_allowed(key: &[IpNet], workspace: &[IpNet], ip: Option<IpAddr>) -> Result<(), Option<IpAddr>> {
    let list = if key.is_empty() { workspace } else { key };
    if list.is_empty() {
        return Ok(());
    }
    match ip.map(|ip| ip.to_canonical()) {
        Some(ip) if list.iter().any(|n| n.contains(&ip)) => Ok(()),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_count_only_through_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_addr(ip("10.0.0.2"), &[], &["203.0.113.7"]), ip("10.0.0.2"));
        let lb = TrustedProxies::new(["10.0.0.0/8".parse().unwrap(), "2001:db8:ffff::/48".parse().unwrap()]);
        assert_eq!(lb.client_addr(ip("10.0.0.2"), &[], &["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(lb.client_addr(ip("192.0.2.1"), &[], &["203.0.113.7"]), ip("192.0.2.1"), "untrusted peer");
        // Spoofed hops left of the first untrusted one are ignored; several header lines join.
        assert_eq!(
            lb.client_addr(ip("10.0.0.2"), &[], &["6.6.6.6, 203.0.113.7", "10.1.1.1"]),
            ip("203.0.113.7")
        );
        // All trusted: the leftmost. Garbage: the last good hop.
        assert_eq!(lb.client_addr(ip("10.0.0.2"), &[], &["10.0.0.5, 10.0.0.9"]), ip("10.0.0.5"));
        assert_eq!(lb.client_addr(ip("10.0.0.2"), &[], &["203.0.113.7, nonsense, 10.0.0.9"]), ip("10.0.0.9"));
        assert_eq!(lb.client_addr(ip("10.0.0.2"), &[], &[]), ip("10.0.0.2"));
        // Forwarded wins over X-Forwarded-For; IPv6 with brackets and ports; ports on IPv4.
        let fwd = [r#"for=198.51.100.1;proto=https, for="[2001:db8::7]:4711""#, "for=10.0.0.3:80"];
        assert_eq!(lb.client_addr(ip("2001:db8:ffff::1"), &fwd, &["203.0.113.7"]), ip("2001:db8::7"));
        // IPv4-mapped peers are IPv4.
        assert_eq!(lb.client_addr(ip("::ffff:10.0.0.2"), &[], &["203.0.113.7:1234"]), ip("203.0.113.7"));
    }

    #[test]
    fn allowlists_parse_normalise_and_match() {
        let list =
            parse_ip_allowlist(&["203.0.113.0/24", "2001:db8::/32", "198.51.100.7", "::ffff:192.0.2.1"])
                .unwrap();
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32", "192.0.2.1/32"]);
        assert_eq!(parse_ip_allowlist(&["10.0.0.0/8", "10.1.2.3/8"]).unwrap_err().0, Some(1));
        assert_eq!(parse_ip_allowlist(&["10.0.0.0/33"]).unwrap_err().0, Some(0));
        assert_eq!(parse_ip_allowlist(&["example.com"]).unwrap_err().0, Some(0));
        assert_eq!(parse_ip_allowlist(&vec!["10.0.0.1"; 101]).unwrap_err().0, None);

        assert_eq!(ip_allowed(&list, &[], Some(ip("203.0.113.200"))), Ok(()));
        assert_eq!(ip_allowed(&list, &[], Some(ip("2001:db8:1::1"))), Ok(()));
        assert_eq!(ip_allowed(&list, &[], Some(ip("203.0.114.1"))), Err(Some(ip("203.0.114.1"))));
        assert_eq!(ip_allowed(&list, &[], None), Err(None), "no address: refused");
        let ws = parse_ip_allowlist(&["192.0.2.0/24"]).unwrap();
        assert_eq!(ip_allowed(&[], &ws, Some(ip("192.0.2.9"))), Ok(()), "the workspace's default");
        assert_eq!(
            ip_allowed(&list, &ws, Some(ip("192.0.2.9"))),
            Err(Some(ip("192.0.2.9"))),
            "the key's replaces it"
        );
        assert_eq!(ip_allowed(&[], &[], None), Ok(()));
    }
}
