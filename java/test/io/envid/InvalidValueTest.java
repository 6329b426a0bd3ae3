package io.envid;

import static io.envid.TestData.assertThrowsKind;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;

/**
 * A bad {@code ENVID_IP}: {@link Environment#current()} fails with
 * {@code INVALID_VALUE}. Runs in its own JVM (the harness sets the variable),
 * since the process-wide environment is cached once it loads.
 */
@EnabledIfEnvironmentVariable(named = "ENVID_IP", matches = "not-an-ip")
class InvalidValueTest {
    @Test
    void badEnvidIpFailsAndIsNotCached() {
        EnvidException e = assertThrowsKind(EnvidException.Kind.INVALID_VALUE, "bad ENVID_IP", Environment::current);
        assertTrue(e.getMessage().contains("ENVID_IP"), "the message names ENVID_IP: " + e.getMessage());
        // Not cached: the next call fails the same way.
        assertThrowsKind(EnvidException.Kind.INVALID_VALUE, "bad ENVID_IP again", Environment::current);
    }
}
