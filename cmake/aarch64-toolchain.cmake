# aarch64-toolchain.cmake: cross build for 64-bit ARM Linux with the Debian cross compilers;
# tests run under qemu-user (ctest uses CMAKE_CROSSCOMPILING_EMULATOR).
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-toolchain.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(LB_AARCH64_SYSROOT /usr/aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;${LB_AARCH64_SYSROOT})

# Libraries, packages and headers come from the aarch64 tree only, never from the host's x86 one.
set(CMAKE_FIND_ROOT_PATH ${LB_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# One exception: doctest is header-only and installed for the host only. Its directory,
# /usr/include, must not come before the cross compiler's own headers (it holds the host's libc
# headers too), so it is added with -idirafter: searched after every system directory, it
# supplies only what the aarch64 tree lacks. The compiler then reports it as an implicit include
# directory, so target_include_directories(${DOCTEST_INCLUDE}) adds no -I for it.
if(EXISTS /usr/include/doctest/doctest.h)
  set(CMAKE_C_FLAGS_INIT "-idirafter /usr/include")
  set(CMAKE_CXX_FLAGS_INIT "-idirafter /usr/include")
  set(DOCTEST_INCLUDE /usr/include CACHE PATH "doctest header directory (host, header-only)")
endif()
