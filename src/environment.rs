//! The merged, cached [`Environment`]. STUB while the core is written.

use crate::error::Error;

/// This process's environment.
#[derive(Debug)]
pub struct Environment {}

impl Environment {
    /// A builder.
    pub fn builder() -> EnvironmentBuilder {
        EnvironmentBuilder {}
    }
    /// `app`
    pub fn app(&self) -> Option<&str> {
        None
    }
    /// `env`
    pub fn env(&self) -> &str {
        ""
    }
    /// `idc`
    pub fn idc(&self) -> &str {
        ""
    }
}

/// Builds an [`Environment`].
#[derive(Debug)]
pub struct EnvironmentBuilder {}

/// The process-wide environment.
pub fn current() -> Result<&'static Environment, &'static Error> {
    unimplemented!()
}
