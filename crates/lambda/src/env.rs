//! A function's configuration from its environment: the variables `template.yaml` sets
//! (`Globals.Function.Environment` plus each function's own `Environment`). Each function's
//! config module implements [`FromEnv`] over any lookup, so the local runner can hand it the
//! environment it resolved from the template.

use std::time::Duration;

/// Why a variable is unusable. Reported once at cold start, never per message.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is not set (template.yaml sets it for the function)")]
    Missing(&'static str),
    #[error("{name} is {value:?}; expected a whole number of seconds")]
    Seconds { name: &'static str, value: String },
}

/// A configuration read from environment variables.
pub trait FromEnv: Sized {
    type Error: std::error::Error + Send + Sync + 'static;

    /// From any lookup (tests and the local runner pass their own).
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Self::Error>;

    /// From the process environment.
    fn from_env() -> Result<Self, Self::Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

/// A variable's value; unset and empty are the same.
pub fn optional(get: impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).filter(|v| !v.is_empty())
}

/// A variable that must be set and not empty.
pub fn required(
    get: impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, EnvError> {
    optional(get, name).ok_or(EnvError::Missing(name))
}

/// A whole number of seconds, `default` when unset or empty.
pub fn seconds(
    get: impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, EnvError> {
    match optional(get, name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| EnvError::Seconds { name, value: v }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_required_optional_or_seconds() {
        let get = |k: &str| match k {
            "SET" => Some("x".to_owned()),
            "EMPTY" => Some(String::new()),
            "TTL" => Some(" 60 ".to_owned()),
            "BAD" => Some("soon".to_owned()),
            _ => None,
        };
        assert_eq!(required(get, "SET").unwrap(), "x");
        assert!(matches!(
            required(get, "EMPTY"),
            Err(EnvError::Missing("EMPTY"))
        ));
        assert_eq!(optional(get, "UNSET"), None);
        let day = Duration::from_secs(86_400);
        assert_eq!(seconds(get, "TTL", day).unwrap(), Duration::from_secs(60));
        assert_eq!(seconds(get, "UNSET", day).unwrap(), day);
        let err = seconds(get, "BAD", day).unwrap_err();
        assert!(err.to_string().contains("BAD"), "{err}");
    }
}
