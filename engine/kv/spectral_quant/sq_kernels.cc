#include "engine/kv/spectral_quant/sq_kernels.h"

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {
namespace {

absl::Status CheckTensor(const at::Tensor& t, const char* name, c10::ScalarType dtype, c10::Device device) {
  if (!t.defined()) return absl::InternalError(absl::StrCat("spectral_quant: ", name, " is undefined"));
  if (t.scalar_type() != dtype || t.device() != device || !t.is_contiguous()) {
    return absl::InternalError(absl::StrCat("spectral_quant: ", name, " must be contiguous ", c10::toString(dtype),
                                            " on ", device.str(), " (got ", c10::toString(t.scalar_type()), " on ",
                                            t.device().str(), t.is_contiguous() ? "" : ", strided", ")"));
  }
  return absl::OkStatus();
}

uint32_t* U32(at::Tensor* t) { return reinterpret_cast<uint32_t*>(t->mutable_data_ptr<int32_t>()); }
const uint32_t* U32(const at::Tensor* t) { return reinterpret_cast<const uint32_t*>(t->const_data_ptr<int32_t>()); }

}  // namespace

c10::ScalarType SqDenseDtype(const KvGeometry& g) { return g.device.is_cuda() ? at::kBFloat16 : at::kFloat; }

absl::Status SqRunCompress(const SqCompressArgs& a) {
  const c10::Device dev = a.zk->device();
  const int64_t H = a.n_kv_heads, n = a.zk->size(0);
  for (auto [t, name] : {std::pair{a.zk, "zk"}, std::pair{a.zv, "zv"}}) {
    if (absl::Status s = CheckTensor(*t, name, at::kFloat, dev); !s.ok()) return s;
  }
  SqQuantizePackParams k, v;
  k.z = a.zk->const_data_ptr<float>();
  k.plan = a.dev->KView();
  k.tables = a.tables->const_data_ptr<float>();
  if (a.first_token != nullptr) {
    if (absl::Status s = CheckTensor(*a.first_token, "first_token", at::kInt, dev); !s.ok()) return s;
    k.first_token = a.first_token->const_data_ptr<int32_t>();
  }
  k.records = U32(a.k_rec) + a.first * H * a.dev->words_k;
  if (a.r_norm != nullptr) {
    k.s_prime = a.dev->s_prime.const_data_ptr<float>();
    k.r_norm = reinterpret_cast<uint16_t*>(a.r_norm->mutable_data_ptr<int16_t>()) + a.first * H;
    k.signs = U32(a.signs) + a.first * H * a.dev->sign_words;
    k.sign_words = a.dev->sign_words;
  }
  k.num_tokens = static_cast<int>(n);
  k.num_kv_heads = static_cast<int>(H);
  k.head_dim = static_cast<int>(a.head_dim);
  v = k;
  v.z = a.zv->const_data_ptr<float>();
  v.plan = a.dev->VView();
  v.records = U32(a.v_rec) + a.first * H * a.dev->words_v;
  v.s_prime = nullptr;
  v.r_norm = nullptr;
  v.signs = nullptr;
  v.sign_words = 0;
  for (const SqQuantizePackParams* p : {&k, &v}) {
    if (const char* err = SqQuantizePackValidate(*p)) {
      return absl::InternalError(absl::StrCat("spectral_quant: sq_quantize_pack params: ", err));
    }
  }
  if (dev.is_cpu()) {
    SqQuantizePackRef(k);
    SqQuantizePackRef(v);
    return absl::OkStatus();
  }
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  for (const SqQuantizePackParams* p : {&k, &v}) {
    if (cudaError_t e = LaunchSqQuantizePack(*p, stream); e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("spectral_quant: LaunchSqQuantizePack: ", cudaGetErrorString(e)));
    }
  }
  return absl::OkStatus();
#else
  return absl::InternalError("spectral_quant: CUDA tensors in a build without CUDA");
#endif
}

