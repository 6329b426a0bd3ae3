package io.envid;

import java.util.Optional;

/**
 * One IP's outcome in {@link LookupClient#lookupEach}: a record, unknown to
 * the service, or the failure of that lookup. Immutable.
 */
public final class LookupResult {
    private final HostRecord record;
    private final EnvidException error;

    private LookupResult(HostRecord record, EnvidException error) {
        this.record = record;
        this.error = error;
    }

    static LookupResult answered(HostRecord record) {
        return new LookupResult(record, null);
    }

    static LookupResult failed(EnvidException error) {
        return new LookupResult(null, error);
    }

    /** Whether the lookup failed (then {@link #error()} says why). */
    public boolean isFailed() {
        return error != null;
    }

    /** The record; empty when the service does not know the IP or the lookup failed. */
    public Optional<HostRecord> record() {
        return Optional.ofNullable(record);
    }

    /** The failure; empty when the lookup got an answer (a record or "unknown"). */
    public Optional<EnvidException> error() {
        return Optional.ofNullable(error);
    }

    /**
     * The answer as {@link LookupClient#lookup} gives it: the record, or empty
     * when unknown.
     *
     * @throws EnvidException the failure of this lookup
     */
    public Optional<HostRecord> get() {
        if (error != null) {
            throw error;
        }
        return record();
    }

    @Override
    public String toString() {
        if (error != null) {
            return "LookupResult[failed: " + error.kind() + ": " + error.getMessage() + "]";
        }
        return record == null ? "LookupResult[unknown]" : "LookupResult[" + record.toJson() + "]";
    }
}
