// Packed binary convolution: sign packing and xnor-popcount accumulation on 64-bit words, with runtime CPU dispatch.
//
// Layout (binarize/deploy/bits.py): signs are packed along the channels of a group, bit j of word w holds channel
// 64 w + j, a set bit is -1, and the spare bits of a group's last word are clear on both operands, so they never
// count. Activations are (N, G, Hp, Wp, Wg) words, weights (G, Og, kh, kw, Wg), and the accumulator is
//
//     acc[n, g Og + o, y, x] = kh kw Cg - 2 sum_{ky, kx, w} popcount(A[n, g, y sh + ky dh, x sw + kx dw, w]
//                                                                   ^ W[g, o, ky, kx, w]).
//
// The weights come prepared once (kernels.py prepare_weight): blocks of 8 output channels, step-major (a step is
// one (tap, word)), each word split into its low and high nibbles. Two blockings:
//
//   * generic, every instruction set: 4 output pixels anywhere in the output x 8 channels keep their sums in
//     registers over the whole reduction; each step loads the 8 weight words once and one input word per pixel,
//     broadcast across the channels (avx512_vpopcntdq: one zmm, vpopcntq; avx2: two ymm, nibble lookups; portable:
//     scalar __builtin_popcountll);
//   * rows, AVX2, outputs of at least 8 pixels: 8 consecutive output pixels x 4 channels, the activations first
//     rearranged so that consecutive pixels read consecutive words at every tap (see conv_rows_avx2); the results
//     leave as vectors of 8 consecutive outputs of one channel, contiguous in NCHW.
//
// The float epilogue (border correction, scale, bias, PReLU, residual) runs on each block's accumulators while they
// are in registers.
//
// The C ABI at the bottom is what binarize/deploy/kernels.py loads with ctypes.

#include <algorithm>
#include <cmath>
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
//
// Prepared weights (binarize/deploy/kernels.py prepare_weight): blocks of 8 output channels, step-major, each word
// split into its low and high nibbles, zero past the last channel:
//
//     prepared[g][block][k][h][b] = (W[g, 8 block + b, k] >> 4 h) & 0x0f0f...0f,    k = (ky kw + kx) Wg + word.
//
// The epilogue (float output only), per output channel o of sample n at pixel (y, x):
//
//     a' = a + c S_{o, y, x}          (border: S sums tap_sums[o] over the taps that read padding, c = coef)
//     y  = a' alpha_o + beta_o
//     z  = y + s_{n, o};  y = (z > 0 ? z : q_{n, o} z) + t_{n, o}      (PReLU, when given)
//     y  = y + r_{n, o, y, x}                                          (residual, when given)
//
// each operation rounded to float32 once, in this order.

constexpr int64_t kBlock = 8;  // output channels per prepared block

struct ConvArgs {
  const int64_t* in;        // (N, G, Hp, Wp, Wg)
  const int64_t* weight;    // prepared, (G, ceil(Og / 8), kh kw Wg, 2, 8)
  float* out;               // (N, G Og, Ho, Wo) float, or null
  int32_t* acc;             // (N, G Og, Ho, Wo) int32, or null
  const float* alpha;       // null or G Og values
  const float* bias;        // null or G Og values
  const float* tap_sums;    // null or (G Og, kh, kw) integers
  int64_t top, left, height, width;
  float coef;
  const float* shift_in;    // null or (N, G Og)
  const float* slope;       // null or (N, G Og): the PReLU is applied when set
  const float* shift_out;   // null or (N, G Og)
  const float* residual;    // null or (N, G Og, Ho, Wo)
  int64_t n, groups, hp, wp, wg, og, kh, kw, channels, sh, sw, dh, dw;

  int64_t ho() const { return (hp - dh * (kh - 1) - 1) / sh + 1; }
  int64_t wo() const { return (wp - dw * (kw - 1) - 1) / sw + 1; }
  int64_t steps() const { return kh * kw * wg; }
  int64_t blocks() const { return (og + kBlock - 1) / kBlock; }
};

// What the epilogue reads, prepared once per call.
struct Finish {
  float* out;
  int32_t* acc;
  const float* scale;      // per output channel (1 without alpha)
  const float* shift;      // per output channel (-0.0 without bias: y + -0.0 == y, signed zeros included)
  const int32_t* cls;      // border class per output pixel (0: no tap in the padding; 8 spare zeros), or null
  const float* border;     // c S per (class, output channel)
  const float* shift_in;
  const float* slope;
  const float* shift_out;
  const float* residual;
  int64_t out_channels, plane;
  int32_t full;            // kh kw Cg: the accumulator of an all-equal receptive field
};

