/*
 * compute: a compute-bound wasm32-wasi guest for colo's stop-latency, save and migration tests.
 *
 * Two modes:
 *
 *  sieve (default, --pages-per-sec 0): rounds of a sieve of Eratosthenes over the working set,
 *    one byte per number, so every round rewrites every page of the working set; after each
 *    round it prints "round R primes P sum S" to stdout. Its output depends only on the
 *    arguments (no clock, no randomness), so an interrupted and resumed run must print exactly
 *    what an uninterrupted one prints.
 *
 *  dirty (--pages-per-sec N > 0): spins on arithmetic (no stores) and writes to N pseudo-random
 *    pages a second, spread over the working set, pacing itself on the monotonic clock; every
 *    --report-ms it prints "t_ms T dirtied D". With --sleep it sleeps between batches instead of
 *    spinning (an idle guest with the same dirty rate). The page sequence is a fixed xorshift
 *    stream (--seed), so it is deterministic; the timing is not.
 *
 * The whole --mem-mib area is allocated and written once at start (so a full save sends real
 * pages); the working set is its first --ws-mib MiB.
 *
 * Ends after --rounds rounds (sieve) or --seconds seconds (dirty), 0 meaning never, with status
 * --exit-code. --trap makes it execute `unreachable` at the end instead (a guest trap).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guest_util.h"

#define PAGE 4096u
#define MIB (1024u * 1024u)

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: compute [--mem-mib M] [--ws-mib W] [--pages-per-sec N] [--rounds R] [--seconds S]\n"
          "               [--report-ms MS] [--seed X] [--sleep] [--exit-code C] [--trap]\n"
          "defaults: --mem-mib 16 --ws-mib 4 --pages-per-sec 0 (sieve mode) --rounds 0 --seconds 0\n"
          "          --report-ms 1000 --seed 1 --exit-code 0 (0 rounds/seconds: run forever)\n");
}

/* Spin on arithmetic for a while without touching memory; returns a value so it is not elided. */
static uint64_t spin(uint64_t x, unsigned iters) {
  for (unsigned i = 0; i < iters; i++) x = x * 6364136223846793005u + 1442695040888963407u;
  return x;
}

int main(int argc, char **argv) {
  uint64_t mem_mib = 16, ws_mib = 4, pages_per_sec = 0, rounds = 0, seconds = 0, report_ms = 1000;
  uint64_t seed = 1, exit_code = 0;
  bool sleep_between = false, trap = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    uint64_t *target = NULL;
    if (strcmp(a, "--mem-mib") == 0) target = &mem_mib;
    else if (strcmp(a, "--ws-mib") == 0) target = &ws_mib;
    else if (strcmp(a, "--pages-per-sec") == 0) target = &pages_per_sec;
    else if (strcmp(a, "--rounds") == 0) target = &rounds;
    else if (strcmp(a, "--seconds") == 0) target = &seconds;
    else if (strcmp(a, "--report-ms") == 0) target = &report_ms;
    else if (strcmp(a, "--seed") == 0) target = &seed;
    else if (strcmp(a, "--exit-code") == 0) target = &exit_code;
    else if (strcmp(a, "--sleep") == 0) sleep_between = true;
    else if (strcmp(a, "--trap") == 0) trap = true;
    else if (strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "compute: unknown argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
    if (target) {
      if (i + 1 >= argc || !parse_u64(argv[i + 1], target)) {
        fprintf(stderr, "compute: %s needs a non-negative integer\n", a);
        return 2;
      }
      i++;
    }
  }
  if (mem_mib == 0 || mem_mib > 3072 || ws_mib == 0 || ws_mib > mem_mib || exit_code > 255 ||
      seed == 0 || report_ms == 0) {
    fprintf(stderr,
            "compute: need 0 < --ws-mib <= --mem-mib <= 3072, --exit-code <= 255, --seed > 0, "
            "--report-ms > 0\n");
    return 2;
  }

  size_t mem = (size_t)mem_mib * MIB, ws = (size_t)ws_mib * MIB;
  size_t ws_pages = ws / PAGE;
  uint8_t *area = malloc(mem);
  if (!area) {
    fprintf(stderr, "compute: cannot allocate %llu MiB\n", (unsigned long long)mem_mib);
    return 1;
  }
  /* Write every page once, each with its own contents. */
  for (size_t p = 0; p < mem / PAGE; p++) {
    memset(area + p * PAGE, (int)(p & 0xff), PAGE);
    memcpy(area + p * PAGE, &p, sizeof p);
  }
  printf("compute: mem %llu MiB, working set %llu MiB, %s\n", (unsigned long long)mem_mib,
         (unsigned long long)ws_mib, pages_per_sec ? "dirty mode" : "sieve mode");
  fflush(stdout);

  if (pages_per_sec == 0) {
    /* Sieve mode: byte i of the working set says whether i is composite. */
    for (uint64_t r = 1; rounds == 0 || r <= rounds; r++) {
      memset(area, 0, ws);
      area[0] = area[1] = 1;
      for (size_t i = 2; i * i < ws; i++)
        if (!area[i])
          for (size_t j = i * i; j < ws; j += i) area[j] = 1;
      uint64_t primes = 0, sum = 0;
      for (size_t i = 0; i < ws; i++)
        if (!area[i]) {
          primes++;
          sum = sum * 31 + i + r;
        }
      /* Leave a round-dependent mark in every page so rounds differ in memory too. */
      for (size_t p = 0; p < ws_pages; p++) area[p * PAGE + PAGE - 1] = (uint8_t)(r + p);
      printf("round %llu primes %llu sum %llu\n", (unsigned long long)r, (unsigned long long)primes,
             (unsigned long long)sum);
      fflush(stdout);
    }
  } else {
    uint64_t start = mono_ns(), next_report = start + report_ms * 1000000u;
    uint64_t dirtied = 0, rng = seed, acc = 0;
    for (;;) {
      uint64_t now = mono_ns();
      uint64_t elapsed = now - start;
      if (seconds && elapsed >= seconds * 1000000000u) break;
      /* Pages due by now: elapsed * rate, without overflow for any sane run length. */
      uint64_t due = (elapsed / 1000000u) * pages_per_sec / 1000u;
      for (; dirtied < due; dirtied++) {
        size_t page = (size_t)(xorshift(&rng) % ws_pages);
        uint64_t *slot = (uint64_t *)(area + page * PAGE) + (dirtied % (PAGE / 8));
        *slot = dirtied ^ acc;
      }
      if (now >= next_report) {
        printf("t_ms %llu dirtied %llu\n", (unsigned long long)(elapsed / 1000000u),
               (unsigned long long)dirtied);
        fflush(stdout);
        next_report += report_ms * 1000000u;
        if (next_report <= now) next_report = now + report_ms * 1000000u;
      }
      if (sleep_between) {
        struct timespec ts = {0, 1000000}; /* 1 ms */
        nanosleep(&ts, NULL);
      } else {
        acc = spin(acc + dirtied, 20000);
      }
    }
    printf("done dirtied %llu check %llu\n", (unsigned long long)dirtied, (unsigned long long)(acc & 1));
    fflush(stdout);
  }
  if (trap) __builtin_trap();
  return (int)exit_code;
}
