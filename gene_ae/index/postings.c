/* The k-mer index's postings as nibble varints, and the one loop that searches them.

   A k-mer's postings are the segments holding it, in increasing order, written as gaps: the first segment
   itself, then the difference to the one before; a segment holding the k-mer c times is written c times (a
   gap of 0 for each repeat), so a search adds the query's weight once per occurrence and the count needs no
   array of its own. Each gap is a varint of 3-bit groups, most significant first, one group to a nibble
   whose high bit says another follows; nibble i is the high half of byte i / 2 when i is even. On 204,065
   SILVA genes 40 % of gaps are 1 (neighbouring records share k-mers): 0.86 bytes a posting against 2 for
   16-bit gaps. Loaded with ctypes by gene_ae/index/postings.py, which owns the format; no Python API here. */

#include <stdint.h>

static inline unsigned nibble_at(const uint8_t *s, int64_t i) { return (s[i >> 1] >> ((~i & 1) << 2)) & 15u; }

/* Adds the varint at *pos to *segment and moves *pos past it; nonzero where it runs past end. */
static inline int next_gap(const uint8_t *s, int64_t *pos, int64_t end, uint64_t *segment)
{
    uint64_t v = 0;
    unsigned x;
    do {
        if (*pos >= end) return 1;
        x = nibble_at(s, (*pos)++);
        v = (v << 3) | (x & 7u);
    } while (x & 8u);
    *segment += v;
    return 0;
}

static inline int64_t put(uint8_t *out, int64_t pos, uint64_t v)
{
    int n = 1;
    for (uint64_t x = v >> 3; x; x >>= 3) n++;
    for (int j = n - 1; j >= 0; j--, pos++) {
        unsigned x = (unsigned)((v >> (3 * j)) & 7u) | (j ? 8u : 0u);
        if (out) out[pos >> 1] |= (uint8_t)(x << ((~pos & 1) << 2));
    }
    return pos;
}

/* Rows of increasing column indices with their counts, to nibble varints. ptr[r] gets row r's first nibble
   (ptr has n_rows + 1 entries); out == 0 only measures (ptr filled, nothing written); out must be zeroed.
   Returns the nibbles used, or -1 where a row's indices do not increase. */
int64_t postings_encode(const int64_t *indptr, int64_t n_rows, const int32_t *indices, const uint32_t *counts,
                        uint8_t *out, int64_t *ptr)
{
    int64_t pos = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        ptr[r] = pos;
        int64_t prev = 0;
        for (int64_t e = indptr[r]; e < indptr[r + 1]; e++) {
            int64_t at = indices[e];
            if (at < prev || (e > indptr[r] && at == prev)) return -1;
            pos = put(out, pos, (uint64_t)(at - prev));
            for (uint32_t c = 1; c < counts[e]; c++) pos = put(out, pos, 0);
            prev = at;
        }
    }
    ptr[n_rows] = pos;
    return pos;
}

/* scores[segment] += weights[i] for every posting of every row rows[i]. Returns the postings read, or -1
   where the stream is damaged (row pointers out of order or past the stream's `nibbles`, a varint running past
   its row, a segment at or past n_segments). */
int64_t postings_accumulate(const uint8_t *stream, const int64_t *ptr, const int64_t *rows, const double *weights,
                            int64_t n, double *scores, int64_t n_segments, int64_t nibbles)
{
    int64_t read = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = ptr[rows[i]], end = ptr[rows[i] + 1];
        if (pos < 0 || end < pos || end > nibbles) return -1;  /* the row pointers, checked as they are read */
        uint64_t segment = 0;
        double w = weights[i];
        while (pos < end) {
            if (next_gap(stream, &pos, end, &segment) || segment >= (uint64_t)n_segments) return -1;
            scores[segment] += w;
            read++;
        }
    }
    return read;
}

/* The segments of rows rows[0..n) in order, one entry per occurrence, into out (sized by the caller from
   postings_count). Returns the entries written, or -1 where damaged as above or out would overflow. */
int64_t postings_decode(const uint8_t *stream, const int64_t *ptr, const int64_t *rows, int64_t n, int64_t *out,
                        int64_t room, int64_t n_segments, int64_t nibbles)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = ptr[rows[i]], end = ptr[rows[i] + 1];
        if (pos < 0 || end < pos || end > nibbles) return -1;
        uint64_t segment = 0;
        while (pos < end) {
            if (next_gap(stream, &pos, end, &segment) || segment >= (uint64_t)n_segments || k >= room) return -1;
            out[k++] = (int64_t)segment;
        }
    }
    return k;
}

/* How many entries (postings, a repeat counted each time) rows rows[0..n) hold: varint ends are the nibbles
   whose high bit is clear. */
int64_t postings_count(const uint8_t *stream, const int64_t *ptr, const int64_t *rows, int64_t n, int64_t nibbles)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = ptr[rows[i]], end = ptr[rows[i] + 1];
        if (pos < 0 || end < pos || end > nibbles) return -1;
        for (; pos < end; pos++) k += !(nibble_at(stream, pos) & 8u);
    }
    return k;
}
