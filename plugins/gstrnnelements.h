/* One GST_ELEMENT_REGISTER_DECLARE per element of the plugin. */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

GST_ELEMENT_REGISTER_DECLARE (rnnfilter);
GST_ELEMENT_REGISTER_DECLARE (rnntrain);

G_END_DECLS
