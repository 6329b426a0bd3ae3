//! `current()` loads once and hands out the same instance. Its own test
//! binary, because it sets `ENVID_DESCRIPTOR` in the process environment.

use std::path::Path;

#[test]
fn current_is_loaded_once_and_shared() {
    assert!(envid::environment::current_if_loaded().is_none());
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example.toml");
    // Safe here: this binary has a single test, so no other thread reads the
    // environment while it is changed.
    std::env::set_var("ENVID_DESCRIPTOR", &example);
    let a = envid::current().expect("example descriptor loads");
    let threads: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(|| envid::current().unwrap() as *const _ as usize))
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), a as *const _ as usize);
    }
    assert_eq!(a.app(), Some("flight_order"));
    // Later changes to the process environment do not reload it.
    std::env::set_var("ENVID_DESCRIPTOR", "/nonexistent.toml");
    let b = envid::current().unwrap();
    assert!(std::ptr::eq(a, b));
    assert!(std::ptr::eq(
        envid::environment::current_if_loaded().unwrap(),
        a
    ));
}
