// Fused window attention of the LSLA family on CPU, fp32, forward and backward:
//
//     out = A V,   A = softmax(Q K^T * S + B_i + M) + B_o * K_o     (or / S; or P * (1 + B_o K_o))
//
// one (window, head) tile at a time, its N x N maps never leaving the cache; the backward
// recomputes them (nothing N x N is kept between the passes). S, B_i and B_o are per-head tables
// [heads][N][NP], the shift mask M (0 / -inf) and where B_o applies K_o (1 / 0) per-window
// masks [windows][N][NP]; NP = N rounded up to 16, padding S with 1 and the rest with 0.
// Built and loaded by variants/_lsla_cpu.py (plain C ABI through ctypes; no torch headers, so
// it builds in about a second). Its vectors and threads are _cpu_kernels.h's.
#include <cstdint>
#include <cstring>

#include "_cpu_kernels.h"

namespace {

using simd::load;
using simd::store;
using simd::v16;
using simd::vexp;
constexpr int NPMAX = 64;  // tokens per window, at most

// horizontal max and sum: halving steps (4 vector ops, not 15 dependent scalar ones)
inline float hmax(v16 v) {
    v16 s = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v = v > s ? v : s;
    s = __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    v = v > s ? v : s;
    s = __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    v = v > s ? v : s;
    s = __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    v = v > s ? v : s;
    return v[0];
}

inline float hsum(v16 v) {
    v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    return v[0];
}

struct Mat {  // rows of one tile of q, k, v, out, dout, dq, dk or dv: base and row stride
    const float* p;
    long rs;
    const float* row(int i) const { return p + i * rs; }
};

struct Tables {  // one tile's rows of each table, null where absent
    const float *s, *inner, *neg, *outer, *keep;
};

struct Grads {  // this thread's accumulators for one head, null where not wanted
    float *s, *inner, *outer;
};

struct Flags {
    int n;
    float qscale;  // fixed scale, multiplied into Q as timm does (1 when S is given)
    bool scale_div, outer_mul;
};

// lane j of vector c is a key (j < n): padding lanes get no weight
inline v16 valid_or(v16 x, int c, int n, float fill) {
    if (16 * c + 16 <= n) return x;
    v16 lane;
    for (int l = 0; l < 16; ++l) lane[l] = (float)(16 * c + l);
    return lane < (float)n ? x : (v16){} + fill;
}

inline v16 outer_term(const Tables& t, int at) {  // B_o * K_o (null: not given)
    v16 o = load(t.outer + at);
    return t.keep ? o * load(t.keep + at) : o;
}

// logits of R rows from i0 (QK^T in qk) into P (softmax) and A (with B_o); the rows' steps are
// interleaved, so that their reductions (max, sum) overlap instead of waiting on each other
template <int NV, int R>
inline void finish_rows(const v16 (*qk)[NV], const Tables& t, const Flags& f, int i0, float* p,
                        float* a) {
    constexpr int NP = 16 * NV;
    v16 l[R][NV];
    float mx[R], inv[R];
    for (int r = 0; r < R; ++r) {
        v16 m = (v16){} - __builtin_inff();
        for (int c = 0; c < NV; ++c) {
            const int at = (i0 + r) * NP + 16 * c;
            v16 x = qk[r][c];
            if (t.s) x = f.scale_div ? x / load(t.s + at) : x * load(t.s + at);
            if (t.inner) x += load(t.inner + at);
            if (t.neg) x += load(t.neg + at);
            l[r][c] = valid_or(x, c, f.n, -__builtin_inff());
            m = l[r][c] > m ? l[r][c] : m;
        }
        mx[r] = hmax(m);
    }
    for (int r = 0; r < R; ++r) {
        v16 sum = (v16){};
        for (int c = 0; c < NV; ++c) {
            l[r][c] = vexp(l[r][c] - mx[r]);
            sum += l[r][c];
        }
        inv[r] = 1.0f / hsum(sum);
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < NV; ++c) {
            const int at = (i0 + r) * NP + 16 * c;
            v16 pc = l[r][c] * inv[r];
            if (p) store(p + at, pc);
            if (t.outer) {
                v16 o = outer_term(t, at);
                pc = f.outer_mul ? pc * (1.0f + o) : pc + o;
            }
            store(a + at, valid_or(pc, c, f.n, 0.0f));
        }
}

// rows i0 .. i0+R of X Y^T, Y given transposed (yt [D][NV], zero beyond n), scaled by `scale`
template <int NV, int D, int R>
inline void dot_rows(Mat x, float scale, const v16 (*yt)[NV], int i0, v16 (*acc)[NV]) {
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < NV; ++c) acc[r][c] = (v16){};
    for (int d = 0; d < D; ++d)
        for (int r = 0; r < R; ++r) {
            const float xv = x.row(i0 + r)[d] * scale;
            for (int c = 0; c < NV; ++c) acc[r][c] += xv * yt[d][c];
        }
}

