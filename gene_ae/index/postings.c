/* The k-mer index's postings as nibble varints, and the one loop that searches them.

   A k-mer's postings are the segments holding it, in increasing order, written as gaps: the first segment
   itself, then the difference to the one before; a segment holding the k-mer c times is written c times (a
   gap of 0 for each repeat), so a search adds the query's weight once per occurrence and the count needs no
   array of its own. Each gap is a varint of 3-bit groups, most significant first, one group to a nibble
   whose high bit says another follows; nibble i is the high half of byte i / 2 when i is even. On 204,065
   SILVA genes 40 % of gaps are 1 (neighbouring records share k-mers): 0.86 bytes a posting against 2 for
   16-bit gaps.

   Runs (`runs` set; an index whose builder ordered its segments so that relatives are neighbours, which makes
   most gaps 1; 0.53 bytes a posting on those SILVA genes): the gaps are counted from -1 (the first segment s is
   a gap of s + 1) and each varint x is a token: 0 a repeat of the segment before, odd a gap of (x + 1) / 2, even a run of x / 2 + 1 segments each one
   after the one before (the members of a run held once each). Loaded with ctypes by gene_ae/index/postings.py,
   which owns the format; no Python API here. */

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* Bumped with every change to these functions' arguments or to the layout: postings.py refuses a library built
   from another version (an editable install not rebuilt after a pull would read runs as plain gaps). */
int postings_abi(void) { return 7; }

static inline unsigned nibble_at(const uint8_t *s, int64_t i) { return (s[i >> 1] >> ((~i & 1) << 2)) & 15u; }

/* Reads the varint at *pos into *v and moves *pos past it; nonzero where it runs past end. */
static inline int read_varint(const uint8_t *s, int64_t *pos, int64_t end, uint64_t *v)
{
    unsigned x;
    *v = 0;
    do {
        if (*pos >= end) return 1;
        x = nibble_at(s, (*pos)++);
        *v = (*v << 3) | (x & 7u);
    } while (x & 8u);
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

/* Reads the token at *pos: sets *first to the first segment it gives and returns how many it gives (a run:
   first, first + 1, ...), moving *segment to the last; 0 where it runs past end. */
static inline int64_t next_token(const uint8_t *s, int64_t *pos, int64_t end, int64_t *segment, int runs,
                                 int64_t *first)
{
    uint64_t v;
    if (read_varint(s, pos, end, &v) || v > ((uint64_t)1 << 62)) return 0;  /* no index has segments so far apart */
    if (!runs) {
        *first = *segment += (int64_t)v;
        return 1;
    }
    if (v == 0) {
        if (*segment < 0) return 0;  /* a repeat of nothing */
        *first = *segment;
        return 1;
    }
    if (v & 1) {
        *first = *segment += (int64_t)((v + 1) / 2);
        return 1;
    }
    int64_t r = (int64_t)(v / 2 + 1);
    *first = *segment + 1;
    *segment += r;
    return r;
}

static inline uint32_t count_at(const void *counts, int wide, int64_t e)
{
    return wide ? ((const uint32_t *)counts)[e] : ((const uint16_t *)counts)[e];
}

/* Rows of increasing column indices with their counts, to nibble varints (`runs`: the token code above). ptr[r]
   gets row r's first nibble (ptr has n_rows + 1 entries); out == 0 only measures (ptr filled, nothing written);
   out must be zeroed and hold what a measuring call gave for these very rows. `counts`: uint32 where `wide`, else
   uint16 (a segment's k-mer counts as the builder keeps them, not widened). Returns the nibbles used, or -1 where a
   row's indices do not increase. */
int64_t postings_encode(const int64_t *indptr, int64_t n_rows, const int32_t *indices, const void *counts, int wide,
                        uint8_t *out, int64_t *ptr, int runs)
{
    int64_t pos = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        ptr[r] = pos;
        int64_t prev = runs ? -1 : 0;
        for (int64_t e = indptr[r]; e < indptr[r + 1]; e++) {
            int64_t at = indices[e];
            if (at < prev || (e > indptr[r] && at == prev)) return -1;
            if (!runs) {
                pos = put(out, pos, (uint64_t)(at - prev));
            } else if (at == prev + 1 && count_at(counts, wide, e) == 1) {
                int64_t n = 1;  /* a run: the members after this one each one further and held once */
                while (e + n < indptr[r + 1] && indices[e + n] == at + n && count_at(counts, wide, e + n) == 1) n++;
                pos = put(out, pos, n == 1 ? 1u : (uint64_t)(2 * (n - 1)));
                e += n - 1, at += n - 1;
            } else {
                pos = put(out, pos, (uint64_t)(2 * (at - prev) - 1));
            }
            for (uint32_t c = 1; c < count_at(counts, wide, e); c++) pos = put(out, pos, 0);
            prev = at;
        }
    }
    ptr[n_rows] = pos;
    return pos;
}

