// The optional engine: the upstream TensorFlow Lite Micro interpreter on the same model array, selected
// with -DHI_ENGINE_TFLM=1 (platformio.ini envs *_tflm, and `hi-firmware gen-app --engine tflm`, which
// writes the .tflite bytes as hi_app_tflm_model[]). The default engine is the project's compiled model
// (generated C + lib/hi_nn), byte-identical to TFLM's reference kernels and smaller/faster; this one exists
// to compare against TFLM (with its optimized kernels, e.g. CMSIS-NN) on the same board.
//
// It exposes the same uniform entry point as generated models, so the pipeline does not know which engine
// runs. Not compiled here (TFLM's C++ sources are not available offline): see docs/firmware.md.
#if defined(HI_ENGINE_TFLM) && HI_ENGINE_TFLM

#include <stdint.h>
#include <string.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef HI_TFLM_ARENA_SIZE
#define HI_TFLM_ARENA_SIZE (64 * 1024)
#endif

extern "C" {
extern const unsigned char hi_app_tflm_model[];
int hi_tflm_invoke_generic(const void *const *inputs, void *const *outputs);
}

namespace {
alignas(16) uint8_t arena[HI_TFLM_ARENA_SIZE];
tflite::MicroInterpreter *interpreter = nullptr;

bool setup_interpreter() {
  static tflite::MicroMutableOpResolver<12> resolver;
  resolver.AddConv2D();
  resolver.AddDepthwiseConv2D();
  resolver.AddFullyConnected();
  resolver.AddAdd();
  resolver.AddAveragePool2D();
  resolver.AddMaxPool2D();
  resolver.AddMean();
  resolver.AddPad();
  resolver.AddReshape();
  resolver.AddSoftmax();
  resolver.AddQuantize();
  resolver.AddDequantize();
  static tflite::MicroInterpreter instance(tflite::GetModel(hi_app_tflm_model), resolver, arena, sizeof arena);
  if (instance.AllocateTensors() != kTfLiteOk) return false;
  interpreter = &instance;
  return true;
}
}  // namespace

int hi_tflm_invoke_generic(const void *const *inputs, void *const *outputs) {
  if (interpreter == nullptr && !setup_interpreter()) return -1000;
  TfLiteTensor *in = interpreter->input(0);
  memcpy(in->data.int8, inputs[0], in->bytes);
  if (interpreter->Invoke() != kTfLiteOk) return -1001;
  for (size_t i = 0; i < interpreter->outputs_size(); ++i) {
    TfLiteTensor *out = interpreter->output(i);
    memcpy(outputs[i], out->data.int8, out->bytes);
  }
  return 0;
}

#endif  // HI_ENGINE_TFLM
