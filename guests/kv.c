/*
 * kv: a small key-value server speaking the Redis protocol (RESP2), for colo's tests and
 * benchmarks. A wasm32-wasi command module following colo's guest contract: the listening
 * socket is fd 3 (systemd socket activation, LISTEN_FDS=1), one thread, one poll() loop over
 * fd 3 and every client.
 *
 * Determinism: given the same input chunks in the same order, the server produces the same
 * output bytes, except for the commands that read the clock or randomness on purpose (TIME,
 * RANDOMKEY), which is what makes COLO replicas diverge. The hash function has no random seed,
 * so iteration order (KEYS, SCAN, SAVE) depends only on the commands applied.
 *
 * Protocol: RESP multibulk requests and inline commands; every complete request in the input
 * buffer is executed in order (pipelining), a partial one waits for more bytes.
 *
 * Usage: kv [--dump PATH]   PATH (e.g. /data/kv.dump under a preopened dir) is loaded at start
 *                            if it exists and written by SAVE and SHUTDOWN SAVE.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_FD 3
#define RECV_CHUNK 16384
#define MAX_INLINE (64 * 1024)         /* bytes in one inline command line */
#define MAX_BULK (64 * 1024 * 1024)    /* bytes in one bulk argument */
#define MAX_ARGC (1024 * 1024)         /* arguments in one multibulk request */
#define OUT_HIGH_WATER (1024 * 1024)   /* stop reading a client whose replies pile up */

/* ---------- small helpers ---------- */

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "kv: out of memory (%zu bytes)\n", n);
    exit(70);
  }
  return p;
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fprintf(stderr, "kv: out of memory (%zu bytes)\n", n);
    exit(70);
  }
  return q;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n) {
  uint8_t *q = xmalloc(n);
  memcpy(q, p, n);
  return q;
}

/* A growable byte buffer. */
typedef struct {
  uint8_t *p;
  size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra) cap *= 2;
  b->p = xrealloc(b->p, cap);
  b->cap = cap;
}

static void buf_append(buf_t *b, const void *p, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

/* Drop the first n bytes. */
static void buf_consume(buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
  }
  /* Give back memory after a burst (large pipelines) so idle clients stay small. */
  if (b->len == 0 && b->cap > 1024 * 1024) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
}

/* An argument: bytes inside a client's input buffer, valid while the command runs. */
typedef struct {
  const uint8_t *p;
  size_t len;
} arg_t;

static bool arg_is(const arg_t *a, const char *word) {
  size_t n = strlen(word);
  if (a->len != n) return false;
  for (size_t i = 0; i < n; i++)
    if (tolower(a->p[i]) != word[i]) return false;
  return true;
}

