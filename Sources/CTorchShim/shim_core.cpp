// Bookkeeping, creation, moves, autograd, autocast, devices and zip archives.
#include "shim_internal.h"

#include <ATen/DeviceAccelerator.h>
#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <ATen/Parallel.h>
#include <torch/version.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>
#include <caffe2/serialize/inline_container.h>
#include <cmath>
#include <cstring>
#include <dlfcn.h>
#include <memory>
#include <mutex>
#include <thread>
#include <unistd.h>

std::atomic<int64_t> g_live_tensors{0};
std::atomic<int64_t> g_live_handles{0};

static ct_error_s g_out_of_memory_error{"out of memory (while reporting a libtorch error)"};

ct_error ct_make_error(const char *msg) noexcept {
  try {
    return new ct_error_s{msg ? std::string(msg) : std::string("unknown error")};
  } catch (...) {
    return &g_out_of_memory_error;
  }
}

extern "C" {

const char *ct_error_message(ct_error err) { return err ? err->message.c_str() : ""; }
void ct_error_free(ct_error err) {
  if (err != &g_out_of_memory_error) delete err;
}
void ct_tensor_free(ct_tensor t) { delete t; }
int64_t ct_live_tensors(void) { return g_live_tensors.load(std::memory_order_relaxed); }
int64_t ct_live_handles(void) { return g_live_handles.load(std::memory_order_relaxed); }
const char *ct_torch_version(void) { return TORCH_VERSION; }

// ---- info ----
int64_t ct_dim(ct_tensor t) { return t->t.dim(); }
int64_t ct_sizes(ct_tensor t, int64_t *out, int64_t cap) {
  auto s = t->t.sizes();
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()) && i < cap; ++i) out[i] = s[i];
  return static_cast<int64_t>(s.size());
}
int64_t ct_strides(ct_tensor t, int64_t *out, int64_t cap) {
  auto s = t->t.strides();
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()) && i < cap; ++i) out[i] = s[i];
  return static_cast<int64_t>(s.size());
}
int64_t ct_numel(ct_tensor t) { return t->t.numel(); }
int ct_dtype(ct_tensor t) { return static_cast<int>(t->t.scalar_type()); }
int ct_device_type(ct_tensor t) { return static_cast<int>(t->t.device().type()); }
int ct_device_index(ct_tensor t) { return t->t.device().has_index() ? t->t.device().index() : 0; }
int ct_requires_grad(ct_tensor t) { return t->t.requires_grad() ? 1 : 0; }
int ct_is_leaf(ct_tensor t) { return t->t.is_leaf() ? 1 : 0; }
int ct_is_contiguous(ct_tensor t) { return t->t.is_contiguous() ? 1 : 0; }
int64_t ct_storage_offset(ct_tensor t) { return t->t.storage_offset(); }
ct_error ct_version(ct_tensor t, int64_t *out) { CT_TRY(*out = static_cast<int64_t>(t->t._version())) }
void *ct_data_ptr(ct_tensor t) { return t->t.is_cpu() ? t->t.data_ptr() : nullptr; }
ct_error ct_item_double(ct_tensor t, double *out) { CT_TRY(*out = t->t.item<double>()) }
ct_error ct_item_int64(ct_tensor t, int64_t *out) { CT_TRY(*out = t->t.item<int64_t>()) }
ct_error ct_shallow_clone(ct_tensor t, ct_tensor *out) { CT_OUT(t->t) }

