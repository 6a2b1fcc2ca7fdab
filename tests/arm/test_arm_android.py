"""Android-facing build checks that can run here (no NDK, no device):

* tflite_kernels/CMakeLists.txt (the NDK externalNativeBuild entry) configures, builds and passes
  its CTest tests on the host and with the aarch64 cross toolchain (tests run under qemu), and the
  resulting libdc_huffdecode.so passes the ELF portability check (libc/libm only, bionic symbols).
* The JNI / TFLite C API example (tflite_kernels/android/dc_tflite_example.c) compiles warning-free
  for x86_64, aarch64 and armv7 against declarations of the TFLite C API functions it calls,
  written here from upstream tensorflow/lite/core/c/c_api.h (the real headers and the NDK are not
  available on this machine: the example is compile-checked, not run)."""
import shutil
import subprocess
import sys

import pytest

from arm_helpers import KERNELS, ROOT

CHECK_ABI = ROOT / "tools" / "arm" / "check_abi.py"
# armv7 is covered by the Makefile cross build (tools/arm/arm-linux-gnueabihf.cmake also works).
TOOLCHAINS = {"host": None, "aarch64": ROOT / "tools" / "arm" / "aarch64-linux-gnu.cmake"}

# Declarations of the TFLite C API used by the example (signatures as in upstream c_api.h,
# c_api_types.h and c_api_experimental.h); opaque types, as the C API treats them.
C_API_DECLS = r"""
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum { kTfLiteNoType = 0, kTfLiteFloat32 = 1 } TfLiteType;
typedef struct TfLiteModel TfLiteModel;
typedef struct TfLiteInterpreterOptions TfLiteInterpreterOptions;
typedef struct TfLiteInterpreter TfLiteInterpreter;
typedef struct TfLiteTensor TfLiteTensor;
typedef struct TfLiteDelegate TfLiteDelegate;
typedef struct TfLiteRegistration TfLiteRegistration;
TfLiteModel* TfLiteModelCreate(const void* model_data, size_t model_size);
void TfLiteModelDelete(TfLiteModel* model);
TfLiteInterpreterOptions* TfLiteInterpreterOptionsCreate(void);
void TfLiteInterpreterOptionsDelete(TfLiteInterpreterOptions* options);
void TfLiteInterpreterOptionsSetNumThreads(TfLiteInterpreterOptions* options, int32_t num_threads);
void TfLiteInterpreterOptionsAddDelegate(TfLiteInterpreterOptions* options, TfLiteDelegate* delegate);
void TfLiteInterpreterOptionsSetErrorReporter(TfLiteInterpreterOptions* options,
    void (*reporter)(void* user_data, const char* format, va_list args), void* user_data);
void TfLiteInterpreterOptionsAddCustomOp(TfLiteInterpreterOptions* options, const char* name,
    const TfLiteRegistration* registration, int32_t min_version, int32_t max_version);
TfLiteInterpreter* TfLiteInterpreterCreate(const TfLiteModel* model,
    const TfLiteInterpreterOptions* optional_options);
void TfLiteInterpreterDelete(TfLiteInterpreter* interpreter);
TfLiteStatus TfLiteInterpreterAllocateTensors(TfLiteInterpreter* interpreter);
TfLiteTensor* TfLiteInterpreterGetInputTensor(const TfLiteInterpreter* interpreter, int32_t input_index);
const TfLiteTensor* TfLiteInterpreterGetOutputTensor(const TfLiteInterpreter* interpreter, int32_t output_index);
TfLiteStatus TfLiteInterpreterInvoke(TfLiteInterpreter* interpreter);
TfLiteType TfLiteTensorType(const TfLiteTensor* tensor);
size_t TfLiteTensorByteSize(const TfLiteTensor* tensor);
TfLiteStatus TfLiteTensorCopyFromBuffer(TfLiteTensor* tensor, const void* input_data, size_t input_data_size);
TfLiteStatus TfLiteTensorCopyToBuffer(const TfLiteTensor* output_tensor, void* output_data, size_t output_data_size);
"""

COMPILERS = {"x86_64": "gcc", "aarch64": "aarch64-linux-gnu-gcc", "armv7": "arm-linux-gnueabihf-gcc"}


def _jni_include():
    for java_home in sorted((p for p in __import__("pathlib").Path("/usr/lib/jvm").glob("*")
                             if (p / "include" / "jni.h").is_file()), reverse=True):
        return java_home / "include"
    return None


@pytest.mark.long  # `make test-long` (~150 s: two CMake builds of every target); make test builds with make
@pytest.mark.parametrize("arch", list(TOOLCHAINS))
def test_cmake_build_ctest_and_abi(arm_env, arch, tmp_path):
    if not shutil.which("cmake"):
        pytest.fail("cmake is not installed (apt-get install cmake)")
    build = tmp_path / f"cmake-{arch}"
    configure = ["cmake", "-S", str(KERNELS), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    if TOOLCHAINS[arch]:
        configure.append(f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAINS[arch]}")
    ctest = ["ctest", "--test-dir", str(build), "--output-on-failure", "--no-tests=error"]
    if TOOLCHAINS[arch]:
        # The Makefile cross build already ran every C test under qemu: here one test shows the
        # toolchain file's CMAKE_CROSSCOMPILING_EMULATOR works (the others cost minutes emulated).
        ctest += ["-R", "test_huffdecode_op"]
    for cmd in (configure, ["cmake", "--build", str(build), "-j", "1"], ctest):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    lib = build / "libdc_huffdecode.so"
    machine = subprocess.run(["readelf", "-h", str(lib)], capture_output=True, text=True,
                             check=True).stdout
    expected = {"host": "X86-64", "aarch64": "AArch64"}[arch]
    assert expected in machine
    proc = subprocess.run([sys.executable, str(CHECK_ABI), str(lib)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("arch", list(COMPILERS))
def test_android_example_compiles(arm_env, arch, tmp_path):
    jni = _jni_include()
    if jni is None:
        pytest.fail("no JDK jni.h under /usr/lib/jvm (apt-get install openjdk-17-jdk-headless)")
    inc = tmp_path / "include" / "tensorflow" / "lite" / "c"
    inc.mkdir(parents=True)
    (inc / "c_api.h").write_text("#pragma once\n" + C_API_DECLS)
    (inc / "c_api_experimental.h").write_text('#pragma once\n#include "tensorflow/lite/c/c_api.h"\n')
    cmd = [COMPILERS[arch], "-std=c99", "-O2", "-fPIC", "-Wall", "-Wextra", "-Werror", "-c",
           f"-I{tmp_path / 'include'}", f"-I{KERNELS / 'include'}", f"-I{jni}", f"-I{jni / 'linux'}",
           str(KERNELS / "android" / "dc_tflite_example.c"), "-o", str(tmp_path / "example.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    syms = subprocess.run(["readelf", "-sW", str(tmp_path / "example.o")], capture_output=True,
                          text=True, check=True).stdout
    for name in ("Java_org_dckeras_example_PackedModel_nativeCreate",
                 "Java_org_dckeras_example_HuffDecodeDelegate_nativeCreate",
                 "TfLiteInterpreterOptionsAddCustomOp", "DcKerasHuffDecodeRegistration"):
        assert name in syms, name
