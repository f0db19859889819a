/*
 * wake-cost.c: what one sleep and wake-up of a thread costs on this
 * machine, in the thread's own CPU time, and how late the wake-up comes.
 *
 * The thread does nothing but sleep until an absolute instant, GAP_US
 * apart, N times, the two ways an open-loop generator can: a timerfd
 * waited on with epoll (what fleetbench's load threads do), and
 * clock_nanosleep. CPU per wake-up = (user + system time) / wake-ups.
 * Anything a generator does per send costs at least this much when each
 * send is its own wake-up (bench/README.md, "What a wake-up costs").
 *
 * Build and run: bench/wake-cost.sh (or: cc -O2 -o wake-cost wake-cost.c;
 * ./wake-cost GAP_US SECONDS).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>

static int64_t ns_of(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

static struct timespec ts_of(int64_t ns) {
    struct timespec t = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
    return t;
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return ns_of(t);
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int by_value(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sleeps n times, gap_ns apart, by `mode`; prints one result line. */
static void run(const char *mode, int64_t gap_ns, long n) {
    int timer = -1, ep = -1;
    if (strcmp(mode, "timerfd+epoll") == 0) {
        timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
        if (timer < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, timer, &ev) != 0) {
            perror("timerfd/epoll");
            exit(1);
        }
    }
    int64_t *lags = calloc((size_t)n, sizeof *lags);
    if (!lags) {
        perror("calloc");
        exit(1);
    }
    double cpu0 = cpu_s();
    int64_t at = now_ns() + gap_ns;
    for (long i = 0; i < n; i++, at += gap_ns) {
        struct timespec when = ts_of(at);
        if (timer >= 0) {
            struct itimerspec its = { .it_value = when };
            struct epoll_event out;
            timerfd_settime(timer, TFD_TIMER_ABSTIME, &its, NULL);
            while (epoll_wait(ep, &out, 1, -1) < 0) {
            }
        } else {
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &when, NULL) != 0) {
            }
        }
        lags[i] = now_ns() - at;
    }
    double cpu = cpu_s() - cpu0;
    double secs = (double)gap_ns * n / 1e9;
    qsort(lags, (size_t)n, sizeof *lags, by_value);
    printf("%-16s %8.0f us %9.0f/s %10.2f us %8.1f%% %10.1f us %8.1f us\n", mode, gap_ns / 1e3,
           1e9 / gap_ns, cpu * 1e6 / n, 100 * cpu / secs, lags[n / 2] / 1e3, lags[n * 99 / 100] / 1e3);
    free(lags);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s GAP_US SECONDS\n", argv[0]);
        return 2;
    }
    long gap_us = atol(argv[1]), secs = atol(argv[2]);
    if (gap_us < 1 || secs < 1) {
        fprintf(stderr, "GAP_US and SECONDS must be whole numbers above zero\n");
        return 2;
    }
    /* The default 50 us timer slack would defer nanosleep's wake-ups. */
    prctl(PR_SET_TIMERSLACK, 1UL);
    long n = secs * 1000000 / gap_us;
    run("timerfd+epoll", gap_us * 1000, n);
    run("clock_nanosleep", gap_us * 1000, n);
    return 0;
}
