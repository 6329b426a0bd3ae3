package io.envid;

import static io.envid.TestData.assertThrowsKind;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import org.junit.jupiter.api.Test;

/**
 * {@link Registrar} against the real reference service taking
 * registrations (apps.toml, loopback allowed) and signing identities:
 * registers 127.0.0.1 as flight_order, verifies the identity with
 * {@link Verifier}, renews and deregisters.
 */
class RegistrarTest {
    private static final String IP = "127.0.0.1";

    private static String prop(String name) {
        String v = System.getProperty(name);
        if (v == null) {
            fail("run through cargo test -p envid-ffi --test java (-D" + name + ")");
        }
        return v;
    }

    private static Environment example() {
        return Environment.load(LoadOptions.builder().descriptor(prop("envidtest.example")).build());
    }

    private static Registrar registrar(String token) {
        return Registrar.builder().endpoint(prop("envidtest.registrarurl")).token(token)
                .connectTimeout(Duration.ofMillis(500)).perPhaseTimeout(Duration.ofSeconds(5)).build();
    }

    @Test
    void registersAndGetsAVerifiedIdentity() {
        Environment env = example();
        try (Registrar r = registrar(prop("envidtest.registrartoken"));
                Verifier v = Verifier.builder().endpoint(prop("envidtest.registrarurl")).build()) {
            assertTrue(r.identity().isEmpty(), "no identity before registering");
            assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "malformed IP",
                    () -> r.register(env, Duration.ofMinutes(1), "not-an-ip"));
            assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "null env",
                    () -> r.register(null, Duration.ofMinutes(1), IP));

            r.register(env, Duration.ofMinutes(1), IP);
            String id = r.identity().orElseThrow(() -> new AssertionError("no identity"));
            assertEquals(3, id.split("\\.", -1).length, "a JWT has three parts");
            assertEquals("flight_order", v.verify(id).app());

            assertTrue(r.renew(IP), "the service knows the IP");
            String renewed = r.identity().orElseThrow(() -> new AssertionError("no identity"));
            assertEquals("flight_order", v.verify(renewed).app());

            r.deregister(IP);
            assertFalse(r.renew(IP), "deregistered: unknown");
        }
    }

    @Test
    void aWrongTokenIsRefused() {
        Environment env = example();
        try (Registrar r = registrar("wrong-token")) {
            EnvidException e = assertThrowsKind(EnvidException.Kind.LOOKUP_FAILED, "wrong token",
                    () -> r.register(env, Duration.ofMinutes(1), IP));
            assertFalse(String.valueOf(e.getMessage()).contains("wrong-token"), "the token is not in messages");
            assertTrue(r.identity().isEmpty());
        }
    }

    @Test
    void closedRegistrarThrows() {
        Registrar r = registrar(null);
        r.close();
        r.close();
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "closed", () -> r.renew(IP));
    }
}
