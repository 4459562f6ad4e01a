/*
 * An LD_PRELOAD shim for running a real NTP client (ntpd-rs) on a test host
 * without letting it steer the host's clock: every call that would set the
 * clock or its state only reads it (and reports success); reads go
 * through. The test also drops CAP_SYS_TIME, so a call this shim misses
 * fails in the kernel instead of steering.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <time.h>

static int read_only(int (*real)(struct timex *), struct timex *t)
{
    if (t->modes != 0) {
        /* Report the current state as if the change had been made. */
        t->modes = 0;
    }
    return real(t);
}

int ntp_adjtime(struct timex *t)
{
    int (*real)(struct timex *) = dlsym(RTLD_NEXT, "ntp_adjtime");
    return read_only(real, t);
}

int adjtimex(struct timex *t)
{
    int (*real)(struct timex *) = dlsym(RTLD_NEXT, "adjtimex");
    return read_only(real, t);
}

int clock_adjtime(clockid_t clock, struct timex *t)
{
    int (*real)(clockid_t, struct timex *) = dlsym(RTLD_NEXT, "clock_adjtime");
    if (t->modes != 0)
        t->modes = 0;
    return real(clock, t);
}

int clock_settime(clockid_t clock, const struct timespec *ts)
{
    (void)clock;
    (void)ts;
    return 0;
}

int settimeofday(const struct timeval *tv, const struct timezone *tz)
{
    (void)tv;
    (void)tz;
    return 0;
}
