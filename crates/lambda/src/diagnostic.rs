//! Invocation errors as Lambda reports them. Per-message failures never get here: they are
//! `batchItemFailures` (see [`partial_batch`](crate::partial_batch)).

use lambda_runtime::Diagnostic;

/// An error that fails a whole invocation.
pub trait InvocationError: std::error::Error {
    /// The `errorType` Lambda reports (and alarms key on): a stable name for the kind of
    /// failure, such as `ConfigError`.
    fn error_type(&self) -> &'static str;
}

/// The `Diagnostic` for an invocation error: its kind and its message. The message names what
/// failed and how to fix it, never payload contents.
pub fn diagnostic<E: InvocationError + ?Sized>(e: &E) -> Diagnostic {
    Diagnostic {
        error_type: e.error_type().into(),
        error_message: e.to_string(),
    }
}

/// `impl From<$error> for Diagnostic` through [`diagnostic`], for an [`InvocationError`]
/// (the orphan rule keeps a blanket impl out of this crate).
#[macro_export]
macro_rules! into_diagnostic {
    ($error:ty) => {
        impl From<$error> for $crate::Diagnostic {
            fn from(e: $error) -> $crate::Diagnostic {
                $crate::diagnostic(&e)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the catalog failed to load: rule x")]
    struct Rules;

    impl InvocationError for Rules {
        fn error_type(&self) -> &'static str {
            "RulesError"
        }
    }

    crate::into_diagnostic!(Rules);

    #[test]
    fn an_error_maps_to_its_kind_and_message() {
        let d = Diagnostic::from(Rules);
        assert_eq!(d.error_type, "RulesError");
        assert_eq!(d.error_message, "the catalog failed to load: rule x");
    }
}
