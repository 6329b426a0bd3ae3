package io.envid;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * The Java binding's test program, run by {@code crates/envid-ffi/tests/java.rs}:
 *
 * <pre>
 *   java -Djava.library.path=target/debug -cp OUT io.envid.EnvidTest WORKDIR [MODE [LOOKUP_URL]]
 * </pre>
 *
 * WORKDIR holds what the Rust harness wrote: {@code cases/*.tsv} (for each
 * descriptor, the Rust library's field values and JSON, or the error kind it
 * gives), {@code hostnames.tsv} (the Rust library's hostname explanations),
 * {@code lookups/*.tsv} (the Rust lookup client's answers from the reference
 * service at LOOKUP_URL), and the error fixtures of the C test. MODE {@code invalid-value} only
 * checks that {@link Environment#current()} fails with
 * {@code INVALID_VALUE} (the harness sets a bad {@code ENVID_IP}).
 *
 * <p>Prints one line per failure and a final "N passed, M failed"; exits 1 on failure.
 */
public final class EnvidTest {
    private static final AtomicInteger PASSED = new AtomicInteger();
    private static final AtomicInteger FAILED = new AtomicInteger();

    private static void check(boolean ok, String what) {
        if (ok) {
            PASSED.incrementAndGet();
        } else {
            FAILED.incrementAndGet();
            System.out.println("FAIL " + what);
        }
    }

    private static void checkEq(Object got, Object want, String what) {
        check(Objects.equals(got, want), what + ": got " + got + ", expected " + want);
    }

    /** Runs {@code r} and checks it throws an EnvidException of {@code kind}. */
    private static EnvidException expectThrows(EnvidException.Kind kind, String what, Runnable r) {
        try {
            r.run();
            check(false, what + ": no exception, expected " + kind);
        } catch (EnvidException e) {
            checkEq(e.kind(), kind, what + " (message: " + e.getMessage() + ")");
            check(e.getMessage() != null && !e.getMessage().isEmpty(), what + ": has a message");
            return e;
        } catch (Throwable t) {
            check(false, what + ": threw " + t + ", expected EnvidException " + kind);
        }
        return null;
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

    private static final Map<String, Function<Environment, Optional<String>>> GETTERS = new LinkedHashMap<>();

    static {
        GETTERS.put("app", Environment::getApp);
        GETTERS.put("env", e -> Optional.of(e.getEnv()));
        GETTERS.put("env_type", e -> Optional.of(e.getEnvType()));
        GETTERS.put("sub_env", Environment::getSubEnv);
        GETTERS.put("idc", e -> Optional.of(e.getIdc()));
        GETTERS.put("platform", e -> Optional.of(e.getPlatform()));
        GETTERS.put("hostname", Environment::getHostname);
        GETTERS.put("ip", Environment::getIp);
        GETTERS.put("container.runtime", Environment::getContainerRuntime);
        GETTERS.put("container.id", Environment::getContainerId);
        GETTERS.put("virtualization", Environment::getVirtualization);
        GETTERS.put("release.id", Environment::getReleaseId);
        GETTERS.put("release.version", Environment::getReleaseVersion);
        GETTERS.put("release.batch", e -> {
            java.util.OptionalInt b = e.getReleaseBatch();
            return b.isPresent() ? Optional.of(Integer.toString(b.getAsInt())) : Optional.empty();
        });
        GETTERS.put("release.deployed_at", Environment::getReleaseDeployedAt);
        GETTERS.put("k8s.cluster", Environment::getK8sCluster);
        GETTERS.put("k8s.namespace", Environment::getK8sNamespace);
        GETTERS.put("k8s.pod", Environment::getK8sPod);
        GETTERS.put("k8s.node", Environment::getK8sNode);
        GETTERS.put("k8s.workload", Environment::getK8sWorkload);
    }

    /** Every getter, the labels and the JSON against the Rust library's answers. */
    static void compare(Environment e, Map<String, String> want, String name) {
        for (Map.Entry<String, Function<Environment, Optional<String>>> g : GETTERS.entrySet()) {
            checkEq(g.getValue().apply(e), Optional.ofNullable(want.get(g.getKey())), name + " " + g.getKey());
        }
        Map<String, String> labels = new TreeMap<>();
        for (Map.Entry<String, String> kv : want.entrySet()) {
            if (kv.getKey().startsWith("label.")) {
                String k = kv.getKey().substring("label.".length());
                labels.put(k, kv.getValue());
                checkEq(e.getLabel(k), Optional.of(kv.getValue()), name + " label " + k);
            }
        }
        checkEq(new TreeMap<>(e.getLabels()), labels, name + " labels");
        checkEq(e.getLabel("no-such-label"), Optional.empty(), name + " missing label");
        checkEq(e.toJson(), want.get("json"), name + " toJson()");
        String full = e.toJson(true, true);
        check(full.contains("\"sources\""), name + " toJson(true, true) has sources");
    }

    static void testCases(Path work) throws IOException {
        List<Path> cases = new ArrayList<>();
        try (var s = Files.list(work.resolve("cases"))) {
            s.filter(p -> p.toString().endsWith(".tsv")).sorted().forEach(cases::add);
        }
        check(cases.size() >= 1, "at least one descriptor case");
        for (Path c : cases) {
            Map<String, String> want = readTsv(c);
            String name = c.getFileName().toString();
            LoadOptions o = LoadOptions.builder()
                    .descriptor(want.get("descriptor"))
                    .envVars(false)
                    .strict("true".equals(want.get("strict")))
                    .build();
            if (want.containsKey("error")) {
                expectThrows(EnvidException.Kind.valueOf(want.get("error")), name + " load fails", () -> Environment.load(o));
            } else {
                compare(Environment.load(o), want, name);
            }
        }
    }

    static void testCurrent(Path work) throws IOException {
        Environment e = Environment.current();
        check(e == Environment.current(), "current() is one object");
        compare(e, readTsv(work.resolve("cases/example.toml.tsv")), "current()");
        checkEq(e.toString(), e.toJson(), "toString is the JSON");
    }

    static void testErrors(Path work) {
        expectThrows(EnvidException.Kind.IO, "missing descriptor",
                () -> Environment.load(LoadOptions.builder().descriptor(work.resolve("nope.toml")).build()));
        EnvidException e = expectThrows(EnvidException.Kind.DESCRIPTOR, "syntax error",
                () -> Environment.load(LoadOptions.builder().descriptor(work.resolve("bad-syntax.toml")).build()));
        check(e != null && e.getMessage().contains("bad-syntax.toml"), "the message names the file");
        Environment.load(LoadOptions.builder().descriptor(work.resolve("unknown-key.toml")).envVars(false).build());
        check(true, "unknown key accepted when not strict");
        expectThrows(EnvidException.Kind.DESCRIPTOR, "unknown key in strict mode",
                () -> Environment.load(LoadOptions.builder().descriptor(work.resolve("unknown-key.toml")).strict(true).build()));
        e = expectThrows(EnvidException.Kind.UNIDENTIFIED, "no env, no idc",
                () -> Environment.load(LoadOptions.builder().descriptor(work.resolve("no-env.toml"))
                        .root(work.resolve("root")).envVars(false).build()));
        check(e != null && e.getMessage().contains("no-env.toml"), "unidentified lists the descriptor");
        expectThrows(EnvidException.Kind.RULES, "bad rules file in load",
                () -> Environment.load(LoadOptions.builder().descriptor(work.resolve("unknown-key.toml"))
                        .rulesFile(work.resolve("bad-rules.toml")).build()));
        expectThrows(EnvidException.Kind.INVALID_INPUT, "empty descriptor path",
                () -> Environment.load(LoadOptions.builder().descriptor("").build()));
        expectThrows(EnvidException.Kind.NULL_PARAMETER, "null label key",
                () -> Environment.current().getLabel(null));
        expectThrows(EnvidException.Kind.IO, "missing rules file",
                () -> HostnameRules.load(work.resolve("nope-rules.toml")));
        expectThrows(EnvidException.Kind.RULES, "bad rules file",
                () -> HostnameRules.load(work.resolve("bad-rules.toml")));
        expectThrows(EnvidException.Kind.NULL_PARAMETER, "null hostname",
                () -> HostnameRules.builtin().explain(null));
        expectThrows(EnvidException.Kind.NULL_PARAMETER, "null rules path", () -> HostnameRules.load(null));
        // A native handle of 0 is refused, not dereferenced.
        expectThrows(EnvidException.Kind.NULL_PARAMETER, "handle 0", () -> Native.field(0, Native.ENV));
        expectThrows(EnvidException.Kind.INVALID_INPUT, "bad field number",
                () -> Native.field(Native.current(), 99));
        // A Rust panic is an exception, and the JVM goes on. The panicking
        // method exists only in a library built with the test-hooks feature.
        if (Boolean.getBoolean("envid.testHooks")) {
            for (int i = 0; i < 3; i++) {
                expectThrows(EnvidException.Kind.PANIC, "panic becomes an exception", Native::panicForTest);
            }
        } else {
            boolean absent = false;
            try {
                Native.panicForTest();
            } catch (UnsatisfiedLinkError missing) {
                absent = true;
            }
            check(absent, "panicForTest is absent without the test-hooks feature");
        }
        checkEq(Environment.current().getIdc(), "cn0", "after panics, calls still work");
        checkEq(EnvidException.Kind.of(9), EnvidException.Kind.UNIDENTIFIED, "Kind.of");
        checkEq(EnvidException.Kind.of(1234), EnvidException.Kind.UNKNOWN, "Kind.of unknown");
    }

    static void testHostnames(Path work) throws IOException {
        for (String line : Files.readAllLines(work.resolve("hostnames.tsv"), StandardCharsets.UTF_8)) {
            if (line.isEmpty()) {
                continue;
            }
            String[] f = line.split("\t", -1);
            // rules-file  hostname  then either "none" or 8 fields
            HostnameRules rules = f[0].isEmpty() ? HostnameRules.builtin() : HostnameRules.load(Paths.get(f[0]));
            Optional<HostnameMatch> m = rules.explain(f[1]);
            String what = "explain " + f[1] + (f[0].isEmpty() ? "" : " with " + f[0]);
            if (f[2].equals("none")) {
                checkEq(m, Optional.empty(), what);
                continue;
            }
            check(m.isPresent(), what + " matches");
            if (m.isEmpty()) {
                continue;
            }
            HostnameMatch h = m.get();
            checkEq(h.getRule(), f[2], what + " rule");
            checkEq(h.getHostname(), f[3], what + " hostname");
            checkEq(h.getEnv(), f[4], what + " env");
            checkEq(Boolean.toString(h.isEnvDefaulted()), f[5], what + " env_defaulted");
            checkEq(h.getEnvType(), f[6], what + " env_type");
            checkEq(h.getIdc(), opt(f[7]), what + " idc");
            checkEq(h.getApp(), opt(f[8]), what + " app");
            checkEq(h.getBiz(), opt(f[9]), what + " biz");
            checkEq(h, rules.explain(f[1]).get(), what + " equals");
        }
    }

    private static Optional<String> opt(String s) {
        return s.isEmpty() ? Optional.empty() : Optional.of(s);
    }

    /** Many threads at once: process-wide reads, loads, explains, errors. */
    static void testThreads(Path work) throws InterruptedException {
        int threads = 16;
        AtomicInteger errors = new AtomicInteger();
        CountDownLatch start = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        String example = work.resolve("cases").toString();
        for (int t = 0; t < threads; t++) {
            Thread th = new Thread(() -> {
                try {
                    start.await();
                    for (int i = 0; i < 2000; i++) {
                        Environment c = Environment.current();
                        if (!"beta".equals(c.getEnv()) || !"cn0".equals(c.getIdc())) {
                            errors.incrementAndGet();
                        }
                        if (i % 100 == 0) {
                            Environment l = Environment.load(LoadOptions.builder()
                                    .descriptor(work.resolve("unknown-key.toml")).envVars(false).build());
                            if (!"cn0".equals(l.getIdc())) {
                                errors.incrementAndGet();
                            }
                            if (!HostnameRules.builtin().explain("l-qmq1.h.cn5").isPresent()) {
                                errors.incrementAndGet();
                            }
                            try {
                                Environment.load(LoadOptions.builder().descriptor(work.resolve("bad-syntax.toml")).build());
                                errors.incrementAndGet();
                            } catch (EnvidException e) {
                                if (e.kind() != EnvidException.Kind.DESCRIPTOR) {
                                    errors.incrementAndGet();
                                }
                            }
                        }
                    }
                } catch (Throwable e) {
                    System.out.println("thread failed: " + e);
                    errors.incrementAndGet();
                }
            });
            ts.add(th);
            th.start();
        }
        start.countDown();
        for (Thread th : ts) {
            th.join();
        }
        checkEq(errors.get(), 0, threads + " threads, errors");
        // Let the cleaner free what the threads loaded.
        System.gc();
        check(example != null, "threads done");
    }

    private static final Map<String, Function<HostRecord, Optional<String>>> RECORD_GETTERS = new LinkedHashMap<>();

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
            java.util.OptionalInt b = r.getReleaseBatch();
            return b.isPresent() ? Optional.of(Integer.toString(b.getAsInt())) : Optional.empty();
        });
        RECORD_GETTERS.put("release.deployed_at", HostRecord::getReleaseDeployedAt);
        RECORD_GETTERS.put("k8s.cluster", HostRecord::getK8sCluster);
        RECORD_GETTERS.put("k8s.namespace", HostRecord::getK8sNamespace);
        RECORD_GETTERS.put("k8s.pod", HostRecord::getK8sPod);
        RECORD_GETTERS.put("k8s.node", HostRecord::getK8sNode);
        RECORD_GETTERS.put("k8s.workload", HostRecord::getK8sWorkload);
    }

    static void compareRecord(Optional<HostRecord> got, Map<String, String> want, String what) {
        if (want.containsKey("unknown")) {
            checkEq(got, Optional.empty(), what + " unknown");
            return;
        }
        check(got.isPresent(), what + " found");
        if (got.isEmpty()) {
            return;
        }
        HostRecord r = got.get();
        for (Map.Entry<String, Function<HostRecord, Optional<String>>> g : RECORD_GETTERS.entrySet()) {
            checkEq(g.getValue().apply(r), Optional.ofNullable(want.get(g.getKey())), what + " " + g.getKey());
        }
        Map<String, String> labels = new TreeMap<>();
        for (Map.Entry<String, String> kv : want.entrySet()) {
            if (kv.getKey().startsWith("label.")) {
                labels.put(kv.getKey().substring("label.".length()), kv.getValue());
            }
        }
        checkEq(new TreeMap<>(r.getLabels()), labels, what + " labels");
        checkEq(r.toJson(), want.get("json"), what + " toJson()");
    }

    static void testLookups(Path work, String url) throws Exception {
        List<Map<String, String>> cases = new ArrayList<>();
        try (var s = Files.list(work.resolve("lookups"))) {
            for (Path p : (Iterable<Path>) s.sorted()::iterator) {
                cases.add(readTsv(p));
            }
        }
        check(cases.size() >= 5, "lookup cases");
        List<String> ips = new ArrayList<>();
        LookupClient c = LookupClient.builder().endpoint(url).connectTimeout(java.time.Duration.ofMillis(500))
                .perPhaseTimeout(java.time.Duration.ofSeconds(2)).ttl(java.time.Duration.ofMinutes(1))
                .negativeTtl(java.time.Duration.ofSeconds(5)).maxStale(java.time.Duration.ofMinutes(10))
                .maxRetries(1).build();
        try {
            for (Map<String, String> want : cases) {
                String ip = want.get("query");
                ips.add(ip);
                compareRecord(c.lookup(ip), want, "lookup " + ip);
            }
            LookupClient.Stats s1 = c.stats();
            check(s1.getMisses() >= cases.size() && s1.getRequests() >= 1, "stats after lookups: " + s1);
            // Again: all from the cache.
            for (Map<String, String> want : cases) {
                compareRecord(c.lookup(want.get("query")), want, "cached lookup " + want.get("query"));
            }
            LookupClient.Stats s2 = c.stats();
            checkEq(s2.getHits() - s1.getHits(), (long) cases.size(), "cache hits");
            checkEq(s2.getRequests(), s1.getRequests(), "no new requests");
            checkEq(s2.getErrors(), 0L, "no errors");
            check(s2.toString().contains("hits="), "stats toString");
            // Many at once, in order.
            Map<String, Optional<HostRecord>> many = c.lookupMany(ips);
            checkEq(new ArrayList<>(many.keySet()), ips, "lookupMany keys in order");
            for (Map<String, String> want : cases) {
                compareRecord(many.get(want.get("query")), want, "lookupMany " + want.get("query"));
            }
            // A fresh client's batch goes to the service.
            try (LookupClient fresh = LookupClient.builder().endpoint(url).build()) {
                Map<String, Optional<HostRecord>> m = fresh.lookupMany(ips);
                for (Map<String, String> want : cases) {
                    compareRecord(m.get(want.get("query")), want, "fresh lookupMany " + want.get("query"));
                }
                check(fresh.stats().getRequests() >= 1, "batch request sent");
            }
            checkEq(c.lookupMany(List.of()), Map.of(), "empty batch");
            expectThrows(EnvidException.Kind.INVALID_INPUT, "bad IP", () -> c.lookup("10.0.0.300"));
            expectThrows(EnvidException.Kind.INVALID_INPUT, "bad IP in a batch",
                    () -> c.lookupMany(List.of("10.0.0.5", "nope")));
            expectThrows(EnvidException.Kind.NULL_PARAMETER, "null IP", () -> c.lookup(null));
            expectThrows(EnvidException.Kind.NULL_PARAMETER, "null IPs", () -> c.lookupMany(null));

            // Each IP its own outcome: the good ones answer beside a malformed one.
            List<String> mixed = new ArrayList<>(ips);
            mixed.add(1, "nope");
            mixed.add("10.0.0.300");
            mixed.add(ips.get(0)); // a repeat: one entry per distinct IP
            Map<String, LookupResult> each = c.lookupEach(mixed);
            List<String> distinct = new ArrayList<>(new java.util.LinkedHashSet<>(mixed));
            checkEq(new ArrayList<>(each.keySet()), distinct, "lookupEach keys: distinct, in order");
            for (Map<String, String> want : cases) {
                LookupResult r = each.get(want.get("query"));
                check(!r.isFailed() && r.error().isEmpty(), "lookupEach " + want.get("query") + " answered: " + r);
                compareRecord(r.record(), want, "lookupEach " + want.get("query"));
                compareRecord(r.get(), want, "lookupEach get " + want.get("query"));
            }
            for (String bad : List.of("nope", "10.0.0.300")) {
                LookupResult r = each.get(bad);
                check(r.isFailed() && r.record().isEmpty(), "lookupEach " + bad + " failed: " + r);
                EnvidException e = r.error().orElseThrow();
                checkEq(e.kind(), EnvidException.Kind.INVALID_INPUT, "lookupEach " + bad + " kind");
                check(e.getMessage().contains(bad), "lookupEach names " + bad + ": " + e.getMessage());
                expectThrows(EnvidException.Kind.INVALID_INPUT, "lookupEach get " + bad, r::get);
                check(r.toString().contains("INVALID_INPUT"), "toString of a failure: " + r);
            }
            checkEq(c.lookupEach(List.of()), Map.of(), "lookupEach of nothing");
            expectThrows(EnvidException.Kind.NULL_PARAMETER, "lookupEach null IPs", () -> c.lookupEach(null));
            expectThrows(EnvidException.Kind.NULL_PARAMETER, "lookupEach null IP",
                    () -> c.lookupEach(java.util.Arrays.asList("10.0.0.5", null)));

            // Many threads on one client.
            checkEq(lookupsFromThreads(16, 300, cases, c::lookup), 0, "16 threads of lookups, errors");
        } finally {
            c.close();
        }
        c.close(); // idempotent
        expectThrows(EnvidException.Kind.NULL_PARAMETER, "lookup after close", () -> c.lookup("10.0.0.5"));

        expectThrows(EnvidException.Kind.INVALID_INPUT, "no endpoint", () -> LookupClient.builder().build());
        expectThrows(EnvidException.Kind.INVALID_INPUT, "bad endpoint",
                () -> LookupClient.builder().endpoint("ftp://example").build());
        expectThrows(EnvidException.Kind.INVALID_INPUT, "zero timeout",
                () -> LookupClient.builder().endpoint(url).perPhaseTimeout(java.time.Duration.ZERO).build());
        try (LookupClient down = LookupClient.builder().endpoint("http://127.0.0.1:1")
                .connectTimeout(java.time.Duration.ofMillis(300)).maxRetries(0).build()) {
            EnvidException e = expectThrows(EnvidException.Kind.LOOKUP_FAILED, "service down",
                    () -> down.lookup("10.0.0.5"));
            check(e != null && e.getMessage().contains("127.0.0.1:1"), "the message names the endpoint");
            expectThrows(EnvidException.Kind.LOOKUP_FAILED, "service down, batch",
                    () -> down.lookupMany(List.of("10.0.0.6", "10.0.0.7")));
            Map<String, LookupResult> downEach = down.lookupEach(List.of("10.0.0.8", "bad", "10.0.0.9"));
            for (String ip : List.of("10.0.0.8", "10.0.0.9")) {
                EnvidException err = downEach.get(ip).error().orElse(null);
                check(err != null && err.kind() == EnvidException.Kind.LOOKUP_FAILED
                        && err.getMessage().contains("127.0.0.1:1"),
                        "service down, lookupEach " + ip + ": " + downEach.get(ip));
            }
            checkEq(downEach.get("bad").error().map(EnvidException::kind),
                    Optional.of(EnvidException.Kind.INVALID_INPUT), "service down, lookupEach bad IP");
            check(down.stats().getErrors() >= 1, "errors counted");
        }
    }

    /**
     * {@code threads} threads each make {@code perThread} lookups of the
     * cases through {@code lookup}; returns how many answers were wrong.
     */
    static int lookupsFromThreads(int threads, int perThread, List<Map<String, String>> cases,
            java.util.function.Function<String, Optional<HostRecord>> lookup) throws InterruptedException {
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

    static void testReplica(Path work, String url) throws Exception {
        List<Map<String, String>> cases = new ArrayList<>();
        try (var s = Files.list(work.resolve("lookups"))) {
            for (Path p : (Iterable<Path>) s.sorted()::iterator) {
                cases.add(readTsv(p));
            }
        }
        Path cache = work.resolve("replica-cache.json");
        Replica r = Replica.builder().endpoint(url).connectTimeout(java.time.Duration.ofMillis(500))
                .perPhaseTimeout(java.time.Duration.ofSeconds(2)).cacheFile(cache).build();
        try {
            // The replica answers what the Rust on-demand client got from the service.
            for (Map<String, String> want : cases) {
                compareRecord(r.lookup(want.get("query")), want, "replica " + want.get("query"));
            }
            Replica.Stats st = r.stats();
            check(st.getVersion() >= 1, "replica version: " + st);
            checkEq(st.getRecords(), 10L, "replica records (testdata/registry.toml)");
            checkEq(st.getSnapshots(), 1L, "one snapshot");
            check(!st.isFromCache() && st.getAge().isPresent(), "synced, not from cache: " + st);
            check(st.toString().contains("version="), "stats toString");
            expectThrows(EnvidException.Kind.INVALID_INPUT, "replica bad IP", () -> r.lookup("10.0.0.300"));
            expectThrows(EnvidException.Kind.NULL_PARAMETER, "replica null IP", () -> r.lookup(null));

            checkEq(lookupsFromThreads(16, 1000, cases, r::lookup), 0, "16 threads of replica lookups, errors");
        } finally {
            r.close();
        }
        r.close(); // idempotent
        expectThrows(EnvidException.Kind.NULL_PARAMETER, "replica lookup after close", () -> r.lookup("10.0.0.5"));

        // The service unreachable: the cache file answers.
        try (Replica down = Replica.builder().endpoint("http://127.0.0.1:1")
                .connectTimeout(java.time.Duration.ofMillis(300)).cacheFile(cache).build()) {
            check(down.stats().isFromCache() && down.stats().getAge().isEmpty(), "from the cache file: " + down.stats());
            for (Map<String, String> want : cases) {
                compareRecord(down.lookup(want.get("query")), want, "cached replica " + want.get("query"));
            }
        }
        EnvidException e = expectThrows(EnvidException.Kind.LOOKUP_FAILED, "replica, service down, no cache",
                () -> Replica.builder().endpoint("http://127.0.0.1:1")
                        .connectTimeout(java.time.Duration.ofMillis(300)).build());
        check(e != null && e.getMessage().contains("127.0.0.1:1"), "the message names the endpoint");
        expectThrows(EnvidException.Kind.INVALID_INPUT, "replica without endpoint", () -> Replica.builder().build());
        expectThrows(EnvidException.Kind.INVALID_INPUT, "replica bad endpoint",
                () -> Replica.builder().endpoint("ftp://example").build());
    }

    /** Replaces a file the way a deploy would: the service never reads half of it. */
    static void replaceFile(Path path, String text) throws Exception {
        Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
        Files.writeString(tmp, text);
        Files.move(tmp, path, java.nio.file.StandardCopyOption.ATOMIC_MOVE,
                java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    }

    /** Polls (up to 10 s) until the replica's answer for ip passes the test. */
    static boolean replicaUntil(Replica r, String ip, java.util.function.Predicate<Optional<HostRecord>> ok)
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
    static void testReplicaDeltas(String url, Path registry) throws Exception {
        String original = Files.readString(registry);
        try (Replica r = Replica.builder().endpoint(url).perPhaseTimeout(java.time.Duration.ofSeconds(2)).build()) {
            Replica.Stats before = r.stats();
            checkEq(r.lookup("192.0.2.78"), Optional.empty(), "not yet registered");
            replaceFile(registry, original
                    + "\n[[records]]\nip = \"192.0.2.78\"\napp = \"java-delta\"\nenv = \"beta\"\nidc = \"cn0\"\n");
            check(replicaUntil(r, "192.0.2.78", rec -> rec.flatMap(HostRecord::getApp).equals(Optional.of("java-delta"))),
                    "the added record reaches the replica");
            replaceFile(registry, original);
            check(replicaUntil(r, "192.0.2.78", Optional::isEmpty), "the removed record leaves the replica");
            Replica.Stats after = r.stats();
            check(after.getVersion() >= before.getVersion() + 2, "versions: " + before + " -> " + after);
            check(after.getDeltas() >= before.getDeltas() + 2, "deltas: " + before + " -> " + after);
            checkEq(after.getSnapshots(), before.getSnapshots(), "no new snapshot");
            checkEq(after.getRecords(), before.getRecords(), "records back to the start");
            checkEq(after.getSyncErrors(), before.getSyncErrors(), "no sync error");
        } finally {
            replaceFile(registry, original);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: EnvidTest WORKDIR [MODE [LOOKUP_URL [REGISTRY]]]");
            System.exit(2);
        }
        Path work = Paths.get(args[0]);
        String mode = args.length > 1 ? args[1] : "all";
        try {
            if (mode.equals("invalid-value")) {
                EnvidException e = expectThrows(EnvidException.Kind.INVALID_VALUE, "bad ENVID_IP", Environment::current);
                check(e != null && e.getMessage().contains("ENVID_IP"), "the message names ENVID_IP");
                // Not cached: the next call fails the same way.
                expectThrows(EnvidException.Kind.INVALID_VALUE, "bad ENVID_IP again", Environment::current);
            } else {
                testCurrent(work);
                testCases(work);
                testErrors(work);
                testHostnames(work);
                testThreads(work);
                if (args.length > 2) {
                    testLookups(work, args[2]);
                    testReplica(work, args[2]);
                    if (args.length > 3) {
                        testReplicaDeltas(args[2], Paths.get(args[3]));
                    } else {
                        check(false, "no REGISTRY given: replica deltas were not tested");
                    }
                } else {
                    check(false, "no LOOKUP_URL given: the lookup client was not tested");
                }
            }
        } catch (Throwable t) {
            FAILED.incrementAndGet();
            System.out.println("FAIL unexpected " + t);
            t.printStackTrace(System.out);
        }
        System.out.println(PASSED.get() + " passed, " + FAILED.get() + " failed");
        System.exit(FAILED.get() == 0 ? 0 : 1);
    }
}
