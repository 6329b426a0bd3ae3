package io.envid;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.nio.file.attribute.UserPrincipal;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * Finds and loads {@code libenvid_ffi} (the Rust library behind
 * {@link Native}). In order, the first that applies wins:
 *
 * <ol>
 *   <li>{@code -Denvid.library=FILE}: that file, with {@code System.load}. When
 *       set it is the only choice: if it does not load, the error names the file
 *       and nothing else is tried (a library silently taken from elsewhere would
 *       hide the mistake).</li>
 *   <li>{@code java.library.path}: {@code System.loadLibrary("envid_ffi")}, for
 *       hosts that install the library themselves.</li>
 *   <li>The library bundled in the jar, at
 *       {@code META-INF/native/<os>-<arch>/libenvid_ffi.so} ({@code <os>}:
 *       {@code linux}, {@code macos}, {@code windows}; {@code <arch>}:
 *       {@code x86_64}, {@code aarch64}; see {@link #platform()}). A JVM cannot
 *       load a library from inside a jar, so it is copied out first.</li>
 * </ol>
 *
 * <p>When all fail, the {@link UnsatisfiedLinkError} lists each attempt and
 * why it failed, and names the platform ({@code os.name}, {@code os.arch})
 * when the jar holds no library for it.
 *
 * <h2>How the bundled library is copied out</h2>
 *
 * Into a directory private to the user, {@code ${java.io.tmpdir}/envid-<user>},
 * created owner-only ({@code rwx------}); if that path exists but is not a
 * directory owned by this user with no group or other access (say another
 * user made it first to plant a library), a fresh private directory from
 * {@link Files#createTempDirectory} is used instead. The copy is named by
 * the library's SHA-256 plus a unique suffix
 * ({@code libenvid_ffi-<sha256 prefix>-<random>.so}), made with
 * {@link Files#createTempFile} (owner-only, and atomically new): each JVM
 * writes and loads its own copy, so several JVMs starting at once never
 * read each other's half-written file, and two class loaders of one JVM can
 * each load their own copy (the JVM refuses one library file in two class
 * loaders). The copy's checksum is verified before it is loaded. Once
 * loaded, the copy is deleted at once: on Linux and macOS a loaded library
 * stays mapped, so nothing is left behind even if the JVM is later killed.
 * Where the OS refuses to delete a loaded library
 * (Windows), it is marked {@link java.io.File#deleteOnExit()}. Only a JVM
 * killed between the write and the load (milliseconds) leaves a file. A
 * {@code java.io.tmpdir} on a {@code noexec} mount cannot hold a loadable
 * library: point {@code -Djava.io.tmpdir} elsewhere, or use one of the first
 * two ways.
 */
final class NativeLoader {
    private NativeLoader() {}

    /** The library's base name, as for {@code System.loadLibrary}. */
    static final String NAME = "envid_ffi";

    /** The platform directory name, {@code <os>-<arch>}, as {@code java/build.sh} names it. */
    static String platform() {
        return os() + "-" + arch();
    }

    private static String os() {
        String n = System.getProperty("os.name", "unknown").toLowerCase(Locale.ROOT);
        if (n.startsWith("linux")) {
            return "linux";
        }
        if (n.startsWith("mac") || n.startsWith("darwin")) {
            return "macos";
        }
        if (n.startsWith("windows")) {
            return "windows";
        }
        return n.replaceAll("[^a-z0-9]+", "");
    }

    private static String arch() {
        String a = System.getProperty("os.arch", "unknown").toLowerCase(Locale.ROOT);
        switch (a) {
            case "amd64":
            case "x86_64":
            case "x86-64":
                return "x86_64";
            case "aarch64":
            case "arm64":
                return "aarch64";
            default:
                return a.replaceAll("[^a-z0-9_]+", "");
        }
    }

    /** The bundled library's resource path for this platform. */
    static String resource() {
        return "META-INF/native/" + platform() + "/" + System.mapLibraryName(NAME);
    }

    /** Loads the library, or throws an UnsatisfiedLinkError saying what was tried. */
    static void load() {
        String explicit = System.getProperty("envid.library");
        if (explicit != null && !explicit.isEmpty()) {
            try {
                System.load(Paths.get(explicit).toAbsolutePath().toString());
                return;
            } catch (UnsatisfiedLinkError | RuntimeException e) {
                throw linkError("envid: cannot load the native library named by -Denvid.library="
                        + explicit + ": " + e.getMessage(), e);
            }
        }
        List<String> tried = new ArrayList<>();
        tried.add("-Denvid.library: not set");
        try {
            System.loadLibrary(NAME);
            return;
        } catch (UnsatisfiedLinkError e) {
            // The JDK's message names the path it searched.
            tried.add("java.library.path: " + e.getMessage());
        }
        Throwable cause = null;
        try {
            if (loadBundled(tried)) {
                return;
            }
        } catch (IOException | RuntimeException | UnsatisfiedLinkError e) {
            tried.add("bundled " + resource() + ": " + e);
            cause = e;
        }
        StringBuilder b = new StringBuilder();
        b.append("envid: cannot load the native library ").append(System.mapLibraryName(NAME))
                .append(" for platform ").append(platform()).append(" (os.name=")
                .append(System.getProperty("os.name")).append(", os.arch=")
                .append(System.getProperty("os.arch")).append("). Tried:");
        for (int i = 0; i < tried.size(); i++) {
            b.append("\n  ").append(i + 1).append(". ").append(tried.get(i));
        }
        b.append("\nUse an envid jar built on this platform (cargo build --release -p envid-ffi &&"
                + " bash java/build.sh), put the directory holding ").append(System.mapLibraryName(NAME))
                .append(" on -Djava.library.path, or name the file with -Denvid.library=FILE.");
        throw linkError(b.toString(), cause);
    }

    private static UnsatisfiedLinkError linkError(String message, Throwable cause) {
        UnsatisfiedLinkError err = new UnsatisfiedLinkError(message);
        if (cause != null) {
            err.initCause(cause);
        }
        return err;
    }

    /** Copies the bundled library out and loads it; false (with a note in tried) when there is none. */
    private static boolean loadBundled(List<String> tried) throws IOException {
        String resource = resource();
        byte[] lib;
        try (InputStream in = NativeLoader.class.getClassLoader() == null
                ? ClassLoader.getSystemResourceAsStream(resource)
                : NativeLoader.class.getClassLoader().getResourceAsStream(resource)) {
            if (in == null) {
                tried.add("bundled library: the jar holds no " + resource + " (no library for platform "
                        + platform() + ", os.name=" + System.getProperty("os.name") + ", os.arch="
                        + System.getProperty("os.arch") + ")");
                return false;
            }
            lib = in.readAllBytes();
        }
        String sha = sha256(lib);
        Path dir = privateDirectory();
        String mapped = System.mapLibraryName(NAME);
        int dot = mapped.lastIndexOf('.');
        String stem = (dot < 0 ? mapped : mapped.substring(0, dot)) + "-" + sha.substring(0, 16) + "-";
        String suffix = dot < 0 ? "" : mapped.substring(dot);
        // A name no other JVM or class loader uses: nobody else writes or deletes this file.
        Path target = Files.createTempFile(dir, stem, suffix);
        try {
            Files.write(target, lib);
            String written = sha256(Files.readAllBytes(target));
            if (!written.equals(sha)) {
                throw new IOException("the copy " + target + " has SHA-256 " + written + ", expected " + sha);
            }
            System.load(target.toString());
            return true;
        } finally {
            try {
                Files.delete(target);
            } catch (IOException e) {
                target.toFile().deleteOnExit();
            }
        }
    }

    private static String sha256(byte[] bytes) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(bytes);
            StringBuilder b = new StringBuilder(d.length * 2);
            for (byte x : d) {
                b.append(Character.forDigit((x >> 4) & 0xf, 16)).append(Character.forDigit(x & 0xf, 16));
            }
            return b.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is part of every JDK", e);
        }
    }

    private static final Set<PosixFilePermission> OWNER_ONLY = EnumSet.of(PosixFilePermission.OWNER_READ,
            PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE);

    /** {@code ${java.io.tmpdir}/envid-<user>}, if it is safely ours; else a fresh private directory. */
    private static Path privateDirectory() throws IOException {
        Path tmpdir = Paths.get(System.getProperty("java.io.tmpdir"));
        String user = System.getProperty("user.name", "user").replaceAll("[^A-Za-z0-9._-]", "_");
        Path dir = tmpdir.resolve("envid-" + user);
        boolean posix = tmpdir.getFileSystem().supportedFileAttributeViews().contains("posix");
        try {
            if (posix) {
                Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(OWNER_ONLY));
            } else {
                Files.createDirectory(dir);
            }
        } catch (FileAlreadyExistsException e) {
            // Someone made it first: this user earlier, or another JVM now.
        }
        if (isPrivate(dir, posix)) {
            return dir;
        }
        Path fresh = Files.createTempDirectory("envid-");
        fresh.toFile().deleteOnExit();
        return fresh;
    }

    /** A real directory (not a link), owned by this user, no group or other access. */
    private static boolean isPrivate(Path dir, boolean posix) throws IOException {
        if (!Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
            return false;
        }
        // Who "this user" is, as the file system sees it: the owner of a file just made.
        Path probe = Files.createTempFile(dir.getParent(), "envid-owner-", ".probe");
        UserPrincipal me;
        try {
            me = Files.getOwner(probe);
        } finally {
            Files.deleteIfExists(probe);
        }
        if (!me.equals(Files.getOwner(dir, LinkOption.NOFOLLOW_LINKS))) {
            return false;
        }
        return !posix || Files.getPosixFilePermissions(dir, LinkOption.NOFOLLOW_LINKS).equals(OWNER_ONLY);
    }
}
