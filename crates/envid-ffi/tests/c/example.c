/* The README's C example; tests/c_api.rs compiles and runs it.
 *
 *   cargo build --release -p envid-ffi
 *   cc -Wall -Wextra -I crates/envid-ffi/include example.c \
 *      -L target/release -Wl,-rpath,target/release -lenvid_ffi -o example
 *   ENVID_DESCRIPTOR=testdata/example.toml ENVID_LOOKUP_URL=http://127.0.0.1:7070 ./example
 *
 * (ENVID_LOOKUP_URL: a running `envid serve --registry testdata/registry.toml`;
 * the lookup part is skipped without it.)
 */
#include <stdio.h>
#include <stdlib.h>

#include "envid.h"

int main(void) {
    /* The process-wide environment: borrowed, valid for the whole process. */
    const envid_environment *env = NULL;
    if (envid_current(&env) != ENVID_OK) {
        fprintf(stderr, "envid: %s\n", envid_last_error());
        return 1;
    }

    /* Borrowed strings: valid as long as env; never free them. */
    const char *name = NULL, *idc = NULL, *app = NULL;
    envid_environment_env(env, &name);
    envid_environment_idc(env, &idc);
    if (envid_environment_app(env, &app) == ENVID_NOT_FOUND) {
        app = "(no app)";
    }
    printf("%s in %s at %s\n", app, name, idc);

    /* Owned strings: free with envid_string_free. */
    char *json = NULL;
    if (envid_environment_to_json(env, false, false, &json) == ENVID_OK) {
        printf("%s\n", json);
        envid_string_free(json);
    }

    /* Load one from an explicit descriptor: owned, free it. */
    envid_load_options *opts = NULL;
    envid_environment *loaded = NULL;
    envid_load_options_new(&opts);
    envid_load_options_set_descriptor(opts, "/no/such/descriptor.toml");
    envid_result rc = envid_load(opts, &loaded);
    if (rc != ENVID_OK) {
        printf("load failed: %s: %s\n", envid_result_name(rc), envid_last_error());
    }
    envid_environment_free(loaded); /* NULL is fine */
    envid_load_options_free(opts);

    /* What does a KVM hostname say? */
    envid_rules *rules = NULL;
    char *match = NULL;
    envid_rules_builtin(&rules);
    if (envid_rules_explain(rules, "l-flightqma9.f.beta.cn0", &match) == ENVID_OK) {
        printf("%s\n", match);
        envid_string_free(match);
    }
    envid_rules_free(rules);

    /* Servers: which environment is a client IP in? One client per process. */
    const char *url = getenv("ENVID_LOOKUP_URL");
    if (url != NULL) {
        envid_lookup_options *lo = NULL;
        envid_lookup_client *client = NULL;
        envid_lookup_options_new(&lo);
        envid_lookup_options_add_endpoint(lo, url);
        envid_lookup_options_set_per_phase_timeout_ms(lo, 1000);
        rc = envid_lookup_client_new(lo, &client);
        envid_lookup_options_free(lo);
        if (rc == ENVID_OK) {
            char *record = NULL;
            rc = envid_lookup_client_lookup(client, "10.0.0.5", &record);
            if (rc == ENVID_OK) {
                printf("10.0.0.5: %s\n", record);
                envid_string_free(record);
            } else {
                printf("10.0.0.5: %s: %s\n", envid_result_name(rc), envid_last_error());
            }
            envid_lookup_stats stats;
            envid_lookup_client_stats(client, &stats);
            printf("requests: %llu\n", (unsigned long long)stats.requests);
            envid_lookup_client_free(client);
        }
    }
    return 0;
}
