package io.envid;

import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;

/**
 * Join and leave events under a filter, for the systems that act on them (a
 * database granting access to an app's instances, a firewall, a load
 * balancer's pool): which IPs joined, left or changed, delivered at least
 * once, resumed after a restart from a checkpoint, and never a mass of
 * leaves because the registry collapsed. The Rust library's
 * {@code envid::events}, so a Java consumer and a Rust one see the same
 * events with the same ids.
 *
 * <p>{@link #next(Duration)} waits for the next event (null when none came
 * in time); act on it, then {@link #ack(Event)} it, which acknowledges every
 * event delivered before it too. Events not acknowledged are delivered
 * again after a restart with the same {@link Event#getId() id}, then
 * exactly what changed meanwhile. An IP reused by another host is another
 * {@link Event#getRegistration() registration}: revoke on a leave only what
 * was granted to that registration, and a late leave of an IP's previous
 * owner never revokes the new one.
 *
 * <p>One consumer's: {@link #next(Duration)} does the network exchanges on
 * the calling thread (there is no background thread), and calls from
 * several threads wait for each other. Close it when done ({@link
 * AutoCloseable}; closing writes the acknowledgements not yet written and
 * waits for a {@code next} in progress); calls after {@link #close()} throw
 * an {@link EnvidException} of kind {@code NULL_PARAMETER}.
 *
 * <pre>{@code
 * try (Events events = Events.builder().endpoint("http://envsvc.cn0:7070")
 *         .app("payment").env("prod").checkpoint(Path.of("/var/lib/grants/events.json")).build()) {
 *     while (running) {
 *         Events.Event e = events.next(Duration.ofSeconds(10));
 *         if (e == null) {
 *             continue;
 *         }
 *         switch (e.getKind()) {
 *             case JOIN: grant(e.getIp(), e.getRegistration()); break;
 *             case LEAVE: revokeIf(e.getIp(), e.getRegistration()); break;
 *             case CHANGE: regrant(e.getIp(), e.getPreviousRegistration(), e.getRegistration()); break;
 *         }
 *         events.ack(e);
 *     }
 * }
 * }</pre>
 */
public final class Events implements AutoCloseable {
    private final OwnedHandle handle;

    private Events(long handle) {
        this.handle = new OwnedHandle(handle, Native::eventsFree);
    }

    /** A builder: no endpoint, the filter that takes every host, no checkpoint. */
    public static Builder builder() {
        return new Builder();
    }

    /** Builds {@link Events}: the connection, the filter and the checkpoint. */
    public static final class Builder extends ServiceBuilder<Builder> {
        private final List<String> apps = new ArrayList<>();
        private final List<String> envs = new ArrayList<>();
        private final List<String> envTypes = new ArrayList<>();
        private final List<String> idcs = new ArrayList<>();
        private String checkpoint;

        private Builder() {}

        /** Also these applications (any of them; a record without an app matches none). */
        public Builder app(String... values) {
            apps.addAll(Arrays.asList(values));
            return this;
        }

        /** Also these environments. */
        public Builder env(String... values) {
            envs.addAll(Arrays.asList(values));
            return this;
        }

        /** Also these environment classes ({@code prod}, {@code beta}, …). */
        public Builder envType(String... values) {
            envTypes.addAll(Arrays.asList(values));
            return this;
        }

        /** Also these data centers. */
        public Builder idc(String... values) {
            idcs.addAll(Arrays.asList(values));
            return this;
        }

        /**
         * Keep what the consumer believes joined, and the events not yet
         * acknowledged, in this file (and {@code FILE.journal} beside it),
         * so a restart resumes after what was acknowledged. Without one,
         * every start begins with a join for each IP under the filter.
         */
        public Builder checkpoint(Path path) {
            this.checkpoint = path == null ? null : path.toString();
            return this;
        }

        /**
         * Reads the checkpoint and gets ready; the service is first asked by
         * {@link Events#next(Duration)}.
         *
         * @throws EnvidException {@code INVALID_INPUT} without endpoints or with a bad one,
         *     {@code CHECKPOINT} when the checkpoint exists but is corrupt, of another format
         *     or of another filter (never silently replaced by a fresh start)
         */
        public Events build() {
            long h = Native.eventsNew(endpointArray(), token, Native.millis(connectTimeout),
                    Native.millis(perPhaseTimeout), apps.toArray(new String[0]), envs.toArray(new String[0]),
                    envTypes.toArray(new String[0]), idcs.toArray(new String[0]), checkpoint);
            return new Events(h);
        }
    }

