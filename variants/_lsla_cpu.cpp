// Fused window attention of the LSLA family on CPU, fp32, forward (no autograd):
//
//     out = (softmax(Q K^T * S + B) + B_o) V        (or / S; or softmax(.) * B_o)
//
// one (window, head) tile at a time, its N x N logits never leaving the cache. Built and loaded
// by variants/_lsla_cpu.py (plain C ABI through ctypes; no torch headers, so it builds in about
// a second). GCC/Clang vector extensions keep it portable: 16-float vectors map to AVX-512,
// pairs of AVX2 registers or NEON quads, whatever -march=native offers.
#include <cstdint>
#include <pthread.h>
#include <vector>

namespace {

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));  // unaligned loads/stores
typedef int32_t i16 __attribute__((vector_size(64)));
constexpr int NPMAX = 64;  // tokens per window, at most (tables are padded to 16 * NV)

// exp of each lane (Cephes' expf, ~1 ulp); lanes below -87.3 (the -inf mask) give exactly 0
inline v16 vexp(v16 x) {
    v16 c = x < -87.3f ? (v16){} - 87.3f : x;
    c = c > 88.3f ? (v16){} + 88.3f : c;
    v16 fx = c * 1.44269504088896341f + 0.5f;
    v16 fl = __builtin_convertvector(__builtin_convertvector(fx, i16), v16);
    fl = fl > fx ? fl - 1.0f : fl;  // floor
    v16 r = c - fl * 0.693359375f + fl * 2.12194440e-4f;
    v16 y = ((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r +
              4.1665795894E-2f) * r + 1.6666665459E-1f) * r + 5.0000001201E-1f;
    y = y * (r * r) + r + 1.0f;
    v16 two_n = (v16)((__builtin_convertvector(fl, i16) + 127) << 23);
    return x < -87.3f ? (v16){} : y * two_n;
}

inline float hmax(v16 v) {
    float m = v[0];
    for (int l = 1; l < 16; ++l) m = v[l] > m ? v[l] : m;
    return m;
}

inline float hsum(v16 v) {
    float s = 0.0f;
    for (int l = 0; l < 16; ++l) s += v[l];
    return s;
}

struct Tile {  // one (window, head): rows of Q, K, V and O at their strides, its table rows
    const float *q, *k, *v;
    float* o;
    long qn, kn, vn, on;           // row strides
    const float *s, *bias, *outer;  // [N][16 * NV] each; s and outer may be null
};

struct Flags {
    int n;
    float qscale;  // fixed scale, multiplied into Q as timm does (1 when s is given)
    bool scale_div, outer_mul;
};

// one row of logits: scale, bias (padding lanes carry -inf), softmax, outer term -> a
template <int NV>
inline void finish_row(v16* l, const Tile& t, const Flags& f, int i, float* a) {
    constexpr int NP = 16 * NV;
    v16 m = (v16){} - __builtin_inff();
    for (int c = 0; c < NV; ++c) {
        if (t.s) {
            v16 s = *(const v16u*)(t.s + i * NP + 16 * c);
            l[c] = f.scale_div ? l[c] / s : l[c] * s;
        }
        l[c] += *(const v16u*)(t.bias + i * NP + 16 * c);
        m = l[c] > m ? l[c] : m;
    }
    float mx = hmax(m);
    v16 sum = (v16){};
    for (int c = 0; c < NV; ++c) {
        l[c] = vexp(l[c] - mx);
        sum += l[c];
    }
    float inv = 1.0f / hsum(sum);
    for (int c = 0; c < NV; ++c) {
        v16 p = l[c] * inv;
        if (t.outer) {
            v16 b = *(const v16u*)(t.outer + i * NP + 16 * c);
            p = f.outer_mul ? p * b : p + b;
        }
        *(v16u*)(a + i * NP + 16 * c) = p;
    }
}

// rows i0 .. i0+R of Q K^T against the transposed keys kt [D][NV], then finished into a
template <int NV, int D, int R>
inline void logit_rows(const Tile& t, const Flags& f, const v16 (*kt)[NV], int i0, float* a) {
    v16 acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < NV; ++c) acc[r][c] = (v16){};
    for (int d = 0; d < D; ++d)
        for (int r = 0; r < R; ++r) {
            float qv = t.q[(i0 + r) * t.qn + d] * f.qscale;
            for (int c = 0; c < NV; ++c) acc[r][c] += qv * kt[d][c];
        }
    for (int r = 0; r < R; ++r) finish_row<NV>(acc[r], t, f, i0 + r, a);
}

// rows i0 .. i0+R of A V into O
template <int NV, int DV, int R>
inline void value_rows(const Tile& t, int n, const float* a, int i0) {
    constexpr int NP = 16 * NV;
    v16 acc[R][DV];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < DV; ++c) acc[r][c] = (v16){};
    for (int j = 0; j < n; ++j) {
        v16 vj[DV];
        for (int c = 0; c < DV; ++c) vj[c] = *(const v16u*)(t.v + j * t.vn + 16 * c);
        for (int r = 0; r < R; ++r) {
            float w = a[(i0 + r) * NP + j];
            for (int c = 0; c < DV; ++c) acc[r][c] += w * vj[c];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < DV; ++c) *(v16u*)(t.o + (i0 + r) * t.on + 16 * c) = acc[r][c];
}

