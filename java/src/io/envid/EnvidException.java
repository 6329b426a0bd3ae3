package io.envid;

/**
 * Every failure of envid: a Rust error (bad descriptor, unidentified
 * environment, failed lookup, …) or a caught Rust panic. Unchecked. The
 * {@link #kind()} mirrors the C API's {@code envid_result} codes.
 */
public final class EnvidException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** What went wrong; the same codes as the C API's {@code envid_result}. */
    public enum Kind {
        /** Not an error (never thrown). */
        OK(0),
        /** A required argument was null. */
        NULL_PARAMETER(1),
        /** An argument is malformed (not an IP address, empty path, …). */
        INVALID_INPUT(2),
        /** The asked-for value is absent. */
        NOT_FOUND(3),
        /** A buffer was too small (C API only). */
        BUFFER_TOO_SMALL(4),
        /** A file (descriptor, rules file) could not be read or does not exist. */
        IO(5),
        /** The descriptor file is invalid. */
        DESCRIPTOR(6),
        /** The hostname rules file is invalid. */
        RULES(7),
        /** An {@code ENVID_*} variable or {@code POD_IP} holds a value of the wrong form. */
        INVALID_VALUE(8),
        /** {@code env} or {@code idc} is unknown after every source was tried. */
        UNIDENTIFIED(9),
        /** An IP lookup failed (service unreachable, error status, circuit open). */
        LOOKUP_FAILED(10),
        /** envid panicked (a bug; the panic was caught and the JVM is fine). */
        PANIC(11),
        /** The binding itself failed (a JNI call). */
        INTERNAL(12),
        /** An identity is not a well-formed EdDSA JWT (or is empty). */
        IDENTITY_MALFORMED(13),
        /** An identity's signature does not match its key. */
        IDENTITY_BAD_SIGNATURE(14),
        /** An identity is signed with a key the key set does not hold. */
        IDENTITY_UNKNOWN_KEY(15),
        /** An identity has expired. */
        IDENTITY_EXPIRED(16),
        /** An identity is not valid yet. */
        IDENTITY_NOT_YET_VALID(17),
        /** An identity comes from another issuer. */
        IDENTITY_WRONG_ISSUER(18),
        /** An identity is for another audience. */
        IDENTITY_WRONG_AUDIENCE(19),
        /** No identity keys: the service was unreachable and no cache file was fresh enough. */
        IDENTITY_NO_KEYS(20),
        /** No event came in time (C API only: {@link Events#next} returns null instead). */
        TIMEOUT(21),
        /**
         * An events checkpoint cannot be used: corrupt (the message names the file and line), of another format,
         * written for another filter, or it cannot be written. Never silently replaced by a fresh start.
         */
        CHECKPOINT(22),
        /** A code this version of the Java classes does not know. */
        UNKNOWN(-1);

        private final int code;

        Kind(int code) {
            this.code = code;
        }

        /** The numeric code, as in {@code envid.h}. */
        public int code() {
            return code;
        }

        /** The kind with this code ({@link #UNKNOWN} for any other). */
        public static Kind of(int code) {
            for (Kind k : values()) {
                if (k.code == code) {
                    return k;
                }
            }
            return UNKNOWN;
        }
    }

    private final Kind kind;

    /** Thrown by the native code; the message is envid's own. */
    EnvidException(int code, String message) {
        super(message);
        this.kind = Kind.of(code);
    }

    /** An exception of this kind. */
    public EnvidException(Kind kind, String message) {
        super(message);
        this.kind = kind;
    }

    /** What went wrong. */
    public Kind kind() {
        return kind;
    }

    @Override
    public String toString() {
        return "EnvidException[" + kind + "]: " + getMessage();
    }
}
