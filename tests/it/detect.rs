//! Platform detection on the fake host roots under `testdata/hosts/`, and
//! the primary-IP policy on interface tables.

use std::path::{Path, PathBuf};

use envid::detect;
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

#[test]
fn primary_ip_on_this_machine_is_never_loopback() {
    if let Some((ip, name)) = detect::primary_ip() {
        assert!(!ip.is_loopback(), "{ip} on {name}");
    }
}
