// Packed binary convolution: sign packing and xnor-popcount accumulation on 64-bit words, with runtime CPU dispatch.
//
// Layout (binarize/deploy/bits.py): signs are packed along the channels of a group, bit j of word w holds channel
// 64 w + j, a set bit is -1, and the spare bits of a group's last word are clear on both operands, so they never
// count. Activations are (N, G, Hp, Wp, Wg) words, weights (G, Og, kh, kw, Wg), and the accumulator is
//
//     acc[n, g Og + o, y, x] = kh kw Cg - 2 sum_{ky, kx, w} popcount(A[n, g, y sh + ky dh, x sw + kx dw, w]
//                                                                   ^ W[g, o, ky, kx, w]).
//
// Every instruction set computes this with the same blocking: a block of P output pixels times B output channels
// keeps its P x B sums in registers over the whole reduction (taps x words, the "k" steps); each step loads the B
// weight words once (contiguous: the weights are first copied into blocks of B channels, step-major) and one input
// word per pixel, broadcast across the B channels. Code paths:
//
//   * avx512_vpopcntdq: 8 channels per zmm, vpopcntq, 64-bit sums;
//   * avx2: 4 channels per ymm, popcount by nibble lookup (vpshufb) into byte sums, widened by vpsadbw every 31
//     steps (a byte holds at most 8 per step, 31 * 8 < 256);
//   * portable: scalar words and __builtin_popcountll.
//
// The C ABI at the bottom is what binarize/deploy/kernels.py loads with ctypes.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BINARIZE_X86 1
#else
#define BINARIZE_X86 0
#endif

#include "pool.h"

namespace binarize {
namespace {

enum Isa : int { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

int best_isa() {
#if BINARIZE_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vpopcntdq")) {
    return kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) return kAvx2;
#endif
  return kPortable;
}

// The words of a group's last word that hold channels (all of them for the other words).
inline uint64_t valid_bits(int64_t channels, int64_t word) {
  const int64_t bits = channels - 64 * word;
  return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
}

// ------------------------------------------------------------------------------------------------------------------
// Packing: float (N, C, H, W) -> words (N, G, Hp, Wp, Wg).

struct PackArgs {
  const float* x;
  const float* shift;  // (N, C) or null
  int64_t* out;
  int64_t n, c, h, w, groups, top, bottom, left, right;
  bool pad_negative;
};

// One input row's words, portable: channel-major sweeps so each channel row streams once.
void pack_row_portable(const PackArgs& a, int64_t n, int64_t g, int64_t y, int64_t* dst) {
  const int64_t cg = a.c / a.groups;
  const int64_t wg = (cg + 63) / 64;
  std::fill(dst, dst + a.w * wg, int64_t{0});
  for (int64_t ch = 0; ch < cg; ++ch) {
    const int64_t channel = g * cg + ch;
    const float* src = a.x + ((n * a.c + channel) * a.h + y) * a.w;
    const int64_t word = ch >> 6;
    const int bit = static_cast<int>(ch & 63);
    uint64_t* row = reinterpret_cast<uint64_t*>(dst) + word;
    if (a.shift != nullptr) {
      const float s = a.shift[n * a.c + channel];
      for (int64_t x = 0; x < a.w; ++x) {
        const float v = src[x] + s;
        row[x * wg] |= static_cast<uint64_t>(v < 0.0f) << bit;
      }
    } else {
      for (int64_t x = 0; x < a.w; ++x) row[x * wg] |= static_cast<uint64_t>(src[x] < 0.0f) << bit;
    }
  }
}

#if BINARIZE_X86
// Transposes 8 rows of 8 floats in place (row i, lane j) -> (row j, lane i).
__attribute__((target("avx2"))) inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Lanes [0, count) all-ones: the mask of a partial load.
__attribute__((target("avx2"))) inline __m256i lane_mask(int64_t count) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), index);
}

