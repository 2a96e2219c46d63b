// Internal to the shim: the distributed handles, shared by shim_dist.cpp (store, Gloo, collectives) and
// shim_nccl.cpp (NCCL, compiled in only where NCCL's headers are given).
#pragma once
#include "shim_internal.h"

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

struct ct_store_s {
  c10::intrusive_ptr<c10d::Store> store;
  ct_live_handle live{};
};
struct ct_group_s {
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int size;
  ct_live_handle live{};
};
