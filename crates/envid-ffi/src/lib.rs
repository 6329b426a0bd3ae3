//! envid's C ABI and JNI binding. STUB: being written.
#![warn(missing_docs)]