// One input row's words, AVX2: 8 channels x 8 pixels at a time, compared with zero, transposed, and each pixel's
// 8 channel signs taken with movemask as one byte of its word.
__attribute__((target("avx2"))) void pack_row_avx2(const PackArgs& a, int64_t n, int64_t g, int64_t y,
                                                   int64_t* dst) {
  const int64_t cg = a.c / a.groups;
  const int64_t wg = (cg + 63) / 64;
  const int64_t plane = a.h * a.w;
  const float* base = a.x + ((n * a.c + g * cg) * a.h + y) * a.w;
  const float* shift = a.shift != nullptr ? a.shift + n * a.c + g * cg : nullptr;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t x0 = 0; x0 < a.w; x0 += 8) {
    const int64_t pixels = std::min<int64_t>(8, a.w - x0);
    const __m256i mask = lane_mask(pixels);
    for (int64_t word = 0; word < wg; ++word) {
      uint64_t bits[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t byte = 0; byte < 8; ++byte) {
        const int64_t c0 = word * 64 + byte * 8;
        if (c0 >= cg) break;
        __m256 rows[8];
        for (int i = 0; i < 8; ++i) {
          const int64_t ch = c0 + i;
          if (ch < cg) {
            const float* src = base + ch * plane + x0;
            if (y + 1 < a.h) _mm_prefetch(reinterpret_cast<const char*>(src + a.w), _MM_HINT_T0);
            __m256 v = pixels == 8 ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, mask);
            if (shift != nullptr) v = _mm256_add_ps(v, _mm256_set1_ps(shift[ch]));
            rows[i] = _mm256_cmp_ps(v, zero, _CMP_LT_OQ);
          } else {
            rows[i] = zero;
          }
        }
        transpose8(rows);
        for (int p = 0; p < 8; ++p) {
          bits[p] |= static_cast<uint64_t>(static_cast<unsigned>(_mm256_movemask_ps(rows[p]))) << (8 * byte);
        }
      }
      for (int64_t p = 0; p < pixels; ++p) dst[(x0 + p) * wg + word] = static_cast<int64_t>(bits[p]);
    }
  }
}

// A 1 x 1 image (a linear layer's rows): its channels are contiguous, 8 per compare.
__attribute__((target("avx2"))) void pack_pixel_avx2(const PackArgs& a, int64_t n, int64_t g, int64_t* dst) {
  const int64_t cg = a.c / a.groups;
  const int64_t wg = (cg + 63) / 64;
  const float* src = a.x + n * a.c + g * cg;
  const float* shift = a.shift != nullptr ? a.shift + n * a.c + g * cg : nullptr;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t word = 0; word < wg; ++word) {
    uint64_t bits = 0;
    for (int64_t byte = 0; byte < 8; ++byte) {
      const int64_t c0 = word * 64 + byte * 8;
      if (c0 >= cg) break;
      const int64_t count = std::min<int64_t>(8, cg - c0);
      __m256 v;
      if (count == 8) {
        v = _mm256_loadu_ps(src + c0);
        if (shift != nullptr) v = _mm256_add_ps(v, _mm256_loadu_ps(shift + c0));
      } else {
        const __m256i mask = lane_mask(count);
        v = _mm256_maskload_ps(src + c0, mask);
        if (shift != nullptr) v = _mm256_add_ps(v, _mm256_maskload_ps(shift + c0, mask));
      }
      bits |= static_cast<uint64_t>(static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ))))
              << (8 * byte);
    }
    dst[word] = static_cast<int64_t>(bits);
  }
}
#endif

void pack(const PackArgs& a, int isa, int threads) {
  const int64_t cg = a.c / a.groups;
  const int64_t wg = (cg + 63) / 64;
  const int64_t hp = a.h + a.top + a.bottom;
  const int64_t wp = a.w + a.left + a.right;
  std::vector<int64_t> fill(static_cast<size_t>(wg));
  for (int64_t word = 0; word < wg; ++word) {
    fill[word] = a.pad_negative ? static_cast<int64_t>(valid_bits(cg, word)) : 0;
  }
  const int64_t* pad = fill.data();
  parallel_for(threads, a.n * a.groups * hp, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t yo = item % hp;
      const int64_t g = (item / hp) % a.groups;
      const int64_t n = item / (hp * a.groups);
      int64_t* dst = a.out + item * wp * wg;
      const int64_t y = yo - a.top;
      if (y < 0 || y >= a.h) {
        for (int64_t x = 0; x < wp; ++x) std::memcpy(dst + x * wg, pad, sizeof(int64_t) * wg);
        continue;
      }
      for (int64_t x = 0; x < a.left; ++x) std::memcpy(dst + x * wg, pad, sizeof(int64_t) * wg);
      for (int64_t x = a.left + a.w; x < wp; ++x) std::memcpy(dst + x * wg, pad, sizeof(int64_t) * wg);
      int64_t* row = dst + a.left * wg;
#if BINARIZE_X86
      if (isa >= kAvx2) {
        if (a.h * a.w == 1) {
          pack_pixel_avx2(a, n, g, row);
        } else {
          pack_row_avx2(a, n, g, y, row);
        }
        continue;
      }
#endif
      (void)isa;
      pack_row_portable(a, n, g, y, row);
    }
  });
}

