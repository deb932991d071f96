/* Small helpers shared by the sample guests (header-only: each guest is one translation unit). */
#ifndef COLO_GUEST_UTIL_H
#define COLO_GUEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* Parse a whole decimal argument into *out; false on anything else (sign, spaces, junk). */
static inline bool parse_u64(const char *s, uint64_t *out) {
  char *end;
  if (*s < '0' || *s > '9') return false;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end != '\0') return false;
  *out = v;
  return true;
}

#endif