/* sums[segment] += w for every posting of the row in nibbles [pos, end): next_token's reading, in one loop over
   the row's bytes (most tokens are one nibble: the loop over next_token spent 6 ns a nibble on SILVA's postings).
   Returns the postings read, or -1 where the row is damaged as next_token and postings_accumulate say. */
static int64_t accumulate_row(const uint8_t *s, int64_t pos, int64_t end, int runs, double w, double *sums,
                              int64_t n_segments)
{
    int64_t segment = runs ? -1 : 0, read = 0;
    uint64_t v = 0;
    unsigned x = 0;
    for (; pos < end; pos++) {
        x = nibble_at(s, pos);
        v = (v << 3) | (x & 7u);
        if (x & 8u) continue;  /* the varint goes on */
        if (v > ((uint64_t)1 << 62)) return -1;  /* next_token's bound: no index has segments so far apart */
        if (!runs) {
            segment += (int64_t)v;
            if (segment >= n_segments) return -1;
            sums[segment] += w, read++;
        } else if (v == 0) {
            if (segment < 0) return -1;  /* a repeat of nothing */
            sums[segment] += w, read++;
        } else if (v & 1) {
            segment += (int64_t)((v + 1) / 2);
            if (segment >= n_segments) return -1;
            sums[segment] += w, read++;
        } else {
            int64_t first = segment + 1, r = (int64_t)(v / 2 + 1);
            segment += r;
            if (segment >= n_segments) return -1;
            for (int64_t j = first; j <= segment; j++) sums[j] += w;
            read += r;
        }
        v = 0;
    }
    return (x & 8u) ? -1 : read;  /* a varint running past its row */
}

/* scores[order[segment]] += weights[i] for every posting of every row rows[i] (order == 0: scores[segment]).
   Returns the postings read, or -1 where the stream is damaged (row pointers out of order or past the stream's
   `nibbles`, a varint running past its row, a segment at or past n_segments; with an order the scores are then
   as they were, without one partly summed), -2 where memory ran out. */
int64_t postings_accumulate(const uint8_t *stream, const int64_t *ptr, const int64_t *rows, const double *weights,
                            int64_t n, double *scores, int64_t n_segments, int64_t nibbles, const int32_t *order,
                            int runs)
{
    /* With an order, the sums are made in stored positions (a run is a range of them, added in one sweep) and moved
       to the segments' own places once at the end: each segment's weights are added in the same order either way,
       so the scores are the same to the bit, without a scattered write per posting. */
    double *sums = scores;
    if (order && !(sums = calloc((size_t)(n_segments > 0 ? n_segments : 1), sizeof *sums))) return -2;
    int64_t read = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = ptr[rows[i]], end = ptr[rows[i] + 1];
        if (pos < 0 || end < pos || end > nibbles) { read = -1; break; }  /* the row pointers, checked as read */
        int64_t got = accumulate_row(stream, pos, end, runs, weights[i], sums, n_segments);
        if (got < 0) { read = -1; break; }
        read += got;
    }
    if (order) {
        if (read >= 0)
            for (int64_t j = 0; j < n_segments; j++) scores[order[j]] += sums[j];
        free(sums);
    }
    return read;
}

/* The segments of rows rows[0..n) in order, one entry per occurrence, into out (sized by the caller from
   postings_count), each mapped through order (0: as stored). Returns the entries written, or -1 where damaged
   as above or out would overflow. */
