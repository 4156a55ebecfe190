/* pl_hooks_epoll: the epoll entry points; the overlay is pl_epoll.c. */
#include "pl_epoll.h"
#include "pl_real.h"

PL_EXPORT int epoll_create(int size)
{
    return pl_epoll_created(REAL(epoll_create)(size));
}

PL_EXPORT int epoll_create1(int flags)
{
    return pl_epoll_created(REAL(epoll_create1)(flags));
}

PL_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    return pl_epoll_ctl(epfd, op, fd, ev);
}

/* The millisecond forms: a negative timeout waits without limit. */
static const struct timespec *pl_ep_ms(int timeout, struct timespec *ts)
{
    if (timeout < 0)
        return NULL;
    ts->tv_sec = timeout / 1000;
    ts->tv_nsec = (long)(timeout % 1000) * 1000000L;
    return ts;
}

PL_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int maxevents, int timeout)
{
    struct timespec ts;
    return pl_epoll_wait(epfd, ev, maxevents, PL_EP_WAIT, pl_ep_ms(timeout, &ts), NULL);
}

PL_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int maxevents, int timeout,
                          const sigset_t *mask)
{
    struct timespec ts;
    return pl_epoll_wait(epfd, ev, maxevents, PL_EP_PWAIT, pl_ep_ms(timeout, &ts), mask);
}

PL_EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int maxevents,
                           const struct timespec *ts, const sigset_t *mask)
{
    return pl_epoll_wait(epfd, ev, maxevents, PL_EP_PWAIT2, ts, mask);
}
