// libtorch's own profiler (Kineto): which ops ran, and on CUDA which kernels and for how long. The shim
// hands back the raw events; grouping them into tables is the Swift side's business.
#include "shim_internal.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <memory>
#include <set>

namespace prof = torch::autograd::profiler;
namespace impl = torch::profiler::impl;

struct ct_profile_s {
  std::unique_ptr<prof::ProfilerResult> result;
  std::vector<std::string> names;  // kept here so that the C strings handed out live as long as the handle
  ct_live_handle live{};
};

extern "C" {

ct_error ct_profiler_start(int cuda, int shapes) {
  CT_TRY({
    TORCH_CHECK(!impl::profilerEnabled(), "the profiler is already running");
    std::set<impl::ActivityType> activities{impl::ActivityType::CPU};
    if (cuda != 0) activities.insert(impl::ActivityType::CUDA);
    // KINETO: ops through RecordFunction (this thread and the autograd threads its work hands state to),
    // device activity through CUPTI. Input shapes only when asked (a trace that attributes copies to the
    // tensors they move); no stacks or memory events: they cost time and are not read.
    impl::ProfilerConfig config(impl::ProfilerState::KINETO, /*report_input_shapes=*/shapes != 0);
    prof::prepareProfiler(config, activities);
    prof::enableProfiler(config, activities);
  })
}

ct_error ct_profiler_stop(ct_profile *out) {
  CT_TRY({
    TORCH_CHECK(impl::profilerEnabled(), "the profiler is not running");
    auto p = std::make_unique<ct_profile_s>();
    p->result = prof::disableProfiler();
    TORCH_CHECK(p->result != nullptr, "the profiler returned no result");
    p->names.reserve(p->result->events().size());
    for (const auto &e : p->result->events()) p->names.push_back(e.name());
    *out = p.release();
  })
}

int64_t ct_profile_event_count(ct_profile p) { return static_cast<int64_t>(p->result->events().size()); }

void ct_profile_event_at(ct_profile p, int64_t i, ct_profile_event *out) {
  const auto &e = p->result->events()[static_cast<size_t>(i)];
  out->name = p->names[static_cast<size_t>(i)].c_str();
  out->device_type = static_cast<int>(e.deviceType());
  out->device_index = e.deviceIndex();
  out->activity = e.activityType();
  out->thread = e.startThreadId();
  out->start_ns = static_cast<int64_t>(e.startNs());
  out->duration_ns = static_cast<int64_t>(e.durationNs());
  out->correlation = e.correlationId();
  out->linked_correlation = e.linkedCorrelationId();
}

ct_error ct_profile_save_trace(ct_profile p, const char *path) { CT_TRY(p->result->save(path)) }

void ct_profile_free(ct_profile p) { delete p; }

}  // extern "C"