// `rows` (at most 4) rows from i0 of X Y^T: four at once (6 or 8 were slower), or one by one
template <int NV, int D>
inline void dot_block(Mat x, float scale, const v16 (*yt)[NV], int i0, int rows, v16 (*acc)[NV]) {
    if (rows == 4)
        dot_rows<NV, D, 4>(x, scale, yt, i0, acc);
    else
        for (int r = 0; r < rows; ++r) dot_rows<NV, D, 1>(x, scale, yt, i0 + r, acc + r);
}

// rows i0 .. i0+R of W Y (or W^T Y): out_i = scale * sum_j w[i][j] y_j over the n rows of y
// (added to out_i's values when `add`)
template <int NV, int DV, int R, bool TRANSPOSED>
inline void weigh_rows(const float* w, Mat y, int n, float scale, float* out, long os, int i0,
                       bool add) {
    constexpr int NP = 16 * NV;
    v16 acc[R][DV];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < DV; ++c) acc[r][c] = (v16){};
    for (int j = 0; j < n; ++j) {
        v16 yj[DV];
        for (int c = 0; c < DV; ++c) yj[c] = load(y.row(j) + 16 * c);
        for (int r = 0; r < R; ++r) {
            const float wv = TRANSPOSED ? w[j * NP + i0 + r] : w[(i0 + r) * NP + j];
            for (int c = 0; c < DV; ++c) acc[r][c] += wv * yj[c];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < DV; ++c) {
            float* at = out + (i0 + r) * os + 16 * c;
            store(at, add ? load(at) + acc[r][c] * scale : acc[r][c] * scale);
        }
}

template <int NV, int DV, bool TRANSPOSED>
void weigh(const float* w, Mat y, int n, float scale, float* out, long os, bool add = false) {
    int i = 0;
    for (; i + 6 <= n; i += 6) weigh_rows<NV, DV, 6, TRANSPOSED>(w, y, n, scale, out, os, i, add);
    for (; i < n; ++i) weigh_rows<NV, DV, 1, TRANSPOSED>(w, y, n, scale, out, os, i, add);
}

// Y^T by 16 x 16 blocks held in 16 vectors, four butterfly steps of two-source shuffles (one
// instruction each on AVX-512), not one float at a time: whole inferences 1.010-1.014x at batch
// 4 (12 interleaved rounds), 1.007-1.011x at batch 16 (6), training steps 1.016-1.019x (10),
// both models, 1 thread; bit for bit equal
#define INLINE __attribute__((always_inline)) inline  // keeps the 16 rows in registers

// rows a and b (b's index is a's plus K) swap the elements whose column's bit K differs from
// their row's; after K = 8, 4, 2, 1 row m holds column m
template <int K>
INLINE void butterfly(v16& a, v16& b) {
    v16 x, y;
    if constexpr (K == 8) {
        x = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        y = __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29,
                                    30, 31);
    } else if constexpr (K == 4) {
        x = __builtin_shufflevector(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        y = __builtin_shufflevector(a, b, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30,
                                    31);
    } else if constexpr (K == 2) {
        x = __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        y = __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30,
                                    31);
    } else {
        x = __builtin_shufflevector(a, b, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14,
                                    30);
        y = __builtin_shufflevector(a, b, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15,
                                    31);
    }
    a = x;
    b = y;
}

template <int K>
INLINE void butterflies(v16* r) {
    for (int i = 0; i < 16; ++i)
        if (!(i & K)) butterfly<K>(r[i], r[i | K]);
}

