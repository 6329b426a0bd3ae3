package io.envid;

import static io.envid.TestData.readTsv;
import static io.envid.TestData.work;
import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.function.Executable;

/** {@link Environment} against the Rust library's answers, getter by getter. */
class EnvironmentTest {
    static final Map<String, Function<Environment, Optional<String>>> GETTERS = new LinkedHashMap<>();

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
            OptionalInt b = e.getReleaseBatch();
            return b.isPresent() ? Optional.of(Integer.toString(b.getAsInt())) : Optional.empty();
        });
        GETTERS.put("release.deployed_at", Environment::getReleaseDeployedAt);
        GETTERS.put("k8s.cluster", Environment::getK8sCluster);
        GETTERS.put("k8s.namespace", Environment::getK8sNamespace);
        GETTERS.put("k8s.pod", Environment::getK8sPod);
        GETTERS.put("k8s.node", Environment::getK8sNode);
        GETTERS.put("k8s.workload", Environment::getK8sWorkload);
        GETTERS.put("k8s.pod_uid", Environment::getK8sPodUid);
    }

    /** Every getter, the labels and the JSON against the Rust library's answers; all reported at once. */
    static void compare(Environment e, Map<String, String> want, String name) {
        List<Executable> checks = new ArrayList<>();
        for (Map.Entry<String, Function<Environment, Optional<String>>> g : GETTERS.entrySet()) {
            checks.add(() -> assertEquals(Optional.ofNullable(want.get(g.getKey())), g.getValue().apply(e),
                    name + " " + g.getKey()));
        }
        Map<String, String> labels = new TreeMap<>();
        for (Map.Entry<String, String> kv : want.entrySet()) {
            if (kv.getKey().startsWith("label.")) {
                String k = kv.getKey().substring("label.".length());
                labels.put(k, kv.getValue());
                checks.add(() -> assertEquals(Optional.of(kv.getValue()), e.getLabel(k), name + " label " + k));
            }
        }
        checks.add(() -> assertEquals(labels, new TreeMap<>(e.getLabels()), name + " labels"));
        checks.add(() -> assertEquals(Optional.empty(), e.getLabel("no-such-label"), name + " missing label"));
        checks.add(() -> assertEquals(want.get("json"), e.toJson(), name + " toJson()"));
        checks.add(() -> assertTrue(e.toJson(true, true).contains("\"sources\""),
                name + " toJson(true, true) has sources"));
        assertAll(name, checks);
    }

    @Test
    void currentIsOneObjectAndAgreesWithRust() throws IOException {
        Environment e = Environment.current();
        assertSame(e, Environment.current(), "current() is one object");
        compare(e, readTsv(work().resolve("cases/example.toml.tsv")), "current()");
        assertEquals(e.toJson(), e.toString(), "toString is the JSON");
    }

    @Test
    void labelsAreUnmodifiable() {
        Map<String, String> labels = Environment.current().getLabels();
        try {
            labels.put("x", "y");
        } catch (UnsupportedOperationException expected) {
            return;
        }
        throw new AssertionError("getLabels() could be modified");
    }

    /** One test per descriptor of testdata/descriptors (and example.toml), strict and not. */
    @TestFactory
    Stream<DynamicTest> descriptorCases() throws IOException {
        List<Path> cases = TestData.tsvFiles("cases");
        assertFalse(cases.isEmpty(), "at least one descriptor case");
        return cases.stream().map(c -> DynamicTest.dynamicTest(c.getFileName().toString(), () -> {
            Map<String, String> want = readTsv(c);
            String name = c.getFileName().toString();
            LoadOptions o = LoadOptions.builder()
                    .descriptor(want.get("descriptor"))
                    .envVars(false)
                    .strict("true".equals(want.get("strict")))
                    .build();
            if (want.containsKey("error")) {
                TestData.assertThrowsKind(EnvidException.Kind.valueOf(want.get("error")), name + " load fails",
                        () -> Environment.load(o));
            } else {
                compare(Environment.load(o), want, name);
            }
        }));
    }

    /** Many threads at once: process-wide reads, loads, explains, errors. */
    @Test
    void sixteenThreadsOfReadsLoadsAndErrors() throws InterruptedException {
        Path work = work();
        int threads = 16;
        AtomicInteger errors = new AtomicInteger();
        List<String> failures = java.util.Collections.synchronizedList(new ArrayList<>());
        CountDownLatch start = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
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
                    failures.add(e.toString());
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
        assertEquals(0, errors.get(), threads + " threads, errors (" + failures + ")");
        // Let the cleaner free what the threads loaded.
        System.gc();
    }

    /** Every getter of current() from 8 threads at once gives the same answers as from one. */
    @Test
    void gettersFromEightThreads() throws Exception {
        Environment e = Environment.current();
        Map<String, Optional<String>> want = new LinkedHashMap<>();
        for (Map.Entry<String, Function<Environment, Optional<String>>> g : GETTERS.entrySet()) {
            want.put(g.getKey(), g.getValue().apply(e));
        }
        Map<String, String> labels = e.getLabels();
        String json = e.toJson();
        int threads = 8;
        AtomicInteger wrong = new AtomicInteger();
        List<String> what = java.util.Collections.synchronizedList(new ArrayList<>());
        CountDownLatch start = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            Thread th = new Thread(() -> {
                try {
                    start.await();
                    for (int i = 0; i < 20_000; i++) {
                        Environment c = Environment.current();
                        for (Map.Entry<String, Function<Environment, Optional<String>>> g : GETTERS.entrySet()) {
                            if (!want.get(g.getKey()).equals(g.getValue().apply(c))) {
                                wrong.incrementAndGet();
                                what.add(g.getKey());
                            }
                        }
                        if (!labels.equals(c.getLabels()) || !json.equals(c.toJson())) {
                            wrong.incrementAndGet();
                            what.add("labels/json");
                        }
                    }
                } catch (Throwable x) {
                    wrong.incrementAndGet();
                    what.add(x.toString());
                }
            });
            ts.add(th);
            th.start();
        }
        start.countDown();
        for (Thread th : ts) {
            th.join();
        }
        assertEquals(0, wrong.get(), threads + " threads of getters, wrong answers: "
                + what.subList(0, Math.min(10, what.size())));
    }
}
