// libtorch's ProcessGroupNCCL. Its header needs NCCL's and the CUDA runtime's headers, which neither
// the CPU wheel nor the CUDA wheel ships: a build that is given them (CRACKSAM_NCCL_INCLUDE, see
// Package.swift and scripts/gpu-build) compiles this in and links libtorch_cuda; any other build answers
// ct_group_nccl with an error that says so.
#include "shim_dist_internal.h"

#ifdef CRACKSAM_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

extern "C" {

int ct_nccl_compiled(void) {
#ifdef CRACKSAM_NCCL
  return 1;
#else
  return 0;
#endif
}

ct_error ct_group_nccl(ct_store s, int rank, int world_size, int64_t timeout_ms, int device_index, ct_group *out) {
#ifdef CRACKSAM_NCCL
  CT_TRY({
    TORCH_CHECK(rank >= 0 && rank < world_size, "rank ", rank, " is outside world size ", world_size);
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    // NCCL's watchdog aborts a collective that runs past this (and ends the process with its message):
    // a dead peer cannot leave the others waiting forever.
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(s->store, rank, world_size, opts);
    // Bind the group to this rank's GPU and connect now, so a bad rendezvous fails here, not mid-step.
    at::Device device(at::kCUDA, ct_device_index(device_index));
    pg->setBoundDeviceId(device);
    pg->eagerConnectSingleDevice(device);
    *out = new ct_group_s{c10::static_intrusive_pointer_cast<c10d::Backend>(pg), rank, world_size};
  })
#else
  (void)s; (void)rank; (void)world_size; (void)timeout_ms; (void)device_index; (void)out;
  return ct_make_error("this build of crack-cli has no NCCL: libtorch's ProcessGroupNCCL needs nccl.h and the CUDA "
                       "runtime headers at build time (scripts/gpu-build provides them); use --dist-backend gloo");
#endif
}

} // extern "C"