int64_t postings_decode(const uint8_t *stream, const int64_t *ptr, const int64_t *rows, int64_t n, int64_t *out,
                        int64_t room, int64_t n_segments, int64_t nibbles, const int32_t *order, int runs)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = ptr[rows[i]], end = ptr[rows[i] + 1];
        if (pos < 0 || end < pos || end > nibbles) return -1;
        int64_t segment = runs ? -1 : 0, first;
        while (pos < end) {
            int64_t got = next_token(stream, &pos, end, &segment, runs, &first);
            if (!got || first < 0 || segment >= n_segments || k + got > room) return -1;
            for (int64_t j = first; j <= segment; j++) out[k++] = order ? order[j] : j;
        }
    }
    return k;
}

/* How many entries (postings, a repeat counted each time) rows rows[0..n) hold: without runs, the varint ends
   (the nibbles whose high bit is clear); with runs, each token's. -1 where damaged. */
int64_t postings_count(const uint8_t *stream, const int64_t *ptr, const int64_t *rows, int64_t n, int64_t nibbles,
                       int runs)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = ptr[rows[i]], end = ptr[rows[i] + 1];
        if (pos < 0 || end < pos || end > nibbles) return -1;
        if (!runs) {
            for (; pos < end; pos++) k += !(nibble_at(stream, pos) & 8u);
            continue;
        }
        int64_t segment = -1, first;
        while (pos < end) {
            int64_t got = next_token(stream, &pos, end, &segment, 1, &first);
            if (!got) return -1;
            k += got;
        }
    }
    return k;
}

/* Ranges of the stream in file `fd` (its first byte at `offset`) read into buf with pread, one after another:
   range i is `sizes[i]` bytes from byte `starts[i]` of the stream. postings.py gives the byte ranges of the rows a
   search reads, sorted and merged where a few KB apart, and reads them with its own row pointers into buf. Why: a
   search reads a few thousand short rows of a file of GBs; mapped, each page it touches brings 64 KB around it into
   the process (the kernel's fault-around), most of a 10^6-gene index's postings after a query, where a read takes
   its bytes only. Returns 0, or -3 where a read failed or came short (the file shrank, or an I/O error). */
int64_t postings_read(int fd, int64_t offset, const int64_t *starts, const int64_t *sizes, int64_t n, uint8_t *buf)
{
    /* Every read asked of the kernel first, then read: from a cold cache the disk serves them together rather than
       one pread at a time (one query at 10^6 genes cold 1.50 -> 1.17 s; warm the same, A/B 1.005). */
#ifdef POSIX_FADV_WILLNEED
    for (int64_t i = 0; i < n; i++)  /* a length of 0 would mean "to the end of the file" */
        if (sizes[i] > 0) posix_fadvise(fd, (off_t)(offset + starts[i]), (off_t)sizes[i], POSIX_FADV_WILLNEED);
#endif
    for (int64_t i = 0; i < n; i++) {
        for (int64_t done = 0; done < sizes[i];) {
            ssize_t got = pread(fd, buf + done, (size_t)(sizes[i] - done), (off_t)(offset + starts[i] + done));
            if (got <= 0) return -3;
            done += got;
        }
        buf += sizes[i];
    }
    return 0;
}

/* Long row i of a long-row list of `width`-byte integers (compact.py's narrowest: 1, 2, 4 unsigned; 8 signed). */
static inline int64_t long_at(const void *p, int width, int64_t i)
{
    switch (width) {
    case 1: return ((const uint8_t *)p)[i];
    case 2: return ((const uint16_t *)p)[i];
    case 4: return ((const uint32_t *)p)[i];
    default: return ((const int64_t *)p)[i];
    }
}

/* The row pointers from each row's length in nibbles, a byte a row where 255 says the length is the next of
   `long_rows` (gene_ae/index/compact.py's split_lengths): ptr[0] = 0, ptr[r + 1] = ptr[r] + row r's length. One
   pass, where numpy's widen-mark-fill-sum took 7 ms of every shard's open at 10^6 genes. Returns the long rows
   read, or -1 where the lengths mark more than n_long. */

int64_t postings_pointers(const uint8_t *lengths, int64_t n, const void *long_rows, int width, int64_t n_long,
                          int64_t *ptr)
{
    int64_t at = 0, used = 0;
    ptr[0] = 0;
    for (int64_t r = 0; r < n; r++) {
        int64_t length = lengths[r];
        if (length == 255) {
            if (used == n_long) return -1;
            length = long_at(long_rows, width, used++);
        }
        at += length;
        ptr[r + 1] = at;
    }
    return used;
}

