/* The order an index stores its segments in: recursive graph bisection (Dhulipala et al., "Compressing graphs and
   indexes with recursive graph bisection", KDD 2016), so that segments sharing k-mers are neighbours and a k-mer's
   postings are runs and short gaps.

   The segments [lo, hi) are split into halves; each segment's gain, the bits its k-mers' postings would save were
   it in the other half (a posting list's cost taken as d log2(n / (d + 1)) in each half, d of the half's n segments
   holding the k-mer), is summed over its k-mers; the left half's best are swapped with the right half's best while
   a pair's gains sum above 0, a few rounds, then each half is split the same way, down to leaves of `leaf`
   segments. Loaded with ctypes by gene_ae/index/order.py; no Python API here. */

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct ranked { double gain; int64_t at; int32_t seg; } ranked_t;  /* a segment and where it is */

typedef struct {
    const int64_t *ptr;  /* segment i's k-mers: terms[ptr[i] .. ptr[i + 1]) */
    const int32_t *terms;
    int32_t *deg[2];     /* per k-mer: the segments of each half holding it (zero outside a call) */
    double *gain_of[2];  /* per k-mer: what a segment of that half holding it gains by moving */
    double *log2i;       /* log2(i) for i in 0 .. segments + 1 */
    double *gain;        /* per segment */
    ranked_t *rank;      /* room to rank both halves of a split */
    int iters, leaf;
    int64_t n_terms, n;  /* for a second thread's own buffers */
    int threads;         /* threads left to split across: the two halves of a split are independent */
} bp_t;

static double cost(const bp_t *b, int64_t d, int64_t n) { return (double)d * (b->log2i[n] - b->log2i[d + 1]); }

static int by_gain(const void *x, const void *y)
{
    const ranked_t *a = x, *c = y;
    if (a->gain != c->gain) return a->gain < c->gain ? 1 : -1;  /* highest first, ties where they were */
    return (a->at > c->at) - (a->at < c->at);
}

/* The segments seg[lo..lo + n), with their places, into rank sorted by their gains, highest first (seg as it is). */
static void rank_half(const bp_t *b, const int32_t *seg, int64_t lo, int64_t n, ranked_t *rank)
{
    for (int64_t i = 0; i < n; i++) rank[i].gain = b->gain[seg[lo + i]], rank[i].at = lo + i, rank[i].seg = seg[lo + i];
    qsort(rank, (size_t)n, sizeof *rank, by_gain);
}

static int split_across(bp_t *b, int32_t *seg, int64_t lo, int64_t mid, int64_t hi);

static void bisect(bp_t *b, int32_t *seg, int64_t lo, int64_t hi)
{
    if (hi - lo <= b->leaf) return;
    int64_t mid = lo + (hi - lo) / 2, n[2] = {mid - lo, hi - mid};
    for (int round = 0; round < b->iters; round++) {
        for (int64_t i = lo; i < hi; i++)
            for (int64_t e = b->ptr[seg[i]]; e < b->ptr[seg[i] + 1]; e++) b->deg[i >= mid][b->terms[e]]++;
        for (int64_t i = lo; i < hi; i++)  /* each k-mer's two gains (again for each segment holding it: the same) */
            for (int64_t e = b->ptr[seg[i]]; e < b->ptr[seg[i] + 1]; e++) {
                int32_t t = b->terms[e];
                int64_t d0 = b->deg[0][t], d1 = b->deg[1][t];
                double now = cost(b, d0, n[0]) + cost(b, d1, n[1]);
                b->gain_of[0][t] = d0 ? now - cost(b, d0 - 1, n[0]) - cost(b, d1 + 1, n[1]) : 0.0;
                b->gain_of[1][t] = d1 ? now - cost(b, d0 + 1, n[0]) - cost(b, d1 - 1, n[1]) : 0.0;
            }
        for (int64_t i = lo; i < hi; i++) {
            double g = 0.0;
            int side = i >= mid;
            for (int64_t e = b->ptr[seg[i]]; e < b->ptr[seg[i] + 1]; e++) g += b->gain_of[side][b->terms[e]];
            b->gain[seg[i]] = g;
        }
        for (int64_t i = lo; i < hi; i++)  /* zero the degrees again for the next round or node */
            for (int64_t e = b->ptr[seg[i]]; e < b->ptr[seg[i] + 1]; e++) b->deg[0][b->terms[e]] = b->deg[1][b->terms[e]] = 0;
        /* each half sorted by gain (equal gains keep their order), then its best movers swap with the other's:
           sorting the halves, not only swapping the movers into each other's places, measured smaller postings
           (SILVA's 99,117-segment shard 44.6 MB against 50.7) */
        ranked_t *left = b->rank, *right = b->rank + n[0];
        rank_half(b, seg, lo, n[0], left);
        rank_half(b, seg, mid, n[1], right);
        int64_t swaps = 0;
        for (int64_t i = 0; i < n[0]; i++) seg[lo + i] = left[i].seg;
        for (int64_t i = 0; i < n[1]; i++) seg[mid + i] = right[i].seg;
        for (int64_t i = 0; i < n[0] && i < n[1]; i++) {
            if (left[i].gain + right[i].gain <= 0.0) break;
            seg[lo + i] = right[i].seg, seg[mid + i] = left[i].seg, swaps++;
        }
        if (!swaps) break;
    }
    if (b->threads > 1 && mid - lo > b->leaf && !split_across(b, seg, lo, mid, hi)) return;
    bisect(b, seg, lo, mid);
    bisect(b, seg, mid, hi);
}

