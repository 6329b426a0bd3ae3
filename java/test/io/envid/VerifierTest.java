package io.envid;

import static io.envid.TestData.assertThrowsKind;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * {@link Verifier} against a signing reference service: the identity cases
 * of {@code identity.tsv} get the Rust verifier's answers, token by token.
 */
class VerifierTest {
    private static String keysUrl() {
        String v = System.getProperty("envidtest.keysurl");
        if (v == null) {
            fail("run through cargo test -p envid-ffi --test java (-Denvidtest.keysurl)");
        }
        return v;
    }

    private static List<String[]> cases() throws Exception {
        List<String[]> out = new ArrayList<>();
        for (String line : Files.readAllLines(TestData.work().resolve("identity.tsv"))) {
            out.add(line.split("\t", -1));
        }
        return out;
    }

    private static Verifier verifier() {
        return Verifier.builder().endpoint(keysUrl()).connectTimeout(Duration.ofMillis(500))
                .issuer("envsvc-test").keysCacheFile(TestData.work().resolve("java-keys.json")).build();
    }

    @Test
    void agreesWithRustOnEveryCase() throws Exception {
        List<String[]> cases = cases();
        assertTrue(cases.size() >= 10, "cases: " + cases.size());
        try (Verifier v = verifier()) {
            for (String[] c : cases) {
                String token = c[0];
                String expected = c[1];
                if (expected.equals("OK")) {
                    Claims claims = v.verify(token);
                    assertEquals(c[2], claims.json(), "claims JSON");
                    assertEquals("envid://" + claims.app() + "/" + claims.env(), claims.subject());
                    assertEquals("envsvc-test", claims.issuer());
                    assertEquals("envid", claims.audience());
                    assertTrue(claims.expiresAt() > claims.issuedAt());
                    assertEquals(claims.json(), v.verify(token).json(), "cached answer");
                } else {
                    EnvidException e = assertThrowsKind(EnvidException.Kind.valueOf(expected),
                            "case " + expected, () -> v.verify(token));
                    if (token.length() > 20) {
                        assertFalse(e.getMessage().contains(token.substring(token.length() - 20)),
                                "the message quotes the token: " + e.getMessage());
                    }
                }
            }
            assertThrowsKind(EnvidException.Kind.IDENTITY_MALFORMED, "null token", () -> v.verify(null));
        }
    }

    @Test
    void sixteenThreadsShareOneVerifier() throws Exception {
        List<String[]> cases = cases();
        AtomicInteger ok = new AtomicInteger();
        try (Verifier v = verifier()) {
            List<Thread> threads = new ArrayList<>();
            List<Throwable> errors = new java.util.concurrent.CopyOnWriteArrayList<>();
            for (int t = 0; t < 16; t++) {
                final int offset = t;
                Thread th = new Thread(() -> {
                    try {
                        for (int i = 0; i < 50; i++) {
                            String[] c = cases.get((i + offset) % cases.size());
                            if (c[1].equals("OK")) {
                                assertEquals(c[2], v.verify(c[0]).json());
                                ok.incrementAndGet();
                            } else {
                                try {
                                    v.verify(c[0]);
                                    fail("accepted a " + c[1] + " token");
                                } catch (EnvidException e) {
                                    assertEquals(c[1], e.kind().name());
                                }
                            }
                        }
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                });
                threads.add(th);
                th.start();
            }
            for (Thread th : threads) {
                th.join();
            }
            assertTrue(errors.isEmpty(), "errors: " + errors);
        }
        assertTrue(ok.get() > 0);
    }

    @Test
    void closedVerifierAndNoKeys() {
        Verifier v = verifier();
        v.close();
        v.close();
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "closed", () -> v.verify("a.b.c"));
        Path none = Paths.get(TestData.work().toString(), "no-such-dir", "keys.json");
        assertThrowsKind(EnvidException.Kind.IDENTITY_NO_KEYS, "no service, no cache",
                () -> Verifier.builder().endpoint("http://127.0.0.1:9").keysCacheFile(none)
                        .connectTimeout(Duration.ofMillis(200)).build());
    }
}
