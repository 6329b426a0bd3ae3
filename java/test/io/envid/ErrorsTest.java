package io.envid;

import static io.envid.TestData.assertThrowsKind;
import static io.envid.TestData.work;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** Every failure is an {@link EnvidException} of the right kind, naming what failed. */
class ErrorsTest {
    @Test
    void loadFailures() {
        Path work = work();
        assertThrowsKind(EnvidException.Kind.IO, "missing descriptor",
                () -> Environment.load(LoadOptions.builder().descriptor(work.resolve("nope.toml")).build()));
        EnvidException e = assertThrowsKind(EnvidException.Kind.DESCRIPTOR, "syntax error",
                () -> Environment.load(LoadOptions.builder().descriptor(work.resolve("bad-syntax.toml")).build()));
        assertTrue(e.getMessage().contains("bad-syntax.toml"), "the message names the file: " + e.getMessage());
        assertDoesNotThrow(() -> Environment.load(LoadOptions.builder().descriptor(work.resolve("unknown-key.toml"))
                .envVars(false).build()), "unknown key accepted when not strict");
        assertThrowsKind(EnvidException.Kind.DESCRIPTOR, "unknown key in strict mode",
                () -> Environment.load(LoadOptions.builder().descriptor(work.resolve("unknown-key.toml")).strict(true).build()));
        e = assertThrowsKind(EnvidException.Kind.UNIDENTIFIED, "no env, no idc",
                () -> Environment.load(LoadOptions.builder().descriptor(work.resolve("no-env.toml"))
                        .root(work.resolve("root")).envVars(false).build()));
        assertTrue(e.getMessage().contains("no-env.toml"), "unidentified lists the descriptor: " + e.getMessage());
        assertThrowsKind(EnvidException.Kind.RULES, "bad rules file in load",
                () -> Environment.load(LoadOptions.builder().descriptor(work.resolve("unknown-key.toml"))
                        .rulesFile(work.resolve("bad-rules.toml")).build()));
        assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "empty descriptor path",
                () -> Environment.load(LoadOptions.builder().descriptor("").build()));
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "null label key",
                () -> Environment.current().getLabel(null));
    }

    @Test
    void rulesFailures() {
        Path work = work();
        assertThrowsKind(EnvidException.Kind.IO, "missing rules file",
                () -> HostnameRules.load(work.resolve("nope-rules.toml")));
        assertThrowsKind(EnvidException.Kind.RULES, "bad rules file",
                () -> HostnameRules.load(work.resolve("bad-rules.toml")));
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "null hostname",
                () -> HostnameRules.builtin().explain(null));
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "null rules path", () -> HostnameRules.load(null));
    }

    @Test
    void badHandlesAreRefused() {
        // A native handle of 0 is refused, not dereferenced.
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "handle 0", () -> Native.field(0, Native.ENV));
        assertThrowsKind(EnvidException.Kind.NULL_PARAMETER, "snapshot of handle 0", () -> Native.snapshot(0));
        assertThrowsKind(EnvidException.Kind.INVALID_INPUT, "bad field number",
                () -> Native.field(Native.current(new String[0]), 99));
    }

    @Test
    void aRustPanicIsAnExceptionAndTheJvmGoesOn() {
        // The panicking method exists only in a library built with the
        // test-hooks feature; without it, it must not exist at all.
        if (Boolean.getBoolean("envid.testHooks")) {
            for (int i = 0; i < 3; i++) {
                assertThrowsKind(EnvidException.Kind.PANIC, "panic becomes an exception (" + i + ")",
                        Native::panicForTest);
            }
        } else {
            assertThrows(UnsatisfiedLinkError.class, Native::panicForTest,
                    "panicForTest is absent without the test-hooks feature");
        }
        assertEquals("cn0", Environment.current().getIdc(), "after panics, calls still work");
    }

    @Test
    void kinds() {
        assertEquals(EnvidException.Kind.UNIDENTIFIED, EnvidException.Kind.of(9), "Kind.of");
        assertEquals(EnvidException.Kind.UNKNOWN, EnvidException.Kind.of(1234), "Kind.of unknown");
    }
}
