package io.envid;

import static io.envid.TestData.assertThrowsKind;
import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.LinkedHashMap;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** {@link LookupClient} against the real reference service; the Rust client's answers are the expectation. */
class LookupClientTest {
    static final Map<String, Function<HostRecord, Optional<String>>> RECORD_GETTERS = new LinkedHashMap<>();

    static {
        RECORD_GETTERS.put("ip", HostRecord::getIp);
        RECORD_GETTERS.put("cidr", HostRecord::getCidr);
        RECORD_GETTERS.put("app", HostRecord::getApp);
        RECORD_GETTERS.put("env", r -> Optional.of(r.getEnv()));
        RECORD_GETTERS.put("env_type", r -> Optional.of(r.getEnvType()));
        RECORD_GETTERS.put("sub_env", HostRecord::getSubEnv);
        RECORD_GETTERS.put("idc", r -> Optional.of(r.getIdc()));
        RECORD_GETTERS.put("platform", HostRecord::getPlatform);
        RECORD_GETTERS.put("hostname", HostRecord::getHostname);
        RECORD_GETTERS.put("container.runtime", HostRecord::getContainerRuntime);
        RECORD_GETTERS.put("container.id", HostRecord::getContainerId);
        RECORD_GETTERS.put("release.id", HostRecord::getReleaseId);
        RECORD_GETTERS.put("release.version", HostRecord::getReleaseVersion);
        RECORD_GETTERS.put("release.batch", r -> {
            OptionalInt b = r.getReleaseBatch();
            return b.isPresent() ? Optional.of(Integer.toString(b.getAsInt())) : Optional.empty();
        });
        RECORD_GETTERS.put("release.deployed_at", HostRecord::getReleaseDeployedAt);
        RECORD_GETTERS.put("k8s.cluster", HostRecord::getK8sCluster);
        RECORD_GETTERS.put("k8s.namespace", HostRecord::getK8sNamespace);
        RECORD_GETTERS.put("k8s.pod", HostRecord::getK8sPod);
        RECORD_GETTERS.put("k8s.node", HostRecord::getK8sNode);
        RECORD_GETTERS.put("k8s.workload", HostRecord::getK8sWorkload);
        RECORD_GETTERS.put("k8s.pod_uid", HostRecord::getK8sPodUid);
    }

    /** A record (or its absence) against the Rust client's answer, field by field, all reported at once. */
    static void compareRecord(Optional<HostRecord> got, Map<String, String> want, String what) {
        if (want.containsKey("unknown")) {
            assertEquals(Optional.empty(), got, what + " unknown");
            return;
        }
        assertTrue(got.isPresent(), what + " found");
        HostRecord r = got.get();
        List<Executable> checks = new ArrayList<>();
        for (Map.Entry<String, Function<HostRecord, Optional<String>>> g : RECORD_GETTERS.entrySet()) {
            checks.add(() -> assertEquals(Optional.ofNullable(want.get(g.getKey())), g.getValue().apply(r),
                    what + " " + g.getKey()));
        }
        Map<String, String> labels = new TreeMap<>();
        for (Map.Entry<String, String> kv : want.entrySet()) {
            if (kv.getKey().startsWith("label.")) {
                labels.put(kv.getKey().substring("label.".length()), kv.getValue());
            }
        }
        checks.add(() -> assertEquals(labels, new TreeMap<>(r.getLabels()), what + " labels"));
        checks.add(() -> assertEquals(want.get("json"), r.toJson(), what + " toJson()"));
        assertAll(what, checks);
    }