// ------------------------------------------------------------------------------------------------------------------
// Convolution.

struct ConvArgs {
  const int64_t* in;      // (N, G, Hp, Wp, Wg)
  const int64_t* weight;  // (G, Og, kh, kw, Wg)
  float* out;             // (N, G Og, Ho, Wo) float, or null
  int32_t* acc;           // (N, G Og, Ho, Wo) int32, or null
  const float* alpha;     // null, 1 or G Og values
  int64_t alpha_count;
  const float* bias;  // null or G Og values
  int64_t n, groups, hp, wp, wg, og, kh, kw, channels, sh, sw, dh, dw;
};

// A kernel computes one block: the accumulators of P pixels x B channels, acc[p * B + b] = full - 2 popcount sum,
// where pixel p's receptive field starts at base[p] and the weights of the block are w[k * B + b].

// Portable block: 4 pixels x 4 channels in scalar sums.
struct PortableKernel {
  static constexpr int kPixels = 4;
  static constexpr int kChannels = 4;
  static constexpr int kSplit = 1;
  static void block(const int64_t* const* base, const int64_t* koff, int64_t steps, const int64_t* w, int32_t full,
                    int32_t* acc) {
    uint64_t sum[kPixels][kChannels] = {};
    for (int64_t k = 0; k < steps; ++k) {
      const int64_t off = koff[k];
      const uint64_t* wk = reinterpret_cast<const uint64_t*>(w + k * kChannels);
      for (int p = 0; p < kPixels; ++p) {
        const uint64_t x = static_cast<uint64_t>(base[p][off]);
        for (int o = 0; o < kChannels; ++o) sum[p][o] += static_cast<uint64_t>(__builtin_popcountll(x ^ wk[o]));
      }
    }
    for (int p = 0; p < kPixels; ++p) {
      for (int o = 0; o < kChannels; ++o) acc[p * kChannels + o] = full - 2 * static_cast<int32_t>(sum[p][o]);
    }
  }
};

