# CMake toolchain file: Debian's aarch64 cross gcc, tests run under qemu user-mode.
#   cmake -S tflite_kernels -B build/cmake-aarch64 -DCMAKE_TOOLCHAIN_FILE=$PWD/tools/arm/aarch64-linux-gnu.cmake
#   cmake --build build/cmake-aarch64 && ctest --test-dir build/cmake-aarch64
# (from the repository root; the path must be absolute: CMake looks a relative one up in the build
# directory, then in tflite_kernels/, and stops with "Could not find toolchain file")
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L /usr/aarch64-linux-gnu)
