/* Windows (PE32+) twin of stamp.c: prints the host's CLOCK_MONOTONIC in nanoseconds as its very
 * first action, read with a raw Linux system call (Wine's own clocks are CLOCK_MONOTONIC_RAW
 * based and not comparable). Only meaningful under Wine on x86-64 Linux. */
#include <stdio.h>

static long long monotonic_ns(void) {
    struct {
        long long sec, nsec;
    } ts;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(228L), "D"(1L), "S"(&ts)
                     : "rcx", "r11", "memory");
    return ret == 0 ? ts.sec * 1000000000LL + ts.nsec : -1;
}

int main(void) {
    long long now = monotonic_ns();
    printf("%lld\n", now);
    return 0;
}