// The buffers behind a Finish (owned by the caller of make_finish).
struct FinishData {
  std::vector<float> scale, shift, border;
  std::vector<int32_t> cls;
};

// Border classes: the output rows (columns) whose taps read the same set of padded rows (columns) share a class,
// class 0 being the rows that read none; an output pixel's class is row class x column classes + column class.
// Returns false for tap sums that are not integers.
bool border_classes(const ConvArgs& a, FinishData& d) {
  const int64_t ho = a.ho(), wo = a.wo(), out_channels = a.groups * a.og;
  auto classes = [](int64_t count, int64_t taps, int64_t stride, int64_t dilation, int64_t start, int64_t size,
                    std::vector<int32_t>& of, std::vector<uint64_t>& masks) {
    masks.assign(1, 0);
    of.assign(static_cast<size_t>(count), 0);
    for (int64_t i = 0; i < count; ++i) {
      uint64_t mask = 0;
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t at = i * stride + k * dilation;
        if (at < start || at >= start + size) mask |= uint64_t{1} << k;
      }
      const auto found = std::find(masks.begin(), masks.end(), mask);
      of[i] = static_cast<int32_t>(found - masks.begin());
      if (found == masks.end()) masks.push_back(mask);
    }
  };
  std::vector<int32_t> row_class, column_class;
  std::vector<uint64_t> row_masks, column_masks;
  classes(ho, a.kh, a.sh, a.dh, a.top, a.height, row_class, row_masks);
  classes(wo, a.kw, a.sw, a.dw, a.left, a.width, column_class, column_masks);
  const int64_t columns = static_cast<int64_t>(column_masks.size());
  d.cls.assign(static_cast<size_t>(ho * wo + kBlock), 0);
  for (int64_t y = 0; y < ho; ++y) {
    for (int64_t x = 0; x < wo; ++x) d.cls[y * wo + x] = static_cast<int32_t>(row_class[y] * columns + column_class[x]);
  }
  const int64_t count = static_cast<int64_t>(row_masks.size()) * columns;
  d.border.assign(static_cast<size_t>(count * out_channels), 0.0f);
  for (int64_t o = 0; o < out_channels; ++o) {
    for (int64_t k = 0; k < a.kh * a.kw; ++k) {
      const float v = a.tap_sums[o * a.kh * a.kw + k];
      if (!(std::nearbyint(v) == v) || std::fabs(v) > float(1 << 24)) return false;
    }
  }
  for (int64_t c = 1; c < count; ++c) {
    const uint64_t rows = row_masks[c / columns], cols = column_masks[c % columns];
    for (int64_t o = 0; o < out_channels; ++o) {
      int64_t sum = 0;
      for (int64_t ky = 0; ky < a.kh; ++ky) {
        for (int64_t kx = 0; kx < a.kw; ++kx) {
          if (((rows >> ky) | (cols >> kx)) & 1) sum += static_cast<int64_t>(a.tap_sums[(o * a.kh + ky) * a.kw + kx]);
        }
      }
      d.border[c * out_channels + o] = a.coef * static_cast<float>(sum);
    }
  }
  return true;
}

// The epilogue's tables; false for invalid tap sums.
bool make_finish(const ConvArgs& a, FinishData& d, Finish& f) {
  const int64_t out_channels = a.groups * a.og;
  d.scale.assign(static_cast<size_t>(out_channels), 1.0f);
  d.shift.assign(static_cast<size_t>(out_channels), -0.0f);
  for (int64_t o = 0; o < out_channels; ++o) {
    if (a.alpha != nullptr) d.scale[o] = a.alpha[o];
    if (a.bias != nullptr) d.shift[o] = a.bias[o];
  }
  const bool border = a.out != nullptr && a.tap_sums != nullptr;
  if (border && !border_classes(a, d)) return false;
  const bool fl = a.out != nullptr;
  f = Finish{a.out, a.acc, d.scale.data(), d.shift.data(), border ? d.cls.data() : nullptr,
             border ? d.border.data() : nullptr, fl ? a.shift_in : nullptr, fl ? a.slope : nullptr,
             fl ? a.shift_out : nullptr, fl ? a.residual : nullptr, out_channels, a.ho() * a.wo(),
             static_cast<int32_t>(a.kh * a.kw * a.channels)};
  return true;
}

