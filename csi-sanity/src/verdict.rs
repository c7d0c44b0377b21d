//! How a spec ends when it does not pass, and helpers to check responses.

use tonic::{Code, Status};

/// Why a spec did not pass.
#[derive(Debug)]
pub enum Verdict {
    Failed(String),
    NotApplicable(String),
}

pub type SpecResult = Result<(), Verdict>;

impl From<Status> for Verdict {
    fn from(status: Status) -> Self {
        Verdict::Failed(format!(
            "unexpected error {:?}: {}",
            status.code(),
            status.message()
        ))
    }
}

impl From<rwxnfs_server::EndpointError> for Verdict {
    fn from(err: rwxnfs_server::EndpointError) -> Self {
        Verdict::Failed(err.to_string())
    }
}

pub fn fail<T>(message: impl Into<String>) -> Result<T, Verdict> {
    Err(Verdict::Failed(message.into()))
}

/// Passes when `condition` holds; otherwise fails with `message`.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> SpecResult {
    if condition { Ok(()) } else { fail(message()) }
}

/// Passes when the call failed with exactly `code`.
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: Code,
) -> SpecResult {
    match result {
        Err(status) if status.code() == code => Ok(()),
        Err(status) => fail(format!(
            "expected {code:?}, got {:?}: {}",
            status.code(),
            status.message()
        )),
        Ok(response) => fail(format!(
            "expected {code:?}, but the call succeeded: {:?}",
            response.into_inner()
        )),
    }
}
