// CUDA graphs through libtorch's at::cuda::CUDAGraph: capture the kernels a stretch of work issues on a
// stream once, then replay them with one launch. Its header needs the CUDA runtime headers, which no
// torch wheel ships: builds given them (CRACKSAM_NCCL_INCLUDE, see Package.swift and scripts/gpu-build)
// compile this in; any other build answers ct_cuda_graph_new with an error that says so.
#include "shim_internal.h"

#ifdef CRACKSAM_CUDA_HEADERS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/core/DeviceGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <optional>

// A graph and the stream it is captured on. CUDA cannot capture the legacy default stream, so capture
// (and the warm-up before it, whose lazily created workspaces the capture then finds) runs on a stream
// of our own, made current for the device between use_stream(1) and use_stream(0).
// The guards below are c10's generic ones (through the CUDA guard libc10_cuda registers), not the CUDA
// headers' inline ones: those call the CUDA runtime directly, which this binary then would have to link,
// and the GPU machine keeps libcudart where only libtorch_cuda's own search path finds it.
struct ct_cuda_graph_s {
  int device;
  c10::cuda::CUDAStream stream;
  std::optional<c10::cuda::CUDAStream> previous;
  at::cuda::CUDAGraph graph;
  ct_live_handle live;
  ct_cuda_graph_s(int d, c10::cuda::CUDAStream s) : device(d), stream(s) {}
};
// Runs `f` with the graph's device current, under the shim's error convention.
template <class F>
static ct_error on_graph_device(ct_cuda_graph g, F f) {
  CT_TRY({
    c10::DeviceGuard guard(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(g->device)));
    f();
  })
}
#else
struct ct_cuda_graph_s {
  ct_live_handle live;
};
static ct_error no_graphs() {
  return ct_make_error("this build of crack-cli has no CUDA graphs: libtorch's CUDAGraph needs the CUDA runtime headers "
                       "at build time (scripts/gpu-build provides them); run without --cuda-graph");
}
#endif

extern "C" {

int ct_cuda_graphs_compiled(void) {
#ifdef CRACKSAM_CUDA_HEADERS
  return 1;
#else
  return 0;
#endif
}

ct_error ct_cuda_graph_new(int device_index, ct_cuda_graph *out) {
#ifdef CRACKSAM_CUDA_HEADERS
  CT_TRY({
    TORCH_CHECK(device_index >= 0 && device_index < static_cast<int>(c10::cuda::device_count()),
                "no CUDA device ", device_index, " (", static_cast<int>(c10::cuda::device_count()), " visible)");
    auto d = ct_device_index(device_index);
    c10::DeviceGuard guard(c10::Device(c10::kCUDA, d));
    *out = new ct_cuda_graph_s(device_index, c10::cuda::getStreamFromPool(false, d));
  })
#else
  (void)device_index; (void)out;
  return no_graphs();
#endif
}

void ct_cuda_graph_free(ct_cuda_graph g) {
#ifdef CRACKSAM_CUDA_HEADERS
  if (g != nullptr && g->previous) c10::cuda::setCurrentCUDAStream(*g->previous);
#endif
  delete g;
}

ct_error ct_cuda_graph_use_stream(ct_cuda_graph g, int on) {
#ifdef CRACKSAM_CUDA_HEADERS
  return on_graph_device(g, [&] {
    // A full device synchronisation on the way in and out: the graph's stream then sees all earlier work
    // and later work sees its results, whatever stream either ran on. (Only around warm-up and capture.)
    TORCH_CHECK((on != 0) != g->previous.has_value(), on != 0 ? "the graph's stream is already in use" : "the graph's stream is not in use");
    c10::cuda::device_synchronize();
    if (on != 0) {
      g->previous = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(g->device));
      c10::cuda::setCurrentCUDAStream(g->stream);
    } else {
      c10::cuda::setCurrentCUDAStream(*g->previous);
      g->previous.reset();
    }
  });
#else
  (void)g; (void)on;
  return no_graphs();
#endif
}

ct_error ct_cuda_graph_capture_begin(ct_cuda_graph g) {
#ifdef CRACKSAM_CUDA_HEADERS
  return on_graph_device(g, [&] {
    TORCH_CHECK(g->previous, "capture runs on the graph's stream: call ct_cuda_graph_use_stream(g, 1) first");
    // Thread-local mode: only this thread is barred from calls that are unsafe during capture, so the data
    // loader's threads may go on pinning host memory while the step is captured.
    g->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
  });
#else
  (void)g;
  return no_graphs();
#endif
}

ct_error ct_cuda_graph_capture_end(ct_cuda_graph g) {
#ifdef CRACKSAM_CUDA_HEADERS
  return on_graph_device(g, [&] { g->graph.capture_end(); });
#else
  (void)g;
  return no_graphs();
#endif
}

ct_error ct_cuda_graph_replay(ct_cuda_graph g) {
#ifdef CRACKSAM_CUDA_HEADERS
  return on_graph_device(g, [&] { g->graph.replay(); });
#else
  (void)g;
  return no_graphs();
#endif
}

}  // extern "C"
