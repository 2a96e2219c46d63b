/*
 * ctorch.h — the one C API between Swift and libtorch.
 *
 * Contract, the same for every function:
 *   - Handles in, handles out. A ct_tensor is an owned reference to an at::Tensor;
 *     every handle returned through an out-parameter must be released with ct_tensor_free.
 *   - Nothing throws across this boundary. Each fallible entry point returns a ct_error:
 *     NULL on success, otherwise an owned error carrying libtorch's message (read it with
 *     ct_error_message, release it with ct_error_free). Out-parameters are untouched on failure.
 *     Functions that return a plain value are queries and setters that cannot fail; a query whose
 *     libtorch call can throw says what it returns instead.
 *   - Device indices lie in -1 (the current device) … 127 (c10::DeviceIndex); others are an error.
 *   - Optional tensors are passed as NULL. Optional doubles use NAN for "absent".
 *   - No model logic lives here: the Swift side composes these primitives.
 */
#ifndef CTORCH_H
#define CTORCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_tensor_s *ct_tensor;
typedef struct ct_error_s *ct_error;
typedef struct ct_zip_reader_s *ct_zip_reader;
typedef struct ct_zip_writer_s *ct_zip_writer;
typedef struct ct_guard_s *ct_guard;

/* Scalar types: values are c10::ScalarType's, so the shim casts without a table. */
enum {
  CT_UINT8 = 0, CT_INT8 = 1, CT_INT16 = 2, CT_INT32 = 3, CT_INT64 = 4,
  CT_FLOAT16 = 5, CT_FLOAT32 = 6, CT_FLOAT64 = 7, CT_BOOL = 11, CT_BFLOAT16 = 15
};
/* Device types: values are c10::DeviceType's. */
enum { CT_CPU = 0, CT_CUDA = 1, CT_META = 14 };

/* ---- errors and bookkeeping ---- */
const char *ct_error_message(ct_error err);
void ct_error_free(ct_error err);
void ct_tensor_free(ct_tensor t);
/* Number of handles of every other kind (errors, guards, archives, events, graphs, profiles, stores,
 * groups) currently alive, for leak tests; a static out-of-memory error counts as one from the start. */
int64_t ct_live_handles(void);
/* Number of ct_tensor handles currently alive (for leak tests). */
int64_t ct_live_tensors(void);
const char *ct_torch_version(void);

/* ---- tensor info (infallible on a valid handle) ---- */
int64_t ct_dim(ct_tensor t);
/* Writes min(dim, cap) sizes / strides; returns dim. */
int64_t ct_sizes(ct_tensor t, int64_t *out, int64_t cap);
int64_t ct_strides(ct_tensor t, int64_t *out, int64_t cap);
int64_t ct_numel(ct_tensor t);
int ct_dtype(ct_tensor t);
int ct_device_type(ct_tensor t);
int ct_device_index(ct_tensor t);
int ct_requires_grad(ct_tensor t);
int ct_is_leaf(ct_tensor t);
int ct_is_contiguous(ct_tensor t);
int64_t ct_storage_offset(ct_tensor t);
/* Raw data pointer of a CPU tensor (NULL for other devices); valid while the tensor lives. */
void *ct_data_ptr(ct_tensor t);
/* The tensor's version counter (bumped by each in-place change; inference tensors have none). */
ct_error ct_version(ct_tensor t, int64_t *out);
ct_error ct_item_double(ct_tensor t, double *out);
ct_error ct_item_int64(ct_tensor t, int64_t *out);
/* A second handle to the same tensor (shares storage and autograd identity). */
ct_error ct_shallow_clone(ct_tensor t, ct_tensor *out);

