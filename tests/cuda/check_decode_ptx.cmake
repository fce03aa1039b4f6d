# check_decode_ptx.cmake: -DNVCC=... -DSRC=tests/cuda/decode_ptx.cu -DINC=<source root> -DOUT=<ptx> -DARCH=<sm>
# Compiles the shared decoder for the device and fails if the PTX has a fused multiply-add (fma.*)
# or an approximate float instruction: the device must round like the host reference.
execute_process(COMMAND ${NVCC} -std=c++17 -I${INC} -arch=${ARCH} -ptx ${SRC} -o ${OUT}
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nvcc failed: ${err}")
endif()
file(READ ${OUT} ptx)
string(REGEX MATCHALL "[ \t](fma|mad)\\.[a-z0-9.]*f32|\\.approx\\.f32" bad "${ptx}")
if(bad)
  message(FATAL_ERROR "decode.h PTX has instructions that round differently from the host: ${bad}")
endif()
string(REGEX MATCHALL "(mul|add)\\.rn\\.f32" ok "${ptx}")
list(LENGTH ok n)
message(STATUS "decode.h PTX (${ARCH}): no fma / approximate instructions; ${n} explicitly rounded mul/add")
