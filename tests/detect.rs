//! Platform detection on the fake host roots under `testdata/hosts/`, and
//! the primary-IP policy on interface tables.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use envid::detect::{self, Iface};
use envid::vars::Vars;
use envid::{ContainerRuntime, Platform};

fn host(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hosts")
        .join(name)
}

fn no_vars() -> Vars {
    Vars::from_pairs::<_, String, String>([])
}

const ID1: &str = "3f4e8c2a9b1d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
const ID2: &str = "9c1b2a3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const ID3: &str = "b7e2c91d3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d";

/// (host, platform, runtime, id, virtualization)
type Expect = (
    &'static str,
    Option<Platform>,
    Option<ContainerRuntime>,
    Option<&'static str>,
    Option<&'static str>,
);

const HOSTS: &[Expect] = &[
    (
        "docker",
        Some(Platform::Container),
        Some(ContainerRuntime::Docker),
        Some(ID1),
        None,
    ),
    (
        "docker-cgroup2",
        Some(Platform::Container),
        Some(ContainerRuntime::Docker),
        Some(ID2),
        None,
    ),
    (
        "podman",
        Some(Platform::Container),
        Some(ContainerRuntime::Podman),
        Some(ID3),
        None,
    ),
    (
        "k8s-cgroup1",
        Some(Platform::Container),
        Some(ContainerRuntime::Kubernetes),
        Some(ID1),
        None,
    ),
    (
        "k8s-cgroup2",
        Some(Platform::Container),
        Some(ContainerRuntime::Kubernetes),
        Some(ID2),
        None,
    ),
    (
        "containerd",
        Some(Platform::Container),
        Some(ContainerRuntime::Containerd),
        Some(ID3),
        None,
    ),
    ("kvm", Some(Platform::Kvm), None, None, Some("kvm")),
    ("openstack", Some(Platform::Kvm), None, None, Some("kvm")),
    (
        "k8s-on-kvm",
        Some(Platform::Container),
        Some(ContainerRuntime::Kubernetes),
        None,
        Some("kvm"),
    ),
    ("physical", Some(Platform::Physical), None, None, None),
    (
        "dockerenv-leaked",
        Some(Platform::Physical),
        None,
        None,
        None,
    ),
    (
        "dockerenv-only",
        Some(Platform::Container),
        Some(ContainerRuntime::Docker),
        None,
        None,
    ),
    ("empty", None, None, None, None),
    (
        "unreadable",
        Some(Platform::Container),
        Some(ContainerRuntime::Podman),
        None,
        Some("kvm"),
    ),
];

