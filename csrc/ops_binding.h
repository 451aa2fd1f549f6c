// Test hooks: every backend kernel callable from Python on numpy arrays, so tests compare each op
// against a PyTorch twin and each CUDA kernel against its CPU twin.
#pragma once
#include <pybind11/pybind11.h>

void bind_ops(pybind11::module_& m);