/* ---- creation ---- */
enum { CT_FILL_ZEROS = 0, CT_FILL_ONES = 1, CT_FILL_EMPTY = 2, CT_FILL_RAND = 3, CT_FILL_RANDN = 4 };
ct_error ct_filled(int kind, const int64_t *sizes, int ndim, int dtype, int device_type, int device_index, ct_tensor *out);
ct_error ct_full(const int64_t *sizes, int ndim, double value, int dtype, int device_type, int device_index, ct_tensor *out);
ct_error ct_arange(double start, double end, double step, int dtype, int device_type, int device_index, ct_tensor *out);
ct_error ct_randint(int64_t low, int64_t high, const int64_t *sizes, int ndim, int dtype, int device_type, int device_index, ct_tensor *out);
/* Copies `nbytes` from `data` into a new contiguous CPU tensor; nbytes must equal numel*itemsize. */
ct_error ct_from_buffer(const void *data, size_t nbytes, const int64_t *sizes, int ndim, int dtype, ct_tensor *out);
/* Copies a tensor (any device, any layout) into `dst`; its dtype must be `dtype` and nbytes must match. */
ct_error ct_to_buffer(ct_tensor t, void *dst, size_t nbytes, int dtype);

/* ---- moves ---- dtype < 0 keeps the dtype; device_type < 0 keeps the device. */
ct_error ct_to(ct_tensor t, int dtype, int device_type, int device_index, int non_blocking, int copy, ct_tensor *out);
ct_error ct_pin_memory(ct_tensor t, ct_tensor *out);
/* Reinterprets the bytes of a contiguous tensor as another dtype (Tensor.view(dtype)). */
ct_error ct_view_dtype(ct_tensor t, int dtype, ct_tensor *out);

/* ---- shapes and views ---- */
ct_error ct_view(ct_tensor t, const int64_t *sizes, int ndim, ct_tensor *out);
ct_error ct_reshape(ct_tensor t, const int64_t *sizes, int ndim, ct_tensor *out);
ct_error ct_permute(ct_tensor t, const int64_t *dims, int ndim, ct_tensor *out);
ct_error ct_transpose(ct_tensor t, int64_t d0, int64_t d1, ct_tensor *out);
ct_error ct_contiguous(ct_tensor t, ct_tensor *out);
/* A 4-D tensor in NHWC memory order (torch.channels_last), same shape. */
ct_error ct_contiguous_channels_last(ct_tensor t, ct_tensor *out);
ct_error ct_clone(ct_tensor t, ct_tensor *out);
ct_error ct_narrow(ct_tensor t, int64_t dim, int64_t start, int64_t length, ct_tensor *out);
ct_error ct_slice(ct_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, ct_tensor *out);
ct_error ct_select(ct_tensor t, int64_t dim, int64_t index, ct_tensor *out);
/* t.unbind(dim): writes the size(dim) views to outs (cap must be at least that; *count gets it). */
ct_error ct_unbind(ct_tensor t, int64_t dim, ct_tensor *outs, int64_t cap, int64_t *count);
ct_error ct_index_select(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor *out);
ct_error ct_gather(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor *out);
ct_error ct_cat(const ct_tensor *ts, int n, int64_t dim, ct_tensor *out);
ct_error ct_stack(const ct_tensor *ts, int n, int64_t dim, ct_tensor *out);
enum { CT_PAD_CONSTANT = 0, CT_PAD_REFLECT = 1, CT_PAD_REPLICATE = 2, CT_PAD_CIRCULAR = 3 };
/* pads as F.pad: (last_lo, last_hi, prev_lo, prev_hi, ...). */
ct_error ct_pad(ct_tensor t, const int64_t *pads, int npads, int mode, double value, ct_tensor *out);
ct_error ct_expand(ct_tensor t, const int64_t *sizes, int ndim, ct_tensor *out);
ct_error ct_repeat(ct_tensor t, const int64_t *repeats, int ndim, ct_tensor *out);
ct_error ct_repeat_interleave(ct_tensor t, int64_t repeats, int64_t dim, ct_tensor *out);
ct_error ct_flip(ct_tensor t, const int64_t *dims, int ndim, ct_tensor *out);
ct_error ct_rot90(ct_tensor t, int64_t k, int64_t d0, int64_t d1, ct_tensor *out);
ct_error ct_squeeze(ct_tensor t, int64_t dim, ct_tensor *out);
ct_error ct_unsqueeze(ct_tensor t, int64_t dim, ct_tensor *out);
ct_error ct_flatten(ct_tensor t, int64_t start, int64_t end, ct_tensor *out);
ct_error ct_as_strided(ct_tensor t, const int64_t *sizes, const int64_t *strides, int ndim, int64_t offset, ct_tensor *out);