#if BINARIZE_X86
// AVX2 block: P pixels x 4V channels, popcount by nibble lookup into byte sums, widened every 31 steps. Both operands
// come split into their low and high nibbles (kSplit words per word: w & 0x0f.., (w >> 4) & 0x0f..), which the XOR
// commutes with, so a step costs per 4 words two XORs, two lookups (vpshufb) and two byte adds.
template <int P, int V>
struct Avx2Kernel {
  static constexpr int kPixels = P;
  static constexpr int kChannels = 4 * V;
  static constexpr int kSplit = 2;
  __attribute__((target("avx2,popcnt"))) static void block(const int64_t* const* base, const int64_t* koff,
                                                           int64_t steps, const int64_t* w, int32_t full,
                                                           int32_t* acc) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                         2, 2, 3, 2, 3, 3, 4);
    const __m256i zero = _mm256_setzero_si256();
    // The 64-bit totals live in memory (touched once per 31 steps), leaving the 16 registers to the byte sums.
    alignas(32) int64_t total[P * kChannels];
    for (int i = 0; i < P * kChannels; ++i) total[i] = 0;
    for (int64_t k0 = 0; k0 < steps; k0 += 31) {
      const int64_t k1 = std::min<int64_t>(steps, k0 + 31);
      __m256i sum[P][V];
      for (int p = 0; p < P; ++p) {
        for (int v = 0; v < V; ++v) sum[p][v] = zero;
      }
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t off = koff[k];
        const __m256i* wk = reinterpret_cast<const __m256i*>(w + k * 2 * kChannels);
        for (int p = 0; p < P; ++p) {
          const __m256i lo = _mm256_set1_epi64x(base[p][off]);
          const __m256i hi = _mm256_set1_epi64x(base[p][off + 1]);
          for (int v = 0; v < V; ++v) {
            const __m256i dlo = _mm256_xor_si256(lo, _mm256_load_si256(wk + v));
            const __m256i dhi = _mm256_xor_si256(hi, _mm256_load_si256(wk + V + v));
            sum[p][v] = _mm256_add_epi8(sum[p][v], _mm256_shuffle_epi8(lut, dlo));
            sum[p][v] = _mm256_add_epi8(sum[p][v], _mm256_shuffle_epi8(lut, dhi));
          }
          // Keeps the next pixel's loads below this one's arithmetic: hoisting all of them exhausts the registers.
          asm volatile("" ::: "memory");
        }
      }
      for (int p = 0; p < P; ++p) {
        for (int v = 0; v < V; ++v) {
          __m256i* at = reinterpret_cast<__m256i*>(total + p * kChannels + 4 * v);
          _mm256_store_si256(at, _mm256_add_epi64(_mm256_load_si256(at), _mm256_sad_epu8(sum[p][v], zero)));
        }
      }
    }
    // 64-bit lane sums (each < 2^31) to int32: the low halves of the four lanes, then full - 2 sum.
    const __m256i halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    const __m128i fullv = _mm_set1_epi32(full);
    for (int p = 0; p < P; ++p) {
      for (int v = 0; v < V; ++v) {
        const __m256i t = _mm256_load_si256(reinterpret_cast<const __m256i*>(total + p * kChannels + 4 * v));
        const __m128i s = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(t, halves));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(acc + p * kChannels + 4 * v),
                         _mm_sub_epi32(fullv, _mm_add_epi32(s, s)));
      }
    }
  }
};

// AVX-512 block: P pixels x 8V channels, vpopcntq on the XOR, 64-bit sums.
template <int P, int V>
struct Avx512Kernel {
  static constexpr int kPixels = P;
  static constexpr int kChannels = 8 * V;
  static constexpr int kSplit = 1;
  __attribute__((target("avx512f,avx512bw,avx512vpopcntdq"))) static void block(const int64_t* const* base,
                                                                                const int64_t* koff, int64_t steps,
                                                                                const int64_t* w, int32_t full,
                                                                                int32_t* acc) {
    __m512i sum[P][V];
    for (int p = 0; p < P; ++p) {
      for (int v = 0; v < V; ++v) sum[p][v] = _mm512_setzero_si512();
    }
    for (int64_t k = 0; k < steps; ++k) {
      const int64_t off = koff[k];
      const int64_t* wk = w + k * kChannels;
      __m512i wv[V];
      for (int v = 0; v < V; ++v) wv[v] = _mm512_load_si512(wk + 8 * v);
      for (int p = 0; p < P; ++p) {
        const __m512i x = _mm512_set1_epi64(base[p][off]);
        for (int v = 0; v < V; ++v) {
          sum[p][v] = _mm512_add_epi64(sum[p][v], _mm512_popcnt_epi64(_mm512_xor_si512(x, wv[v])));
        }
      }
    }
    const __m256i fullv = _mm256_set1_epi32(full);
    for (int p = 0; p < P; ++p) {
      for (int v = 0; v < V; ++v) {
        const __m256i s = _mm512_cvtepi64_epi32(sum[p][v]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + p * kChannels + 8 * v),
                            _mm256_sub_epi32(fullv, _mm256_add_epi32(s, s)));
      }
    }
  }
};
#endif

// Where a block's results go: acc[p * B + b] for pixel p (output offset dst[p] of channel 0, consecutive pixels of
// a row when `run`) and channel o0 + b (channel stride `plane`), the first `pixels` x `channels` of them.
struct Epilogue {
  float* out;                // float output, or null for int32
  int32_t* acc;              // int32 output, or null
  const float* scale;        // per padded channel (1 without alpha)
  const float* shift;        // per padded channel (-0.0 without bias: x + -0.0 == x, signed zeros included)
  int64_t plane;
};

