/* Co-linear chains of exact k-mer matches between a long query and one subject: where the query matches the
   subject, on which strand, and how densely (minimap2's chaining, Li 2018, simplified).

   A query table holds the query's k-mers (canonical codes, so both strands are one lookup) sorted by code
   with a hash from code to its run; `chain_regions` scans a subject's k-mers once, emits an anchor (query
   position, subject position) per match, on the strand the two orientations say, and chains anchors by
   dynamic programming over the h anchors before each (gap <= max_gap, diagonal drift <= band), scoring
   matched bases less a gap cost. Chains are taken best first, each from anchors no better chain used.
   Loaded with ctypes by gene_ae/search/chain.py, which owns the parameters; no Python API here. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int k, first_base;
    int64_t qlen, n;      /* query length; entries kept */
    uint64_t *entry;      /* code << 33 | position << 1 | orientation (1: the k-mer read on the minus strand) */
    uint64_t *slot_code;  /* hash slots: code + 1 (0: empty) */
    int32_t *slot_first;  /* first entry of that code (the query is under 2^31 bases) */
    uint8_t *slot_count;  /* entries of that code (at most max_occ <= 255) */
    uint64_t mask;        /* slots - 1 */
    uint64_t *filter;     /* one bit per hashed code kept: most subject k-mers are in no query, and one bit (the
                             filter is ~16 bits a code, in cache) turns them away without probing the slots */
    uint64_t filter_mask; /* filter bits - 1 */
} table_t;

static inline uint64_t mix(uint64_t code) { return code * 0x9E3779B97F4A7C15ull; }
static inline uint64_t filter_bit(uint64_t code) { return (code * 0xD6E8FEB86659FD93ull) >> 20; }

static void radix_sort(uint64_t *a, int64_t n, int bits)
{
    uint64_t *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    int64_t count[256];
    for (int shift = 0; shift < bits; shift += 8) {
        memset(count, 0, sizeof count);
        for (int64_t i = 0; i < n; i++) count[(a[i] >> shift) & 255]++;
        for (int64_t c = 0, sum = 0; c < 256; c++) { int64_t x = count[c]; count[c] = sum; sum += x; }
        for (int64_t i = 0; i < n; i++) tmp[count[(a[i] >> shift) & 255]++] = a[i];
        memcpy(a, tmp, (size_t)n * sizeof *a);
    }
    free(tmp);
}

/* The k-mers of real bases of a sequence, in order: position, canonical code, orientation (1: the canonical
   code is the reverse complement's). */
typedef struct {
    const uint8_t *s;
    int64_t len, i;
    uint64_t fwd, rev, mask;
    int k, shift, run, first_base;
} kmers_t;

static kmers_t kmers_of(const uint8_t *s, int64_t len, int k, int first_base)
{
    kmers_t it = {s, len, 0, 0, 0, (1ull << (2 * k)) - 1, k, 2 * (k - 1), 0, first_base};
    return it;
}

static inline int kmer_next(kmers_t *it, int64_t *pos, uint64_t *code, int *orient)
{
    while (it->i < it->len) {
        int b = (int)it->s[it->i++] - it->first_base;
        if (b < 0 || b > 3) { it->run = 0, it->fwd = it->rev = 0; continue; }
        it->fwd = ((it->fwd << 2) | (uint64_t)b) & it->mask;
        it->rev = (it->rev >> 2) | ((uint64_t)(3 - b) << it->shift);
        if (++it->run < it->k) continue;
        *pos = it->i - it->k, *orient = it->rev < it->fwd, *code = *orient ? it->rev : it->fwd;
        return 1;
    }
    return 0;
}

/* The query's table (qlen < 2^31); k-mers occurring more than max_occ (<= 255) times in the query are left
   out (repeats). */
