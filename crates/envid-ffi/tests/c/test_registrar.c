/* Registers 127.0.0.1 with the environment of the descriptor in argv[1]
 * through the C API, at the signing service $ENVID_TEST_URL, as
 * flight_order (token $ENVID_TEST_TOKEN); checks the signed identity it
 * gets back with envid_verifier_verify, renews and deregisters.
 * Prints "N passed, M failed". Never prints the token. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envid.h"

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

static int dots(const char *s) {
    int n = 0;
    for (; *s != '\0'; s++) {
        n += *s == '.';
    }
    return n;
}

int main(int argc, char **argv) {
    const char *url = getenv("ENVID_TEST_URL");
    const char *token = getenv("ENVID_TEST_TOKEN");
    if (argc < 2 || url == NULL || token == NULL) {
        fprintf(stderr, "usage: ENVID_TEST_URL=... ENVID_TEST_TOKEN=... %s descriptor\n",
                argv[0]);
        return 2;
    }
    envid_load_options *lo = NULL;
    CHECK(envid_load_options_new(&lo) == ENVID_OK);
    CHECK(envid_load_options_set_descriptor(lo, argv[1]) == ENVID_OK);
    envid_environment *env = NULL;
    CHECK(envid_load(lo, &env) == ENVID_OK);
    envid_load_options_free(lo);

    envid_lookup_options *opts = NULL;
    CHECK(envid_lookup_options_new(&opts) == ENVID_OK);
    CHECK(envid_lookup_options_add_endpoint(opts, url) == ENVID_OK);
    CHECK(envid_lookup_options_set_token(opts, token) == ENVID_OK);

    envid_registrar *r = NULL;
    CHECK(envid_registrar_new(NULL, &r) == ENVID_NULL_PARAMETER);
    CHECK(envid_registrar_new(opts, NULL) == ENVID_NULL_PARAMETER);
    CHECK(envid_registrar_new(opts, &r) == ENVID_OK);
    envid_registrar_free(NULL);
    if (r == NULL || env == NULL) {
        printf("%d passed, %d failed\n", passed, failed + 1);
        return 1;
    }

    char *tok = NULL;
    uint64_t lifetime = 0;
    /* Nothing registered yet: no identity. */
    CHECK(envid_registrar_identity(r, &tok, &lifetime) == ENVID_NOT_FOUND);
    CHECK(tok == NULL);
    CHECK(envid_registrar_identity(r, NULL, NULL) == ENVID_NULL_PARAMETER);
    CHECK(envid_registrar_register(r, NULL, 60, "127.0.0.1") == ENVID_NULL_PARAMETER);
    CHECK(envid_registrar_register(r, env, 60, "not-an-ip") == ENVID_INVALID_INPUT);

    CHECK(envid_registrar_register(r, env, 60, "127.0.0.1") == ENVID_OK);
    CHECK(envid_registrar_identity(r, &tok, &lifetime) == ENVID_OK);
    CHECK(tok != NULL && dots(tok) == 2);
    CHECK(lifetime > 0);

    envid_verifier *v = NULL;
    CHECK(envid_verifier_new(opts, NULL, NULL, &v) == ENVID_OK);
    char *claims = NULL;
    CHECK(v != NULL && tok != NULL && envid_verifier_verify(v, tok, &claims) == ENVID_OK);
    CHECK(claims != NULL && strstr(claims, "\"app\":\"flight_order\"") != NULL);
    envid_string_free(claims);
    envid_string_free(tok);
    tok = NULL;

    bool known = false;
    CHECK(envid_registrar_renew(r, "127.0.0.1", NULL) == ENVID_NULL_PARAMETER);
    CHECK(envid_registrar_renew(r, "127.0.0.1", &known) == ENVID_OK);
    CHECK(known);
    CHECK(envid_registrar_identity(r, &tok, NULL) == ENVID_OK);
    CHECK(tok != NULL && dots(tok) == 2);
    envid_string_free(tok);

    CHECK(envid_registrar_deregister(r, "127.0.0.1") == ENVID_OK);
    known = true;
    CHECK(envid_registrar_renew(r, "127.0.0.1", &known) == ENVID_OK);
    CHECK(!known);

    /* A wrong token: the service refuses the registration. */
    envid_registrar *bad = NULL;
    CHECK(envid_lookup_options_set_token(opts, "wrong-token") == ENVID_OK);
    CHECK(envid_registrar_new(opts, &bad) == ENVID_OK);
    CHECK(envid_registrar_register(bad, env, 60, "127.0.0.1") == ENVID_LOOKUP_FAILED);
    CHECK(strstr(envid_last_error(), "wrong-token") == NULL);
    envid_registrar_free(bad);

    envid_verifier_free(v);
    envid_registrar_free(r);
    envid_lookup_options_free(opts);
    envid_environment_free(env);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
