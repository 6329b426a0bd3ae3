package io.envid;

import java.util.Arrays;

/**
 * A JMH-style loop (no JMH): warm-up iterations so the JIT compiles the call
 * path, then timed batches; prints ns per call of
 * {@code Environment.current().getEnv()} (a JNI call that returns a new
 * Java String each time).
 *
 * <pre>
 *   cargo build --release -p envid-ffi
 *   javac -d /tmp/envid-java java/src/io/envid/*.java java/test/io/envid/*.java
 *   ENVID_DESCRIPTOR=testdata/example.toml \
 *     java -Djava.library.path=target/release -cp /tmp/envid-java io.envid.EnvidBench
 * </pre>
 */
public final class EnvidBench {
    private static volatile int sink;

    private static int batch(int n) {
        int acc = 0;
        for (int i = 0; i < n; i++) {
            acc += Environment.current().getEnv().length();
        }
        return acc;
    }

    public static void main(String[] args) {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 200_000;
        int warmups = 10;
        int batches = 10;
        for (int i = 0; i < warmups; i++) {
            sink += batch(n);
        }
        double[] ns = new double[batches];
        for (int b = 0; b < batches; b++) {
            long t0 = System.nanoTime();
            sink += batch(n);
            ns[b] = (System.nanoTime() - t0) / (double) n;
        }
        Arrays.sort(ns);
        System.out.printf("JNI Environment.current().getEnv(): median %.1f ns/call, min %.1f, max %.1f"
                + " (%d batches of %d after %d warm-up batches)%n",
                ns[batches / 2], ns[0], ns[batches - 1], batches, n, warmups);
    }
}
