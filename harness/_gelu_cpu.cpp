// GELU's recompute and gradient in one pass, fp32 on CPU, for the memory-light MLP
// (harness/light_mlp.py): from the pre-activation h and the gradient da of a = GELU(h),
//
//     a = h * Phi(h),   dh = da * (Phi(h) + h * phi(h)),   Phi(h) = (1 + erf(h / sqrt 2)) / 2
//
// where one exp, exp(-h^2 / 2), serves both erf (Abramowitz & Stegun 7.1.26, the formula of
// torch's vectorised CPU erf, within 1.5e-7) and the density phi. torch's own backward takes two
// exps and no recompute. Plain C ABI, loaded through ctypes; no torch headers.
#include "../variants/_cpu_kernels.h"

namespace {

using simd::load;
using simd::store;
using simd::v16;

inline void gelu_and_grad16(v16 h, v16 da, v16* a, v16* dh) {
    const v16 ax = (h < 0.0f ? -h : h) * 0.70710678118654752f;
    const v16 t = 1.0f / (0.3275911f * ax + 1.0f);
    const v16 r =
        (((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
        0.254829592f;
    const v16 e = simd::vexp(h * h * -0.5f);
    const v16 erf_abs = 1.0f - t * e * r;
    const v16 cdf = 0.5f + 0.5f * (h < 0.0f ? -erf_abs : erf_abs);
    *a = h * cdf;
    *dh = da * (cdf + h * e * 0.39894228040143268f);  // 1 / sqrt(2 pi)
}

struct Span {
    const float *h, *da;
    float *a, *dh;
    long begin, end;
};

void run(const Span& s) {
    long i = s.begin;
    for (; i + 16 <= s.end; i += 16) {
        v16 a, dh;
        gelu_and_grad16(load(s.h + i), load(s.da + i), &a, &dh);
        store(s.a + i, a);
        store(s.dh + i, dh);
    }
    if (i == s.end) return;
    alignas(64) float hb[16] = {0}, db[16] = {0}, ab[16], gb[16];  // the last, partial vector
    for (long j = i; j < s.end; ++j) hb[j - i] = s.h[j], db[j - i] = s.da[j];
    v16 a, dh;
    gelu_and_grad16(load(hb), load(db), &a, &dh);
    store(ab, a);
    store(gb, dh);
    for (long j = i; j < s.end; ++j) s.a[j] = ab[j - i], s.dh[j] = gb[j - i];
}

// rows [r0, r1) of `width` floats each (a multiple of 16), dh's column sums added into sum:
// each block of up to 128 rows summed apart and then added, so that no long run of fp32 adds
// grows one partial sum's round-off with the row count
void run_rows(const float* h, const float* da, float* a, float* dh, long r0, long r1, long width,
              float* sum) {
    const long vectors = width / 16;
    std::vector<v16> block(vectors);
    for (long b0 = r0; b0 < r1; b0 += 128) {
        const long b1 = b0 + 128 < r1 ? b0 + 128 : r1;
        for (long c = 0; c < vectors; ++c) block[c] = (v16){};
        for (long r = b0; r < b1; ++r)
            for (long c = 0; c < vectors; ++c) {
                const long i = r * width + 16 * c;
                v16 ai, di;
                gelu_and_grad16(load(h + i), load(da + i), &ai, &di);
                store(a + i, ai);
                store(dh + i, di);
                block[c] += di;
            }
        for (long c = 0; c < vectors; ++c) store(sum + 16 * c, load(sum + 16 * c) + block[c]);
    }
}

}  // namespace

extern "C" {

// gelu_and_grad over rows of `width` floats (a multiple of 16), and dh's sum over the rows,
// fc1's bias gradient, on the way: sums [threads][width], zeroed; thread t adds into row t
// (the caller adds the rows up)
void gelu_and_grad_sum(const float* h, const float* da, float* a, float* dh, long rows,
                       long width, float* sums, int threads) {
    long parts = threads < 1 ? 1 : threads;
    if (parts > rows) parts = rows > 0 ? rows : 1;
    simd::run_parts(parts, [&](long p) {
        run_rows(h, da, a, dh, rows * p / parts, rows * (p + 1) / parts, width, sums + p * width);
    });
}

// a and dh from h and da, n contiguous floats each (dh may be da: each block is read before it
// is written); threads share the range in 16-float blocks
void gelu_and_grad(const float* h, const float* da, float* a, float* dh, long n, int threads) {
    const long blocks = (n + 15) / 16;
    long parts = threads < 1 ? 1 : threads;
    if (parts > blocks) parts = blocks > 0 ? blocks : 1;
    simd::run_parts(parts, [&](long p) {
        const long b0 = 16 * (blocks * p / parts), b1 = 16 * (blocks * (p + 1) / parts);
        run({h, da, a, dh, b0, b1 < n ? b1 : n});
    });
}

}  // extern "C"
