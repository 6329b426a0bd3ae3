package io.envid;

import static io.envid.TestData.opt;
import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Optional;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/** {@link HostnameRules#explain} against the Rust library's explanations, one test per hostname and rules file. */
class HostnameRulesTest {
    @TestFactory
    Stream<DynamicTest> explanationsAgreeWithRust() throws IOException {
        return Files.readAllLines(TestData.work().resolve("hostnames.tsv"), StandardCharsets.UTF_8).stream()
                .filter(line -> !line.isEmpty())
                .map(line -> line.split("\t", -1))
                .map(f -> {
                    String what = "explain '" + f[1] + "'" + (f[0].isEmpty() ? "" : " with " + f[0]);
                    return DynamicTest.dynamicTest(what, () -> check(f, what));
                });
    }

    /** rules-file, hostname, then either "none" or 8 fields. */
    private static void check(String[] f, String what) {
        HostnameRules rules = f[0].isEmpty() ? HostnameRules.builtin() : HostnameRules.load(Paths.get(f[0]));
        Optional<HostnameMatch> m = rules.explain(f[1]);
        if (f[2].equals("none")) {
            assertEquals(Optional.empty(), m, what);
            return;
        }
        assertTrue(m.isPresent(), what + " matches");
        HostnameMatch h = m.get();
        assertAll(what,
                () -> assertEquals(f[2], h.getRule(), what + " rule"),
                () -> assertEquals(f[3], h.getHostname(), what + " hostname"),
                () -> assertEquals(f[4], h.getEnv(), what + " env"),
                () -> assertEquals(f[5], Boolean.toString(h.isEnvDefaulted()), what + " env_defaulted"),
                () -> assertEquals(f[6], h.getEnvType(), what + " env_type"),
                () -> assertEquals(opt(f[7]), h.getIdc(), what + " idc"),
                () -> assertEquals(opt(f[8]), h.getApp(), what + " app"),
                () -> assertEquals(opt(f[9]), h.getBiz(), what + " biz"),
                () -> assertEquals(h, rules.explain(f[1]).get(), what + " equals"));
    }
}
