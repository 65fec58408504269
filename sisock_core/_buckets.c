/* Base-tier summaries (sisock_core.summaries) of blocks of samples, decoded and reduced
 * in one pass: what a g3 scan computes for every numeric field it indexes.
 *
 * Optional: sisock_core.summaries uses numpy when this module is not built (no C compiler
 * at install time). The numbers are the numpy path's, bit for bit: times are ticks / second,
 * buckets floor(t / width); sums are numpy's pairwise summation as np.add.reduceat computes
 * them (NaN as 0); the extrema are the values of their first samples (NaN ignored). Only
 * the buffer protocol is used: no numpy headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* numpy's pairwise summation (PW_BLOCKSIZE 128); VAL maps each value (NaN to 0, or not) */
#define PAIRWISE_SUM(NAME, VAL)                                                             \
    static double NAME(const double *a, Py_ssize_t n)                                       \
    {                                                                                       \
        if (n < 8) {                                                                        \
            double res = -0.; /* as numpy: -0.0 + -0.0 stays -0.0 */                       \
            for (Py_ssize_t i = 0; i < n; i++)                                              \
                res += VAL(a[i]);                                                           \
            return res;                                                                     \
        }                                                                                   \
        else if (n <= 128) {                                                                \
            double r[8];                                                                    \
            Py_ssize_t i;                                                                   \
            for (int j = 0; j < 8; j++)                                                     \
                r[j] = VAL(a[j]);                                                           \
            for (i = 8; i < n - (n % 8); i += 8)                                            \
                for (int j = 0; j < 8; j++)                                                 \
                    r[j] += VAL(a[i + j]);                                                  \
            double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])); \
            for (; i < n; i++)                                                              \
                res += VAL(a[i]);                                                           \
            return res;                                                                     \
        }                                                                                   \
        else {                                                                              \
            Py_ssize_t n2 = n / 2;                                                          \
            n2 -= n2 % 8;                                                                   \
            return NAME(a, n2) + NAME(a + n2, n - n2);                                      \
        }                                                                                   \
    }
#define AS_IS(x) (x)
#define NAN_AS_0(x) (isnan(x) ? 0.0 : (x))
PAIRWISE_SUM(pairwise_sum, AS_IS)
PAIRWISE_SUM(pairwise_sum_nan_as_0, NAN_AS_0)

/* The smallest and largest of v[s:e] (e > s); 1 if one of them is NaN (then mn and mx
 * mean nothing). Either of two equal values may be given (0.0 or -0.0). */
static inline int extrema(const double *v, int64_t s, int64_t e, double *mn, double *mx)
{
#if defined(__SSE2__)
    if (e - s >= 4) { /* two lanes at a time; an odd last value is taken with its neighbour again */
        __m128d lo = _mm_loadu_pd(v + s), hi = lo, nan = _mm_cmpunord_pd(lo, lo);
        int64_t i = s + 2;
        for (; i + 2 <= e; i += 2) {
            const __m128d x = _mm_loadu_pd(v + i);
            lo = _mm_min_pd(lo, x);
            hi = _mm_max_pd(hi, x);
            nan = _mm_or_pd(nan, _mm_cmpunord_pd(x, x));
        }
        if (i < e) {
            const __m128d x = _mm_loadu_pd(v + e - 2);
            lo = _mm_min_pd(lo, x);
            hi = _mm_max_pd(hi, x);
            nan = _mm_or_pd(nan, _mm_cmpunord_pd(x, x));
        }
        if (_mm_movemask_pd(nan))
            return 1;
        double l[2], h[2];
        _mm_storeu_pd(l, lo);
        _mm_storeu_pd(h, hi);
        *mn = l[1] < l[0] ? l[1] : l[0];
        *mx = h[1] > h[0] ? h[1] : h[0];
        return 0;
    }
#endif
    double a = v[s], b = v[s];
    int nan = isnan(v[s]);
    for (int64_t i = s + 1; i < e; i++) {
        const double x = v[i];
        nan |= isnan(x);
        a = x < a ? x : a;
        b = x > b ? x : b;
    }
    *mn = a;
    *mx = b;
    return nan;
}

