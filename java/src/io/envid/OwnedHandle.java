package io.envid;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.LongConsumer;
import java.util.function.LongFunction;

/**
 * A native handle that a closeable Java object owns: freed exactly once, by
 * {@link #close()} or by the cleaner once unreachable. Calls hold a read
 * lock, so close() waits for calls in progress and calls after it see
 * handle 0 (which the native side refuses with {@code NULL_PARAMETER}).
 */
final class OwnedHandle {
    /** Shared with the cleaner; must not refer back to the OwnedHandle. */
    private static final class State implements Runnable {
        private final LongConsumer free;
        private long handle;

        State(long handle, LongConsumer free) {
            this.handle = handle;
            this.free = free;
        }

        @Override
        public synchronized void run() {
            if (handle != 0) {
                free.accept(handle);
                handle = 0;
            }
        }
    }

    private final State state;
    private final Cleaner.Cleanable cleanable;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();

    OwnedHandle(long handle, LongConsumer free) {
        this.state = new State(handle, free);
        this.cleanable = Native.CLEANER.register(this, state);
    }

    /** Runs {@code call} with the handle (0 once closed), under the read lock. */
    <T> T call(LongFunction<T> call) {
        lock.readLock().lock();
        try {
            return call.apply(state.handle);
        } finally {
            lock.readLock().unlock();
            Reference.reachabilityFence(this);
        }
    }

    /** Frees the handle; waits for calls in progress. Idempotent. */
    void close() {
        lock.writeLock().lock();
        try {
            cleanable.clean();
        } finally {
            lock.writeLock().unlock();
        }
    }
}