void *chain_table_new(const uint8_t *q, int64_t qlen, int k, int first_base, int max_occ)
{
    table_t *t = calloc(1, sizeof *t);
    t->k = k, t->first_base = first_base, t->qlen = qlen;
    t->entry = malloc((size_t)(qlen > 0 ? qlen : 1) * sizeof *t->entry);
    int64_t n = 0, pos;
    uint64_t code;
    int orient;
    for (kmers_t it = kmers_of(q, qlen, k, first_base); kmer_next(&it, &pos, &code, &orient);)
        t->entry[n++] = code << 33 | (uint64_t)pos << 1 | (uint64_t)orient;
    radix_sort(t->entry, n, 2 * k + 33);
    int64_t distinct = 0, slots = 16;
    for (int64_t a = 0; a < n; a++) distinct += a == 0 || (t->entry[a] >> 33) != (t->entry[a - 1] >> 33);
    while (2 * slots < 3 * distinct) slots <<= 1;  /* at most 2/3 full: 14 bytes a slot, ~300 MB at 10 Mb */
    t->mask = (uint64_t)slots - 1;
    int64_t bits = 1 << 16;
    while (bits < 16 * distinct && bits < (1ll << 27)) bits <<= 1;  /* at most 16 MB, for queries of ~8 Mb and more */
    t->filter_mask = (uint64_t)bits - 1;
    t->filter = calloc((size_t)bits / 64, sizeof *t->filter);
    t->slot_code = calloc((size_t)slots, sizeof *t->slot_code);
    t->slot_first = malloc((size_t)slots * sizeof *t->slot_first);
    t->slot_count = malloc((size_t)slots * sizeof *t->slot_count);
    for (int64_t a = 0, b; a < n; a = b) {
        uint64_t code = t->entry[a] >> 33;
        for (b = a + 1; b < n && (t->entry[b] >> 33) == code; b++) {}
        if (b - a > max_occ) continue;
        uint64_t h = mix(code) & t->mask, f = filter_bit(code) & t->filter_mask;
        t->filter[f >> 6] |= 1ull << (f & 63);
        while (t->slot_code[h]) h = (h + 1) & t->mask;
        t->slot_code[h] = code + 1, t->slot_first[h] = (int32_t)a, t->slot_count[h] = (uint8_t)(b - a);
    }
    t->n = n;
    return t;
}

void chain_table_free(void *table)
{
    table_t *t = table;
    if (!t) return;
    free(t->entry), free(t->slot_code), free(t->slot_first), free(t->slot_count), free(t->filter), free(t);
}

typedef struct { int64_t q, s; int32_t again; } anchor_t;  /* again: its query base matched an earlier subject base */

#define SCORE_TOP ((1ull << 36) - 1)
#define ROW 8
#define MAX_ANCHORS (1ll << 28)

/* Scores are fixed point, SCALE to a base: integer sums are exact, so two paths worth the same score the same
   whatever order their terms were added in (the shortcut below relies on it; in floating point the plain loop and
   the shortcut could round a tie apart by one ulp). */
#define SCALE 65536

static int64_t gap_cost(int64_t drift, int k)
{
    return drift ? llround(SCALE * (0.01 * k * (double)drift + 0.5 * log2((double)drift))) : 0;
}

/* Chains of one strand's anchors (sorted by subject, then query position) into out rows of ROW int64:
   strand, query start, query end (on the strand's query: the reverse complement for minus), subject start,
   subject end, score, anchors, and where its anchors start in `pairs` (-1: not written). pairs (may be 0):
   each chain's anchors as (query, subject) pairs, appended at *pair_fill while pair_room lasts. Returns the
   rows written. */
static int64_t chain_strand(const anchor_t *a, int64_t n, int k, int64_t max_gap, int64_t band, int h,
                            double min_score, int strand, int64_t *out, int64_t room, int64_t *pairs,
                            int64_t pair_room, int64_t *pair_fill)
{
    if (n == 0 || room <= 0) return 0;
    int64_t *f = malloc((size_t)n * sizeof *f);
    int64_t *prev = malloc((size_t)n * sizeof *prev), *path = malloc((size_t)n * sizeof *path);
    uint64_t *order = malloc((size_t)n * sizeof *order);
    uint8_t *used = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) {
        f[i] = (int64_t)k * SCALE, prev[i] = -1;
        /* The next k-mer of an exact match (one base on along the same diagonal, no other anchor on the subject
           base before it) chains to the one before it: any other predecessor j could have chained to that one
           with the same drift and a gain at most one base shorter, so none scores more than f[i - 1] + 1 (ties
           keep the nearest, as the loop does). Not where the query base before matched another subject base too
           (a repeat: that anchor is no predecessor of i - 1), so the chains are the loop's exactly. Most anchors of
           a close relative are such, and the loop over h of them cost 80 % of its chaining. */
        if (i > 0 && a[i - 1].q == a[i].q - 1 && a[i - 1].s == a[i].s - 1 && !a[i - 1].again
            && (i < 2 || a[i - 2].s != a[i - 1].s)) {
            f[i] = f[i - 1] + SCALE, prev[i] = i - 1;
            continue;
        }
        for (int64_t j = i - 1, seen = 0; j >= 0 && seen < h; j--) {
            int64_t sd = a[i].s - a[j].s, qd = a[i].q - a[j].q;
            if (sd > max_gap) break;
            if (sd == 0) continue;
            seen++;
            if (qd <= 0 || qd > max_gap) continue;
            int64_t drift = qd > sd ? qd - sd : sd - qd;
            if (drift > band) continue;
            int64_t gain = qd < sd ? qd : sd;
            int64_t sc = f[j] + (gain < k ? gain : k) * (int64_t)SCALE - gap_cost(drift, k);
            if (sc > f[i]) f[i] = sc, prev[i] = j;
        }
    }
    /* best first: keys of (a quarter-base score, inverted) above the anchor's index (n < 2^28, scores < 2^34) */
    for (int64_t i = 0; i < n; i++) order[i] = ((SCORE_TOP - (uint64_t)(f[i] / (SCALE / 4))) << 28) | (uint64_t)i;
    radix_sort(order, n, 64);
    int64_t rows = 0;
    for (int64_t r = 0; r < n && rows < room; r++) {
        int64_t end = (int64_t)(order[r] & ((1ull << 28) - 1)), i = end, first = end, anchors = 0;
        if (used[end]) continue;
        int64_t base = 0;
        while (i >= 0 && !used[i]) used[i] = 1, first = i, path[anchors++] = i, i = prev[i];
        if (i >= 0) base = f[i];
        double score = (double)(f[end] - base) / SCALE;
        if (score < min_score) continue;
        int64_t *o = out + ROW * rows++;
        o[0] = strand, o[1] = a[first].q, o[2] = a[end].q + k, o[3] = a[first].s, o[4] = a[end].s + k;
        o[5] = (int64_t)score, o[6] = anchors, o[7] = -1;
        if (pairs && *pair_fill + anchors <= pair_room) {  /* the chain's anchors, in order: (query, subject) */
            o[7] = *pair_fill;
            for (int64_t j = 0; j < anchors; j++) {
                int64_t *pair = pairs + 2 * (*pair_fill + j);
                pair[0] = a[path[anchors - 1 - j]].q, pair[1] = a[path[anchors - 1 - j]].s;
            }
            *pair_fill += anchors;
        }
    }
    free(f), free(prev), free(path), free(order), free(used);
    return rows;
}

