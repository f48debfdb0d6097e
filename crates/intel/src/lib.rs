//! Threat intelligence for Peregrine: GuardDuty's list formats ([`parse`]), a matcher for
//! remote addresses, DNS names and executables' SHA-256s ([`Intel`]), and the built-in lists.
//! Pure: no I/O, so the detector Lambda, the standalone agent and tests share it.
//!
//! ```
//! use peregrine_intel::{parse, Category, Format, IntelBuilder, ListInfo, ListKind, Lookup};
//!
//! let list = parse(Format::Txt, b"# my list\n203.0.113.0/24\n*.evil.example\nnot a value\n")?;
//! assert_eq!(list.entries.len(), 2);
//! assert_eq!(list.rejected[0].to_string(), r#"line 4: not an address, network, domain or SHA-256 ("not a value")"#);
//!
//! let mut b = IntelBuilder::new();
//! b.add_list(ListInfo { name: "mine".into(), kind: ListKind::Threat, category: Category::Custom }, list.entries)?;
//! let intel = b.build();
//! let Lookup::Threat(m) = intel.lookup_ip("203.0.113.9".parse()?) else { panic!() };
//! assert_eq!((m.entry.to_string(), m.hits[0].list.name.as_str()), ("203.0.113.0/24".into(), "mine"));
//! assert!(matches!(intel.lookup_domain("c2.EVIL.example."), Lookup::Threat(_)));
//! assert_eq!(intel.lookup_domain("evil.example"), Lookup::Miss);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builtin;
mod indicator;
mod matcher;
mod parse;

pub use crate::builtin::{BUILTIN, BuiltinError, BuiltinList, add_builtin};
pub use crate::indicator::{
    Indicator, Invalid, MAX_DOMAIN_LEN, MAX_THREAT_NAME_LEN, Sha256Hex, canonical_ip,
    decode_sha256, normalise_domain, parse_domain, parse_indicator, parse_net, parse_sha256,
};
pub use crate::matcher::{
    BuildError, Category, Hit, Intel, IntelBuilder, IntelStats, ListInfo, ListKind, Lookup,
    Matched, MatchedEntry,
};
pub use crate::parse::{
    Entry, Format, Location, MAX_FILE_BYTES, MAX_LINE_BYTES, MAX_REPORTED, ParseError, ParsedList,
    Reason, Rejected, UnknownFormat, parse,
};
