//! JNI binding (io.envid). Being written.