template <int NV, int D>
void transpose(Mat y, int n, v16 (*yt)[NV]) {  // yt [D][NV] = Y^T, zero beyond the n rows
    for (int c = 0; c < NV; ++c)
        for (int e = 0; e < D / 16; ++e) {
            v16 r[16];
            for (int l = 0; l < 16; ++l)
                r[l] = 16 * c + l < n ? load(y.row(16 * c + l) + 16 * e) : (v16){};
            butterflies<8>(r);
            butterflies<4>(r);
            butterflies<2>(r);
            butterflies<1>(r);
            for (int m = 0; m < 16; ++m) yt[16 * e + m][c] = r[m];
        }
}

// P (may be null) and A of one tile, its raw QK^T in qk (may be null)
template <int NV, int DV>
void attention_maps(Mat q, Mat k, const Tables& t, const Flags& f, float* qk, float* p,
                    float* a) {
    constexpr int NP = 16 * NV, D = 16 * DV;
    const int n = f.n;
    v16 kt[D][NV];
    transpose<NV, D>(k, n, kt);
    v16 acc[4][NV];
    int i = 0;
    for (; i < n; i += 4) {
        const int rows = n - i < 4 ? n - i : 4;
        dot_block<NV, D>(q, f.qscale, kt, i, rows, acc);
        if (qk)
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < NV; ++c) store(qk + (i + r) * NP + 16 * c, acc[r][c]);
        if (rows == 4)
            finish_rows<NV, 4>(acc, t, f, i, p, a);
        else
            for (int r = 0; r < rows; ++r) finish_rows<NV, 1>(acc + r, t, f, i + r, p, a);
    }
}

struct Tile {
    Mat q, k, v, o, dout, dq, dk, dv;
    Tables t;
    Grads g;
};

template <int NV, int DV>
void forward_tile(const Tile& x, const Flags& f) {
    constexpr int NP = 16 * NV;
    alignas(64) float a[NPMAX * NP];
    attention_maps<NV, DV>(x.q, x.k, x.t, f, nullptr, nullptr, a);
    weigh<NV, DV, false>(a, x.v, f.n, 1.0f, const_cast<float*>(x.o.p), x.o.rs);
}

// dA -> dL for R rows from i0: the outer term's and the tables' gradients on the way (the
// rows interleaved, as in finish_rows)
template <int NV, int R>
inline void logits_grad_rows(const v16 (*da)[NV], const Tile& x, const Flags& f, int i0,
                             const float* qk, const float* p, float* dl) {
    constexpr int NP = 16 * NV;
    const Tables& t = x.t;
    v16 dp[R][NV];
    float rowdot[R];
    for (int r = 0; r < R; ++r) {
        v16 dot = (v16){};
        for (int c = 0; c < NV; ++c) {
            const int at = (i0 + r) * NP + 16 * c;
            v16 pc = load(p + at);
            dp[r][c] = da[r][c];
            if (t.outer) {
                v16 keep = t.keep ? load(t.keep + at) : (v16){} + 1.0f;
                v16 gd = (f.outer_mul ? da[r][c] * pc : da[r][c]) * keep;
                if (x.g.outer) store(x.g.outer + at, load(x.g.outer + at) + gd);
                if (f.outer_mul) dp[r][c] = da[r][c] * (1.0f + outer_term(t, at));
            }
            dot += dp[r][c] * pc;
        }
        rowdot[r] = hsum(dot);
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < NV; ++c) {
            const int at = (i0 + r) * NP + 16 * c;
            v16 g = load(p + at) * (dp[r][c] - rowdot[r]);
            if (x.g.inner) store(x.g.inner + at, load(x.g.inner + at) + g);
            if (t.s) {
                v16 s = load(t.s + at), raw = load(qk + at);
                if (f.scale_div) {
                    if (x.g.s) store(x.g.s + at, load(x.g.s + at) - g * raw / (s * s));
                    g = g / s;
                } else {
                    if (x.g.s) store(x.g.s + at, load(x.g.s + at) + g * raw);
                    g = g * s;
                }
            }
            store(dl + at, valid_or(g, c, f.n, 0.0f));
        }
}

