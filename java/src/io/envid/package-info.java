/**
 * envid for Java: where this process runs ({@link io.envid.Environment}),
 * what hostnames say ({@link io.envid.HostnameRules}) and where an IP is
 * ({@link io.envid.LookupClient}, {@link io.envid.Replica}), answered by the
 * envid Rust library through JNI.
 *
 * <h2>The jar</h2>
 *
 * {@code envid-<version>.jar} (built by {@code java/build.sh}) holds these
 * classes and the native library for the platform it was built on, under
 * {@code META-INF/native/<os>-<arch>/}. With only the jar on the class path
 * ({@code java -cp envid.jar:app.jar App}) nothing else is needed. The native
 * library is found, in this order:
 *
 * <ol>
 *   <li>{@code -Denvid.library=FILE}: that file, and only it (an error names
 *       the file when it does not load);</li>
 *   <li>{@code libenvid_ffi.so} in a directory on {@code java.library.path};</li>
 *   <li>the library bundled in the jar, copied to a private directory under
 *       {@code java.io.tmpdir} ({@code envid-<user>}, owner-only), loaded, and
 *       deleted again right away where the OS allows.</li>
 * </ol>
 *
 * When none works, the {@link java.lang.UnsatisfiedLinkError} lists what was
 * tried and why each failed, naming the platform ({@code os.name},
 * {@code os.arch}) when the jar holds no library for it.
 */
package io.envid;