void store_portable(const Epilogue& e, const int32_t* acc, int B, const int64_t* dst, int pixels, int channels,
                    int64_t o0) {
  for (int b = 0; b < channels; ++b) {
    const int64_t at = (o0 + b) * e.plane;
    if (e.acc != nullptr) {
      for (int p = 0; p < pixels; ++p) e.acc[dst[p] + at] = acc[p * B + b];
    } else {
      const float scale = e.scale[o0 + b], shift = e.shift[o0 + b];
      for (int p = 0; p < pixels; ++p) {
        const float product = static_cast<float>(acc[p * B + b]) * scale;
        e.out[dst[p] + at] = product + shift;
      }
    }
  }
}

#if BINARIZE_X86
// 4 pixels x B channels: 4 channels at a time, converted and scaled in registers, transposed so each channel's 4
// consecutive pixels leave in one store (or one store per pixel when the channels are contiguous, plane == 1).
__attribute__((target("avx2"))) void store_avx2(const Epilogue& e, const int32_t* acc, int B, const int64_t* dst,
                                                int pixels, int channels, int64_t o0) {
  const bool contiguous = pixels == 4 && dst[3] - dst[0] == 3;
  if (!(contiguous || e.plane == 1) || (e.plane == 1 && channels % 4 != 0)) {
    store_portable(e, acc, B, dst, pixels, channels, o0);
    return;
  }
  for (int b = 0; b < channels; b += 4) {
    __m128 rows[4];
    for (int p = 0; p < 4; ++p) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(acc + p * B + b));
      rows[p] = e.out == nullptr ? _mm_castsi128_ps(a)
                                 : _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(a), _mm_loadu_ps(e.scale + o0 + b)),
                                              _mm_loadu_ps(e.shift + o0 + b));
    }
    float* base = e.out != nullptr ? e.out : reinterpret_cast<float*>(e.acc);
    if (e.plane == 1) {  // each pixel's channels are contiguous
      for (int p = 0; p < pixels; ++p) _mm_storeu_ps(base + dst[p] + o0 + b, rows[p]);
      continue;
    }
    _MM_TRANSPOSE4_PS(rows[0], rows[1], rows[2], rows[3]);
    const int count = std::min(4, channels - b);
    for (int j = 0; j < count; ++j) _mm_storeu_ps(base + dst[0] + (o0 + b + j) * e.plane, rows[j]);
  }
}
#endif

// 64-byte aligned scratch words, reused by the calling thread from call to call (growing only), so repeated calls
// touch warm memory instead of freshly mapped pages.
int64_t* scratch(int slot, int64_t count) {
  thread_local std::vector<int64_t> buffers[2];
  std::vector<int64_t>& buffer = buffers[slot];
  if (buffer.size() < static_cast<size_t>(count + 8)) buffer.assign(static_cast<size_t>(count + 8), 0);
  const uintptr_t address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + ((64 - address % 64) % 64) / sizeof(int64_t);
}

constexpr int64_t kChunkPixels = 64;  // output pixels per work item

// Copies `count` words to dst[i * S * stride] (S = 1), or splits each into its low and high nibbles at
// dst[(i * S + s) * stride] (S = 2).
template <int S>
void split_words(const int64_t* src, int64_t* dst, int64_t count, int64_t stride) {
  const uint64_t low = 0x0f0f0f0f0f0f0f0fULL;
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t word = static_cast<uint64_t>(src[i]);
    if (S == 1) {
      dst[i * stride] = static_cast<int64_t>(word);
    } else {
      dst[i * 2 * stride] = static_cast<int64_t>(word & low);
      dst[(i * 2 + 1) * stride] = static_cast<int64_t>((word >> 4) & low);
    }
  }
}

