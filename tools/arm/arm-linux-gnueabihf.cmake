# CMake toolchain file: Debian's armv7 hard-float cross gcc, tests run under qemu user-mode.
#   cmake -S tflite_kernels -B build/cmake-armv7 -DCMAKE_TOOLCHAIN_FILE=$PWD/tools/arm/arm-linux-gnueabihf.cmake
# (from the repository root; the path must be absolute: CMake looks a relative one up in the build
# directory, then in tflite_kernels/, and stops with "Could not find toolchain file")
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7-a)
set(CMAKE_C_COMPILER arm-linux-gnueabihf-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/arm-linux-gnueabihf)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-arm-static -L /usr/arm-linux-gnueabihf)