/* ---- elementwise math (broadcasting) ---- */
enum {
  CT_ADD = 0, CT_SUB, CT_MUL, CT_DIV, CT_POW, CT_MAXIMUM, CT_MINIMUM, CT_REMAINDER, CT_ATAN2,
  CT_EQ, CT_NE, CT_LT, CT_LE, CT_GT, CT_GE, CT_LOGICAL_AND, CT_LOGICAL_OR, CT_LOGICAL_XOR, CT_FLOOR_DIVIDE
};
ct_error ct_binary(int op, ct_tensor a, ct_tensor b, ct_tensor *out);
/* a (op) scalar; with reverse != 0 computes scalar (op) a. */
ct_error ct_binary_scalar(int op, ct_tensor a, double s, int reverse, ct_tensor *out);
enum {
  CT_NEG = 0, CT_ABS, CT_EXP, CT_LOG, CT_SQRT, CT_RSQRT, CT_SIN, CT_COS, CT_TANH, CT_SIGMOID,
  CT_RELU, CT_GELU, CT_GELU_TANH, CT_FLOOR, CT_CEIL, CT_ROUND, CT_SIGN, CT_LOGICAL_NOT, CT_ISNAN,
  CT_ISFINITE, CT_SQUARE, CT_RECIPROCAL, CT_LOG1P, CT_EXPM1, CT_SILU, CT_ERF
};
ct_error ct_unary(int op, ct_tensor a, ct_tensor *out);
ct_error ct_where(ct_tensor cond, ct_tensor a, ct_tensor b, ct_tensor *out);
/* min/max NAN = unbounded on that side. */
ct_error ct_clamp(ct_tensor t, double min, double max, ct_tensor *out);
ct_error ct_masked_fill(ct_tensor t, ct_tensor mask, double value, ct_tensor *out);