template <class Kernel>
void conv(const ConvArgs& a, int isa, int threads) {
  constexpr int P = Kernel::kPixels;
  constexpr int B = Kernel::kChannels;
  constexpr int S = Kernel::kSplit;
  static_assert(P == 4, "the vector epilogue stores 4 pixels at a time");
  const int64_t ho = (a.hp - a.dh * (a.kh - 1) - 1) / a.sh + 1;
  const int64_t wo = (a.wp - a.dw * (a.kw - 1) - 1) / a.sw + 1;
  const int64_t plane = ho * wo;
  const int64_t pixels = a.n * plane;
  const int64_t out_channels = a.groups * a.og;
  const int64_t steps = a.kh * a.kw * a.wg;
  const int64_t blocks = (a.og + B - 1) / B;
  const int32_t full = static_cast<int32_t>(a.kh * a.kw * a.channels);

  // Weights in blocks of B channels, step-major: packed[g][block][k][s][b], zero past the last channel; s indexes
  // the kernel's split of a word (S = 2: low and high nibbles).
  int64_t* packed = scratch(0, a.groups * blocks * steps * S * B);
  for (int64_t g = 0; g < a.groups; ++g) {
    for (int64_t o = 0; o < blocks * B; ++o) {
      int64_t* dst = packed + (g * blocks + o / B) * steps * S * B + o % B;
      if (o < a.og) {
        split_words<S>(a.weight + (g * a.og + o) * steps, dst, steps, B);
      } else {
        for (int64_t k = 0; k < steps * S; ++k) dst[k * B] = 0;
      }
    }
  }
  // The activations split the same way (S = 1: used in place).
  const int64_t words = a.n * a.groups * a.hp * a.wp * a.wg;
  const int64_t* input = a.in;
  if (S != 1) {
    int64_t* split = scratch(1, words * S);
    parallel_for(words >= (int64_t{1} << 16) ? threads : 1, (words + 4095) / 4096, [&](int64_t begin, int64_t end) {
      const int64_t first = begin * 4096, last = std::min(words, end * 4096);
      split_words<S>(a.in + first, split + first * S, last - first, 1);
    });
    input = split;
  }
  // Scale and shift per output channel, padded to whole blocks (group-major, like the channels).
  std::vector<float> scale(static_cast<size_t>(a.groups * blocks * B + B), 1.0f);
  std::vector<float> shift(static_cast<size_t>(a.groups * blocks * B + B), -0.0f);
  for (int64_t g = 0; g < a.groups; ++g) {
    for (int64_t o = 0; o < a.og; ++o) {
      const int64_t at = g * blocks * B + o;
      if (a.alpha != nullptr) scale[at] = a.alpha[a.alpha_count == 1 ? 0 : g * a.og + o];
      if (a.bias != nullptr) shift[at] = a.bias[g * a.og + o];
    }
  }
  // Word offset of each step (tap, word) from a pixel's first word.
  std::vector<int64_t> koff(static_cast<size_t>(steps));
  for (int64_t ky = 0; ky < a.kh; ++ky) {
    for (int64_t kx = 0; kx < a.kw; ++kx) {
      for (int64_t word = 0; word < a.wg; ++word) {
        koff[(ky * a.kw + kx) * a.wg + word] = ((ky * a.dh * a.wp + kx * a.dw) * a.wg + word) * S;
      }
    }
  }
  const int64_t chunks = (pixels + kChunkPixels - 1) / kChunkPixels;
  const int64_t image = a.groups * a.hp * a.wp * a.wg * S;  // words per sample
  const int64_t* weights = packed;

  parallel_for(threads, a.groups * blocks * chunks, [&](int64_t begin, int64_t end) {
    const int64_t* base[kChunkPixels + P];
    int64_t dst[kChunkPixels + P];
    alignas(64) int32_t acc[P * B];
    for (int64_t item = begin; item < end; ++item) {
      // Channel blocks vary fastest: a chunk's activations stay in L1 while the blocks' weights stream past.
      const int64_t block = item % blocks;
      const int64_t chunk = (item / blocks) % chunks;
      const int64_t g = item / (chunks * blocks);
      // The chunk's pixels: first word of each receptive field and output offset (of channel 0).
      const int64_t p0 = chunk * kChunkPixels;
      const int64_t count = std::min(kChunkPixels, pixels - p0);
      int64_t n = p0 / plane, r = p0 % plane;
      int64_t y = r / wo, x = r % wo;
      for (int64_t i = 0; i < count; ++i) {
        base[i] = input + n * image + ((g * a.hp + y * a.sh) * a.wp + x * a.sw) * a.wg * S;
        dst[i] = n * out_channels * plane + r;
        ++r;
        if (++x == wo) {
          x = 0;
          if (++y == ho) {
            y = 0;
            r = 0;
            ++n;
          }
        }
      }
      for (int64_t i = count; i < count + P; ++i) base[i] = base[count - 1];  // a partial block repeats a pixel
      const int64_t o0 = block * B;
      const int channels = static_cast<int>(std::min<int64_t>(B, a.og - o0));
      const int64_t* wblock = weights + (g * blocks + block) * steps * S * B;
      // Outputs, scale and shift of group g (its channel 0); the block adds o0.
      const Epilogue e{a.out == nullptr ? nullptr : a.out + g * a.og * plane,
                       a.acc == nullptr ? nullptr : a.acc + g * a.og * plane, scale.data() + g * blocks * B,
                       shift.data() + g * blocks * B, plane};
      for (int64_t i = 0; i < count; i += P) {
        Kernel::block(base + i, koff.data(), steps, wblock, full, acc);
        const int valid = static_cast<int>(std::min<int64_t>(P, count - i));
#if BINARIZE_X86
        if (isa >= kAvx2) {
          store_avx2(e, acc, B, dst + i, valid, channels, o0);
          continue;
        }
#endif
        (void)isa;
        store_portable(e, acc, B, dst + i, valid, channels, o0);
      }
    }
  });
}

