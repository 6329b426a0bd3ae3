package io.envid;

import static io.envid.LookupClientTest.compareRecord;
import static io.envid.LookupClientTest.lookupsFromThreads;
import static io.envid.TestData.assertThrowsKind;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Predicate;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/** {@link Replica} against the real reference service. */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ReplicaTest {
    /** Written by the first test, read by the second. */
    private static Path cache() {
        return TestData.work().resolve("replica-cache.json");
    }

    @Test
    @Order(1)
    void replicaAgreesWithTheRustClient() throws Exception {
        List<Map<String, String>> cases = TestData.lookupCases();
        Replica r = Replica.builder().endpoint(TestData.url()).connectTimeout(Duration.ofMillis(500))
                .perPhaseTimeout(Duration.ofSeconds(2)).cacheFile(cache()).build();
        try {
            // The replica answers what the Rust on-demand client got from the service.
            for (Map<String, String> want : cases) {
                compareRecord(r.lookup(want.get("query")), want, "replica " + want.get("query"));
            }
            Replica.Stats st = r.stats();
            assertTrue(st.getVersion() >= 1, "replica version: " + st);
            assertEquals(10L, st.getRecords(), "replica records (testdata/registry.toml)");
            assertEquals(1L, st.getSnapshots(), "one snapshot");
            assertTrue(!st.isFromCache() && st.getAge().isPresent(), "synced, not from cache: " + st);
            assertTrue(st.toString().contains("version="), "stats toString: " + st);
            // Protection against mass deletion: a healthy registry is not protected.
            assertTrue(!st.isProtected() && st.getHeldDeletes() == 0 && st.getProtectedSince().isEmpty(),
                    "not protected: " + st);
            assertEquals(10L, st.getNormalRecords(), "normal record count: " + st);
            // The cache file is written after the first sync.
            assertEquals("present", st.getCacheState(), "cache file state: " + st);
            assertTrue(st.getCacheAge().isPresent() && st.getCacheAge().get().toMillis() < 60_000,
                    "cache file age: " + st);
            assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "replica bad IP", () -> r.lookup("10.0.0.300"));
            assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "replica null IP", () -> r.lookup(null));

            assertEquals(0, lookupsFromThreads(16, 1000, cases, r::lookup), "16 threads of replica lookups, errors");
        } finally {
            r.close();
        }
        r.close(); // idempotent
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "replica lookup after close", () -> r.lookup("10.0.0.5"));
    }

    @Test
    @Order(2)
    void serviceDownTheCacheFileAnswers() throws Exception {
        List<Map<String, String>> cases = TestData.lookupCases();
        assertTrue(Files.exists(cache()), "the first replica wrote its cache file " + cache());
        try (Replica down = Replica.builder().endpoint("http://127.0.0.1:1")
                .connectTimeout(Duration.ofMillis(300)).cacheFile(cache()).build()) {
            assertTrue(down.stats().isFromCache() && down.stats().getAge().isEmpty(),
                    "from the cache file: " + down.stats());
            assertEquals("present", down.stats().getCacheState(), "cache state: " + down.stats());
            assertTrue(down.stats().getCacheAge().isPresent(), "the cache file's age: " + down.stats());
            for (Map<String, String> want : cases) {
                compareRecord(down.lookup(want.get("query")), want, "cached replica " + want.get("query"));
            }
        }
        EnvidException e = assertThrowsKind(EnvidException.Kind.LOOKUP_FAILED, "replica, service down, no cache",
                () -> Replica.builder().endpoint("http://127.0.0.1:1")
                        .connectTimeout(Duration.ofMillis(300)).build());
        assertTrue(e.getMessage().contains("127.0.0.1:1"), "the message names the endpoint: " + e.getMessage());
        assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "replica without endpoint",
                () -> Replica.builder().build());
        assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "replica bad endpoint",
                () -> Replica.builder().endpoint("ftp://example").build());
    }

    /** Replaces a file the way a deploy would: the service never reads half of it. */
    static void replaceFile(Path path, String text) throws Exception {
        Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
        Files.writeString(tmp, text);
        Files.move(tmp, path, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /** Polls (up to 10 s) until the replica's answer for ip passes the test. */
    static boolean replicaUntil(Replica r, String ip, Predicate<Optional<HostRecord>> ok)
            throws InterruptedException {
        for (int i = 0; i < 500; i++) {
            if (ok.test(r.lookup(ip))) {
                return true;
            }
            Thread.sleep(20);
        }
        return false;
    }

    /**
     * The service's registry file changes while a replica runs: the replica
     * follows by deltas (a new record, then its removal), no new snapshot.
     */
    @Test
    @Order(3)
    void followsDeltas() throws Exception {
        Path registry = TestData.registry();
        String original = Files.readString(registry);
        try (Replica r = Replica.builder().endpoint(TestData.url()).perPhaseTimeout(Duration.ofSeconds(2)).build()) {
            Replica.Stats before = r.stats();
            assertEquals(Optional.empty(), r.lookup("192.0.2.78"), "not yet registered");
            replaceFile(registry, original
                    + "\n[[records]]\nip = \"192.0.2.78\"\napp = \"java-delta\"\nenv = \"beta\"\nidc = \"cn0\"\n");
            assertTrue(replicaUntil(r, "192.0.2.78",
                    rec -> rec.flatMap(HostRecord::getApp).equals(Optional.of("java-delta"))),
                    "the added record reaches the replica");
            replaceFile(registry, original);
            assertTrue(replicaUntil(r, "192.0.2.78", Optional::isEmpty), "the removed record leaves the replica");
            Replica.Stats after = r.stats();
            assertTrue(after.getVersion() >= before.getVersion() + 2, "versions: " + before + " -> " + after);
            assertTrue(after.getDeltas() >= before.getDeltas() + 2, "deltas: " + before + " -> " + after);
            assertEquals(before.getSnapshots(), after.getSnapshots(), "no new snapshot");
            assertEquals(before.getRecords(), after.getRecords(), "records back to the start");
            assertEquals(before.getSyncErrors(), after.getSyncErrors(), "no sync error");
        } finally {
            replaceFile(registry, original);
        }
    }
}
