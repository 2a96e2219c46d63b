// Declarations only: see shim_dist.cpp.
#pragma once