// One output value of sample n, output channel o, pixel `pixel` of its plane, from its accumulator.
inline float finish_value(const Finish& f, int64_t n, int64_t o, int64_t pixel, int32_t acc) {
  float v = static_cast<float>(acc);
  if (f.cls != nullptr && f.cls[pixel] != 0) v = v + f.border[f.cls[pixel] * f.out_channels + o];
  v = v * f.scale[o];
  v = v + f.shift[o];
  const int64_t row = n * f.out_channels + o;
  if (f.slope != nullptr) {
    const float z = f.shift_in != nullptr ? v + f.shift_in[row] : v;
    v = z > 0.0f ? z : f.slope[row] * z;
    if (f.shift_out != nullptr) v = v + f.shift_out[row];
  }
  if (f.residual != nullptr) v = v + f.residual[row * f.plane + pixel];
  return v;
}

// 64-byte aligned scratch words, reused by the calling thread from call to call (growing only), so repeated calls
// touch warm memory instead of freshly mapped pages.
int64_t* scratch(int slot, int64_t count) {
  thread_local std::vector<int64_t> buffers[2];
  std::vector<int64_t>& buffer = buffers[slot];
  if (buffer.size() < static_cast<size_t>(count + 8)) buffer.assign(static_cast<size_t>(count + 8), 0);
  const uintptr_t address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + ((64 - address % 64) % 64) / sizeof(int64_t);
}

constexpr uint64_t kLowNibbles = 0x0f0f0f0f0f0f0f0fULL;

// ---- Generic blocking: P pixels (anywhere in the output) x 8 channels, any instruction set. -------------------
//
// A kernel computes acc[p * 8 + b] = full - 2 popcount sum for pixel p, whose receptive field starts at base[p],
// and the prepared block w (step k: low nibbles at w[16 k + b], high nibbles at w[16 k + 8 + b]).

// Portable block: 4 pixels x 8 channels in scalar sums.
struct PortableKernel {
  static constexpr int kPixels = 4;
  static constexpr int kSplit = 1;
  static void block(const int64_t* const* base, const int64_t* koff, int64_t steps, const int64_t* w, int32_t full,
                    int32_t* acc) {
    uint64_t sum[kPixels][kBlock] = {};
    for (int64_t k = 0; k < steps; ++k) {
      const int64_t off = koff[k];
      const uint64_t* wk = reinterpret_cast<const uint64_t*>(w + k * 2 * kBlock);
      uint64_t words[kBlock];
      for (int o = 0; o < kBlock; ++o) words[o] = wk[o] | (wk[kBlock + o] << 4);
      for (int p = 0; p < kPixels; ++p) {
        const uint64_t x = static_cast<uint64_t>(base[p][off]);
        for (int o = 0; o < kBlock; ++o) sum[p][o] += static_cast<uint64_t>(__builtin_popcountll(x ^ words[o]));
      }
    }
    for (int p = 0; p < kPixels; ++p) {
      for (int o = 0; o < kBlock; ++o) acc[p * kBlock + o] = full - 2 * static_cast<int32_t>(sum[p][o]);
    }
  }
};

#if BINARIZE_X86
// The nibble popcount table, in both 128-bit lanes.
__attribute__((target("avx2"))) inline __m256i nibble_counts() {
  return _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
                          3, 4);
}