/* The first index from s where v equals x (there is one) */
static inline int64_t first_equal(const double *v, int64_t s, double x)
{
    int64_t i = s;
#if defined(__SSE2__)
    const __m128d xx = _mm_set1_pd(x);
    for (;; i += 2) { /* reads at most one value past the one found (v has room for it) */
        const int hit = _mm_movemask_pd(_mm_cmpeq_pd(_mm_loadu_pd(v + i), xx));
        if (hit)
            return i + (hit & 1 ? 0 : 1);
    }
#else
    while (v[i] != x)
        i++;
    return i;
#endif
}

/* Of v[s:e]: the count of values that are not NaN, the first indices and the values of
 * the extrema (none: s and NaN), and the sum as np.add.reduceat computes it (NaN as 0):
 * the first value plus the pairwise sum of the others. */
static inline void reduce_bucket(const double *v, int64_t s, int64_t e, int64_t *count, int64_t *i_min,
                                 int64_t *i_max, double *vmin, double *vmax, double *vsum)
{
    double mn, mx;
    int64_t lo, hi;
    if (!extrema(v, s, e, &mn, &mx)) { /* no NaN, the usual case: the first samples equal to them */
        lo = first_equal(v, s, mn);
        hi = first_equal(v, s, mx);
        *count = e - s;
        *i_min = lo;
        *i_max = hi;
        *vmin = v[lo];
        *vmax = v[hi];
        *vsum = e - s == 1 ? v[s] : v[s] + pairwise_sum(v + s + 1, e - s - 1);
        return;
    }
    int64_t c = 0;
    lo = hi = -1;
    mn = mx = NAN;
    for (int64_t i = s; i < e; i++) {
        const double x = v[i];
        if (isnan(x))
            continue;
        if (c++ == 0) {
            mn = mx = x;
            lo = hi = i;
        }
        else if (x < mn) {
            mn = x;
            lo = i;
        }
        else if (x > mx) {
            mx = x;
            hi = i;
        }
    }
    *count = c;
    *i_min = lo < 0 ? s : lo;
    *i_max = hi < 0 ? s : hi;
    *vmin = mn;
    *vmax = mx;
    const double head = isnan(v[s]) ? 0.0 : v[s];
    *vsum = e - s == 1 ? head : head + pairwise_sum_nan_as_0(v + s + 1, e - s - 1);
}

/* A 1-D buffer of numbers read as doubles, whatever its stride: int64 ('q', 'l') or
 * float64 ('d'). */
typedef struct {
    Py_buffer buf;
    int held;
    char kind;          /* 'i' or 'f' */
    Py_ssize_t stride;  /* bytes (an exporter may give no strides: contiguous then) */
} Vec;

static int get_vec(PyObject *obj, Vec *vec, const char *what)
{
    if (PyObject_GetBuffer(obj, &vec->buf, PyBUF_STRIDES | PyBUF_FORMAT) < 0)
        return -1;
    vec->held = 1;
    const char *f = vec->buf.format ? vec->buf.format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@')
        f++;
    if (vec->buf.ndim != 1 || vec->buf.itemsize != 8 ||
        !(strcmp(f, "d") == 0 || strcmp(f, "q") == 0 || strcmp(f, "l") == 0)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a vector of float64 or int64, got format %s (%zd dimensions)",
                     what, f, (Py_ssize_t)vec->buf.ndim);
        return -1;
    }
    vec->kind = f[0] == 'd' ? 'f' : 'i';
    vec->stride = vec->buf.strides ? vec->buf.strides[0] : vec->buf.itemsize;
    return 0;
}

/* (memcpy: the buffer need not be aligned; compilers make it one load) */
static inline int64_t int64_at(const Vec *vec, Py_ssize_t i)
{
    int64_t x;
    memcpy(&x, (const char *)vec->buf.buf + i * vec->stride, 8);
    return x;
}

static inline double vec_at(const Vec *vec, Py_ssize_t i)
{
    if (vec->kind == 'f') {
        double x;
        memcpy(&x, (const char *)vec->buf.buf + i * vec->stride, 8);
        return x;
    }
    return (double)int64_at(vec, i);
}

