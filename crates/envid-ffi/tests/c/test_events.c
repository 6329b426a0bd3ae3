/*
 * The C API of join and leave events (envid_events_*, envid_event_*),
 * against the reference service. Built and run by tests/it/c_api.rs:
 *
 *   test_events URL REGISTRY WORKDIR RUN
 *
 * URL is the service (registration open, the registry file REGISTRY
 * reloaded every 50 ms), which this program rewrites to make hosts join,
 * leave and move. RUN (a digit) keeps runs apart: run R uses apps aR and
 * bR and the IPs 10.5R.0.N, and the harness registered 10.5R.0.7 as aR
 * before it (a registration, with an id; the file's records have none).
 * The cases are those of tests/it/events.rs: a join, a leave, an IP moving
 * from app a to app b (a leave for a consumer of a, a join for one of b),
 * a restart that delivers the unacknowledged event again with the same
 * id, a timeout with no event; and every NULL argument.
 *
 * Prints one line per failed check and a final "N passed, M failed"; exits
 * 1 when anything failed.
 */
#include "envid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int ends_with(const char *s, const char *suffix) {
    size_t n = s == NULL ? 0 : strlen(s);
    size_t m = strlen(suffix);
    return s != NULL && n >= m && strcmp(s + n - m, suffix) == 0;
}

static int run;
static char app_a[8], app_b[8];

/* 10.5R.0.n */
static const char *ip(int n) {
    static char buf[4][32];
    static int next = 0;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "10.5%d.0.%d", run, n);
    return b;
}

/* Replaces the registry the way a deploy would: the service never reads
   half of it. Each record is "N app". */
static int write_registry(const char *path, const char *records[], int n) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return 0;
    }
    int ok = fputs("schema = 1\n", f) >= 0;
    for (int i = 0; i < n; i++) {
        int host = 0;
        char app[8] = {0};
        if (sscanf(records[i], "%d %7s", &host, app) != 2) {
            ok = 0;
            continue;
        }
        ok = ok && fprintf(f,
                           "[[records]]\nip = \"%s\"\napp = \"%s\"\nenv = \"prod\"\nidc = \"cn0\"\n",
                           ip(host), app) > 0;
    }
    ok = fclose(f) == 0 && ok;
    return ok && rename(tmp, path) == 0;
}

/* The next event within 20 s (NULL when none came). */
static envid_event *next_event(envid_events *ev) {
    for (int i = 0; i < 40; i++) {
        envid_event *e = NULL;
        envid_result rc = envid_events_next(ev, 500, &e);
        if (rc == ENVID_OK) {
            return e;
        }
        if (rc != ENVID_TIMEOUT) {
            printf("envid_events_next: %s: %s\n", envid_result_name((int)rc), envid_last_error());
            return NULL;
        }
    }
    return NULL;
}

/* Checks an event's kind, IP and app; frees nothing. */
static int is(const envid_event *e, envid_event_kind kind, const char *want_ip, const char *want_app) {
    envid_event_kind k = ENVID_EVENT_CHANGE;
    const char *s = NULL;
    const char *app = NULL;
    return e != NULL && envid_event_get_kind(e, &k) == ENVID_OK && k == kind &&
           envid_event_ip(e, &s) == ENVID_OK && streq(s, want_ip) &&
           envid_event_app(e, &app) == ENVID_OK && streq(app, want_app);
}

/* Acts on the next event: checks it, acknowledges it, frees it. */
static void expect_and_ack(envid_events *ev, envid_event_kind kind, const char *want_ip,
                           const char *want_app) {
    envid_event *e = next_event(ev);
    CHECK(is(e, kind, want_ip, want_app));
    if (e == NULL) {
        return;
    }
    char *json = NULL;
    CHECK_RC(envid_event_to_json(e, &json), ENVID_OK);
    if (!is(e, kind, want_ip, want_app)) {
        printf("  got %s\n", json);
    }
    CHECK_RC(envid_events_ack(ev, e), ENVID_OK);
    envid_string_free(json);
    envid_event_free(e);
}

static envid_events *consumer(const envid_lookup_options *opts, const char *apps, const char *checkpoint) {
    envid_events *ev = NULL;
    CHECK_RC(envid_events_new(opts, apps, NULL, NULL, NULL, checkpoint, &ev), ENVID_OK);
    return ev;
}