template <int NV, int DV>
void attend_tile(const Tile& t, const Flags& f) {
    constexpr int NP = 16 * NV, D = 16 * DV;
    const int n = f.n;
    v16 kt[D][NV];  // K^T, zero beyond the n keys
    for (int d = 0; d < D; ++d)
        for (int c = 0; c < NV; ++c) kt[d][c] = (v16){};
    for (int j = 0; j < n; ++j)
        for (int d = 0; d < D; ++d) kt[d][j / 16][j % 16] = t.k[j * t.kn + d];
    alignas(64) float a[NPMAX * NP];
    int i = 0;
    for (; i + 4 <= n; i += 4) logit_rows<NV, D, 4>(t, f, kt, i, a);
    for (; i < n; ++i) logit_rows<NV, D, 1>(t, f, kt, i, a);
    for (i = 0; i + 6 <= n; i += 6) value_rows<NV, DV, 6>(t, n, a, i);
    for (; i < n; ++i) value_rows<NV, DV, 1>(t, n, a, i);
}

typedef void (*TileFn)(const Tile&, const Flags&);

template <int NV>
TileFn pick_d(int dv) {
    switch (dv) {
        case 1: return attend_tile<NV, 1>;
        case 2: return attend_tile<NV, 2>;
        case 3: return attend_tile<NV, 3>;
        case 4: return attend_tile<NV, 4>;
    }
    return nullptr;
}

TileFn pick(int nv, int dv) {
    switch (nv) {
        case 1: return pick_d<1>(dv);
        case 2: return pick_d<2>(dv);
        case 3: return pick_d<3>(dv);
        case 4: return pick_d<4>(dv);
    }
    return nullptr;
}

struct Job {  // tiles [t0, t1) of windows x heads, for one thread
    const float *q, *k, *v, *s, *bias, *outer;
    float* o;
    const long* strides;  // q, k, v, o: (window, head, row) each
    long windows, t0, t1;
    int heads, head_dim, n_windows, s_windows, bias_windows, outer_windows;
    Flags flags;
    TileFn fn;
};

void run(const Job& j) {
    const int np = 16 * ((j.flags.n + 15) / 16);
    const long table = (long)j.flags.n * np;
    const long* st = j.strides;
    for (long t = j.t0; t < j.t1; ++t) {
        const long b = t / j.heads, h = t % j.heads, w = b % j.n_windows;
        auto at = [&](int windows) { return ((windows > 1 ? w : 0) * j.heads + h) * table; };
        Tile tile{j.q + b * st[0] + h * st[1],  j.k + b * st[3] + h * st[4],
                  j.v + b * st[6] + h * st[7],  j.o + b * st[9] + h * st[10],
                  st[2], st[5], st[8], st[11],
                  j.s ? j.s + at(j.s_windows) : nullptr,
                  j.bias + at(j.bias_windows),
                  j.outer ? j.outer + at(j.outer_windows) : nullptr};
        j.fn(tile, j.flags);
    }
}

void* run_thread(void* job) {
    run(*static_cast<Job*>(job));
    return nullptr;
}

}  // namespace

extern "C" {

// q, k, v, o: [windows, heads, n, head_dim] at the given strides (12 longs: q's window, head
// and row stride, then k's, v's and o's), unit stride along head_dim. Tables [tw, heads, n, np]
// (np = n rounded up to 16; tw 1: shared by every window, else one per window position, window
// b using b % n_windows): s (null: fixed scale qscale), bias (padding columns -inf), outer
// (null: none). Returns 0, or -1 for a shape it has no kernel for.
int lsla_window_attention(const float* q, const float* k, const float* v, float* o,
                          const long* strides, long windows, int heads, int n, int head_dim,
                          int n_windows, const float* s, int s_windows, const float* bias,
                          int bias_windows, const float* outer, int outer_windows, float qscale,
                          int scale_div, int outer_mul, int threads) {
    TileFn fn = (n >= 1 && n <= NPMAX && head_dim % 16 == 0) ? pick((n + 15) / 16, head_dim / 16)
                                                             : nullptr;
    if (!fn || !bias || n_windows < 1) return -1;
    Flags flags{n, qscale, scale_div != 0, outer_mul != 0};
    Job base{q, k, v, s, bias, outer, o, strides, windows, 0, 0, heads, head_dim, n_windows,
             s_windows, bias_windows, outer_windows, flags, fn};
    const long tiles = windows * heads;
    long parts = threads < 1 ? 1 : threads;
    if (parts > tiles) parts = tiles;
    std::vector<Job> jobs(parts, base);
    std::vector<pthread_t> ids(parts);
    std::vector<bool> started(parts, false);
    for (long p = 0; p < parts; ++p) {
        jobs[p].t0 = tiles * p / parts;
        jobs[p].t1 = tiles * (p + 1) / parts;
        if (p > 0) started[p] = pthread_create(&ids[p], nullptr, run_thread, &jobs[p]) == 0;
    }
    run(jobs[0]);
    for (long p = 1; p < parts; ++p) {
        if (started[p])
            pthread_join(ids[p], nullptr);
        else
            run(jobs[p]);  // no thread to be had: do its share here
    }
    return 0;
}

}  // extern "C"
