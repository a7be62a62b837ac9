// Random quantized blocks written directly in each format (model/synth.h: random_blocks).
//
// Each format draws its level bits uniformly and picks its scales so that the dequantized values
// have mean ~0 and standard deviation ~sigma. Per block a gain in [0.8, 1.2] varies the
// super-scale (trained weights do not have one scale everywhere). With q uniform on 0..L-1 the
// level's mean is (L-1)/2 and its mean square about the centre (L^2-1)/12; formats with a signed
// scale use a random sign per block (or sub-block) so the means cancel; formats with an offset
// (Q4_K, Q5_K, Q5_1) set it to the level mean times the step.
#include <cmath>
#include <cstring>

#include "model/synth.h"
#include "model/synth_rng.h"
#include "quant/formats.h"
#include "util/str.h"

namespace straw::model {

namespace {

using synth::Rng;

// Root mean square of an integer drawn uniformly from [lo, hi].
float rms_uniform(int lo, int hi) {
  double sum = 0;
  for (int k = lo; k <= hi; ++k) sum += double(k) * k;
  return static_cast<float>(std::sqrt(sum / (hi - lo + 1)));
}

// Standard deviation of a level drawn uniformly from 0..n-1 about its mean.
float level_std(int n) {
  return static_cast<float>(std::sqrt((double(n) * n - 1) / 12.0));
}

float gain(Rng& r) {
  return 0.8f + 0.4f * r.uniform();
}

uint16_t half(float v) {
  return quant::fp32_to_fp16(v);
}

// Root mean square of the IQ4_NL / IQ4_XS table over uniformly drawn indices.
float iq4_rms() {
  double sum = 0;
  for (int8_t v : quant::kIQ4Values) sum += double(v) * v;
  return static_cast<float>(std::sqrt(sum / 16));
}

// Q4_K and Q5_K: y = d*sc*q - dmin*m per sub-block. sc is drawn from [kScMin, 63] and m = sc with
// dmin = d * (levels-1)/2, so each sub-block is d*sc*(q - mean): centred.
constexpr int kScMin = 24;

template <class Block>
void kquant_scales(Rng& r, Block& b, int levels, float sigma) {
  static const float sc_rms = rms_uniform(kScMin, 63);
  uint8_t sc[8];
  for (uint8_t& s : sc) s = static_cast<uint8_t>(r.range(kScMin, 63));
  quant::kquant_pack_scale_min(sc, sc, b.scales);
  const float d = sigma * gain(r) / (sc_rms * level_std(levels));
  b.d = half(d);
  b.dmin = half(d * 0.5f * float(levels - 1));
}

void fill_q4_k(Rng& r, quant::BlockQ4K& b, float sigma) {
  kquant_scales(r, b, 16, sigma);
  r.bytes(b.qs, sizeof b.qs);
}

void fill_q5_k(Rng& r, quant::BlockQ5K& b, float sigma) {
  kquant_scales(r, b, 32, sigma);
  r.bytes(b.qh, sizeof b.qh);
  r.bytes(b.qs, sizeof b.qs);
}

// Q6_K: y = d*sc*(q-32), q uniform on 0..63 (mean square about 32: 341.5), signed 8-bit sub-block
// scales with |sc| in [16, 63].
void fill_q6_k(Rng& r, quant::BlockQ6K& b, float sigma) {
  static const float sc_rms = rms_uniform(16, 63);
  static const float q_rms = std::sqrt(level_std(64) * level_std(64) + 0.25f);
  r.bytes(b.ql, sizeof b.ql);
  r.bytes(b.qh, sizeof b.qh);
  for (int8_t& s : b.scales) s = static_cast<int8_t>(r.sign() * float(r.range(16, 63)));
  b.d = half(sigma * gain(r) / (sc_rms * q_rms));
}

// IQ4_XS: y = d*(ls-32)*table[q]; the signed sub-block scale ls-32 has |.| in [8, 31].
void fill_iq4_xs(Rng& r, quant::BlockIQ4XS& b, float sigma) {
  static const float s_rms = rms_uniform(8, 31);
  static const float v_rms = iq4_rms();
  uint16_t hi = 0;
  std::memset(b.scales_l, 0, sizeof b.scales_l);
  for (int s = 0; s < 8; ++s) {
    const int ls = 32 + (r.sign() > 0 ? 1 : -1) * r.range(8, 31);
    b.scales_l[s / 2] = static_cast<uint8_t>(b.scales_l[s / 2] | (ls & 0xF) << (4 * (s % 2)));
    hi = static_cast<uint16_t>(hi | ((ls >> 4) & 3) << (2 * s));
  }
  b.scales_h = hi;
  r.bytes(b.qs, sizeof b.qs);
  b.d = half(sigma * gain(r) / (s_rms * v_rms));
}

void fill_iq4_nl(Rng& r, quant::BlockIQ4NL& b, float sigma) {
  static const float v_rms = iq4_rms();
  r.bytes(b.qs, sizeof b.qs);
  b.d = half(r.sign() * sigma * gain(r) / v_rms);
}

// Q5_0: y = d*(q-16), q uniform on 0..31 (mean square about 16: 85.5); d of random sign.
void fill_q5_0(Rng& r, quant::BlockQ5_0& b, float sigma) {
  r.bytes(b.qh, sizeof b.qh);
  r.bytes(b.qs, sizeof b.qs);
  b.d = half(r.sign() * sigma * gain(r) / std::sqrt(85.5f));
}

// Q5_1: y = d*q + m with m = -15.5*d.
void fill_q5_1(Rng& r, quant::BlockQ5_1& b, float sigma) {
  r.bytes(b.qh, sizeof b.qh);
  r.bytes(b.qs, sizeof b.qs);
  const float d = sigma * gain(r) / level_std(32);
  b.d = half(d);
  b.m = half(-15.5f * d);
}

// Q8_0: y = d*q with q uniform on -127..127 (-128 never occurs in llama.cpp's blocks either).
void fill_q8_0(Rng& r, quant::BlockQ8_0& b, float sigma) {
  static const float q_rms = rms_uniform(-127, 127);
  for (int j = 0; j < 32; j += 4) {
    const uint64_t v = r.next();
    for (int k = 0; k < 4; ++k)
      b.qs[j + k] =
          static_cast<int8_t>(static_cast<int>(((v >> (16 * k)) & 0xFFFF) * 255 >> 16) - 127);
  }
  b.d = half(r.sign() * sigma * gain(r) / q_rms);
}

template <class Block, class Fill>
void fill_all(void* dst, int64_t n, Rng& r, float sigma, Fill fill) {
  auto* b = static_cast<Block*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    Block blk;
    std::memset(&blk, 0, sizeof blk);
    fill(r, blk, sigma);
    std::memcpy(b + i, &blk, sizeof blk);
  }
}

}  // namespace

