/* k-mer counts of many token rows in one pass, as CSR (gene_ae/core/kmers.py's kmer_count_rows owns the format).

   Why in C: numpy built each code in k passes over the bases and then sorted every (row, k-mer) pair of a chunk
   as one int64 array; the index builder spent a fifth of its time there (SILVA's 100,000-gene val split). Here a
   row's k-mers roll base by base, are sorted by a radix sort of their columns and run-length counted. The codes,
   the hash, the sample and the buckets are kmers.py's, to the bit: a test compares every count with its numpy
   definition (kmer_codes, hash_bucket, hash_kept). Loaded with ctypes; no Python API here. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KMER_HASH 0x9E3779B97F4A7C15ULL
#define PIECE ((int64_t)1 << 20) /* k-mers of a long row sorted at a time; the row's counts merged piece by piece */
#define RADIX_BITS 11

/* A k-mer rolled base by base: its code and its reverse complement's (first base most significant, as kmers.py
   codes them) and how many real bases end here (a token outside A..T starts it again). */
typedef struct { uint64_t fwd, rev, mask; int top, run, k; } roll_t;

static roll_t roll_start(int k)
{
    roll_t r = {0, 0, ((uint64_t)1 << (2 * k)) - 1, 2 * (k - 1), 0, k};
    return r;
}

/* Take base b (a token less first_base); returns whether a real k-mer ends here, its code roll_code's. */
static inline int roll(roll_t *r, int b)
{
    if (b < 0 || b > 3) {
        r->run = 0, r->fwd = 0, r->rev = 0;
        return 0;
    }
    r->fwd = ((r->fwd << 2) | (uint64_t)b) & r->mask;
    r->rev = (r->rev >> 2) | ((uint64_t)(3 - b) << r->top);
    if (r->run < r->k) r->run++;
    return r->run == r->k;
}

static inline uint64_t roll_code(const roll_t *r, int canonical)
{
    return canonical && r->rev < r->fwd ? r->rev : r->fwd;
}

/* keys[0..n) sorted ascending (tmp: room for n); `bits`: every key is below 2^bits. */
static void radix_sort(uint32_t *keys, uint32_t *tmp, int64_t n, int bits)
{
    if (n < 64) {
        for (int64_t i = 1; i < n; i++) {
            uint32_t v = keys[i];
            int64_t j = i;
            for (; j > 0 && keys[j - 1] > v; j--) keys[j] = keys[j - 1];
            keys[j] = v;
        }
        return;
    }
    int64_t count[1 << RADIX_BITS];
    uint32_t *from = keys, *to = tmp;
    for (int shift = 0; shift < bits; shift += RADIX_BITS) {
        memset(count, 0, sizeof count);
        for (int64_t i = 0; i < n; i++) count[(from[i] >> shift) & ((1 << RADIX_BITS) - 1)]++;
        int64_t sum = 0;
        for (int b = 0; b < (1 << RADIX_BITS); b++) {
            int64_t c = count[b];
            count[b] = sum, sum += c;
        }
        for (int64_t i = 0; i < n; i++) to[count[(from[i] >> shift) & ((1 << RADIX_BITS) - 1)]++] = from[i];
        uint32_t *t = from;
        from = to, to = t;
    }
    if (from != keys) memcpy(keys, from, (size_t)n * sizeof *keys);
}

/* Sorted keys[0..n) as distinct columns and their counts; returns how many. */
static int64_t run_lengths(const uint32_t *keys, int64_t n, int32_t *cols, float *counts)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i + 1;
        while (j < n && keys[j] == keys[i]) j++;
        cols[m] = (int32_t)keys[i], counts[m] = (float)(j - i), m++;
        i = j;
    }
    return m;
}

/* (a, na) and (b, nb), each sorted, summed into (a, returned length): a has room for the result. */
static int64_t merge_into(int32_t *a_cols, float *a_n, int64_t na, const int32_t *b_cols, const float *b_n,
                          int64_t nb, int32_t *m_cols, float *m_n)
{
    int64_t i = 0, j = 0, m = 0;
    while (i < na || j < nb) {
        if (j >= nb || (i < na && a_cols[i] < b_cols[j])) m_cols[m] = a_cols[i], m_n[m++] = a_n[i++];
        else if (i >= na || b_cols[j] < a_cols[i]) m_cols[m] = b_cols[j], m_n[m++] = b_n[j++];
        else m_cols[m] = a_cols[i], m_n[m++] = a_n[i++] + b_n[j++];
    }
    memcpy(a_cols, m_cols, (size_t)m * sizeof *a_cols);
    memcpy(a_n, m_n, (size_t)m * sizeof *a_n);
    return m;
}

