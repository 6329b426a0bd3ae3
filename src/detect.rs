//! Platform detection and the primary-IP policy (ARCHITECTURE.md, "Where am I").
//!
//! Public because a user may want them alone: [`detect`] (container vs VM
//! evidence below a root), [`hostname()`] and [`primary_ip`]. The parsers
//! behind them are internal, tested beside their code.
//!
//! Every probe reads a file relative to an injectable root (`/` for the real
//! host), so tests fake whole hosts under `testdata/hosts/`. No subprocess is
//! ever run, every read is bounded ([`MAX_PROBE_BYTES`]), and a probe that
//! cannot be read (missing, permission denied: `/proc/1/environ` is commonly
//! unreadable inside containers) is skipped, never fatal.
//!
//! # Container evidence, strongest first
//!
//! * Kubernetes: the `KUBERNETES_SERVICE_HOST` variable, the service-account
//!   namespace file (`/var/run/secrets/kubernetes.io/serviceaccount/namespace`
//!   or under `/run/secrets`), or `kubepods` in the cgroup or mountinfo paths.
//!   Never `$HOSTNAME` alone: pod-like names are common on VMs too.
//! * `/run/.containerenv` (podman).
//! * Container paths in `/proc/self/cgroup` (cgroup v1: `docker`, `kubepods`,
//!   `containerd`, `crio`, `libpod`) and in `/proc/self/mountinfo` (cgroup v2
//!   with a private cgroup namespace shows only `0::/`, but the runtime's
//!   bind mounts, e.g. `/var/lib/docker/containers/<id>/hostname`, still name it).
//! * `container=` in `/proc/1/environ` (set by podman, systemd-nspawn, lxc).
//! * `/.dockerenv`: the weakest, because it leaks into images that are later
//!   booted as VMs. It counts as evidence only when the cgroup file does not
//!   contradict it: a cgroup v1 file whose paths are all host paths (no
//!   container path) means the marker leaked, and the host is not a container.
//!
//! A container id is taken only when a path segment is exactly 64 hex
//! characters (docker, containerd, cri-o and podman all use such ids).
//!
//! # VM evidence
//!
//! `/sys/class/dmi/id/{product_name,sys_vendor,board_vendor,bios_vendor}`:
//! KVM, QEMU, OpenStack, KubeVirt, Bochs, Amazon EC2 (Nitro is KVM based) and
//! Google Compute Engine read as `kvm`; VMware, Xen, Microsoft Hyper-V,
//! VirtualBox and Parallels by their names. The `hypervisor` flag in
//! `/proc/cpuinfo` without a DMI match reads as `unknown`. Virtualization is
//! reported under a container too, when the VM below is visible.
//!
//! # Platform
//!
//! A container (on whatever host) is [`Platform::Container`]; otherwise any
//! VM evidence gives [`Platform::Kvm`] (the VM kind; the hypervisor's name is
//! in `virtualization`); otherwise readable DMI or cpuinfo without VM evidence
//! gives [`Platform::Physical`]; with nothing readable the platform is unknown
//! (`None`).

use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::model::{ContainerInfo, ContainerRuntime, Platform};
use crate::vars::Vars;

/// Probe files larger than this are read only up to it.
pub const MAX_PROBE_BYTES: u64 = 1024 * 1024;

/// What the probes found about the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detection {
    /// The host kind (`None` when nothing readable told).
    pub platform: Option<Platform>,
    /// Container facts, when in a container.
    pub container: Option<ContainerInfo>,
    /// The hypervisor, when visible.
    pub virtualization: Option<String>,
    /// Each piece of evidence used, as `probe: finding`, for `--explain`.
    pub evidence: Vec<String>,
}

/// What a cgroup or mountinfo file says about containers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CgroupFacts {
    /// The runtime the paths name.
    pub runtime: Option<ContainerRuntime>,
    /// A 64-hex container id found in the paths.
    pub id: Option<String>,
    /// A `kubepods` path was seen (Kubernetes evidence).
    pub kubepods: bool,
    /// Some line named a container path at all.
    pub container: bool,
}