// ---- creation ----
ct_error ct_filled(int kind, const int64_t *sizes, int ndim, int dtype, int device_type, int device_index, ct_tensor *out) {
  CT_TRY({
    auto opts = ct_options(dtype, device_type, device_index);
    auto shape = ct_ints(sizes, ndim);
    switch (kind) {
      case CT_FILL_ZEROS: *out = ct_wrap(at::zeros(shape, opts)); break;
      case CT_FILL_ONES: *out = ct_wrap(at::ones(shape, opts)); break;
      case CT_FILL_EMPTY: *out = ct_wrap(at::empty(shape, opts)); break;
      case CT_FILL_RAND: *out = ct_wrap(at::rand(shape, opts)); break;
      case CT_FILL_RANDN: *out = ct_wrap(at::randn(shape, opts)); break;
      default: throw std::invalid_argument("ct_filled: unknown fill kind " + std::to_string(kind));
    }
  })
}
ct_error ct_full(const int64_t *sizes, int ndim, double value, int dtype, int device_type, int device_index, ct_tensor *out) {
  CT_OUT(at::full(ct_ints(sizes, ndim), value, ct_options(dtype, device_type, device_index)))
}
ct_error ct_arange(double start, double end, double step, int dtype, int device_type, int device_index, ct_tensor *out) {
  CT_OUT(at::arange(start, end, step, ct_options(dtype, device_type, device_index)))
}
ct_error ct_randint(int64_t low, int64_t high, const int64_t *sizes, int ndim, int dtype, int device_type, int device_index,
                    ct_tensor *out) {
  CT_OUT(at::randint(low, high, ct_ints(sizes, ndim), ct_options(dtype, device_type, device_index)))
}
ct_error ct_from_buffer(const void *data, size_t nbytes, const int64_t *sizes, int ndim, int dtype, ct_tensor *out) {
  CT_TRY({
    auto t = at::empty(ct_ints(sizes, ndim), at::TensorOptions().dtype(static_cast<at::ScalarType>(dtype)));
    if (t.nbytes() != nbytes)
      throw std::invalid_argument("buffer holds " + std::to_string(nbytes) + " bytes but shape " +
                                  c10::str(t.sizes()) + " of " + std::string(c10::toString(t.scalar_type())) + " needs " +
                                  std::to_string(t.nbytes()));
    if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
    *out = ct_wrap(std::move(t));
  })
}
ct_error ct_to_buffer(ct_tensor t, void *dst, size_t nbytes, int dtype) {
  CT_TRY({
    if (static_cast<int>(t->t.scalar_type()) != dtype)
      throw std::invalid_argument(std::string("tensor has dtype ") + c10::toString(t->t.scalar_type()) + " but the buffer expects " +
                                  c10::toString(static_cast<at::ScalarType>(dtype)));
    auto c = t->t.detach().to(at::kCPU).contiguous();
    if (c.nbytes() != nbytes)
      throw std::invalid_argument("tensor holds " + std::to_string(c.nbytes()) + " bytes but the buffer has " + std::to_string(nbytes));
    if (nbytes > 0) std::memcpy(dst, c.data_ptr(), nbytes);
  })
}

// ---- moves ----
ct_error ct_to(ct_tensor t, int dtype, int device_type, int device_index, int non_blocking, int copy, ct_tensor *out) {
  CT_TRY({
    auto st = dtype < 0 ? t->t.scalar_type() : static_cast<at::ScalarType>(dtype);
    auto dev = device_type < 0 ? t->t.device() : at::Device(static_cast<at::DeviceType>(device_type), ct_device_index(device_index));
    *out = ct_wrap(t->t.to(dev, st, non_blocking != 0, copy != 0));
  })
}
ct_error ct_pin_memory(ct_tensor t, ct_tensor *out) { CT_OUT(t->t.pin_memory()) }
ct_error ct_view_dtype(ct_tensor t, int dtype, ct_tensor *out) { CT_OUT(t->t.view(static_cast<at::ScalarType>(dtype))) }

// ---- autograd ----
ct_error ct_set_requires_grad(ct_tensor t, int requires_grad) { CT_TRY(t->t.set_requires_grad(requires_grad != 0)) }
ct_error ct_backward(ct_tensor t, ct_tensor grad, int keep_graph) {
  CT_TRY(t->t.backward(grad ? grad->t : at::Tensor(), keep_graph != 0 ? std::optional<bool>(true) : std::nullopt, false))
}
ct_error ct_grad(ct_tensor t, ct_tensor *out) {
  CT_TRY({
    const auto &g = t->t.grad();
    *out = g.defined() ? ct_wrap(g) : nullptr;
  })
}
ct_error ct_clear_grad(ct_tensor t) { CT_TRY(t->t.mutable_grad() = at::Tensor()) }
ct_error ct_detach(ct_tensor t, ct_tensor *out) { CT_OUT(t->t.detach()) }
int ct_grad_enabled(void) { return at::GradMode::is_enabled() ? 1 : 0; }
void ct_set_grad_enabled(int enabled) { at::GradMode::set_enabled(enabled != 0); }

