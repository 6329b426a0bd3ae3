package io.envid;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.function.Executable;

/**
 * What the Rust harness ({@code crates/envid-ffi/tests/java.rs}) prepared for
 * the JUnit tests, named by system properties:
 *
 * <ul>
 *   <li>{@code envidtest.work}: the directory holding {@code cases/*.tsv} (for
 *       each descriptor, the Rust library's field values and JSON, or the error
 *       kind it gives), {@code hostnames.tsv} (the Rust library's hostname
 *       explanations), {@code lookups/*.tsv} (the Rust lookup client's answers)
 *       and the error fixtures of the C test;</li>
 *   <li>{@code envidtest.url}: the reference service the lookups go to;</li>
 *   <li>{@code envidtest.registry}: the registry file that service serves
 *       (the replica test rewrites it).</li>
 * </ul>
 */
final class TestData {
    private TestData() {}

    static Path work() {
        return Paths.get(required("envidtest.work"));
    }

    static String url() {
        return required("envidtest.url");
    }

    static Path registry() {
        return Paths.get(required("envidtest.registry"));
    }

    private static String required(String name) {
        String v = System.getProperty(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalStateException("-D" + name + " is not set; crates/envid-ffi/tests/java.rs sets it");
        }
        return v;
    }

    static String unescape(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\\' && i + 1 < s.length()) {
                char n = s.charAt(++i);
                switch (n) {
                    case 't': b.append('\t'); break;
                    case 'n': b.append('\n'); break;
                    case 'r': b.append('\r'); break;
                    default: b.append(n);
                }
            } else {
                b.append(c);
            }
        }
        return b.toString();
    }

    /** key → value lines of a .tsv file (escaped with \\t, \\n, \\r, \\\\). */
    static Map<String, String> readTsv(Path p) throws IOException {
        Map<String, String> m = new LinkedHashMap<>();
        for (String line : Files.readAllLines(p, StandardCharsets.UTF_8)) {
            if (line.isEmpty()) {
                continue;
            }
            int tab = line.indexOf('\t');
            m.put(unescape(line.substring(0, tab)), unescape(line.substring(tab + 1)));
        }
        return m;
    }

    /** The .tsv files of a directory under the work directory, sorted. */
    static List<Path> tsvFiles(String dir) throws IOException {
        List<Path> out = new ArrayList<>();
        try (var s = Files.list(work().resolve(dir))) {
            s.filter(p -> p.toString().endsWith(".tsv")).sorted().forEach(out::add);
        }
        return out;
    }

    /** The Rust lookup client's answers, one map per IP. */
    static List<Map<String, String>> lookupCases() throws IOException {
        List<Map<String, String>> cases = new ArrayList<>();
        for (Path p : tsvFiles("lookups")) {
            cases.add(readTsv(p));
        }
        return cases;
    }

    static Optional<String> opt(String s) {
        return s.isEmpty() ? Optional.empty() : Optional.of(s);
    }

    /** Asserts {@code r} throws an EnvidException of {@code kind} with a message; returns it. */
    static EnvidException assertThrowsKind(EnvidException.Kind kind, String what, Executable r) {
        EnvidException e = assertThrows(EnvidException.class, r, what + ": expected EnvidException " + kind);
        assertEquals(kind, e.kind(), what + " (message: " + e.getMessage() + ")");
        assertFalse(e.getMessage() == null || e.getMessage().isEmpty(), what + ": has a message");
        return e;
    }
}