/* Row r is tokens[bounds[r] .. bounds[r + 1]). Its k-mers with no token outside first_base .. first_base + 3,
   canonical (the smaller of the code and its reverse complement's) when asked, kept when scaled is 1 or bits
   12..31 of their hash are 0 modulo scaled, go to column code (hashed 0) or the hash's high 32 bits modulo dim
   (hashed 1); each row's distinct columns, increasing, with their counts, into indices / data from indptr[r],
   indptr[r + 1] set. The caller gives room for min(k-mers, dim) entries a row. Returns the entries written, -1
   if memory ran out. */
int64_t kmer_rows(const uint8_t *tokens, const int64_t *bounds, int64_t n_rows, int k, int canonical, int64_t dim,
                  int hashed, int64_t scaled, int first_base, int64_t *indptr, int32_t *indices, float *data)
{
    int64_t longest = 0;
    for (int64_t r = 0; r < n_rows; r++)
        if (bounds[r + 1] - bounds[r] > longest) longest = bounds[r + 1] - bounds[r];
    int64_t room = longest < PIECE ? longest : PIECE;
    int bits = 1;
    while (bits < 32 && ((uint64_t)1 << bits) < (uint64_t)dim) bits++;
    uint32_t *keys = malloc((size_t)(room + 1) * sizeof *keys), *tmp = malloc((size_t)(room + 1) * sizeof *tmp);
    int32_t *piece_cols = NULL, *merged_cols = NULL;
    float *piece_n = NULL, *merged_n = NULL;
    int64_t merged_room = 0;
    if (!keys || !tmp) goto fail;
    int64_t out = 0;
    indptr[0] = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *s = tokens + bounds[r];
        int64_t len = bounds[r + 1] - bounds[r], n = 0, m = 0;
        roll_t kmer = roll_start(k);
        for (int64_t i = 0; i < len; i++) {
            if (roll(&kmer, (int)s[i] - first_base)) {
                uint64_t code = roll_code(&kmer, canonical), h = code * KMER_HASH;
                if (scaled <= 1 || ((h >> 12) & 0xFFFFF) % (uint64_t)scaled == 0)
                    keys[n++] = (uint32_t)(hashed ? (h >> 32) % (uint64_t)dim : code);
            }
            if (n == room || (i == len - 1 && n > 0)) { /* a piece full, or the row's end: sort and count */
                radix_sort(keys, tmp, n, bits);
                if (m == 0) {
                    m = run_lengths(keys, n, indices + out, data + out);
                } else {
                    if (!piece_cols) {
                        piece_cols = malloc((size_t)room * sizeof *piece_cols);
                        piece_n = malloc((size_t)room * sizeof *piece_n);
                        if (!piece_cols || !piece_n) goto fail;
                    }
                    int64_t q = run_lengths(keys, n, piece_cols, piece_n);
                    if (m + q > merged_room) {
                        merged_room = m + q;
                        free(merged_cols), free(merged_n);
                        merged_cols = malloc((size_t)merged_room * sizeof *merged_cols);
                        merged_n = malloc((size_t)merged_room * sizeof *merged_n);
                        if (!merged_cols || !merged_n) goto fail;
                    }
                    m = merge_into(indices + out, data + out, m, piece_cols, piece_n, q, merged_cols, merged_n);
                }
                n = 0;
            }
        }
        out += m;
        indptr[r + 1] = out;
    }
    free(keys), free(tmp), free(piece_cols), free(piece_n), free(merged_cols), free(merged_n);
    return out;
fail:
    free(keys), free(tmp), free(piece_cols), free(piece_n), free(merged_cols), free(merged_n);
    return -1;
}

/* The model's k-mer ids of one row (gene_ae/model/bags.py's kmer_ids, the same ids to the bit: a test compares
   them): ids[i] for each of the len - k + 1 starts, the code (canonical when asked) or, hashed, the hash's high 32
   bits modulo buckets; a k-mer holding a token outside first_base .. first_base + 3 gets the pad id, buckets. The
   torch loops stay for training on the model's device; embedding on the CPU spent 70 % of its time in them. */
void kmer_id_row(const uint8_t *tokens, int64_t len, int k, int canonical, int64_t buckets, int hashed,
                 int first_base, int64_t *ids)
{
    roll_t kmer = roll_start(k);
    for (int64_t i = 0; i < len; i++) {
        int real = roll(&kmer, (int)tokens[i] - first_base);
        if (i < k - 1) continue;
        uint64_t code = roll_code(&kmer, canonical);
        if (!real) ids[i - k + 1] = buckets;
        else ids[i - k + 1] = hashed ? (int64_t)(((code * KMER_HASH) >> 32) % (uint64_t)buckets) : (int64_t)code;
    }
}
