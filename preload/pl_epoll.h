/* pl_epoll: the epoll overlay behind pl_hooks_epoll.c (DESIGN §4).
 * The design is described at the top of pl_epoll.c. */
#ifndef PL_EPOLL_H
#define PL_EPOLL_H

#include <signal.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <time.h>

#include "pl_state.h"

/* Which real call pl_epoll_wait makes (the application's choice). */
enum pl_ep_call { PL_EP_WAIT = 0, PL_EP_PWAIT = 1, PL_EP_PWAIT2 = 2 };

/* After a real epoll_create/epoll_create1: attaches a shadow to fd.
 * Returns fd unchanged (a shadow that cannot be made only loses the overlay). */
int pl_epoll_created(int fd);

/* epoll_ctl: the real call, then the shadow follows what the kernel accepted. */
int pl_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);

/* epoll_wait/epoll_pwait/epoll_pwait2; ts NULL waits without limit. */
int pl_epoll_wait(int epfd, struct epoll_event *ev, int maxevents, int how,
                  const struct timespec *ts, const sigset_t *mask);

/* A state's held bytes grew: wake any epoll_wait that shadows it. */
void pl_epoll_notify(pl_state *st);

/* Called by pl_ready_update when st->ready grows: an EPOLLET edge. */
static inline void pl_epoll_on_ready(pl_state *st)
{
    atomic_fetch_add_explicit(&st->ready_gen, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&st->ep_watched, memory_order_seq_cst))
        pl_epoll_notify(st);
}

/* Last reference to st gone: an epoll's shadow is freed, a watched fd
 * leaves every shadow (the kernel drops its registrations at that point). */
void pl_epoll_finalize(pl_state *st);

/* The data value of our eventfd in the real epoll set; never reported. */
#define PL_EP_MAGIC 0x505349455057414bULL /* "PSIEPWAK": not a user pointer */

#endif