    /**
     * {@code threads} threads each make {@code perThread} lookups of the
     * cases through {@code lookup}; returns how many answers were wrong.
     */
    static int lookupsFromThreads(int threads, int perThread, List<Map<String, String>> cases,
            Function<String, Optional<HostRecord>> lookup) throws InterruptedException {
        AtomicInteger errors = new AtomicInteger();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            final int seed = t;
            Thread th = new Thread(() -> {
                for (int i = 0; i < perThread; i++) {
                    Map<String, String> want = cases.get((seed + i) % cases.size());
                    Optional<HostRecord> got = lookup.apply(want.get("query"));
                    boolean ok = want.containsKey("unknown") ? got.isEmpty()
                            : got.isPresent() && got.get().toJson().equals(want.get("json"));
                    if (!ok) {
                        errors.incrementAndGet();
                    }
                }
            });
            ts.add(th);
            th.start();
        }
        for (Thread th : ts) {
            th.join();
        }
        return errors.get();
    }

    @Test
    void lookupsCacheBatchesAndThreads() throws Exception {
        String url = TestData.url();
        List<Map<String, String>> cases = TestData.lookupCases();
        assertTrue(cases.size() >= 5, "lookup cases: " + cases.size());
        List<String> ips = new ArrayList<>();
        LookupClient c = LookupClient.builder().endpoint(url).connectTimeout(Duration.ofMillis(500))
                .perPhaseTimeout(Duration.ofSeconds(2)).ttl(Duration.ofMinutes(1))
                .negativeTtl(Duration.ofSeconds(5)).maxStale(Duration.ofMinutes(10))
                .maxRetries(1).build();
        try {
            for (Map<String, String> want : cases) {
                String ip = want.get("query");
                ips.add(ip);
                compareRecord(c.lookup(ip), want, "lookup " + ip);
            }
            LookupClient.Stats s1 = c.stats();
            assertTrue(s1.getMisses() >= cases.size() && s1.getRequests() >= 1, "stats after lookups: " + s1);
            // Again: all from the cache.
            for (Map<String, String> want : cases) {
                compareRecord(c.lookup(want.get("query")), want, "cached lookup " + want.get("query"));
            }
            LookupClient.Stats s2 = c.stats();
            assertEquals((long) cases.size(), s2.getHits() - s1.getHits(), "cache hits");
            assertEquals(s1.getRequests(), s2.getRequests(), "no new requests");
            assertEquals(0L, s2.getErrors(), "no errors");
            assertTrue(s2.toString().contains("hits="), "stats toString: " + s2);
            // Many at once, in order.
            Map<String, Optional<HostRecord>> many = c.lookupMany(ips);
            assertEquals(ips, new ArrayList<>(many.keySet()), "lookupMany keys in order");
            for (Map<String, String> want : cases) {
                compareRecord(many.get(want.get("query")), want, "lookupMany " + want.get("query"));
            }
            // A fresh client's batch goes to the service.
            try (LookupClient fresh = LookupClient.builder().endpoint(url).build()) {
                Map<String, Optional<HostRecord>> m = fresh.lookupMany(ips);
                for (Map<String, String> want : cases) {
                    compareRecord(m.get(want.get("query")), want, "fresh lookupMany " + want.get("query"));
                }
                assertTrue(fresh.stats().getRequests() >= 1, "batch request sent");
            }
            assertEquals(Map.of(), c.lookupMany(List.of()), "empty batch");
            assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "bad IP", () -> c.lookup("10.0.0.300"));
            assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "bad IP in a batch",
                    () -> c.lookupMany(List.of("10.0.0.5", "nope")));
            assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "null IP", () -> c.lookup(null));
            assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "null IPs", () -> c.lookupMany(null));

            // Each IP its own outcome: the good ones answer beside a malformed one.
            List<String> mixed = new ArrayList<>(ips);
            mixed.add(1, "nope");
            mixed.add("10.0.0.300");
            mixed.add(ips.get(0)); // a repeat: one entry per distinct IP
            Map<String, LookupResult> each = c.lookupEach(mixed);
            List<String> distinct = new ArrayList<>(new LinkedHashSet<>(mixed));
            assertEquals(distinct, new ArrayList<>(each.keySet()), "lookupEach keys: distinct, in order");
            for (Map<String, String> want : cases) {
                LookupResult r = each.get(want.get("query"));
                assertTrue(!r.isFailed() && r.error().isEmpty(), "lookupEach " + want.get("query") + " answered: " + r);
                compareRecord(r.record(), want, "lookupEach " + want.get("query"));
                compareRecord(r.get(), want, "lookupEach get " + want.get("query"));
            }
            for (String bad : List.of("nope", "10.0.0.300")) {
                LookupResult r = each.get(bad);
                assertTrue(r.isFailed() && r.record().isEmpty(), "lookupEach " + bad + " failed: " + r);
                EnvidException e = r.error().orElseThrow();
                assertEquals(EnvidException.Kind.INVALID_INPUT, e.kind(), "lookupEach " + bad + " kind");
                assertTrue(e.getMessage().contains(bad), "lookupEach names " + bad + ": " + e.getMessage());
                assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "lookupEach get " + bad, r::get);
                assertTrue(r.toString().contains("INVALID_INPUT"), "toString of a failure: " + r);
            }
            assertEquals(Map.of(), c.lookupEach(List.of()), "lookupEach of nothing");
            assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "lookupEach null IPs", () -> c.lookupEach(null));
            assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "lookupEach null IP",
                    () -> c.lookupEach(Arrays.asList("10.0.0.5", null)));

            // Many threads on one client.
            assertEquals(0, lookupsFromThreads(16, 300, cases, c::lookup), "16 threads of lookups, errors");
        } finally {
            c.close();
        }
        c.close(); // idempotent
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "lookup after close", () -> c.lookup("10.0.0.5"));
    }

    @Test
    void badOptions() {
        String url = TestData.url();
        assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "no endpoint", () -> LookupClient.builder().build());
        assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "bad endpoint",
                () -> LookupClient.builder().endpoint("ftp://example").build());
        assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "zero timeout",
                () -> LookupClient.builder().endpoint(url).perPhaseTimeout(Duration.ZERO).build());
    }

    @Test
    void serviceDown() {
        try (LookupClient down = LookupClient.builder().endpoint("http://127.0.0.1:1")
                .connectTimeout(Duration.ofMillis(300)).maxRetries(0).build()) {
            EnvidException e = assertThrowsKind(EnvidException.Kind.LOOKUP_FAILED, "service down",
                    () -> down.lookup("10.0.0.5"));
            assertTrue(e.getMessage().contains("127.0.0.1:1"), "the message names the endpoint: " + e.getMessage());
            assertThrowsKind(EnvidException.Kind.LOOKUP_FAILED, "service down, batch",
                    () -> down.lookupMany(List.of("10.0.0.6", "10.0.0.7")));
            Map<String, LookupResult> downEach = down.lookupEach(List.of("10.0.0.8", "bad", "10.0.0.9"));
            for (String ip : List.of("10.0.0.8", "10.0.0.9")) {
                EnvidException err = downEach.get(ip).error().orElse(null);
                assertTrue(err != null && err.kind() == EnvidException.Kind.LOOKUP_FAILED
                        && err.getMessage().contains("127.0.0.1:1"),
                        "service down, lookupEach " + ip + ": " + downEach.get(ip));
            }
            assertEquals(Optional.of(EnvidException.Kind.INVALID_INPUT),
                    downEach.get("bad").error().map(EnvidException::kind), "service down, lookupEach bad IP");
            assertTrue(down.stats().getErrors() >= 1, "errors counted: " + down.stats());
        }
    }
}