/// True for exactly 64 hex characters.
pub(crate) fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads one path the way the probes do: what it says about containers.
fn classify_path(path: &str, facts: &mut CgroupFacts) {
    let lower = path.to_ascii_lowercase();
    let hint = if lower.contains("kubepods") {
        facts.kubepods = true;
        Some(ContainerRuntime::Kubernetes)
    } else if lower.contains("libpod") || lower.contains("/containers/storage/overlay-containers/")
    {
        Some(ContainerRuntime::Podman)
    } else if lower.contains("docker") {
        Some(ContainerRuntime::Docker)
    } else if lower.contains("crio") || lower.contains("cri-o") {
        Some(ContainerRuntime::CriO)
    } else if lower.contains("containerd") {
        Some(ContainerRuntime::Containerd)
    } else {
        None
    };
    let id = lower
        .split(['/', '-', '.', ':', '_'])
        .rfind(|seg| is_container_id(seg))
        .map(str::to_string);
    if hint.is_some() || id.is_some() {
        facts.container = true;
    }
    // The first runtime named wins, except that Kubernetes evidence beats a
    // CRI runtime name seen earlier.
    match (facts.runtime, hint) {
        (None, Some(h)) => facts.runtime = Some(h),
        (Some(_), Some(ContainerRuntime::Kubernetes)) => {
            facts.runtime = Some(ContainerRuntime::Kubernetes)
        }
        _ => {}
    }
    if facts.id.is_none() {
        facts.id = id;
    }
}

/// Parses `/proc/self/cgroup` (`hierarchy:controllers:path` lines).
pub(crate) fn parse_cgroup(text: &str) -> CgroupFacts {
    let mut facts = CgroupFacts::default();
    for line in text.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        classify_path(path, &mut facts);
    }
    facts
}

/// True when a cgroup file is v1 and shows only host paths (no container).
fn cgroup_v1_host_only(text: &str) -> bool {
    let mut v1 = false;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(h), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if h != "0" {
            v1 = true;
        }
        let mut f = CgroupFacts::default();
        classify_path(path, &mut f);
        if f.container {
            return false;
        }
    }
    v1
}

/// Parses `/proc/self/mountinfo`: the root and mount point of each mount
/// (fields 4 and 5) are read for runtime paths and container ids.
pub(crate) fn parse_mountinfo(text: &str) -> CgroupFacts {
    let mut facts = CgroupFacts::default();
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        for path in [root, mount_point] {
            // Only paths a runtime owns; an arbitrary 64-hex directory name
            // on a host mount is not container evidence.
            let lower = path.to_ascii_lowercase();
            if lower.contains("/docker/containers/")
                || lower.contains("/containers/storage/overlay-containers/")
                || lower.contains("kubepods")
                || lower.contains("/io.containerd.")
                || lower.contains("/docker-")
                || lower.contains("/crio-")
                || lower.contains("/libpod-")
                || lower.contains("/cri-containerd-")
                || lower.starts_with("/docker/")
            {
                classify_path(path, &mut facts);
            }
        }
    }
    facts
}

/// The hypervisor a DMI string names, if any.
pub(crate) fn hypervisor_from_dmi(value: &str) -> Option<&'static str> {
    let v = value.trim().to_ascii_lowercase();
    const TABLE: &[(&str, &str)] = &[
        ("kubevirt", "kvm"),
        ("openstack", "kvm"),
        ("kvm", "kvm"),
        ("qemu", "kvm"),
        ("bochs", "kvm"),
        ("amazon ec2", "kvm"),
        ("google compute engine", "kvm"),
        ("vmware", "vmware"),
        ("xen", "xen"),
        ("virtualbox", "virtualbox"),
        ("innotek", "virtualbox"),
        ("parallels", "parallels"),
        ("microsoft corporation virtual machine", "hyperv"),
        ("hyper-v", "hyperv"),
    ];
    TABLE
        .iter()
        .find(|(needle, _)| v.contains(needle))
        .map(|(_, name)| *name)
}

/// A probe root: joins absolute probe paths below it.
struct Root<'a>(&'a Path);

