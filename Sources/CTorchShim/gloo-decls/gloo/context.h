// Declarations only: see shim_dist.cpp. ProcessGroupGloo.hpp's inline setTimeout names this member.
#pragma once
#include <chrono>

namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