template <int NV, int DV>
void backward_tile(const Tile& x, const Flags& f) {
    constexpr int NP = 16 * NV, D = 16 * DV;
    const int n = f.n;
    alignas(64) float qk[NPMAX * NP], p[NPMAX * NP], a[NPMAX * NP];
    attention_maps<NV, DV>(x.q, x.k, x.t, f, qk, p, a);
    weigh<NV, DV, true>(a, x.dout, n, 1.0f, const_cast<float*>(x.dv.p), x.dv.rs);  // dV = A^T dO
    v16 vt[D][NV];
    transpose<NV, D>(x.v, n, vt);
    float* dl = a;  // A is spent: its buffer takes dL
    v16 acc[4][NV];
    for (int i = 0; i < n; i += 4) {
        const int rows = n - i < 4 ? n - i : 4;
        dot_block<NV, D>(x.dout, 1.0f, vt, i, rows, acc);  // dA = dO V^T
        if (rows == 4)
            logits_grad_rows<NV, 4>(acc, x, f, i, qk, p, dl);
        else
            for (int r = 0; r < rows; ++r) logits_grad_rows<NV, 1>(acc + r, x, f, i + r, qk, p, dl);
    }
    weigh<NV, DV, false>(dl, x.k, n, f.qscale, const_cast<float*>(x.dq.p), x.dq.rs);  // dQ
    // dK; keys and values one tensor (LSLA's X): dK added onto dV, in dV's buffer
    const bool shared = x.dk.p == x.dv.p;
    weigh<NV, DV, true>(dl, x.q, n, f.qscale, const_cast<float*>(x.dk.p), x.dk.rs, shared);
}

typedef void (*TileFn)(const Tile&, const Flags&);

template <int NV>
TileFn pick_d(int dv, bool backward) {
    switch (dv) {
        case 1: return backward ? backward_tile<NV, 1> : forward_tile<NV, 1>;
        case 2: return backward ? backward_tile<NV, 2> : forward_tile<NV, 2>;
        case 3: return backward ? backward_tile<NV, 3> : forward_tile<NV, 3>;
        case 4: return backward ? backward_tile<NV, 4> : forward_tile<NV, 4>;
    }
    return nullptr;
}

TileFn pick(int n, int head_dim, bool backward) {
    if (n < 1 || n > NPMAX || head_dim % 16 != 0) return nullptr;
    switch ((n + 15) / 16) {
        case 1: return pick_d<1>(head_dim / 16, backward);
        case 2: return pick_d<2>(head_dim / 16, backward);
        case 3: return pick_d<3>(head_dim / 16, backward);
        case 4: return pick_d<4>(head_dim / 16, backward);
    }
    return nullptr;
}

// what every thread shares: 8 tensors [windows, heads, n, d] at (window, head, row) strides
// (q, k, v, out, dout, dq, dk, dv; the unused ones null), the tables, the accumulators
struct Call {
    const float* m[8];
    const long* strides;  // 24 longs
    const float *s, *inner, *neg, *outer, *keep;
    float *gs, *ginner, *gouter;  // [threads][heads][n][np] each, zeroed by the caller
    long windows;
    int heads, n_windows;
    Flags flags;
    TileFn fn;
};

struct Job {
    const Call* call;
    long t0, t1;  // tiles (window * heads + head) of this thread
    int thread;
};

void run(const Job& j) {
    const Call& c = *j.call;
    const int n = c.flags.n, np = 16 * ((n + 15) / 16);
    const long table = (long)n * np, own = (long)j.thread * c.heads * table;
    for (long t = j.t0; t < j.t1; ++t) {
        const long b = t / c.heads, h = t % c.heads, w = b % c.n_windows;
        Tile x;
        Mat* mats[8] = {&x.q, &x.k, &x.v, &x.o, &x.dout, &x.dq, &x.dk, &x.dv};
        for (int i = 0; i < 8; ++i) {
            const long* st = c.strides + 3 * i;
            *mats[i] = {c.m[i] ? c.m[i] + b * st[0] + h * st[1] : nullptr, st[2]};
        }
        auto head = [&](const float* p) { return p ? p + h * table : nullptr; };
        auto window = [&](const float* p) { return p ? p + w * table : nullptr; };
        auto grad = [&](float* p) { return p ? p + own + h * table : nullptr; };
        x.t = {head(c.s), head(c.inner), window(c.neg), head(c.outer), window(c.keep)};
        x.g = {grad(c.gs), grad(c.ginner), grad(c.gouter)};
        c.fn(x, c.flags);
    }
}