impl Root<'_> {
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    /// The file's text (lossy), bounded; `None` when it cannot be read.
    fn read(&self, rel: &str) -> Option<String> {
        let f = File::open(self.path(rel)).ok()?;
        let mut buf = Vec::new();
        f.take(MAX_PROBE_BYTES).read_to_end(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    fn is_file(&self, rel: &str) -> bool {
        self.path(rel).is_file()
    }
}

const DMI_FILES: [&str; 4] = [
    "/sys/class/dmi/id/product_name",
    "/sys/class/dmi/id/sys_vendor",
    "/sys/class/dmi/id/board_vendor",
    "/sys/class/dmi/id/bios_vendor",
];

const SERVICE_ACCOUNT_NS: [&str; 2] = [
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
    "/run/secrets/kubernetes.io/serviceaccount/namespace",
];

/// Probes the host below `root` (`/` for the real host).
pub fn detect(root: &Path, vars: &Vars) -> Detection {
    let r = Root(root);
    let mut evidence = Vec::new();

    // --- container ---
    let mut kubernetes = false;
    if vars.get("KUBERNETES_SERVICE_HOST").is_some() {
        kubernetes = true;
        evidence.push("KUBERNETES_SERVICE_HOST: set".to_string());
    }
    for ns in SERVICE_ACCOUNT_NS {
        if r.is_file(ns) {
            kubernetes = true;
            evidence.push(format!("{ns}: present"));
            break;
        }
    }
    let podman = r.is_file("/run/.containerenv");
    if podman {
        evidence.push("/run/.containerenv: present (podman)".to_string());
    }
    let cgroup_text = r.read("/proc/self/cgroup");
    let cgroup = cgroup_text.as_deref().map(parse_cgroup).unwrap_or_default();
    if cgroup.container {
        evidence.push(format!("/proc/self/cgroup: {}", describe(&cgroup)));
    }
    let mountinfo = r
        .read("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default();
    if mountinfo.container {
        evidence.push(format!("/proc/self/mountinfo: {}", describe(&mountinfo)));
    }
    kubernetes |= cgroup.kubepods || mountinfo.kubepods;
    let environ_container = r.read("/proc/1/environ").and_then(|env| {
        env.split('\0')
            .find_map(|kv| kv.strip_prefix("container="))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    });
    if let Some(v) = &environ_container {
        evidence.push(format!("/proc/1/environ: container={v}"));
    }
    let dockerenv = r.is_file("/.dockerenv");
    let dockerenv_counts = dockerenv && !cgroup_text.as_deref().is_some_and(cgroup_v1_host_only);
    if dockerenv {
        evidence.push(if dockerenv_counts {
            "/.dockerenv: present (weak evidence)".to_string()
        } else {
            "/.dockerenv: present but ignored (cgroup v1 shows host paths: leaked into the image)"
                .to_string()
        });
    }

    let in_container = kubernetes
        || podman
        || cgroup.container
        || mountinfo.container
        || environ_container.is_some()
        || dockerenv_counts;
    let container = in_container.then(|| {
        let runtime = if kubernetes {
            Some(ContainerRuntime::Kubernetes)
        } else if podman {
            Some(ContainerRuntime::Podman)
        } else {
            cgroup
                .runtime
                .or(mountinfo.runtime)
                .or_else(|| {
                    environ_container
                        .as_deref()
                        .and_then(|v| v.parse::<ContainerRuntime>().ok())
                })
                .or(dockerenv_counts.then_some(ContainerRuntime::Docker))
        };
        ContainerInfo {
            runtime,
            id: cgroup.id.clone().or(mountinfo.id.clone()),
        }
    });

    // --- virtual machine ---
    let mut virtualization = None;
    let mut dmi_readable = false;
    let product = r.read(DMI_FILES[0]);
    for (i, file) in DMI_FILES.iter().enumerate() {
        let value = if i == 0 {
            product.clone()
        } else {
            r.read(file)
        };
        let Some(value) = value else { continue };
        dmi_readable = true;
        // Hyper-V names itself only by vendor plus product.
        let text = if value.trim().eq_ignore_ascii_case("microsoft corporation") {
            format!(
                "microsoft corporation {}",
                product.as_deref().unwrap_or("").trim()
            )
        } else {
            value.clone()
        };
        if let Some(h) = hypervisor_from_dmi(&text) {
            evidence.push(format!("{file}: {:?} ({h})", value.trim()));
            virtualization = Some(h.to_string());
            break;
        }
    }
    let cpuinfo = r.read("/proc/cpuinfo");
    let hypervisor_flag = cpuinfo.as_deref().is_some_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "hypervisor"))
    });
    if hypervisor_flag {
        evidence.push("/proc/cpuinfo: hypervisor flag".to_string());
        if virtualization.is_none() {
            virtualization = Some("unknown".to_string());
        }
    }

    let platform = if container.is_some() {
        Some(Platform::Container)
    } else if virtualization.is_some() {
        Some(Platform::Kvm)
    } else if dmi_readable || cpuinfo.is_some() {
        evidence.push("no container or hypervisor evidence in readable DMI/cpuinfo".to_string());
        Some(Platform::Physical)
    } else {
        None
    };
    Detection {
        platform,
        container,
        virtualization,
        evidence,
    }
}

