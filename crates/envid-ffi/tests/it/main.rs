//! The C and JNI binding's integration tests, one binary (each module a
//! former `tests/*.rs` file): C programs compiled and run (also under
//! valgrind), Java compiled with `javac` and run with JUnit 5, and the
//! generated header compared with `include/envid.h`.

mod c_api;
mod common;
mod header;
mod java;
mod java_jar;
