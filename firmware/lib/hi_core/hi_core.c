/* hi_core.c - layout information for foreign-function bindings (the host tests mirror these structs with
 * ctypes and check their sizes here, so a layout change cannot silently corrupt a test). */
#include "hi_core.h"

size_t hi_core_sizeof(int which) {
  switch (which) {
    case 0: return sizeof(hi_decider_t);
    case 1: return sizeof(hi_segment_t);
    case 2: return sizeof(hi_pipeline_t);
    case 3: return sizeof(hi_outcome_t);
    case 4: return sizeof(hi_serial_io_t);
    case 5: return sizeof(hi_serial_config_t);
    case 6: return sizeof(hi_serial_t);
    case 7: return sizeof(hi_frame_t);
    case 8: return sizeof(hi_ble_session_t);
    default: return 0;
  }
}