struct ct_guard_s {
  virtual ~ct_guard_s() = default;
  ct_live_handle live;
};
struct InferenceGuard final : ct_guard_s {
  c10::InferenceMode mode{true};
};
// Mirrors torch.autocast.__enter__/__exit__: save state, set, bump nesting; restore on exit.
struct AutocastGuard final : ct_guard_s {
  at::DeviceType device;
  bool prev_enabled;
  at::ScalarType prev_dtype;
  AutocastGuard(at::DeviceType d, at::ScalarType dtype, bool enabled)
      : device(d), prev_enabled(at::autocast::is_autocast_enabled(d)), prev_dtype(at::autocast::get_autocast_dtype(d)) {
    at::autocast::set_autocast_enabled(d, enabled);
    at::autocast::set_autocast_dtype(d, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() override {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device, prev_enabled);
    at::autocast::set_autocast_dtype(device, prev_dtype);
  }
};

ct_error ct_inference_mode_enter(ct_guard *out) { CT_TRY(*out = new InferenceGuard()) }
int ct_inference_mode_enabled(void) { return c10::InferenceMode::is_enabled() ? 1 : 0; }
void ct_guard_exit(ct_guard g) { delete g; }
ct_error ct_autocast_enter(int device_type, int dtype, int enabled, ct_guard *out) {
  CT_TRY({
    auto st = static_cast<at::ScalarType>(dtype);
    if (st != at::kHalf && st != at::kBFloat16)
      throw std::invalid_argument(std::string("autocast supports float16 and bfloat16, not ") + c10::toString(st));
    *out = new AutocastGuard(static_cast<at::DeviceType>(device_type), st, enabled != 0);
  })
}
// libtorch throws for a device type without autocast (meta): there it is simply not on.
int ct_autocast_enabled(int device_type) {
  try {
    return at::autocast::is_autocast_enabled(static_cast<at::DeviceType>(device_type)) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}
int ct_autocast_dtype(int device_type) {
  try {
    return static_cast<int>(at::autocast::get_autocast_dtype(static_cast<at::DeviceType>(device_type)));
  } catch (...) {
    return -1;
  }
}
void ct_set_autocast_cache(int enabled) { at::autocast::set_autocast_cache_enabled(enabled != 0); }
int ct_autocast_cache(void) { return at::autocast::is_autocast_cache_enabled() ? 1 : 0; }

// ---- precision, devices, RNG, threads ----
void ct_set_tf32(int enabled) {
  at::globalContext().setAllowTF32CuBLAS(enabled != 0);
  at::globalContext().setAllowTF32CuDNN(enabled != 0);
}
int ct_tf32(void) { return at::globalContext().allowTF32CuBLAS() ? 1 : 0; }
void ct_set_cudnn_benchmark(int enabled) { at::globalContext().setBenchmarkCuDNN(enabled != 0); }

// libtorch_cuda registers CUDA with ATen from static initialisers. Nothing in our binary references
// it, so linkers drop it and CUDA silently reads as unavailable; load it by path beside libtorch_cpu.
static std::string g_cuda_load_message;

int ct_cuda_load(void) {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info info;
    if (dladdr(reinterpret_cast<void *>(&at::globalContext), &info) == 0 || info.dli_fname == nullptr) return;
    std::string dir(info.dli_fname);
    auto slash = dir.rfind('/');
    dir = slash == std::string::npos ? std::string(".") : dir.substr(0, slash);
    for (const char *name : {"libc10_cuda.so", "libtorch_cuda.so"}) {
      std::string path = dir + "/" + name;
      if (access(path.c_str(), R_OK) != 0) continue;
      if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
        const char *why = dlerror();
        g_cuda_load_message = path + ": " + (why ? why : "dlopen failed");
        return;
      }
    }
  });
  return ct_cuda_available();
}
const char *ct_cuda_load_message(void) { return g_cuda_load_message.c_str(); }
int ct_cuda_available(void) {
  try {
    return at::hasCUDA() && at::getNumGPUs() > 0 ? 1 : 0;
  } catch (...) {
    return 0;
  }
}
int ct_cuda_device_count(void) {
  try {
    return at::hasCUDA() ? static_cast<int>(at::getNumGPUs()) : 0;
  } catch (...) {
    return 0;
  }
}
static void require_cuda(int device_index) {
  if (!ct_cuda_available()) throw std::runtime_error("CUDA is not available in this libtorch");
  if (device_index < 0 || device_index >= ct_cuda_device_count())
    throw std::out_of_range("CUDA device " + std::to_string(device_index) + " does not exist (" +
                            std::to_string(ct_cuda_device_count()) + " present)");
}
ct_error ct_cuda_synchronize(int device_index) {
  CT_TRY(require_cuda(device_index); at::accelerator::synchronizeDevice(ct_device_index(device_index)))
}
ct_error ct_cuda_memory(int device_index, int64_t *allocated, int64_t *peak, int64_t *reserved) {
  CT_TRY({
    require_cuda(device_index);
    auto stats = at::accelerator::getDeviceStats(ct_device_index(device_index));
    constexpr auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[agg].current;
    *peak = stats.allocated_bytes[agg].peak;
    *reserved = stats.reserved_bytes[agg].current;
  })
}
ct_error ct_cuda_reset_peak(int device_index) {
  CT_TRY(require_cuda(device_index); at::accelerator::resetPeakStats(ct_device_index(device_index)))
}
ct_error ct_cuda_empty_cache(void) { CT_TRY(require_cuda(0); at::accelerator::emptyCache()) }
ct_error ct_cuda_memory_info(int device_index, int64_t *free_bytes, int64_t *total_bytes) {
  CT_TRY({
    require_cuda(device_index);
    auto [f, t] = at::accelerator::getMemoryInfo(ct_device_index(device_index));
    *free_bytes = static_cast<int64_t>(f);
    *total_bytes = static_cast<int64_t>(t);
  })
}
ct_error ct_manual_seed(uint64_t seed) { CT_TRY(at::manual_seed(seed)) }
void ct_set_num_threads(int n) {
  if (n > 0) at::set_num_threads(n);
}
int ct_num_threads(void) { return at::get_num_threads(); }

