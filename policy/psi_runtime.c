/* psi_runtime_dir: the per-user runtime directory (psi_registry.h).
 *
 * Other users must not be able to plant entries in it (a planted registry
 * entry would make us frame toward a server that does not decode frames),
 * so a directory owned by someone else, or writable by group or others, is
 * refused rather than used. */
#include "psi_registry.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "psi_log.h"

static _Atomic(char *) g_runtime_dir;

/* Creates dir 0700 if missing, then checks who owns it and who can write.
 * `follow`: stat (a path the user named) or lstat (one we picked in a
 * shared place like /tmp, where a symlink could point anywhere). */
static int dir_ready(const char *dir, bool follow, char *why, size_t cap)
{
    struct stat st;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(why, cap, "cannot create it: %s", strerror(errno));
        return -1;
    }
    if ((follow ? stat(dir, &st) : lstat(dir, &st)) < 0) {
        snprintf(why, cap, "cannot stat it: %s", strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, cap, "it is not a directory");
        return -1;
    }
    if (st.st_uid != geteuid()) {
        snprintf(why, cap, "it is owned by uid %ld, not %ld", (long)st.st_uid, (long)geteuid());
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(why, cap, "it is writable by group or others (mode %04o)",
                 (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/* Picks the directory per the header's order; path is PATH_MAX bytes. */
static int runtime_pick(char *path, char *why, size_t cap)
{
    const char *env = getenv("PSI_RUNTIME_DIR");
    const char *xdg = getenv("XDG_RUNTIME_DIR");

    if (env && *env) {
        if (strlen(env) >= PATH_MAX)
            return snprintf(why, cap, "PSI_RUNTIME_DIR is too long"), -1;
        strcpy(path, env);
        return dir_ready(path, true, why, cap);
    }
    if (xdg && *xdg == '/' && access(xdg, W_OK | X_OK) == 0 &&
        snprintf(path, PATH_MAX, "%s/psi", xdg) < PATH_MAX &&
        dir_ready(path, false, why, cap) == 0)
        return 0;
    snprintf(path, PATH_MAX, "/tmp/psi-%ld", (long)geteuid());
    return dir_ready(path, false, why, cap);
}

const char *psi_runtime_dir(void)
{
    static atomic_int warned;
    char *dir = atomic_load_explicit(&g_runtime_dir, memory_order_acquire), *expected = NULL;
    char path[PATH_MAX] = "", why[256] = "";

    if (dir)
        return dir;
    /* Not cached on failure: the directory may be fixed while we run. */
    if (runtime_pick(path, why, sizeof why) < 0) {
        psi_log_once(warned, PSI_LOG_WARN, "runtime directory '%s' refused: %s", path, why);
        return NULL;
    }
    dir = strdup(path);
    if (!dir)
        return NULL;
    if (!atomic_compare_exchange_strong(&g_runtime_dir, &expected, dir)) {
        free(dir);
        dir = expected;
    }
    return dir;
}
