/* hi_ble_offload.c - device side of the HI GATT offload contract (see hi_ble_offload.h, docs/ble.md). */
#include "hi_ble_offload.h"

#include <string.h>

#include "hi_frame.h" /* little-endian helpers */

enum { ST_IDLE = 0, ST_SENDING = 1, ST_WAITING = 2, ST_DONE = 3 };

static int time_reached(uint32_t now, uint32_t deadline) { return (int32_t)(now - deadline) >= 0; }

uint16_t hi_ble_chunk_size(uint16_t mtu) {
  if (mtu < HI_BLE_DEFAULT_MTU) mtu = HI_BLE_DEFAULT_MTU;
  if (mtu > HI_BLE_MAX_MTU) mtu = HI_BLE_MAX_MTU;
  return (uint16_t)(mtu - HI_BLE_NOTIFY_OVERHEAD - HI_BLE_CHUNK_HEADER);
}

void hi_ble_init(hi_ble_session_t *s) {
  if (s == NULL) return;
  memset(s, 0, sizeof *s);
  s->mtu = HI_BLE_DEFAULT_MTU;
}

int hi_ble_begin(hi_ble_session_t *s, uint16_t sample_id, const uint8_t *data, uint16_t total_len, uint8_t dtype,
                 uint8_t layout, uint8_t height, uint8_t width, uint8_t channels, float scale, int32_t zero_point,
                 uint32_t now_ms, uint32_t timeout_ms) {
  uint32_t item = dtype == HI_DTYPE_FLOAT32 ? 4u : (dtype == HI_DTYPE_UINT8 || dtype == HI_DTYPE_INT8) ? 1u : 0u;
  uint8_t *m;
  if (s == NULL || data == NULL || item == 0u || layout > 1u) return HI_BLE_E_ARG;
  if ((uint32_t)height * width * channels * item != total_len || total_len == 0u) return HI_BLE_E_ARG;
  if (s->state != ST_IDLE) return HI_BLE_E_BUSY;
  s->sample_id = sample_id;
  s->data = data;
  s->total_len = total_len;
  m = s->start_msg;
  m[0] = HI_BLE_OP_START;
  hi_put_u16(m + 1, sample_id);
  hi_put_u16(m + 3, total_len);
  m[5] = dtype;
  m[6] = layout;
  m[7] = height;
  m[8] = width;
  m[9] = channels;
  hi_put_f32(m + 10, scale);
  hi_put_u32(m + 14, (uint32_t)zero_point);
  s->start_pending = 1u;
  s->end_pending = 1u;
  s->cursor = 0u;
  s->send_limit = total_len;
  s->resume_at = 0u;
  s->resume_limit = 0u;
  s->high_water = 0u;
  s->chunks_first_pass = 0u;
  s->resends = 0u;
  s->deadline_ms = now_ms + timeout_ms;
  memset(&s->result, 0, sizeof s->result);
  s->result.sample_id = sample_id;
  s->result.class_id = HI_BLE_NO_CLASS;
  s->state = ST_SENDING;
  return 0;
}

int hi_ble_next(hi_ble_session_t *s, uint8_t *out, size_t cap, int *characteristic, uint32_t now_ms) {
  uint16_t cs;
  (void)now_ms;
  if (s == NULL || out == NULL || characteristic == NULL) return HI_BLE_E_ARG;
  if (s->abort_pending) {
    if (cap < 3u) return HI_BLE_E_ARG;
    out[0] = HI_BLE_OP_ABORT;
    hi_put_u16(out + 1, s->abort_id);
    s->abort_pending = 0u;
    *characteristic = HI_BLE_CONTROL;
    return 3;
  }
  if (s->state != ST_SENDING) return 0;
  if (s->start_pending) {
    if (cap < sizeof s->start_msg) return HI_BLE_E_ARG;
    memcpy(out, s->start_msg, sizeof s->start_msg);
    s->start_pending = 0u;
    *characteristic = HI_BLE_CONTROL;
    return (int)sizeof s->start_msg;
  }
  cs = hi_ble_chunk_size(s->mtu);
  if (s->cursor >= s->send_limit && s->resume_limit != 0u) { /* gap resent: finish the interrupted pass */
    s->cursor = s->resume_at;
    s->send_limit = s->resume_limit;
    s->resume_limit = 0u;
  }
  if (s->cursor < s->send_limit) {
    uint16_t len = (uint16_t)(s->total_len - s->cursor < cs ? s->total_len - s->cursor : cs);
    if (cap < (size_t)HI_BLE_CHUNK_HEADER + len) return HI_BLE_E_ARG;
    hi_put_u16(out, (uint16_t)(s->cursor / cs));
    hi_put_u16(out + 2, s->cursor);
    memcpy(out + HI_BLE_CHUNK_HEADER, s->data + s->cursor, len);
    if (s->cursor >= s->high_water) ++s->chunks_first_pass;
    s->cursor = (uint16_t)(s->cursor + len);
    if (s->cursor > s->high_water) s->high_water = s->cursor;
    *characteristic = HI_BLE_IMAGE;
    return (int)(HI_BLE_CHUNK_HEADER + len);
  }
  if (s->end_pending) {
    if (cap < 5u) return HI_BLE_E_ARG;
    out[0] = HI_BLE_OP_END;
    hi_put_u16(out + 1, s->sample_id);
    hi_put_u16(out + 3, s->chunks_first_pass);
    s->end_pending = 0u;
    s->state = ST_WAITING;
    *characteristic = HI_BLE_CONTROL;
    return 5;
  }
  return 0;
}

