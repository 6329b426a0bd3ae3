/*
 * Exercises every function of include/envid.h, including NULL arguments and
 * error paths. Built and run by tests/c_api.rs:
 *
 *   test_envid EXAMPLE_TOML WORKDIR [invalid-value]
 *
 * EXAMPLE_TOML is testdata/example.toml; the process runs with
 * ENVID_DESCRIPTOR=EXAMPLE_TOML and no other ENVID_* variable. WORKDIR holds
 * files the harness wrote: expected.json (the Rust library's JSON for
 * EXAMPLE_TOML), bad-syntax.toml, unknown-key.toml, no-env.toml,
 * rules.toml, bad-rules.toml, and an empty directory root/.
 *
 * When ENVID_TEST_LOOKUP_URL is set (the harness starts the reference
 * environment service on loopback with a copy of testdata/registry.toml), the
 * lookup client and the replica are tested against it. ENVID_TEST_REGISTRY
 * names that copy: the replica test rewrites it (then restores it) to make
 * the service publish changes.
 *
 * With "invalid-value" (the harness then sets ENVID_IP to garbage) it only
 * checks that envid_current fails with ENVID_INVALID_VALUE, every time.
 *
 * Prints one line per failed check and a final "N passed, M failed"; exits 1
 * when anything failed.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include "envid.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int passed = 0;
static int failed = 0;

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (cond) {                                                             \
            passed++;                                                           \
        } else {                                                                \
            failed++;                                                           \
            printf("FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__,    \
                   #cond, envid_last_error());                                  \
        }                                                                       \
    } while (0)

/* Checks a result code, printing both names when they differ. */
#define CHECK_RC(expr, want)                                                    \
    do {                                                                        \
        envid_result rc_ = (expr);                                              \
        if (rc_ == (want)) {                                                    \
            passed++;                                                           \
        } else {                                                                \
            failed++;                                                           \
            printf("FAIL %s:%d: %s returned %s, expected %s (last error: %s)\n", \
                   __FILE__, __LINE__, #expr, envid_result_name((int)rc_),      \
                   envid_result_name((int)(want)), envid_last_error());         \
        }                                                                       \
    } while (0)

static int streq(const char *a, const char *b) {
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static int contains(const char *haystack, const char *needle) {
    return haystack != NULL && needle != NULL && strstr(haystack, needle) != NULL;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    /* Tolerate a trailing newline. */
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r')) {
        buf[--got] = '\0';
    }
    return buf;
}

static void test_result_names(void) {
    CHECK(streq(envid_result_name(ENVID_OK), "ENVID_OK"));
    CHECK(streq(envid_result_name(ENVID_NULL_PARAMETER), "ENVID_NULL_PARAMETER"));
    CHECK(streq(envid_result_name(ENVID_INVALID_INPUT), "ENVID_INVALID_INPUT"));
    CHECK(streq(envid_result_name(ENVID_NOT_FOUND), "ENVID_NOT_FOUND"));
    CHECK(streq(envid_result_name(ENVID_BUFFER_TOO_SMALL), "ENVID_BUFFER_TOO_SMALL"));
    CHECK(streq(envid_result_name(ENVID_IO), "ENVID_IO"));
    CHECK(streq(envid_result_name(ENVID_DESCRIPTOR), "ENVID_DESCRIPTOR"));
    CHECK(streq(envid_result_name(ENVID_RULES), "ENVID_RULES"));
    CHECK(streq(envid_result_name(ENVID_INVALID_VALUE), "ENVID_INVALID_VALUE"));
    CHECK(streq(envid_result_name(ENVID_UNIDENTIFIED), "ENVID_UNIDENTIFIED"));
    CHECK(streq(envid_result_name(ENVID_LOOKUP_FAILED), "ENVID_LOOKUP_FAILED"));
    CHECK(streq(envid_result_name(ENVID_PANIC), "ENVID_PANIC"));
    CHECK(streq(envid_result_name(ENVID_INTERNAL), "ENVID_INTERNAL"));
    CHECK(streq(envid_result_name(-1), "ENVID_UNKNOWN"));
    CHECK(streq(envid_result_name(9999), "ENVID_UNKNOWN"));
}

static void test_last_error(void) {
    /* Nothing failed yet on this thread. */
    CHECK(envid_last_error() != NULL);
    CHECK(streq(envid_last_error(), ""));

    /* A NULL out-parameter fails and names the argument. */
    CHECK_RC(envid_current(NULL), ENVID_NULL_PARAMETER);
    CHECK(contains(envid_last_error(), "out"));

    const char *msg = envid_last_error();
    size_t needed = 0;
    CHECK_RC(envid_last_error_copy(NULL, 0, &needed), ENVID_BUFFER_TOO_SMALL);
    CHECK(needed == strlen(msg) + 1);

    char small[4];
    CHECK_RC(envid_last_error_copy(small, sizeof small, &needed), ENVID_BUFFER_TOO_SMALL);
    CHECK(strlen(small) == 3);
    CHECK(strncmp(small, msg, 3) == 0);

    char big[256];
    CHECK_RC(envid_last_error_copy(big, sizeof big, NULL), ENVID_OK);
    CHECK(streq(big, envid_last_error()));
    CHECK_RC(envid_last_error_copy(NULL, 10, NULL), ENVID_NULL_PARAMETER);
    /* Copy failures never replace the message. */
    CHECK(streq(big, envid_last_error()));

    /* Frees accept NULL. */
    envid_environment_free(NULL);
    envid_load_options_free(NULL);
    envid_rules_free(NULL);
    envid_string_free(NULL);
    CHECK(1);
}

