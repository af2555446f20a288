// Torch-free CUDA translation unit: reports the CUDA runtime this extension was linked with.
#include <cuda_runtime_api.h>

namespace amgp {

int cuda_runtime_version() {
  int version = 0;
  if (cudaRuntimeGetVersion(&version) != cudaSuccess) return -1;
  return version;
}

}  // namespace amgp