// AVX2 block: 4 pixels x 8 channels (two vectors of 4), popcount by nibble lookup into byte sums, widened every 31
// steps. The activations come split into nibbles like the weights (two words per word), which the XOR commutes
// with, so a step costs per 4 words two XORs, two lookups (vpshufb) and two byte adds.
struct Avx2Kernel {
  static constexpr int kPixels = 4;
  static constexpr int kSplit = 2;
  __attribute__((target("avx2,popcnt"))) static void block(const int64_t* const* base, const int64_t* koff,
                                                           int64_t steps, const int64_t* w, int32_t full,
                                                           int32_t* acc) {
    constexpr int P = kPixels, V = 2;
    const __m256i lut = nibble_counts();
    const __m256i zero = _mm256_setzero_si256();
    alignas(32) int64_t total[P * kBlock];
    for (int i = 0; i < P * kBlock; ++i) total[i] = 0;
    for (int64_t k0 = 0; k0 < steps; k0 += 31) {
      const int64_t k1 = std::min<int64_t>(steps, k0 + 31);
      __m256i sum[P][V];
      for (int p = 0; p < P; ++p) {
        for (int v = 0; v < V; ++v) sum[p][v] = zero;
      }
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t off = koff[k];
        const __m256i* wk = reinterpret_cast<const __m256i*>(w + k * 2 * kBlock);
        for (int p = 0; p < P; ++p) {
          const __m256i lo = _mm256_set1_epi64x(base[p][off]);
          const __m256i hi = _mm256_set1_epi64x(base[p][off + 1]);
          for (int v = 0; v < V; ++v) {
            const __m256i dlo = _mm256_xor_si256(lo, _mm256_loadu_si256(wk + v));
            const __m256i dhi = _mm256_xor_si256(hi, _mm256_loadu_si256(wk + V + v));
            sum[p][v] = _mm256_add_epi8(sum[p][v], _mm256_shuffle_epi8(lut, dlo));
            sum[p][v] = _mm256_add_epi8(sum[p][v], _mm256_shuffle_epi8(lut, dhi));
          }
          asm volatile("" ::: "memory");  // keeps the next pixel's loads below this one's arithmetic
        }
      }
      for (int p = 0; p < P; ++p) {
        for (int v = 0; v < V; ++v) {
          __m256i* at = reinterpret_cast<__m256i*>(total + p * kBlock + 4 * v);
          _mm256_store_si256(at, _mm256_add_epi64(_mm256_load_si256(at), _mm256_sad_epu8(sum[p][v], zero)));
        }
      }
    }
    for (int i = 0; i < P * kBlock; ++i) acc[i] = full - 2 * static_cast<int32_t>(total[i]);
  }
};

// AVX-512 block: 4 pixels x 8 channels, vpopcntq on the XOR, 64-bit sums.
struct Avx512Kernel {
  static constexpr int kPixels = 4;
  static constexpr int kSplit = 1;
  __attribute__((target("avx512f,avx512bw,avx512vpopcntdq"))) static void block(const int64_t* const* base,
                                                                                const int64_t* koff, int64_t steps,
                                                                                const int64_t* w, int32_t full,
                                                                                int32_t* acc) {
    constexpr int P = kPixels;
    __m512i sum[P];
    for (int p = 0; p < P; ++p) sum[p] = _mm512_setzero_si512();
    for (int64_t k = 0; k < steps; ++k) {
      const int64_t* wk = w + k * 2 * kBlock;
      const __m512i wv = _mm512_or_si512(_mm512_loadu_si512(wk), _mm512_slli_epi64(_mm512_loadu_si512(wk + kBlock), 4));
      const int64_t off = koff[k];
      for (int p = 0; p < P; ++p) {
        const __m512i x = _mm512_set1_epi64(base[p][off]);
        sum[p] = _mm512_add_epi64(sum[p], _mm512_popcnt_epi64(_mm512_xor_si512(x, wv)));
      }
    }
    const __m256i fullv = _mm256_set1_epi32(full);
    for (int p = 0; p < P; ++p) {
      const __m256i s = _mm512_cvtepi64_epi32(sum[p]);
      const __m256i value = _mm256_sub_epi32(fullv, _mm256_add_epi32(s, s));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + p * kBlock), value);
    }
  }
};
#endif

// Writes a block's first `pixels` x `channels` results (pixel p: sample n[p], plane pixel r[p]; channel o0 + b).
void store_block(const Finish& f, const int32_t* acc, const int64_t* n, const int64_t* r, int pixels, int channels,
                 int64_t o0) {
  for (int b = 0; b < channels; ++b) {
    const int64_t o = o0 + b;
    for (int p = 0; p < pixels; ++p) {
      const int64_t at = (n[p] * f.out_channels + o) * f.plane + r[p];
      const int32_t value = acc[p * kBlock + b];
      if (f.acc != nullptr) {
        f.acc[at] = value;
      } else {
        f.out[at] = finish_value(f, n[p], o, r[p], value);
      }
    }
  }
}

// Copies `count` words to dst[i * S * stride] (S = 1), or splits each into its low and high nibbles at
// dst[(i * S + s) * stride] (S = 2).
template <int S>
void split_words(const int64_t* src, int64_t* dst, int64_t count, int64_t stride) {
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t word = static_cast<uint64_t>(src[i]);
    if (S == 1) {
      dst[i * stride] = static_cast<int64_t>(word);
    } else {
      dst[i * 2 * stride] = static_cast<int64_t>(word & kLowNibbles);
      dst[(i * 2 + 1) * stride] = static_cast<int64_t>((word >> 4) & kLowNibbles);
    }
  }
}

