// Stand-in for the CUDA toolkit's library_types.h in the emulated build (DYNIN_RT_CUDA=EMULATE):
// the data-type enum the libraries share, with the toolkit's values.
#pragma once

typedef enum cudaDataType_t {
    CUDA_R_32F = 0,
    CUDA_R_64F = 1,
    CUDA_R_16F = 2,
    CUDA_R_8I = 3,
    CUDA_R_32I = 10,
    CUDA_R_16BF = 14,
} cudaDataType_t;
typedef cudaDataType_t cudaDataType;