absl::StatusOr<SqAttendOut> SqRunAttend(const SqAttendArgs& a) {
  const c10::Device dev = a.q_rot->device();
  const int64_t H = a.n_heads, n = a.q_rot->size(1), D = a.head_dim;
  const int64_t Td = a.dense_k != nullptr ? a.dense_k->size(0) : 0;
  SqAttendOut out;
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(dev);
  out.a_eig = at::empty({H, n, D}, f32);
  if (Td > 0) out.a_dense = at::empty({H, n, D}, f32);
  SqAttendParams p;
  p.q_rot = a.q_rot->const_data_ptr<float>();
  p.q_sketch = a.q_sketch != nullptr ? a.q_sketch->const_data_ptr<float>() : nullptr;
  p.q_raw = a.q_raw->const_data_ptr<float>();
  // No records yet (every token so far is a sink): K2 takes null at Tk = 0.
  p.k_records = a.k_rec->defined() ? U32(a.k_rec) : nullptr;
  p.v_records = a.v_rec->defined() ? U32(a.v_rec) : nullptr;
  if (a.q_sketch != nullptr && a.r_norm->defined()) {
    p.k_rnorm = reinterpret_cast<const uint16_t*>(a.r_norm->const_data_ptr<int16_t>());
    p.k_signs = U32(a.signs);
    p.sign_words = a.dev->sign_words;
  }
  p.k_plan = a.dev->KView();
  p.v_plan = a.dev->VView();
  p.tables = a.tables->const_data_ptr<float>();
  if (Td > 0) {
    const c10::ScalarType dt = a.dense_k->scalar_type();
    if (absl::Status s = CheckTensor(*a.dense_k, "dense_k", dt, dev); !s.ok()) return s;
    if (absl::Status s = CheckTensor(*a.dense_v, "dense_v", dt, dev); !s.ok()) return s;
    p.dense_k = a.dense_k->const_data_ptr();
    p.dense_v = a.dense_v->const_data_ptr();
    p.dense_dtype = dt == at::kBFloat16 ? KvDType::kBf16 : KvDType::kFp32;
    p.d_pos = a.d_pos != nullptr ? a.d_pos->const_data_ptr<int32_t>() : nullptr;
    p.a_dense = out.a_dense.mutable_data_ptr<float>();
  }
  p.q_pos = a.q_pos != nullptr ? a.q_pos->const_data_ptr<int32_t>() : nullptr;
  if (a.num_keys_live != nullptr) {
    if (absl::Status s = CheckTensor(*a.num_keys_live, "num_keys_live", at::kInt, dev); !s.ok()) return s;
    p.num_keys_live = a.num_keys_live->const_data_ptr<int32_t>();
  }
  p.k_pos = nullptr;  // compressed key j sits at position j (nothing is evicted)
  p.a_eig = out.a_eig.mutable_data_ptr<float>();
  p.num_q_heads = static_cast<int>(H);
  p.num_kv_heads = static_cast<int>(a.n_kv_heads);
  p.head_dim = static_cast<int>(D);
  p.num_queries = static_cast<int>(n);
  p.num_keys = static_cast<int>(a.num_keys);
  p.num_dense = static_cast<int>(Td);
  p.scale = a.scale;
  if (dev.is_cpu()) {
    p.num_splits = 1;
    if (const char* err = SqAttendValidate(p)) {
      return absl::InternalError(absl::StrCat("spectral_quant: sq_attend params: ", err));
    }
    SqAttendRef(p);
    return out;
  }
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  p.num_splits = SqPlanAttendSplits(p.num_q_heads, p.num_kv_heads, p.num_queries, p.num_keys + p.num_dense, sms);
  at::Tensor ws;
  if (const size_t bytes = SqAttendWorkspaceBytes(p.num_q_heads, p.num_queries, p.num_splits, p.head_dim)) {
    ws = at::empty({static_cast<int64_t>((bytes + 15) / 16 * 4)}, f32);  // 16-byte aligned (caching allocator)
    p.workspace = ws.mutable_data_ptr<float>();
  }
  if (const char* err = SqAttendValidate(p)) {
    return absl::InternalError(absl::StrCat("spectral_quant: sq_attend params: ", err));
  }
  if (cudaError_t e = LaunchSqAttend(p, at::cuda::getCurrentCUDAStream()); e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("spectral_quant: LaunchSqAttend: ", cudaGetErrorString(e)));
  }
  return out;
#else
  return absl::InternalError("spectral_quant: CUDA tensors in a build without CUDA");
#endif
}

absl::StatusOr<at::Tensor> SqRunDequantHost(const SqLayerDevice& dev, int type, const at::Tensor& records, int64_t n,
                                            int64_t n_kv_heads, int64_t head_dim) {
  SqLayerDevice host;
  host.k_width = dev.k_width.cpu(), host.v_width = dev.v_width.cpu();
  host.k_scale = dev.k_scale.cpu(), host.v_scale = dev.v_scale.cpu();
  host.k_off = dev.k_off.cpu(), host.v_off = dev.v_off.cpu();
  host.k_deff = dev.k_deff.cpu(), host.v_deff = dev.v_deff.cpu();
  host.words_k = dev.words_k, host.words_v = dev.words_v;
  at::Tensor rec = records.narrow(0, 0, n).cpu().contiguous();
  at::Tensor tables = SqUnitTables(c10::Device(c10::kCPU));
  at::Tensor zhat = at::empty({n, n_kv_heads, head_dim}, at::kFloat);
  SqDequantParams p;
  p.records = U32(&rec);
  p.plan = type == 0 ? host.KView() : host.VView();
  p.tables = tables.const_data_ptr<float>();
  p.zhat = zhat.mutable_data_ptr<float>();
  p.num_tokens = static_cast<int>(n);
  p.num_kv_heads = static_cast<int>(n_kv_heads);
  p.head_dim = static_cast<int>(head_dim);
  if (!SqDequantRef(p)) return absl::InternalError(absl::StrCat("spectral_quant: sq_dequant params: ", SqDequantValidate(p)));
  return zhat;
}

}  // namespace kvstream
