// Tensor operations: shapes, math, nn primitives, reductions, in-place updates.
#include "shim_internal.h"

#include <cmath>
#include <stdexcept>

static at::Tensor binary(int op, const at::Tensor &a, const at::Tensor &b) {
  switch (op) {
    case CT_ADD: return at::add(a, b);
    case CT_SUB: return at::sub(a, b);
    case CT_MUL: return at::mul(a, b);
    case CT_DIV: return at::div(a, b);
    case CT_POW: return at::pow(a, b);
    case CT_MAXIMUM: return at::maximum(a, b);
    case CT_MINIMUM: return at::minimum(a, b);
    case CT_REMAINDER: return at::remainder(a, b);
    case CT_ATAN2: return at::atan2(a, b);
    case CT_EQ: return at::eq(a, b);
    case CT_NE: return at::ne(a, b);
    case CT_LT: return at::lt(a, b);
    case CT_LE: return at::le(a, b);
    case CT_GT: return at::gt(a, b);
    case CT_GE: return at::ge(a, b);
    case CT_LOGICAL_AND: return at::logical_and(a, b);
    case CT_LOGICAL_OR: return at::logical_or(a, b);
    case CT_LOGICAL_XOR: return at::logical_xor(a, b);
    case CT_FLOOR_DIVIDE: return at::floor_divide(a, b);
    default: throw std::invalid_argument("unknown binary op " + std::to_string(op));
  }
}

// Scalar operands go through at::Scalar so the result keeps the tensor's dtype (as Python's `t * 2.0`).
static at::Tensor binary_scalar(int op, const at::Tensor &a, const at::Scalar &s) {
  switch (op) {
    case CT_ADD: return at::add(a, s);
    case CT_SUB: return at::sub(a, s);
    case CT_MUL: return at::mul(a, s);
    case CT_DIV: return at::div(a, s);
    case CT_POW: return at::pow(a, s);
    case CT_MAXIMUM: return at::clamp_min(a, s);
    case CT_MINIMUM: return at::clamp_max(a, s);
    case CT_REMAINDER: return at::remainder(a, s);
    case CT_EQ: return at::eq(a, s);
    case CT_NE: return at::ne(a, s);
    case CT_LT: return at::lt(a, s);
    case CT_LE: return at::le(a, s);
    case CT_GT: return at::gt(a, s);
    case CT_GE: return at::ge(a, s);
    case CT_FLOOR_DIVIDE: return at::floor_divide(a, s);
    default: return binary(op, a, at::scalar_tensor(s, a.options()));
  }
}

static at::Tensor reverse_scalar(int op, const at::Tensor &a, const at::Scalar &s) {
  switch (op) {
    case CT_ADD: return at::add(a, s);
    case CT_MUL: return at::mul(a, s);
    case CT_SUB: return at::rsub(a, s);
    case CT_DIV: return at::mul(at::reciprocal(a), s);
    case CT_POW: return at::pow(s, a);
    default: return binary(op, at::scalar_tensor(s, a.options()), a);
  }
}

static at::Tensor unary(int op, const at::Tensor &a) {
  switch (op) {
    case CT_NEG: return at::neg(a);
    case CT_ABS: return at::abs(a);
    case CT_EXP: return at::exp(a);
    case CT_LOG: return at::log(a);
    case CT_SQRT: return at::sqrt(a);
    case CT_RSQRT: return at::rsqrt(a);
    case CT_SIN: return at::sin(a);
    case CT_COS: return at::cos(a);
    case CT_TANH: return at::tanh(a);
    case CT_SIGMOID: return at::sigmoid(a);
    case CT_RELU: return at::relu(a);
    case CT_GELU: return at::gelu(a, "none");
    case CT_GELU_TANH: return at::gelu(a, "tanh");
    case CT_FLOOR: return at::floor(a);
    case CT_CEIL: return at::ceil(a);
    case CT_ROUND: return at::round(a);
    case CT_SIGN: return at::sign(a);
    case CT_LOGICAL_NOT: return at::logical_not(a);
    case CT_ISNAN: return at::isnan(a);
    case CT_ISFINITE: return at::isfinite(a);
    case CT_SQUARE: return at::square(a);
    case CT_RECIPROCAL: return at::reciprocal(a);
    case CT_LOG1P: return at::log1p(a);
    case CT_EXPM1: return at::expm1(a);
    case CT_SILU: return at::silu(a);
    case CT_ERF: return at::erf(a);
    default: throw std::invalid_argument("unknown unary op " + std::to_string(op));
  }
}