/* The row pointers of rows stored as lengths (a byte a row, 255: the next of long_rows) at the start of every block
   of 2^shift rows, and how many long rows came before each: at[b] and used[b] for b in 0..blocks, where blocks =
   ceil(n / 2^shift) and at[blocks] is the last row's end. So a search finds its rows' pointers from a block's start
   (postings_spans) instead of every row's, 2^20 of them a shard (8 MB written on every open). Returns the long rows
   read, or -1 where more rows are marked than long_rows holds. */
int64_t postings_blocks(const uint8_t *lengths, int64_t n, const void *long_rows, int width, int64_t n_long,
                        int shift, int64_t *at, int64_t *used)
{
    int64_t pos = 0, u = 0, b = 0;
    for (int64_t r = 0; r < n; r++) {
        if ((r & ((INT64_C(1) << shift) - 1)) == 0) {
            at[b] = pos;
            used[b++] = u;
        }
        int64_t length = lengths[r];
        if (length == 255) {
            if (u == n_long) return -1;
            length = long_at(long_rows, width, u++);
        }
        pos += length;
    }
    at[b] = pos;
    used[b] = u;
    return u;
}

/* The first nibble and the end of each of rows[0..k) from the blocks' at and used (postings_blocks', or as stored
   beside the lengths): lo[i], hi[i]. Returns 0, or -1 where a row is outside 0..n or a block's long rows pass
   n_long (a damaged table). */
int64_t postings_spans(const uint8_t *lengths, int64_t n, const void *long_rows, int width, int64_t n_long,
                       const int64_t *at, const int64_t *used, int shift, const int64_t *rows, int64_t k, int64_t *lo,
                       int64_t *hi)
{
    for (int64_t i = 0; i < k; i++) {
        int64_t r = rows[i];
        if (r < 0 || r >= n) return -1;
        int64_t b = r >> shift, pos = at[b], u = used[b];
        for (int64_t j = b << shift; j <= r; j++) {
            int64_t length = lengths[j];
            if (length == 255) {
                if (u < 0 || u >= n_long) return -1;
                length = long_at(long_rows, width, u++);
            }
            if (j == r) {
                lo[i] = pos;
                hi[i] = pos + length;
            }
            pos += length;
        }
    }
    return 0;
}

/* The transpose of a CSR matrix of n_rows rows (segments) and n_cols columns (k-mers) with 16-bit values: out_ptr
   (n_cols + 1), out_idx and out_val (nnz), each column's rows in increasing order. With `order` (n_rows, or NULL),
   row order[i] is taken as row i: the transpose of the rows in that order, each column's rows numbered by their
   place in it (a segment by where it is stored). Why not scipy's csr_tocsc: it writes every value straight to its
   column, a cache miss each (12.8 s for a 10^6-gene shard's 130 million values); here the values go first to one
   of 2^BUCKET_BITS runs of 2^(COL_BITS) columns, written as streams, then each run (a few MB) to its columns, in
   `groups` passes over the input, each staging the values of 1/groups of the runs (the largest group's values are
   what staging takes). `counts` (n_cols,
   or NULL: counted here, a pass of cache misses) is each column's number of values, as the caller may know them
   already; a column whose values do not match it, or outside 0..n_cols, is refused. Returns nnz, or -1 where
   memory for the staging runs could not be had, -2 where the columns are not those of `counts` or of 0..n_cols. */