fn describe(f: &CgroupFacts) -> String {
    let mut parts = Vec::new();
    if let Some(r) = f.runtime {
        parts.push(r.to_string());
    }
    if let Some(id) = &f.id {
        parts.push(format!("id {}", &id[..12]));
    }
    if parts.is_empty() {
        "container path".to_string()
    } else {
        parts.join(", ")
    }
}

/// This host's name and the probe that gave it: `gethostname()` for the
/// root `/`, else `<root>/proc/sys/kernel/hostname`, then `<root>/etc/hostname`.
pub fn hostname(root: &Path) -> Option<(String, String)> {
    if root == Path::new("/") {
        let h = hostname::get().ok()?;
        let h = h.to_string_lossy().trim().to_string();
        return (!h.is_empty()).then(|| (h, "gethostname()".to_string()));
    }
    let r = Root(root);
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            let text = r.read(p)?;
            let h = text.lines().next()?.trim().to_string();
            (!h.is_empty()).then(|| (h, p.to_string()))
        })
}

/// One interface address, as the primary-IP policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Iface {
    /// Interface name (`eth0`).
    pub name: String,
    /// Kernel interface index (order of the policy).
    pub index: u32,
    /// Operationally up (`IFF_RUNNING`).
    pub up: bool,
    /// The address.
    pub addr: IpAddr,
}

/// Interface name prefixes of virtual bridges and overlays, never primary.
pub(crate) const VIRTUAL_PREFIXES: [&str; 14] = [
    "docker",
    "veth",
    "cni",
    "flannel",
    "cali",
    "virbr",
    "br-",
    "cbr",
    "kube-ipvs",
    "tunl",
    "vxlan",
    "weave",
    "lxcbr",
    "podman",
];

