/* pl_real: binding of the real libc functions behind our hooks. */
#include "pl_real.h"

#include <dlfcn.h>
#include <pthread.h>

pl_real_table pl_real;

static pthread_once_t pl_bind_once = PTHREAD_ONCE_INIT;

static void pl_bind_all(void)
{
    /* dlsym returns void *; converting it to a function pointer is what
     * POSIX requires dlsym to support. A symbol this libc lacks (fcntl64 on
     * an old glibc) stays NULL and its hook falls back to its sibling. */
#define PL_BIND_ONE(ret, name, params) *(void **)&pl_real.name = dlsym(RTLD_NEXT, #name);
    PL_HOOKS(PL_BIND_ONE)
#undef PL_BIND_ONE
}

void pl_bind(void)
{
    pthread_once(&pl_bind_once, pl_bind_all);
}