/* ---- linear algebra and nn primitives ---- */
ct_error ct_matmul(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_error ct_bmm(ct_tensor a, ct_tensor b, ct_tensor *out);
ct_error ct_linear(ct_tensor x, ct_tensor w, ct_tensor b /* nullable */, ct_tensor *out);
ct_error ct_conv2d(ct_tensor x, ct_tensor w, ct_tensor b, const int64_t stride[2], const int64_t padding[2],
                   const int64_t dilation[2], int64_t groups, ct_tensor *out);
ct_error ct_conv_transpose2d(ct_tensor x, ct_tensor w, ct_tensor b, const int64_t stride[2], const int64_t padding[2],
                             const int64_t output_padding[2], const int64_t dilation[2], int64_t groups, ct_tensor *out);
ct_error ct_layer_norm(ct_tensor x, const int64_t *normalized_shape, int ndim, ct_tensor w, ct_tensor b, double eps, ct_tensor *out);
/* dtype < 0: keep the input dtype. */
ct_error ct_softmax(ct_tensor t, int64_t dim, int dtype, ct_tensor *out);
ct_error ct_log_softmax(ct_tensor t, int64_t dim, int dtype, ct_tensor *out);
enum { CT_INTERP_NEAREST = 0, CT_INTERP_BILINEAR = 1, CT_INTERP_BICUBIC = 2, CT_INTERP_NEAREST_EXACT = 3 };
/* 4-D (N, C, H, W) input resized to (out_h, out_w); align_corners is ignored for nearest modes. */
ct_error ct_interpolate(ct_tensor t, int64_t out_h, int64_t out_w, int mode, int align_corners, ct_tensor *out);
/* softmax(q kᵀ · scale + bias) v; scale NAN = 1/sqrt(head_dim); bias nullable (additive, broadcastable). */
ct_error ct_sdpa(ct_tensor q, ct_tensor k, ct_tensor v, ct_tensor bias, double dropout_p, int is_causal, double scale, ct_tensor *out);
enum { CT_REDUCTION_NONE = 0, CT_REDUCTION_MEAN = 1, CT_REDUCTION_SUM = 2 };
ct_error ct_cross_entropy(ct_tensor logits, ct_tensor target, ct_tensor weight, int reduction, int64_t ignore_index,
                          double label_smoothing, ct_tensor *out);
ct_error ct_one_hot(ct_tensor t, int64_t num_classes, ct_tensor *out);
ct_error ct_dropout(ct_tensor t, double p, int train, ct_tensor *out);

/* ---- reductions: ndims == 0 reduces over every dimension (kept as size 1 with keepdim); dtype < 0 keeps the default ---- */
ct_error ct_sum(ct_tensor t, const int64_t *dims, int ndims, int keepdim, int dtype, ct_tensor *out);
ct_error ct_mean(ct_tensor t, const int64_t *dims, int ndims, int keepdim, int dtype, ct_tensor *out);
ct_error ct_amax(ct_tensor t, const int64_t *dims, int ndims, int keepdim, ct_tensor *out);
ct_error ct_amin(ct_tensor t, const int64_t *dims, int ndims, int keepdim, ct_tensor *out);
/* max along dim: values and indices. */
ct_error ct_max_dim(ct_tensor t, int64_t dim, int keepdim, ct_tensor *values, ct_tensor *indices);
ct_error ct_argmax(ct_tensor t, int64_t dim, int keepdim, ct_tensor *out);
ct_error ct_all_close(ct_tensor a, ct_tensor b, double rtol, double atol, int *out);

/* ---- in-place updates (what optimizers and initialisers need) ---- */
ct_error ct_copy_(ct_tensor dst, ct_tensor src);
ct_error ct_fill_(ct_tensor t, double value);
ct_error ct_zero_(ct_tensor t);
ct_error ct_uniform_(ct_tensor t, double low, double high);
ct_error ct_normal_(ct_tensor t, double mean, double std);
/* dst += alpha * src */
ct_error ct_add_(ct_tensor dst, ct_tensor src, double alpha);
/* dst = beta * dst + alpha * (a @ b), all 2-D (torch.Tensor.addmm_). */
ct_error ct_addmm_(ct_tensor dst, ct_tensor a, ct_tensor b, double beta, double alpha);
ct_error ct_mul_scalar_(ct_tensor t, double s);
/* dst += value * a * b ; dst += value * a / b */
ct_error ct_addcmul_(ct_tensor dst, ct_tensor a, ct_tensor b, double value);
ct_error ct_addcdiv_(ct_tensor dst, ct_tensor a, ct_tensor b, double value);
/* libtorch's fused AdamW over n parameters (state_steps are float32 scalars, advanced in place).
 * grad_scale and found_inf nullable (AMP: grads divided by grad_scale, step skipped if found_inf).
 * lr_tensor nullable: when given, the kernel reads the rate from it (a one-element tensor on the
 * parameters' device) and `lr` is ignored. */
ct_error ct_fused_adamw_(const ct_tensor *params, const ct_tensor *grads, const ct_tensor *exp_avgs,
                         const ct_tensor *exp_avg_sqs, const ct_tensor *state_steps, int n, double lr,
                         ct_tensor lr_tensor, double beta1, double beta2, double weight_decay, double eps,
                         ct_tensor grad_scale, ct_tensor found_inf);
/* AMP: divides grads by inv_scale⁻¹ in place and sets found_inf to 1 if any is inf/NaN. */
ct_error ct_amp_unscale_(const ct_tensor *grads, int n, ct_tensor found_inf, ct_tensor inv_scale);
ct_error ct_amp_update_scale_(ct_tensor scale, ct_tensor growth_tracker, ct_tensor found_inf, double growth,
                              double backoff, int64_t interval);

/* ---- autograd ---- */
ct_error ct_set_requires_grad(ct_tensor t, int requires_grad);
/* grad nullable (scalar outputs); keep_graph != 0 retains the graph. */
ct_error ct_backward(ct_tensor t, ct_tensor grad, int keep_graph);
/* *out = NULL when the tensor has no gradient. */
ct_error ct_grad(ct_tensor t, ct_tensor *out);
/* Drops the stored gradient (as Python's zero_grad(set_to_none=True)). */
ct_error ct_clear_grad(ct_tensor t);
ct_error ct_detach(ct_tensor t, ct_tensor *out);
int ct_grad_enabled(void);
void ct_set_grad_enabled(int enabled);
/* Inference mode is a RAII guard in C++: enter returns a guard, exit destroys it. Same thread only. */
ct_error ct_inference_mode_enter(ct_guard *out);
int ct_inference_mode_enabled(void);
void ct_guard_exit(ct_guard g);

/* ---- autocast, precision, devices, RNG, threads ---- */
/* Enters autocast for a device type with a dtype (CT_FLOAT16 / CT_BFLOAT16); exit restores. */
ct_error ct_autocast_enter(int device_type, int dtype, int enabled, ct_guard *out);
/* 0 also for a device type libtorch has no autocast for (CT_META). */
int ct_autocast_enabled(int device_type);
/* The dtype autocast casts to on that device type (a CT_ dtype), enabled or not; -1 where it has none. */
int ct_autocast_dtype(int device_type);
/* Autocast's cache of casted weights (on by default; off while a CUDA graph is captured). */
void ct_set_autocast_cache(int enabled);
int ct_autocast_cache(void);
void ct_set_tf32(int enabled);
int ct_tf32(void);
void ct_set_cudnn_benchmark(int enabled);
/* Loads libtorch_cuda (and friends) when present beside libtorch_cpu; returns 1 if CUDA is then usable. */
int ct_cuda_load(void);
/* Why loading libtorch_cuda failed (dlerror text), or "" when it loaded or is absent. */
const char *ct_cuda_load_message(void);
int ct_cuda_available(void);
int ct_cuda_device_count(void);
ct_error ct_cuda_synchronize(int device_index);
ct_error ct_cuda_memory(int device_index, int64_t *allocated, int64_t *peak, int64_t *reserved);
ct_error ct_cuda_reset_peak(int device_index);
ct_error ct_cuda_empty_cache(void);
/* Free and total device memory in bytes, as the driver reports them. */
ct_error ct_cuda_memory_info(int device_index, int64_t *free_bytes, int64_t *total_bytes);
/* Seeds the CPU and every CUDA generator (fails while a CUDA graph is being captured). */
ct_error ct_manual_seed(uint64_t seed);
void ct_set_num_threads(int n);
int ct_num_threads(void);

/* ---- torch.distributed (c10d) ----
 * A TCPStore rendezvous (the server on rank 0, every rank a client) and a process group over it.
 * Collectives are in place and blocking; a dead peer or a timeout returns an error.
 * Reduce ops are c10d::ReduceOp's values. */
typedef struct ct_store_s *ct_store;
typedef struct ct_group_s *ct_group;
enum { CT_REDUCE_SUM = 0, CT_REDUCE_PRODUCT = 2, CT_REDUCE_MIN = 3, CT_REDUCE_MAX = 4 };
ct_error ct_store_tcp(const char *host, int port, int is_server, int world_size, int64_t timeout_ms, ct_store *out);
void ct_store_free(ct_store s);
/* Gloo: `interface` (comma-separated names, as GLOO_SOCKET_IFNAME) or `hostname` to bind to, or both
 * NULL for libtorch's default device (this machine's hostname, else loopback). */
ct_error ct_group_gloo(ct_store s, int rank, int world_size, int64_t timeout_ms, const char *interface,
                       const char *hostname, ct_group *out);
/* NCCL on CUDA device `device_index` (this rank's GPU); an error when this build has no NCCL. */
ct_error ct_group_nccl(ct_store s, int rank, int world_size, int64_t timeout_ms, int device_index, ct_group *out);
int ct_nccl_compiled(void);
void ct_group_free(ct_group g);
ct_error ct_group_allreduce(ct_group g, ct_tensor t, int op);
ct_error ct_group_broadcast(ct_group g, ct_tensor t, int root);
/* Gathers every rank's `t` (same shape everywhere) into a new (world_size, ...) tensor. */
ct_error ct_group_allgather(ct_group g, ct_tensor t, ct_tensor *out);
ct_error ct_group_barrier(ct_group g);

/* ---- device events: timing on a device's current stream (CUDA) ---- */
typedef struct ct_event_s *ct_event;
ct_error ct_event_create(int device_type, int device_index, ct_event *out);
ct_error ct_event_record(ct_event e);
/* Waits for `end`, then the milliseconds between the two recorded events. */
ct_error ct_event_elapsed_ms(ct_event start, ct_event end, double *ms);
void ct_event_free(ct_event e);

/* ---- CUDA graphs (at::cuda::CUDAGraph) ----
 * Capture: use_stream(g, 1) makes the graph's own stream current on its device (after a device
 * synchronisation), capture_begin/capture_end record what is issued there, use_stream(g, 0) restores
 * the previous stream. Replay launches the recorded work on the current stream. Builds without the CUDA
 * runtime headers answer ct_cuda_graph_new with an error (ct_cuda_graphs_compiled returns 0). */
typedef struct ct_cuda_graph_s *ct_cuda_graph;
int ct_cuda_graphs_compiled(void);
ct_error ct_cuda_graph_new(int device_index, ct_cuda_graph *out);
void ct_cuda_graph_free(ct_cuda_graph g);
ct_error ct_cuda_graph_use_stream(ct_cuda_graph g, int on);
ct_error ct_cuda_graph_capture_begin(ct_cuda_graph g);
ct_error ct_cuda_graph_capture_end(ct_cuda_graph g);
ct_error ct_cuda_graph_replay(ct_cuda_graph g);

/* ---- profiler (libtorch's Kineto profiler) ----
 * start(cuda) records ops on this thread (and the autograd threads its work runs on) and, with cuda,
 * the device's kernels and copies; stop hands back the events. A device event's linked_correlation
 * equals the correlation of the op that launched it. Event names live as long as the profile. */
typedef struct ct_profile_s *ct_profile;
typedef struct {
  const char *name;
  int device_type, device_index, activity;
  uint64_t thread;
  int64_t start_ns, duration_ns;
  uint64_t correlation, linked_correlation;
} ct_profile_event;
/* shapes != 0: each op's input sizes, strides and dtypes go into the trace too (they cost host time). */
ct_error ct_profiler_start(int cuda, int shapes);
ct_error ct_profiler_stop(ct_profile *out);
int64_t ct_profile_event_count(ct_profile p);
void ct_profile_event_at(ct_profile p, int64_t i, ct_profile_event *out);
/* The Chrome trace (chrome://tracing, Perfetto) of the profile. */
ct_error ct_profile_save_trace(ct_profile p, const char *path);
void ct_profile_free(ct_profile p);

/* ---- PyTorch zip archives (torch.save format) ---- */
ct_error ct_zip_reader_open(const char *path, ct_zip_reader *out);
void ct_zip_reader_free(ct_zip_reader r);
int64_t ct_zip_reader_count(ct_zip_reader r);
/* Record name i (relative to the archive folder); valid while the reader lives. */
const char *ct_zip_reader_name(ct_zip_reader r, int64_t i);
/* A new 1-D uint8 CPU tensor owning the record's bytes. */
ct_error ct_zip_reader_read(ct_zip_reader r, const char *name, ct_tensor *out);
ct_error ct_zip_writer_open(const char *path, ct_zip_writer *out);
ct_error ct_zip_writer_write(ct_zip_writer w, const char *name, const void *data, size_t nbytes);
/* Writes the central directory and closes the file. */
ct_error ct_zip_writer_finish(ct_zip_writer w);
void ct_zip_writer_free(ct_zip_writer w);

#ifdef __cplusplus
}
#endif
#endif