/// True for names of virtual bridges and overlays ([`VIRTUAL_PREFIXES`]).
pub(crate) fn is_virtual_interface(name: &str) -> bool {
    VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The policy: the first up, non-loopback IPv4 of a non-virtual
/// interface by index; an IPv6 address (not link-local) only when there is
/// no such IPv4.
pub(crate) fn select_primary_ip(ifaces: &[Iface]) -> Option<&Iface> {
    let mut candidates: Vec<&Iface> = ifaces
        .iter()
        .filter(|i| i.up && !i.addr.is_loopback() && !i.addr.is_unspecified())
        .filter(|i| !is_virtual_interface(&i.name))
        .collect();
    candidates.sort_by_key(|i| i.index);
    candidates
        .iter()
        .find(|i| i.addr.is_ipv4())
        .or_else(|| {
            candidates.iter().find(|i| match i.addr {
                // fe80::/10 is link-local: not reachable from elsewhere.
                IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
                IpAddr::V4(_) => false,
            })
        })
        .copied()
}

/// The primary IP by `select_primary_ip` over the real interfaces, and
/// the interface's name. Never reverse DNS.
pub fn primary_ip() -> Option<(IpAddr, String)> {
    let ifaces: Vec<Iface> = if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| Iface {
            up: i.is_oper_up(),
            addr: i.ip(),
            index: i.index.unwrap_or(u32::MAX),
            name: i.name,
        })
        .collect();
    select_primary_ip(&ifaces).map(|i| (i.addr, i.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID1: &str = "3f4e8c2a9b1d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const ID2: &str = "9c1b2a3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    #[test]
    fn container_id_is_exactly_64_hex() {
        assert!(is_container_id(&"a".repeat(64)));
        assert!(!is_container_id(&"a".repeat(63)));
        assert!(!is_container_id(&"g".repeat(64)));
    }

    #[test]
    fn dmi_names() {
        assert_eq!(hypervisor_from_dmi("QEMU"), Some("kvm"));
        assert_eq!(hypervisor_from_dmi("VMware, Inc."), Some("vmware"));
        assert_eq!(hypervisor_from_dmi("Dell Inc."), None);
    }

    #[test]
    fn cgroup_v1_paths() {
        let f = parse_cgroup(&format!("4:pids:/system.slice/docker-{ID1}.scope\n"));
        assert_eq!(f.runtime, Some(ContainerRuntime::Docker));
        assert_eq!(f.id.as_deref(), Some(ID1));
        let f = parse_cgroup(&format!(
            "3:cpu:/kubepods.slice/kubepods-pod1.slice/crio-{ID2}.scope\n"
        ));
        assert_eq!(f.runtime, Some(ContainerRuntime::Kubernetes));
        assert!(f.kubepods);
        assert_eq!(f.id.as_deref(), Some(ID2));
        let f = parse_cgroup(&format!("3:cpu:/system.slice/crio-{ID2}.scope\n"));
        assert_eq!(f.runtime, Some(ContainerRuntime::CriO));
        // Host paths say nothing.
        let f = parse_cgroup("12:memory:/user.slice\n0::/init.scope\n");
        assert!(!f.container);
        // Garbage lines are skipped, never a panic.
        let f = parse_cgroup("no colons here\n::\n:::::\n\u{0}\n");
        assert!(!f.container);
    }

    #[test]
    fn container_id_must_be_64_hex() {
        let short = &ID1[..63];
        let f = parse_cgroup(&format!("1:cpu:/docker/{short}\n"));
        assert_eq!(f.runtime, Some(ContainerRuntime::Docker));
        assert_eq!(f.id, None, "63 characters is not an id");
        let nonhex = format!("{}g", &ID1[..63]);
        let f = parse_cgroup(&format!("1:cpu:/docker/{nonhex}\n"));
        assert_eq!(f.id, None, "non-hex is not an id");
        let long = format!("{ID1}0");
        let f = parse_cgroup(&format!("1:cpu:/docker/{long}\n"));
        assert_eq!(f.id, None, "65 characters is not an id");
    }

    #[test]
    fn mountinfo_ignores_64_hex_names_outside_runtime_paths() {
        let text = format!("50 40 8:1 /home/user/{ID1} /data rw - ext4 /dev/sda1 rw\n");
        assert!(!parse_mountinfo(&text).container);
        assert!(!parse_mountinfo("short line\n\n1 2 3\n").container);
    }

    fn iface(name: &str, index: u32, up: bool, addr: &str) -> Iface {
        Iface {
            name: name.into(),
            index,
            up,
            addr: addr.parse().unwrap(),
        }
    }

    fn pick(ifaces: &[Iface]) -> Option<IpAddr> {
        select_primary_ip(ifaces).map(|i| i.addr)
    }

    #[test]
    fn primary_ip_policy() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // docker0 has the lower index: the classic wrong answer.
        let t = [
            iface("lo", 1, true, "127.0.0.1"),
            iface("docker0", 2, true, "172.17.0.1"),
            iface("eth0", 3, true, "10.1.2.3"),
        ];
        assert_eq!(pick(&t), ip("10.1.2.3"));
        // Order is by index, not by list order.
        let t = [
            iface("eth1", 5, true, "10.9.9.9"),
            iface("eth0", 4, true, "10.1.1.1"),
        ];
        assert_eq!(pick(&t), ip("10.1.1.1"));
        // Every virtual kind is skipped.
        let t = [
            iface("veth12ab", 2, true, "10.0.0.1"),
            iface("cni0", 3, true, "10.0.0.2"),
            iface("flannel.1", 4, true, "10.0.0.3"),
            iface("cali123", 5, true, "10.0.0.4"),
            iface("virbr0", 6, true, "192.168.122.1"),
            iface("br-1234", 7, true, "172.18.0.1"),
            iface("ens3", 8, true, "10.5.5.5"),
        ];
        assert_eq!(pick(&t), ip("10.5.5.5"));
        // Down interfaces are skipped.
        let t = [
            iface("eth0", 2, false, "10.1.1.1"),
            iface("eth1", 3, true, "10.2.2.2"),
        ];
        assert_eq!(pick(&t), ip("10.2.2.2"));
        // IPv6 only when there is no IPv4; link-local never.
        let t = [
            iface("eth0", 2, true, "fe80::1"),
            iface("eth0", 2, true, "2001:db8::5"),
        ];
        assert_eq!(pick(&t), ip("2001:db8::5"));
        let t = [
            iface("eth0", 2, true, "2001:db8::5"),
            iface("eth1", 3, true, "10.3.3.3"),
        ];
        assert_eq!(pick(&t), ip("10.3.3.3"));
        // Only loopback or link-local: nothing.
        assert_eq!(
            pick(&[
                iface("lo", 1, true, "127.0.0.1"),
                iface("lo", 1, true, "::1")
            ]),
            None
        );
        assert_eq!(pick(&[iface("eth0", 2, true, "fe80::2")]), None);
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn primary_ip_on_this_machine_is_never_virtual() {
        if let Some((ip, name)) = primary_ip() {
            assert!(!ip.is_loopback(), "{ip} on {name}");
            assert!(!is_virtual_interface(&name), "{name}");
        }
    }
}