// 0, 1, …, dim − 1: a full reduction that keeps its dimensions (as size 1) names them all.
static std::vector<int64_t> every_dim(const at::Tensor &t) {
  std::vector<int64_t> dims(static_cast<size_t>(t.dim()));
  for (size_t i = 0; i < dims.size(); ++i) dims[i] = static_cast<int64_t>(i);
  return dims;
}
static std::optional<at::ScalarType> opt_dtype(int dtype) {
  if (dtype < 0) return std::nullopt;
  return static_cast<at::ScalarType>(dtype);
}

static std::optional<double> opt_double(double v) {
  if (std::isnan(v)) return std::nullopt;
  return v;
}

static std::array<int64_t, 2> pair(const int64_t v[2]) { return {v[0], v[1]}; }

extern "C" {

// ---- shapes and views ----
ct_error ct_view(ct_tensor t, const int64_t *sizes, int ndim, ct_tensor *out) { CT_OUT(t->t.view(ct_ints(sizes, ndim))) }
ct_error ct_reshape(ct_tensor t, const int64_t *sizes, int ndim, ct_tensor *out) { CT_OUT(t->t.reshape(ct_ints(sizes, ndim))) }
ct_error ct_permute(ct_tensor t, const int64_t *dims, int ndim, ct_tensor *out) { CT_OUT(t->t.permute(ct_ints(dims, ndim))) }
ct_error ct_transpose(ct_tensor t, int64_t d0, int64_t d1, ct_tensor *out) { CT_OUT(t->t.transpose(d0, d1)) }
ct_error ct_contiguous(ct_tensor t, ct_tensor *out) { CT_OUT(t->t.contiguous()) }
ct_error ct_contiguous_channels_last(ct_tensor t, ct_tensor *out) { CT_OUT(t->t.contiguous(at::MemoryFormat::ChannelsLast)) }
ct_error ct_clone(ct_tensor t, ct_tensor *out) { CT_OUT(t->t.clone()) }
ct_error ct_narrow(ct_tensor t, int64_t dim, int64_t start, int64_t length, ct_tensor *out) { CT_OUT(t->t.narrow(dim, start, length)) }
ct_error ct_slice(ct_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, ct_tensor *out) {
  CT_OUT(t->t.slice(dim, start, end, step))
}
ct_error ct_select(ct_tensor t, int64_t dim, int64_t index, ct_tensor *out) { CT_OUT(t->t.select(dim, index)) }
ct_error ct_index_select(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor *out) { CT_OUT(t->t.index_select(dim, index->t)) }
ct_error ct_gather(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor *out) { CT_OUT(t->t.gather(dim, index->t)) }
ct_error ct_unbind(ct_tensor t, int64_t dim, ct_tensor *outs, int64_t cap, int64_t *count) {
  CT_TRY({
    auto parts = t->t.unbind(dim);
    if ((int64_t)parts.size() > cap)
      throw std::invalid_argument("unbind: " + std::to_string(parts.size()) + " parts, room for " + std::to_string(cap));
    // Every handle made before any is handed out: a failed allocation leaves the outputs untouched.
    std::vector<std::unique_ptr<ct_tensor_s>> made;
    made.reserve(parts.size());
    for (auto &p : parts) made.emplace_back(ct_wrap(std::move(p)));
    for (size_t i = 0; i < made.size(); ++i) outs[i] = made[i].release();
    *count = (int64_t)parts.size();
  })
}
ct_error ct_cat(const ct_tensor *ts, int n, int64_t dim, ct_tensor *out) { CT_OUT(at::cat(ct_list(ts, n), dim)) }
ct_error ct_stack(const ct_tensor *ts, int n, int64_t dim, ct_tensor *out) { CT_OUT(at::stack(ct_list(ts, n), dim)) }
ct_error ct_pad(ct_tensor t, const int64_t *pads, int npads, int mode, double value, ct_tensor *out) {
  CT_TRY({
    const char *modes[] = {"constant", "reflect", "replicate", "circular"};
    if (mode < 0 || mode > 3) throw std::invalid_argument("unknown pad mode " + std::to_string(mode));
    *out = ct_wrap(at::pad(t->t, ct_ints(pads, npads), modes[mode], mode == CT_PAD_CONSTANT ? std::optional<double>(value) : std::nullopt));
  })
}
ct_error ct_expand(ct_tensor t, const int64_t *sizes, int ndim, ct_tensor *out) { CT_OUT(t->t.expand(ct_ints(sizes, ndim))) }
ct_error ct_repeat(ct_tensor t, const int64_t *repeats, int ndim, ct_tensor *out) { CT_OUT(t->t.repeat(ct_ints(repeats, ndim))) }
ct_error ct_repeat_interleave(ct_tensor t, int64_t repeats, int64_t dim, ct_tensor *out) { CT_OUT(t->t.repeat_interleave(repeats, dim)) }
ct_error ct_flip(ct_tensor t, const int64_t *dims, int ndim, ct_tensor *out) { CT_OUT(t->t.flip(ct_ints(dims, ndim))) }
ct_error ct_rot90(ct_tensor t, int64_t k, int64_t d0, int64_t d1, ct_tensor *out) { CT_OUT(t->t.rot90(k, {d0, d1})) }
ct_error ct_squeeze(ct_tensor t, int64_t dim, ct_tensor *out) { CT_OUT(t->t.squeeze(dim)) }
ct_error ct_unsqueeze(ct_tensor t, int64_t dim, ct_tensor *out) { CT_OUT(t->t.unsqueeze(dim)) }
ct_error ct_flatten(ct_tensor t, int64_t start, int64_t end, ct_tensor *out) { CT_OUT(t->t.flatten(start, end)) }
ct_error ct_as_strided(ct_tensor t, const int64_t *sizes, const int64_t *strides, int ndim, int64_t offset, ct_tensor *out) {
  CT_OUT(t->t.as_strided(ct_ints(sizes, ndim), ct_ints(strides, ndim), offset))
}

// ---- elementwise ----
ct_error ct_binary(int op, ct_tensor a, ct_tensor b, ct_tensor *out) { CT_OUT(binary(op, a->t, b->t)) }
ct_error ct_binary_scalar(int op, ct_tensor a, double s, int reverse, ct_tensor *out) {
  CT_OUT(reverse ? reverse_scalar(op, a->t, at::Scalar(s)) : binary_scalar(op, a->t, at::Scalar(s)))
}
ct_error ct_unary(int op, ct_tensor a, ct_tensor *out) { CT_OUT(unary(op, a->t)) }
ct_error ct_where(ct_tensor cond, ct_tensor a, ct_tensor b, ct_tensor *out) { CT_OUT(at::where(cond->t, a->t, b->t)) }
ct_error ct_clamp(ct_tensor t, double min, double max, ct_tensor *out) {
  CT_TRY({
    std::optional<at::Scalar> lo, hi;
    if (!std::isnan(min)) lo = at::Scalar(min);
    if (!std::isnan(max)) hi = at::Scalar(max);
    *out = ct_wrap(at::clamp(t->t, lo, hi));
  })
}
ct_error ct_masked_fill(ct_tensor t, ct_tensor mask, double value, ct_tensor *out) { CT_OUT(t->t.masked_fill(mask->t, value)) }

// ---- linear algebra and nn ----
ct_error ct_matmul(ct_tensor a, ct_tensor b, ct_tensor *out) { CT_OUT(at::matmul(a->t, b->t)) }
ct_error ct_bmm(ct_tensor a, ct_tensor b, ct_tensor *out) { CT_OUT(at::bmm(a->t, b->t)) }
ct_error ct_linear(ct_tensor x, ct_tensor w, ct_tensor b, ct_tensor *out) { CT_OUT(at::linear(x->t, w->t, ct_opt(b))) }
ct_error ct_conv2d(ct_tensor x, ct_tensor w, ct_tensor b, const int64_t stride[2], const int64_t padding[2], const int64_t dilation[2],
                   int64_t groups, ct_tensor *out) {
  CT_OUT(at::conv2d(x->t, w->t, ct_opt(b), pair(stride), pair(padding), pair(dilation), groups))
}
ct_error ct_conv_transpose2d(ct_tensor x, ct_tensor w, ct_tensor b, const int64_t stride[2], const int64_t padding[2],
                             const int64_t output_padding[2], const int64_t dilation[2], int64_t groups, ct_tensor *out) {
  CT_OUT(at::conv_transpose2d(x->t, w->t, ct_opt(b), pair(stride), pair(padding), pair(output_padding), groups, pair(dilation)))
}
ct_error ct_layer_norm(ct_tensor x, const int64_t *normalized_shape, int ndim, ct_tensor w, ct_tensor b, double eps, ct_tensor *out) {
  CT_OUT(at::layer_norm(x->t, ct_ints(normalized_shape, ndim), ct_opt(w), ct_opt(b), eps))
}
ct_error ct_softmax(ct_tensor t, int64_t dim, int dtype, ct_tensor *out) { CT_OUT(at::softmax(t->t, dim, opt_dtype(dtype))) }
ct_error ct_log_softmax(ct_tensor t, int64_t dim, int dtype, ct_tensor *out) { CT_OUT(at::log_softmax(t->t, dim, opt_dtype(dtype))) }
ct_error ct_interpolate(ct_tensor t, int64_t out_h, int64_t out_w, int mode, int align_corners, ct_tensor *out) {
  CT_TRY({
    if (t->t.dim() != 4) throw std::invalid_argument("interpolate expects a 4-D (N, C, H, W) tensor, got " + c10::str(t->t.sizes()));
    std::vector<int64_t> size{out_h, out_w};
    switch (mode) {
      case CT_INTERP_NEAREST: *out = ct_wrap(at::upsample_nearest2d(t->t, size)); break;
      case CT_INTERP_NEAREST_EXACT: *out = ct_wrap(at::_upsample_nearest_exact2d(t->t, size)); break;
      case CT_INTERP_BILINEAR: *out = ct_wrap(at::upsample_bilinear2d(t->t, size, align_corners != 0)); break;
      case CT_INTERP_BICUBIC: *out = ct_wrap(at::upsample_bicubic2d(t->t, size, align_corners != 0)); break;
      default: throw std::invalid_argument("unknown interpolation mode " + std::to_string(mode));
    }
  })
}
ct_error ct_sdpa(ct_tensor q, ct_tensor k, ct_tensor v, ct_tensor bias, double dropout_p, int is_causal, double scale, ct_tensor *out) {
  CT_OUT(at::scaled_dot_product_attention(q->t, k->t, v->t, ct_opt(bias), dropout_p, is_causal != 0, opt_double(scale)))
}
ct_error ct_cross_entropy(ct_tensor logits, ct_tensor target, ct_tensor weight, int reduction, int64_t ignore_index,
                          double label_smoothing, ct_tensor *out) {
  CT_OUT(at::cross_entropy_loss(logits->t, target->t, ct_opt(weight), reduction, ignore_index, label_smoothing))
}
ct_error ct_one_hot(ct_tensor t, int64_t num_classes, ct_tensor *out) { CT_OUT(at::one_hot(t->t, num_classes)) }
ct_error ct_dropout(ct_tensor t, double p, int train, ct_tensor *out) { CT_OUT(at::dropout(t->t, p, train != 0)) }

// ---- reductions ----
ct_error ct_sum(ct_tensor t, const int64_t *dims, int ndims, int keepdim, int dtype, ct_tensor *out) {
  CT_OUT(ndims == 0 && keepdim == 0 ? at::sum(t->t, opt_dtype(dtype))
                                    : at::sum(t->t, ndims == 0 ? every_dim(t->t) : ct_ints(dims, ndims).vec(), keepdim != 0, opt_dtype(dtype)))
}
ct_error ct_mean(ct_tensor t, const int64_t *dims, int ndims, int keepdim, int dtype, ct_tensor *out) {
  CT_OUT(ndims == 0 && keepdim == 0 ? at::mean(t->t, opt_dtype(dtype))
                                    : at::mean(t->t, ndims == 0 ? every_dim(t->t) : ct_ints(dims, ndims).vec(), keepdim != 0, opt_dtype(dtype)))
}
ct_error ct_amax(ct_tensor t, const int64_t *dims, int ndims, int keepdim, ct_tensor *out) {
  CT_OUT(at::amax(t->t, ct_ints(dims, ndims), keepdim != 0))
}
ct_error ct_amin(ct_tensor t, const int64_t *dims, int ndims, int keepdim, ct_tensor *out) {
  CT_OUT(at::amin(t->t, ct_ints(dims, ndims), keepdim != 0))
}
ct_error ct_max_dim(ct_tensor t, int64_t dim, int keepdim, ct_tensor *values, ct_tensor *indices) {
  CT_TRY({
    auto [v, i] = at::max(t->t, dim, keepdim != 0);
    std::unique_ptr<ct_tensor_s> vh(ct_wrap(v)), ih(ct_wrap(i));
    *values = vh.release();
    *indices = ih.release();
  })
}
ct_error ct_argmax(ct_tensor t, int64_t dim, int keepdim, ct_tensor *out) { CT_OUT(at::argmax(t->t, dim, keepdim != 0)) }
ct_error ct_all_close(ct_tensor a, ct_tensor b, double rtol, double atol, int *out) {
  CT_TRY(*out = at::allclose(a->t, b->t, rtol, atol) ? 1 : 0)
}

// ---- in-place ----
ct_error ct_copy_(ct_tensor dst, ct_tensor src) { CT_TRY(dst->t.copy_(src->t)) }
ct_error ct_fill_(ct_tensor t, double value) { CT_TRY(t->t.fill_(value)) }
ct_error ct_zero_(ct_tensor t) { CT_TRY(t->t.zero_()) }
ct_error ct_uniform_(ct_tensor t, double low, double high) { CT_TRY(t->t.uniform_(low, high)) }
ct_error ct_normal_(ct_tensor t, double mean, double std) { CT_TRY(t->t.normal_(mean, std)) }
ct_error ct_add_(ct_tensor dst, ct_tensor src, double alpha) { CT_TRY(dst->t.add_(src->t, alpha)) }
ct_error ct_addmm_(ct_tensor dst, ct_tensor a, ct_tensor b, double beta, double alpha) {
  CT_TRY(dst->t.addmm_(a->t, b->t, beta, alpha))
}
ct_error ct_mul_scalar_(ct_tensor t, double s) { CT_TRY(t->t.mul_(s)) }
ct_error ct_addcmul_(ct_tensor dst, ct_tensor a, ct_tensor b, double value) { CT_TRY(dst->t.addcmul_(a->t, b->t, value)) }
ct_error ct_addcdiv_(ct_tensor dst, ct_tensor a, ct_tensor b, double value) { CT_TRY(dst->t.addcdiv_(a->t, b->t, value)) }
ct_error ct_fused_adamw_(const ct_tensor *params, const ct_tensor *grads, const ct_tensor *exp_avgs, const ct_tensor *exp_avg_sqs,
                         const ct_tensor *state_steps, int n, double lr, ct_tensor lr_tensor, double beta1, double beta2,
                         double weight_decay, double eps, ct_tensor grad_scale, ct_tensor found_inf) {
  CT_TRY({
    auto p = ct_list(params, n), g = ct_list(grads, n), m = ct_list(exp_avgs, n), v = ct_list(exp_avg_sqs, n),
         s = ct_list(state_steps, n);
    // As torch.optim.AdamW(fused=True): the kernel reads the already-advanced step for bias correction,
    // and a step skipped for inf/NaN gradients is taken back.
    at::_foreach_add_(s, 1.0);
    try {
      if (lr_tensor != nullptr) {
        at::_fused_adamw_(p, g, m, v, {}, s, lr_tensor->t, beta1, beta2, weight_decay, eps, false, false, ct_opt(grad_scale),
                          ct_opt(found_inf));
      } else {
        at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, false, false, ct_opt(grad_scale), ct_opt(found_inf));
      }
    } catch (...) {
      at::_foreach_add_(s, -1.0);  // a step that did not happen is not counted (bias correction)
      throw;
    }
    // One multi-tensor kernel for all counters (not one per parameter: this runs every step).
    if (found_inf != nullptr) at::_foreach_add_(s, found_inf->t.reshape({}).to(s[0].scalar_type()), -1);
  })
}
ct_error ct_amp_unscale_(const ct_tensor *grads, int n, ct_tensor found_inf, ct_tensor inv_scale) {
  CT_TRY(at::_amp_foreach_non_finite_check_and_unscale_(ct_list(grads, n), found_inf->t, inv_scale->t))
}
ct_error ct_amp_update_scale_(ct_tensor scale, ct_tensor growth_tracker, ct_tensor found_inf, double growth, double backoff,
                              int64_t interval) {
  CT_TRY(at::_amp_update_scale_(scale->t, growth_tracker->t, found_inf->t, growth, backoff, interval))
}

}  // extern "C"
