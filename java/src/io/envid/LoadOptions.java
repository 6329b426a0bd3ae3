package io.envid;

import java.nio.file.Path;

/**
 * How {@link Environment#load(LoadOptions)} loads an environment. Immutable;
 * build with {@link #builder()}. The defaults are those of
 * {@link Environment#current()}: {@code ENVID_DESCRIPTOR} or the default
 * descriptor paths, root {@code /}, the built-in hostname rules, not strict,
 * {@code ENVID_*} variables read.
 */
public final class LoadOptions {
    final String descriptor;
    final String root;
    final String rulesFile;
    final boolean strict;
    final boolean envVars;

    private LoadOptions(Builder b) {
        this.descriptor = b.descriptor;
        this.root = b.root;
        this.rulesFile = b.rulesFile;
        this.strict = b.strict;
        this.envVars = b.envVars;
    }

    /** The default options. */
    public static LoadOptions defaults() {
        return builder().build();
    }

    /** A builder starting from the defaults. */
    public static Builder builder() {
        return new Builder();
    }

    /** Builds {@link LoadOptions}. */
    public static final class Builder {
        private String descriptor;
        private String root;
        private String rulesFile;
        private boolean strict;
        private boolean envVars = true;

        private Builder() {}

        /** Reads exactly this descriptor; a missing file is then an error ({@code IO}). */
        public Builder descriptor(Path path) {
            this.descriptor = path == null ? null : path.toString();
            return this;
        }

        /** Reads exactly this descriptor; a missing file is then an error ({@code IO}). */
        public Builder descriptor(String path) {
            this.descriptor = path;
            return this;
        }

        /** Probes files below this directory instead of {@code /} (fake hosts in tests). */
        public Builder root(Path dir) {
            this.root = dir == null ? null : dir.toString();
            return this;
        }

        /** Uses hostname rules and aliases from this TOML file. */
        public Builder rulesFile(Path path) {
            this.rulesFile = path == null ? null : path.toString();
            return this;
        }

        /** Strict mode: descriptor warnings (unknown keys, …) become errors. */
        public Builder strict(boolean strict) {
            this.strict = strict;
            return this;
        }

        /** Whether {@code ENVID_*} variables (including {@code ENVID_DESCRIPTOR}) are read. */
        public Builder envVars(boolean on) {
            this.envVars = on;
            return this;
        }

        /** The options. */
        public LoadOptions build() {
            return new LoadOptions(this);
        }
    }
}