constexpr int64_t kChunkPixels = 64;  // output pixels per work item

template <class Kernel>
void conv_generic(const ConvArgs& a, const Finish& f, int threads) {
  constexpr int P = Kernel::kPixels;
  constexpr int S = Kernel::kSplit;
  const int64_t ho = a.ho(), wo = a.wo(), plane = ho * wo;
  const int64_t pixels = a.n * plane;
  const int64_t steps = a.steps();
  const int64_t blocks = a.blocks();
  // The activations split into nibbles (S = 2), or used in place.
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

  parallel_for(threads, a.groups * blocks * chunks, [&](int64_t begin, int64_t end) {
    const int64_t* base[kChunkPixels + P];
    int64_t sample[kChunkPixels + P], offset[kChunkPixels + P];
    alignas(64) int32_t acc[P * kBlock];
    for (int64_t item = begin; item < end; ++item) {
      // Channel blocks vary fastest: a chunk's activations stay in L1 while the blocks' weights stream past.
      const int64_t block = item % blocks;
      const int64_t chunk = (item / blocks) % chunks;
      const int64_t g = item / (chunks * blocks);
      const int64_t p0 = chunk * kChunkPixels;
      const int64_t count = std::min(kChunkPixels, pixels - p0);
      int64_t n = p0 / plane, r = p0 % plane;
      int64_t y = r / wo, x = r % wo;
      for (int64_t i = 0; i < count; ++i) {
        base[i] = input + n * image + ((g * a.hp + y * a.sh) * a.wp + x * a.sw) * a.wg * S;
        sample[i] = n;
        offset[i] = r;
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
      const int64_t o0 = block * kBlock;
      const int channels = static_cast<int>(std::min<int64_t>(kBlock, a.og - o0));
      const int64_t* wblock = a.weight + (g * blocks + block) * steps * 2 * kBlock;
      for (int64_t i = 0; i < count; i += P) {
        Kernel::block(base + i, koff.data(), steps, wblock, f.full, acc);
        const int valid = static_cast<int>(std::min<int64_t>(P, count - i));
        store_block(f, acc, sample + i, offset + i, valid, channels, g * a.og + o0);
      }
    }
  });
}

#if BINARIZE_X86
// ---- AVX2 row blocking: 8 consecutive output pixels x 4 channels. ---------------------------------------------
//
// The activations are first rearranged into planes, one per (sample, group, kx, word, nibble half), holding for
// every padded row r the words that output columns x = 0 .. Wo - 1 read at tap column kx, rows grouped by phase
// r mod s_h. Output pixel p = y Wo + x then reads, at tap (ky, kx), word p + (ky d_h div s_h) Wo of its plane's
// phase (ky d_h mod s_h) block: consecutive pixels read consecutive words, across rows too. A step loads 8 pixels'
// words (two vectors), broadcasts each of 4 channels' weight words, and adds nibble counts into byte sums (at most
// 4 per step, so 63 steps fit a byte). vpsadbw turns a channel's two byte-sum vectors into 8 pixel totals, which
// leave as one vector of 8 consecutive outputs: the epilogue runs 8 pixels wide with per-channel scalars and
// stores contiguously in NCHW.

constexpr int64_t kRowPixels = 8;       // pixels per block
constexpr int64_t kRowChannels = 4;     // channels per block
constexpr int64_t kRowChunkBlocks = 8;  // pixel blocks per work item
constexpr int64_t kRowChunkSets = 8;    // channel blocks per work item
constexpr int64_t kByteSteps = 63;      // half-steps whose counts (<= 4 each) fit a byte

// The 8 int32 popcount totals of pixels 0..7 for one channel, from the byte sums of pixels 0..3 and 4..7.
__attribute__((target("avx2"))) inline __m256i pixel_totals(__m256i low, __m256i high) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i pairs = _mm256_or_si256(_mm256_sad_epu8(low, zero), _mm256_slli_epi64(_mm256_sad_epu8(high, zero), 32));
  return _mm256_permutevar8x32_epi32(pairs, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
}

// Popcount totals of one block over half-steps [j0, j1) (at most kByteSteps): tot[c] holds channel c's 8 pixels.
// `in` points at the block's first pixel in the sample's planes, w at the channels' prepared words (half-step j at
// w[8 j]).
__attribute__((target("avx2"))) inline void row_pass(const int64_t* in, const int64_t* koff, int64_t j0, int64_t j1,
                                                     const int64_t* w, __m256i tot[kRowChannels]) {
  static_assert(kRowChannels == 4, "the pass names its four channels' sums");
  const __m256i lut = nibble_counts();
  // Named sums (not arrays), so that the ordering barrier below leaves them in registers.
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  for (int64_t j = j0; j < j1; ++j) {
    const int64_t* src = in + koff[j];
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 4));
    const int64_t* wj = w + j * kBlock;
    // One channel: its weight word against both pixel vectors. The barrier keeps the next channel's broadcast
    // below this one's arithmetic (hoisting all four runs out of registers).
#define BINARIZE_ROW_CHANNEL(c, sa, sb)                                                 \
  {                                                                                     \
    const __m256i wv = _mm256_set1_epi64x(wj[c]);                                       \
    sa = _mm256_add_epi8(sa, _mm256_shuffle_epi8(lut, _mm256_xor_si256(x0, wv)));       \
    sb = _mm256_add_epi8(sb, _mm256_shuffle_epi8(lut, _mm256_xor_si256(x1, wv)));       \
    asm volatile("" ::: "memory");                                                      \
  }
    BINARIZE_ROW_CHANNEL(0, a0, b0)
    BINARIZE_ROW_CHANNEL(1, a1, b1)
    BINARIZE_ROW_CHANNEL(2, a2, b2)
    BINARIZE_ROW_CHANNEL(3, a3, b3)
#undef BINARIZE_ROW_CHANNEL
  }
  tot[0] = pixel_totals(a0, b0);
  tot[1] = pixel_totals(a1, b1);
  tot[2] = pixel_totals(a2, b2);
  tot[3] = pixel_totals(a3, b3);
}

