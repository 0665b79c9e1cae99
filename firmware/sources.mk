# sources.mk - THE list of the firmware's sources, relative to firmware/. Every build description reads it or
# is checked against it by tests/firmware/test_sources.py: the Makefiles (qemu/, lib/hi_core/, lib/hi_nn/,
# host/, fuzz/) include it, coralmicro/CMakeLists.txt parses it, hi_firmware/sources.py (the Python builds:
# host libraries, the QEMU image, the model bench) reads it, and PlatformIO's library.json / platformio.ini
# filters are checked against it. A new .c file that is in no list fails that test.
#
# Plain `NAME := word word ...` lines only (continuation lines with a trailing backslash allowed), so that
# make, CMake and Python read the same file without a make interpreter.

# Portable core (C99, no allocation) and its C tests (each beside its module, run under ASan/UBSan).
HI_CORE_SRCS := lib/hi_core/hi_auth.c lib/hi_core/hi_ble_offload.c lib/hi_core/hi_core.c \
  lib/hi_core/hi_decider.c lib/hi_core/hi_exit_policy.c lib/hi_core/hi_frame.c lib/hi_core/hi_mlperf.c \
  lib/hi_core/hi_offload_client.c lib/hi_core/hi_offload_session.c lib/hi_core/hi_serial.c \
  lib/hi_core/hi_serial_out.c
HI_CORE_TESTS := lib/hi_core/hi_auth_test.c lib/hi_core/hi_ble_offload_test.c lib/hi_core/hi_decider_test.c \
  lib/hi_core/hi_exit_policy_test.c lib/hi_core/hi_frame_test.c lib/hi_core/hi_offload_client_test.c \
  lib/hi_core/hi_serial_test.c

# INT8 kernels the generated models call, and their C tests.
HI_NN_SRCS := lib/hi_nn/hi_nn_add.c lib/hi_nn/hi_nn_conv.c lib/hi_nn/hi_nn_depthwise_conv.c \
  lib/hi_nn/hi_nn_fully_connected.c lib/hi_nn/hi_nn_mean.c lib/hi_nn/hi_nn_pad.c lib/hi_nn/hi_nn_pool.c \
  lib/hi_nn/hi_nn_quantize.c lib/hi_nn/hi_nn_softmax.c
HI_NN_TESTS := lib/hi_nn/hi_nn_add_test.c lib/hi_nn/hi_nn_common_test.c lib/hi_nn/hi_nn_conv_test.c \
  lib/hi_nn/hi_nn_depthwise_conv_test.c lib/hi_nn/hi_nn_fully_connected_test.c lib/hi_nn/hi_nn_mean_test.c \
  lib/hi_nn/hi_nn_pad_test.c lib/hi_nn/hi_nn_pool_test.c lib/hi_nn/hi_nn_quantize_test.c \
  lib/hi_nn/hi_nn_softmax_test.c

HI_INCLUDE_DIRS := include lib/hi_core lib/hi_nn

# Shared main of every board (serial console, pipeline) and the optional TFLite Micro engine.
HI_BOARD_MAIN_SRCS := src/common/hi_board_main.c
HI_TFLM_SRCS := src/common/hi_engine_tflm.cpp

# Board glue, one list per board.
HI_QEMU_SRCS := qemu/startup.c src/qemu_m4/board_qemu_m4.c
HI_QEMU_LDSCRIPT := qemu/mps2_an386.ld
# The model bench on the same emulated board: the same startup, semihosting output instead of the UART.
HI_QEMU_BENCH_SRCS := qemu/startup.c qemu/bench_main.c
# C test programs on the same emulated board (semihosting stdout, exit code to QEMU).
HI_QEMU_TEST_SRCS := qemu/startup.c qemu/semihost_run.c
HI_HOST_SIM_SRCS := src/host_sim/hi_host_device.c
HI_NANO33BLE_SRCS := src/nano33ble/main.cpp
HI_ESP32_SRCS := src/esp32/main.cpp
HI_CORALMICRO_SRCS := coralmicro/main.cc

# libFuzzer harnesses (clang) and the PlatformIO unit tests.
HI_FUZZ_SRCS := fuzz/fuzz_frame.c fuzz/fuzz_serial.c
HI_PIO_TEST_SRCS := test/test_core/test_main.c