int launch(const Call& call, int threads) {
    const long tiles = call.windows * call.heads;
    long parts = threads < 1 ? 1 : threads;
    if (parts > tiles) parts = tiles;
    // a part whose thread cannot be had runs later on the caller's, with its own accumulator slot
    simd::run_parts(parts, [&](long p) {
        run({&call, tiles * p / parts, tiles * (p + 1) / parts, (int)p});
    });
    return 0;
}

}  // namespace

extern "C" {

// Forward: out = A V. q, k, v, out: [windows, heads, n, head_dim] at the given strides (q's,
// k's, v's, out's (window, head, row) strides; unit stride along head_dim); window b uses
// mask row b % n_windows. Tables as described at the top (null: absent; neg and keep may be
// null for unshifted windows). Returns 0, or -1 for a shape it has no kernel for.
int lsla_window_forward(const float* q, const float* k, const float* v, float* out,
                        const long* strides, long windows, int heads, int n, int head_dim,
                        int n_windows, const float* s, const float* inner, const float* neg,
                        const float* outer, const float* keep, float qscale, int scale_div,
                        int outer_mul, int threads) {
    TileFn fn = pick(n, head_dim, false);
    if (!fn || n_windows < 1) return -1;
    long st[24] = {0};
    std::memcpy(st, strides, 12 * sizeof(long));
    Call call{{q, k, v, out, nullptr, nullptr, nullptr, nullptr}, st, s, inner, neg, outer, keep,
              nullptr, nullptr, nullptr, windows, heads, n_windows,
              {n, qscale, scale_div != 0, outer_mul != 0}, fn};
    return launch(call, threads);
}

// Backward: dq, dk, dv from dout (24 strides: q, k, v, unused, dout, dq, dk, dv), and the
// tables' gradients summed into gs, ginner, gouter ([threads][heads][n][np] each, zeroed; null:
// not wanted; gouter is the gradient of B_o, K_o applied). dk == dv (keys and values one
// tensor, at the same strides): the buffer gets their sum.
int lsla_window_backward(const float* q, const float* k, const float* v, const float* dout,
                         float* dq, float* dk, float* dv, const long* strides, long windows,
                         int heads, int n, int head_dim, int n_windows, const float* s,
                         const float* inner, const float* neg, const float* outer,
                         const float* keep, float qscale, int scale_div, int outer_mul,
                         float* gs, float* ginner, float* gouter, int threads) {
    TileFn fn = pick(n, head_dim, true);
    if (!fn || n_windows < 1) return -1;
    Call call{{q, k, v, nullptr, dout, dq, dk, dv}, strides, s, inner, neg, outer, keep,
              gs, ginner, gouter, windows, heads, n_windows,
              {n, qscale, scale_div != 0, outer_mul != 0}, fn};
    return launch(call, threads);
}

// Global attention's table gradients (variants/_lsla_global.py): into [heads][plane_rows][2W-1]
// += g [heads][rows][W][H][W] at [r + yk][c + xk] (rows + H - 1 <= plane_rows), the adjoint of
// reading a table per offset through overlapping strided views; one part per head (the heads'
// planes do not overlap)
int lsla_offsets_fold(const float* g, float* into, int heads, int rows, int H, int W,
                      int plane_rows, int threads) {
    if (rows + H - 1 > plane_rows) return -1;
    const long ow = 2L * W - 1, plane = (long)plane_rows * ow;
    const long per_head = (long)rows * W * H * W;
    const long parts = threads < 1 ? 1 : (threads < heads ? threads : heads);
    simd::run_parts(parts, [&](long p) {
        for (long h = heads * p / parts; h < heads * (p + 1) / parts; ++h)
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < W; ++c)
                    for (int yk = 0; yk < H; ++yk) {
                        const float* __restrict src =
                            g + h * per_head + (((long)r * W + c) * H + yk) * W;
                        float* __restrict dst = into + h * plane + (r + yk) * ow + c;
                        for (int xk = 0; xk < W; ++xk) dst[xk] += src[xk];
                    }
    });
    return 0;
}

}  // extern "C"
