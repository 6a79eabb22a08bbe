// What the harness's C++ CPU kernels share: 16-float vectors (GCC/Clang vector extensions, which
// map to AVX-512, pairs of AVX2 registers or NEON quads, whatever -march=native offers), their
// exp, and a split of the work between threads. Included by the kernels' sources;
// variants/_cpu_build.py hashes it with each of them.
#pragma once
#include <pthread.h>

#include <cstdint>
#include <vector>

namespace simd {

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));  // unaligned loads/stores
typedef int32_t i16 __attribute__((vector_size(64)));

inline v16 load(const float* p) { return *(const v16u*)p; }
inline void store(float* p, v16 x) { *(v16u*)p = x; }

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

// fn(0) .. fn(parts - 1), each part on a thread of its own (part 0 on the caller's); a part whose
// thread cannot be had runs on the caller's after the others
template <class Fn>
void run_parts(long parts, const Fn& fn) {
    struct Part {
        const Fn* fn;
        long index;
    };
    std::vector<Part> jobs(parts);
    std::vector<pthread_t> ids(parts);
    std::vector<char> started(parts, 0);
    void* (*body)(void*) = [](void* job) -> void* {
        const Part* part = static_cast<const Part*>(job);
        (*part->fn)(part->index);
        return nullptr;
    };
    for (long p = 0; p < parts; ++p) {
        jobs[p] = {&fn, p};
        if (p > 0) started[p] = pthread_create(&ids[p], nullptr, body, &jobs[p]) == 0;
    }
    fn(0);
    for (long p = 1; p < parts; ++p) {
        if (started[p])
            pthread_join(ids[p], nullptr);
        else
            fn(p);
    }
}

}  // namespace simd
