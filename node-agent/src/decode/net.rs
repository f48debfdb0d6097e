//! Network records: connect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use node_agent_common::{AF_INET, AF_INET6, ConnectRecord, Kind};
use peregrine_event::{Detail, Family, NetInfo};

use super::{DecodeError, RawBody, checked, read, text};

/// Decodes a network-family record of `kind`.
pub(super) fn decode(kind: Kind, rec: &[u8]) -> Result<RawBody, DecodeError> {
    if kind != Kind::Connect {
        return Err(DecodeError::UnknownKind(kind as u32));
    }
    let r: ConnectRecord = read(rec, "connect record")?;
    let lens = [usize::from(r.path_len)];
    let mut f = checked(kind, rec, std::mem::size_of::<ConnectRecord>(), &lens)?;
    let raw_path = f.take(lens[0]);
    // The kernel program only emits these three families.
    let (family, address, path) = match r.family {
        AF_INET => {
            let [a, b, c, d, ..] = r.addr;
            (
                Family::Inet,
                Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
                None,
            )
        }
        AF_INET6 => (
            Family::Inet6,
            Some(IpAddr::V6(Ipv6Addr::from(r.addr))),
            None,
        ),
        _ => (Family::Unix, None, Some(unix_path(raw_path))),
    };
    // Needs nothing from enrichment: the detail is final here.
    Ok(RawBody::Detail(Detail::Net(NetInfo {
        family,
        address,
        port: address.map(|_| r.port),
        path,
        result: r.result,
    })))
}

/// A pathname socket ends at its first NUL; an abstract one starts with NUL and is shown as `@name`.
fn unix_path(raw: &[u8]) -> String {
    match raw.split_first() {
        Some((0, rest)) => format!("@{}", text(rest)),
        _ => text(raw.split(|&c| c == 0).next().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_paths() {
        assert_eq!(
            unix_path(b"/run/containerd/containerd.sock\0junk"),
            "/run/containerd/containerd.sock"
        );
        assert_eq!(unix_path(b"\0abstract"), "@abstract");
    }
}
