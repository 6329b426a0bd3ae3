/* Verifies the identity cases of identity.tsv (token, expected result,
 * claims JSON) through the C API, against the signing service at
 * $ENVID_TEST_KEYS_URL, and expects the Rust verifier's answers exactly.
 * Prints "N passed, M failed". */
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

int main(int argc, char **argv) {
    const char *url = getenv("ENVID_TEST_KEYS_URL");
    if (argc < 2 || url == NULL) {
        fprintf(stderr, "usage: ENVID_TEST_KEYS_URL=... %s identity.tsv [keys-cache]\n", argv[0]);
        return 2;
    }
    envid_lookup_options *opts = NULL;
    CHECK(envid_lookup_options_new(&opts) == ENVID_OK);
    CHECK(envid_lookup_options_add_endpoint(opts, url) == ENVID_OK);
    if (argc > 2) {
        CHECK(envid_lookup_options_set_cache_file(opts, argv[2]) == ENVID_OK);
    }
    envid_verifier *v = NULL;
    CHECK(envid_verifier_new(NULL, NULL, NULL, &v) == ENVID_NULL_PARAMETER);
    CHECK(envid_verifier_new(opts, "envid", "envsvc-test", &v) == ENVID_OK);
    envid_lookup_options_free(opts);
    if (v == NULL) {
        printf("%d passed, %d failed\n", passed, failed + 1);
        return 1;
    }
    CHECK(envid_verifier_verify(v, NULL, NULL) == ENVID_NULL_PARAMETER);

    FILE *f = fopen(argv[1], "r");
    CHECK(f != NULL);
    char line[16384];
    int cases = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *token = line;
        char *tab = strchr(token, '\t');
        if (tab == NULL) {
            continue;
        }
        *tab = '\0';
        char *expected = tab + 1;
        char *json = strchr(expected, '\t');
        if (json != NULL) {
            *json++ = '\0';
        }
        char *got = NULL;
        envid_result rc = envid_verifier_verify(v, token, &got);
        const char *name = envid_result_name((int)rc) + strlen("ENVID_");
        if (strcmp(name, expected) != 0) {
            failed++;
            printf("FAIL case %d: got %s, expected %s (%s)\n", cases, name, expected,
                   envid_last_error());
        } else {
            passed++;
        }
        if (rc == ENVID_OK) {
            CHECK(got != NULL && json != NULL && strcmp(got, json) == 0);
            /* Again: the cached answer is the same. */
            char *again = NULL;
            CHECK(envid_verifier_verify(v, token, &again) == ENVID_OK);
            CHECK(again != NULL && got != NULL && strcmp(again, got) == 0);
            envid_string_free(again);
            /* Without an output pointer, only the verdict. */
            CHECK(envid_verifier_verify(v, token, NULL) == ENVID_OK);
        } else {
            CHECK(got == NULL);
            /* The message never quotes the token. */
            if (strlen(token) > 20) {
                CHECK(strstr(envid_last_error(), token + strlen(token) - 20) == NULL);
            }
        }
        envid_string_free(got);
        cases++;
    }
    if (f != NULL) {
        fclose(f);
    }
    CHECK(cases >= 10);
    envid_verifier_free(v);
    envid_verifier_free(NULL);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