void random_blocks(quant::Type t, void* dst, int64_t n_blocks, uint64_t seed, float sigma) {
  Rng r(seed);
  using quant::Type;
  switch (t) {
    case Type::F32: {
      auto* y = static_cast<float*>(dst);
      for (int64_t i = 0; i < n_blocks; ++i) y[i] = sigma * r.normal();
      return;
    }
    case Type::F16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n_blocks; ++i) y[i] = half(sigma * r.normal());
      return;
    }
    case Type::Q8_0:
      return fill_all<quant::BlockQ8_0>(dst, n_blocks, r, sigma, fill_q8_0);
    case Type::Q5_0:
      return fill_all<quant::BlockQ5_0>(dst, n_blocks, r, sigma, fill_q5_0);
    case Type::Q5_1:
      return fill_all<quant::BlockQ5_1>(dst, n_blocks, r, sigma, fill_q5_1);
    case Type::IQ4_NL:
      return fill_all<quant::BlockIQ4NL>(dst, n_blocks, r, sigma, fill_iq4_nl);
    case Type::IQ4_XS:
      return fill_all<quant::BlockIQ4XS>(dst, n_blocks, r, sigma, fill_iq4_xs);
    case Type::Q4_K:
      return fill_all<quant::BlockQ4K>(dst, n_blocks, r, sigma, fill_q4_k);
    case Type::Q5_K:
      return fill_all<quant::BlockQ5K>(dst, n_blocks, r, sigma, fill_q5_k);
    case Type::Q6_K:
      return fill_all<quant::BlockQ6K>(dst, n_blocks, r, sigma, fill_q6_k);
    default:
      break;
  }
  fail("the synthesizer cannot write random blocks of type ", quant::type_name(t),
       " (it writes F32 F16 Q8_0 Q5_0 Q5_1 IQ4_NL IQ4_XS Q4_K Q5_K Q6_K)");
}

}  // namespace straw::model
