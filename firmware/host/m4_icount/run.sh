#!/usr/bin/env bash
# Count the instructions of one inference of a compiled model on QEMU's Cortex-M4F (mps2-an386).
#   firmware/host/m4_icount/run.sh MODEL.tflite [extra CFLAGS, e.g. -DHI_NN_NO_DSP]
# Needs arm-none-eabi-gcc, libnewlib-arm-none-eabi and qemu-system-arm. Prints the instruction count, the
# output bytes (compare with the host build: same input pattern), and per-step counts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
model="$1"; shift || true
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
name=m4model
"${HI_FIRMWARE:-$repo/.venv/bin/hi-firmware}" compile "$model" --out "$work/gen" --name "$name" >/dev/null
sed -e "s/@NAME@/$name/g" -e "s/@UNAME@/$(echo $name | tr a-z A-Z)/g" "$here/main.c.in" > "$work/main.c"
kernels=$(ls "$repo"/firmware/lib/hi_nn/hi_nn_*.c | grep -v _test.c)
arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2 -std=c99 -ffp-contract=off "$@" \
  -ffunction-sections -fdata-sections -nostartfiles -T "$here/link.ld" -Wl,--gc-sections \
  --specs=nano.specs --specs=nosys.specs -I"$repo/firmware/lib/hi_nn" -I"$work/gen" \
  "$here/startup.c" "$work/main.c" -include "$here/hook.h" "$work/gen/hi_model_$name.c" $kernels \
  -o "$work/model.elf" -lm 2>&1 | grep -v -e "is not implemented" -e "will always fail" -e "in function" || true
timeout 600 qemu-system-arm -M mps2-an386 -nographic -semihosting -icount shift=0 -kernel "$work/model.elf" 2>&1