// The block's popcount totals over all half-steps, into tot[c * 8 + p] (channel c, pixel p). Not inlined, so that
// the caller's live values leave the 16 vector registers to the sums.
__attribute__((target("avx2"), noinline)) void row_block(const int64_t* in, const int64_t* koff, int64_t halves,
                                                         const int64_t* w, int32_t* tot) {
  __m256i part[kRowChannels];
  row_pass(in, koff, 0, std::min(halves, kByteSteps), w, part);
  for (int c = 0; c < kRowChannels; ++c) _mm256_store_si256(reinterpret_cast<__m256i*>(tot + 8 * c), part[c]);
  for (int64_t j0 = kByteSteps; j0 < halves; j0 += kByteSteps) {
    row_pass(in, koff, j0, std::min(halves, j0 + kByteSteps), w, part);
    for (int c = 0; c < kRowChannels; ++c) {
      __m256i* at = reinterpret_cast<__m256i*>(tot + 8 * c);
      _mm256_store_si256(at, _mm256_add_epi32(_mm256_load_si256(at), part[c]));
    }
  }
}

// The epilogue of 8 pixels (plane pixels r .. r + valid - 1 of sample n) of output channel o, from its accumulators.
__attribute__((target("avx2"))) inline void row_store(const Finish& f, __m256i acc, int64_t n, int64_t o, int64_t r,
                                                      int valid, __m256i border_index, bool border) {
  const int64_t row = n * f.out_channels + o;
  const int64_t at = row * f.plane + r;
  const __m256i mask = lane_mask(valid);
  if (f.acc != nullptr) {
    if (valid == kRowPixels) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(f.acc + at), acc);
    } else {
      _mm256_maskstore_epi32(f.acc + at, mask, acc);
    }
    return;
  }
  __m256 v = _mm256_cvtepi32_ps(acc);
  if (border) {
    const __m256i index = _mm256_add_epi32(border_index, _mm256_set1_epi32(static_cast<int>(o)));
    v = _mm256_add_ps(v, _mm256_i32gather_ps(f.border, index, 4));  // class 0 adds +0.0: exact
  }
  v = _mm256_mul_ps(v, _mm256_set1_ps(f.scale[o]));
  v = _mm256_add_ps(v, _mm256_set1_ps(f.shift[o]));
  if (f.slope != nullptr) {
    const __m256 z = f.shift_in != nullptr ? _mm256_add_ps(v, _mm256_set1_ps(f.shift_in[row])) : v;
    const __m256 scaled = _mm256_mul_ps(z, _mm256_set1_ps(f.slope[row]));
    v = _mm256_blendv_ps(scaled, z, _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GT_OQ));
    if (f.shift_out != nullptr) v = _mm256_add_ps(v, _mm256_set1_ps(f.shift_out[row]));
  }
  if (valid == kRowPixels) {
    if (f.residual != nullptr) v = _mm256_add_ps(v, _mm256_loadu_ps(f.residual + at));
    _mm256_storeu_ps(f.out + at, v);
  } else {
    if (f.residual != nullptr) v = _mm256_add_ps(v, _mm256_maskload_ps(f.residual + at, mask));
    _mm256_maskstore_ps(f.out + at, mask, v);
  }
}