typedef struct { bp_t b; int32_t *seg; int64_t lo, hi; } half_t;

static void *bisect_half(void *arg)
{
    half_t *h = arg;
    bisect(&h->b, h->seg, h->lo, h->hi);
    return NULL;
}

static int fill(bp_t *b)
{
    b->deg[0] = calloc((size_t)b->n_terms + 1, 4), b->deg[1] = calloc((size_t)b->n_terms + 1, 4);
    b->gain_of[0] = malloc(((size_t)b->n_terms + 1) * 8), b->gain_of[1] = malloc(((size_t)b->n_terms + 1) * 8);
    b->rank = malloc(((size_t)b->n + 1) * sizeof(ranked_t));
    return b->deg[0] && b->deg[1] && b->gain_of[0] && b->gain_of[1] && b->rank;
}

static void drop(bp_t *b) { free(b->deg[0]), free(b->deg[1]), free(b->gain_of[0]), free(b->gain_of[1]), free(b->rank); }

/* The right half bisected on a thread of its own (with its own per-k-mer buffers; the segments' gains are the
   halves' own), the left on this one, each then splitting its halves the same way while threads are left: the
   order is the one a single thread makes. Returns 0 when done so, or -1 (nothing done: bisect goes on alone). */
static int split_across(bp_t *b, int32_t *seg, int64_t lo, int64_t mid, int64_t hi)
{
    half_t right = {*b, seg, mid, hi};
    pthread_t thread;
    right.b.threads = b->threads / 2;
    if (!fill(&right.b)) {
        drop(&right.b);
        return -1;
    }
    if (pthread_create(&thread, NULL, bisect_half, &right)) {
        drop(&right.b);
        return -1;
    }
    int threads = b->threads;
    b->threads = threads - threads / 2;
    bisect(b, seg, lo, mid);
    b->threads = threads;
    pthread_join(thread, NULL);
    drop(&right.b);
    return 0;
}

/* Reorders seg (a permutation of the n segments, the starting order) in place. ptr / terms: each segment's k-mers
   (distinct, numbered below n_terms). Returns 0, or -1 where memory ran out (seg then as it was, or partly
   reordered: still a permutation). */
int bp_order(const int64_t *ptr, const int32_t *terms, int64_t n, int64_t n_terms, int32_t *seg, int iters, int leaf,
             int threads)
{
    bp_t b = {ptr, terms, {NULL, NULL}, {NULL, NULL}, malloc(((size_t)n + 2) * 8), malloc(((size_t)n + 1) * 8), NULL,
              iters, leaf < 2 ? 2 : leaf, n_terms, n, threads < 1 ? 1 : threads};
    int ok = fill(&b) && b.log2i && b.gain;
    if (ok) {
        b.log2i[0] = 0.0;
        for (int64_t i = 1; i <= n + 1; i++) b.log2i[i] = log2((double)i);
        bisect(&b, seg, 0, n);
    }
    drop(&b), free(b.log2i), free(b.gain);
    return ok ? 0 : -1;
}