/* Parse a whole argument as a signed 64-bit decimal, Redis-style (no spaces, no '+'). */
static bool parse_i64(const uint8_t *p, size_t n, int64_t *out) {
  if (n == 0 || n > 20) return false;
  size_t i = 0;
  bool neg = false;
  if (p[0] == '-') {
    neg = true;
    i = 1;
    if (n == 1) return false;
  }
  if (p[i] == '0' && n > i + 1) return false;
  uint64_t v = 0;
  for (; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return false;
    uint64_t d = (uint64_t)(p[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (neg) {
    if (v > (uint64_t)INT64_MAX + 1) return false;
    *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  } else {
    if (v > (uint64_t)INT64_MAX) return false;
    *out = (int64_t)v;
  }
  return true;
}

/* ---------- values and the key space ---------- */

enum { T_STRING = 1, T_LIST = 2 };

/* A list is a ring of byte strings: O(1) push and pop at both ends. */
typedef struct {
  uint8_t *p;
  size_t len;
} str_t;

typedef struct {
  str_t *items;
  size_t cap, head, len;
} list_t;

typedef struct entry {
  struct entry *next;
  uint32_t hash;
  uint8_t *key;
  size_t klen;
  int type;
  str_t str;    /* T_STRING */
  list_t *list; /* T_LIST */
} entry_t;

static entry_t **buckets;
static size_t nbuckets; /* a power of two */
static size_t nkeys;

/* FNV-1a: fixed, unseeded, so iteration order is the same on every replica. */
static uint32_t hash_bytes(const uint8_t *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

static void list_free(list_t *l) {
  for (size_t i = 0; i < l->len; i++) free(l->items[(l->head + i) % l->cap].p);
  free(l->items);
  free(l);
}

static void entry_free(entry_t *e) {
  free(e->key);
  if (e->type == T_STRING) free(e->str.p);
  if (e->type == T_LIST) list_free(e->list);
  free(e);
}

static void table_init(size_t n) {
  nbuckets = n;
  buckets = calloc(nbuckets, sizeof *buckets);
  if (!buckets) exit(70);
  nkeys = 0;
}

static void table_grow(void) {
  size_t n = nbuckets * 2;
  entry_t **nb = calloc(n, sizeof *nb);
  if (!nb) exit(70);
  /* Rehash bucket by bucket, appending at chain tails to keep the relative order stable. */
  entry_t **tails = calloc(n, sizeof *tails);
  if (!tails) exit(70);
  for (size_t i = 0; i < nbuckets; i++) {
    entry_t *e = buckets[i];
    while (e) {
      entry_t *next = e->next;
      size_t j = e->hash & (n - 1);
      e->next = NULL;
      if (tails[j])
        tails[j]->next = e;
      else
        nb[j] = e;
      tails[j] = e;
      e = next;
    }
  }
  free(tails);
  free(buckets);
  buckets = nb;
  nbuckets = n;
}

static entry_t *lookup(const arg_t *k) {
  uint32_t h = hash_bytes(k->p, k->len);
  for (entry_t *e = buckets[h & (nbuckets - 1)]; e; e = e->next)
    if (e->hash == h && e->klen == k->len && memcmp(e->key, k->p, k->len) == 0) return e;
  return NULL;
}

/* Insert a new key (which must not exist) with no value yet; the caller sets type and value. */
static entry_t *insert(const uint8_t *key, size_t klen) {
  if (nkeys >= nbuckets) table_grow();
  entry_t *e = xmalloc(sizeof *e);
  memset(e, 0, sizeof *e);
  e->hash = hash_bytes(key, klen);
  e->key = dup_bytes(key, klen);
  e->klen = klen;
  size_t i = e->hash & (nbuckets - 1);
  /* Append at the tail: insertion order within a bucket. */
  entry_t **pp = &buckets[i];
  while (*pp) pp = &(*pp)->next;
  *pp = e;
  nkeys++;
  return e;
}

static bool remove_key(const arg_t *k) {
  uint32_t h = hash_bytes(k->p, k->len);
  for (entry_t **pp = &buckets[h & (nbuckets - 1)]; *pp; pp = &(*pp)->next) {
    entry_t *e = *pp;
    if (e->hash == h && e->klen == k->len && memcmp(e->key, k->p, k->len) == 0) {
      *pp = e->next;
      entry_free(e);
      nkeys--;
      return true;
    }
  }
  return false;
}

static void flush_all(void) {
  for (size_t i = 0; i < nbuckets; i++) {
    entry_t *e = buckets[i];
    while (e) {
      entry_t *next = e->next;
      entry_free(e);
      e = next;
    }
  }
  free(buckets);
  table_init(16);
}

static void set_string(const arg_t *k, const uint8_t *v, size_t vlen) {
  entry_t *e = lookup(k);
  if (e) {
    if (e->type == T_STRING) free(e->str.p);
    if (e->type == T_LIST) list_free(e->list);
    e->list = NULL;
  } else {
    e = insert(k->p, k->len);
  }
  e->type = T_STRING;
  e->str.p = dup_bytes(v, vlen);
  e->str.len = vlen;
}

static void list_grow(list_t *l) {
  size_t cap = l->cap ? l->cap * 2 : 8;
  str_t *items = xmalloc(cap * sizeof *items);
  for (size_t i = 0; i < l->len; i++) items[i] = l->items[(l->head + i) % l->cap];
  free(l->items);
  l->items = items;
  l->cap = cap;
  l->head = 0;
}

static void list_push(list_t *l, bool left, const uint8_t *p, size_t n) {
  if (l->len == l->cap) list_grow(l);
  str_t s = {dup_bytes(p, n), n};
  if (left) {
    l->head = (l->head + l->cap - 1) % l->cap;
    l->items[l->head] = s;
  } else {
    l->items[(l->head + l->len) % l->cap] = s;
  }
  l->len++;
}

static str_t list_pop(list_t *l, bool left) {
  str_t s;
  if (left) {
    s = l->items[l->head];
    l->head = (l->head + 1) % l->cap;
  } else {
    s = l->items[(l->head + l->len - 1) % l->cap];
  }
  l->len--;
  return s;
}

static const str_t *list_at(const list_t *l, size_t i) { return &l->items[(l->head + i) % l->cap]; }

/* Glob matching for KEYS and SCAN MATCH: '*', '?', '[...]' with ranges and '^', '\\' escapes. */
static bool glob_match(const uint8_t *pat, size_t plen, const uint8_t *s, size_t slen) {
  while (plen > 0) {
    switch (pat[0]) {
      case '*':
        while (plen > 1 && pat[1] == '*') pat++, plen--;
        if (plen == 1) return true;
        for (size_t i = 0; i <= slen; i++)
          if (glob_match(pat + 1, plen - 1, s + i, slen - i)) return true;
        return false;
      case '?':
        if (slen == 0) return false;
        s++, slen--;
        pat++, plen--;
        break;
      case '[': {
        if (slen == 0) return false;
        pat++, plen--;
        bool negate = plen > 0 && pat[0] == '^';
        if (negate) pat++, plen--;
        bool hit = false;
        while (plen > 0 && pat[0] != ']') {
          if (pat[0] == '\\' && plen >= 2) {
            pat++, plen--;
            if (pat[0] == s[0]) hit = true;
          } else if (plen >= 3 && pat[1] == '-') {
            uint8_t lo = pat[0], hi = pat[2];
            if (lo > hi) {
              uint8_t t = lo;
              lo = hi;
              hi = t;
            }
            if (s[0] >= lo && s[0] <= hi) hit = true;
            pat += 2, plen -= 2;
          } else if (pat[0] == s[0]) {
            hit = true;
          }
          pat++, plen--;
        }
        if (plen > 0) pat++, plen--; /* the ']' */
        if (hit == negate) return false;
        s++, slen--;
        break;
      }
      case '\\':
        if (plen >= 2) pat++, plen--;
        /* fall through */
      default:
        if (slen == 0 || pat[0] != s[0]) return false;
        s++, slen--;
        pat++, plen--;
        break;
    }
  }
  return slen == 0;
}

/* ---------- clients ---------- */

typedef struct {
  int fd;
  buf_t in;
  buf_t out;
  bool close_after_reply; /* QUIT, or a protocol error */
} client_t;

static client_t **clients;
static size_t nclients, capclients;
static const char *dump_path;

/* ---------- replies (RESP2) ---------- */

static void reply_raw(client_t *c, const char *s) { buf_append(&c->out, s, strlen(s)); }

static void reply_status(client_t *c, const char *s) {
  buf_append(&c->out, "+", 1);
  reply_raw(c, s);
  buf_append(&c->out, "\r\n", 2);
}

static void reply_error(client_t *c, const char *s) {
  buf_append(&c->out, "-", 1);
  reply_raw(c, s);
  buf_append(&c->out, "\r\n", 2);
}

static void reply_prefixed(client_t *c, char prefix, int64_t n) {
  char tmp[32];
  int len = snprintf(tmp, sizeof tmp, "%c%lld\r\n", prefix, (long long)n);
  buf_append(&c->out, tmp, (size_t)len);
}

static void reply_int(client_t *c, int64_t n) { reply_prefixed(c, ':', n); }
static void reply_array(client_t *c, int64_t n) { reply_prefixed(c, '*', n); }
static void reply_null(client_t *c) { reply_raw(c, "$-1\r\n"); }

static void reply_bulk(client_t *c, const void *p, size_t n) {
  reply_prefixed(c, '$', (int64_t)n);
  buf_append(&c->out, p, n);
  buf_append(&c->out, "\r\n", 2);
}

static void reply_bulk_str(client_t *c, const char *s) { reply_bulk(c, s, strlen(s)); }

static void reply_bulk_int(client_t *c, int64_t n) {
  char tmp[32];
  int len = snprintf(tmp, sizeof tmp, "%lld", (long long)n);
  reply_bulk(c, tmp, (size_t)len);
}

static const char *E_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value";
static const char *E_NOTINT = "ERR value is not an integer or out of range";

/* ---------- commands ---------- */

typedef void cmd_fn(client_t *c, int argc, arg_t *argv);

static void cmd_ping(client_t *c, int argc, arg_t *argv) {
  if (argc == 1)
    reply_status(c, "PONG");
  else
    reply_bulk(c, argv[1].p, argv[1].len);
}

static void cmd_echo(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  reply_bulk(c, argv[1].p, argv[1].len);
}

static void cmd_set(client_t *c, int argc, arg_t *argv) {
  /* Options (EX, PX, NX, XX, ...) are not supported: refuse rather than ignore them. */
  if (argc != 3) {
    reply_error(c, "ERR syntax error");
    return;
  }
  set_string(&argv[1], argv[2].p, argv[2].len);
  reply_status(c, "OK");
}

static void cmd_get(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  entry_t *e = lookup(&argv[1]);
  if (!e)
    reply_null(c);
  else if (e->type != T_STRING)
    reply_error(c, E_WRONGTYPE);
  else
    reply_bulk(c, e->str.p, e->str.len);
}

static void cmd_del(client_t *c, int argc, arg_t *argv) {
  int64_t n = 0;
  for (int i = 1; i < argc; i++) n += remove_key(&argv[i]);
  reply_int(c, n);
}

static void cmd_exists(client_t *c, int argc, arg_t *argv) {
  int64_t n = 0;
  for (int i = 1; i < argc; i++) n += lookup(&argv[i]) != NULL;
  reply_int(c, n);
}

static void incr_by(client_t *c, const arg_t *key, int64_t by) {
  entry_t *e = lookup(key);
  int64_t v = 0;
  if (e) {
    if (e->type != T_STRING) {
      reply_error(c, E_WRONGTYPE);
      return;
    }
    if (!parse_i64(e->str.p, e->str.len, &v)) {
      reply_error(c, E_NOTINT);
      return;
    }
  }
  if ((by > 0 && v > INT64_MAX - by) || (by < 0 && v < INT64_MIN - by)) {
    reply_error(c, "ERR increment or decrement would overflow");
    return;
  }
  v += by;
  char tmp[32];
  int len = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
  set_string(key, (const uint8_t *)tmp, (size_t)len);
  reply_int(c, v);
}

static void cmd_incr(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  incr_by(c, &argv[1], 1);
}

static void cmd_decr(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  incr_by(c, &argv[1], -1);
}

static bool arg_i64(client_t *c, const arg_t *a, int64_t *out) {
  if (parse_i64(a->p, a->len, out)) return true;
  reply_error(c, E_NOTINT);
  return false;
}

static void cmd_incrby(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  int64_t by;
  if (arg_i64(c, &argv[2], &by)) incr_by(c, &argv[1], by);
}

static void cmd_decrby(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  int64_t by;
  if (!arg_i64(c, &argv[2], &by)) return;
  if (by == INT64_MIN) {
    reply_error(c, "ERR decrement would overflow");
    return;
  }
  incr_by(c, &argv[1], -by);
}

/* Find the list at key, creating it if `create`; replies WRONGTYPE and returns NULL on a string. */
static list_t *get_list(client_t *c, const arg_t *key, bool create, bool *wrongtype) {
  entry_t *e = lookup(key);
  *wrongtype = false;
  if (e && e->type != T_LIST) {
    reply_error(c, E_WRONGTYPE);
    *wrongtype = true;
    return NULL;
  }
  if (e) return e->list;
  if (!create) return NULL;
  e = insert(key->p, key->len);
  e->type = T_LIST;
  e->list = xmalloc(sizeof *e->list);
  memset(e->list, 0, sizeof *e->list);
  return e->list;
}

static void push(client_t *c, int argc, arg_t *argv, bool left) {
  bool wt;
  list_t *l = get_list(c, &argv[1], true, &wt);
  if (wt) return;
  for (int i = 2; i < argc; i++) list_push(l, left, argv[i].p, argv[i].len);
  reply_int(c, (int64_t)l->len);
}

static void cmd_lpush(client_t *c, int argc, arg_t *argv) { push(c, argc, argv, true); }
static void cmd_rpush(client_t *c, int argc, arg_t *argv) { push(c, argc, argv, false); }

static void pop(client_t *c, int argc, arg_t *argv, bool left) {
  int64_t count = 1;
  bool with_count = argc == 3;
  if (with_count && (!arg_i64(c, &argv[2], &count))) return;
  if (count < 0) {
    reply_error(c, "ERR value is out of range, must be positive");
    return;
  }
  bool wt;
  list_t *l = get_list(c, &argv[1], false, &wt);
  if (wt) return;
  if (!l) {
    if (with_count)
      reply_raw(c, "*-1\r\n");
    else
      reply_null(c);
    return;
  }
  size_t n = (size_t)count < l->len ? (size_t)count : l->len;
  if (with_count) reply_array(c, (int64_t)n);
  for (size_t i = 0; i < n; i++) {
    str_t s = list_pop(l, left);
    reply_bulk(c, s.p, s.len);
    free(s.p);
  }
  if (l->len == 0) remove_key(&argv[1]); /* Redis deletes empty lists */
}

static void cmd_lpop(client_t *c, int argc, arg_t *argv) { pop(c, argc, argv, true); }
static void cmd_rpop(client_t *c, int argc, arg_t *argv) { pop(c, argc, argv, false); }

static void cmd_llen(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  bool wt;
  list_t *l = get_list(c, &argv[1], false, &wt);
  if (!wt) reply_int(c, l ? (int64_t)l->len : 0);
}

static void cmd_lrange(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  int64_t start, stop;
  if (!arg_i64(c, &argv[2], &start) || !arg_i64(c, &argv[3], &stop)) return;
  bool wt;
  list_t *l = get_list(c, &argv[1], false, &wt);
  if (wt) return;
  int64_t len = l ? (int64_t)l->len : 0;
  if (start < 0) start += len;
  if (stop < 0) stop += len;
  if (start < 0) start = 0;
  if (stop >= len) stop = len - 1;
  if (start > stop || len == 0) {
    reply_array(c, 0);
    return;
  }
  reply_array(c, stop - start + 1);
  for (int64_t i = start; i <= stop; i++) {
    const str_t *s = list_at(l, (size_t)i);
    reply_bulk(c, s->p, s->len);
  }
}

static void cmd_mset(client_t *c, int argc, arg_t *argv) {
  if (argc % 2 != 1) {
    reply_error(c, "ERR wrong number of arguments for 'mset' command");
    return;
  }
  for (int i = 1; i < argc; i += 2) set_string(&argv[i], argv[i + 1].p, argv[i + 1].len);
  reply_status(c, "OK");
}

static void cmd_mget(client_t *c, int argc, arg_t *argv) {
  reply_array(c, argc - 1);
  for (int i = 1; i < argc; i++) {
    entry_t *e = lookup(&argv[i]);
    if (e && e->type == T_STRING)
      reply_bulk(c, e->str.p, e->str.len);
    else
      reply_null(c);
  }
}

static void cmd_dbsize(client_t *c, int argc, arg_t *argv) {
  (void)argc, (void)argv;
  reply_int(c, (int64_t)nkeys);
}

static void cmd_keys(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  /* Count first so the array header comes before the elements, without a second buffer. */
  int64_t n = 0;
  for (size_t i = 0; i < nbuckets; i++)
    for (entry_t *e = buckets[i]; e; e = e->next)
      n += glob_match(argv[1].p, argv[1].len, e->key, e->klen);
  reply_array(c, n);
  for (size_t i = 0; i < nbuckets; i++)
    for (entry_t *e = buckets[i]; e; e = e->next)
      if (glob_match(argv[1].p, argv[1].len, e->key, e->klen)) reply_bulk(c, e->key, e->klen);
}

/*
 * SCAN cursor [MATCH pattern] [COUNT n]: the cursor is a bucket index. Simple, not Redis's
 * reverse-binary cursor: a table resize between calls may repeat or skip keys.
 */
static void cmd_scan(client_t *c, int argc, arg_t *argv) {
  int64_t cursor, count = 10;
  if (!arg_i64(c, &argv[1], &cursor)) return;
  const arg_t *pattern = NULL;
  for (int i = 2; i < argc; i++) {
    if (arg_is(&argv[i], "match") && i + 1 < argc) {
      pattern = &argv[++i];
    } else if (arg_is(&argv[i], "count") && i + 1 < argc) {
      if (!arg_i64(c, &argv[++i], &count)) return;
      if (count < 1) {
        reply_error(c, "ERR syntax error");
        return;
      }
    } else {
      reply_error(c, "ERR syntax error");
      return;
    }
  }
  size_t b = cursor < 0 || (uint64_t)cursor >= nbuckets ? nbuckets : (size_t)cursor;
  size_t end = b, seen = 0;
  while (end < nbuckets && seen < (size_t)count) {
    for (entry_t *e = buckets[end]; e; e = e->next) seen++;
    end++;
  }
  int64_t n = 0;
  for (size_t i = b; i < end; i++)
    for (entry_t *e = buckets[i]; e; e = e->next)
      n += !pattern || glob_match(pattern->p, pattern->len, e->key, e->klen);
  reply_array(c, 2);
  reply_bulk_int(c, end >= nbuckets ? 0 : (int64_t)end);
  reply_array(c, n);
  for (size_t i = b; i < end; i++)
    for (entry_t *e = buckets[i]; e; e = e->next)
      if (!pattern || glob_match(pattern->p, pattern->len, e->key, e->klen))
        reply_bulk(c, e->key, e->klen);
}

static void cmd_flushall(client_t *c, int argc, arg_t *argv) {
  (void)argc, (void)argv;
  flush_all();
  reply_status(c, "OK");
}

static void cmd_type(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  entry_t *e = lookup(&argv[1]);
  reply_status(c, !e ? "none" : e->type == T_STRING ? "string" : "list");
}

/* COMMAND [anything]: an empty array, enough for redis-cli (it only uses it for hints). */
static void cmd_command(client_t *c, int argc, arg_t *argv) {
  (void)argc, (void)argv;
  reply_array(c, 0);
}

/* CONFIG GET name: redis-benchmark asks for "save" and "appendonly". */
static void cmd_config(client_t *c, int argc, arg_t *argv) {
  if (!arg_is(&argv[1], "get") || argc != 3) {
    reply_error(c, "ERR only CONFIG GET <name> is supported");
    return;
  }
  static const char *params[][2] = {{"save", ""}, {"appendonly", "no"}, {"databases", "1"}};
  int64_t n = 0;
  for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
    n += glob_match(argv[2].p, argv[2].len, (const uint8_t *)params[i][0], strlen(params[i][0]));
  reply_array(c, 2 * n);
  for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
    if (glob_match(argv[2].p, argv[2].len, (const uint8_t *)params[i][0], strlen(params[i][0]))) {
      reply_bulk_str(c, params[i][0]);
      reply_bulk_str(c, params[i][1]);
    }
  }
}

static void cmd_select(client_t *c, int argc, arg_t *argv) {
  (void)argc;
  if (arg_is(&argv[1], "0"))
    reply_status(c, "OK");
  else
    reply_error(c, "ERR DB index is out of range");
}

static void cmd_info(client_t *c, int argc, arg_t *argv) {
  (void)argc, (void)argv;
  char tmp[256];
  snprintf(tmp, sizeof tmp,
           "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nkv:colo-sample\r\n"
           "# Keyspace\r\ndb0:keys=%zu,expires=0\r\n",
           nkeys);
  reply_bulk_str(c, tmp);
}

/* TIME: the real-time clock, [seconds, microseconds]. Differs between replicas on purpose. */
static void cmd_time(client_t *c, int argc, arg_t *argv) {
  (void)argc, (void)argv;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  reply_array(c, 2);
  reply_bulk_int(c, (int64_t)ts.tv_sec);
  reply_bulk_int(c, (int64_t)(ts.tv_nsec / 1000));
}

static uint32_t random_u32(void) {
  uint32_t r = 0;
  if (getentropy(&r, sizeof r) != 0) {
    fprintf(stderr, "kv: getentropy failed\n");
    exit(70);
  }
  return r;
}

/* RANDOMKEY: a key chosen with random_get. Differs between replicas on purpose. */
static void cmd_randomkey(client_t *c, int argc, arg_t *argv) {
  (void)argc, (void)argv;
  if (nkeys == 0) {
    reply_null(c);
    return;
  }
  /* A random bucket until a non-empty one (the table is at least ~half full), then a random entry. */
  for (;;) {
    entry_t *e = buckets[random_u32() & (nbuckets - 1)];
    if (!e) continue;
    size_t len = 0;
    for (entry_t *x = e; x; x = x->next) len++;
    for (size_t i = random_u32() % len; i > 0; i--) e = e->next;
    reply_bulk(c, e->key, e->klen);
    return;
  }
}

static void cmd_quit(client_t *c, int argc, arg_t *argv) {
  (void)argc, (void)argv;
  reply_status(c, "OK");
  c->close_after_reply = true;
}

/* ---------- persistence: a simple dump file in the virtual file system ---------- */

static const char DUMP_MAGIC[8] = {'C', 'O', 'L', 'O', 'K', 'V', '0', '1'};

static bool write_u32(FILE *f, uint32_t v) {
  uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  return fwrite(b, 1, 4, f) == 4;
}

static bool write_blob(FILE *f, const uint8_t *p, size_t n) {
  return n <= UINT32_MAX && write_u32(f, (uint32_t)n) && fwrite(p, 1, n, f) == n;
}

/* Write the key space to dump_path via a temporary file and rename. Returns an error text or NULL. */
static const char *save_dump(void) {
  if (!dump_path) return "ERR no dump file: start kv with --dump PATH";
  char tmp[4096];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", dump_path) >= sizeof tmp) return "ERR dump path too long";
  FILE *f = fopen(tmp, "wb");
  if (!f) return "ERR cannot open dump file";
  bool ok = fwrite(DUMP_MAGIC, 1, 8, f) == 8 && nkeys <= UINT32_MAX && write_u32(f, (uint32_t)nkeys);
  for (size_t i = 0; ok && i < nbuckets; i++) {
    for (entry_t *e = buckets[i]; ok && e; e = e->next) {
      ok = fputc(e->type, f) != EOF && write_blob(f, e->key, e->klen);
      if (ok && e->type == T_STRING) ok = write_blob(f, e->str.p, e->str.len);
      if (ok && e->type == T_LIST) {
        ok = write_u32(f, (uint32_t)e->list->len);
        for (size_t j = 0; ok && j < e->list->len; j++) {
          const str_t *s = list_at(e->list, j);
          ok = write_blob(f, s->p, s->len);
        }
      }
    }
  }
  if (fclose(f) != 0) ok = false;
  if (!ok) {
    unlink(tmp);
    return "ERR writing dump file failed";
  }
  if (rename(tmp, dump_path) != 0) return "ERR renaming dump file failed";
  return NULL;
}

static bool read_u32(FILE *f, uint32_t *v) {
  uint8_t b[4];
  if (fread(b, 1, 4, f) != 4) return false;
  *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  return true;
}

static uint8_t *read_blob(FILE *f, size_t *n) {
  uint32_t len;
  if (!read_u32(f, &len) || len > MAX_BULK) return NULL;
  uint8_t *p = xmalloc(len);
  if (fread(p, 1, len, f) != len) {
    free(p);
    return NULL;
  }
  *n = len;
  return p;
}

/* Load dump_path if it exists. A missing file is an empty store; a corrupt one is fatal. */
static void load_dump(void) {
  FILE *f = fopen(dump_path, "rb");
  if (!f) return;
  char magic[8];
  uint32_t count;
  bool ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, DUMP_MAGIC, 8) == 0 && read_u32(f, &count);
  for (uint32_t i = 0; ok && i < count; i++) {
    int type = fgetc(f);
    size_t klen;
    uint8_t *key = read_blob(f, &klen);
    if (!key || (type != T_STRING && type != T_LIST)) {
      free(key);
      ok = false;
      break;
    }
    arg_t k = {key, klen};
    if (lookup(&k)) remove_key(&k);
    entry_t *e = insert(key, klen);
    free(key);
    e->type = type;
    if (type == T_STRING) {
      e->str.p = read_blob(f, &e->str.len);
      ok = e->str.p != NULL;
      if (!ok) e->type = 0;
    } else {
      e->list = xmalloc(sizeof *e->list);
      memset(e->list, 0, sizeof *e->list);
      uint32_t n;
      ok = read_u32(f, &n);
      for (uint32_t j = 0; ok && j < n; j++) {
        size_t len;
        uint8_t *p = read_blob(f, &len);
        ok = p != NULL;
        if (ok) {
          list_push(e->list, false, p, len);
          free(p);
        }
      }
    }
  }
  fclose(f);
  if (!ok) {
    fprintf(stderr, "kv: corrupt dump file %s\n", dump_path);
    exit(1);
  }
  fprintf(stderr, "kv: loaded %zu keys from %s\n", nkeys, dump_path);
}

static void cmd_save(client_t *c, int argc, arg_t *argv) {
  (void)argc, (void)argv;
  const char *err = save_dump();
  if (err)
    reply_error(c, err);
  else
    reply_status(c, "OK");
}

/* SHUTDOWN [SAVE|NOSAVE]: the guest exits with status 0 (the connection just closes). */
static void cmd_shutdown(client_t *c, int argc, arg_t *argv) {
  if (argc == 2 && arg_is(&argv[1], "save")) {
    const char *err = save_dump();
    if (err) {
      reply_error(c, err);
      return;
    }
  }
  fprintf(stderr, "kv: shutdown requested\n");
  exit(0);
}

typedef struct {
  const char *name; /* lower case */
  int arity;        /* > 0: exactly; < 0: at least -arity (the name counts) */
  cmd_fn *fn;
} command_t;

static const command_t COMMANDS[] = {
    {"ping", -1, cmd_ping},     {"echo", 2, cmd_echo},         {"set", -3, cmd_set},
    {"get", 2, cmd_get},        {"del", -2, cmd_del},          {"exists", -2, cmd_exists},
    {"incr", 2, cmd_incr},      {"decr", 2, cmd_decr},         {"incrby", 3, cmd_incrby},
    {"decrby", 3, cmd_decrby},  {"lpush", -3, cmd_lpush},      {"rpush", -3, cmd_rpush},
    {"lpop", -2, cmd_lpop},     {"rpop", -2, cmd_rpop},        {"llen", 2, cmd_llen},
    {"lrange", 4, cmd_lrange},  {"mset", -3, cmd_mset},        {"mget", -2, cmd_mget},
    {"dbsize", 1, cmd_dbsize},  {"keys", 2, cmd_keys},         {"scan", -2, cmd_scan},
    {"flushall", -1, cmd_flushall}, {"flushdb", -1, cmd_flushall}, {"type", 2, cmd_type},
    {"command", -1, cmd_command}, {"config", -2, cmd_config},  {"select", 2, cmd_select},
    {"info", -1, cmd_info},     {"time", 1, cmd_time},         {"randomkey", 1, cmd_randomkey},
    {"quit", -1, cmd_quit},     {"save", 1, cmd_save},         {"shutdown", -1, cmd_shutdown},
};

static void execute(client_t *c, int argc, arg_t *argv) {
  for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
    const command_t *cmd = &COMMANDS[i];
    if (!arg_is(&argv[0], cmd->name)) continue;
    if ((cmd->arity > 0 && argc != cmd->arity) || (cmd->arity < 0 && argc < -cmd->arity)) {
      char msg[96];
      snprintf(msg, sizeof msg, "ERR wrong number of arguments for '%s' command", cmd->name);
      reply_error(c, msg);
      return;
    }
    cmd->fn(c, argc, argv);
    return;
  }
  char msg[128];
  int n = argv[0].len > 40 ? 40 : (int)argv[0].len;
  snprintf(msg, sizeof msg, "ERR unknown command '%.*s'", n, (const char *)argv[0].p);
  reply_error(c, msg);
}

/* ---------- request parsing ---------- */

static arg_t *argv_buf;
static size_t argv_cap;

static void argv_reserve(size_t n) {
  if (n <= argv_cap) return;
  argv_buf = xrealloc(argv_buf, n * sizeof *argv_buf);
  argv_cap = n;
}

/* Find "\r\n" in [p, p+n); returns its offset or -1. */
static long find_crlf(const uint8_t *p, size_t n) {
  for (size_t i = 0; i + 1 < n; i++)
    if (p[i] == '\r' && p[i + 1] == '\n') return (long)i;
  return -1;
}

/* Parse "<prefix><int>\r\n" at p; returns bytes used, 0 if incomplete, -1 if malformed. */
static long parse_header(const uint8_t *p, size_t n, char prefix, int64_t *value) {
  if (n < 1) return 0;
  if (p[0] != prefix) return -1;
  long e = find_crlf(p, n > 32 ? 32 : n);
  if (e < 0) return n >= 32 ? -1 : 0;
  if (!parse_i64(p + 1, (size_t)e - 1, value)) return -1;
  return e + 2;
}

/*
 * Parse one request at the start of [p, p+n). Returns bytes consumed (> 0) with *argc set
 * (argc 0 means an empty inline line: nothing to run), 0 if incomplete, -1 on a protocol error
 * with *err set.
 */
static long parse_request(const uint8_t *p, size_t n, int *argc, const char **err) {
  *argc = 0;
  if (n == 0) return 0;
  if (p[0] == '*') {
    int64_t count;
    long used = parse_header(p, n, '*', &count);
    if (used <= 0) {
      *err = "ERR Protocol error: invalid multibulk length";
      return used;
    }
    if (count > MAX_ARGC) {
      *err = "ERR Protocol error: invalid multibulk length";
      return -1;
    }
    if (count <= 0) return used; /* "*0" or "*-1": nothing to run */
    argv_reserve((size_t)count);
    size_t pos = (size_t)used;
    for (int64_t i = 0; i < count; i++) {
      int64_t len;
      long h = parse_header(p + pos, n - pos, '$', &len);
      if (h < 0 || (h > 0 && (len < 0 || len > MAX_BULK))) {
        *err = "ERR Protocol error: invalid bulk length";
        return -1;
      }
      if (h == 0) return 0;
      pos += (size_t)h;
      if (n - pos < (size_t)len + 2) return 0;
      if (p[pos + (size_t)len] != '\r' || p[pos + (size_t)len + 1] != '\n') {
        *err = "ERR Protocol error: expected '\\r\\n' after bulk";
        return -1;
      }
      argv_buf[i].p = p + pos;
      argv_buf[i].len = (size_t)len;
      pos += (size_t)len + 2;
    }
    *argc = (int)count;
    return (long)pos;
  }
  /* Inline command: one line, words separated by spaces; "\r\n" or "\n" ends it. */
  const uint8_t *nl = memchr(p, '\n', n > MAX_INLINE ? MAX_INLINE : n);
  if (!nl) {
    if (n >= MAX_INLINE) {
      *err = "ERR Protocol error: too big inline request";
      return -1;
    }
    return 0;
  }
  size_t line = (size_t)(nl - p);
  size_t end = line > 0 && p[line - 1] == '\r' ? line - 1 : line;
  argv_reserve(end / 2 + 1);
  int k = 0;
  for (size_t i = 0; i < end;) {
    while (i < end && (p[i] == ' ' || p[i] == '\t')) i++;
    if (i >= end) break;
    size_t s = i;
    while (i < end && p[i] != ' ' && p[i] != '\t') i++;
    argv_buf[k].p = p + s;
    argv_buf[k].len = i - s;
    k++;
  }
  *argc = k;
  return (long)line + 1;
}

/* Run every complete request in c->in; keep a partial one for later. */
static void process_input(client_t *c) {
  size_t pos = 0;
  while (pos < c->in.len && !c->close_after_reply) {
    int argc;
    const char *err = NULL;
    long used = parse_request(c->in.p + pos, c->in.len - pos, &argc, &err);
    if (used == 0) break;
    if (used < 0) {
      reply_error(c, err);
      c->close_after_reply = true;
      pos = c->in.len;
      break;
    }
    if (argc > 0) execute(c, argc, argv_buf);
    pos += (size_t)used;
  }
  buf_consume(&c->in, pos);
}

/* ---------- the event loop ---------- */

static void client_add(int fd) {
  if (nclients == capclients) {
    capclients = capclients ? capclients * 2 : 16;
    clients = xrealloc(clients, capclients * sizeof *clients);
  }
  client_t *c = xmalloc(sizeof *c);
  memset(c, 0, sizeof *c);
  c->fd = fd;
  clients[nclients++] = c;
}

static void client_free(size_t i) {
  client_t *c = clients[i];
  close(c->fd);
  free(c->in.p);
  free(c->out.p);
  free(c);
  /* Keep the order of the others (the poll set order) stable. */
  memmove(&clients[i], &clients[i + 1], (nclients - i - 1) * sizeof *clients);
  nclients--;
}

/* Send as much pending output as the socket takes. Returns false if the client is gone. */
static bool flush_output(client_t *c) {
  size_t sent = 0;
  while (sent < c->out.len) {
    ssize_t n = send(c->fd, c->out.p + sent, c->out.len - sent, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return false;
    }
    sent += (size_t)n;
  }
  buf_consume(&c->out, sent);
  return !(c->close_after_reply && c->out.len == 0);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) {
      dump_path = argv[++i];
    } else if (strcmp(argv[i], "--help") == 0) {
      printf("usage: kv [--dump PATH]\nA Redis-protocol key-value server on fd 3 (LISTEN_FDS=1).\n");
      return 0;
    } else {
      fprintf(stderr, "kv: unknown argument '%s' (usage: kv [--dump PATH])\n", argv[i]);
      return 2;
    }
  }
  const char *listen_fds = getenv("LISTEN_FDS");
  if (!listen_fds || strcmp(listen_fds, "1") != 0) {
    fprintf(stderr, "kv: needs the listening socket on fd 3 with LISTEN_FDS=1 in the environment\n");
    return 2;
  }
  table_init(16);
  if (dump_path) load_dump();
  fprintf(stderr, "kv: ready on fd %d\n", LISTEN_FD);

  struct pollfd *fds = NULL;
  size_t fds_cap = 0;
  for (;;) {
    if (fds_cap < nclients + 1) {
      fds_cap = (nclients + 1) * 2;
      fds = xrealloc(fds, fds_cap * sizeof *fds);
    }
    fds[0].fd = LISTEN_FD;
    fds[0].events = POLLIN;
    fds[0].revents = 0;
    for (size_t i = 0; i < nclients; i++) {
      client_t *c = clients[i];
      fds[i + 1].fd = c->fd;
      fds[i + 1].events = 0;
      fds[i + 1].revents = 0;
      if (c->out.len < OUT_HIGH_WATER && !c->close_after_reply) fds[i + 1].events |= POLLIN;
      if (c->out.len > 0) fds[i + 1].events |= POLLOUT;
    }
    size_t npoll = nclients + 1;
    int ready = poll(fds, npoll, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      perror("kv: poll");
      return 1;
    }
    /* Clients first, last to first (so a client can be removed in place), then accept. */
    for (size_t i = npoll - 1; i >= 1; i--) {
      client_t *c = clients[i - 1];
      short re = fds[i].revents;
      bool alive = true;
      if (re & (POLLIN | POLLHUP | POLLERR)) {
        if (fds[i].events & POLLIN) {
          buf_reserve(&c->in, RECV_CHUNK);
          ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
          if (n > 0) {
            c->in.len += (size_t)n;
            process_input(c);
          } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            alive = false; /* EOF or error: drop the client and any unsent replies */
          }
        } else if (re & (POLLHUP | POLLERR)) {
          alive = false;
        }
      }
      if (alive && c->out.len > 0) alive = flush_output(c);
      if (alive && c->close_after_reply && c->out.len == 0) alive = false;
      if (!alive) client_free(i - 1);
    }
    if (fds[0].revents & POLLIN) {
      struct sockaddr_storage addr;
      socklen_t alen = sizeof addr;
      int fd = accept(LISTEN_FD, (struct sockaddr *)&addr, &alen);
      if (fd >= 0) {
        client_add(fd);
      } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        perror("kv: accept");
        return 1;
      }
    } else if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
      fprintf(stderr, "kv: listening socket fd %d failed\n", LISTEN_FD);
      return 1;
    }
  }
}
