//! Platform detection (DESIGN.md, "Platform detection" and "Primary IP").
//! STUB: filled in by the detection work; the signatures are the contract.

use std::net::IpAddr;
use std::path::Path;

use crate::model::{ContainerInfo, Platform};
use crate::vars::Vars;

/// What the probes found about the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detection {
    /// The host kind (`Unknown` when nothing was found).
    pub platform: Option<Platform>,
    /// Container facts, when in a container.
    pub container: Option<ContainerInfo>,
    /// The hypervisor, when visible.
    pub virtualization: Option<String>,
    /// Each piece of evidence used, as `probe: finding`, for `--explain`.
    pub evidence: Vec<String>,
}

/// Probes the host below `root` (`/` for the real host).
pub fn detect(root: &Path, vars: &Vars) -> Detection {
    let _ = (root, vars);
    Detection::default()
}

/// This host's name and the probe that gave it.
pub fn hostname(root: &Path) -> Option<(String, String)> {
    let _ = root;
    None
}

/// The primary IP by DESIGN.md's interface policy, and the interface name.
pub fn primary_ip() -> Option<(IpAddr, String)> {
    None
}
