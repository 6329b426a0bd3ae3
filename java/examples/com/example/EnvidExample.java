package com.example;

import io.envid.EnvidException;
import io.envid.Environment;
import io.envid.HostnameRules;
import io.envid.LoadOptions;
import io.envid.LookupClient;
import java.time.Duration;
import java.nio.file.Paths;

/**
 * The README's Java example; crates/envid-ffi/tests/java.rs compiles and runs it.
 *
 * <pre>
 *   cargo build --release -p envid-ffi && bash java/build.sh   # target/java/envid-0.1.0.jar
 *   javac -cp target/java/envid-0.1.0.jar -d /tmp/envid-example java/examples/com/example/EnvidExample.java
 *   ENVID_DESCRIPTOR=testdata/example.toml \
 *     ENVID_LOOKUP_URL=http://127.0.0.1:7070 \
 *     java -cp target/java/envid-0.1.0.jar:/tmp/envid-example com.example.EnvidExample
 * </pre>
 *
 * (ENVID_LOOKUP_URL: a running {@code envid serve --registry testdata/registry.toml};
 * the lookup part is skipped without it.)
 */
public final class EnvidExample {
    public static void main(String[] args) {
        Environment env = Environment.current(); // process-wide, cached
        System.out.println(env.getApp().orElse("(no app)") + " in " + env.getEnv()
                + " (" + env.getEnvType() + ") at " + env.getIdc() + ", platform " + env.getPlatform());
        System.out.println("team: " + env.getLabel("team").orElse("-"));
        System.out.println(env.toJson());

        try {
            Environment.load(LoadOptions.builder().descriptor(Paths.get("/no/such/descriptor.toml")).build());
        } catch (EnvidException e) {
            System.out.println("load failed: " + e.kind() + ": " + e.getMessage());
        }

        HostnameRules.builtin().explain("l-flightqma9.f.beta.cn0")
                .ifPresent(m -> System.out.println(m.getApp().orElse("?") + " " + m.getEnv() + " " + m.getIdc().orElse("?")));

        // Servers: which environment is a client IP in? One client per process.
        String url = System.getenv("ENVID_LOOKUP_URL");
        if (url != null) {
            try (LookupClient client = LookupClient.builder().endpoint(url)
                    .perPhaseTimeout(Duration.ofSeconds(1)).build()) {
                client.lookup("10.0.0.5").ifPresent(r ->
                        System.out.println("10.0.0.5: " + r.getApp().orElse("?") + " " + r.getEnv() + " " + r.getIdc()));
                System.out.println("192.0.2.1 known: " + client.lookup("192.0.2.1").isPresent());
                System.out.println(client.stats());
            }
        }
    }
}