/* The bytes of column x (m 8-byte values) as 8 planes, byte j of every value in turn */
static void put_planes(unsigned char *restrict dst, const void *x, Py_ssize_t m)
{
    const unsigned char *src = x;
    Py_ssize_t b = 0;
#if defined(__SSE2__)
    for (; b + 16 <= m; b += 16) { /* 16 values: an 8 x 16 byte transpose in four rounds of unpacking */
        const unsigned char *p = src + 8 * b;
        __m128i r[8], a[8], c[8];
        for (int j = 0; j < 8; j++)
            r[j] = _mm_loadu_si128((const __m128i *)(p + 16 * j)); /* values 2j, 2j + 1 */
        for (int j = 0; j < 4; j++) { /* bytes of values 4j, 4j + 2 / 4j + 1, 4j + 3, interleaved */
            a[2 * j] = _mm_unpacklo_epi8(r[2 * j], r[2 * j + 1]);
            a[2 * j + 1] = _mm_unpackhi_epi8(r[2 * j], r[2 * j + 1]);
        }
        for (int j = 0; j < 4; j++) { /* of values 4j .. 4j + 3: bytes 0-3 / 4-7, each a 32-bit lane */
            r[2 * j] = _mm_unpacklo_epi8(a[2 * j], a[2 * j + 1]);
            r[2 * j + 1] = _mm_unpackhi_epi8(a[2 * j], a[2 * j + 1]);
        }
        for (int h = 0; h < 2; h++) { /* bytes 4h .. 4h + 3: pairs of planes, values 0-7 and 8-15 */
            c[4 * h] = _mm_unpacklo_epi32(r[h], r[2 + h]);
            c[4 * h + 1] = _mm_unpackhi_epi32(r[h], r[2 + h]);
            c[4 * h + 2] = _mm_unpacklo_epi32(r[4 + h], r[6 + h]);
            c[4 * h + 3] = _mm_unpackhi_epi32(r[4 + h], r[6 + h]);
        }
        for (int h = 0; h < 2; h++)
            for (int q = 0; q < 2; q++) {
                const __m128i lo = c[4 * h + q], hi = c[4 * h + 2 + q];
                _mm_storeu_si128((__m128i *)(dst + (4 * h + 2 * q) * m + b), _mm_unpacklo_epi64(lo, hi));
                _mm_storeu_si128((__m128i *)(dst + (4 * h + 2 * q + 1) * m + b), _mm_unpackhi_epi64(lo, hi));
            }
    }
#endif
    for (; b < m; b++) {
        const unsigned char *p = src + 8 * b;
        dst[b] = p[0];
        dst[m + b] = p[1];
        dst[2 * m + b] = p[2];
        dst[3 * m + b] = p[3];
        dst[4 * m + b] = p[4];
        dst[5 * m + b] = p[5];
        dst[6 * m + b] = p[6];
        dst[7 * m + b] = p[7];
    }
}

#define ROW_HEAD 12 /* the header of a row: struct "<qI" */

/* Per field, its row as sisock_core.summaries.pack_many(compressed=False) lays it out: the
 * header (the first bucket's number, the buckets), then 12 columns
 * of m values as byte planes: k as differences (the first 0), n, count, t_first, t_last,
 * t_min, t_max as offsets from their bucket's start k * width, first, last, vmin, vmax,
 * vsum. */
static PyObject *pack_fields(Py_ssize_t m, Py_ssize_t nf, double width, PyObject *shared, PyObject *per_field)
{
    const int64_t *k = (const int64_t *)PyByteArray_AS_STRING(shared), *n = k + m;
    const double *t_first = (const double *)(n + m), *t_last = t_first + m;
    int64_t *dk = PyMem_Malloc(sizeof(int64_t) * (size_t)m);
    double *base = PyMem_Malloc(sizeof(double) * (size_t)m), *rel = PyMem_Malloc(sizeof(double) * (size_t)m);
    PyObject *out = PyList_New(nf);
    if (dk == NULL || base == NULL || rel == NULL || out == NULL) {
        if (out != NULL || PyErr_Occurred() == NULL)
            PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t b = 0; b < m; b++) {
        dk[b] = b == 0 ? 0 : k[b] - k[b - 1];
        base[b] = (double)k[b] * width;
    }
    for (Py_ssize_t f = 0; f < nf; f++) {
        const int64_t *count = (const int64_t *)PyByteArray_AS_STRING(PyList_GET_ITEM(per_field, f));
        const double *cols = (const double *)(count + m); /* t_min, t_max, first, last, vmin, vmax, vsum */
        PyObject *row = PyBytes_FromStringAndSize(NULL, ROW_HEAD + 12 * 8 * m);
        if (row == NULL)
            goto fail;
        PyList_SET_ITEM(out, f, row);
        unsigned char *head = (unsigned char *)PyBytes_AS_STRING(row), *dst = head + ROW_HEAD;
        for (int byte = 0; byte < 8; byte++) /* the first bucket's number, int64, then m, uint32: little-endian */
            head[byte] = (unsigned char)((uint64_t)k[0] >> (8 * byte));
        for (int byte = 0; byte < 4; byte++)
            head[8 + byte] = (unsigned char)((uint64_t)m >> (8 * byte));
        const Py_ssize_t plane = 8 * m;
        put_planes(dst, dk, m);
        put_planes(dst + plane, n, m);
        put_planes(dst + 2 * plane, count, m);
        const double *times[4] = {t_first, t_last, cols, cols + m};
        for (int c = 0; c < 4; c++) {
            for (Py_ssize_t b = 0; b < m; b++)
                rel[b] = times[c][b] - base[b];
            put_planes(dst + (3 + c) * plane, rel, m);
        }
        for (int c = 0; c < 5; c++)
            put_planes(dst + (7 + c) * plane, cols + (2 + c) * m, m);
    }
    PyMem_Free(dk);
    PyMem_Free(base);
    PyMem_Free(rel);
    return out;
fail:
    PyMem_Free(dk);
    PyMem_Free(base);
    PyMem_Free(rel);
    Py_XDECREF(out);
    return NULL;
}