#define COL_BITS 10
int64_t postings_transpose(const int64_t *indptr, int64_t n_rows, const int32_t *indices, const uint16_t *values,
                           const int32_t *order, int64_t n_cols, const int64_t *counts, int groups, int64_t *out_ptr,
                           int32_t *out_idx, uint16_t *out_val)
{
    int64_t nnz = indptr[n_rows], buckets = (n_cols + (1 << COL_BITS) - 1) >> COL_BITS;
    out_ptr[0] = 0;
    if (counts) {
        for (int64_t c = 0; c < n_cols; c++) {
            if (counts[c] < 0) return -2;
            out_ptr[c + 1] = out_ptr[c] + counts[c];
        }
        if (out_ptr[n_cols] != nnz) return -2;
    } else {
        for (int64_t c = 1; c <= n_cols; c++) out_ptr[c] = 0;
        for (int64_t j = 0; j < nnz; j++) {
            if (indices[j] < 0 || indices[j] >= n_cols) return -2;
            out_ptr[indices[j] + 1]++;
        }
        for (int64_t c = 0; c < n_cols; c++) out_ptr[c + 1] += out_ptr[c];
    }
    if (groups < 1) groups = 1;
    int64_t per = (buckets + groups - 1) / groups, most = 0;
    for (int64_t g = 0; g < groups; g++) {
        int64_t b0 = g * per, b1 = b0 + per < buckets ? b0 + per : buckets;
        if (b0 >= b1) break;
        int64_t lo = out_ptr[b0 << COL_BITS], hi = out_ptr[(b1 << COL_BITS) < n_cols ? (b1 << COL_BITS) : n_cols];
        if (hi - lo > most) most = hi - lo;
    }
    /* a staged value: its row (31 bits), its column within the run (COL_BITS) and its value (16 bits) */
    uint64_t *staged = malloc((size_t)(most > 0 ? most : 1) * sizeof(uint64_t));
    int64_t *head = malloc((size_t)(buckets + 1) * sizeof(int64_t)), *limit = malloc((size_t)(buckets + 1) * sizeof(int64_t));
    int64_t *next = malloc((size_t)(1 << COL_BITS) * sizeof(int64_t)), staged_all = 0;
    if (!staged || !head || !limit || !next) {
        free(staged), free(head), free(limit), free(next);
        return -1;
    }
    for (int64_t g = 0; g < groups; g++) {
        int64_t b0 = g * per, b1 = b0 + per < buckets ? b0 + per : buckets;
        if (b0 >= b1) break;
        int64_t c0 = b0 << COL_BITS, c1 = (b1 << COL_BITS) < n_cols ? (b1 << COL_BITS) : n_cols, base = out_ptr[c0];
        for (int64_t b = b0; b < b1; b++) {
            head[b - b0] = out_ptr[b << COL_BITS] - base;
            limit[b - b0] = out_ptr[(b + 1) << COL_BITS < n_cols ? (b + 1) << COL_BITS : n_cols] - base;
        }
        for (int64_t i = 0; i < n_rows; i++) {
            int64_t r = order ? order[i] : i;
            for (int64_t j = indptr[r]; j < indptr[r + 1]; j++) {
                int64_t c = indices[j], at;
                if (c < c0 || c >= c1) continue;
                at = head[(c >> COL_BITS) - b0]++;
                if (at >= limit[(c >> COL_BITS) - b0]) { /* more values in this run than `counts` gave it */
                    free(staged), free(head), free(limit), free(next);
                    return -2;
                }
                staged[at] = ((uint64_t)i << (COL_BITS + 16)) | ((uint64_t)(c & ((1 << COL_BITS) - 1)) << 16) | values[j];
            }
        }
        for (int64_t b = b0; b < b1; b++) {
            if (head[b - b0] != limit[b - b0]) { /* a run short of what `counts` gave it: a value outside its columns */
                free(staged), free(head), free(limit), free(next);
                return -2;
            }
            staged_all += head[b - b0] - (out_ptr[b << COL_BITS] - base);
        }
        for (int64_t b = b0; b < b1; b++) {
            int64_t first = b << COL_BITS, start = out_ptr[first] - base;
            int64_t end = out_ptr[(b + 1) << COL_BITS < n_cols ? (b + 1) << COL_BITS : n_cols] - base;
            for (int64_t k = 0; k < (1 << COL_BITS) && first + k < n_cols; k++) next[k] = out_ptr[first + k];
            for (int64_t s = start; s < end; s++) {
                uint64_t v = staged[s];
                int64_t k = (v >> 16) & ((1 << COL_BITS) - 1), at = next[k]++;
                if (at >= out_ptr[first + k + 1]) { /* a column with more values than `counts` gave it */
                    free(staged), free(head), free(limit), free(next);
                    return -2;
                }
                out_idx[at] = (int32_t)(v >> (COL_BITS + 16));
                out_val[at] = (uint16_t)(v & 0xFFFF);
            }
        }
    }
    free(staged), free(head), free(limit), free(next);
    return staged_all == nnz ? nnz : -2; /* a value outside 0..n_cols is in no run */
}
