// Internal to the shim: the handle structs, the error convention and conversions.
#pragma once
#include <ATen/ATen.h>
#include <atomic>
#include <exception>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>
#include "ctorch.h"

extern std::atomic<int64_t> g_live_tensors;
extern std::atomic<int64_t> g_live_handles;

// A member of every other handle type (errors, guards, archives, events, graphs, profiles, stores,
// groups): counts them, so leak tests see a handle the Swift side forgot to free, as they see tensors.
struct ct_live_handle {
  ct_live_handle() noexcept { g_live_handles.fetch_add(1, std::memory_order_relaxed); }
  ct_live_handle(const ct_live_handle &) noexcept { g_live_handles.fetch_add(1, std::memory_order_relaxed); }
  ct_live_handle &operator=(const ct_live_handle &) noexcept = default;
  ~ct_live_handle() { g_live_handles.fetch_sub(1, std::memory_order_relaxed); }
};

struct ct_tensor_s {
  at::Tensor t;
  explicit ct_tensor_s(at::Tensor x) : t(std::move(x)) { g_live_tensors.fetch_add(1, std::memory_order_relaxed); }
  ~ct_tensor_s() { g_live_tensors.fetch_sub(1, std::memory_order_relaxed); }
};

struct ct_error_s {
  std::string message;
  ct_live_handle live{};
};

// Never throws: where even the message cannot be allocated, a static "out of memory" error comes back
// (ct_error_free knows not to delete it).
ct_error ct_make_error(const char *msg) noexcept;

// A C int as c10's 8-bit device index, refused rather than wrapped (256 would silently be cuda:0).
inline c10::DeviceIndex ct_device_index(int index) {
  if (index < -1 || index > std::numeric_limits<c10::DeviceIndex>::max())
    throw std::out_of_range("device index " + std::to_string(index) + " is out of range (-1 to " +
                            std::to_string(std::numeric_limits<c10::DeviceIndex>::max()) + ")");
  return static_cast<c10::DeviceIndex>(index);
}

inline ct_tensor ct_wrap(at::Tensor t) { return new ct_tensor_s(std::move(t)); }

inline at::IntArrayRef ct_ints(const int64_t *p, int n) { return at::IntArrayRef(p, static_cast<size_t>(n)); }

inline std::optional<at::Tensor> ct_opt(ct_tensor t) {
  if (t == nullptr) return std::nullopt;
  return t->t;
}

inline at::TensorOptions ct_options(int dtype, int device_type, int device_index) {
  return at::TensorOptions()
      .dtype(static_cast<at::ScalarType>(dtype))
      .device(at::Device(static_cast<at::DeviceType>(device_type), ct_device_index(device_index)));
}

inline std::vector<at::Tensor> ct_list(const ct_tensor *ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v.push_back(ts[i]->t);
  return v;
}

// Every fallible entry point is one CT_TRY block: success returns NULL, any C++ exception
// becomes a ct_error carrying its message (c10 errors without the C++ backtrace).
#define CT_TRY(...)                                                    \
  try {                                                                \
    __VA_ARGS__;                                                       \
    return nullptr;                                                    \
  } catch (const c10::Error &e) {                                      \
    return ct_make_error(e.what_without_backtrace());                  \
  } catch (const std::exception &e) {                                  \
    return ct_make_error(e.what());                                    \
  } catch (...) {                                                      \
    return ct_make_error("unknown C++ exception in libtorch");          \
  }

// Unwraps an out-parameter assignment so each op reads as one line.
#define CT_OUT(expr) CT_TRY(*out = ct_wrap(expr))
