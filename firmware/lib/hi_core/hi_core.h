/*
 * hi_core.h - the portable HI core of the firmware (C99, no dynamic allocation):
 *   hi_frame.h        offload protocol frame codec (bytes identical to hi_runtime/protocol.py)
 *   hi_auth.h         SHA-256 / HMAC-SHA256 and the protocol's pre-shared-key proofs
 *   hi_decider.h      exact integer offload decider (hi_runtime/decider.py)
 *   hi_exit_policy.h  early-exit policy over chained segments + final decision (hi_runtime/early_exit.py)
 *   hi_serial.h       MLPerf Tiny runner + HI serial commands (docs/serial.md)
 *   hi_ble_offload.h  device side of the BLE GATT offload contract (docs/ble.md)
 */
#ifndef HI_CORE_H
#define HI_CORE_H

#include "hi_auth.h"
#include "hi_ble_offload.h"
#include "hi_decider.h"
#include "hi_exit_policy.h"
#include "hi_frame.h"
#include "hi_serial.h"

#define HI_CORE_VERSION "1.0.0"

#include <stddef.h>

/* sizeof of the public structs (0 decider, 1 segment, 2 pipeline, 3 outcome, 4 serial io, 5 serial config,
 * 6 serial context, 7 frame, 8 BLE session) for FFI bindings; 0 for an unknown index. */
size_t hi_core_sizeof(int which);

#endif /* HI_CORE_H */
