/*
 * counter: a tiny clock-driven wasm32-wasi guest for colo's save/restore tests ("a counter keeps
 * counting, its clocks do not go back").
 *
 * Every --interval-ms (monotonic clock) it increments a counter and prints
 *   "count C mono_ms M"
 * to stdout, M being the guest's monotonic clock in ms. If the listening socket is on fd 3
 * (LISTEN_FDS=1), each client that connects gets the same line for the current value and is
 * closed. Missed ticks (e.g. while the guest was stopped) are skipped, not replayed: the counter
 * goes up by one per tick it is awake for. Ends after --count ticks (0: never) with status 0.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "guest_util.h"

#define LISTEN_FD 3

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int main(int argc, char **argv) {
  uint64_t interval = 100, count_limit = 0, counter = 0;
  for (int i = 1; i < argc; i += 2) {
    uint64_t *target = NULL;
    if (strcmp(argv[i], "--interval-ms") == 0) target = &interval;
    else if (strcmp(argv[i], "--count") == 0) target = &count_limit;
    else if (strcmp(argv[i], "--start") == 0) target = &counter;
    else {
      fprintf(stderr, "usage: counter [--interval-ms N] [--count N] [--start N]\n");
      return strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
    if (i + 1 >= argc || !parse_u64(argv[i + 1], target)) {
      fprintf(stderr, "counter: %s needs a non-negative integer\n", argv[i]);
      return 2;
    }
  }
  if (interval == 0) {
    fprintf(stderr, "counter: --interval-ms must be > 0\n");
    return 2;
  }
  const char *listen_fds = getenv("LISTEN_FDS");
  bool serve = listen_fds && strcmp(listen_fds, "1") == 0;
  uint64_t ticks = 0, last = mono_ms(), next = last + interval;
  char line[96];
  for (;;) {
    uint64_t now = mono_ms();
    if (now < last) {
      /* The contract colo keeps: a guest's monotonic clock never goes back. */
      fprintf(stderr, "counter: monotonic clock went back from %llu to %llu ms\n",
              (unsigned long long)last, (unsigned long long)now);
      return 3;
    }
    last = now;
    if (now >= next) {
      counter++;
      ticks++;
      int n = snprintf(line, sizeof line, "count %llu mono_ms %llu\n", (unsigned long long)counter,
                       (unsigned long long)now);
      if (write(1, line, (size_t)n) != n) return 1;
      if (count_limit && ticks >= count_limit) return 0;
      next += interval;
      if (next <= now) next = now + interval; /* skip missed ticks */
      continue;
    }
    struct pollfd pfd = {.fd = LISTEN_FD, .events = POLLIN, .revents = 0};
    int ready = poll(&pfd, serve ? 1 : 0, (int)(next - now));
    if (ready < 0 && errno != EINTR) {
      perror("counter: poll");
      return 1;
    }
    if (ready > 0 && (pfd.revents & POLLIN)) {
      struct sockaddr_storage addr;
      socklen_t alen = sizeof addr;
      int fd = accept(LISTEN_FD, (struct sockaddr *)&addr, &alen);
      if (fd >= 0) {
        int n = snprintf(line, sizeof line, "count %llu mono_ms %llu\n", (unsigned long long)counter,
                         (unsigned long long)mono_ms());
        (void)send(fd, line, (size_t)n, 0);
        shutdown(fd, SHUT_WR);
        close(fd);
      }
    }
  }
}