PyDoc_STRVAR(summarize_blocks_doc,
"summarize_blocks(width, second, times, fields, packed=False) -> (m, shared, per_field, kinds) or None\n\n"
"Base-tier summaries of blocks of samples, decoded and reduced in one pass: ``times`` are\n"
"the blocks' time vectors (int64 ticks, ``second`` ticks a second), ``fields`` a list per\n"
"field of its vectors in the same blocks (float64 or int64). Returns the number of buckets\n"
"m, a bytearray of 4 x m columns shared by the fields (k, n as int64; t_first, t_last),\n"
"a list of bytearrays of 8 x m columns, one per field in their order (count as int64;\n"
"t_min, t_max, first, last, vmin, vmax, vsum), and each field's kind ('f' or 'i'); None if the times\n"
"are not ascending. The numbers equal those of sisock_core.summaries' numpy path.\n"
"With packed, a list of each field's row as sisock_core.summaries.pack_many lays it\n"
"out before compressing it (compressed=False) follows per_field.");

static PyObject *summarize_blocks(PyObject *self, PyObject *args)
{
    double width, second;
    PyObject *times_obj, *fields_obj;
    int packed = 0;
    if (!PyArg_ParseTuple(args, "ddO!O!|p:summarize_blocks", &width, &second, &PyList_Type, &times_obj,
                          &PyList_Type, &fields_obj, &packed))
        return NULL;
    if (!(width > 0) || !(second > 0)) {
        PyErr_SetString(PyExc_ValueError, "width and second must be positive");
        return NULL;
    }
#define TIME(tk) ((double)(tk) / second)
    Py_ssize_t nblocks = PyList_GET_SIZE(times_obj), nf = PyList_GET_SIZE(fields_obj);
    Vec *vecs = PyMem_Calloc((size_t)(nblocks * (nf + 1)) + 1, sizeof(Vec));
    int64_t *ticks = NULL;
    double *v = NULL;
    int64_t *starts = NULL;
    PyObject *result = NULL, *shared = NULL, *per_field = NULL, *kinds = NULL;
    if (vecs == NULL)
        return PyErr_NoMemory();
    Py_ssize_t total = 0;
    for (Py_ssize_t j = 0; j < nblocks; j++) {
        if (get_vec(PyList_GET_ITEM(times_obj, j), &vecs[j], "times") < 0)
            goto done;
        if (vecs[j].kind != 'i') {
            PyErr_SetString(PyExc_TypeError, "times: expected int64 ticks");
            goto done;
        }
        total += vecs[j].buf.shape[0];
    }
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *blocks = PyList_GET_ITEM(fields_obj, f);
        if (!PyList_Check(blocks) || PyList_GET_SIZE(blocks) != nblocks) {
            PyErr_Format(PyExc_ValueError, "field %zd: expected a list of %zd vectors", f, nblocks);
            goto done;
        }
        for (Py_ssize_t j = 0; j < nblocks; j++) {
            Vec *vec = &vecs[(f + 1) * nblocks + j];
            if (get_vec(PyList_GET_ITEM(blocks, j), vec, "values") < 0)
                goto done;
            if (vec->buf.shape[0] != vecs[j].buf.shape[0]) {
                PyErr_Format(PyExc_ValueError, "field %zd, block %zd: %zd values for %zd times", f, j,
                             vec->buf.shape[0], vecs[j].buf.shape[0]);
                goto done;
            }
            if (j > 0 && vec->kind != vecs[(f + 1) * nblocks].kind) {
                PyErr_Format(PyExc_TypeError, "field %zd: vectors of different types", f);
                goto done;
            }
        }
    }
    if (total == 0) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    ticks = PyMem_Malloc(sizeof(int64_t) * (size_t)total);
    v = PyMem_Malloc(sizeof(double) * (size_t)(total + 1)); /* + 1: first_equal may read a pair past the last */
    starts = PyMem_Malloc(sizeof(int64_t) * (size_t)(total + 1));
    if (ticks == NULL || v == NULL || starts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    v[total] = 0.;
    /* the ticks, ascending, and where each bucket starts; a time is ticks / second, its
     * bucket floor(time / width), as numpy computes them, but only where needed */
    Py_ssize_t m = 0, i = 0;
    int sorted = 1;
    double kprev = 0.;
    uint64_t below = 0;        /* ticks from 0 to below: in bucket kprev, surely (0: none known) */
    int64_t prev = INT64_MIN;
    for (Py_ssize_t j = 0; j < nblocks && sorted; j++) {
        /* in locals: the stores to ticks could alias the Vec's fields otherwise */
        const char *p = vecs[j].buf.buf;
        const Py_ssize_t stride = vecs[j].stride, n = vecs[j].buf.shape[0];
        for (Py_ssize_t q = 0; q < n; q++, i++) {
            int64_t tk;
            memcpy(&tk, p + q * stride, 8);
            ticks[i] = tk;
            /* ascending, short of the next bucket: no division (a negative tick is huge as
               unsigned: never taken) */
            if (tk >= prev && (uint64_t)tk < below) {
                prev = tk;
                continue;
            }
            if (tk < prev) {
                sorted = 0;
                break;
            }
            prev = tk;
            const double kf = floor(TIME(tk) / width);
            if (i == 0 || kf != kprev)
                starts[m++] = i;
            kprev = kf;
            /* 1e-9 short of (k + 1) w: floor(t / w) is k there, whatever the roundings */
            const double edge = (kf + 1.) * width * second * (1. - 1e-9);
            below = kf >= 0. && edge < 9.0e18 ? (uint64_t)edge : 0;
        }
    }
    if (!sorted) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    starts[m] = total;
    shared = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(4 * 8 * m));
    per_field = PyList_New(nf); /* a bytearray per field: a field's buckets kept alone keep no others */
    kinds = PyUnicode_New(nf, 127);
    if (shared == NULL || per_field == NULL || kinds == NULL)
        goto done;
    {
        int64_t *k = (int64_t *)PyByteArray_AS_STRING(shared), *n = k + m;
        double *t_first = (double *)(n + m), *t_last = t_first + m;
        for (Py_ssize_t b = 0; b < m; b++) {
            k[b] = (int64_t)floor(TIME(ticks[starts[b]]) / width);
            n[b] = starts[b + 1] - starts[b];
            t_first[b] = TIME(ticks[starts[b]]);
            t_last[b] = TIME(ticks[starts[b + 1] - 1]);
        }
    }
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *columns = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(8 * 8 * m));
        if (columns == NULL)
            goto done;
        PyList_SET_ITEM(per_field, f, columns);
        const Vec *fv = &vecs[(f + 1) * nblocks];
        PyUnicode_WRITE(PyUnicode_1BYTE_KIND, PyUnicode_DATA(kinds), f, nblocks ? fv->kind : 'f');
        i = 0;
        for (Py_ssize_t j = 0; j < nblocks; j++) {
            const Vec *vec = &fv[j];
            if (vec->kind == 'f' && vec->stride == 8) {
                memcpy(v + i, vec->buf.buf, 8 * (size_t)vec->buf.shape[0]);
                i += vec->buf.shape[0];
            }
            else
                for (Py_ssize_t q = 0; q < vec->buf.shape[0]; q++)
                    v[i++] = vec_at(vec, q);
        }
        int64_t *count = (int64_t *)PyByteArray_AS_STRING(columns);
        double *t_min = (double *)(count + m), *t_max = t_min + m, *first = t_max + m, *last = first + m,
               *vmin = last + m, *vmax = vmin + m, *vsum = vmax + m;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t b = 0; b < m; b++) {
            const int64_t s = starts[b], e = starts[b + 1];
            int64_t c, lo, hi;
            double mn, mx, sum;
            reduce_bucket(v, s, e, &c, &lo, &hi, &mn, &mx, &sum);
            count[b] = c;
            t_min[b] = TIME(ticks[lo]);
            t_max[b] = TIME(ticks[hi]);
            first[b] = v[s];
            last[b] = v[e - 1];
            vmin[b] = mn;
            vmax[b] = mx;
            vsum[b] = sum;
        }
        Py_END_ALLOW_THREADS
    }
    if (packed) {
        PyObject *payloads = pack_fields(m, nf, width, shared, per_field);
        if (payloads == NULL)
            goto done;
        result = Py_BuildValue("nOONO", m, shared, per_field, payloads, kinds);
    }
    else
        result = Py_BuildValue("nOOO", m, shared, per_field, kinds);
