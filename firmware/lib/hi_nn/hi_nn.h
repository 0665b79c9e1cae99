/* hi_nn.h - umbrella header for the hi_nn INT8 kernels used by generated models (hi_model_NAME.c). */
#ifndef HI_NN_H
#define HI_NN_H

#include "hi_nn_add.h"
#include "hi_nn_common.h"
#include "hi_nn_conv.h"
#include "hi_nn_depthwise_conv.h"
#include "hi_nn_fully_connected.h"
#include "hi_nn_mean.h"
#include "hi_nn_pad.h"
#include "hi_nn_pool.h"
#include "hi_nn_quantize.h"
#include "hi_nn_softmax.h"

#endif /* HI_NN_H */
