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

/* For each of n subjects (subject i is s[offsets[i] .. offsets[i + 1])), the most exact k-mer matches with the
   query (its table) on one band of `band` adjacent diagonals of one strand, into out[i]: a chain without the dynamic
   programming, cheap enough to rank thousands of candidates by co-linear matches before any is aligned (a 30 % copy
   keeps ~6 % of its 8-mers, most on its source's diagonal; an unrelated record's chance matches scatter). Returns
   0; -1 where memory ran out. */
int64_t chain_band_counts(void *table, const uint8_t *s, const int64_t *offsets, int64_t n, int64_t band,
                          int32_t *out)
{
    table_t *t = table;
    int k = t->k;
    int64_t longest = 0;
    for (int64_t i = 0; i < n; i++)
        if (offsets[i + 1] - offsets[i] > longest) longest = offsets[i + 1] - offsets[i];
    int64_t width = longest + t->qlen + 1;  /* diagonals: subject position - query position + qlen */
    int32_t *hist = malloc((size_t)(2 * width) * sizeof *hist);
    if (!hist) return -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t slen = offsets[i + 1] - offsets[i], w = slen + t->qlen + 1, pos;
        memset(hist, 0, (size_t)w * sizeof *hist), memset(hist + width, 0, (size_t)w * sizeof *hist);
        uint64_t code;
        int orient;
        for (kmers_t it = kmers_of(s + offsets[i], slen, k, t->first_base); kmer_next(&it, &pos, &code, &orient);) {
            uint64_t fb = filter_bit(code) & t->filter_mask;
            if (!(t->filter[fb >> 6] >> (fb & 63) & 1)) continue;
            uint64_t hh = mix(code) & t->mask;
            while (t->slot_code[hh] && t->slot_code[hh] != code + 1) hh = (hh + 1) & t->mask;
            if (!t->slot_code[hh]) continue;
            for (int64_t e = t->slot_first[hh], end = e + t->slot_count[hh]; e < end; e++) {
                int64_t qpos = (int64_t)((t->entry[e] >> 1) & 0xFFFFFFFFull);
                int minus = (int)(t->entry[e] & 1) != orient;
                int64_t qq = minus ? t->qlen - qpos - k : qpos;  /* on the strand's query, as chain_regions */
                hist[minus * width + pos - qq + t->qlen]++;
            }
        }
        int32_t best = 0;
        for (int strand = 0; strand < 2; strand++) {
            const int32_t *h = hist + strand * width;
            int32_t sum = 0;
            for (int64_t d = 0; d < w; d++) {
                sum += h[d] - (d >= band ? h[d - band] : 0);
                if (sum > best) best = sum;
            }
        }
        out[i] = best;
    }
    free(hist);
    return 0;
}

/* ---- A chain's path as an extended CIGAR (chain.py's chain_path says what it is; this is its loop) ---- */

typedef struct { char *out; int64_t len, room; } text_t;

static void put_run(text_t *t, int64_t n, char op)
{
    char digits[24];
    int d = 0;
    do digits[d++] = (char)('0' + n % 10), n /= 10; while (n);
    if (t->len + d + 1 <= t->room) {
        while (d) t->out[t->len++] = digits[--d];
        t->out[t->len++] = op;
    } else {
        t->len += d + 1;  /* measured only: the caller sizes the buffer again */
    }
}

/* Room for gap_path's bit-parallel table, kept across the gaps of one path. */
typedef struct {
    uint64_t *pv, *mv, *peq;  /* each column's vertical deltas (+1, -1) a block of 64 query bases; the query's
                                 match masks, a symbol a row of blocks */
    int32_t *top;             /* each column's distance at the row above each block */
    char *ops;
    int64_t cells, peq_words, op_room;  /* room: pv, mv and top entries (each), peq words, ops */
} work_t;

static int grow(void **p, int64_t *have, int64_t need, size_t size)
{
    if (need <= *have) return 0;
    void *q = realloc(*p, (size_t)need * size);
    if (!q) return 1;
    *p = q, *have = need;
    return 0;
}

/* One block of Myers' bit-vector edit distance (Hyyro's form, as edlib computes it): vertical deltas pv / mv of a
   column given the last one's, the block's match mask eq and the horizontal delta hin entering from above;
   returns the delta leaving its last row. */