// The geometry of a row-blocked convolution, shared by its work items.
struct RowPlan {
  const int64_t* planes;  // the rearranged activations
  const int64_t* koff;    // word offset per half-step
  int64_t plane, halves, pixel_blocks, chunks, sets, set_chunks;
  int64_t sample_words;   // words of one (sample, group)'s planes
};

// Work items [begin, end): item = ((n G + g) chunks + chunk) set_chunks + set_chunk, each kRowChunkBlocks pixel
// blocks x kRowChunkSets channel blocks.
__attribute__((target("avx2,popcnt"))) void row_items(const ConvArgs& a, const Finish& f, const RowPlan& plan,
                                                      int64_t begin, int64_t end) {
  const int64_t steps = a.steps(), blocks = a.blocks();
  const __m256i fullv = _mm256_set1_epi32(f.full);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t set_chunk = item % plan.set_chunks;
    const int64_t chunk = (item / plan.set_chunks) % plan.chunks;
    const int64_t ng = item / (plan.set_chunks * plan.chunks);
    const int64_t n = ng / a.groups, g = ng % a.groups;
    const int64_t* in = plan.planes + ng * plan.sample_words;
    const int64_t b0 = chunk * kRowChunkBlocks, b1 = std::min(plan.pixel_blocks, b0 + kRowChunkBlocks);
    const int64_t s0 = set_chunk * kRowChunkSets, s1 = std::min(plan.sets, s0 + kRowChunkSets);
    for (int64_t set = s0; set < s1; ++set) {
      const int64_t o0 = set * kRowChannels;
      const int64_t* w = a.weight + (g * blocks + o0 / kBlock) * steps * 2 * kBlock + o0 % kBlock;
      const int channels = static_cast<int>(std::min<int64_t>(kRowChannels, a.og - o0));
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = b * kRowPixels;
        const int valid = static_cast<int>(std::min<int64_t>(kRowPixels, plan.plane - r));
        alignas(32) int32_t tot[kRowChannels * kRowPixels];
        row_block(in + r, plan.koff, plan.halves, w, tot);
        bool border = false;
        __m256i border_index = _mm256_setzero_si256();
        if (f.cls != nullptr) {
          const __m256i cls = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(f.cls + r));
          border = !_mm256_testz_si256(cls, cls);
          border_index = _mm256_mullo_epi32(cls, _mm256_set1_epi32(static_cast<int>(f.out_channels)));
        }
        for (int c = 0; c < channels; ++c) {
          const __m256i pop = _mm256_load_si256(reinterpret_cast<const __m256i*>(tot + 8 * c));
          const __m256i acc = _mm256_sub_epi32(fullv, _mm256_add_epi32(pop, pop));
          row_store(f, acc, n, g * a.og + o0 + c, r, valid, border_index, border);
        }
      }
    }
  }
}

