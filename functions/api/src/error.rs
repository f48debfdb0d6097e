//! The API's errors, as GuardDuty answers them: a status, `{"message", "__type"}` and the
//! `x-amzn-ErrorType` header. A client's mistake is a 400 with a message saying what is wrong;
//! a DynamoDB failure is a 500 whose body names nothing internal (the details are logged).

use peregrine_store::StoreError;

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something the API does not do (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such route (404).
    #[error("{0}")]
    NotFound(String),
    /// The store failed (500); the message is logged, never returned.
    #[error("the findings store failed: {0}")]
    Store(#[from] StoreError),
    /// A finding kept changing under a conditional write (500, retryable).
    #[error("finding {0} kept changing; try again")]
    Contended(String),
}

impl From<peregrine_criteria::CriteriaError> for ApiError {
    fn from(e: peregrine_criteria::CriteriaError) -> ApiError {
        ApiError::BadRequest(e.0)
    }
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(message.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Store(_) | ApiError::Contended(_) => 500,
        }
    }

    /// GuardDuty's `__type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequestException",
            ApiError::NotFound(_) => "NotFoundException",
            ApiError::Store(_) | ApiError::Contended(_) => "InternalServerErrorException",
        }
    }

    /// The message a client sees.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::BadRequest(m) | ApiError::NotFound(m) => m.clone(),
            ApiError::Store(_) => {
                "The request failed because of an internal error. Try again.".into()
            }
            ApiError::Contended(_) => {
                "The request failed because a finding was being updated. Try again.".into()
            }
        }
    }
}