int hi_ble_on_write(hi_ble_session_t *s, int characteristic, const uint8_t *data, size_t n) {
  if (s == NULL || data == NULL) return HI_BLE_E_ARG;
  if (characteristic == HI_BLE_CONTROL && n == 3u && data[0] == HI_BLE_OP_CONFIG) {
    uint16_t mtu = hi_get_u16(data + 1);
    s->mtu = mtu < HI_BLE_DEFAULT_MTU ? HI_BLE_DEFAULT_MTU : (mtu > HI_BLE_MAX_MTU ? HI_BLE_MAX_MTU : mtu);
    return 0;
  }
  if (characteristic == HI_BLE_CONTROL && n == 7u && data[0] == HI_BLE_OP_NACK) {
    uint16_t sid = hi_get_u16(data + 1), off = hi_get_u16(data + 3), len = hi_get_u16(data + 5);
    uint16_t cs = hi_ble_chunk_size(s->mtu);
    uint32_t end = (uint32_t)off + len;
    if ((s->state != ST_SENDING && s->state != ST_WAITING) || sid != s->sample_id) return HI_BLE_E_MESSAGE;
    if (len == 0u || off >= s->total_len) return HI_BLE_E_MESSAGE;
    if (end > s->total_len) end = s->total_len;
    if (s->state == ST_SENDING && s->resume_limit == 0u && s->cursor < s->send_limit) {
      /* a NACK in the middle of a pass (the gateway stalled): resend the gap, then finish the pass from
       * where it stopped (past what the gap's chunks cover), not leave its rest for another round */
      const uint32_t gap_end = (end + cs - 1u) / cs * cs;
      const uint32_t resume = gap_end > s->cursor ? gap_end : s->cursor;
      if (resume < s->send_limit) {
        s->resume_at = (uint16_t)resume;
        s->resume_limit = s->send_limit;
      }
    }
    s->cursor = (uint16_t)(off - off % cs); /* whole chunks on the same grid */
    s->send_limit = (uint16_t)end;
    s->end_pending = 1u;
    ++s->resends;
    s->state = ST_SENDING;
    return 0;
  }
  if (characteristic == HI_BLE_RESULT && n == 6u) {
    uint16_t sid = hi_get_u16(data);
    if ((s->state != ST_SENDING && s->state != ST_WAITING) || sid != s->sample_id) return HI_BLE_E_MESSAGE;
    s->result.sample_id = sid;
    s->result.status = data[2] <= HI_BLE_STATUS_ERROR ? data[2] : HI_BLE_STATUS_ERROR;
    s->result.class_id = s->result.status == HI_BLE_STATUS_OK ? data[3] : HI_BLE_NO_CLASS;
    s->result.server_ms = hi_get_u16(data + 4);
    s->state = ST_DONE;
    return 0;
  }
  return HI_BLE_E_MESSAGE;
}

int hi_ble_poll(hi_ble_session_t *s, uint32_t now_ms, hi_ble_result_t *out) {
  if (s == NULL) return HI_BLE_E_ARG;
  if (s->state == ST_IDLE) return HI_BLE_IDLE;
  if (s->state != ST_DONE) {
    if (!time_reached(now_ms, s->deadline_ms)) return HI_BLE_PENDING;
    s->abort_pending = 1u; /* the device keeps its local answer; tell the gateway to drop the sample */
    s->abort_id = s->sample_id;
    s->result.status = HI_BLE_STATUS_TIMEOUT;
    s->result.class_id = HI_BLE_NO_CLASS;
  }
  if (out) *out = s->result;
  s->state = ST_IDLE;
  return HI_BLE_DONE;
}
