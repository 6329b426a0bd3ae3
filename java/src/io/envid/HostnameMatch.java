package io.envid;

import java.util.Objects;
import java.util.Optional;

/** What a hostname rule read from a hostname. Immutable. */
public final class HostnameMatch {
    private final String rule;
    private final String hostname;
    private final String env;
    private final boolean envDefaulted;
    private final String envType;
    private final String idc;
    private final String app;
    private final String biz;

    HostnameMatch(String rule, String hostname, String env, boolean envDefaulted, String envType,
            String idc, String app, String biz) {
        this.rule = rule;
        this.hostname = hostname;
        this.env = env;
        this.envDefaulted = envDefaulted;
        this.envType = envType;
        this.idc = idc;
        this.app = app;
        this.biz = biz;
    }

    /** The rule's name. */
    public String getRule() {
        return rule;
    }

    /** The hostname as matched (lower case, trailing dot removed). */
    public String getHostname() {
        return hostname;
    }

    /** The environment name. */
    public String getEnv() {
        return env;
    }

    /** True when the env is the rule's default (the hostname had no env segment). */
    public boolean isEnvDefaulted() {
        return envDefaulted;
    }

    /** The class of the env through the alias table. */
    public String getEnvType() {
        return envType;
    }

    /** The data center. */
    public Optional<String> getIdc() {
        return Optional.ofNullable(idc);
    }

    /** The application (name without its instance number). */
    public Optional<String> getApp() {
        return Optional.ofNullable(app);
    }

    /** The business line. */
    public Optional<String> getBiz() {
        return Optional.ofNullable(biz);
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof HostnameMatch)) {
            return false;
        }
        HostnameMatch m = (HostnameMatch) o;
        return envDefaulted == m.envDefaulted && rule.equals(m.rule) && hostname.equals(m.hostname)
                && env.equals(m.env) && envType.equals(m.envType) && Objects.equals(idc, m.idc)
                && Objects.equals(app, m.app) && Objects.equals(biz, m.biz);
    }

    @Override
    public int hashCode() {
        return Objects.hash(rule, hostname, env, envDefaulted, envType, idc, app, biz);
    }

    @Override
    public String toString() {
        return "HostnameMatch{rule=" + rule + ", hostname=" + hostname + ", env=" + env
                + (envDefaulted ? " (default)" : "") + ", envType=" + envType + ", idc=" + idc
                + ", app=" + app + ", biz=" + biz + "}";
    }
}
