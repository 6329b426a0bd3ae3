package io.envid;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CyclicBarrier;

/**
 * A JMH-style loop (no JMH): warm-up batches so the JIT compiles the call
 * path, then timed batches, each result fed to a {@link Blackhole} so the
 * JIT can neither drop nor hoist the read. Prints the median ns per
 * operation of
 *
 * <ul>
 *   <li>{@code Environment.current().getEnv()}: the getter (a field read
 *       since the values are kept in Java);</li>
 *   <li>a plain Java field read of the same shape (a static reference, then
 *       a field), the floor;</li>
 *   <li>{@code Native.field(handle, ENV)}: one JNI call, what every getter
 *       cost before;</li>
 * </ul>
 *
 * each from 1 thread and from 8 threads at once. Time is each thread's CPU
 * time ({@link ThreadMXBean#getCurrentThreadCpuTime()}), so 8 threads on
 * fewer cores are not charged for waiting their turn.
 *
 * <pre>
 *   cargo build --release -p envid-ffi
 *   javac -d /tmp/envid-java java/src/io/envid/*.java java/test/io/envid/EnvidBench.java
 *   ENVID_DESCRIPTOR=testdata/example.toml \
 *     java -Denvid.library=target/release/libenvid_ffi.so -cp /tmp/envid-java io.envid.EnvidBench [OPS_PER_BATCH]
 * </pre>
 */
public final class EnvidBench {
    private EnvidBench() {}

    /** Consumes values the way JMH's Blackhole does: a volatile read per value, rarely a write. */
    static final class Blackhole {
        private volatile Object sentinel = new Object();
        Object escaped;

        void consume(Object o) {
            // A volatile read: later loads cannot move above it, so the read under test is redone every time.
            if (o == sentinel) {
                escaped = o;
            }
        }
    }

    /** The baseline: a static reference, then a final field, as Environment.current().getEnv() reads. */
    static final class Plain {
        static Plain instance = new Plain("beta");
        final String env;

        Plain(String env) {
            this.env = env;
        }
    }

    private static final ThreadMXBean MX = ManagementFactory.getThreadMXBean();

    /** Median ns/op per batch over every thread's measured batches. */
    private static double[] run(Op op, int threads, int n) throws Exception {
        int warmups = 10;
        int batches = 10;
        CyclicBarrier start = new CyclicBarrier(threads);
        List<double[]> per = new ArrayList<>();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            double[] mine = new double[batches];
            per.add(mine);
            Thread th = new Thread(() -> {
                Blackhole bh = new Blackhole();
                try {
                    start.await();
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
                for (int w = 0; w < warmups; w++) {
                    op.batch(bh, n);
                }
                for (int b = 0; b < batches; b++) {
                    long t0 = MX.getCurrentThreadCpuTime();
                    op.batch(bh, n);
                    mine[b] = (MX.getCurrentThreadCpuTime() - t0) / (double) n;
                }
            });
            ts.add(th);
            th.start();
        }
        for (Thread th : ts) {
            th.join();
        }
        double[] all = per.stream().flatMapToDouble(Arrays::stream).sorted().toArray();
        return new double[] {all[all.length / 2], all[0], all[all.length - 1]};
    }

    /** One benchmark: its own loop, so the operation is inlined and the call per op is not measured. */
    abstract static class Op {
        abstract void batch(Blackhole bh, int n);
    }

    static final class Getter extends Op {
        @Override
        void batch(Blackhole bh, int n) {
            for (int i = 0; i < n; i++) {
                bh.consume(Environment.current().getEnv());
            }
        }
    }

    static final class PlainRead extends Op {
        @Override
        void batch(Blackhole bh, int n) {
            for (int i = 0; i < n; i++) {
                bh.consume(Plain.instance.env);
            }
        }
    }

    static final class JniCall extends Op {
        private final long handle;

        JniCall(long handle) {
            this.handle = handle;
        }

        @Override
        void batch(Blackhole bh, int n) {
            for (int i = 0; i < n; i++) {
                bh.consume(Native.field(handle, Native.ENV));
            }
        }
    }

    public static void main(String[] args) throws Exception {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 2_000_000;
        long handle = Native.current(new String[0]);
        String env = Environment.current().getEnv();
        Plain.instance = new Plain(env);
        Op jni = new JniCall(handle);
        System.out.println("ns/op, median of 10 batches of " + n + " per thread (min-max), thread CPU time, "
                + Runtime.getRuntime().availableProcessors() + " cores:");
        for (int threads : new int[] {1, 8}) {
            for (Object[] c : new Object[][] {
                    {"Environment.current().getEnv()", new Getter()},
                    {"plain Java field read", new PlainRead()},
                    {"JNI Native.field (the old getter)", jni}}) {
                double[] r = run((Op) c[1], threads, c[1] == jni ? Math.max(1, n / 20) : n);
                System.out.printf("  %-36s %d thread%s: %6.2f ns/op (%.2f-%.2f)%n", c[0], threads,
                        threads == 1 ? " " : "s", r[0], r[1], r[2]);
            }
        }
    }
}