static void test_null_arguments(const envid_lookup_options *opts, const char *work) {
    envid_events *ev = NULL;
    envid_event *e = NULL;
    envid_events_stats st;
    const char *s = NULL;
    char *owned = NULL;
    envid_event_kind k;
    uint64_t v = 0;
    CHECK_RC(envid_events_new(NULL, NULL, NULL, NULL, NULL, NULL, &ev), ENVID_NULL_PARAMETER);
    CHECK(contains(envid_last_error(), "opts"));
    CHECK_RC(envid_events_new(opts, NULL, NULL, NULL, NULL, NULL, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_events_new(opts, NULL, NULL, NULL, NULL, "", &ev), ENVID_INVALID_INPUT);
    CHECK(ev == NULL);
    envid_lookup_options *none = NULL;
    CHECK_RC(envid_lookup_options_new(&none), ENVID_OK);
    CHECK_RC(envid_events_new(none, NULL, NULL, NULL, NULL, NULL, &ev), ENVID_INVALID_INPUT);
    envid_lookup_options_free(none);

    CHECK_RC(envid_events_next(NULL, 0, &e), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_events_ack(NULL, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_events_flush(NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_events_redeliver(NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_events_get_stats(NULL, &st), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_events_last_sync_error(NULL, &owned), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_get_kind(NULL, &k), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_version(NULL, &v), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_id(NULL, &s), ENVID_NULL_PARAMETER);
    CHECK(s == NULL);
    CHECK_RC(envid_event_ip(NULL, &s), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_registration(NULL, &s), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_previous_registration(NULL, &s), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_app(NULL, &s), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_env(NULL, &s), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_idc(NULL, &s), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_to_json(NULL, &owned), ENVID_NULL_PARAMETER);
    envid_events_free(NULL);
    envid_event_free(NULL);

    ev = consumer(opts, app_a, NULL);
    CHECK_RC(envid_events_next(ev, 0, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_events_ack(ev, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_events_get_stats(ev, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_events_last_sync_error(ev, NULL), ENVID_NULL_PARAMETER);
    e = next_event(ev);
    CHECK(e != NULL);
    CHECK_RC(envid_event_get_kind(e, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_version(e, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_id(e, NULL), ENVID_NULL_PARAMETER);
    CHECK_RC(envid_event_to_json(e, NULL), ENVID_NULL_PARAMETER);
    envid_event_free(e);
    envid_events_free(ev);

    /* A corrupt checkpoint is an error naming the file, never a fresh start. */
    char path[4096];
    snprintf(path, sizeof path, "%s/corrupt-%d.json", work, run);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs("{\"format\": \"envid-events-1\", \"gen", f);
        fclose(f);
    }
    ev = NULL;
    CHECK_RC(envid_events_new(opts, app_a, NULL, NULL, NULL, path, &ev), ENVID_CHECKPOINT);
    CHECK(ev == NULL);
    CHECK(contains(envid_last_error(), path) && contains(envid_last_error(), "corrupt"));
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s URL REGISTRY WORKDIR RUN\n", argv[0]);
        return 2;
    }
    const char *url = argv[1];
    const char *registry = argv[2];
    const char *work = argv[3];
    run = atoi(argv[4]);
    snprintf(app_a, sizeof app_a, "a%d", run);
    snprintf(app_b, sizeof app_b, "b%d", run);

    envid_lookup_options *opts = NULL;
    CHECK_RC(envid_lookup_options_new(&opts), ENVID_OK);
    CHECK_RC(envid_lookup_options_add_endpoint(opts, url), ENVID_OK);
    CHECK_RC(envid_lookup_options_set_connect_timeout_ms(opts, 500), ENVID_OK);

    test_null_arguments(opts, work);

    /* The registered IP joins, with its registration id; then nothing. */
    envid_events *on_a = consumer(opts, app_a, NULL);
    envid_events *on_b = consumer(opts, app_b, NULL);
    envid_event *e = next_event(on_a);
    CHECK(is(e, ENVID_EVENT_JOIN, ip(7), app_a));
    const char *s = NULL;
    CHECK_RC(envid_event_registration(e, &s), ENVID_OK);
    CHECK(s != NULL && strlen(s) == 32);
    CHECK_RC(envid_event_previous_registration(e, &s), ENVID_NOT_FOUND);
    CHECK(s == NULL);
    CHECK_RC(envid_event_env(e, &s), ENVID_OK);
    CHECK(streq(s, "prod"));
    CHECK_RC(envid_event_idc(e, &s), ENVID_OK);
    CHECK(streq(s, "cn0"));
    CHECK_RC(envid_events_ack(on_a, e), ENVID_OK);
    CHECK_RC(envid_events_ack(on_a, e), ENVID_OK); /* a repeat is ignored */
    envid_event_free(e);
    /* Timeout with no event: a result of its own, and NULL. */
    e = (envid_event *)&e; /* not NULL: the call must write NULL */
    CHECK_RC(envid_events_next(on_a, 300, &e), ENVID_TIMEOUT);
    CHECK(e == NULL);
    CHECK(contains(envid_last_error(), "no event within 300 ms"));
    CHECK_RC(envid_events_next(on_b, 300, &e), ENVID_TIMEOUT);

    /* Join: a record of the file (no registration). */
    const char *joined[] = {"1 a", "2 b"};
    char r1[16], r2[16];
    snprintf(r1, sizeof r1, "1 %s", app_a);
    snprintf(r2, sizeof r2, "2 %s", app_b);
    joined[0] = r1;
    joined[1] = r2;
    CHECK(write_registry(registry, joined, 2));
    e = next_event(on_a);
    CHECK(is(e, ENVID_EVENT_JOIN, ip(1), app_a));
    char suffix[40];
    snprintf(suffix, sizeof suffix, "/%s", ip(1));
    CHECK_RC(envid_event_id(e, &s), ENVID_OK);
    CHECK(ends_with(s, suffix));
    uint64_t version = 0;
    CHECK_RC(envid_event_version(e, &version), ENVID_OK);
    CHECK(version > 0);
    CHECK_RC(envid_event_registration(e, &s), ENVID_NOT_FOUND);
    CHECK(s == NULL);
    char *json = NULL;
    CHECK_RC(envid_event_to_json(e, &json), ENVID_OK);
    CHECK(contains(json, "\"event\":\"join\""));
    CHECK(contains(json, ip(1)));
    envid_string_free(json);
    CHECK_RC(envid_events_ack(on_a, e), ENVID_OK);
    envid_event_free(e);
    expect_and_ack(on_b, ENVID_EVENT_JOIN, ip(2), app_b);

    /* An IP moving from app a to app b: a leave for a (with the last record
       known), a join for b. */
    char moved[16];
    snprintf(moved, sizeof moved, "1 %s", app_b);
    joined[0] = moved;
    CHECK(write_registry(registry, joined, 2));
    expect_and_ack(on_a, ENVID_EVENT_LEAVE, ip(1), app_a);
    expect_and_ack(on_b, ENVID_EVENT_JOIN, ip(1), app_b);

    /* Leave: the record is removed. */
    CHECK(write_registry(registry, joined, 1));
    expect_and_ack(on_b, ENVID_EVENT_LEAVE, ip(2), app_b);
    CHECK_RC(envid_events_next(on_b, 300, &e), ENVID_TIMEOUT);

    envid_events_stats st;
    memset(&st, 0xff, sizeof st);
    CHECK_RC(envid_events_get_stats(on_a, &st), ENVID_OK);
    CHECK(st.joined == 1 && st.pending == 0 && st.delivered == 0);
    CHECK(st.joins == 2 && st.leaves == 1 && st.changes == 0);
    CHECK(st.oldest_pending_age_ms == UINT64_MAX);
    CHECK(st.is_protected == 0 && st.held_leaves == 0);
    CHECK(st.syncs > 0 && st.snapshots == 1 && st.age_ms != UINT64_MAX);
    char *problem = NULL;
    envid_result rc = envid_events_last_sync_error(on_a, &problem);
    CHECK(rc == ENVID_OK || (rc == ENVID_NOT_FOUND && problem == NULL));
    envid_string_free(problem);
    envid_events_free(on_a);
    envid_events_free(on_b);

    /* Restart: an event not acknowledged is delivered again, with its id. */
    char checkpoint[4096];
    snprintf(checkpoint, sizeof checkpoint, "%s/events-%d.json", work, run);
    envid_events *c = consumer(opts, app_a, checkpoint);
    expect_and_ack(c, ENVID_EVENT_JOIN, ip(7), app_a);
    char r3[16];
    snprintf(r3, sizeof r3, "3 %s", app_a);
    joined[1] = r3;
    CHECK(write_registry(registry, joined, 2));
    e = next_event(c);
    CHECK(is(e, ENVID_EVENT_JOIN, ip(3), app_a));
    char first_id[128] = "";
    if (envid_event_id(e, &s) == ENVID_OK) {
        snprintf(first_id, sizeof first_id, "%s", s);
    }
    envid_event_free(e);
    CHECK_RC(envid_events_get_stats(c, &st), ENVID_OK);
    CHECK(st.pending == 1 && st.delivered == 1 && st.oldest_pending_age_ms != UINT64_MAX);
    CHECK_RC(envid_events_flush(c), ENVID_OK);
    envid_events_free(c); /* "killed" before acknowledging it */

    c = consumer(opts, app_a, checkpoint);
    e = next_event(c);
    CHECK(is(e, ENVID_EVENT_JOIN, ip(3), app_a));
    CHECK(envid_event_id(e, &s) == ENVID_OK && streq(s, first_id));
    envid_event_free(e);
    /* Given back without a restart too. */
    CHECK_RC(envid_events_redeliver(c), ENVID_OK);
    e = next_event(c);
    CHECK(envid_event_id(e, &s) == ENVID_OK && streq(s, first_id));
    CHECK_RC(envid_events_ack(c, e), ENVID_OK);
    envid_event_free(e);
    envid_events_free(c);
    /* Acknowledged (written at free): nothing again. */
    c = consumer(opts, app_a, checkpoint);
    CHECK_RC(envid_events_next(c, 1500, &e), ENVID_TIMEOUT);
    CHECK_RC(envid_events_get_stats(c, &st), ENVID_OK);
    CHECK(st.joined == 2 && st.pending == 0);
    envid_events_free(c);
    /* Another filter's checkpoint is refused. */
    c = NULL;
    CHECK_RC(envid_events_new(opts, app_b, NULL, NULL, NULL, checkpoint, &c), ENVID_CHECKPOINT);
    CHECK(c == NULL && contains(envid_last_error(), "filter"));

    envid_lookup_options_free(opts);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