#[test]
fn every_fake_host_is_detected_as_expected() {
    let mut failures = Vec::new();
    for (name, platform, runtime, id, virt) in HOSTS {
        let d = detect::detect(&host(name), &no_vars());
        let got = (
            d.platform,
            d.container.as_ref().and_then(|c| c.runtime),
            d.container.as_ref().and_then(|c| c.id.clone()),
            d.virtualization.clone(),
        );
        let want = (
            *platform,
            *runtime,
            id.map(str::to_string),
            virt.map(str::to_string),
        );
        if got != want {
            failures.push(format!(
                "{name}: want {want:?}, got {got:?}\n  evidence: {:?}",
                d.evidence
            ));
        }
        if platform.is_some() {
            assert!(!d.evidence.is_empty(), "{name}: a verdict without evidence");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn kubernetes_needs_real_evidence_not_a_hostname() {
    // A pod-like hostname alone is not Kubernetes.
    let vars = Vars::from_pairs([("HOSTNAME", "flight-order-7d9c4-x2k8p")]);
    let d = detect::detect(&host("docker"), &vars);
    assert_eq!(d.container.unwrap().runtime, Some(ContainerRuntime::Docker));
    let d = detect::detect(&host("physical"), &vars);
    assert_eq!(d.platform, Some(Platform::Physical));

    // The service variable is evidence.
    let vars = Vars::from_pairs([("KUBERNETES_SERVICE_HOST", "10.96.0.1")]);
    let d = detect::detect(&host("docker"), &vars);
    assert_eq!(
        d.container.unwrap().runtime,
        Some(ContainerRuntime::Kubernetes)
    );
    assert!(d
        .evidence
        .iter()
        .any(|e| e.contains("KUBERNETES_SERVICE_HOST")));
}

#[test]
fn cgroup_v1_paths() {
    let f = detect::parse_cgroup(&format!("4:pids:/system.slice/docker-{ID1}.scope\n"));
    assert_eq!(f.runtime, Some(ContainerRuntime::Docker));
    assert_eq!(f.id.as_deref(), Some(ID1));
    let f = detect::parse_cgroup(&format!(
        "3:cpu:/kubepods.slice/kubepods-pod1.slice/crio-{ID2}.scope\n"
    ));
    assert_eq!(f.runtime, Some(ContainerRuntime::Kubernetes));
    assert!(f.kubepods);
    assert_eq!(f.id.as_deref(), Some(ID2));
    let f = detect::parse_cgroup(&format!("3:cpu:/system.slice/crio-{ID2}.scope\n"));
    assert_eq!(f.runtime, Some(ContainerRuntime::CriO));
    // Host paths say nothing.
    let f = detect::parse_cgroup("12:memory:/user.slice\n0::/init.scope\n");
    assert!(!f.container);
    // Garbage lines are skipped, never a panic.
    let f = detect::parse_cgroup("no colons here\n::\n:::::\n\u{0}\n");
    assert!(!f.container);
}

#[test]
fn container_id_must_be_64_hex() {
    let short = &ID1[..63];
    let f = detect::parse_cgroup(&format!("1:cpu:/docker/{short}\n"));
    assert_eq!(f.runtime, Some(ContainerRuntime::Docker));
    assert_eq!(f.id, None, "63 characters is not an id");
    let nonhex = format!("{}g", &ID1[..63]);
    let f = detect::parse_cgroup(&format!("1:cpu:/docker/{nonhex}\n"));
    assert_eq!(f.id, None, "non-hex is not an id");
    let long = format!("{ID1}0");
    let f = detect::parse_cgroup(&format!("1:cpu:/docker/{long}\n"));
    assert_eq!(f.id, None, "65 characters is not an id");
}

#[test]
fn mountinfo_ignores_64_hex_names_outside_runtime_paths() {
    let text = format!("50 40 8:1 /home/user/{ID1} /data rw - ext4 /dev/sda1 rw\n");
    assert!(!detect::parse_mountinfo(&text).container);
    assert!(!detect::parse_mountinfo("short line\n\n1 2 3\n").container);
}

#[test]
fn unreadable_probe_files_are_skipped() {
    // Permission bits do not stop root, so the fixture uses directories where
    // files are expected (reads fail with EISDIR). When not root, a mode-000
    // file is tried as well.
    let d = detect::detect(&host("unreadable"), &no_vars());
    assert_eq!(d.platform, Some(Platform::Container));
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("proc/1");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("environ"), "container=docker\0").unwrap();
        std::fs::set_permissions(p.join("environ"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        let d = detect::detect(root.path(), &no_vars());
        assert_eq!(d.platform, None, "an unreadable environ gives no evidence");
    }
}

#[test]
fn hostname_from_a_fake_root_and_the_real_host() {
    assert_eq!(
        detect::hostname(&host("kvm")),
        Some((
            "l-flightqma9.f.beta.cn0".to_string(),
            "/etc/hostname".to_string()
        ))
    );
    assert_eq!(detect::hostname(&host("empty")), None);
    let (name, probe) = detect::hostname(Path::new("/")).expect("this machine has a hostname");
    assert!(!name.is_empty());
    assert_eq!(probe, "gethostname()");
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
    detect::select_primary_ip(ifaces).map(|i| i.addr)
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
fn primary_ip_on_this_machine_is_never_loopback() {
    if let Some((ip, name)) = detect::primary_ip() {
        assert!(!ip.is_loopback(), "{ip} on {name}");
        assert!(!detect::is_virtual_interface(&name), "{name}");
    }
}
