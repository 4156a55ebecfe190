/* psi store ls|du: what the stores hold (docs/store-cli.md). The walk is
 * the connector's ls op; this file only collects, sorts and prints. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pol_report.h"
#include "psi_policy.h"
#include "psi_store.h"
#include "psi_tool.h"

enum { SORT_NONE, SORT_SIZE, SORT_AGE };

/* What became of one store's walk. */
enum walk_state { WALK_OK, WALK_NOT_RUNNING, WALK_NO_LS, WALK_UNAVAILABLE, WALK_FAILED };

typedef struct walk {
    int state;
    char msg[256];
    uint64_t objects, bytes, referenced;
    int64_t oldest; /* -1: no object with a known age */
} walk;

typedef struct row {
    size_t store, seq; /* seq: the connector's order, for a stable sort */
    psi_obj_info o;
} row;

typedef struct rows {
    row *v;
    size_t n, cap;
    size_t store;
    walk *w;
    int oom;
} rows;

static const struct option store_options[] = {
    {"store", required_argument, NULL, 's'},
    {"policy", required_argument, NULL, 'p'},
    {"json", no_argument, NULL, 'j'},
    {"sort", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* ---- collecting ----------------------------------------------------------- */

static int take(const psi_obj_info *o, void *arg)
{
    rows *r = arg;

    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        row *v = realloc(r->v, cap * sizeof *v);
        if (!v) {
            r->oom = 1;
            return 1;
        }
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n] = (row){.store = r->store, .seq = r->n, .o = *o};
    r->v[r->n].o.key[sizeof o->key - 1] = '\0';
    r->v[r->n].o.where[sizeof o->where - 1] = '\0';
    r->n++;
    r->w->objects++;
    r->w->bytes += o->size;
    if (o->refs > 0)
        r->w->referenced++;
    if (o->age >= 0 && o->age > r->w->oldest)
        r->w->oldest = o->age;
    return 0;
}

static void walk_store(const cmd_store_entry *c, size_t i, walk *w, rows *r)
{
    psi_err e = {0};

    memset(w, 0, sizeof *w);
    w->oldest = -1;
    if (c->state == CMD_STORE_NOT_RUNNING) {
        w->state = WALK_NOT_RUNNING;
        snprintf(w->msg, sizeof w->msg, "%s", c->msg);
        return;
    }
    if (c->state == CMD_STORE_UNAVAILABLE) {
        w->state = WALK_UNAVAILABLE;
        snprintf(w->msg, sizeof w->msg, "%s", c->msg);
        return;
    }
    if (c->state != CMD_STORE_OK) {
        w->state = WALK_FAILED;
        snprintf(w->msg, sizeof w->msg, "%s", c->msg);
        return;
    }
    if (!c->s->ops->ls) {
        w->state = WALK_NO_LS;
        return;
    }
    r->store = i;
    r->w = w;
    size_t first = r->n;
    if (c->s->ops->ls(c->s, take, r, &e) < 0 || r->oom) {
        if (r->oom)
            psi_fail(&e, ENOMEM, "out of memory");
        /* A lazily connecting default learns only now that nobody is there. */
        w->state = c->is_default && cmd_store_absent(e.code) ? WALK_NOT_RUNNING : WALK_FAILED;
        snprintf(w->msg, sizeof w->msg, "%s", e.msg);
        r->n = first; /* a partial listing is not shown as if complete */
        w->objects = w->bytes = w->referenced = 0;
        w->oldest = -1;
    }
}

static int sort_key;

static int row_cmp(const void *a, const void *b)
{
    const row *x = a, *y = b;
    if (sort_key == SORT_SIZE && x->o.size != y->o.size)
        return x->o.size > y->o.size ? -1 : 1; /* largest first */
    if (sort_key == SORT_AGE && x->o.age != y->o.age)
        return x->o.age > y->o.age ? -1 : 1;   /* oldest first */
    if (x->store != y->store)
        return x->store < y->store ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ---- printing ------------------------------------------------------------- */

/* "45s", "12m", "5h", "3d"; "-" for unknown (-1). */
static void human_secs(int64_t v, char *buf, size_t cap)
{
    if (v < 0)
        snprintf(buf, cap, "-");
    else if (v < 120)
        snprintf(buf, cap, "%" PRId64 "s", v);
    else if (v < 120 * 60)
        snprintf(buf, cap, "%" PRId64 "m", v / 60);
    else if (v < 48 * 3600)
        snprintf(buf, cap, "%" PRId64 "h", v / 3600);
    else
        snprintf(buf, cap, "%" PRId64 "d", v / 86400);
}

static void json_str(const char *s)
{
    char buf[8192];
    if (pol_json_string(s, buf, sizeof buf) < 0)
        snprintf(buf, sizeof buf, "\"\"");
    fputs(buf, stdout);
}

/* -1 (unknown) is null. */
static void json_num(int64_t v)
{
    if (v < 0)
        fputs("null", stdout);
    else
        printf("%" PRId64, v);
}

static const char *state_name(int state)
{
    static const char *const names[] = {"ok", "not running", "no ls", "unavailable", "failed"};
    return names[state];
}

static const char *lifetime_name(int l)
{
    switch (l) {
    case PSI_LIFE_REFCOUNT: return "refcount";
    case PSI_LIFE_TTL: return "ttl";
    case PSI_LIFE_EVICT_ON_READ: return "evict-on-read";
    default: return NULL;
    }
}

static void json_store_head(const cmd_store_entry *c, const walk *w)
{
    fputs("{\"connector\":", stdout);
    json_str(c->connector);
    fputs(",\"url\":", stdout);
    json_str(cmd_store_label(c));
    printf(",\"default\":%s,\"status\":", c->is_default ? "true" : "false");
    json_str(state_name(w->state));
    if (w->state == WALK_NOT_RUNNING || w->state == WALK_UNAVAILABLE ||
        w->state == WALK_FAILED) {
        fputs(",\"message\":", stdout);
        json_str(w->msg);
    }
}

static void json_obj(const psi_obj_info *o)
{
    const char *life = lifetime_name(o->lifetime);

    fputs("{\"key\":", stdout);
    json_str(o->key);
    printf(",\"size\":%" PRIu64 ",\"age\":", o->size);
    json_num(o->age);
    fputs(",\"refs\":", stdout);
    json_num(o->refs);
    fputs(",\"expires\":", stdout);
    json_num(o->expires);
    fputs(",\"lifetime\":", stdout);
    if (life)
        json_str(life);
    else
        fputs("null", stdout);
    fputs(",\"where\":", stdout);
    json_str(o->where);
    putchar('}');
}

/* A store that has nothing to show, in one line. Failures go to stderr. */
static void note(const char *cmd, const cmd_store_entry *c, const walk *w)
{
    switch (w->state) {
    case WALK_NOT_RUNNING:
        printf("%s %s: not running\n", c->connector, cmd_store_label(c));
        break;
    case WALK_NO_LS:
        printf("%s %s: this connector cannot list its objects\n", c->connector,
               cmd_store_label(c));
        break;
    case WALK_UNAVAILABLE:
        printf("%s %s: connector not available in this build\n", c->connector,
               cmd_store_label(c));
        break;
    case WALK_FAILED:
        fprintf(stderr, "psi store %s: %s: %s\n", cmd, cmd_store_label(c), w->msg);
        break;
    default:
        break;
    }
}

static void ls_print(const cmd_store_set *set, const walk *w, const rows *r, bool json)
{
    if (json) {
        fputs("{\"stores\":[", stdout);
        for (size_t i = 0; i < set->n; i++) {
            bool first = true;
            fputs(i ? "," : "", stdout);
            json_store_head(&set->v[i], &w[i]);
            if (w[i].state == WALK_OK) {
                fputs(",\"objects\":[", stdout);
                for (size_t k = 0; k < r->n; k++) {
                    if (r->v[k].store != i)
                        continue;
                    fputs(first ? "" : ",", stdout);
                    json_obj(&r->v[k].o);
                    first = false;
                }
                putchar(']');
            }
            putchar('}');
        }
        fputs("]}\n", stdout);
        return;
    }

    int kw = 3, cw = 9;
    uint64_t total = 0;
    for (size_t k = 0; k < r->n; k++) {
        int n = (int)strlen(r->v[k].o.key);
        kw = n > kw ? n : kw;
        n = (int)strlen(set->v[r->v[k].store].connector);
        cw = n > cw ? n : cw;
        total += r->v[k].o.size;
    }
    printf("%-*s  %-*s  %10s  %5s  %4s  %7s  %s\n", cw, "CONNECTOR", kw, "KEY", "SIZE", "AGE",
           "REFS", "EXPIRES", "WHERE");
    for (size_t k = 0; k < r->n; k++) {
        const psi_obj_info *o = &r->v[k].o;
        char size[32], age[32], refs[32], exp[32];
        cmd_human_bytes(o->size, size, sizeof size);
        human_secs(o->age, age, sizeof age);
        human_secs(o->expires, exp, sizeof exp);
        if (o->refs < 0)
            snprintf(refs, sizeof refs, "-");
        else
            snprintf(refs, sizeof refs, "%" PRId64, o->refs);
        printf("%-*s  %-*s  %10s  %5s  %4s  %7s  %s\n", cw,
               set->v[r->v[k].store].connector, kw, o->key, size, age, refs, exp, o->where);
    }
    for (size_t i = 0; i < set->n; i++)
        note("ls", &set->v[i], &w[i]);
    char tb[32];
    cmd_human_bytes(total, tb, sizeof tb);
    printf("%zu object%s, %s\n", r->n, r->n == 1 ? "" : "s", tb);
}

static void du_print(const cmd_store_set *set, const walk *w, bool json)
{
    walk t = {.oldest = -1};

    for (size_t i = 0; i < set->n; i++) {
        t.objects += w[i].objects;
        t.bytes += w[i].bytes;
        t.referenced += w[i].referenced;
        if (w[i].oldest > t.oldest)
            t.oldest = w[i].oldest;
    }
    if (json) {
        fputs("{\"stores\":[", stdout);
        for (size_t i = 0; i < set->n; i++) {
            fputs(i ? "," : "", stdout);
            json_store_head(&set->v[i], &w[i]);
            if (w[i].state == WALK_OK) {
                printf(",\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"referenced\":%" PRIu64
                       ",\"oldest_age\":", w[i].objects, w[i].bytes, w[i].referenced);
                json_num(w[i].oldest);
            }
            putchar('}');
        }
        printf("],\"total\":{\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"referenced\":%" PRIu64 ",\"oldest_age\":", t.objects, t.bytes, t.referenced);
        json_num(t.oldest);
        fputs("}}\n", stdout);
        return;
    }

    int uw = 5, cw = 9;
    for (size_t i = 0; i < set->n; i++) {
        int n = (int)strlen(cmd_store_label(&set->v[i]));
        uw = n > uw ? n : uw;
        n = (int)strlen(set->v[i].connector);
        cw = n > cw ? n : cw;
    }
    printf("%-*s  %-*s  %8s  %10s  %10s  %6s\n", cw, "CONNECTOR", uw, "STORE", "OBJECTS",
           "BYTES", "REFERENCED", "OLDEST");
    for (size_t i = 0; i <= set->n; i++) {
        const walk *x = i < set->n ? &w[i] : &t;
        const char *conn = i < set->n ? set->v[i].connector : "TOTAL";
        const char *url = i < set->n ? cmd_store_label(&set->v[i]) : "";
        char bytes[32], age[32];
        if (x->state != WALK_OK) {
            printf("%-*s  %-*s  %s\n", cw, conn, uw, url,
                   x->state == WALK_NOT_RUNNING   ? "not running"
                   : x->state == WALK_NO_LS       ? "cannot list its objects"
                   : x->state == WALK_UNAVAILABLE ? "not available in this build"
                                                  : "failed");
            continue;
        }
        cmd_human_bytes(x->bytes, bytes, sizeof bytes);
        human_secs(x->oldest, age, sizeof age);
        printf("%-*s  %-*s  %8" PRIu64 "  %10s  %10" PRIu64 "  %6s\n", cw, conn, uw, url,
               x->objects, bytes, x->referenced, age);
    }
    for (size_t i = 0; i < set->n; i++)
        if (w[i].state == WALK_FAILED)
            note("du", &set->v[i], &w[i]);
}

/* ---- the command ---------------------------------------------------------- */

static int store_run(bool du, int argc, char **argv)
{
    char **urls = calloc((size_t)argc, sizeof *urls);
    const char *policy = NULL;
    bool json = false;
    size_t nurls = 0;
    int opt, rc = 0;

    if (!urls)
        return CMD_EXIT_FAIL;
    sort_key = SORT_NONE;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", store_options, NULL)) != -1) {
        switch (opt) {
        case 'h':
            free(urls);
            cmd_help_print(stdout, "store");
            return 0;
        case 's': urls[nurls++] = optarg; break;
        case 'p': policy = optarg; break;
        case 'j': json = true; break;
        case 'o':
            if (du)
                rc = cmd_usage_error("store", "du: --sort is an ls option");
            else if (strcmp(optarg, "size") == 0)
                sort_key = SORT_SIZE;
            else if (strcmp(optarg, "age") == 0)
                sort_key = SORT_AGE;
            else
                rc = cmd_usage_error("store", "--sort: '%s' is not size or age", optarg);
            break;
        default:
            rc = cmd_bad_option("store", opt, argv);
        }
        if (rc) {
            free(urls);
            return rc;
        }
    }
    if (optind < argc) {
        free(urls);
        return cmd_usage_error("store", "%s: unexpected argument '%s'", argv[0], argv[optind]);
    }

    cmd_store_set set;
    rc = cmd_stores_open("store", urls, nurls, policy, &set);
    free(urls);
    if (rc)
        return rc;
    walk *w = calloc(set.n ? set.n : 1, sizeof *w);
    rows r = {0};
    if (!w) {
        cmd_stores_close(&set);
        return CMD_EXIT_FAIL;
    }
    for (size_t i = 0; i < set.n; i++) {
        walk_store(&set.v[i], i, &w[i], &r);
        if (w[i].state == WALK_FAILED)
            rc = CMD_EXIT_FAIL;
    }
    if (!du && sort_key != SORT_NONE && r.n > 1)
        qsort(r.v, r.n, sizeof *r.v, row_cmp);
    if (du)
        du_print(&set, w, json);
    else
        ls_print(&set, w, &r, json);
    if (json) /* the JSON says it too; the exit status must not be silent */
        for (size_t i = 0; i < set.n; i++)
            if (w[i].state == WALK_FAILED)
                fprintf(stderr, "psi store %s: %s: %s\n", du ? "du" : "ls",
                        cmd_store_label(&set.v[i]), w[i].msg);
    free(r.v);
    free(w);
    cmd_stores_close(&set);
    return rc;
}

int cmd_store(int argc, char **argv)
{
    if (argc < 2)
        return cmd_usage_error("store", "no store command given (ls or du)");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cmd_help_print(stdout, "store");
        return 0;
    }
    if (strcmp(argv[1], "ls") == 0)
        return store_run(false, argc - 1, argv + 1);
    if (strcmp(argv[1], "du") == 0)
        return store_run(true, argc - 1, argv + 1);
    if (argv[1][0] == '-')
        return cmd_usage_error("store", "unknown option '%s' (expected ls or du first)",
                               argv[1]);
    return cmd_usage_error("store", "unknown store command '%s' (ls or du)", argv[1]);
}
