/* st_shm_names: the shm connector's segment names, token keys and URLs
 * (st_shm.h). */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "psi_config.h"
#include "psi_text.h"
#include "st_shm.h"

int st_shm_name_valid(const char *name, size_t len)
{
    /* s<hex pid>-<hex nonce>-<hex seq>: three hex groups, nothing else. */
    if (len < 6 || len > ST_SHM_NAME_MAX || name[0] != 's')
        return 0;
    int groups = 1, digits = 0;
    for (size_t i = 1; i < len; i++) {
        char c = name[i];
        if (c == '-') {
            if (!digits || ++groups > 3)
                return 0;
            digits = 0;
        } else if (psi_hex_digit_lower(c) >= 0) {
            if (++digits > 16)
                return 0;
        } else {
            return 0;
        }
    }
    return groups == 3 && digits > 0;
}

int st_shm_key_parse(const char *key, size_t len, char name[ST_SHM_NAME_MAX + 1],
                     uint64_t *gen)
{
    const char *dot = memchr(key, '.', len);
    if (!dot || !st_shm_name_valid(key, (size_t)(dot - key)))
        return -1;
    size_t glen = len - (size_t)(dot - key) - 1;
    if (glen == 0 || glen > 16)
        return -1;
    uint64_t g = 0;
    for (size_t i = 0; i < glen; i++) {
        char c = dot[1 + i];
        int v = psi_hex_digit_lower(c);
        if (v < 0)
            return -1;
        g = g << 4 | (uint64_t)v;
    }
    memcpy(name, key, (size_t)(dot - key));
    name[dot - key] = '\0';
    *gen = g;
    return 0;
}

int st_shm_parse_url(const char *url, char dir[PATH_MAX], uint64_t *max_bytes,
                     uint64_t *keep_bytes, psi_err *err)
{
    const char *p = url + strlen("shm://");
    *max_bytes = 0;
    *keep_bytes = UINT64_MAX;
    if (strncmp(url, "shm://", 6) != 0)
        return psi_fail(err, EINVAL, "PSI_STORE: '%s' is not a shm:// URL", url);
    const char *q = strchr(p, '?');
    size_t plen = q ? (size_t)(q - p) : strlen(p);
    if (plen > 0) {
        if (p[0] != '/')
            return psi_fail(err, EINVAL, "PSI_STORE: malformed URL '%s' (expected shm:// or "
                            "shm:///absolute/dir on a tmpfs)", url);
        if (plen >= PATH_MAX - ST_SHM_NAME_MAX - 2)
            return psi_fail(err, ENAMETOOLONG, "PSI_STORE: directory in '%s' is too long", url);
        memcpy(dir, p, plen);
        while (plen > 1 && dir[plen - 1] == '/')
            plen--;
        dir[plen] = '\0';
    } else {
        dir[0] = '\0';
    }
    while (q && *q) {
        q++;
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        char opt[64];
        if (n == 0 || n >= sizeof opt)
            return psi_fail(err, EINVAL, "PSI_STORE: bad option in '%s'", url);
        memcpy(opt, q, n);
        opt[n] = '\0';
        bool is_max = strncmp(opt, "max=", 4) == 0, is_keep = strncmp(opt, "keep=", 5) == 0;
        if (!is_max && !is_keep)
            return psi_fail(err, EINVAL, "PSI_STORE: unknown option '%s' in '%s' (known: max, "
                            "keep)", opt, url);
        const char *val = opt + (is_max ? 4 : 5);
        uint64_t v = 0;
        psi_err e;
        if (is_keep && strcmp(val, "0") == 0)
            v = 0; /* keep nothing: psi_parse_size refuses 0 */
        else if (psi_parse_size(val, &v, &e) < 0)
            return psi_fail(err, EINVAL, "PSI_STORE: %s in '%s': %s", is_max ? "max" : "keep",
                            url, e.msg);
        *(is_max ? max_bytes : keep_bytes) = v;
        q = amp;
    }
    return 0;
}