__attribute__((target("avx2,popcnt"))) void conv_rows_avx2(const ConvArgs& a, const Finish& f, int threads) {
  const int64_t ho = a.ho(), wo = a.wo(), plane = ho * wo;
  const int64_t steps = a.steps(), halves = 2 * steps;
  // Row phases: phase q holds rows q, q + s_h, ..., starting at word start[q] * Wo of a plane.
  std::vector<int64_t> start(static_cast<size_t>(a.sh + 1), 0);
  for (int64_t q = 0; q < a.sh; ++q) start[q + 1] = start[q] + (a.hp - q + a.sh - 1) / a.sh;
  const int64_t plane_words = a.hp * wo;
  const int64_t planes = a.kw * a.wg * 2;  // per sample and group
  const int64_t total = a.n * a.groups * planes * plane_words;
  int64_t* split = scratch(1, total + kRowPixels);
  std::fill(split + total, split + total + kRowPixels, int64_t{0});
  const int64_t sources = a.n * a.groups * a.kw * a.wg;
  parallel_for(total >= (int64_t{1} << 16) ? threads : 1, sources, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t word = item % a.wg, kx = (item / a.wg) % a.kw, ng = item / (a.wg * a.kw);
      int64_t* lo = split + (item * 2) * plane_words;
      int64_t* hi = lo + plane_words;
      for (int64_t r = 0; r < a.hp; ++r) {
        const int64_t* src = a.in + ((ng * a.hp + r) * a.wp + kx * a.dw) * a.wg + word;
        const int64_t at = (start[r % a.sh] + r / a.sh) * wo;
        const int64_t stride = a.sw * a.wg;
        for (int64_t x = 0; x < wo; ++x) {
          const uint64_t v = static_cast<uint64_t>(src[x * stride]);
          lo[at + x] = static_cast<int64_t>(v & kLowNibbles);
          hi[at + x] = static_cast<int64_t>((v >> 4) & kLowNibbles);
        }
      }
    }
  });
  // Word offset of half-step j = 2 k + h, k = (ky kw + kx) Wg + word, from a pixel's position in the planes.
  std::vector<int64_t> koff(static_cast<size_t>(halves));
  for (int64_t ky = 0; ky < a.kh; ++ky) {
    const int64_t row = (start[(ky * a.dh) % a.sh] + (ky * a.dh) / a.sh) * wo;
    for (int64_t kx = 0; kx < a.kw; ++kx) {
      for (int64_t word = 0; word < a.wg; ++word) {
        for (int64_t h = 0; h < 2; ++h) {
          koff[((ky * a.kw + kx) * a.wg + word) * 2 + h] = ((kx * a.wg + word) * 2 + h) * plane_words + row;
        }
      }
    }
  }
  RowPlan plan{split, koff.data(), plane, halves, (plane + kRowPixels - 1) / kRowPixels, 0,
               (a.og + kRowChannels - 1) / kRowChannels, 0, planes * plane_words};
  plan.chunks = (plan.pixel_blocks + kRowChunkBlocks - 1) / kRowChunkBlocks;
  plan.set_chunks = (plan.sets + kRowChunkSets - 1) / kRowChunkSets;
  parallel_for(threads, a.n * a.groups * plan.chunks * plan.set_chunks,
               [&](int64_t begin, int64_t end) { row_items(a, f, plan, begin, end); });
}

#endif

// False for arguments the checks missed (invalid tap sums).
bool conv_dispatch(const ConvArgs& a, int isa, int threads) {
  FinishData data;
  Finish f;
  if (!make_finish(a, data, f)) return false;
#if BINARIZE_X86
  if (isa == kAvx512) {
    conv_generic<Avx512Kernel>(a, f, threads);
    return true;
  }
  if (isa == kAvx2) {
    if (a.ho() * a.wo() >= kRowPixels) {
      conv_rows_avx2(a, f, threads);
    } else {
      conv_generic<Avx2Kernel>(a, f, threads);
    }
    return true;
  }
#endif
  (void)isa;
  conv_generic<PortableKernel>(a, f, threads);
  return true;
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

// Code -3: tap sums that are not integers of magnitude <= 2^24.
__attribute__((visibility("default"))) int binarize_conv(
    const int64_t* in, const int64_t* prepared, float* out, int32_t* acc, const float* alpha, const float* bias,
    const float* tap_sums, int64_t top, int64_t left, int64_t height, int64_t width, float coef,
    const float* shift_in, const float* slope, const float* shift_out, const float* residual, int64_t n,
    int64_t groups, int64_t hp, int64_t wp, int64_t wg, int64_t og, int64_t kh, int64_t kw, int64_t channels,
    int64_t sh, int64_t sw, int64_t dh, int64_t dw, int isa, int threads) {
  if ((out == nullptr) == (acc == nullptr)) return -1;
  if (sh < 1 || sw < 1 || dh < 1 || dw < 1 || kh < 1 || kw < 1) return -1;
  if (hp < dh * (kh - 1) + 1 || wp < dw * (kw - 1) + 1) return -1;
  if (wg != (channels + 63) / 64 || channels < 1) return -1;
  if (tap_sums != nullptr && (kh > 64 || kw > 64)) return -1;
  if ((shift_in != nullptr || shift_out != nullptr) && slope == nullptr) return -1;
  if (isa > binarize::best_isa()) return -2;
  const binarize::ConvArgs args{in,       prepared, out,   acc,       alpha,    bias, tap_sums, top, left,
                                height,   width,    coef,  shift_in,  slope,    shift_out, residual, n, groups,
                                hp,       wp,       wg,    og,        kh,       kw,   channels, sh,  sw,
                                dh,       dw};
  return binarize::conv_dispatch(args, isa, threads) ? 0 : -3;
}

}  // extern "C"
