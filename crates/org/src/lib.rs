//! Peregrine across an AWS organization, as plain values shared by the coverage sweeper
//! (`functions/coverage`), the API to come and the agent manager (`crates/manage`):
//!
//! - [`config`]: the organization's configuration (auto-enable `NEW`/`ALL`/`NONE`, the default
//!   agent management and cluster scope) and each account's (monitoring on or off, management
//!   `AUTO`/`MANUAL`), and what they decide for an account the organization lists;
//! - [`tags`]: the `peregrine:managed` cluster tag, which includes or excludes a cluster;
//! - [`inventory`]: what the sweeper finds in a member account: clusters, node groups, nodes;
//! - [`coverage`]: what it reports: per cluster and per node `HEALTHY`, `UNHEALTHY` or
//!   `DEGRADED` with GuardDuty-style issue strings, per account, the statistics, and the
//!   status-change event's detail;
//! - [`text`]: bounding and escaping strings that come from agents before they are stored or
//!   shown.
//!
//! Nothing here talks to AWS: `peregrine-store` keeps these values in DynamoDB.

pub mod config;
pub mod coverage;
pub mod inventory;
pub mod tags;
pub mod text;

/// A value that is not one of a field's names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value:?} is not one of {expected}")]
pub struct UnknownValue {
    pub field: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// An enum of fixed names (`SCREAMING_SNAKE_CASE` on the wire and in tables): `as_str`,
/// `FromStr`, `Display` and serde through those names.
macro_rules! names {
    ($(#[$m:meta])* $vis:vis enum $name:ident ($field:literal) { $($(#[$vm:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name { $($(#[$vm])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::UnknownValue {
                        field: $field,
                        value: $crate::text::bounded(s, 64),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use names;