/* The chains of the query (its table) against subject s, both strands, into out (room rows of ROW; see
   chain_strand; query spans of minus-strand rows are on the query's reverse complement). Returns the rows
   written, best first within each strand; -1 where memory ran out, -2 past 2^28 anchors a strand. */
int64_t chain_regions(void *table, const uint8_t *s, int64_t slen, int64_t max_gap, int64_t band, int h,
                      double min_score, int64_t *out, int64_t room, int64_t *pairs, int64_t pair_room)
{
    table_t *t = table;
    int k = t->k;
    int64_t cap[2] = {1024, 1024}, n[2] = {0, 0};
    anchor_t *a[2] = {malloc(1024 * sizeof(anchor_t)), malloc(1024 * sizeof(anchor_t))};
    if (!a[0] || !a[1]) return -1;
    uint64_t *matched[2] = {calloc((size_t)(t->qlen / 64 + 1), 8), calloc((size_t)(t->qlen / 64 + 1), 8)};
    if (!matched[0] || !matched[1]) { free(a[0]), free(a[1]), free(matched[0]), free(matched[1]); return -1; }
    int64_t pos;
    uint64_t code;
    int orient;
    for (kmers_t it = kmers_of(s, slen, k, t->first_base); kmer_next(&it, &pos, &code, &orient);) {
        uint64_t fb = filter_bit(code) & t->filter_mask;
        if (!(t->filter[fb >> 6] >> (fb & 63) & 1)) continue;
        uint64_t hh = mix(code) & t->mask;
        while (t->slot_code[hh] && t->slot_code[hh] != code + 1) hh = (hh + 1) & t->mask;
        if (t->slot_code[hh]) {
            for (int64_t e = t->slot_first[hh], end = e + t->slot_count[hh]; e < end; e++) {
                int64_t qpos = (int64_t)((t->entry[e] >> 1) & 0xFFFFFFFFull);
                int minus = (int)(t->entry[e] & 1) != orient;
                int64_t qq = minus ? t->qlen - qpos - k : qpos;
                if (n[minus] == MAX_ANCHORS) { free(a[0]), free(a[1]), free(matched[0]), free(matched[1]); return -2; }
                if (n[minus] == cap[minus]) {
                    cap[minus] *= 2;
                    anchor_t *grown = realloc(a[minus], (size_t)cap[minus] * sizeof(anchor_t));
                    if (!grown) { free(a[0]), free(a[1]), free(matched[0]), free(matched[1]); return -1; }
                    a[minus] = grown;
                }
                uint64_t *m = matched[minus] + (qq >> 6), bit = 1ull << (qq & 63);
                a[minus][n[minus]].q = qq, a[minus][n[minus]].s = pos, a[minus][n[minus]].again = (*m & bit) != 0;
                *m |= bit, n[minus]++;
            }
        }
    }
    int64_t fill = 0;
    int64_t rows = chain_strand(a[0], n[0], k, max_gap, band, h, min_score, 0, out, room, pairs, pair_room, &fill);
    rows += chain_strand(a[1], n[1], k, max_gap, band, h, min_score, 1, out + ROW * rows, room - rows, pairs,
                         pair_room, &fill);
    free(a[0]), free(a[1]), free(matched[0]), free(matched[1]);
    return rows;
}