// ---- zip archives ----
struct ct_zip_reader_s {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  std::vector<std::string> names;
  ct_live_handle live{};
};
struct ct_zip_writer_s {
  std::unique_ptr<caffe2::serialize::PyTorchStreamWriter> writer;
  ct_live_handle live{};
};

ct_error ct_zip_reader_open(const char *path, ct_zip_reader *out) {
  CT_TRY({
    auto r = std::make_unique<ct_zip_reader_s>();
    r->reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(std::string(path));
    r->names = r->reader->getAllRecords();
    *out = r.release();
  })
}
void ct_zip_reader_free(ct_zip_reader r) { delete r; }
int64_t ct_zip_reader_count(ct_zip_reader r) { return static_cast<int64_t>(r->names.size()); }
const char *ct_zip_reader_name(ct_zip_reader r, int64_t i) {
  return i >= 0 && i < static_cast<int64_t>(r->names.size()) ? r->names[static_cast<size_t>(i)].c_str() : nullptr;
}
ct_error ct_zip_reader_read(ct_zip_reader r, const char *name, ct_tensor *out) {
  CT_TRY({
    auto [ptr, size] = r->reader->getRecord(std::string(name));
    auto storage = c10::Storage(c10::Storage::use_byte_size_t(), static_cast<int64_t>(size), std::move(ptr), nullptr, false);
    auto t = at::empty({0}, at::TensorOptions().dtype(at::kByte)).set_(storage, 0, {static_cast<int64_t>(size)}, {1});
    *out = ct_wrap(std::move(t));
  })
}
ct_error ct_zip_writer_open(const char *path, ct_zip_writer *out) {
  CT_TRY({
    auto w = std::make_unique<ct_zip_writer_s>();
    w->writer = std::make_unique<caffe2::serialize::PyTorchStreamWriter>(std::string(path));
    *out = w.release();
  })
}
ct_error ct_zip_writer_write(ct_zip_writer w, const char *name, const void *data, size_t nbytes) {
  CT_TRY(w->writer->writeRecord(std::string(name), data, nbytes))
}
ct_error ct_zip_writer_finish(ct_zip_writer w) { CT_TRY(w->writer->writeEndOfFile()) }
void ct_zip_writer_free(ct_zip_writer w) {
  if (w == nullptr) return;
  // The writer's destructor finalises an unfinished archive and would terminate the process if that
  // threw (say, after a failed write); finalise here, where an exception can be swallowed.
  try {
    if (!w->writer->finalized()) w->writer->writeEndOfFile();
  } catch (...) {
  }
  delete w;
}

}  // extern "C"

// ---- device events (timing on the device's current stream; CUDA through c10's device-generic Event,
// so no CUDA headers are needed here) ----
struct ct_event_s {
  c10::Event event;
  c10::Device device;
  ct_live_handle live{};
};

extern "C" {

ct_error ct_event_create(int device_type, int device_index, ct_event *out) {
  CT_TRY({
    auto type = static_cast<c10::DeviceType>(device_type);
    c10::Device device(type, ct_device_index(device_index));
    // BACKEND_DEFAULT: an event that records timing (PYTORCH_DEFAULT disables it).
    *out = new ct_event_s{c10::Event(type, c10::EventFlag::BACKEND_DEFAULT), device};
  })
}

ct_error ct_event_record(ct_event e) {
  CT_TRY({
    auto stream = c10::impl::getDeviceGuardImpl(e->device.type())->getStream(e->device);
    e->event.record(stream);
  })
}

ct_error ct_event_elapsed_ms(ct_event start, ct_event end, double *ms) {
  CT_TRY({
    end->event.synchronize();
    *ms = start->event.elapsedTime(end->event);
  })
}

void ct_event_free(ct_event e) { delete e; }

} // extern "C"
