//! The environment descriptor file (DESIGN.md, "The descriptor file").
//! STUB: filled in by the descriptor work; the signatures are the contract.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::{DescriptorError, Problem};
use crate::model::{EnvType, K8s, Labels, Platform, Release, Secret};

/// Descriptors larger than this are refused unread.
pub const MAX_SIZE: u64 = 64 * 1024;

/// The highest `schema` major version this library reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The file format, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.toml`
    Toml,
    /// `.json`
    Json,
}

/// A parsed, validated descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Where it was read from.
    pub path: PathBuf,
    /// The schema version.
    pub schema: u32,
    /// `app`
    pub app: Option<String>,
    /// `env`
    pub env: Option<String>,
    /// `env_type`, when the file gives it explicitly.
    pub env_type: Option<EnvType>,
    /// `sub_env`
    pub sub_env: Option<String>,
    /// `idc`
    pub idc: Option<String>,
    /// `platform`
    pub platform: Option<Platform>,
    /// `ip`
    pub ip: Option<IpAddr>,
    /// `token`
    pub token: Option<Secret>,
    /// `[release]`
    pub release: Option<Release>,
    /// `[k8s]`
    pub k8s: Option<K8s>,
    /// `[labels]`
    pub labels: Labels,
}

/// A descriptor and the warnings (unknown keys, …) found while reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The descriptor.
    pub descriptor: Descriptor,
    /// Problems that did not stop parsing (unknown keys outside strict mode).
    pub warnings: Vec<Problem>,
}

/// Reads and parses the descriptor at `path` (bounded read, format by extension).
pub fn read(path: &Path, strict: bool) -> Result<Parsed, DescriptorError> {
    let _ = (path, strict);
    unimplemented!()
}

/// Parses descriptor bytes; `path` is only used in messages.
pub fn parse(
    bytes: &[u8],
    path: &Path,
    format: Format,
    strict: bool,
) -> Result<Parsed, DescriptorError> {
    let _ = (bytes, path, format, strict);
    unimplemented!()
}
