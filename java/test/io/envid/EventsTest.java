package io.envid;

import static io.envid.TestData.assertThrowsKind;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.Optional;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * {@link Events} against the real reference service, the cases of the Rust
 * tests (tests/it/events.rs) and of the C program (tests/c/test_events.c):
 * a join, a leave, an IP moving from app a to app b (a leave for a
 * consumer of a, a join for one of b), a restart that delivers the
 * unacknowledged event again with the same id, a timeout with no event.
 *
 * <p>The harness serves {@code -Denvidtest.eventsregistry} (reloaded every
 * 50 ms; these tests rewrite it) at {@code -Denvidtest.eventsurl}, with
 * registration open, and registered 10.53.0.7 as app {@code a3} before:
 * apps {@code a3} and {@code b3} and the IPs 10.53.0.N are this run's. The
 * tests run in order: each starts from the registry the one before left.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class EventsTest {
    private static final String A = "a3";
    private static final String B = "b3";

    private static String prop(String name) {
        String v = System.getProperty(name);
        assertNotNull(v, "run through cargo test -p envid-ffi --test it java (-D" + name + ")");
        return v;
    }

    private static String ip(int n) {
        return "10.53.0." + n;
    }

    /** Rewrites the registry: each record "N app". */
    private static void registry(String... records) throws Exception {
        StringBuilder b = new StringBuilder("schema = 1\n");
        for (String r : records) {
            String[] p = r.split(" ");
            b.append("[[records]]\nip = \"").append(ip(Integer.parseInt(p[0]))).append("\"\napp = \"").append(p[1])
                    .append("\"\nenv = \"prod\"\nidc = \"cn0\"\n");
        }
        ReplicaTest.replaceFile(Paths.get(prop("envidtest.eventsregistry")), b.toString());
    }

    private static Events.Builder consumer(String app) {
        return Events.builder().endpoint(prop("envidtest.eventsurl")).connectTimeout(Duration.ofMillis(500)).app(app);
    }

    /** The next event within 20 s. */
    private static Events.Event next(Events events) {
        for (int i = 0; i < 40; i++) {
            Events.Event e = events.next(Duration.ofMillis(500));
            if (e != null) {
                return e;
            }
        }
        throw new AssertionError("no event within 20 s: " + events.stats());
    }

    private static Events.Event expect(Events events, Events.Kind kind, String ip, String app) {
        Events.Event e = next(events);
        assertEquals(kind, e.getKind(), e.toJson());
        assertEquals(ip, e.getIp(), e.toJson());
        assertEquals(Optional.of(app), e.getRecord().getApp(), e.toJson());
        return e;
    }

    private static void expectAndAck(Events events, Events.Kind kind, String ip, String app) {
        events.ack(expect(events, kind, ip, app));
    }

    @Test
    @Order(1)
    void aRegisteredHostJoinsWithItsRegistrationThenNothingComes() {
        try (Events onA = consumer(A).build()) {
            Events.Event e = expect(onA, Events.Kind.JOIN, ip(7), A);
            assertEquals(32, e.getRegistration().orElseThrow().length(), e.toJson());
            assertTrue(e.getPreviousRegistration().isEmpty() && e.getPrevious().isEmpty(), e.toJson());
            assertEquals("prod", e.getRecord().getEnv());
            assertTrue(e.getId().endsWith("/" + ip(7)), e.getId());
            assertTrue(e.getVersion() > 0 && e.getHistory().isPresent(), e.toJson());
            assertTrue(e.toJson().contains("\"event\":\"join\""), e.toJson());
            onA.ack(e);
            onA.ack(e); // a repeat is ignored
            // A timeout with no event: null, not an exception.
            long start = System.nanoTime();
            assertNull(onA.next(Duration.ofMillis(300)));
            assertTrue(System.nanoTime() - start >= 250_000_000L, "next waited for its timeout");
            assertNull(onA.next(Duration.ZERO));
        }
    }

    @Test
    @Order(2)
    void joinLeaveAndAnIpMovingBetweenApps() throws Exception {
        try (Events onA = consumer(A).build(); Events onB = consumer(B).build()) {
            expectAndAck(onA, Events.Kind.JOIN, ip(7), A);
            assertNull(onB.next(Duration.ofMillis(300)));

            // Joins: records of the file (no registration).
            registry("1 " + A, "2 " + B);
            Events.Event e = expect(onA, Events.Kind.JOIN, ip(1), A);
            assertTrue(e.getRegistration().isEmpty(), e.toJson());
            onA.ack(e);
            expectAndAck(onB, Events.Kind.JOIN, ip(2), B);

            // An IP moving from a to b: a leave for a (the last record
            // known), a join for b.
            registry("1 " + B, "2 " + B);
            expectAndAck(onA, Events.Kind.LEAVE, ip(1), A);
            expectAndAck(onB, Events.Kind.JOIN, ip(1), B);

            // A leave: the record is removed.
            registry("1 " + B);
            expectAndAck(onB, Events.Kind.LEAVE, ip(2), B);
            assertNull(onB.next(Duration.ofMillis(300)));

            Events.Stats st = onA.stats();
            assertEquals(1, st.getJoined(), st.toString());
            assertEquals(0, st.getPending(), st.toString());
            assertEquals(2, st.getJoins(), st.toString());
            assertEquals(1, st.getLeaves(), st.toString());
            assertTrue(st.getOldestPendingAge().isEmpty() && !st.isProtected(), st.toString());
            assertTrue(st.getSyncs() > 0 && st.getAge().isPresent(), st.toString());
            assertEquals(1, onB.stats().getJoined(), onB.stats().toString());
        }
    }

    @Test
    @Order(3)
    void aRestartDeliversTheUnacknowledgedEventAgainWithItsId() throws Exception {
        Path checkpoint = TestData.work().resolve("java-events.json");
        String id;
        try (Events c = consumer(A).checkpoint(checkpoint).build()) {
            expectAndAck(c, Events.Kind.JOIN, ip(7), A);
            registry("1 " + B, "3 " + A);
            Events.Event e = expect(c, Events.Kind.JOIN, ip(3), A);
            id = e.getId();
            Events.Stats st = c.stats();
            assertEquals(1, st.getPending(), st.toString());
            assertEquals(1, st.getDelivered(), st.toString());
            assertTrue(st.getOldestPendingAge().isPresent(), st.toString());
        } // "killed" before acknowledging it
        try (Events c = consumer(A).checkpoint(checkpoint).build()) {
            assertEquals(id, expect(c, Events.Kind.JOIN, ip(3), A).getId(), "the same event, the same id");
            c.redeliver(); // given back without a restart too
            Events.Event e = expect(c, Events.Kind.JOIN, ip(3), A);
            assertEquals(id, e.getId());
            c.ack(e);
        }
        try (Events c = consumer(A).checkpoint(checkpoint).build()) {
            assertNull(c.next(Duration.ofMillis(1500)), "acknowledged: nothing again");
            assertEquals(2, c.stats().getJoined(), c.stats().toString());
        }
        EnvidException e = assertThrowsKind(EnvidException.Kind.CHECKPOINT, "another filter's checkpoint",
                () -> consumer(B).checkpoint(checkpoint).build());
        assertTrue(e.getMessage().contains("filter"), e.getMessage());
        Path corrupt = TestData.work().resolve("java-corrupt.json");
        Files.writeString(corrupt, "{\"format\": \"envid-events-1\", \"gen");
        e = assertThrowsKind(EnvidException.Kind.CHECKPOINT, "a corrupt checkpoint",
                () -> consumer(A).checkpoint(corrupt).build());
        assertTrue(e.getMessage().contains(corrupt.toString()), e.getMessage());
    }

    @Test
    @Order(4)
    void badArgumentsAndAClosedConsumerThrow() {
        assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "no endpoint", () -> Events.builder().build());
        Events events = consumer(A).build();
        assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "negative timeout",
                () -> events.next(Duration.ofMillis(-1)));
        assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "null timeout", () -> events.next(null));
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "null event", () -> events.ack(null));
        Events.Event e = next(events);
        events.close();
        events.close(); // idempotent
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "next after close",
                () -> events.next(Duration.ZERO));
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "ack after close", () -> events.ack(e));
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "stats after close", events::stats);
        assertNotEquals(EnvidException.Kind.UNKNOWN, EnvidException.Kind.of(22));
        assertEquals(EnvidException.Kind.TIMEOUT, EnvidException.Kind.of(21));
    }
}