void conv_dispatch(const ConvArgs& a, int isa, int threads) {
#if BINARIZE_X86
  if (isa == kAvx512) {
    if (a.og <= 8) return conv<Avx512Kernel<4, 1>>(a, isa, threads);
    return conv<Avx512Kernel<4, 2>>(a, isa, threads);
  }
  if (isa == kAvx2) {
    if (a.og <= 4) return conv<Avx2Kernel<4, 1>>(a, isa, threads);
    return conv<Avx2Kernel<4, 2>>(a, isa, threads);
  }
#endif
  conv<PortableKernel>(a, isa, threads);
}

}  // namespace
}  // namespace binarize

// ------------------------------------------------------------------------------------------------------------------
// C ABI. Every function returns 0, or a negative code for an argument the Python side should have refused.

extern "C" {

__attribute__((visibility("default"))) int binarize_best_isa() { return binarize::best_isa(); }

__attribute__((visibility("default"))) int binarize_pack(const float* x, const float* shift, int64_t* out, int64_t n,
                                                         int64_t c, int64_t h, int64_t w, int64_t groups,
                                                         int64_t top, int64_t bottom, int64_t left, int64_t right,
                                                         int pad_negative, int isa, int threads) {
  if (groups < 1 || c % groups != 0 || top < 0 || bottom < 0 || left < 0 || right < 0) return -1;
  if (isa > binarize::best_isa()) return -2;
  const binarize::PackArgs args{x, shift, out, n, c, h, w, groups, top, bottom, left, right, pad_negative != 0};
  binarize::pack(args, isa, threads);
  return 0;
}

__attribute__((visibility("default"))) int binarize_conv(const int64_t* in, const int64_t* weight, float* out,
                                                         int32_t* acc, const float* alpha, int64_t alpha_count,
                                                         const float* bias, int64_t n, int64_t groups, int64_t hp,
                                                         int64_t wp, int64_t wg, int64_t og, int64_t kh, int64_t kw,
                                                         int64_t channels, int64_t sh, int64_t sw, int64_t dh,
                                                         int64_t dw, int isa, int threads) {
  if ((out == nullptr) == (acc == nullptr)) return -1;
  if (sh < 1 || sw < 1 || dh < 1 || dw < 1 || kh < 1 || kw < 1) return -1;
  if (hp < dh * (kh - 1) + 1 || wp < dw * (kw - 1) + 1) return -1;
  if (wg != (channels + 63) / 64 || channels < 1) return -1;
  if (isa > binarize::best_isa()) return -2;
  const binarize::ConvArgs args{in, weight, out, acc, alpha, alpha_count, bias, n,  groups, hp, wp,
                                wg, og,     kh,  kw,  channels, sh, sw,  dh,    dw};
  binarize::conv_dispatch(args, isa, threads);
  return 0;
}

}  // extern "C"