done:
    Py_XDECREF(shared);
    Py_XDECREF(per_field);
    Py_XDECREF(kinds);
    for (Py_ssize_t j = 0; j < nblocks * (nf + 1); j++)
        if (vecs[j].held)
            PyBuffer_Release(&vecs[j].buf);
    PyMem_Free(vecs);
    PyMem_Free(ticks);
    PyMem_Free(v);
    PyMem_Free(starts);
    return result;
}

#undef TIME

PyDoc_STRVAR(join_columns_doc,
"join_columns(pieces, ncols) -> bytearray\n\n"
"Pieces of ncols columns of 8-byte values each (piece i: ncols x m_i values, column after\n"
"column; anything with the buffer protocol) joined column by column: ncols x sum(m_i).");

static PyObject *join_columns(PyObject *self, PyObject *args)
{
    PyObject *pieces;
    Py_ssize_t ncols;
    if (!PyArg_ParseTuple(args, "O!n:join_columns", &PyList_Type, &pieces, &ncols))
        return NULL;
    if (ncols <= 0) {
        PyErr_SetString(PyExc_ValueError, "ncols must be positive");
        return NULL;
    }
    const Py_ssize_t np = PyList_GET_SIZE(pieces);
    Py_buffer *bufs = PyMem_Calloc((size_t)np + 1, sizeof(Py_buffer));
    if (bufs == NULL)
        return PyErr_NoMemory();
    Py_ssize_t held = 0, total = 0;
    PyObject *out = NULL;
    for (; held < np; held++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(pieces, held), &bufs[held], PyBUF_SIMPLE) < 0)
            goto done;
        if (bufs[held].len % (8 * ncols) != 0) {
            PyErr_Format(PyExc_ValueError, "piece %zd: %zd bytes are not %zd columns of 8-byte values", held,
                         bufs[held].len, ncols);
            held++;
            goto done;
        }
        total += bufs[held].len / (8 * ncols);
    }
    out = PyByteArray_FromStringAndSize(NULL, 8 * ncols * total);
    if (out == NULL)
        goto done;
    {
        char *dst = PyByteArray_AS_STRING(out);
        Py_ssize_t at = 0; /* values of each column written so far */
        for (Py_ssize_t i = 0; i < np; i++) {
            const Py_ssize_t m = bufs[i].len / (8 * ncols);
            for (Py_ssize_t c = 0; c < ncols; c++)
                memcpy(dst + 8 * (c * total + at), (const char *)bufs[i].buf + 8 * c * m, 8 * (size_t)m);
            at += m;
        }
    }
done:
    for (Py_ssize_t i = 0; i < held; i++)
        PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
    return out;
}

static PyMethodDef methods[] = {
    {"summarize_blocks", summarize_blocks, METH_VARARGS, summarize_blocks_doc},
    {"join_columns", join_columns, METH_VARARGS, join_columns_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_buckets",
    "Base-tier summaries of blocks of samples in C (optional: numpy otherwise).", -1, methods,
};

PyMODINIT_FUNC PyInit__buckets(void)
{
    return PyModule_Create(&module);
}