static void check_example_fields(const envid_environment *env, const char *expected_json) {
    const char *s = NULL;
    CHECK_RC(envid_environment_app(env, &s), ENVID_OK);
    CHECK(streq(s, "flight_order"));
    CHECK_RC(envid_environment_env(env, &s), ENVID_OK);
    CHECK(streq(s, "beta"));
    CHECK_RC(envid_environment_env_type(env, &s), ENVID_OK);
    CHECK(streq(s, "beta"));
    CHECK_RC(envid_environment_sub_env(env, &s), ENVID_OK);
    CHECK(streq(s, "noahauto-2"));
    CHECK_RC(envid_environment_idc(env, &s), ENVID_OK);
    CHECK(streq(s, "cn0"));
    CHECK_RC(envid_environment_platform(env, &s), ENVID_OK);
    CHECK(streq(s, "container"));
    CHECK_RC(envid_environment_release_id(env, &s), ENVID_OK);
    CHECK(streq(s, "r-20261122-0042"));
    CHECK_RC(envid_environment_release_version(env, &s), ENVID_OK);
    CHECK(streq(s, "2.14.0"));
    CHECK_RC(envid_environment_release_deployed_at(env, &s), ENVID_OK);
    CHECK(streq(s, "2026-11-22T10:00:00Z"));
    uint32_t batch = 0;
    CHECK_RC(envid_environment_release_batch(env, &batch), ENVID_OK);
    CHECK(batch == 2);
    CHECK_RC(envid_environment_field(env, ENVID_FIELD_RELEASE_BATCH, &s), ENVID_OK);
    CHECK(streq(s, "2"));
    CHECK_RC(envid_environment_k8s_cluster(env, &s), ENVID_OK);
    CHECK(streq(s, "k8s-cn0-a"));
    CHECK_RC(envid_environment_k8s_namespace(env, &s), ENVID_OK);
    CHECK(streq(s, "flight"));
    CHECK_RC(envid_environment_k8s_pod(env, &s), ENVID_OK);
    CHECK(streq(s, "flight-order-7d9c4-x2k8p"));
    CHECK_RC(envid_environment_k8s_node(env, &s), ENVID_OK);
    CHECK(streq(s, "node-cn0-117"));
    CHECK_RC(envid_environment_k8s_workload(env, &s), ENVID_OK);
    CHECK(streq(s, "flight-order"));
    /* The example has no pod UID (no volume, no POD_UID). */
    CHECK_RC(envid_environment_k8s_pod_uid(env, &s), ENVID_NOT_FOUND);
    CHECK(s == NULL);

    /* hostname and ip come from probes of this host: present or absent, but
       consistent with the JSON the Rust library gives. */
    envid_result rc = envid_environment_hostname(env, &s);
    CHECK(rc == ENVID_OK || rc == ENVID_NOT_FOUND);
    CHECK(rc == ENVID_OK ? s != NULL : s == NULL);
    rc = envid_environment_ip(env, &s);
    CHECK(rc == ENVID_OK || rc == ENVID_NOT_FOUND);

    /* Generic access by field number equals the named getters. */
    const char *a = NULL, *b = NULL;
    CHECK_RC(envid_environment_field(env, ENVID_FIELD_ENV, &a), ENVID_OK);
    CHECK_RC(envid_environment_env(env, &b), ENVID_OK);
    CHECK(a == b); /* the same precomputed string */
    CHECK_RC(envid_environment_field(env, ENVID_FIELD_COUNT, &a), ENVID_INVALID_INPUT);
    CHECK_RC(envid_environment_field(env, -1, &a), ENVID_INVALID_INPUT);

    /* Labels. */
    CHECK_RC(envid_environment_label(env, "team", &s), ENVID_OK);
    CHECK(streq(s, "flight"));
    s = "sentinel";
    CHECK_RC(envid_environment_label(env, "nope", &s), ENVID_NOT_FOUND);
    CHECK(s == NULL);
    CHECK(contains(envid_last_error(), "nope"));
    CHECK_RC(envid_environment_label(env, NULL, &s), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_environment_label(env, "team", NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_environment_label(env, "\xff\xfe", &s), ENVID_INVALID_INPUT);
    size_t count = 0;
    CHECK_RC(envid_environment_label_count(env, &count), ENVID_OK);
    CHECK(count == 1);
    const char *k = NULL, *v = NULL;
    CHECK_RC(envid_environment_label_at(env, 0, &k, &v), ENVID_OK);
    CHECK(streq(k, "team") && streq(v, "flight"));
    CHECK_RC(envid_environment_label_at(env, 1, &k, &v), ENVID_NOT_FOUND);
    CHECK_RC(envid_environment_label_at(env, 0, NULL, &v), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_environment_label_count(env, NULL), ENVID_NULL_PARAMETER);

    /* JSON: the same text as the Rust library's. */
    char *json = NULL;
    CHECK_RC(envid_environment_to_json(env, false, false, &json), ENVID_OK);
    CHECK(streq(json, expected_json));
    if (!streq(json, expected_json)) {
        printf("  got:      %s\n  expected: %s\n", json ? json : "(null)", expected_json);
    }
    CHECK(!contains(json, "tok-example-3f9a1c"));
    envid_string_free(json);
    CHECK_RC(envid_environment_to_json(env, true, true, &json), ENVID_OK);
    CHECK(contains(json, "\"token\":\"tok-example-3f9a1c\""));
    CHECK(contains(json, "\"sources\""));
    envid_string_free(json);
    CHECK_RC(envid_environment_to_json(env, false, false, NULL), ENVID_NULL_PARAMETER);
}

static void test_null_environment(void) {
    const char *s = "sentinel";
    CHECK_RC(envid_environment_env(NULL, &s), ENVID_NULL_PARAMETER);
    CHECK(contains(envid_last_error(), "env"));
    CHECK_RC(envid_environment_app(NULL, &s), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_environment_field(NULL, ENVID_FIELD_IDC, &s), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_environment_label(NULL, "team", &s), ENVID_NULL_PARAMETER);
    uint32_t batch;
    CHECK_RC(envid_environment_release_batch(NULL, &batch), ENVID_NULL_PARAMETER);
    size_t count;
    CHECK_RC(envid_environment_label_count(NULL, &count), ENVID_NULL_PARAMETER);
    char *json = NULL;
    CHECK_RC(envid_environment_to_json(NULL, false, false, &json), ENVID_NULL_PARAMETER);
    CHECK(json == NULL);
}

static void test_current(const char *expected_json) {
    const envid_environment *env = NULL;
    CHECK_RC(envid_current(&env), ENVID_OK);
    CHECK(env != NULL);
    if (env == NULL) {
        return;
    }
    const envid_environment *again = NULL;
    CHECK_RC(envid_current(&again), ENVID_OK);
    CHECK(again == env); /* one process-wide object */
    check_example_fields(env, expected_json);
    /* Freeing the process-wide environment is ignored. */
    envid_environment_free(env);
    const char *s = NULL;
    CHECK_RC(envid_environment_env(env, &s), ENVID_OK);
    CHECK(streq(s, "beta"));

    const char *null_out = NULL;
    CHECK_RC(envid_environment_env(env, NULL), ENVID_NULL_PARAMETER);
    (void)null_out;
}

static envid_load_options *options(const char *descriptor, const char *root, int env_vars) {
    envid_load_options *o = NULL;
    CHECK_RC(envid_load_options_new(&o), ENVID_OK);
    if (descriptor != NULL) {
        CHECK_RC(envid_load_options_set_descriptor(o, descriptor), ENVID_OK);
    }
    if (root != NULL) {
        CHECK_RC(envid_load_options_set_root(o, root), ENVID_OK);
    }
    CHECK_RC(envid_load_options_set_env_vars(o, env_vars != 0), ENVID_OK);
    return o;
}

static void test_load(const char *example, const char *dir, const char *expected_json) {
    CHECK_RC(envid_load_options_new(NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_load_options_set_descriptor(NULL, example), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_load_options_set_root(NULL, "/"), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_load_options_set_rules_file(NULL, "x"), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_load_options_set_strict(NULL, true), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_load_options_set_env_vars(NULL, true), ENVID_NULL_PARAMETER);

    /* NULL options: the defaults, here ENVID_DESCRIPTOR=example. */
    envid_environment *env = NULL;
    CHECK_RC(envid_load(NULL, &env), ENVID_OK);
    CHECK_RC(envid_load(NULL, NULL), ENVID_NULL_PARAMETER);
    if (env != NULL) {
        check_example_fields(env, expected_json);
        envid_environment_free(env);
        env = NULL;
    }

    /* Explicit descriptor, variables off. */
    envid_load_options *o = options(example, NULL, 0);
    CHECK_RC(envid_load_options_set_strict(o, true), ENVID_OK);
    CHECK_RC(envid_load_options_set_descriptor(o, ""), ENVID_INVALID_INPUT);
    CHECK_RC(envid_load(o, &env), ENVID_OK);
    if (env != NULL) {
        check_example_fields(env, expected_json);
        envid_environment_free(env);
        env = NULL;
    }
    /* Resetting options with NULL. */
    CHECK_RC(envid_load_options_set_root(o, NULL), ENVID_OK);
    CHECK_RC(envid_load_options_set_rules_file(o, NULL), ENVID_OK);
    envid_load_options_free(o);

    /* A missing descriptor named explicitly: ENVID_IO, naming the file. */
    char *missing = path_join(dir, "does-not-exist.toml");
    o = options(missing, NULL, 0);
    env = (envid_environment *)0x1;
    CHECK_RC(envid_load(o, &env), ENVID_IO);
    CHECK(env == (envid_environment *)0x1); /* untouched on failure */
    CHECK(contains(envid_last_error(), "does-not-exist.toml"));
    envid_load_options_free(o);
    free(missing);

    /* Syntax error: ENVID_DESCRIPTOR with the file's name. */
    char *bad = path_join(dir, "bad-syntax.toml");
    o = options(bad, NULL, 0);
    env = NULL;
    CHECK_RC(envid_load(o, &env), ENVID_DESCRIPTOR);
    CHECK(env == NULL);
    CHECK(contains(envid_last_error(), "bad-syntax.toml"));
    envid_load_options_free(o);
    free(bad);

    /* Unknown key: accepted, refused in strict mode. */
    char *unknown = path_join(dir, "unknown-key.toml");
    o = options(unknown, NULL, 0);
    CHECK_RC(envid_load(o, &env), ENVID_OK);
    envid_environment_free(env);
    env = NULL;
    CHECK_RC(envid_load_options_set_strict(o, true), ENVID_OK);
    CHECK_RC(envid_load(o, &env), ENVID_DESCRIPTOR);
    CHECK(contains(envid_last_error(), "unknown-key.toml"));
    envid_load_options_free(o);
    free(unknown);

    /* No env, no idc, a fake root with no hostname: unidentified, and the
       message lists the sources tried. */
    char *noenv = path_join(dir, "no-env.toml");
    char *root = path_join(dir, "root");
    o = options(noenv, root, 0);
    CHECK_RC(envid_load(o, &env), ENVID_UNIDENTIFIED);
    CHECK(contains(envid_last_error(), "env"));
    CHECK(contains(envid_last_error(), "no-env.toml"));
    envid_load_options_free(o);

    /* A host set up for Apollo: no descriptor, /opt/settings/server.properties
       below the root gives env and idc, with its own source. */
    char *apollo = path_join(dir, "apollo");
    o = options(NULL, apollo, 0);
    CHECK_RC(envid_load(o, &env), ENVID_OK);
    const char *v = NULL;
    CHECK_RC(envid_environment_env(env, &v), ENVID_OK);
    CHECK(v != NULL && strcmp(v, "PRO") == 0);
    CHECK_RC(envid_environment_env_type(env, &v), ENVID_OK);
    CHECK(v != NULL && strcmp(v, "prod") == 0);
    CHECK_RC(envid_environment_idc(env, &v), ENVID_OK);
    CHECK(v != NULL && strcmp(v, "cn5") == 0);
    char *sources = NULL;
    CHECK_RC(envid_environment_to_json(env, false, true, &sources), ENVID_OK);
    CHECK(sources != NULL && contains(sources, "\"apollo\"") && contains(sources, "server.properties"));
    envid_string_free(sources);
    envid_environment_free(env);
    env = NULL;
    envid_load_options_free(o);
    free(apollo);

    /* A bad ENVID_* value (variables on): the harness cannot set one for
       this process only, so use a rules file error instead. */
    char *badrules = path_join(dir, "bad-rules.toml");
    o = options(example, NULL, 0);
    CHECK_RC(envid_load_options_set_rules_file(o, badrules), ENVID_OK);
    CHECK_RC(envid_load(o, &env), ENVID_RULES);
    CHECK(contains(envid_last_error(), "bad-rules.toml"));
    envid_load_options_free(o);
    free(badrules);
    free(noenv);
    free(root);
}

static void test_rules(const char *dir) {
    envid_rules *rules = NULL;
    CHECK_RC(envid_rules_builtin(NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_rules_builtin(&rules), ENVID_OK);

    char *json = NULL;
    CHECK_RC(envid_rules_explain(rules, "l-flightqma9.f.beta.cn0.example.com", &json), ENVID_OK);
    CHECK(contains(json, "\"app\":\"flightqma\""));
    CHECK(contains(json, "\"biz\":\"f\""));
    CHECK(contains(json, "\"env\":\"beta\""));
    CHECK(contains(json, "\"idc\":\"cn0\""));
    CHECK(contains(json, "\"env_defaulted\":false"));
    envid_string_free(json);
    json = NULL;
    CHECK_RC(envid_rules_explain(rules, "L-QMQ1.H.CN5.", &json), ENVID_OK);
    CHECK(contains(json, "\"app\":\"qmq\""));
    CHECK(contains(json, "\"env\":\"prod\""));
    CHECK(contains(json, "\"env_type\":\"prod\""));
    CHECK(contains(json, "\"env_defaulted\":true"));
    CHECK(contains(json, "\"idc\":\"cn5\""));
    envid_string_free(json);
    json = NULL;
    CHECK_RC(envid_rules_explain(rules, "web-3", &json), ENVID_NOT_FOUND);
    CHECK(json == NULL);
    CHECK(contains(envid_last_error(), "web-3"));
    CHECK_RC(envid_rules_explain(NULL, "web-3", &json), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_rules_explain(rules, NULL, &json), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_rules_explain(rules, "web-3", NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_rules_explain(rules, "\xc3\x28", &json), ENVID_INVALID_INPUT);
    envid_rules_free(rules);

    /* A rules file: its rule first, its aliases. */
    char *path = path_join(dir, "rules.toml");
    rules = NULL;
    CHECK_RC(envid_rules_load(path, &rules), ENVID_OK);
    CHECK_RC(envid_rules_explain(rules, "web-shop-3.perf.cn7", &json), ENVID_OK);
    CHECK(contains(json, "\"rule\":\"web\""));
    CHECK(contains(json, "\"env\":\"perf\""));
    CHECK(contains(json, "\"env_type\":\"test\""));
    CHECK(contains(json, "\"idc\":\"cn7\""));
    envid_string_free(json);
    envid_rules_free(rules);
    free(path);

    rules = NULL;
    CHECK_RC(envid_rules_load(NULL, &rules), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_rules_load("x.toml", NULL), ENVID_NULL_PARAMETER);
    path = path_join(dir, "no-such-rules.toml");
    CHECK_RC(envid_rules_load(path, &rules), ENVID_IO);
    CHECK(rules == NULL);
    free(path);
    path = path_join(dir, "bad-rules.toml");
    CHECK_RC(envid_rules_load(path, &rules), ENVID_RULES);
    CHECK(contains(envid_last_error(), "bad-rules.toml"));
    CHECK(rules == NULL);
    free(path);
}

/* Many threads at once: process-wide reads, loads and frees, rules. */
struct thread_arg {
    const char *example;
    int errors;
};

static void *worker(void *p) {
    struct thread_arg *arg = p;
    for (int i = 0; i < 200; i++) {
        const envid_environment *cur = NULL;
        const char *s = NULL;
        if (envid_current(&cur) != ENVID_OK || envid_environment_idc(cur, &s) != ENVID_OK ||
            !streq(s, "cn0")) {
            arg->errors++;
        }
        if (i % 20 == 0) {
            envid_load_options *o = NULL;
            envid_environment *env = NULL;
            if (envid_load_options_new(&o) != ENVID_OK ||
                envid_load_options_set_descriptor(o, arg->example) != ENVID_OK ||
                envid_load(o, &env) != ENVID_OK || envid_environment_app(env, &s) != ENVID_OK ||
                !streq(s, "flight_order")) {
                arg->errors++;
            }
            envid_environment_free(env);
            envid_load_options_free(o);
            envid_rules *rules = NULL;
            char *json = NULL;
            if (envid_rules_builtin(&rules) != ENVID_OK ||
                envid_rules_explain(rules, "l-qmq1.h.cn5", &json) != ENVID_OK ||
                !contains(json, "cn5")) {
                arg->errors++;
            }
            envid_string_free(json);
            envid_rules_free(rules);
        }
        /* Errors are per thread: a failure here must say what failed here. */
        if (envid_environment_label(cur, "missing-label", &s) != ENVID_NOT_FOUND ||
            !contains(envid_last_error(), "missing-label")) {
            arg->errors++;
        }
    }
    return NULL;
}

static void test_threads(const char *example) {
    enum { N = 8 };
    pthread_t t[N];
    struct thread_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i].example = example;
        args[i].errors = 0;
        CHECK(pthread_create(&t[i], NULL, worker, &args[i]) == 0);
    }
    int errors = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        errors += args[i].errors;
    }
    CHECK(errors == 0);
}

static envid_lookup_client *lookup_client(const char *url, uint32_t retries) {
    envid_lookup_options *o = NULL;
    envid_lookup_client *c = NULL;
    CHECK_RC(envid_lookup_options_new(&o), ENVID_OK);
    CHECK_RC(envid_lookup_options_add_endpoint(o, url), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_connect_timeout_ms(o, 300), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_per_phase_timeout_ms(o, 2000), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_max_retries(o, retries), ENVID_OK);
    CHECK_RC(envid_lookup_client_new(o, &c), ENVID_OK);
    envid_lookup_options_free(o);
    return c;
}

struct lookup_arg {
    envid_lookup_client *client;
    int errors;
};

static void *lookup_worker(void *p) {
    struct lookup_arg *arg = p;
    static const char *ips[] = {"10.0.0.5", "10.5.0.21", "10.8.1.77", "10.8.3.4", "192.0.2.1"};
    for (int i = 0; i < 100; i++) {
        const char *ip = ips[i % 5];
        char *json = NULL;
        envid_result rc = envid_lookup_client_lookup(arg->client, ip, &json);
        if (i % 5 == 4 ? rc != ENVID_NOT_FOUND : (rc != ENVID_OK || !contains(json, "\"env\""))) {
            arg->errors++;
        }
        envid_string_free(json);
    }
    return NULL;
}

static void test_lookup(const char *url) {
    /* Options: NULL handling and validation. */
    envid_lookup_options *o = NULL;
    envid_lookup_client *c = NULL;
    CHECK_RC(envid_lookup_options_new(NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_options_add_endpoint(NULL, url), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_options_set_token(NULL, "t"), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_options_set_proxy(NULL, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_options_set_ttl_ms(NULL, 1), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_options_new(&o), ENVID_OK);
    CHECK_RC(envid_lookup_options_add_endpoint(o, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_client_new(o, &c), ENVID_INVALID_INPUT); /* no endpoint */
    CHECK(contains(envid_last_error(), "no endpoint"));
    CHECK(c == NULL);
    CHECK_RC(envid_lookup_options_set_connect_timeout_ms(o, 0), ENVID_INVALID_INPUT);
    CHECK_RC(envid_lookup_options_set_per_phase_timeout_ms(o, 0), ENVID_INVALID_INPUT);
    CHECK_RC(envid_lookup_options_set_request_timeout_ms(o, 0), ENVID_INVALID_INPUT); /* deprecated name */
    CHECK_RC(envid_lookup_options_set_request_timeout_ms(o, 2000), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_total_timeout_ms(o, 0), ENVID_INVALID_INPUT);
    CHECK_RC(envid_lookup_options_set_total_timeout_ms(o, 5000), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_ca_file(NULL, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_options_set_ttl_ms(o, 60000), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_negative_ttl_ms(o, 1000), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_max_stale_ms(o, 60000), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_token(o, "secret-token"), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_token(o, NULL), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_proxy(o, NULL), ENVID_OK);
    CHECK_RC(envid_lookup_options_add_endpoint(o, "ftp://example"), ENVID_OK);
    CHECK_RC(envid_lookup_client_new(o, &c), ENVID_INVALID_INPUT);
    CHECK(contains(envid_last_error(), "ftp://example"));
    CHECK_RC(envid_lookup_client_new(o, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_client_new(NULL, &c), ENVID_NULL_PARAMETER);
    envid_lookup_options_free(o);

    /* The connection settings are checked once, for the client and the replica alike. */
    envid_replica *r = NULL;
    CHECK_RC(envid_lookup_options_new(&o), ENVID_OK);
    CHECK_RC(envid_lookup_options_add_endpoint(o, url), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_ca_file(o, "/nonexistent/envid-ca.pem"), ENVID_OK);
    CHECK_RC(envid_lookup_client_new(o, &c), ENVID_INVALID_INPUT);
    CHECK(contains(envid_last_error(), "ca_file"));
    CHECK_RC(envid_replica_new(o, &r), ENVID_INVALID_INPUT);
    CHECK(contains(envid_last_error(), "ca_file"));
    CHECK_RC(envid_lookup_options_set_ca_file(o, NULL), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_proxy(o, "::not a proxy::"), ENVID_OK);
    CHECK_RC(envid_lookup_client_new(o, &c), ENVID_INVALID_INPUT);
    CHECK(contains(envid_last_error(), "proxy"));
    CHECK(c == NULL && r == NULL);
    envid_lookup_options_free(o);

    c = lookup_client(url, 1);
    if (c == NULL) {
        return;
    }
    char *json = NULL;
    CHECK_RC(envid_lookup_client_lookup(c, "10.0.0.5", &json), ENVID_OK);
    CHECK(contains(json, "\"app\":\"flightqma\""));
    CHECK(contains(json, "\"env\":\"beta\""));
    CHECK(contains(json, "\"idc\":\"cn0\""));
    CHECK(contains(json, "\"ip\":\"10.0.0.5\""));
    envid_string_free(json);
    json = NULL;
    /* The single IP wins over its range. */
    CHECK_RC(envid_lookup_client_lookup(c, "10.8.1.77", &json), ENVID_OK);
    CHECK(contains(json, "\"env\":\"betanoah\""));
    CHECK(contains(json, "\"batch\":2"));
    envid_string_free(json);
    json = NULL;
    /* A range. */
    CHECK_RC(envid_lookup_client_lookup(c, "10.8.250.9", &json), ENVID_OK);
    CHECK(contains(json, "\"cidr\":\"10.8.0.0/16\""));
    envid_string_free(json);
    json = (char *)0x1;
    CHECK_RC(envid_lookup_client_lookup(c, "192.0.2.1", &json), ENVID_NOT_FOUND);
    CHECK(json == (char *)0x1);
    CHECK(contains(envid_last_error(), "192.0.2.1"));
    json = NULL;
    CHECK_RC(envid_lookup_client_lookup(c, "not-an-ip", &json), ENVID_INVALID_INPUT);
    CHECK(contains(envid_last_error(), "not-an-ip"));
    CHECK_RC(envid_lookup_client_lookup(c, NULL, &json), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_client_lookup(NULL, "10.0.0.5", &json), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_client_lookup(c, "10.0.0.5", NULL), ENVID_NULL_PARAMETER);

    /* Cached now: a hit, and no new request. */
    envid_lookup_stats before, after;
    CHECK_RC(envid_lookup_client_stats(c, &before), ENVID_OK);
    CHECK_RC(envid_lookup_client_lookup(c, "10.0.0.5", &json), ENVID_OK);
    envid_string_free(json);
    json = NULL;
    CHECK_RC(envid_lookup_client_stats(c, &after), ENVID_OK);
    CHECK(after.hits == before.hits + 1);
    CHECK(after.requests == before.requests);
    CHECK(after.misses >= 3);
    CHECK_RC(envid_lookup_client_stats(NULL, &after), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_client_stats(c, NULL), ENVID_NULL_PARAMETER);

    /* Many at once. */
    const char *ips[] = {"10.0.0.5", "10.5.0.21", "192.0.2.7", "2001:db8::1"};
    CHECK_RC(envid_lookup_client_lookup_many(c, ips, 4, &json), ENVID_OK);
    CHECK(contains(json, "\"10.5.0.21\":{"));
    CHECK(contains(json, "\"app\":\"qmq\""));
    CHECK(contains(json, "\"192.0.2.7\":null"));
    CHECK(contains(json, "\"errors\":{}"));
    envid_string_free(json);
    json = NULL;
    CHECK_RC(envid_lookup_client_lookup_many(c, NULL, 0, &json), ENVID_OK);
    CHECK(streq(json, "{\"errors\":{},\"hosts\":{}}"));
    envid_string_free(json);
    json = NULL;
    const char *bad[] = {"10.0.0.5", "10.0.0.300"};
    CHECK_RC(envid_lookup_client_lookup_many(c, bad, 2, &json), ENVID_INVALID_INPUT);
    CHECK(contains(envid_last_error(), "10.0.0.300"));
    const char *with_null[] = {"10.0.0.5", NULL};
    CHECK_RC(envid_lookup_client_lookup_many(c, with_null, 2, &json), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_client_lookup_many(c, NULL, 2, &json), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_client_lookup_many(c, ips, 4, NULL), ENVID_NULL_PARAMETER);

    /* Many threads on one client. */
    enum { N = 8 };
    pthread_t t[N];
    struct lookup_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i].client = c;
        args[i].errors = 0;
        CHECK(pthread_create(&t[i], NULL, lookup_worker, &args[i]) == 0);
    }
    int errors = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        errors += args[i].errors;
    }
    CHECK(errors == 0);
    envid_lookup_client_free(c);
    envid_lookup_client_free(NULL);

    /* A service that is not there: LOOKUP_FAILED naming the endpoint, and
       a batch reports the failure per IP. */
    c = lookup_client("http://127.0.0.1:1", 0);
    if (c == NULL) {
        return;
    }
    CHECK_RC(envid_lookup_client_lookup(c, "10.0.0.5", &json), ENVID_LOOKUP_FAILED);
    CHECK(contains(envid_last_error(), "127.0.0.1:1"));
    json = NULL;
    const char *one[] = {"10.0.0.6"};
    CHECK_RC(envid_lookup_client_lookup_many(c, one, 1, &json), ENVID_OK);
    CHECK(contains(json, "\"errors\":{\"10.0.0.6\":"));
    CHECK(contains(json, "\"hosts\":{}"));
    envid_string_free(json);
    CHECK_RC(envid_lookup_client_stats(c, &after), ENVID_OK);
    CHECK(after.errors >= 1);
    envid_lookup_client_free(c);
}

struct replica_arg {
    envid_replica *replica;
    int errors;
};

static void *replica_worker(void *p) {
    struct replica_arg *arg = p;
    static const char *ips[] = {"10.0.0.5", "10.5.0.21", "10.8.1.77", "10.8.3.4", "192.0.2.1"};
    for (int i = 0; i < 1000; i++) {
        const char *ip = ips[i % 5];
        char *json = NULL;
        envid_result rc = envid_replica_lookup(arg->replica, ip, &json);
        if (i % 5 == 4 ? rc != ENVID_NOT_FOUND : (rc != ENVID_OK || !contains(json, "\"env\""))) {
            arg->errors++;
        }
        envid_string_free(json);
    }
    return NULL;
}

static envid_replica *replica_from(const char *url, const char *cache_file, envid_result expect) {
    envid_lookup_options *o = NULL;
    envid_replica *r = NULL;
    CHECK_RC(envid_lookup_options_new(&o), ENVID_OK);
    CHECK_RC(envid_lookup_options_add_endpoint(o, url), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_connect_timeout_ms(o, 300), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_per_phase_timeout_ms(o, 2000), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_cache_file(o, cache_file), ENVID_OK);
    CHECK_RC(envid_replica_new(o, &r), expect);
    envid_lookup_options_free(o);
    return r;
}

static void test_replica(const char *url, const char *dir) {
    char *cache = path_join(dir, "replica-cache.json");
    envid_lookup_options *o = NULL;
    envid_replica *r = NULL;
    /* NULL everywhere. */
    CHECK_RC(envid_lookup_options_set_cache_file(NULL, cache), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_replica_new(NULL, &r), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_lookup_options_new(&o), ENVID_OK);
    CHECK_RC(envid_replica_new(o, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_replica_new(o, &r), ENVID_INVALID_INPUT); /* no endpoint */
    CHECK(r == NULL);
    CHECK_RC(envid_lookup_options_add_endpoint(o, "gopher://x"), ENVID_OK);
    CHECK_RC(envid_replica_new(o, &r), ENVID_INVALID_INPUT);
    envid_lookup_options_free(o);
    char *json = NULL;
    CHECK_RC(envid_replica_lookup(NULL, "10.0.0.5", &json), ENVID_NULL_PARAMETER);
    envid_replica_stats st;
    CHECK_RC(envid_replica_get_stats(NULL, &st), ENVID_NULL_PARAMETER);
    envid_replica_free(NULL);

    r = replica_from(url, cache, ENVID_OK);
    if (r == NULL) {
        free(cache);
        return;
    }
    CHECK_RC(envid_replica_lookup(r, NULL, &json), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_replica_lookup(r, "10.0.0.5", NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_replica_get_stats(r, NULL), ENVID_NULL_PARAMETER);
    /* The same answers as the service: an IP, the IP inside its range, a
       range, IPv6, unknown and malformed. */
    CHECK_RC(envid_replica_lookup(r, "10.0.0.5", &json), ENVID_OK);
    CHECK(contains(json, "\"app\":\"flightqma\""));
    CHECK(contains(json, "\"ip\":\"10.0.0.5\""));
    envid_string_free(json);
    CHECK_RC(envid_replica_lookup(r, "10.8.1.77", &json), ENVID_OK);
    CHECK(contains(json, "\"env\":\"betanoah\""));
    envid_string_free(json);
    CHECK_RC(envid_replica_lookup(r, "10.8.250.9", &json), ENVID_OK);
    CHECK(contains(json, "\"cidr\":\"10.8.0.0/16\""));
    envid_string_free(json);
    CHECK_RC(envid_replica_lookup(r, "2001:db8:5:1::9", &json), ENVID_OK);
    CHECK(contains(json, "\"cidr\":\"2001:db8:5:1::/64\""));
    envid_string_free(json);
    json = (char *)0x1;
    CHECK_RC(envid_replica_lookup(r, "192.0.2.1", &json), ENVID_NOT_FOUND);
    CHECK(json == (char *)0x1);
    CHECK(contains(envid_last_error(), "192.0.2.1"));
    json = NULL;
    CHECK_RC(envid_replica_lookup(r, "10.0.0.300", &json), ENVID_INVALID_INPUT);
    CHECK(contains(envid_last_error(), "10.0.0.300"));
    CHECK_RC(envid_replica_lookup(r, "\xff\xfe", &json), ENVID_INVALID_INPUT);

    CHECK_RC(envid_replica_get_stats(r, &st), ENVID_OK);
    CHECK(st.version >= 1);
    CHECK(st.records == 10); /* testdata/registry.toml */
    CHECK(st.snapshots == 1);
    CHECK(st.from_cache == 0);
    CHECK(st.age_ms < 60000);
    /* Not protected against a mass deletion; the cache file was written. */
    CHECK(st.is_protected == 0);
    CHECK(st.held_deletes == 0);
    CHECK(st.protected_since_ms == 0);
    CHECK(st.normal_records == 10);
    CHECK(st.cache_state == ENVID_CACHE_PRESENT);
    CHECK(st.cache_age_ms < 60000);

    /* Many threads on one replica. */
    enum { N = 8 };
    pthread_t t[N];
    struct replica_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i].replica = r;
        args[i].errors = 0;
        CHECK(pthread_create(&t[i], NULL, replica_worker, &args[i]) == 0);
    }
    int errors = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        errors += args[i].errors;
    }
    CHECK(errors == 0);
    envid_replica_free(r);

    /* Service unreachable: the cache file written above answers. */
    r = replica_from("http://127.0.0.1:1", cache, ENVID_OK);
    if (r != NULL) {
        CHECK_RC(envid_replica_get_stats(r, &st), ENVID_OK);
        CHECK(st.from_cache == 1);
        CHECK(st.records == 10); /* testdata/registry.toml */
        CHECK(st.age_ms == UINT64_MAX);
        CHECK(st.cache_state == ENVID_CACHE_PRESENT);
        CHECK(st.cache_age_ms != UINT64_MAX);
        CHECK_RC(envid_replica_lookup(r, "10.5.0.21", &json), ENVID_OK);
        CHECK(contains(json, "\"app\":\"qmq\""));
        envid_string_free(json);
        envid_replica_free(r);
    }
    /* Unreachable and no cache file: LOOKUP_FAILED naming the endpoint. */
    r = replica_from("http://127.0.0.1:1", NULL, ENVID_LOOKUP_FAILED);
    CHECK(r == NULL);
    CHECK(contains(envid_last_error(), "127.0.0.1:1"));
    free(cache);
}

/* Replaces a file the way a deploy would: the service never reads half of it. */
static int write_file_atomic(const char *path, const char *text) {
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f != NULL && fputs(text, f) >= 0;
    if (f != NULL && fclose(f) != 0) {
        ok = 0;
    }
    ok = ok && rename(tmp, path) == 0;
    free(tmp);
    return ok;
}

/* Polls the replica (up to 10 s) until `ip` gives `want`, with `needle` in
   the record when given. */
static int replica_until(envid_replica *r, const char *ip, envid_result want, const char *needle) {
    for (int i = 0; i < 500; i++) {
        char *json = NULL;
        envid_result rc = envid_replica_lookup(r, ip, &json);
        int ok = rc == want && (needle == NULL || contains(json, needle));
        envid_string_free(json);
        if (ok) {
            return 1;
        }
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return 0;
}

/* The service's registry changes while a replica runs: the replica follows
   by deltas (a new record, then its removal), with no new snapshot. */
static void test_replica_follows_deltas(const char *url, const char *registry) {
    char *original = read_file(registry);
    CHECK(original != NULL);
    envid_replica *r = original == NULL ? NULL : replica_from(url, NULL, ENVID_OK);
    if (r == NULL) {
        free(original);
        return;
    }
    envid_replica_stats before, after;
    CHECK_RC(envid_replica_get_stats(r, &before), ENVID_OK);
    char *json = NULL;
    CHECK_RC(envid_replica_lookup(r, "192.0.2.77", &json), ENVID_NOT_FOUND);
    const char *record =
        "\n[[records]]\nip = \"192.0.2.77\"\napp = \"c-delta\"\nenv = \"beta\"\nidc = \"cn0\"\n";
    size_t n = strlen(original) + strlen(record) + 1;
    char *changed = malloc(n);
    snprintf(changed, n, "%s%s", original, record);
    CHECK(write_file_atomic(registry, changed));
    CHECK(replica_until(r, "192.0.2.77", ENVID_OK, "\"app\":\"c-delta\""));
    CHECK(write_file_atomic(registry, original));
    CHECK(replica_until(r, "192.0.2.77", ENVID_NOT_FOUND, NULL));
    CHECK_RC(envid_replica_get_stats(r, &after), ENVID_OK);
    CHECK(after.version >= before.version + 2);
    CHECK(after.deltas >= before.deltas + 2);
    CHECK(after.snapshots == before.snapshots);
    CHECK(after.records == before.records);
    CHECK(after.sync_errors == before.sync_errors);
    envid_replica_free(r);
    free(changed);
    free(original);
}

static void test_invalid_value(void) {
    for (int i = 0; i < 2; i++) { /* a failed load is not cached */
        const envid_environment *env = NULL;
        CHECK_RC(envid_current(&env), ENVID_INVALID_VALUE);
        CHECK(env == NULL);
        CHECK(contains(envid_last_error(), "ENVID_IP"));
    }
    envid_environment *loaded = NULL;
    CHECK_RC(envid_load(NULL, &loaded), ENVID_INVALID_VALUE);
    /* With the variables switched off, the same load works. */
    envid_load_options *o = NULL;
    CHECK_RC(envid_load_options_new(&o), ENVID_OK);
    CHECK_RC(envid_load_options_set_env_vars(o, false), ENVID_OK);
    CHECK_RC(envid_load_options_set_descriptor(o, getenv("ENVID_DESCRIPTOR")), ENVID_OK);
    CHECK_RC(envid_load(o, &loaded), ENVID_OK);
    envid_environment_free(loaded);
    envid_load_options_free(o);
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s EXAMPLE_TOML WORKDIR [invalid-value]\n", argv[0]);
        return 2;
    }
    const char *example = argv[1];
    const char *dir = argv[2];
    if (argc == 4) {
        test_invalid_value();
        printf("%d passed, %d failed\n", passed, failed);
        return failed == 0 ? 0 : 1;
    }
    char *expected_path = path_join(dir, "expected.json");
    char *expected_json = read_file(expected_path);
    free(expected_path);
    if (expected_json == NULL) {
        fprintf(stderr, "cannot read %s/expected.json\n", dir);
        return 2;
    }

    test_result_names();
    test_last_error();
    test_null_environment();
    test_current(expected_json);
    test_load(example, dir, expected_json);
    test_rules(dir);
    test_threads(example);
    const char *url = getenv("ENVID_TEST_LOOKUP_URL");
    if (url != NULL) {
        test_lookup(url);
        test_replica(url, dir);
        const char *registry = getenv("ENVID_TEST_REGISTRY");
        CHECK(registry != NULL);
        if (registry != NULL) {
            test_replica_follows_deltas(url, registry);
        }
    } else {
        printf("ENVID_TEST_LOOKUP_URL not set: lookup client not tested\n");
        failed++;
    }

    free(expected_json);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
