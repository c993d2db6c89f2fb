//! Which addresses count as "inside": the check applied after DNS resolution.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address check used after DNS resolution: true for loopback, private (10/8,
/// 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), unspecified,
/// broadcast, multicast, CGNAT 100.64/10, documentation ranges, IPv4-mapped IPv6 of any of
/// these, and the like.
///
/// In detail, for IPv4: 0/8 ("this network", which Linux routes to the local host),
/// 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24, 192.0.2/24, 192.88.99/24,
/// 192.168/16, 198.18/15, 198.51.100/24, 203.0.113/24, 224/4 and 240/4 (which includes
/// 255.255.255.255). For IPv6: everything outside the global unicast block 2000::/3
/// (so `::`, `::1`, fc00::/7, fe80::/10, fec0::/10, ff00::/8, 100::/64, 64:ff9b:1::/48,
/// IPv4-compatible and -translated forms, ...), except that addresses embedding an IPv4
/// address (IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are
/// judged by that IPv4 address; and within 2000::/3, the IETF protocol block 2001::/23
/// (Teredo, benchmarking, ORCHID, ...) but for its globally reachable assignments, the
/// documentation blocks 2001:db8::/32 and 3fff::/20, and SRv6 SIDs 5f00::/16.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_non_public(v4),
        IpAddr::V6(v6) => v6_non_public(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn v4_non_public(ip: Ipv4Addr) -> bool {
    const RANGES: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network"; 0.0.0.0 reaches the local host
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata endpoints)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
        ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
        ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, and 255.255.255.255 broadcast
    ];
    RANGES.iter().any(|&(net, len)| in_v4(ip, net, len))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

fn embedded_v4(bits: u128) -> Ipv4Addr {
    // Truncation to the low 32 bits is the point here.
    Ipv4Addr::from((bits & 0xffff_ffff) as u32)
}

fn v6_non_public(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    // Forms that carry an IPv4 address: judge by that address.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        return v4_non_public(embedded_v4(bits));
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return v4_non_public(embedded_v4(bits >> 80));
    }
    // Only 2000::/3 is global unicast; everything else is special or unassigned.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return true;
    }
    if in_v6(ip, [0x2001, 0, 0, 0, 0, 0, 0, 0], 23) {
        // Globally reachable assignments inside the IETF protocol block.
        let global = ip == Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1) // PCP anycast
            || ip == Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2) // TURN anycast
            || in_v6(ip, [0x2001, 3, 0, 0, 0, 0, 0, 0], 32) // AMT
            || in_v6(ip, [0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48) // AS112-v6
            || in_v6(ip, [0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28); // ORCHIDv2
        return !global;
    }
    in_v6(ip, [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32) // documentation
        || in_v6(ip, [0x3fff, 0, 0, 0, 0, 0, 0, 0], 20) // documentation
        || in_v6(ip, [0x5f00, 0, 0, 0, 0, 0, 0, 0], 16) // SRv6 SIDs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_table() {
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            // IPv4, non-public.
            ("0.0.0.0", true), ("0.1.2.3", true),
            ("10.0.0.1", true), ("10.255.255.255", true),
            ("100.64.0.1", true), ("100.127.255.255", true),
            ("127.0.0.1", true), ("127.255.255.254", true),
            ("169.254.169.254", true), ("169.254.0.1", true),
            ("172.16.0.1", true), ("172.31.255.255", true),
            ("192.0.0.8", true), ("192.0.2.1", true), ("192.88.99.1", true),
            ("192.168.0.1", true), ("192.168.255.255", true),
            ("198.18.0.1", true), ("198.19.255.255", true),
            ("198.51.100.7", true), ("203.0.113.9", true),
            ("224.0.0.1", true), ("239.255.255.250", true),
            ("240.0.0.1", true), ("255.255.255.255", true),
            // IPv4, public (including the neighbours of every range above).
            ("1.1.1.1", false), ("8.8.8.8", false), ("9.255.255.255", false),
            ("11.0.0.0", false), ("100.63.255.255", false), ("100.128.0.0", false),
            ("126.255.255.255", false), ("128.0.0.0", false), ("169.253.255.255", false),
            ("169.255.0.0", false), ("172.15.255.255", false), ("172.32.0.0", false),
            ("192.0.1.1", false), ("192.0.3.1", false), ("192.167.255.255", false),
            ("192.169.0.0", false), ("198.17.255.255", false), ("198.20.0.0", false),
            ("203.0.114.1", false), ("223.255.255.255", false), ("93.184.216.34", false),
            // IPv6, non-public.
            ("::", true), ("::1", true),
            ("fc00::1", true), ("fd12:3456:789a::1", true),
            ("fe80::1", true), ("febf::1", true), ("fec0::1", true),
            ("ff02::1", true), ("ff0e::1", true),
            ("100::1", true), ("64:ff9b:1::1", true),
            ("::127.0.0.1", true), ("::8.8.8.8", true), // IPv4-compatible (deprecated)
            ("::ffff:0:8.8.8.8", true),                 // IPv4-translated
            ("2001:db8::1", true), ("3fff::1", true), ("5f00::1", true),
            ("2001::1", true),                          // Teredo
            ("2001:2::1", true),                        // benchmarking
            // IPv4-mapped, NAT64 and 6to4 forms of non-public IPv4.
            ("::ffff:127.0.0.1", true), ("::ffff:10.0.0.1", true),
            ("::ffff:169.254.169.254", true), ("::ffff:0.0.0.0", true),
            ("::ffff:192.168.1.1", true), ("::ffff:100.64.0.1", true),
            ("64:ff9b::127.0.0.1", true), ("64:ff9b::a9fe:a9fe", true),
            ("2002:7f00:1::", true), ("2002:c0a8:101::1", true),
            // IPv6, public.
            ("2606:4700:4700::1111", false), ("2001:4860:4860::8888", false),
            ("2a00:1450:4001::1", false), ("2001:1::1", false), ("2001:3::1", false),
            ("2001:4:112::1", false), ("2001:20::1", false), ("2001:200::1", false),
            ("3ffe::1", false),
            ("::ffff:8.8.8.8", false), ("64:ff9b::8.8.8.8", false),
            ("2002:808:808::1", false),
        ];
        for (addr, want) in cases {
            let ip: IpAddr = match addr.parse() {
                Ok(ip) => ip,
                Err(e) => panic!("{addr}: {e}"),
            };
            assert_eq!(is_non_public(ip), *want, "is_non_public({addr})");
        }
    }
}
