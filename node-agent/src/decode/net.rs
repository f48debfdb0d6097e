//! Network records: connect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use node_agent_common::{AF_INET, AF_INET6, ConnectRecord, Kind};
use peregrine_event::{Detail, Family, NetInfo};

use super::{DecodeError, RawBody, checked, read, text};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawConnect {
    pub family: u16,
    pub addr: Option<IpAddr>,
    pub port: u16,
    /// Unix socket path; an abstract name is rendered with a leading `@`.
    pub path: Option<String>,
    pub result: i64,
}

/// Decodes a network-family record of `kind`.
pub(super) fn decode(kind: Kind, rec: &[u8]) -> Result<RawBody, DecodeError> {
    if kind != Kind::Connect {
        return Err(DecodeError::UnknownKind(kind as u32));
    }
    let r: ConnectRecord = read(rec, "connect record")?;
    let lens = [usize::from(r.path_len)];
    let mut f = checked(kind, rec, std::mem::size_of::<ConnectRecord>(), &lens)?;
    let raw_path = f.take(lens[0]);
    let (addr, path) = match r.family {
        AF_INET => {
            let [a, b, c, d, ..] = r.addr;
            (Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d))), None)
        }
        AF_INET6 => (Some(IpAddr::V6(Ipv6Addr::from(r.addr))), None),
        _ => (None, Some(unix_path(raw_path))),
    };
    Ok(RawBody::Connect(RawConnect {
        family: r.family,
        addr,
        port: r.port,
        path,
        result: r.result,
    }))
}

/// A pathname socket ends at its first NUL; an abstract one starts with NUL and is shown as `@name`.
fn unix_path(raw: &[u8]) -> String {
    match raw.split_first() {
        Some((0, rest)) => format!("@{}", text(rest)),
        _ => text(raw.split(|&c| c == 0).next().unwrap_or_default()),
    }
}

/// A connect's detail.
pub fn detail(c: RawConnect) -> Detail {
    let family = match c.family {
        AF_INET => Family::Inet,
        AF_INET6 => Family::Inet6,
        _ => Family::Unix,
    };
    Detail::Net(NetInfo {
        family,
        address: c.addr,
        port: c.addr.map(|_| c.port),
        path: c.path,
        result: c.result,
    })
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
