//! Natives that exist only for the test suite (the `test-hooks` feature).

use jni::objects::JClass;
use jni::EnvUnowned;

use super::jni_boundary;

/// `static native void panicForTest()`: panics inside a native method, so the
/// Java tests can check that a panic becomes an `EnvidException` of kind
/// `PANIC` and the JVM lives on. Not part of the public Java API: compiled
/// only with the `test-hooks` feature.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_panicForTest<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
) {
    jni_boundary(&mut unowned, |_env| {
        panic!("deliberate panic for the test suite")
    })
}
