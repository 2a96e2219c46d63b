// torch.distributed's engine (c10d) for data-parallel training: a TCPStore rendezvous and libtorch's own
// process groups — Gloo (CPU, and CUDA tensors staged through the host) and, when this build has NCCL's
// headers, ProcessGroupNCCL. Collectives are blocking: each call waits for its Work, so a failure (a peer
// that died, a timeout) comes back here as a ct_error with c10d's message.
//
// About gloo-decls/: the torch wheel ships ProcessGroupGloo.hpp and the compiled Gloo backend inside
// libtorch_cpu, but not the Gloo headers that file includes. The shim only constructs ProcessGroupGloo
// through its exported constructor and then uses it through c10d::Backend's virtual interface; every Gloo
// type in that class sits behind a shared_ptr/unique_ptr, so its layout does not depend on Gloo's
// definitions. gloo-decls/ declares just the names ProcessGroupGloo.hpp mentions so that it compiles;
// nothing there is defined or called by the shim — Gloo's real code runs inside libtorch.
#include "shim_dist_internal.h"

#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <sstream>

static void ct_wait(const c10::intrusive_ptr<c10d::Work> &work) {
  work->wait();
}

extern "C" {

ct_error ct_store_tcp(const char *host, int port, int is_server, int world_size, int64_t timeout_ms, ct_store *out) {
  CT_TRY({
    TORCH_CHECK(port > 0 && port < 65536, "port ", port, " is not a TCP port");
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<std::size_t>(world_size);
    opts.waitWorkers = true;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    *out = new ct_store_s{store};
  })
}

void ct_store_free(ct_store s) { delete s; }

ct_error ct_group_gloo(ct_store s, int rank, int world_size, int64_t timeout_ms, const char *interface,
                       const char *hostname, ct_group *out) {
  CT_TRY({
    TORCH_CHECK(rank >= 0 && rank < world_size, "rank ", rank, " is outside world size ", world_size);
    auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    if (interface && *interface) {
      // GLOO_SOCKET_IFNAME may list several interfaces, comma-separated (as torch.distributed reads it).
      std::stringstream list(interface);
      std::string name;
      while (std::getline(list, name, ','))
        if (!name.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
    } else if (hostname && *hostname) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s->store, rank, world_size, opts);
    *out = new ct_group_s{c10::static_intrusive_pointer_cast<c10d::Backend>(pg), rank, world_size};
  })
}

void ct_group_free(ct_group g) { delete g; }

ct_error ct_group_allreduce(ct_group g, ct_tensor t, int op) {
  CT_TRY({
    std::vector<at::Tensor> ts{t->t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp(static_cast<c10d::ReduceOp::RedOpType>(op));
    ct_wait(g->backend->allreduce(ts, opts));
  })
}

ct_error ct_group_broadcast(ct_group g, ct_tensor t, int root) {
  CT_TRY({
    std::vector<at::Tensor> ts{t->t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    ct_wait(g->backend->broadcast(ts, opts));
  })
}

ct_error ct_group_allgather(ct_group g, ct_tensor t, ct_tensor *out) {
  CT_TRY({
    std::vector<at::Tensor> input{t->t.contiguous()};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int i = 0; i < g->size; ++i) output[0].push_back(at::empty_like(input[0]));
    ct_wait(g->backend->allgather(output, input));
    *out = ct_wrap(at::stack(output[0]));
  })
}

ct_error ct_group_barrier(ct_group g) {
  CT_TRY(ct_wait(g->backend->barrier()))
}

} // extern "C"
