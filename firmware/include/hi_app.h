/*
 * hi_app.h - what a board gets from the generated application configuration (hi_app_config.c, written
 * by `hi-firmware build` / `hi-firmware gen-app` from a model or an early-exit chain plus a decider).
 *
 * WHY generated: the segment count, which generated output is the features and which the scores
 * (resolved by TFLite tensor name, never by position), the exit bounds and the decider integers all come
 * from the shipped artifacts; generating this small file keeps the board glue free of model details.
 */
#ifndef HI_APP_H
#define HI_APP_H

#include <stdint.h>

#include "hi_exit_policy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const hi_pipeline_t *pipeline;
  int8_t *input;              /* model input buffer (height*width*channels) */
  uint8_t *db;                /* serial `db` buffer for uint8 pixels */
  uint32_t db_capacity;
  const char *model_version;  /* reported by `profile%` (m-model-[...]) */
  const char *model_id;       /* server model id put in offload frames ("" = server default) */
} hi_app_t;

/* Fill *app with the generated configuration. Returns 0, or a negative value when it is inconsistent. */
int hi_app_setup(hi_app_t *app);

#ifdef __cplusplus
}
#endif

#endif /* HI_APP_H */