static inline int advance(uint64_t *pv, uint64_t *mv, uint64_t eq, int hin)
{
    uint64_t p = *pv, m = *mv, xv = eq | m;
    if (hin < 0) eq |= 1;
    uint64_t xh = (((eq & p) + p) ^ p) | eq, ph = m | ~(xh | p), mh = p & xh;
    int hout = (int)(ph >> 63) - (int)(mh >> 63);
    ph <<= 1, mh <<= 1;
    if (hin < 0) mh |= 1;
    else if (hin > 0) ph |= 1;
    *pv = mh | ~(xv | ph), *mv = ph & xv;
    return hout;
}

/* The edit distance of q[0..i) and s[0..j) from the table (row 0 the plain boundary; column 0 stored, all +1). */
static inline int32_t cell(const work_t *w, int64_t nb, int64_t i, int64_t j)
{
    if (i == 0) return (int32_t)j;
    int64_t b = (i - 1) >> 6, r = (i - 1) & 63, at = j * nb + b;
    uint64_t mask = r == 63 ? ~0ull : (1ull << (r + 1)) - 1;
    return w->top[at] + __builtin_popcountll(w->pv[at] & mask) - __builtin_popcountll(w->mv[at] & mask);
}

/* The unit-cost global path of q[0..m) against s[0..n) (both non-empty), as edlib's NW path: every column's
   distances by Myers' bit-vector loop (64 query bases a word, as edlib), then traced back from the end preferring
   a query base alone (I), then a subject base alone (D), then the diagonal (edlib's order: the same path where
   its band holds every cell of the paths it keeps); runs merged. Returns nonzero where memory ran out. */
static int gap_path(const uint8_t *q, int64_t m, const uint8_t *s, int64_t n, work_t *w, text_t *t)
{
    int64_t nb = (m + 63) >> 6;
    int16_t sym[256];
    int64_t kinds = 0;
    memset(sym, -1, sizeof sym);
    for (int64_t i = 0; i < m; i++)
        if (sym[q[i]] < 0) sym[q[i]] = (int16_t)kinds++;
    int64_t cells = (n + 1) * nb;
    if (grow((void **)&w->peq, &w->peq_words, kinds * nb + nb, 8) || grow((void **)&w->ops, &w->op_room, m + n, 1))
        return 1;
    if (cells > w->cells) {  /* pv, mv and top grow together */
        void *pv = realloc(w->pv, (size_t)cells * 8), *mv = pv ? realloc(w->mv, (size_t)cells * 8) : 0;
        void *top = mv ? realloc(w->top, (size_t)cells * 4) : 0;
        w->pv = pv ? pv : w->pv, w->mv = mv ? mv : w->mv, w->top = top ? top : w->top;
        if (!top) return 1;
        w->cells = cells;
    }
    memset(w->peq, 0, (size_t)(kinds * nb + nb) * 8);  /* the last row of blocks: a symbol the query lacks */
    for (int64_t i = 0; i < m; i++) w->peq[sym[q[i]] * nb + (i >> 6)] |= 1ull << (i & 63);
    for (int64_t b = 0; b < nb; b++) w->pv[b] = ~0ull, w->mv[b] = 0, w->top[b] = (int32_t)(64 * b);
    for (int64_t j = 1; j <= n; j++) {
        const uint64_t *eq = w->peq + (sym[s[j - 1]] < 0 ? kinds : sym[s[j - 1]]) * nb;
        uint64_t *pv = w->pv + j * nb, *mv = w->mv + j * nb;
        int32_t *tp = w->top + j * nb;
        int hin = 1;  /* row 0 grows by one a column */
        for (int64_t b = 0; b < nb; b++) {
            pv[b] = pv[b - nb], mv[b] = mv[b - nb];
            tp[b] = b ? tp[b - 1] + __builtin_popcountll(pv[b - 1]) - __builtin_popcountll(mv[b - 1]) : (int32_t)j;
            hin = advance(pv + b, mv + b, eq[b], hin);
        }
    }
    int64_t i = m, j = n, len = 0;
    char *ops = w->ops;
    while (i > 0 || j > 0) {
        int32_t here = cell(w, nb, i, j);  /* column 0 is in the table too: its distances are i */
        if (i > 0 && cell(w, nb, i - 1, j) + 1 == here) ops[len++] = 'I', i--;
        else if (j > 0 && cell(w, nb, i, j - 1) + 1 == here) ops[len++] = 'D', j--;
        else ops[len++] = cell(w, nb, i - 1, j - 1) == here ? '=' : 'X', i--, j--;
    }
    for (int64_t a = len - 1; a >= 0;) {  /* the ops were traced from the end */
        int64_t b = a;
        while (b > 0 && ops[b - 1] == ops[a]) b--;
        put_run(t, a - b + 1, ops[a]);
        a = b - 1;
    }
    return 0;
}

