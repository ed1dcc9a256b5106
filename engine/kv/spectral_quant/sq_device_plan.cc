#include "engine/kv/spectral_quant/sq_device_plan.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace kvstream {

SqPlanView SqLayerDevice::KView() const {
  SqPlanView v;
  v.width = k_width.const_data_ptr<uint8_t>();
  v.scale = k_scale.const_data_ptr<float>();
  v.bit_offset = reinterpret_cast<const uint16_t*>(k_off.const_data_ptr<int16_t>());
  v.d_eff = k_deff.const_data_ptr<int32_t>();
  v.words = words_k;
  return v;
}

SqPlanView SqLayerDevice::VView() const {
  SqPlanView v;
  v.width = v_width.const_data_ptr<uint8_t>();
  v.scale = v_scale.const_data_ptr<float>();
  v.bit_offset = reinterpret_cast<const uint16_t*>(v_off.const_data_ptr<int16_t>());
  v.d_eff = v_deff.const_data_ptr<int32_t>();
  v.words = words_v;
  return v;
}

int64_t SqLayerDevice::bytes() const {
  int64_t b = 0;
  for (const at::Tensor* t : {&k_width, &v_width, &k_scale, &v_scale, &k_off, &v_off, &k_deff, &v_deff, &vk, &vv,
                              &s_sem, &s_prime, &mu_k, &mu_v}) {
    if (t->defined()) b += static_cast<int64_t>(t->nbytes());
  }
  return b;
}

int64_t SqDevicePlan::bytes() const {
  int64_t b = tables.defined() ? static_cast<int64_t>(tables.nbytes()) : 0;
  for (const SqLayerDevice& l : layers) b += l.bytes();
  return b;
}

at::Tensor SqUnitTables(c10::Device device) {
  static const at::Tensor host = [] {
    at::Tensor t = at::empty({kSqTableFloats}, at::kFloat);
    SqBuildUnitTables(t.mutable_data_ptr<float>());
    return t;
  }();
  return device.is_cpu() ? host : host.to(device);
}

at::Tensor SqQjlMatrix(int64_t layer, int64_t head, int64_t D) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(42 + 1000 * layer + head));
  return at::randn({D, D}, gen, at::TensorOptions().dtype(at::kFloat)).to(at::kHalf).to(at::kFloat);
}

namespace {

// [Hkv, D] host arrays of one type -> device tensors.
void TypeArrays(const std::vector<SqTypePlan>& tp, int64_t D, c10::Device device, at::Tensor* width, at::Tensor* scale,
                at::Tensor* off, at::Tensor* deff) {
  const int64_t H = static_cast<int64_t>(tp.size());
  at::Tensor w = at::empty({H, D}, at::kByte), s = at::empty({H, D}, at::kFloat), o = at::empty({H, D}, at::kShort),
             d = at::empty({H}, at::kInt);
  for (int64_t h = 0; h < H; ++h) {
    std::memcpy(w.mutable_data_ptr<uint8_t>() + h * D, tp[h].width.data(), D);
    std::memcpy(s.mutable_data_ptr<float>() + h * D, tp[h].scale.data(), D * 4);
    std::memcpy(o.mutable_data_ptr<int16_t>() + h * D, tp[h].offset.data(), D * 2);
    d.mutable_data_ptr<int32_t>()[h] = tp[h].d_eff;
  }
  *width = w.to(device);
  *scale = s.to(device);
  *off = o.to(device);
  *deff = d.to(device);
}

// [Hkv, D] means of one type (centred spectra).
at::Tensor Means(const SqProfile& p, int64_t layer, int type) {
  const int64_t H = p.n_kv_heads, D = p.head_dim;
  at::Tensor out = at::empty({H, D}, at::kFloat);
  for (int64_t h = 0; h < H; ++h) {
    std::memcpy(out.mutable_data_ptr<float>() + h * D, p.at(layer, h, type, true).mean.data(), D * 4);
  }
  return out;
}

// [Hkv, D, D] eigenbases of one type: [h][r][c] from the column-major file.
at::Tensor Bases(const SqProfile& p, int64_t layer, int type, bool centred) {
  const int64_t H = p.n_kv_heads, D = p.head_dim;
  at::Tensor out = at::empty({H, D, D}, at::kFloat);
  for (int64_t h = 0; h < H; ++h) {
    const SqSpectrum& s = p.at(layer, h, type, centred);
    at::Tensor cm = at::from_blob(const_cast<float*>(s.vecs.data()), {D, D}, at::kFloat);  // [c][r]
    out[h].copy_(cm.t());
  }
  return out;
}

}  // namespace

SqLayerDevice SqBuildLayerDevice(const SqPlan& plan, const SqProfile& p, int64_t layer, c10::Device device) {
  const SqLayerPlan& lp = plan.layers[layer];
  const int64_t D = p.head_dim, H = p.n_kv_heads;
  SqLayerDevice d;
  TypeArrays(lp.k, D, device, &d.k_width, &d.k_scale, &d.k_off, &d.k_deff);
  TypeArrays(lp.v, D, device, &d.v_width, &d.v_scale, &d.v_off, &d.v_deff);
  d.words_k = lp.words_k;
  d.words_v = lp.words_v;
  at::Tensor vk = Bases(p, layer, 0, plan.centred_k);
  d.vk = vk.to(device);
  d.vv = Bases(p, layer, 1, plan.centred_v).to(device);
  if (plan.centred_k) d.mu_k = Means(p, layer, 0).to(device);
  if (plan.centred_v) d.mu_v = Means(p, layer, 1).to(device);
  if (plan.config.use_qjl) {
    d.sign_words = SqSignWords(lp.k_max_d_eff);  // the whole layer's, also on a tensor-parallel slice
    at::Tensor s = at::zeros({H, D, D}, at::kFloat);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t de = lp.k[h].d_eff;
      s[h].narrow(0, 0, de).copy_(SqQjlMatrix(layer, plan.head_offset + h, D).narrow(0, 0, de));  // model head
    }
    d.s_sem = s.to(device);
    d.s_prime = at::matmul(s, vk).to(device);  // (S_sem V_K)_m: rows >= d_eff stay 0
  }
  return d;
}

std::shared_ptr<const SqDevicePlan> SqBuildDevicePlan(std::shared_ptr<const SqPlan> plan, const SqProfile& p,
                                                      c10::Device device) {
  auto d = std::make_shared<SqDevicePlan>();
  d->plan = plan;
  d->tables = SqUnitTables(device);
  d->layers.reserve(p.n_layers);
  for (int64_t l = 0; l < p.n_layers; ++l) d->layers.push_back(SqBuildLayerDevice(*plan, p, l, device));
  return d;
}

}  // namespace kvstream