    /**
     * The next event, waiting for one at most {@code timeout}; null when none
     * came. Events not acknowledged before a restart come first. Service
     * errors are retried, never thrown (see {@link Stats#getSyncErrors()} and
     * {@link #lastError()}).
     *
     * @throws EnvidException {@code CHECKPOINT} when the checkpoint cannot be written
     */
    public Event next(Duration timeout) {
        if (timeout == null || timeout.isNegative()) {
            throw new EnvidException(EnvidException.Kind.INVALID_INPUT, "timeout must be zero or more: " + timeout);
        }
        long ms = timeout.toMillis();
        Object[] e = handle.call(h -> Native.eventsNext(h, ms));
        return e == null ? null : new Event((String[]) e[0], (String[]) e[1], (String[]) e[2]);
    }

    /**
     * Acknowledges {@code event} and every event delivered before it: they
     * are not delivered again after a restart once written (within a second,
     * at once with {@link #flush()}, and at {@link #close()}). An event
     * already acknowledged is ignored. Never acknowledge an event that was
     * not acted on: {@link #redeliver()} gives it back.
     *
     * @throws EnvidException {@code CHECKPOINT} when the checkpoint cannot be written
     */
    public void ack(Event event) {
        if (event == null) {
            throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "event must not be null");
        }
        handle.call(h -> {
            Native.eventsAck(h, event.getId());
            return null;
        });
    }

    /** Writes the acknowledgements not yet written, now. */
    public void flush() {
        handle.call(h -> {
            Native.eventsFlush(h);
            return null;
        });
    }

    /** Delivers every event not yet acknowledged again, oldest first. */
    public void redeliver() {
        handle.call(h -> {
            Native.eventsRedeliver(h);
            return null;
        });
    }

    /** The consumer's state and counters. Waits for a {@code next} in progress. */
    public Stats stats() {
        return new Stats(handle.call(Native::eventsStats));
    }

    /** The stream's last problem (a service error, protection starting) as a sentence, kept after recovery. */
    public Optional<String> lastError() {
        return Optional.ofNullable(handle.call(Native::eventsLastError));
    }

    /** Writes the acknowledgements and frees the consumer; waits for a call in progress. Idempotent. */
    @Override
    public void close() {
        handle.close();
    }

    /** What happened to an IP under the filter. */
    public enum Kind {
        /** The IP is under the filter now and was not. */
        JOIN,
        /** The IP was under the filter and is not any more (gone, or moved to another app, env or idc). */
        LEAVE,
        /** Still under the filter, but another registration, app, environment or data center. */
        CHANGE;

        static Kind of(String s) {
            switch (s) {
                case "join":
                    return JOIN;
                case "leave":
                    return LEAVE;
                case "change":
                    return CHANGE;
                default:
                    throw new EnvidException(EnvidException.Kind.INTERNAL, "unknown event kind " + s);
            }
        }
    }

    /** One event. Immutable. */
    public static final class Event {
        // The layout of the native head (crates/envid-ffi/src/jni/events.rs).
        private static final int JSON = 0;
        private static final int KIND = 1;
        private static final int ID = 2;
        private static final int IP = 3;
        private static final int HISTORY = 4;
        private static final int VERSION = 5;
        private static final int REGISTRATION = 6;
        private static final int PREVIOUS_REGISTRATION = 7;
        private static final int COMPUTED_UNIX_MS = 8;

        private final String[] head;
        private final Kind kind;
        private final HostRecord record;
        private final HostRecord previous;

        Event(String[] head, String[] record, String[] previous) {
            this.head = head;
            this.kind = Kind.of(head[KIND]);
            this.record = new HostRecord(record);
            this.previous = previous == null ? null : new HostRecord(previous);
        }

        /** Join, leave or change. */
        public Kind getKind() {
            return kind;
        }

        /** The stable id, {@code history/version/ip}: the same when the event is delivered again. */
        public String getId() {
            return head[ID];
        }

        /** The address. */
        public String getIp() {
            return head[IP];
        }

        /** The history the version belongs to. */
        public Optional<String> getHistory() {
            return Optional.ofNullable(head[HISTORY]);
        }

        /** The registry version the event was seen at. */
        public long getVersion() {
            return Long.parseUnsignedLong(head[VERSION]);
        }

        /**
         * The registration that joined, left, or (a change) is the IP's now;
         * empty for a record of the registry file.
         */
        public Optional<String> getRegistration() {
            return Optional.ofNullable(head[REGISTRATION]);
        }

        /** A change's previous registration. */
        public Optional<String> getPreviousRegistration() {
            return Optional.ofNullable(head[PREVIOUS_REGISTRATION]);
        }

        /** The record: the new one, or for a leave the last one known. */
        public HostRecord getRecord() {
            return record;
        }

        /** A change's previous record. */
        public Optional<HostRecord> getPrevious() {
            return Optional.ofNullable(previous);
        }

        /** When the event was computed (survives a restart: how long it has waited). */
        public Instant getComputedAt() {
            return Instant.ofEpochMilli(Long.parseLong(head[COMPUTED_UNIX_MS]));
        }

        /** The event as one line of JSON, as {@code envid events} prints it. */
        public String toJson() {
            return head[JSON];
        }

        @Override
        public String toString() {
            return toJson();
        }
    }

    /** State and counters of {@link Events}. */
    public static final class Stats {
        private final long[] v;

        Stats(long[] v) {
            this.v = v;
        }

        /** The registry version the joined set is at. */
        public long getVersion() {
            return v[0];
        }

        /** IPs joined under the filter (once every pending event is acted on). */
        public long getJoined() {
            return v[1];
        }

        /** Events not yet acknowledged, delivered or not. */
        public long getPending() {
            return v[2];
        }

        /** Of those, delivered. */
        public long getDelivered() {
            return v[3];
        }

        /** How long the oldest unacknowledged event has waited; empty when every event is acknowledged. */
        public Optional<Duration> getOldestPendingAge() {
            return v[4] < 0 ? Optional.empty() : Optional.of(Duration.ofMillis(v[4]));
        }

        /** True while the stream's protection against mass deletion is on: leaves are held, not emitted. */
        public boolean isProtected() {
            return v[5] != 0;
        }

        /** When the protection began; empty when off. */
        public Optional<Instant> getProtectedSince() {
            return v[6] == 0 ? Optional.empty() : Optional.of(Instant.ofEpochMilli(v[6]));
        }

        /** Leaves held by the protection. */
        public long getHeldLeaves() {
            return v[7];
        }

        /** The normal record count protection compares with. */
        public long getNormalRecords() {
            return v[8];
        }

        /** Successful exchanges with the service. */
        public long getSyncs() {
            return v[9];
        }

        /** Whole-registry fetches. */
        public long getSnapshots() {
            return v[10];
        }

        /** Non-empty deltas. */
        public long getDeltas() {
            return v[11];
        }

        /** Failed exchanges (each retried after a backoff). */
        public long getSyncErrors() {
            return v[12];
        }

        /** Joins computed by this consumer. */
        public long getJoins() {
            return v[13];
        }

        /** Leaves computed by this consumer. */
        public long getLeaves() {
            return v[14];
        }

        /** Changes computed by this consumer. */
        public long getChanges() {
            return v[15];
        }

        /** Time since the last successful exchange; empty before the first. */
        public Optional<Duration> getAge() {
            return v[16] < 0 ? Optional.empty() : Optional.of(Duration.ofMillis(v[16]));
        }

        @Override
        public String toString() {
            return "Stats{version=" + v[0] + ", joined=" + v[1] + ", pending=" + v[2] + ", delivered=" + v[3]
                    + ", oldestPendingAgeMs=" + v[4] + ", protected=" + (v[5] != 0) + ", heldLeaves=" + v[7]
                    + ", syncs=" + v[9] + ", snapshots=" + v[10] + ", deltas=" + v[11] + ", syncErrors=" + v[12]
                    + ", joins=" + v[13] + ", leaves=" + v[14] + ", changes=" + v[15] + "}";
        }
    }
}