static void free_work(work_t *w) { free(w->pv), free(w->mv), free(w->peq), free(w->top), free(w->ops); }

/* The path of a chain's anchors (n (query, subject) starts in order, the query on the chain's strand) as
   extended CIGAR text in out (room bytes), exactly chain.py's Python reading of it: runs of matches where
   anchors overlap on one diagonal, the gaps between them aligned (gap_path), `ends` (4 values, or 0) the
   extended chain's spans its first and last runs may reach. A gap whose table would take edlib max_table bytes
   or more (chain.py's EDLIB_TABLE: edlib's band beats a whole table there; at most 2^20, past which edlib splits
   by Hirschberg's method and its ties fall elsewhere) is written as '?' with its (query start, query end, subject
   start, subject end) in gaps (4 a gap, gap_room gaps) for the caller to align. Returns the text's length (over
   room: nothing usable written, call again with that room), or -1 where memory ran out; *n_gaps the big gaps. */
int64_t chain_path_text(const uint8_t *query, const uint8_t *subject, const int64_t *anchors, int64_t n, int k,
                        const int64_t *ends, int64_t max_table, char *out, int64_t room, int64_t *gaps,
                        int64_t gap_room, int64_t *n_gaps)
{
    text_t t = {out, 0, room};
    *n_gaps = 0;
    if (n <= 0) return 0;
    work_t w = {0};
    int64_t qs = -1, qe = -1, se = -1;
    for (int64_t first = 0, next; first < n; first = next) {
        int64_t dg = anchors[2 * first] - anchors[2 * first + 1], last = first;
        while (last + 1 < n && anchors[2 * (last + 1)] - anchors[2 * (last + 1) + 1] == dg
               && anchors[2 * (last + 1)] <= anchors[2 * last] + k)
            last++;
        int64_t q = anchors[2 * first], q_last = anchors[2 * last];
        next = last + 1;
        if (qe < 0) {
            qs = q, qe = q_last + k, se = q_last + k - dg;
            if (ends && ends[0] - ends[2] == dg && ends[0] < qs) qs = ends[0];
            continue;
        }
        if (dg == qe - se && q <= qe) {
            qe = q_last + k, se = q_last + k - dg;
            continue;
        }
        if (q < qe || q - dg < se) {  /* its first anchors cross the run: the first at or past it */
            int64_t need = qe > se + dg ? qe : se + dg, j = first;
            while (j <= last && anchors[2 * j] < need) j++;
            if (j > last) continue;
            q = anchors[2 * j];
        }
        put_run(&t, qe - qs, '=');
        int64_t qg = q - qe, sg = q - dg - se;
        if (qg > 0 && sg > 0) {
            if ((20 * ((qg + 63) >> 6) + 8) * sg >= max_table) {  /* edlib's table bytes: its band wins there */
                if (*n_gaps < gap_room) {
                    int64_t *g = gaps + 4 * *n_gaps;
                    g[0] = qe, g[1] = q, g[2] = se, g[3] = q - dg;
                }
                (*n_gaps)++;
                if (t.len < t.room) t.out[t.len] = '?';
                t.len++;
            } else {
                if (gap_path(query + qe, qg, subject + se, sg, &w, &t)) { free_work(&w); return -1; }
            }
        } else if (qg > 0) {
            put_run(&t, qg, 'I');
        } else if (sg > 0) {
            put_run(&t, sg, 'D');
        }
        qs = q, qe = q_last + k, se = q_last + k - dg;
    }
    if (ends && ends[1] - ends[3] == qe - se && ends[1] > qe) qe = ends[1];
    put_run(&t, qe - qs, '=');
    free_work(&w);
    return t.len;
}
