// firmware_edited.cc -- the HuffDecode kernel's refusals in TFLM compiled for Cortex-M4 (qemu
// mps2-an386), development only: needs TFLM's source tree (never committed), see run_edited.sh.
//
// For the packed int8 LeNet-300-100 and copies of it edited after packing (edited_data.h,
// gen_edited_data.py: a packed input's shape larger / smaller than its buffer, its buffer cut, an
// output with constant data), in both decode modes: the unedited model must allocate and invoke;
// every edited one must fail in AllocateTensors with exactly one HuffDecode line, the kernel's
// message for that edit, and no invoke is tried. Prints a TFLM_M4_EDIT line per run and exits
// with the failure count (a crash or hang would end in qemu's or run_edited.sh's timeout instead).
#include <stdio.h>
#include <string.h>

#include "edited_data.h"
#include "lenet_ops.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
constexpr size_t kArenaSize = 1200 * 1024;
alignas(16) uint8_t g_arena[kArenaSize];
char g_log[4096];
size_t g_log_len = 0;
int g_failures = 0;

void Log(const char* s) {
  fputs(s, stdout);
  const size_t n = strlen(s);
  if (g_log_len + n < sizeof g_log) {
    memcpy(g_log + g_log_len, s, n + 1);
    g_log_len += n;
  }
}

// The number of log lines that start with "HuffDecode", and whether one of them is `message`.
int HuffDecodeLines(const char* message, bool* found) {
  int count = 0;
  *found = false;
  const size_t m = strlen(message);
  for (const char* line = g_log; *line;) {
    const char* end = strpbrk(line, "\r\n");
    const size_t len = end ? (size_t)(end - line) : strlen(line);
    if (len >= 10 && strncmp(line, "HuffDecode", 10) == 0) {
      count++;
      if (len == m && strncmp(line, message, m) == 0) *found = true;
    }
    line += len;
    while (*line == '\r' || *line == '\n') line++;
  }
  return count;
}

void Run(const EditedCase& c, int mode) {
  const tflite::Model* model = tflite::GetModel(c.model);
  LenetResolver r;
  AddLenetOps(r, mode);
  tflite::MicroInterpreter interp(model, r, g_arena, kArenaSize);
  g_log_len = 0;
  g_log[0] = '\0';
  const bool allocated = interp.AllocateTensors() == kTfLiteOk;
  bool found = false;
  const int lines = HuffDecodeLines(c.message, &found);
  bool ok;
  if (c.message[0] == '\0') {  // the unedited model: must allocate and run
    bool invoked = false;
    if (allocated) {
      TfLiteTensor* in = interp.input(0);
      memset(in->data.raw, 0, in->bytes);
      invoked = interp.Invoke() == kTfLiteOk;
    }
    ok = allocated && invoked && lines == 0;
    printf("TFLM_M4_EDIT %s mode %d allocated %d invoked %d huffdecode_lines %d ok %d\n", c.name,
           mode, allocated, invoked, lines, ok);
  } else {
    ok = !allocated && lines == 1 && found;
    printf("TFLM_M4_EDIT %s mode %d allocated %d huffdecode_lines %d message_matches %d ok %d\n",
           c.name, mode, allocated, lines, found, ok);
  }
  if (!ok) g_failures++;
}
}  // namespace

int main(void) {
  RegisterDebugLogCallback(Log);
  for (int k = 0; k < kEditedCount; ++k) {
    Run(kEdited[k], 0);
    Run(kEdited[k], 1);
  }
  printf("TFLM_M4_DONE %d\n", g_failures);
  return g_failures;
}
