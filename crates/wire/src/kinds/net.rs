//! Network payloads: connect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use peregrine_event::{Family, NetInfo};

use super::{CostTables, Tables};
use crate::encode::Builder;
use crate::error::{Inconsistency, WireError};
use crate::pb;

pub(super) fn encode<'a>(b: &mut Builder<'a>, n: &'a NetInfo) -> Result<pb::NetInfo, WireError> {
    Ok(pb::NetInfo {
        family: match n.family {
            Family::Inet => pb::Family::Inet,
            Family::Inet6 => pb::Family::Inet6,
            Family::Unix => pb::Family::Unix,
        } as i32,
        address: n.address.map(|a| match a {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }),
        port: n.port.map(u32::from),
        path: b.opt_string(&n.path)?,
        result: n.result,
    })
}

fn family(value: i32) -> Result<Family, Inconsistency> {
    match pb::Family::try_from(value) {
        Ok(pb::Family::Inet) => Ok(Family::Inet),
        Ok(pb::Family::Inet6) => Ok(Family::Inet6),
        Ok(pb::Family::Unix) => Ok(Family::Unix),
        Ok(pb::Family::Unspecified) | Err(_) => Err(Inconsistency::InvalidEnum {
            field: "NetInfo.family",
            value,
        }),
    }
}

fn address(bytes: &[u8]) -> Result<IpAddr, Inconsistency> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        Err(Inconsistency::InvalidLength {
            field: "NetInfo.address",
            len: bytes.len(),
            expected: "4 (IPv4) or 16 (IPv6)",
        })
    }
}

pub(super) fn decode(n: &pb::NetInfo, t: &Tables<'_>) -> Result<NetInfo, Inconsistency> {
    Ok(NetInfo {
        family: family(n.family)?,
        address: n.address.as_deref().map(address).transpose()?,
        port: n
            .port
            .map(|p| {
                u16::try_from(p).map_err(|_| Inconsistency::OutOfRange {
                    field: "NetInfo.port",
                    value: u64::from(p),
                })
            })
            .transpose()?,
        path: t.strings.opt(n.path, "NetInfo.path")?,
        result: n.result,
    })
}

pub(super) fn cost(n: &pb::NetInfo, t: &CostTables<'_>) -> Result<u64, Inconsistency> {
    t.strings.opt_len(n.path, "NetInfo.path")
}

pub(super) fn strings<'a>(n: &'a NetInfo, f: &mut impl FnMut(&'a str)) {
    if let Some(s) = &n.path {
        f(s);
    }
}
